"""Decompression chosen by magic bytes, never by file name or media type.

Media types lie (an eStargz layer says gzip but is many gzip members; a
``docker save | gzip`` archive has no media type at all), so every stream is
sniffed: gzip, zstd, xz, bzip2 or plain.  Each decoder reads across members
or frames, because concatenated streams are legal in all four formats.
"""

from __future__ import annotations

import bz2
import io
import lzma
import zlib
from typing import IO, Protocol, cast

GZIP = "gzip"
ZSTD = "zstd"
XZ = "xz"
BZIP2 = "bzip2"
PLAIN = "plain"

_MAGICS = (
    (b"\x1f\x8b\x08", GZIP),
    (b"\x28\xb5\x2f\xfd", ZSTD),
    (b"\xfd7zXZ\x00", XZ),
    (b"BZh", BZIP2),
)

CHUNK = 1 << 20


class ByteSource(Protocol):
    """Anything with ``read(n)``: files, decompressors, the daemon's save stream."""

    def read(self, size: int = -1, /) -> bytes: ...


def sniff(head: bytes) -> str:
    """Name the compression whose magic ``head`` starts with, else ``plain``."""
    for magic, name in _MAGICS:
        if head.startswith(magic):
            return name
    return PLAIN


class _Prefixed(io.RawIOBase):
    """A stream that first returns bytes already read for sniffing, then the rest."""

    def __init__(self, prefix: bytes, raw: ByteSource) -> None:
        self._prefix = prefix
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        return n


class _GzipMembers(io.RawIOBase):
    """Gzip reader that goes on across members (eStargz) with zlib directly.

    ``gzip.GzipFile`` does the same but several times slower on large layers,
    and its errors are less precise about truncation.
    """

    def __init__(self, raw: ByteSource) -> None:
        self._raw = raw
        self._d = zlib.decompressobj(wbits=31)
        self._pending = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def _decode_more(self) -> bytes:
        """Decode the next piece of output, moving on to the next member at a member's end."""
        while True:
            if self._d.eof:
                data = self._d.unused_data or self._raw.read(CHUNK)
                if not data.strip(b"\x00"):
                    # Trailing zero padding after the last member is tolerated, as gzip -d does.
                    while data:
                        if data.strip(b"\x00"):
                            raise zlib.error("garbage after the last gzip member")
                        data = self._raw.read(CHUNK)
                    return b""
                self._d = zlib.decompressobj(wbits=31)
            else:
                data = self._d.unconsumed_tail or self._raw.read(CHUNK)
                if not data:
                    raise EOFError("compressed stream ended before the end of its data")
            out = self._d.decompress(data, CHUNK)
            if out:
                return out

    def read(self, size: int = -1) -> bytes:
        if not self._pending and not self._eof:
            self._pending = self._decode_more()
            self._eof = not self._pending
        if size < 0:
            chunks = [self._pending]
            self._pending = b""
            while not self._eof:
                more = self._decode_more()
                self._eof = not more
                chunks.append(more)
            return b"".join(chunks)
        out, self._pending = self._pending[:size], self._pending[size:]
        return out

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def open_decompressed(raw: ByteSource) -> tuple[ByteSource, str]:
    """Wrap ``raw`` in the decoder its first bytes call for; say which one."""
    head = raw.read(6)
    kind = sniff(head)
    stream: ByteSource = io.BufferedReader(_Prefixed(head, raw), CHUNK)
    if kind == GZIP:
        return io.BufferedReader(_GzipMembers(stream), CHUNK), kind
    if kind == ZSTD:
        import zstandard

        reader: ByteSource = zstandard.ZstdDecompressor().stream_reader(
            cast(IO[bytes], stream), read_across_frames=True
        )
        return reader, kind
    if kind == XZ:
        return lzma.LZMAFile(cast(IO[bytes], stream)), kind
    if kind == BZIP2:
        return bz2.BZ2File(cast(IO[bytes], stream)), kind
    return stream, kind


def decode_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a corrupt compressed stream raises, for callers to translate."""
    errors: list[type[BaseException]] = [zlib.error, EOFError, lzma.LZMAError, OSError, ValueError]
    try:
        import zstandard

        errors.append(zstandard.ZstdError)
    except ImportError:  # pragma: no cover - zstandard is a dependency
        pass
    return tuple(errors)
