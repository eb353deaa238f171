"""Saved images on disk: ``docker save`` archives (both layouts), kaniko tarballs, OCI layouts.

Opens the right store for a path (an uncompressed tar is indexed and read in
place; a compressed one is read once as a stream; a directory is a layout),
then reads ``manifest.json`` when there is one (FORMATS.md: prefer it over
Docker 25's ``index.json``) or walks the OCI index.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from imgscope.errors import ImgscopeError
from imgscope.model import Image
from imgscope.sources import oci
from imgscope.sources.common import ImagePlan, LayerRef, LoadOptions, load_json, load_plan
from imgscope.sources.compression import PLAIN, ByteSource, sniff
from imgscope.sources.store import DirStore, Store, StreamStore, TarStore


def open_store(path: Path, options: LoadOptions) -> Store:
    """The store for a path: directory, plain tar, or compressed tar read as a stream."""
    if path.is_dir():
        return DirStore(path)
    if not path.exists():
        raise ImgscopeError(f"{path}: no such file or directory")
    if not stat.S_ISREG(path.stat().st_mode):
        return _pipe_store(path, options)
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        raise ImgscopeError(f"{path}: cannot read ({exc.strerror})") from exc
    if not head:
        raise ImgscopeError(f"{path}: the file is empty")
    kind = sniff(head)
    if kind != PLAIN:
        from imgscope.sources.compression import decode_errors, open_decompressed

        fh = open(path, "rb")  # noqa: SIM115 - closed below, after the stream is consumed
        try:
            stream, _ = open_decompressed(fh)
            outer = _OuterArchive(stream, f"{path}: {kind} archive")
            return StreamStore(outer, str(path), max_bytes=options.max_layer_bytes, visitor=options.visitor)
        except ImgscopeError:
            raise
        except decode_errors() as exc:
            raise ImgscopeError(f"{path}: {kind} archive does not decompress ({exc})") from exc
        finally:
            fh.close()
    if len(head) < 512 or (head[257:262] != b"ustar" and not _v7_tar(head)):
        raise ImgscopeError(f"{path}: unknown format (not a tar archive, an OCI layout or a compressed tar)")
    return TarStore(path)


def _pipe_store(path: Path, options: LoadOptions) -> Store:
    """A FIFO, ``/dev/stdin`` or ``<(docker save ...)``: opened once and read once, as a stream.

    Such a path cannot be reopened or sought: sniffing it and then opening it
    again would lose what the sniff read.
    """
    from imgscope.sources.compression import decode_errors, open_decompressed

    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below, after the stream is consumed
    except OSError as exc:
        raise ImgscopeError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        stream, kind = open_decompressed(fh)
        if kind != PLAIN:
            stream = _OuterArchive(stream, f"{path}: {kind} archive")
        return StreamStore(stream, str(path), max_bytes=options.max_layer_bytes, visitor=options.visitor)
    except ImgscopeError:
        raise
    except decode_errors() as exc:
        raise ImgscopeError(f"{path}: archive does not decompress ({exc})") from exc
    finally:
        fh.close()


class _OuterArchive:
    """The decompressed outer archive; its decoder's failures name the archive, not a layer.

    A layer of a compressed archive is read through the archive's decoder, so a
    cut or corrupt archive first shows up while some layer is being scanned;
    without this, the message would blame that layer.
    """

    def __init__(self, stream: ByteSource, what: str) -> None:
        self._stream = stream
        self._what = what

    def read(self, size: int = -1, /) -> bytes:
        from imgscope.sources.compression import decode_errors

        try:
            return self._stream.read(size)
        except EOFError as exc:
            raise ImgscopeError(f"{self._what} is truncated ({exc})") from exc
        except decode_errors() as exc:
            raise ImgscopeError(f"{self._what} does not decompress ({exc})") from exc


def _v7_tar(head: bytes) -> bool:
    """A pre-POSIX tar header still has a valid checksum."""
    try:
        stored = int(head[148:156].split(b"\x00", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    return stored == sum(head) - sum(head[148:156]) + 256


def _repo_tags(entry: dict[str, Any]) -> list[str]:
    """An entry's ``RepoTags``: a list of strings, or null (untagged); anything else counts as untagged."""
    tags = entry.get("RepoTags")
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def _tag_matches(repo_tag: str, wanted: str) -> bool:
    if repo_tag == wanted:
        return True
    name, _, tag = repo_tag.rpartition(":")
    return tag == wanted or (name == wanted and tag == "latest") or repo_tag.endswith("/" + wanted)


def _entry_platform(store: Store, entry: dict[str, Any]) -> tuple[str, str, str] | None:
    config_name = entry.get("Config")
    return oci.config_platform(store, config_name) if isinstance(config_name, str) else None


def _pick_platform(store: Store, entries: list[dict[str, Any]], platform: str) -> list[dict[str, Any]]:
    """Entries whose config is for ``platform``; a clear error when none is."""
    wanted = oci.normalize_platform(platform)
    found = []
    seen = []
    for entry in entries:
        plat = _entry_platform(store, entry)
        seen.append(plat)
        if oci.platform_matches(plat, wanted):
            found.append(entry)
    if found:
        return found
    here = ", ".join(sorted({"/".join(p for p in plat if p) for plat in seen if plat})) or "unknown"
    missing = ""
    if store.exists("index.json"):
        index = load_json(store.read("index.json"), f"{store.label}: index.json")
        if isinstance(index, dict):
            _, notes = oci.walk_index(store, index)
            gone = [n for n in notes if n.missing and oci.platform_matches(n.platform, wanted)]
            if gone:
                missing = f" ({gone[0]}: that platform was not pulled)"
    raise ImgscopeError(
        f"{store.label}: no image for {'/'.join(p for p in wanted if p)}{missing}; platforms here: {here}"
    )


def plan_docker_save(store: Store, tag: str | None, platform: str | None = None) -> ImagePlan:
    """Plan from ``manifest.json`` (legacy, Docker 25+, containerd store, kaniko)."""
    manifest = load_json(store.read("manifest.json"), f"{store.label}: manifest.json")
    if manifest is None:
        raise ImgscopeError(f"{store.label}: manifest.json is null: the archive names no image")
    if not isinstance(manifest, list):
        raise ImgscopeError(f"{store.label}: manifest.json is not a list of images")
    if not manifest:
        raise ImgscopeError(f"{store.label}: manifest.json lists no image")
    entries = [e for e in manifest if isinstance(e, dict)]
    if len(entries) != len(manifest):
        raise ImgscopeError(f"{store.label}: manifest.json has an entry that is not an object")
    if tag and tag.startswith("sha256:"):
        chosen = [e for e in entries if (_digest_from_name(str(e.get("Config", ""))) or "").startswith(tag)]
        if not chosen:
            raise ImgscopeError(f"{store.label}: no image with digest {tag}")
        entries = chosen
    elif tag:
        chosen = [e for e in entries if any(_tag_matches(t, tag) for t in _repo_tags(e))]
        if not chosen:
            known = sorted(t for e in entries for t in _repo_tags(e))
            raise ImgscopeError(
                f"{store.label}: no image tagged {tag!r}" + (f"; tags here: {', '.join(known)}" if known else "")
            )
        entries = chosen
    if platform:
        entries = _pick_platform(store, entries, platform)
    # The same config listed twice is one image; two configs under one tag are two images.
    distinct = list({str(e.get("Config")): e for e in entries}.values())
    if len(distinct) > 1:
        listing = "; ".join(
            (",".join(_repo_tags(e)) or "untagged")
            + f" ({oci.fmt_platform(_entry_platform(store, e))}, {_short_config(e)})"
            for e in distinct
        )
        what = f"{len(distinct)} images tagged {tag!r}" if tag else f"{len(distinct)} images"
        raise ImgscopeError(
            f"{store.label}: holds {what}, pick one with --image TAG or --image sha256:DIGEST: {listing}"
        )
    entry = entries[0]
    return _plan_entry(store, entry)


def _short_config(entry: dict[str, Any]) -> str:
    """The image ID of a manifest.json entry, shortened for a listing (its config name when not a digest)."""
    name = str(entry.get("Config", "?"))
    digest = _digest_from_name(name)
    return oci.short_digest(digest) if digest else name[:24]


def _plan_entry(store: Store, entry: dict[str, Any]) -> ImagePlan:
    config_name = entry.get("Config")
    layers = entry.get("Layers")
    if not isinstance(config_name, str) or not isinstance(layers, list):
        raise ImgscopeError(f"{store.label}: manifest.json entry lacks Config or Layers")
    if not store.exists(config_name):
        raise ImgscopeError(f"{store.label}: config {config_name} named in manifest.json is missing")
    sources = entry.get("LayerSources") or {}
    refs = []
    for name in layers:
        if not isinstance(name, str):
            raise ImgscopeError(f"{store.label}: manifest.json has a layer name that is not a string")
        if not store.exists(name):
            raise ImgscopeError(f"{store.label}: layer {name} named in manifest.json is missing")
        digest, media, size = _layer_facts(store, name, sources)
        refs.append(LayerRef(name=name, digest=digest, media_type=media, compressed_size=size))
    config_digest = _digest_from_name(config_name)
    return ImagePlan(
        config_name=config_name,
        layers=tuple(refs),
        tags=tuple(_repo_tags(entry)),
        manifest_digest=_manifest_digest(store, config_digest),
        config_digest=config_digest,
    )


def _digest_from_name(name: str) -> str | None:
    """``blobs/sha256/<hex>``, ``<hex>.json``, ``sha256:<hex>``, ``<hex>.tar.gz`` -> ``sha256:<hex>``."""
    base = name.rsplit("/", 1)[-1]
    if base.startswith("sha256:"):
        base = base[len("sha256:") :]
    for suffix in (".json", ".tar.gz", ".tar"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    if len(base) == 64 and all(c in "0123456789abcdef" for c in base):
        return "sha256:" + base
    return None


def _layer_facts(store: Store, name: str, sources: dict[str, Any]) -> tuple[str | None, str | None, int | None]:
    """Digest, media type and stored size of a layer named in manifest.json."""
    if name.startswith("blobs/"):
        digest = _digest_from_name(name)
        src = sources.get(digest or "") if isinstance(sources, dict) else None
        if isinstance(src, dict):
            size = src.get("size")
            return digest, src.get("mediaType"), size if isinstance(size, int) else store.size(name)
        return digest, None, store.size(name)
    if name.endswith(".tar.gz"):  # kaniko: the file is named by its compressed digest
        return _digest_from_name(name), "application/vnd.docker.image.rootfs.diff.tar.gzip", store.size(name)
    return None, "application/vnd.docker.image.rootfs.diff.tar", None


def _manifest_digest(store: Store, config_digest: str | None) -> str | None:
    """Docker 25+ keeps the manifest in blobs/: find the one whose config is ours."""
    if not config_digest or not store.exists("index.json"):
        return None
    try:
        index = load_json(store.read("index.json"), "index.json")
        candidates, _ = oci.walk_index(store, index) if isinstance(index, dict) else ([], [])
    except ImgscopeError:
        return None
    for cand in candidates:
        config = cand.manifest.get("config") or {}
        if isinstance(config, dict) and config.get("digest") == config_digest:
            return cand.digest
    return None


def plan_store(store: Store, tag: str | None, platform: str | None) -> tuple[ImagePlan, str]:
    """Decide the format of what a store holds and plan the image; name the format."""
    if store.exists("manifest.json"):
        plan = plan_docker_save(store, tag, platform)
        fmt = "docker-archive"
        if store.exists("index.json"):
            compressed = any(ref.media_type and ref.media_type.endswith(("+gzip", "+zstd")) for ref in plan.layers)
            fmt += " (docker 25+, containerd store)" if compressed else " (docker 25+)"
        return plan, fmt
    if store.exists("index.json"):
        return oci.plan_layout(store, tag, platform), "oci"
    if store.exists("repositories"):
        raise ImgscopeError(
            f"{store.label}: no manifest.json: this is the pre-Docker-1.10 save layout, which imgscope cannot read"
        )
    if isinstance(store, DirStore):
        for name in ("index.json", "manifest.json"):
            if (store.root / name).is_dir():
                raise ImgscopeError(f"{store.label}: {name} is a directory, not a file")
    raise ImgscopeError(f"{store.label}: unknown format (no manifest.json or index.json)")


def load_path(path: Path, reference: str, tag: str | None, options: LoadOptions) -> Image:
    """Load an image from an archive or layout on disk."""
    store = open_store(path, options)
    plan, fmt = plan_store(store, tag or options.image, options.platform)
    return load_plan(store, plan, reference, fmt, options)
