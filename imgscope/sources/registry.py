"""Images read straight from a registry: ``registry://HOST[:PORT]/REPO[:TAG|@DIGEST]``.

The registry is one more :class:`~imgscope.sources.store.Store`: names are
blob paths (``blobs/sha256/HEX``) as in an OCI layout, so the layout's index
walk and platform choice (``oci.walk_index``/``oci.choose``) pick the image
of a manifest list or OCI index exactly as for a layout, and ``load_plan``
checks and assembles it.  Reading a name fetches a manifest (the children of
an index) or a blob; layers are streamed into the scanner, never written to
disk, and checked against their digest at their end.

A layer whose DiffID (from the image config) is in the scan cache is not
fetched at all, so a second image on the same base downloads only its own
layers.  Each fetched blob's digest -> DiffID is recorded in the cache too:
a config whose DiffID contradicts what a blob was seen to hold is reported.
"""

from __future__ import annotations

import dataclasses
import functools
import queue
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imgscope.errors import ImgscopeError
from imgscope.model import Image, LayerScan
from imgscope.scan import ContentVisitor, scan_layer
from imgscope.sources import oci
from imgscope.sources.common import ImagePlan, LoadOptions, load_json, load_plan
from imgscope.sources.registry_client import Endpoint, RegistryClient
from imgscope.sources.store import MAX_METADATA, ScanDone, _Prefetch

if TYPE_CHECKING:
    from imgscope.cache import ScanCache
    from imgscope.sources.scanproc import ScanWorker

PREFIX = "registry://"
# Layers fetched and scanned at once (threads; each has its own connection).
PARALLEL_FETCHES = 4
DOCKER_HUB = {"docker.io": "registry-1.docker.io", "index.docker.io": "registry-1.docker.io"}
# distribution/reference's grammar: lowercase path components separated by / with . _ __ - inside.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPO = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
# The only digest the client can check a manifest against (an upper-case or sha512 pin would go unchecked).
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


@dataclass(frozen=True, slots=True)
class RegistryRef:
    """A parsed ``registry://`` reference."""

    host: str
    repository: str
    reference: str  # a tag or a digest

    @property
    def by_digest(self) -> bool:
        return ":" in self.reference


def parse(text: str) -> RegistryRef:
    """``registry://HOST[:PORT]/REPO[:TAG|@DIGEST]``; the tag defaults to ``latest``."""
    rest = text[len(PREFIX) :] if text.startswith(PREFIX) else text
    host, slash, path = rest.partition("/")
    if not slash or not host or not path:
        raise ImgscopeError(f"{text}: expected registry://HOST[:PORT]/REPOSITORY[:TAG|@DIGEST]")
    if not _HOST.fullmatch(host):
        raise ImgscopeError(f"{text}: {host!r} is not a registry host")
    reference = "latest"
    if "@" in path:
        path, _, reference = path.partition("@")
        if not _DIGEST.fullmatch(reference):
            raise ImgscopeError(f"{text}: {reference!r} is not a digest (sha256:HEX)")
    else:
        name, colon, tag = path.rpartition(":")
        if colon and "/" not in tag:
            if not _TAG.fullmatch(tag):
                raise ImgscopeError(f"{text}: {tag!r} is not a valid tag")
            path, reference = name, tag
    if not _REPO.fullmatch(path):
        raise ImgscopeError(f"{text}: {path!r} is not a repository name (lowercase, e.g. team/app)")
    host = DOCKER_HUB.get(host.lower(), host)
    if host == "registry-1.docker.io" and "/" not in path:
        path = f"library/{path}"
    return RegistryRef(host=host, repository=path, reference=reference)


def _digest_of(name: str) -> str:
    """``blobs/sha256/HEX`` -> ``sha256:HEX``."""
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != "blobs":
        raise ImgscopeError(f"not a blob name: {name}")
    return f"{parts[1]}:{parts[2]}"


class RegistryStore:
    """A repository seen as a layout: a name is a blob (or, below an index, a manifest) fetched on demand."""

    def __init__(self, client: RegistryClient, *, cache: ScanCache | None) -> None:
        self.client = client
        self.label = client.label
        self._cache = cache
        self._read: dict[str, bytes] = {}
        self._manifests: set[str] = set()  # digests named by an index: fetched from /manifests/
        self._sizes: dict[str, int] = {}
        self._verified: set[str] = set()
        self.fetched: list[str] = []  # layer blobs downloaded, in order (for tests and benchmarks)
        self._abort = threading.Event()  # set when one of several parallel downloads fails

    def note_index(self, index: dict[str, object]) -> None:
        """Remember that the children of ``index`` are manifests (read from ``/manifests/``, not ``/blobs/``)."""
        children = index.get("manifests")
        for child in children if isinstance(children, list) else []:
            if isinstance(child, dict) and isinstance(child.get("digest"), str):
                self._manifests.add(child["digest"])

    def note_sizes(self, manifest: dict[str, object]) -> None:
        """The sizes the manifest announces, so a blob that runs longer is cut off early."""
        layers = manifest.get("layers")
        for desc in layers if isinstance(layers, list) else []:
            if isinstance(desc, dict) and isinstance(desc.get("digest"), str) and isinstance(desc.get("size"), int):
                self._sizes[desc["digest"]] = desc["size"]

    def remember(self, name: str, data: bytes) -> None:
        """Hold bytes already fetched (and checked) under ``name``, so that reading it fetches nothing."""
        self._read[name] = data

    def vouched_diff_id(self, name: str) -> str | None:
        """The DiffID this blob (by digest) held when it was last fetched and hashed, from the cache.

        The blob's digest is what the manifest names and what a download is checked
        against, so the DiffID recorded for it is that of these very bytes: a layer
        whose config DiffID matches needs neither fetching nor hashing again, even
        for ``ci`` and ``audit``, which otherwise check every DiffID (``--verify`` still does).
        """
        return self._cache.blob_diff_id(_digest_of(name)) if self._cache is not None else None

    def exists(self, name: str) -> bool:
        return name.startswith("blobs/")

    def size(self, name: str) -> int | None:
        return self._sizes.get(_digest_of(name))

    def names(self) -> Iterable[str]:
        return list(self._read)

    def read(self, name: str) -> bytes:
        data = self._read.get(name)
        if data is not None:
            return data
        digest = _digest_of(name)
        if digest in self._manifests:
            data, _media, _digest = self.client.manifest(digest)
            blob = load_json(data, f"{self.label}: manifest {digest}")
            if isinstance(blob, dict):
                self.note_index(blob)
        else:
            data = self.client.blob_bytes(digest, MAX_METADATA)
        self._verified.add(digest)
        self._read[name] = data
        return data

    def scan_many(
        self,
        names: list[str],
        *,
        max_bytes: int | None,
        visitor: ContentVisitor | None,
        on_scan: ScanDone | None = None,
        trusted: list[str | None] | None = None,
    ) -> list[LayerScan]:
        ids: list[str | None] = trusted or [None] * len(names)
        digests = [_digest_of(name) for name in names]

        def record(i: int, scan: LayerScan) -> None:
            # Called from this thread only: the cache connection is not shared with the workers.
            if self._cache is not None and ids[i] is None:
                self._cache.put_blob(digests[i], scan.diff_id)
            if on_scan:
                on_scan(i, scan)

        results: dict[int, LayerScan] = {}
        if visitor is not None or len(names) < 2:  # a visitor is called from one thread only
            for i in range(len(names)):
                results[i] = self._fetch_and_scan(digests[i], max_bytes, visitor, ids[i])
                record(i, results[i])
            return [results[i] for i in range(len(names))]
        from concurrent.futures import ThreadPoolExecutor, as_completed

        from imgscope.sources.store import worker_count

        # Layers are fetched and scanned side by side, largest first: the download, the decompression
        # (zlib releases the GIL) and the tar parsing of different layers overlap, as skopeo's parallel
        # downloads do.  Each is taken as it ends, so a small layer that fails stops the others at once.
        # On several cores, helper processes decompress and scan (``scanproc``): the tar parsing, which
        # holds the GIL, then no longer takes turns with the downloads and the other layers' parsing.
        # They take work over from this process's threads rather than add to it, so the load average
        # does not hold them back (measured at load 1.6-2.4 on 2 cores: 2.12 s with, 2.44 s without).
        order = sorted(range(len(names)), key=lambda i: -self._sizes.get(digests[i], 0))
        total = sum(self._sizes.get(d, 0) for d in digests)
        helpers = worker_count(total, len(names), mind_load=False)
        pool = _Helpers(helpers) if helpers > 1 else None
        fetch = self._fetch_and_scan if pool is None else functools.partial(self._relay_and_scan, pool)
        try:
            with ThreadPoolExecutor(max_workers=min(PARALLEL_FETCHES, len(names))) as threads:
                futures = {threads.submit(fetch, digests[i], max_bytes, None, ids[i]): i for i in order}
                try:
                    for future in as_completed(futures):
                        i = futures[future]
                        results[i] = future.result()
                        record(i, results[i])
                except BaseException:
                    # Stop the other downloads now: the pool's exit waits for them (Ctrl-C, a bad blob).
                    self._abort.set()
                    for future in futures:
                        future.cancel()
                    if pool is not None:
                        pool.stop()
                    raise
        finally:
            if pool is not None:
                pool.close()
        return [results[i] for i in range(len(names))]

    def _relay_and_scan(
        self, pool: _Helpers, digest: str, max_bytes: int | None, visitor: ContentVisitor | None, diff_id: str | None
    ) -> LayerScan:
        """Fetch a blob and relay it, still compressed, to a helper process that decompresses and scans it."""
        del visitor  # always None here: a visitor lives in this process (see scan_many)
        label = f"{self.label}: blob {digest}"
        worker = pool.take()
        ok = False
        try:
            reader = self.client.open_blob(digest, self._sizes.get(digest))
            reader.abort = self._abort
            self.fetched.append(digest)
            try:
                worker.scan(digest, label, b"", reader, max_bytes, diff_id)
                reader.finish()
            finally:
                reader.close()
            scan = worker.wait(digest)
            ok = True
        finally:
            # A helper stopped mid-layer (a failed download, a broken blob) is not handed out again.
            pool.give_back(worker, ok)
        self._verified.add(digest)
        return scan

    def _fetch_and_scan(
        self, digest: str, max_bytes: int | None, visitor: ContentVisitor | None, diff_id: str | None
    ) -> LayerScan:
        from imgscope.sources.compression import decode_errors, open_decompressed

        label = f"{self.label}: blob {digest}"
        reader = self.client.open_blob(digest, self._sizes.get(digest))
        reader.abort = self._abort
        self.fetched.append(digest)
        try:
            try:
                stream, _kind = open_decompressed(reader, chunks=True)
            except decode_errors() as exc:
                raise ImgscopeError(f"{label}: layer does not decompress ({exc})") from exc
            # Download and decompression run on a helper thread a few MiB ahead of the tar parsing.
            prefetch = _Prefetch(stream)
            whole = False
            try:
                # scan_layer gives a stream that does not decompress its one-line error itself.
                scan = scan_layer(prefetch, label, max_bytes=max_bytes, visitor=visitor, diff_id=diff_id)
                # The scanner stops at the tar's end; the digest covers every byte, so read the rest.
                try:
                    while prefetch.read(1 << 20):
                        pass
                except decode_errors() as exc:
                    raise ImgscopeError(f"{label}: layer does not decompress ({exc})") from exc
                whole = True
            finally:
                prefetch.stop(wait=whole)
            reader.finish()
        finally:
            reader.close()
        self._verified.add(digest)
        return scan

    def digest_of(self, name: str) -> str:
        digest = _digest_of(name)
        if digest not in self._verified:
            reader = self.client.open_blob(digest, self._sizes.get(digest))
            try:
                reader.finish()
            finally:
                reader.close()
            self._verified.add(digest)
        return digest


class _Helpers:
    """At most ``limit`` scan helper processes, each lent to one download thread for one blob at a time."""

    def __init__(self, limit: int) -> None:
        self._idle: queue.SimpleQueue[ScanWorker] = queue.SimpleQueue()
        self._free = threading.Semaphore(limit)
        self._lock = threading.Lock()
        self._all: list[ScanWorker] = []
        self._stopped = False

    def take(self) -> ScanWorker:
        """A helper for this thread's blob: an idle one, or a new one while fewer than ``limit`` run."""
        from imgscope.sources.scanproc import ScanWorker

        self._free.acquire()
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            worker = ScanWorker()
            with self._lock:
                self._all.append(worker)
                if self._stopped:  # stopped while this one started: do not let it outlive the load
                    worker.stop()
            return worker

    def give_back(self, worker: ScanWorker, ok: bool) -> None:
        if ok:
            self._idle.put(worker)
        else:
            worker.stop()
        self._free.release()

    def stop(self) -> None:
        """After a failure or Ctrl-C: end every helper now."""
        with self._lock:
            self._stopped = True
            workers = list(self._all)
        for worker in workers:
            worker.stop()

    def close(self) -> None:
        """At the end: every helper is idle or stopped; let them exit."""
        with self._lock:
            workers = list(self._all)
        for worker in workers:
            worker.close()


def client_for(ref: RegistryRef, options: LoadOptions) -> RegistryClient:
    """A client for the reference, with the user's Docker credentials for its host."""
    from imgscope.sources import credentials

    return RegistryClient(Endpoint(ref.host, ref.repository, insecure=options.insecure), lookup=credentials.lookup)


def load(text: str, options: LoadOptions, *, client: RegistryClient | None = None) -> Image:
    """Load the image a ``registry://`` reference names."""
    from imgscope import cache

    ref = parse(text)
    if options.image:
        raise ImgscopeError(f"{text}: --image picks from an archive; name the tag in the reference instead")
    client = client or client_for(ref, options)
    db = cache.open_cache() if options.use_cache and options.visitor is None else None
    store = RegistryStore(client, cache=db)
    try:
        return _load(ref, text, store, options)
    finally:
        client.close()


def _load(ref: RegistryRef, text: str, store: RegistryStore, options: LoadOptions) -> Image:
    plan = _plan(ref, store, options)
    image = load_plan(store, plan, text, f"registry {ref.host}", options)
    warnings = _contradictions(store, image)
    return dataclasses.replace(image, warnings=image.warnings + warnings) if warnings else image


def scan_one_layer(text: str, options: LoadOptions, layer: int, visitor: ContentVisitor) -> bool:
    """Fetch and scan only layer ``layer`` of the image, for ``visitor`` (explore opening one file).

    False when the image has no such layer.
    """
    ref = parse(text)
    store = RegistryStore(client_for(ref, options), cache=None)
    try:
        plan = _plan(ref, store, options)
        if not 0 <= layer < len(plan.layers):
            return False
        store.scan_many([plan.layers[layer].name], max_bytes=options.max_layer_bytes, visitor=visitor)
        return True
    finally:
        store.client.close()


def _plan(ref: RegistryRef, store: RegistryStore, options: LoadOptions) -> ImagePlan:
    """Read the manifest (an index: choose the image as for a layout) and plan its blobs."""
    if options.progress:
        options.progress("reading manifest", 0, 1)
    data, media, digest = store.client.manifest(ref.reference)
    top = load_json(data, f"{store.label}: manifest {ref.reference}")
    if not isinstance(top, dict):
        raise ImgscopeError(f"{store.label}: manifest {ref.reference} is not a JSON object")
    media = media if media in oci.INDEX_TYPES | oci.MANIFEST_TYPES else str(top.get("mediaType") or "")
    if media in oci.INDEX_TYPES or (not media and "manifests" in top):
        # Walked from a one-entry index naming it, as a layout's index.json names an image: its
        # platforms are then one image to choose a platform of, not several images to choose between.
        store.remember(oci.blob_name(digest), data)
        store.note_index(top)
        media = media or "application/vnd.oci.image.index.v1+json"
        candidates, notes = oci.walk_index(store, {"manifests": [{"mediaType": media, "digest": digest}]})
        if not candidates and notes:
            raise ImgscopeError(f"{store.label}: no readable image: {notes[0]}")
        chosen = oci.choose(store, candidates, None, options.platform)
    else:
        if "layers" not in top or "config" not in top:
            raise ImgscopeError(f"{store.label}: {ref.reference} is not an image manifest ({media or 'no media type'})")
        chosen = oci.Candidate(manifest=top, digest=digest, platform=None, tags=())
        if options.platform:
            # A single image still has to be the platform asked for.
            oci.choose(store, [chosen], None, options.platform)
    store.note_sizes(chosen.manifest)
    plan = oci.plan_from_manifest(chosen)
    tag = () if ref.by_digest else (f"{ref.host}/{ref.repository}:{ref.reference}",)
    return dataclasses.replace(plan, tags=tag)


def _contradictions(store: RegistryStore, image: Image) -> tuple[str, ...]:
    """Layers whose blob was seen before to hold another DiffID than the config now says.

    A layer fetched in this run is left out: load_plan has compared what it holds with the
    config already (and warned of a mismatch), and the cache's record of it is that very hash.
    """
    if store._cache is None:
        return ()
    fetched = set(store.fetched)
    out = []
    for layer in image.layers:
        if layer.digest is None or layer.digest in fetched:
            continue
        seen = store._cache.blob_diff_id(layer.digest)
        if seen is not None and seen != layer.diff_id:
            out.append(
                f"{store.label}: layer {layer.index} (blob {layer.digest}) held {seen} when last fetched, "
                f"the config says {layer.diff_id}"
            )
    return tuple(out)
