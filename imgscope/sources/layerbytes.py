"""Read an image's layer tars again, uncompressed, for the rare questions a scan cannot answer.

Why this exists: a scan keeps facts, never bytes (and often comes from the
cache without reading anything), which is right for every analysis but one:
what a ``docker push`` would transfer when the source stores its layers
uncompressed (``docker save`` archives, Docker 25's graphdriver archives, a
daemon).  That is each layer tar gzipped, so the bytes are needed again.
Making every scan gzip every layer would slow the default path for a figure
most runs never ask for; so ``imgscope ci --max-compressed-size`` calls
:func:`gzip_sizes` here, only when the rule is on and the manifest has no
compressed sizes, and pays one more read of the source.

Layers are recognised by content, not by name: every member of the archive
(every blob of an OCI layout, every member of the daemon's ``save`` stream)
is decompressed and hashed, and only those whose SHA-256 is a DiffID the
caller asked for are kept.  That needs no manifest, which ``docker save``
writes last, so compressed archives and the daemon are read in one streaming
pass, like the sources themselves read them.  Members that are plain and
not the size of a wanted layer tar are skipped unread.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, cast

from imgscope.errors import ImgscopeError
from imgscope.sources.common import LoadOptions
from imgscope.sources.compression import CHUNK, PLAIN, ByteSource, decode_errors, open_decompressed

#: Docker's push compresses with Go's gzip at its default level, which is 6.
PUSH_GZIP_LEVEL = 6


def gzip_measure(stream: ByteSource, level: int = PUSH_GZIP_LEVEL) -> tuple[str, int]:
    """The DiffID (sha256 of the bytes) and the gzip size at ``level`` of one uncompressed layer stream."""
    sha = hashlib.sha256()
    # wbits 31: a gzip wrapper (10-byte header, 8-byte trailer), as Go's gzip.Writer writes.
    packer = zlib.compressobj(level, zlib.DEFLATED, 31)
    size = 0
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            break
        sha.update(chunk)
        size += len(packer.compress(chunk))
    size += len(packer.flush())
    return "sha256:" + sha.hexdigest(), size


def gzip_sizes(
    text: str,
    options: LoadOptions,
    wanted: Mapping[str, int],
    level: int = PUSH_GZIP_LEVEL,
) -> dict[str, int]:
    """Gzip sizes of the layers whose DiffIDs are the keys of ``wanted`` (values: their tar lengths).

    Raises :class:`ImgscopeError` when the source no longer holds one of them.
    """
    out: dict[str, int] = {}

    def measure(stream: ByteSource) -> bool:
        diff_id, size = gzip_measure(stream, level)
        if diff_id in wanted:
            out[diff_id] = size
        return len(out) == len(wanted)

    if wanted:
        read_layers(text, options, set(wanted.values()), measure)
    missing = [d for d in wanted if d not in out]
    if missing:
        raise ImgscopeError(f"{text}: layer {missing[0]} could not be read again to measure its gzip size")
    return out


def read_layers(
    text: str,
    options: LoadOptions,
    sizes: set[int],
    consume: Callable[[ByteSource], bool],
) -> None:
    """Feed every candidate layer of REF ``text``, uncompressed, to ``consume`` until it returns True.

    ``sizes`` are the tar lengths of the wanted layers: a plain member of
    another length is skipped unread.
    """
    from imgscope import reference

    ref = reference.parse(text)
    if ref.is_daemon:
        _read_daemon(ref.location, ref.transport == reference.PODMAN, options, sizes, consume)
        return
    path = Path(ref.location)
    label = str(path)
    try:
        if path.is_dir():
            for blob in _blobs(path):
                with open(blob, "rb") as fh:
                    if _offer(fh, os.path.getsize(blob), sizes, consume):
                        return
            return
        with open(path, "rb") as fh:
            outer, _ = open_decompressed(fh)
            _read_tar_stream(outer, sizes, consume)
    except ImgscopeError:
        raise
    except _read_errors() as exc:
        raise ImgscopeError(f"{label}: cannot read the layers again ({exc})") from exc


def _read_errors() -> tuple[type[BaseException], ...]:
    """What a corrupt tar or compressed stream raises while it is read again."""
    return (tarfile.TarError, *decode_errors())


def _blobs(root: Path) -> Iterator[Path]:
    """The blob files of an OCI layout, in a stable order."""
    for dirpath, _dirs, files in sorted(os.walk(root / "blobs")):
        for name in sorted(files):
            yield Path(dirpath) / name


def _offer(raw: ByteSource, size: int, sizes: set[int], consume: Callable[[ByteSource], bool]) -> bool:
    """Decompress one member or blob and hand it on, unless it is plain and of no wanted length."""
    stream, kind = open_decompressed(raw)
    if kind == PLAIN and size not in sizes:
        return False
    return consume(stream)


def _read_tar_stream(stream: ByteSource, sizes: set[int], consume: Callable[[ByteSource], bool]) -> None:
    with tarfile.open(fileobj=cast(IO[bytes], stream), mode="r|") as tf:
        for member in tf:
            if not member.isfile():
                continue
            fh = tf.extractfile(member)
            if fh is not None and _offer(fh, member.size, sizes, consume):
                return


def _read_daemon(
    name: str, podman: bool, options: LoadOptions, sizes: set[int], consume: Callable[[ByteSource], bool]
) -> None:
    """One more ``docker save`` stream of the image, read as it arrives."""
    import io

    from imgscope.sources import daemon as engine

    client = engine.Daemon.connect(podman)
    try:
        attrs = client.image_attrs(name, False, options.platform)
        image_id = str(attrs.get("Id") or name)
        # The daemon source has no public "save stream" call; its own helper starts the request.
        response = client._save_response(image_id, options.platform)
        try:

            def fail(exc: BaseException) -> ImgscopeError:
                return ImgscopeError(f"{client.endpoint.label} stopped sending image {name}: {engine.why(exc)}")

            reader = io.BufferedReader(engine.body_reader(response, fail), CHUNK)
            try:
                _read_tar_stream(reader, sizes, consume)
            except _read_errors() as exc:
                raise ImgscopeError(f"image {name}: cannot read its layers again ({exc})") from exc
        finally:
            response.close()
    finally:
        client.close()
