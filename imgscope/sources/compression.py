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
from collections.abc import Callable
from typing import IO, Any, Protocol, cast

try:  # ISA-L's inflate: the same API as zlib's at half its CPU per byte (registry layers are gzip)
    from isal import isal_zlib as _inflate_lib

    _INFLATE: Any = _inflate_lib
except ImportError:  # pragma: no cover - isal is a dependency; zlib is the fallback
    _INFLATE = zlib

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
    """Name the compression whose magic ``head`` starts with, else ``plain``.

    A plain tar whose first entry is named ``BZh...`` starts with bzip2's magic:
    when ``head`` holds a whole first block that is a valid tar header, it is a tar.
    """
    if is_tar_header(head[:512]):
        return PLAIN
    for magic, name in _MAGICS:
        if head.startswith(magic):
            return name
    return PLAIN


def is_tar_header(block: bytes) -> bool:
    """Whether ``block`` is a 512-byte tar header with a valid checksum (any tar dialect)."""
    if len(block) < 512:
        return False
    field = block[148:156].replace(b"\x00", b" ").strip()
    try:
        stored = int(field, 8) if field else -1
    except ValueError:
        return False
    return stored == sum(block) - sum(block[148:156]) + 8 * 32


def _read_head(raw: ByteSource, size: int) -> bytes:
    """The first ``size`` bytes (fewer only at the end): a pipe may return less per read."""
    parts: list[bytes] = []
    got = 0
    while got < size:
        data = raw.read(size - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


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
        readinto = getattr(self._raw, "readinto", None)
        if readinto is not None:  # straight into the caller's buffer: no copy of every layer byte
            return int(readinto(buffer) or 0)
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
        self._d = _INFLATE.decompressobj(wbits=31)
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
                self._d = _INFLATE.decompressobj(wbits=31)
            else:
                data = self._d.unconsumed_tail or self._raw.read(CHUNK)
                if not data:
                    raise EOFError("compressed stream ended before the end of its data")
            out: bytes = self._d.decompress(data, CHUNK)
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


class _ZstdFrames:
    """Follows zstd frame boundaries in the compressed bytes, to tell a cut stream from a whole one.

    python-zstandard's stream reader reports a plain end of stream when its
    input stops in the middle of a frame, so a truncated layer would read as a
    shorter (often empty) tar.  Frame and block headers say exactly how many
    bytes follow (RFC 8878), so walking them costs a few operations per block
    and tells whether the input ended where a frame ends.  Anything this walker
    does not understand is left to the decoder, which rejects it itself.
    """

    _FCS_BYTES = (0, 2, 4, 8)
    _DID_BYTES = (0, 1, 2, 4)

    def __init__(self) -> None:
        self._buf = bytearray()
        self._need = 4  # bytes of the next header to collect
        self._state = "magic"
        self._skip = 0  # bytes to pass over before the next header
        self._checksum = False
        self.lost = False  # True when the bytes stopped making sense: trust the decoder

    def feed(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end and not self.lost:
            if self._skip:
                take = min(self._skip, end - pos)
                self._skip -= take
                pos += take
                continue
            piece = data[pos : pos + self._need - len(self._buf)]
            self._buf += piece
            pos += len(piece)
            if len(self._buf) == self._need:
                head = bytes(self._buf)
                self._buf.clear()
                self._step(head)

    def _step(self, head: bytes) -> None:
        if self._state == "magic":
            if head == b"\x28\xb5\x2f\xfd":
                self._state, self._need = "descriptor", 1
            elif head[1:] == b"\x2a\x4d\x18" and head[0] & 0xF0 == 0x50:
                self._state, self._need = "skippable", 4
            else:
                self.lost = True
        elif self._state == "skippable":
            self._skip = int.from_bytes(head, "little")
            self._state, self._need = "magic", 4
        elif self._state == "descriptor":
            fhd = head[0]
            single = bool(fhd & 0x20)
            self._checksum = bool(fhd & 0x04)
            fcs = self._FCS_BYTES[fhd >> 6] or (1 if single else 0)
            self._skip = (0 if single else 1) + self._DID_BYTES[fhd & 3] + fcs
            self._state, self._need = "block", 3
        else:  # a block header: last flag, type, size
            value = int.from_bytes(head, "little")
            last, btype, size = value & 1, (value >> 1) & 3, value >> 3
            if btype == 3:
                self.lost = True
                return
            self._skip = 1 if btype == 1 else size
            if last:
                self._skip += 4 if self._checksum else 0
                self._state, self._need = "magic", 4

    def complete(self) -> bool:
        """Whether the bytes fed so far end exactly at the end of a frame."""
        return self.lost or (self._state == "magic" and not self._buf and not self._skip)


class _Observed(io.RawIOBase):
    """Passes reads through, showing every byte read to ``observe``."""

    def __init__(self, raw: ByteSource, observe: Callable[[bytes], None]) -> None:
        self._raw = raw
        self._observe = observe

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._observe(data)
        return data

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _ZstdChecked:
    """The zstd decoder's output; at its end, an ``EOFError`` if the input stopped inside a frame."""

    def __init__(self, reader: ByteSource, source: _Observed, frames: _ZstdFrames) -> None:
        self._reader = reader
        self._source = source
        self._frames = frames

    def read(self, size: int = -1, /) -> bytes:
        data = self._reader.read(size)
        if not data and size != 0:
            while self._source.read(CHUNK):  # whatever the decoder left unread still counts
                pass
            if not self._frames.complete():
                raise EOFError("compressed stream ended before the end of its data")
        return data


def open_decompressed(raw: ByteSource, *, chunks: bool = False) -> tuple[ByteSource, str]:
    """Wrap ``raw`` in the decoder its first bytes call for; say which one.

    ``chunks``: gzip is returned without a read buffer, each ``read(1 MiB)`` handing over
    the decoder's output as is, for a caller that reads whole chunks (a prefetch thread):
    one copy of every layer byte fewer (a fifth of the CPU of reading a registry layer).
    """
    head = _read_head(raw, 512)
    kind = sniff(head)
    # A buffer smaller than the scanner's 1 MiB reads: BufferedReader copies through its buffer any
    # read that is not larger than the buffer, which would copy every layer byte once more.
    stream: ByteSource = io.BufferedReader(_Prefixed(head, raw), 1 << 16)
    if kind == GZIP:
        return (_GzipMembers(stream) if chunks else io.BufferedReader(_GzipMembers(stream), CHUNK)), kind
    if kind == ZSTD:
        import zstandard

        frames = _ZstdFrames()
        observed = _Observed(stream, frames.feed)
        reader: ByteSource = zstandard.ZstdDecompressor().stream_reader(
            cast(IO[bytes], observed), read_across_frames=True
        )
        return _ZstdChecked(reader, observed, frames), kind
    if kind == XZ:
        return lzma.LZMAFile(cast(IO[bytes], stream)), kind
    if kind == BZIP2:
        return bz2.BZ2File(cast(IO[bytes], stream)), kind
    return stream, kind


def decode_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a corrupt compressed stream raises, for callers to translate."""
    errors: list[type[BaseException]] = [zlib.error, _INFLATE.error, EOFError, lzma.LZMAError, OSError, ValueError]
    try:
        import zstandard

        errors.append(zstandard.ZstdError)
    except ImportError:  # pragma: no cover - zstandard is a dependency
        pass
    return tuple(errors)
