"""Read one file's bytes back from the layer that stored it, without extracting anything.

Why this way: scans keep only hashes, never content, so showing a file means
reading its layer again.  The scanner's visitor hook hands us the bytes of
every regular file as it streams past; we keep only the copies of the one
path we want and pick the copy whose xxh3 hash is the entry's, so the right
version is shown even when several layers stored that path.  For an archive
or layout on disk only the one layer blob is read; for anything else (a
compressed archive, a daemon) the image is streamed once more.  Nothing is
written to disk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import xxhash

from imgscope.errors import ImgscopeError
from imgscope.model import Entry
from imgscope.redact import MASK, find, redact

if TYPE_CHECKING:
    from imgscope.cli.common import SourceOptions
    from imgscope.explore.model import Finding

#: Bytes of a file kept for viewing; larger files show their first part.
VIEW_LIMIT = 2 << 20
#: How many leading bytes decide whether a file is text.
SNIFF = 8192


@dataclass(frozen=True, slots=True)
class FileContent:
    """What the viewer shows: the first bytes of a file, whether it is text, and its identity."""

    path: str
    layer: int
    size: int
    digest: str
    data: bytes
    truncated: bool

    @property
    def is_text(self) -> bool:
        return is_text(self.data)

    def text(self) -> str:
        """The content decoded as UTF-8 (invalid bytes replaced), secrets masked, for text files.

        The viewer is an output like any other: a ``.env`` or a config file
        shows ``SECRET_KEY=********``, never the value (``imgscope.redact``).
        """
        return redact(self.data.decode("utf-8", "replace"))

    def masked_bytes(self, limit: int) -> bytes:
        """The first ``limit`` bytes, every secret overwritten with ``*`` (same length), for the hex view.

        A binary file is an output too: latin-1 maps each byte to one character,
        so the offsets :func:`imgscope.redact.find` gives are byte offsets.
        """
        # Searched a little past the cut, so a secret that straddles it is still recognised.
        buf = bytearray(self.data[: limit + 4096])
        text = buf.decode("latin-1")
        for hit in find(text):
            # Keep the part the redacted text keeps (``SECRET_KEY=``, ``sk_live_``), mask the rest.
            known = hit.text.split(MASK, 1)[0]
            start = hit.start + len(known) if text.startswith(known, hit.start) else hit.start
            buf[start : hit.end] = b"*" * (hit.end - start)
        return bytes(buf[:limit])


def is_text(data: bytes) -> bool:
    """Text is UTF-8 without NUL bytes in its first few kB (a cut multi-byte character at the end is fine)."""
    head = data[:SNIFF]
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3 and len(data) > len(head) - 3
    return True


class _Capture:
    """A scan visitor that keeps the first bytes of each copy of one path and checks its hash."""

    def __init__(self, path: str, entry: Entry, limit: int) -> None:
        self.path = path
        self.entry = entry
        self.limit = limit
        self.found: tuple[bytes, bool] | None = None

    def __call__(self, path: str, size: int) -> Callable[[memoryview], None] | None:
        if path != self.path or size != self.entry.size or self.found is not None:
            return None
        hasher = xxhash.xxh3_64()
        buf = bytearray()
        left = [size]

        def sink(chunk: memoryview) -> None:
            hasher.update(chunk)
            room = self.limit - len(buf)
            if room > 0:
                buf.extend(chunk[:room])
            left[0] -= len(chunk)
            if left[0] <= 0 and self.found is None and hasher.hexdigest() == self.entry.digest:
                self.found = (bytes(buf), size > self.limit)

        if size == 0:
            if hasher.hexdigest() == self.entry.digest:
                self.found = (b"", False)
            return None
        return sink


def read_file(
    ref: str, opts: SourceOptions, path: str, layer: int, entry: Entry, limit: int = VIEW_LIMIT
) -> FileContent:
    """The content of ``entry`` (a regular file at ``path``, stored by ``layer``) from the image ``ref``."""
    capture = _Capture(path, entry, limit)
    if not _scan_one_layer(ref, opts, layer, capture):
        from imgscope.cli.common import load_image

        load_image(ref, opts, visitor=capture, quiet=True)
    if capture.found is None:
        raise ImgscopeError(f"{path}: layer {layer} no longer holds this file (did the image change?)")
    data, truncated = capture.found
    return FileContent(path, layer, entry.size, entry.digest, data, truncated)


def _scan_one_layer(ref: str, opts: SourceOptions, layer: int, capture: _Capture) -> bool:
    """Scan only the one layer blob when the image is a plain archive, a layout on disk or in a registry."""
    from imgscope import reference
    from imgscope.sources import archive
    from imgscope.sources.common import LoadOptions
    from imgscope.sources.compression import PLAIN, sniff
    from imgscope.units import parse_size

    parsed = reference.parse(ref)
    if parsed.is_daemon:
        return False
    max_bytes = parse_size(opts.max_layer_bytes, "--max-layer-bytes") if opts.max_layer_bytes else None
    if parsed.transport == reference.REGISTRY:  # one layer blob fetched, not the whole image
        from imgscope.sources import registry

        options = LoadOptions(platform=opts.platform, max_layer_bytes=max_bytes, insecure=opts.insecure)
        return registry.scan_one_layer(ref, options, layer, capture)
    path = Path(parsed.location)
    if not path.is_dir():
        try:
            with open(path, "rb") as fh:
                head = fh.read(512)
        except OSError as exc:
            raise ImgscopeError(f"{path}: cannot read ({exc.strerror})") from exc
        if sniff(head) != PLAIN:
            return False  # a compressed archive can only be streamed whole
    store = archive.open_store(path, LoadOptions(max_layer_bytes=max_bytes))
    plan, _fmt = archive.plan_store(store, parsed.tag or opts.image, opts.platform)
    if not 0 <= layer < len(plan.layers):
        return False
    store.scan_many([plan.layers[layer].name], max_bytes=max_bytes, visitor=capture)
    return True


def audit_contents(ref: str, opts: SourceOptions) -> tuple[list[Finding], int] | None:
    """The full audit (secrets in file contents included) of ``ref``, as explorer findings.

    Why a separate pass: the explorer loads from the scan cache, which keeps no
    content, so secrets need the layers read again with the audit's content
    scanner.  The explorer runs this in a child process, so the scan never
    competes with the interface for the interpreter.  None when the audit
    module is not installed.
    """
    import importlib

    from imgscope import stack as stacking
    from imgscope.cli.common import load_image
    from imgscope.explore.model import audit_findings

    try:
        secrets = importlib.import_module("imgscope.analysis.secrets")
    except ModuleNotFoundError:
        return None
    scanner = secrets.ContentScanner()
    image = load_image(ref, opts, visitor=scanner, quiet=True)
    return audit_findings(stacking.build(image), scanner.results())
