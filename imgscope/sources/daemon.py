"""Images and containers of a local engine (Docker, or podman's Docker-compatible socket).

The engine is found the way the ``docker`` CLI finds it (``DOCKER_HOST``, then
the current context, then the rootless and the default socket), so
``imgscope inspect nginx`` reads the image ``docker run nginx`` would use.

An image is read from ``docker save``'s stream as it arrives: the chunks go
through a small file-like adapter straight into
:class:`~imgscope.sources.store.StreamStore`, which scans each layer while it
passes.  No temporary file, and memory stays flat in the archive size
(FORMATS.md section 1: layers come before ``manifest.json``, so nothing can
be planned before the end).

When every DiffID of the image is already in the scan cache, ``save`` is not
called at all.  The daemon cannot hand out the raw config cheaply (it sits
after the layers in the archive), so the config is rebuilt from
``GET /images/{id}/json`` and ``/history``; which history steps own a layer
(``empty_layer``) is recovered by aligning the steps' sizes with the cached
scans' sizes, helped by the instruction names.  When that alignment is not
unique the image is streamed as usual, so a cached load never guesses.

The Docker SDK is imported inside functions only: ``imgscope --help`` must
not pay for it.  Every failure a user can cause (no socket, permission
denied, no answer, an API error, a daemon that stops mid-stream, a missing
image) becomes one :class:`ImgscopeError` line naming the endpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import posixpath
import tarfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xxhash

from imgscope.errors import ImgscopeError
from imgscope.model import BLOCK, CHAR, DIR, FIFO, FILE, HARDLINK, SYMLINK, Entry, Image, LayerInfo
from imgscope.sources.common import LoadOptions, parse_config

if TYPE_CHECKING:
    from imgscope.sources.httpbody import SocketBody
    from imgscope.sources.scanproc import ScanWorker
    from imgscope.sources.store import StreamStore

DOCKER = "docker"
PODMAN = "podman"

# Seconds to wait for the engine to answer /version: a daemon that hangs must not hang us.
PROBE_TIMEOUT = 15.0
# Seconds any later read may wait.  Docker 20.10 writes the whole image to a temporary
# directory before the first byte of ``save`` arrives, so this one is generous.
STREAM_TIMEOUT = float(os.environ.get("IMGSCOPE_DOCKER_TIMEOUT") or 600)
CHUNK = 1 << 20
# ``--platform`` for ``GET /images/{name}/get`` came with Engine API 1.48.
SAVE_PLATFORM_API = (1, 48)
LEGACY_LAYER_MEDIA = "application/vnd.docker.image.rootfs.diff.tar"


# --------------------------------------------------------------------------- endpoints


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Client TLS material, as the docker CLI reads it from a directory."""

    verify: bool
    ca: str | None = None
    cert: str | None = None
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the engine listens and how messages name it."""

    engine: str
    url: str
    origin: str
    tls: TlsFiles | None = None

    @property
    def label(self) -> str:
        """``the docker daemon at unix:///var/run/docker.sock`` (+ where that came from)."""
        return f"the {self.engine} daemon at {self.url}" + (f" ({self.origin})" if self.origin else "")


def _tls_from_dir(directory: Path, verify: bool) -> TlsFiles:
    def pick(name: str) -> str | None:
        path = directory / name
        return str(path) if path.is_file() else None

    return TlsFiles(verify=verify, ca=pick("ca.pem"), cert=pick("cert.pem"), key=pick("key.pem"))


def _normalise_host(host: str) -> str:
    """A bare socket path is a unix URL; anything else is passed on as the CLI would."""
    if host.startswith("/"):
        return "unix://" + host
    return host


def resolve_endpoint(podman: bool = False, env: Mapping[str, str] | None = None, home: Path | None = None) -> Endpoint:
    """The endpoint the docker CLI (or podman's remote client) would use, without connecting.

    Docker: ``DOCKER_HOST`` (TLS from ``DOCKER_TLS_VERIFY``/``DOCKER_TLS`` and
    ``DOCKER_CERT_PATH``), else the current context (``DOCKER_CONTEXT``, else
    ``currentContext`` in ``$DOCKER_CONFIG/config.json``), else
    ``$XDG_RUNTIME_DIR/docker.sock`` when it exists, else ``/var/run/docker.sock``.
    Podman: ``CONTAINER_HOST``, else the rootful and rootless sockets (the one
    matching our uid first; the first that exists wins).
    """
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    runtime = env.get("XDG_RUNTIME_DIR") or ""
    if podman:
        host = env.get("CONTAINER_HOST") or ""
        if host:
            return Endpoint(PODMAN, _normalise_host(host), "CONTAINER_HOST")
        rootful = "/run/podman/podman.sock"
        rootless = posixpath.join(runtime, "podman", "podman.sock") if runtime else ""
        order = [rootful, rootless] if os.geteuid() == 0 else [rootless, rootful]
        candidates = [c for c in order if c]
        for path in candidates:
            if os.path.exists(path):
                return Endpoint(PODMAN, "unix://" + path, "")
        return Endpoint(PODMAN, "unix://" + candidates[0], "")

    host = env.get("DOCKER_HOST") or ""
    if host:
        tls = None
        cert_dir = Path(env.get("DOCKER_CERT_PATH") or home / ".docker")
        if env.get("DOCKER_TLS_VERIFY"):
            tls = _tls_from_dir(cert_dir, verify=True)
        elif env.get("DOCKER_TLS"):
            tls = _tls_from_dir(cert_dir, verify=False)
        return Endpoint(DOCKER, _normalise_host(host), "DOCKER_HOST", tls)

    config_dir = Path(env.get("DOCKER_CONFIG") or home / ".docker")
    context = env.get("DOCKER_CONTEXT") or ""
    origin = "DOCKER_CONTEXT"
    if not context:
        origin = "current context"
        try:
            config = json.loads((config_dir / "config.json").read_text())
            if isinstance(config, dict) and isinstance(config.get("currentContext"), str):
                context = config["currentContext"]
        except (OSError, ValueError):
            context = ""
    if context and context != "default":
        return _context_endpoint(config_dir, context, origin)

    if runtime and os.path.exists(posixpath.join(runtime, "docker.sock")):
        return Endpoint(DOCKER, "unix://" + posixpath.join(runtime, "docker.sock"), "rootless socket")
    return Endpoint(DOCKER, "unix:///var/run/docker.sock", "")


def _context_endpoint(config_dir: Path, name: str, origin: str) -> Endpoint:
    """Read a docker context's endpoint from ``contexts/meta/<sha256 of name>/meta.json``."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta_path = config_dir / "contexts" / "meta" / digest / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise ImgscopeError(f"docker context {name!r} ({origin}) does not exist: no {meta_path}") from None
    except (OSError, ValueError) as exc:
        raise ImgscopeError(f"docker context {name!r}: cannot read {meta_path} ({exc})") from exc
    endpoint = (meta.get("Endpoints") or {}).get("docker") if isinstance(meta, dict) else None
    host = endpoint.get("Host") if isinstance(endpoint, dict) else None
    if not isinstance(host, str) or not host:
        raise ImgscopeError(f"docker context {name!r}: {meta_path} names no docker endpoint")
    tls = None
    tls_dir = config_dir / "contexts" / "tls" / digest / "docker"
    if tls_dir.is_dir():
        tls = _tls_from_dir(tls_dir, verify=not bool(endpoint.get("SkipTLSVerify")))  # type: ignore[union-attr]
    return Endpoint(DOCKER, _normalise_host(host), f"context {name}", tls)


# --------------------------------------------------------------------------- errors


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts, and exceptions carried in ``args`` (urllib3 does)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend(a for a in current.args if isinstance(a, BaseException))
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
        for nxt in (current.__cause__, current.__context__):
            if nxt is not None:
                todo.append(nxt)


_TIMEOUTS = ("ReadTimeout", "ReadTimeoutError", "ConnectTimeout", "ConnectTimeoutError")


def why(exc: BaseException) -> str:
    """A short reason for a failed call to the engine, from the deepest cause that says something."""
    causes = list(_causes(exc))
    for cause in causes:
        if isinstance(cause, FileNotFoundError):
            return "no such socket (is the daemon running?)"
        if isinstance(cause, PermissionError):
            return "permission denied on the socket (add your user to the docker group, or use sudo)"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused (is the daemon running?)"
        if isinstance(cause, ConnectionResetError | BrokenPipeError):
            return "the connection was reset"
        if isinstance(cause, TimeoutError) or type(cause).__name__ in _TIMEOUTS:
            return "no answer in time (is the daemon hung?)"
    for cause in causes:
        explanation = getattr(cause, "explanation", None)
        status = getattr(cause, "status_code", None)
        if explanation:
            return f"API error{f' {status}' if status else ''}: {str(explanation).strip()}"
    for cause in causes:
        name = type(cause).__name__
        if name in ("ChunkedEncodingError", "ProtocolError", "IncompleteRead"):
            return "the connection broke mid-stream"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


def _api_version(client: Any) -> tuple[int, int]:
    try:
        major, minor = str(client.api.api_version).split(".")[:2]
        return int(major), int(minor)
    except (ValueError, AttributeError):
        return (0, 0)


# --------------------------------------------------------------------------- reading streams


class ChunkReader(io.RawIOBase):
    """A read-only file over an HTTP response body, read in chunks as they arrive.

    ``tarfile`` (and so :class:`StreamStore`) wants a file object; the SDK gives
    a chunk iterator.  This adapter keeps one chunk at a time, turns every
    transport failure into an :class:`ImgscopeError` naming the endpoint, and
    counts bytes for progress.
    """

    def __init__(
        self,
        chunks: Iterator[bytes],
        fail: Callable[[BaseException], ImgscopeError],
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        self._chunks = chunks
        self._fail = fail
        self._on_bytes = on_bytes
        self._view = memoryview(b"")
        self.total = 0
        self.finished = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._view:
            if self.finished:
                return 0
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self.finished = True
                return 0
            except ImgscopeError:
                raise
            except Exception as exc:  # requests, urllib3 and socket errors all land here
                raise self._fail(exc) from exc
            self._view = memoryview(chunk)
            self.total += len(chunk)
            if self._on_bytes is not None:
                self._on_bytes(self.total)
        n = min(len(buffer), len(self._view))
        buffer[:n] = self._view[:n]
        self._view = self._view[n:]
        return n


def body_reader(
    response: Any,
    fail: Callable[[BaseException], ImgscopeError],
    on_bytes: Callable[[int], None] | None = None,
) -> ChunkReader | SocketBody:
    """The body of a streamed engine response as a file: off the socket when it can be, else chunk by chunk.

    Reading off the socket (:mod:`imgscope.sources.httpbody`) spares requests'
    and urllib3's work per 32 KiB chunk of a ``save``; :class:`ChunkReader`
    stays for a response it cannot take over.
    """
    from imgscope.sources.httpbody import direct_body

    direct = direct_body(response, fail, on_bytes)
    if direct is not None:
        return direct
    return ChunkReader(response.iter_content(CHUNK, False), fail, on_bytes)


def _stream_store(body: ChunkReader | SocketBody, label: str, **options: Any) -> StreamStore:
    """A save stream read whole by a :class:`StreamStore` (``options`` are its own).

    Off a socket, the body is read where it is scanned, with no buffer or
    read-ahead thread on top: the kernel's socket buffer takes what the engine
    sends meanwhile.  Chunk by chunk through requests, both stay.
    """
    from imgscope.sources.store import StreamStore

    if isinstance(body, ChunkReader):
        return StreamStore(io.BufferedReader(body, CHUNK), label, **options)
    return StreamStore(body, label, prefetch=False, **options)


# --------------------------------------------------------------------------- containers (facts)


@dataclass(frozen=True, slots=True)
class Mount:
    """A mount of a container: its content is not in the writable layer."""

    type: str
    destination: str
    source: str = ""
    rw: bool = True


@dataclass(frozen=True, slots=True)
class ObservedChange:
    """One path of ``docker diff`` and what the container holds there now.

    ``kind`` is the engine's letter (A added, C changed, D deleted).  ``current``
    is read with ``get_archive`` for A and C; None for D, or when the path
    vanished between the diff and the read (a running container).
    """

    path: str
    kind: str
    current: Entry | None = None


@dataclass(frozen=True, slots=True)
class ContainerSnapshot:
    """What the engine says of a container's writable layer, enriched path by path."""

    id: str
    name: str
    image_ref: str
    image_id: str
    status: str
    endpoint: str
    changes: tuple[ObservedChange, ...]
    mounts: tuple[Mount, ...] = ()
    warnings: tuple[str, ...] = ()


_DIFF_KINDS = {0: "C", 1: "A", 2: "D"}


def _member_entry(member: tarfile.TarInfo, path: str, digest: str) -> Entry:
    """An :class:`Entry` from a tar member of ``get_archive``, counted as scan.py counts."""
    if member.isreg():
        kind = FILE
    elif member.isdir():
        kind = DIR
    elif member.issym():
        kind = SYMLINK
    elif member.islnk():
        kind = HARDLINK
    elif member.ischr():
        kind = CHAR
    elif member.isblk():
        kind = BLOCK
    elif member.isfifo():
        kind = FIFO
    else:
        kind = FILE
    link = ""
    size = 0
    if kind == FILE:
        size = member.size
    elif kind == SYMLINK:
        link = member.linkname
        size = len(link.encode("utf-8", "surrogateescape"))
    elif kind == HARDLINK:
        link = posixpath.normpath("/" + member.linkname.lstrip("/"))
    xattrs = tuple(
        sorted((k[len("SCHILY.xattr.") :], v) for k, v in member.pax_headers.items() if k.startswith("SCHILY.xattr."))
    )
    return Entry(
        path=path,
        type=kind,
        mode=member.mode & 0o7777,
        uid=member.uid,
        gid=member.gid,
        size=size,
        tar_size=size if kind == FILE else 0,
        mtime=int(member.mtime),
        link=link,
        digest=digest,
        xattrs=xattrs,
        devmajor=member.devmajor if kind in (CHAR, BLOCK) else 0,
        devminor=member.devminor if kind in (CHAR, BLOCK) else 0,
    )


def _hash_member(tf: tarfile.TarFile, member: tarfile.TarInfo, keep: int | None = None) -> tuple[str, bytes | None]:
    """xxh3-64 of a member's content (as scan.py hashes), and the bytes when ``keep`` allows."""
    fh = tf.extractfile(member)
    hasher = xxhash.xxh3_64()
    kept: bytearray | None = bytearray() if keep is not None and member.size <= keep else None
    if fh is not None:
        while True:
            chunk = fh.read(CHUNK)
            if not chunk:
                break
            hasher.update(chunk)
            if kept is not None:
                kept += chunk
    return hasher.hexdigest(), bytes(kept) if kept is not None else None


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


# Bytes of unchanged image content worth reading to save one archive request (one costs
# the engine a mount, a lock and a tar writer: about 0.1 s, some 5 to 40 MB of streaming).
READ_BUDGET = 4 << 20


def plan_reads(
    listed: Mapping[str, str], mount_points: list[str], image_bytes_below: Callable[[str], int] | None
) -> list[tuple[str, bool]]:
    """Archive requests ``(path, whole)`` that cover every added or changed path of a diff.

    An added directory holds only added paths: it is read whole, in one
    request.  A changed directory is read whole when the unchanged bytes it
    would stream (what the image holds below it) cost less than the requests it
    saves; otherwise it is read alone (first header only) and its children are
    planned in turn.  A directory with a mount at or below it is never read
    whole: the mount's content is not the writable layer's.
    """
    wanted = sorted(p for p, k in listed.items() if k != "D")
    children: dict[str, list[str]] = {}
    below_count: dict[str, int] = {}
    wanted_set = set(wanted)
    for path in wanted:
        parent = posixpath.dirname(path)
        children.setdefault(parent, []).append(path)
        ancestor = parent
        while True:
            below_count[ancestor] = below_count.get(ancestor, 0) + 1
            if ancestor == "/":
                break
            ancestor = posixpath.dirname(ancestor)

    def has_mount(path: str) -> bool:
        return any(_under(mp, path) for mp in mount_points)

    reads: list[tuple[str, bool]] = []
    # Roots: wanted paths whose parent is not wanted (docker lists every ancestor, so usually
    # the top-level directories), visited top-down without recursion.
    todo = [p for p in reversed(wanted) if posixpath.dirname(p) not in wanted_set]
    while todo:
        path = todo.pop()
        count = below_count.get(path, 0)
        cheap = listed.get(path) == "A" or (
            image_bytes_below is not None and image_bytes_below(path) <= READ_BUDGET * count
        )
        whole = bool(count) and cheap and not has_mount(path)
        reads.append((path, whole))
        if not whole:
            todo.extend(reversed(children.get(path, [])))
    return reads


# --------------------------------------------------------------------------- the daemon


@dataclass(frozen=True, slots=True)
class FileContent:
    """Bytes of one file read for ``--content`` (None when too large), with its size and hash."""

    size: int
    digest: str
    data: bytes | None


class Daemon:
    """A connection to one engine: loads images, reads containers, never changes anything.

    The only call that changes the engine's state is ``pull``, made only when
    the user passed ``--pull``.
    """

    def __init__(self, endpoint: Endpoint, client: Any) -> None:
        self.endpoint = endpoint
        self.client = client

    # ---- connection

    @classmethod
    def connect(cls, podman: bool = False) -> Daemon:
        """Resolve the endpoint and check that the engine answers."""
        endpoint = resolve_endpoint(podman)
        if endpoint.url.startswith("unix://"):
            path = endpoint.url[len("unix://") :]
            if not os.path.exists(path):
                hint = " (start it with `podman system service`)" if podman else " (is the daemon running?)"
                raise ImgscopeError(f"cannot reach {endpoint.label}: no such socket{hint}")
        if podman and endpoint.url.startswith("ssh://"):
            raise ImgscopeError(
                f"cannot reach {endpoint.label}: podman over ssh is not supported; forward the socket "
                "and set CONTAINER_HOST=unix://PATH"
            )
        import docker
        from docker.errors import DockerException

        tls: Any = False
        try:
            if endpoint.tls is not None:
                from docker.tls import TLSConfig

                cert = (endpoint.tls.cert, endpoint.tls.key) if endpoint.tls.cert and endpoint.tls.key else None
                tls = TLSConfig(
                    client_cert=cert,
                    ca_cert=endpoint.tls.ca if endpoint.tls.verify else None,
                    verify=endpoint.tls.verify,
                )
            client = docker.DockerClient(
                base_url=endpoint.url,
                version="auto",
                timeout=PROBE_TIMEOUT,
                tls=tls,
                use_ssh_client=endpoint.url.startswith("ssh://"),
            )
        except (DockerException, OSError, ValueError) as exc:
            raise ImgscopeError(f"cannot reach {endpoint.label}: {why(exc)}") from exc
        client.api.timeout = STREAM_TIMEOUT
        return cls(endpoint, client)

    def close(self) -> None:
        """Close the HTTP connections."""
        with contextlib.suppress(Exception):  # closing must never fail a run
            self.client.close()

    def _error(self, what: str, exc: BaseException) -> ImgscopeError:
        return ImgscopeError(f"{what} at {self.endpoint.url}: {why(exc)}")

    # ---- images

    def image_attrs(self, name: str, pull: bool = False, platform: str | None = None) -> dict[str, Any]:
        """``docker image inspect NAME``; pull first when absent and ``pull`` is set."""
        from docker.errors import DockerException, ImageNotFound

        try:
            return dict(self.client.api.inspect_image(name))
        except ImageNotFound as exc:
            if not pull:
                raise ImgscopeError(f"image {name} not found in {self.endpoint.label}; use --pull to pull it") from exc
        except (DockerException, OSError) as exc:
            raise self._error(f"cannot inspect image {name}", exc) from exc
        from docker.utils import parse_repository_tag

        repository, tag = parse_repository_tag(name)
        try:
            self.client.api.pull(repository, tag=tag or "latest", platform=platform)
            return dict(self.client.api.inspect_image(name))
        except (DockerException, OSError) as exc:
            raise self._error(f"cannot pull {name}", exc) from exc

    def load(self, name: str, reference: str, options: LoadOptions) -> Image:
        """Load an image: from the cache when every layer is there, else from one ``save`` stream."""
        attrs = self.image_attrs(name, options.pull, options.platform)
        warnings = self._platform_warnings(attrs, options.platform)
        diff_ids = [str(d) for d in (attrs.get("RootFS") or {}).get("Layers") or []]
        image: Image | None = None
        # With --platform on an engine that can pick one, inspect may describe another platform's
        # image than the one save will send: stream then, rather than trust the cache's match.
        picks_platform = bool(options.platform) and _api_version(self.client) >= SAVE_PLATFORM_API
        checking = options.verify or options.check_diff_ids  # the cache holds no bytes to check
        if options.use_cache and not checking and options.visitor is None and not picks_platform:
            image = self._from_cache(attrs, diff_ids, reference)
        if image is None:
            image = self._from_stream(attrs, diff_ids, name, reference, options)
        tags = tuple(str(t) for t in attrs.get("RepoTags") or [] if t and t != "<none>:<none>")
        return dataclasses.replace(image, tags=tags or image.tags, warnings=(*image.warnings, *warnings))

    def _platform_warnings(self, attrs: dict[str, Any], platform: str | None) -> list[str]:
        if not platform:
            return []
        if _api_version(self.client) >= SAVE_PLATFORM_API:
            return []
        want = _platform_parts(platform)
        have = _platform_parts(
            "/".join(p for p in (attrs.get("Os"), attrs.get("Architecture"), attrs.get("Variant")) if p)
        )
        if want[:2] == have[:2] and (not want[2] or want[2] == have[2]):
            return []
        version = ".".join(str(v) for v in _api_version(self.client))
        return [
            f"--platform {platform} ignored: {self.endpoint.label} speaks API {version}, which cannot pick "
            f"a platform (needs 1.48); read its {'/'.join(p for p in have if p)} image"
        ]

    def _save_response(self, image_id: str, platform: str | None) -> Any:
        """Start ``GET /images/{id}/get`` and return the response, its body unread (see :func:`body_reader`)."""
        api = self.client.api
        params: dict[str, str] = {}
        if platform and _api_version(self.client) >= SAVE_PLATFORM_API:
            os_, arch, variant = _platform_parts(platform)
            spec = {"os": os_, "architecture": arch, **({"variant": variant} if variant else {})}
            params["platform"] = json.dumps(spec)
        response = api._get(api._url("/images/{0}/get", image_id), params=params, stream=True)
        api._raise_for_status(response)
        return response

    def _from_stream(
        self, attrs: dict[str, Any], diff_ids: list[str], name: str, reference: str, options: LoadOptions
    ) -> Image:
        from docker.errors import DockerException, ImageNotFound

        from imgscope.sources.archive import plan_store
        from imgscope.sources.common import load_plan

        image_id = str(attrs.get("Id") or name)
        total = int(attrs.get("Size") or 0)
        # A helper asked for (``IMGSCOPE_WORKERS``) starts now: the engine's seconds of preparing a
        # save hide its start.
        worker = _scan_worker() if options.visitor is None else None
        on_bytes = None
        if options.progress is not None and total:
            progress = options.progress
            mb_total = max(1, total // 1_000_000)

            def on_bytes(done: int) -> None:
                progress("reading from the daemon (MB)", min(done // 1_000_000, mb_total), mb_total)

            on_bytes(0)  # shown while the engine prepares the save, seconds before its first byte
        try:
            response = self._save_response(image_id, options.platform)
        except BaseException as exc:
            if worker is not None:
                worker.stop()
            if isinstance(exc, ImageNotFound):
                raise ImgscopeError(f"image {name} was removed from {self.endpoint.label} before it was read") from exc
            if isinstance(exc, DockerException | OSError):
                raise self._error(f"cannot save image {name}", exc) from exc
            raise

        def fail(exc: BaseException) -> ImgscopeError:
            reason = "the image was removed" if self._image_gone(image_id) else why(exc)
            return ImgscopeError(f"{self.endpoint.label} stopped sending image {name} mid-stream: {reason}")

        reader = body_reader(response, fail, on_bytes)
        label = f"image {name} from {self.endpoint.url}"
        try:
            # DiffIDs are hashed only when something rests on them (--verify, cached scans); else the
            # engine's are taken, as for archives (issue 8: SHA-256 was the stream's bottleneck).
            hashed = options.verify or options.check_diff_ids or (options.use_cache and options.visitor is None)
            store = _stream_store(
                reader,
                label,
                max_bytes=options.max_layer_bytes,
                visitor=options.visitor,
                diff_ids=hashed,
                worker=worker,
            )
        except ImgscopeError as exc:
            if not reader.finished or not self._image_gone(image_id):
                raise
            raise ImgscopeError(f"image {name} was removed from {self.endpoint.label} while it was read") from exc
        finally:
            response.close()
        # An engine too old to pick a platform saved the one it has: we warned, do not refuse it.
        can_pick = _api_version(self.client) >= SAVE_PLATFORM_API
        plan, fmt = plan_store(store, None, options.platform if can_pick else None)
        image = load_plan(store, plan, reference, f"{self.endpoint.engine} daemon {self.endpoint.url}, {fmt}", options)
        computed = [s.diff_id for s in image.scans]
        if diff_ids and computed != diff_ids:
            for i, (got, want) in enumerate(zip(computed, diff_ids, strict=False)):
                if got != want:
                    raise ImgscopeError(
                        f"image {name}: layer {i} read from the daemon has DiffID {got}, but the daemon lists {want}"
                    )
            raise ImgscopeError(
                f"image {name}: the daemon lists {len(diff_ids)} layers, its save stream holds {len(computed)}"
            )
        return image

    def image_exists(self, image_id: str) -> bool:
        """Whether the engine still has the image (True when it cannot say: the next call will tell)."""
        return self._image_gone(image_id) is not True

    def _image_gone(self, image_id: str) -> bool | None:
        """After a failure: True when the engine says the image is gone, None when it cannot say.

        A daemon that stopped cannot answer either; that must not read as "removed".
        """
        from docker.errors import ImageNotFound

        try:
            self.client.api.inspect_image(image_id)
        except ImageNotFound:
            return True
        except Exception:
            return None
        return False

    def _history(self, image_id: str) -> list[dict[str, Any]]:
        from docker.errors import DockerException

        try:
            items = self.client.api.history(image_id)
        except (DockerException, OSError) as exc:
            raise self._error(f"cannot read the history of image {image_id}", exc) from exc
        return [dict(h) for h in items or [] if isinstance(h, dict)]

    def _from_cache(self, attrs: dict[str, Any], diff_ids: list[str], reference: str) -> Image | None:
        """The image without ``save``, when the cache holds every layer and the history aligns."""
        from imgscope import cache

        if not diff_ids:
            return None
        db = cache.open_cache()
        scans = []
        for diff_id in diff_ids:
            scan = db.get(diff_id)
            if scan is None:
                return None
            scans.append(scan)
        image_id = str(attrs.get("Id") or "")
        history = list(reversed(self._history(image_id)))  # the API gives newest first
        # Docker's history gives a layer's size as it counts it (content bytes); podman gives
        # the uncompressed tar's size.
        podman = self.endpoint.engine == "podman"
        empties = align_history(
            [int(h.get("Size") or 0) for h in history],
            [str(h.get("CreatedBy") or "") for h in history],
            [s.tar_bytes if podman else s.size for s in scans],
        )
        if empties is None:
            return None
        raw = config_from_attrs(attrs, history, empties)
        config = parse_config(json.dumps(raw).encode(), f"image {image_id} (from the daemon's inspect)")
        layers = tuple(LayerInfo(index=i, diff_id=d, media_type=LEGACY_LAYER_MEDIA) for i, d in enumerate(diff_ids))
        return Image(
            reference=reference,
            source=f"{self.endpoint.engine} daemon {self.endpoint.url}, layers from the scan cache",
            image_id=image_id,
            config=config,
            layers=layers,
            scans=tuple(scans),
        )

    # ---- image file content (for container --content)

    def image_file(self, image_id: str, path: str, digest: str, limit: int) -> FileContent | None:
        """One file of an image, found by its content hash in one pass over ``save``.

        The daemon has no call that reads one file of an image without creating
        a container, and imgscope never changes daemon state; so the image is
        streamed once and every copy of ``path`` in any layer is hashed until the
        one with the wanted ``digest`` shows up.
        """
        from docker.errors import DockerException

        found: list[FileContent] = []

        def visitor(entry_path: str, size: int) -> Callable[[memoryview], None] | None:
            if entry_path != path or found:
                return None
            hasher = xxhash.xxh3_64()
            buf: bytearray | None = bytearray() if size <= limit else None

            state = {"left": size}

            def sink(view: memoryview) -> None:
                hasher.update(view)
                if buf is not None:
                    buf.extend(view)
                state["left"] -= len(view)
                if state["left"] == 0 and hasher.hexdigest() == digest:
                    found.append(FileContent(size, digest, bytes(buf) if buf is not None else None))

            if size == 0:
                if xxhash.xxh3_64().hexdigest() == digest:
                    found.append(FileContent(0, digest, b""))
                return None
            return sink

        try:
            response = self._save_response(image_id, None)
        except (DockerException, OSError) as exc:
            raise self._error(f"cannot save image {image_id}", exc) from exc

        def fail(exc: BaseException) -> ImgscopeError:
            return ImgscopeError(f"{self.endpoint.label} stopped sending image {image_id} mid-stream: {why(exc)}")

        try:
            _stream_store(body_reader(response, fail), f"image {image_id}", visitor=visitor)
        finally:
            response.close()
        return found[0] if found else None

    # ---- containers

    def _container(self, name: str) -> Any:
        from docker.errors import DockerException, NotFound

        try:
            return self.client.containers.get(name)
        except NotFound as exc:
            raise ImgscopeError(f"container {name} not found in {self.endpoint.label}") from exc
        except (DockerException, OSError) as exc:
            raise self._error(f"cannot inspect container {name}", exc) from exc

    def container_attrs(self, name: str) -> dict[str, Any]:
        """``docker container inspect``."""
        return dict(self._container(name).attrs)

    def _gone(self, container_id: str) -> bool:
        from docker.errors import NotFound

        try:
            self.client.api.inspect_container(container_id)
        except NotFound:
            return True
        except Exception:
            return False
        return False

    def _removed(self, container_id: str, name: str, exc: BaseException) -> ImgscopeError:
        if self._gone(container_id):
            return ImgscopeError(f"container {name} was removed from {self.endpoint.label} during the run")
        return self._error(f"cannot read container {name}", exc)

    def container(self, name: str, image_bytes_below: Callable[[str], int] | None = None) -> ContainerSnapshot:
        """The writable layer's changes (``docker diff``), each read back with ``get_archive``.

        Each archive request costs the engine a mount and a lock (about 0.1 s),
        so paths are read in as few requests as :func:`plan_reads` finds worth
        it; ``image_bytes_below(dir)`` (bytes the image holds under a directory)
        lets it read a whole changed directory when that is cheaper.
        """
        from docker.errors import DockerException

        attrs = self.container_attrs(name)
        cid = str(attrs.get("Id") or name)
        shown = str(attrs.get("Name") or name).lstrip("/") or name
        try:
            raw_changes = self.client.api.diff(cid)
        except (DockerException, OSError) as exc:
            raise self._removed(cid, shown, exc) from exc
        mounts = tuple(
            Mount(
                type=str(m.get("Type") or ""),
                destination=str(m.get("Destination") or ""),
                source=str(m.get("Name") or m.get("Source") or ""),
                rw=bool(m.get("RW", True)),
            )
            for m in attrs.get("Mounts") or []
            if isinstance(m, dict)
        )
        listed: dict[str, str] = {}
        for item in raw_changes or []:
            if isinstance(item, dict) and isinstance(item.get("Path"), str):
                listed[item["Path"]] = _DIFF_KINDS.get(int(item.get("Kind", 0)), "C")
        current: dict[str, Entry] = {}
        warnings: list[str] = []
        wanted = {p for p, k in listed.items() if k != "D"}
        reads = plan_reads(listed, [m.destination for m in mounts if m.destination], image_bytes_below)
        for path, whole in reads:
            got = self._read_or_fail(cid, shown, path, wanted, whole)
            if got is not None:
                current.update(got)
        # A hardlink whose target was not read has no hash: read it alone, as a regular file.
        for path, entry in list(current.items()):
            if entry.type == HARDLINK and not entry.digest:
                alone = self._read_or_fail(cid, shown, path, {path}, False)
                if alone is not None and path in alone:
                    current[path] = alone[path]
        # A running container may delete a path between the diff and its read.
        warnings.extend(f"{p} vanished between the diff and its read" for p in sorted(wanted - set(current)))
        changes = tuple(ObservedChange(p, k, current.get(p)) for p, k in sorted(listed.items()))
        config = attrs.get("Config") or {}
        return ContainerSnapshot(
            id=cid,
            name=shown,
            image_ref=str(config.get("Image") or attrs.get("Image") or ""),
            image_id=str(attrs.get("Image") or ""),
            status=str((attrs.get("State") or {}).get("Status") or ""),
            endpoint=self.endpoint.url,
            changes=changes,
            mounts=mounts,
            warnings=tuple(warnings),
        )

    def _read_or_fail(self, cid: str, shown: str, path: str, wanted: set[str], whole: bool) -> dict[str, Entry] | None:
        from docker.errors import DockerException

        try:
            return self._read_path(cid, path, wanted, whole)
        except ImgscopeError:
            raise
        except (DockerException, OSError) as exc:
            raise self._removed(cid, shown, exc) from exc

    def _archive(self, cid: str, path: str) -> Any:
        """Start ``GET /containers/{id}/archive?path=``; None when the path does not exist."""
        from docker.errors import NotFound

        api = self.client.api
        response = api._get(
            api._url("/containers/{0}/archive", cid),
            params={"path": path},
            stream=True,
            headers={"Accept-Encoding": "identity"},
        )
        try:
            api._raise_for_status(response)
        except NotFound:
            response.close()
            if self._gone(cid):
                raise
            return None
        return response

    def _read_path(self, cid: str, path: str, wanted: set[str], whole: bool) -> dict[str, Entry] | None:
        """Entries for ``path`` (and, when ``whole``, every listed path below it) from one archive.

        The archive of a directory holds its subtree; when only the directory's
        own metadata is needed, the stream is closed after its first header.
        """
        response = self._archive(cid, path)
        if response is None:
            return None
        out: dict[str, Entry] = {}
        parent = posixpath.dirname(path)

        def fail(exc: BaseException) -> ImgscopeError:
            return self._removed(cid, cid[:12], exc)

        try:
            reader = io.BufferedReader(body_reader(response, fail), CHUNK)
            with tarfile.open(fileobj=reader, mode="r|") as tf:
                for member in tf:
                    full = posixpath.normpath(posixpath.join(parent, member.name.lstrip("/")))
                    if not _under(full, path):
                        continue
                    if full != path and full not in wanted:
                        continue
                    digest = _hash_member(tf, member)[0] if member.isreg() else ""
                    entry = _member_entry(member, full, digest)
                    if entry.type == HARDLINK:
                        target = out.get(entry.link)
                        if target is not None:
                            entry = dataclasses.replace(entry, digest=target.digest)
                    out[full] = entry
                    if full == path and not (whole and member.isdir()):
                        break  # only the path itself was wanted: stop the stream here
        except tarfile.TarError as exc:
            raise ImgscopeError(f"{self.endpoint.label} sent an unreadable archive of {path} ({exc})") from exc
        finally:
            response.close()
        return out

    def container_file(self, cid: str, path: str, limit: int) -> FileContent | None:
        """A regular file of a container (None when it is absent or not a regular file)."""
        from docker.errors import DockerException

        try:
            response = self._archive(cid, path)
        except (DockerException, OSError) as exc:
            raise self._removed(cid, cid[:12], exc) from exc
        if response is None:
            return None

        def fail(exc: BaseException) -> ImgscopeError:
            return self._removed(cid, cid[:12], exc)

        try:
            reader = io.BufferedReader(body_reader(response, fail), CHUNK)
            with tarfile.open(fileobj=reader, mode="r|") as tf:
                for member in tf:
                    if not member.isreg():
                        return None
                    digest, data = _hash_member(tf, member, keep=limit)
                    return FileContent(member.size, digest, data)
        except tarfile.TarError as exc:
            raise ImgscopeError(f"{self.endpoint.label} sent an unreadable archive of {path} ({exc})") from exc
        finally:
            response.close()
        return None


# --------------------------------------------------------------------------- config without save


def _scan_worker() -> ScanWorker | None:
    """A helper process for the save stream's layers, only when ``IMGSCOPE_WORKERS`` asks for one.

    With the scanner's C loop a helper no longer pays on a stream: relaying
    every byte through a pipe costs more CPU than the scan it takes over, and
    the engine needs a core while it sends.  Measured on 2 cores with the
    bench-app image served as a save stream from memory (``docker save``
    replayed, so the engine's noise is out): 1.6-2.0 s in this process
    against 2.4-2.6 s with the helper; against the real engine 10.8 s both,
    with 2.0 s of CPU against 2.7 s.
    """
    from imgscope.sources.store import forced_workers

    if forced_workers() <= 1:
        return None
    from imgscope.sources.scanproc import ScanWorker

    return ScanWorker()


def _platform_parts(text: str) -> tuple[str, str, str]:
    """``linux/x86_64`` -> (linux, amd64, ''), normalised as FORMATS.md section 2 says."""
    parts = [p.strip().lower() for p in text.split("/")]
    os_ = parts[0] if parts else ""
    arch = parts[1] if len(parts) > 1 else ""
    variant = parts[2] if len(parts) > 2 else ""
    arch = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm"}.get(arch, arch)
    if parts[1:2] == ["armhf"] and not variant:
        variant = "v7"
    return os_, arch, variant


_METADATA_INSTRUCTIONS = frozenset(
    {
        "ENV",
        "CMD",
        "ENTRYPOINT",
        "LABEL",
        "EXPOSE",
        "USER",
        "VOLUME",
        "HEALTHCHECK",
        "ARG",
        "ONBUILD",
        "STOPSIGNAL",
        "SHELL",
        "MAINTAINER",
    }
)
_LAYER_INSTRUCTIONS = frozenset({"RUN", "COPY", "ADD"})


def _looks_empty(created_by: str) -> bool | None:
    """Whether a history step's instruction normally stores no layer (None: cannot tell)."""
    from imgscope.stack import instruction

    text = instruction(created_by)
    word = text.split(" ", 1)[0].upper() if text else ""
    if word in _METADATA_INSTRUCTIONS:
        return True
    if word in _LAYER_INSTRUCTIONS:
        return False
    return None


def align_history(step_sizes: list[int], created_by: list[str], layer_sizes: list[int]) -> list[bool] | None:
    """Which history steps (oldest first) are empty, recovered from sizes; None when not unique.

    The history API drops ``empty_layer`` but gives each step's size, which is
    0 for an empty step and the layer's size otherwise.  Exactly
    ``len(layer_sizes)`` steps own a layer, in order; a step with a non-zero
    size must own one, and only a layer of exactly its size: when sizes
    disagree, nothing is guessed (the caller reads the image instead).  Among
    the alignments that satisfy this, the one whose instructions agree best
    (ENV, CMD... are empty; RUN, COPY, ADD are not) is taken, but only when it
    is the only best one.
    An image without history aligns trivially.
    """
    n, m = len(step_sizes), len(layer_sizes)
    if n == 0:
        return []
    if m > n:
        return None
    inf = float("inf")
    hints = [_looks_empty(c) for c in created_by]
    # best[i][j]: (cost, ways) for steps[i:] with layers[j:] still to place.
    best: list[list[tuple[float, int]]] = [[(inf, 0)] * (m + 1) for _ in range(n + 1)]
    best[n][m] = (0.0, 1)
    for i in range(n - 1, -1, -1):
        for j in range(m, -1, -1):
            options: list[tuple[float, int]] = []
            if step_sizes[i] == 0:  # step i is empty
                cost, ways = best[i + 1][j]
                options.append((cost + (1 if hints[i] is False else 0), ways))
            if j < m and step_sizes[i] == layer_sizes[j]:  # step i owns layer j (never a guess by size)
                cost, ways = best[i + 1][j + 1]
                options.append((cost + (1 if hints[i] is True else 0), ways))
            low = min((c for c, _ in options), default=inf)
            best[i][j] = (low, min(2, sum(w for c, w in options if c == low))) if low < inf else (inf, 0)
    cost, ways = best[0][0]
    if cost == inf or ways != 1:
        return None
    empties: list[bool] = []
    i = j = 0
    while i < n:
        empty_cost = inf
        if step_sizes[i] == 0:
            empty_cost = best[i + 1][j][0] + (1 if hints[i] is False else 0)
        layer_cost = inf
        if j < m and step_sizes[i] == layer_sizes[j]:
            layer_cost = best[i + 1][j + 1][0] + (1 if hints[i] is True else 0)
        if empty_cost <= layer_cost:
            empties.append(True)
        else:
            empties.append(False)
            j += 1
        i += 1
    return empties


def _iso(seconds: Any) -> str | None:
    try:
        return datetime.fromtimestamp(int(seconds), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def config_from_attrs(attrs: dict[str, Any], history: list[dict[str, Any]], empties: list[bool]) -> dict[str, Any]:
    """An image config (Docker's JSON shape) rebuilt from inspect and history answers.

    Created times of history steps come back with one-second precision (the
    API gives Unix seconds); everything else is as the config says.
    """
    raw: dict[str, Any] = {
        "architecture": attrs.get("Architecture") or "",
        "os": attrs.get("Os") or "",
        "created": attrs.get("Created"),
        "config": attrs.get("Config") or {},
        "rootfs": {"type": "layers", "diff_ids": list((attrs.get("RootFS") or {}).get("Layers") or [])},
        "history": [],
    }
    if attrs.get("Variant"):
        raw["variant"] = attrs["Variant"]
    if attrs.get("Author"):
        raw["author"] = attrs["Author"]
    for item, empty in zip(history, empties, strict=True):
        step: dict[str, Any] = {"created": _iso(item.get("Created")), "created_by": item.get("CreatedBy") or ""}
        if item.get("Comment"):
            step["comment"] = item["Comment"]
        if empty:
            step["empty_layer"] = True
        raw["history"].append(step)
    return raw


# --------------------------------------------------------------------------- entry points


def connect(podman: bool = False) -> Daemon:
    """Connect to the engine (Docker, or podman when asked)."""
    return Daemon.connect(podman)


def load(name: str, reference: str, options: LoadOptions, *, podman: bool = False) -> Image:
    """Load a daemon image: what :mod:`imgscope.reference` calls for ``docker://`` and plain names."""
    daemon = Daemon.connect(podman)
    try:
        return daemon.load(name, reference, options)
    finally:
        daemon.close()
