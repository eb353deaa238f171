"""One layer tar in, one immutable :class:`~imgscope.model.LayerScan` out.

The scanner parses 512-byte tar headers itself instead of using ``tarfile``:
stream-mode ``tarfile`` is several times slower, copies every member's content
and hides what we need (raw PAX records, the exact header size).  It reads
the decompressed stream once, in large chunks, feeding the same bytes to the
SHA-256 that gives the DiffID and to an xxh3 hash per regular file, so a
scan is complete (every file hashed) and can be cached by DiffID.

Names are normalised (leading ``/`` and ``./`` stripped, ``..`` escapes
refused), whiteouts and opaque markers are turned into lists of paths, and
sizes are counted the way Docker counts them (FORMATS.md sections 4 and 5).
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
from collections.abc import Callable

import xxhash

from imgscope.errors import ImgscopeError
from imgscope.model import BLOCK, CHAR, DIR, FIFO, FILE, HARDLINK, SYMLINK, Entry, LayerScan
from imgscope.sources.compression import ByteSource, decode_errors, open_decompressed

BLOCK_SIZE = 512
CHUNK = 1 << 20
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
ZERO_BLOCK = b"\x00" * BLOCK_SIZE
ESTARGZ_NAMES = frozenset({"/stargz.index.json", "/.prefetch.landmark", "/.no.prefetch.landmark"})

# A sink receives a regular file's content, chunk by chunk, for analyses that read
# content (audit, container --content) in the same single pass.
ContentSink = Callable[[memoryview], None]
ContentVisitor = Callable[[str, int], ContentSink | None]

_TYPES = {
    b"0": FILE,
    b"\x00": FILE,
    b"7": FILE,
    b"1": HARDLINK,
    b"2": SYMLINK,
    b"3": CHAR,
    b"4": BLOCK,
    b"5": DIR,
    b"6": FIFO,
}


class _Stream:
    """Chunked reader over the decompressed layer that hashes everything it reads."""

    __slots__ = ("buf", "limit", "name", "pos", "raw", "sha", "total")

    def __init__(self, raw: ByteSource, name: str, limit: int | None) -> None:
        self.raw = raw
        self.name = name
        self.limit = limit
        self.sha = hashlib.sha256()
        self.buf = b""
        self.pos = 0
        self.total = 0

    def _fill(self) -> bool:
        chunk = self.raw.read(CHUNK)
        if not chunk:
            return False
        self.sha.update(chunk)
        self.total += len(chunk)
        if self.limit is not None and self.total > self.limit:
            raise ImgscopeError(
                f"{self.name}: layer expands past --max-layer-bytes ({self.limit} bytes); stopped reading it"
            )
        rest = len(self.buf) - self.pos
        self.buf = self.buf[self.pos :] + chunk if rest else chunk
        self.pos = 0
        return True

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes, or fewer only at the end of the stream."""
        while len(self.buf) - self.pos < n:
            if not self._fill():
                break
        out = self.buf[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def feed(self, n: int, sinks: list[Callable[[memoryview], object]]) -> None:
        """Pass the next ``n`` bytes to every sink without building one big string."""
        while n > 0:
            avail = len(self.buf) - self.pos
            if avail == 0:
                if not self._fill():
                    raise ImgscopeError(f"{self.name}: layer tar is truncated (a file's data is cut)")
                avail = len(self.buf) - self.pos
            take = avail if avail < n else n
            if sinks:
                view = memoryview(self.buf)[self.pos : self.pos + take]
                for sink in sinks:
                    sink(view)
            self.pos += take
            n -= take

    def drain(self) -> None:
        """Read to the end so the DiffID covers the padding after the end blocks."""
        self.pos = len(self.buf)
        while self._fill():
            self.pos = len(self.buf)


def _number(field: bytes) -> int:
    """A tar numeric field: octal text, or GNU base-256 when the high bit is set."""
    if field and field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        if field[0] & 0x40:  # negative base-256
            value -= 1 << (8 * (len(field) - 1))
        return value
    text = field.split(b"\x00", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError as exc:
        raise ValueError(f"bad numeric field {text!r}") from exc


def _text(field: bytes) -> str:
    return field.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


def _pax(data: bytes) -> dict[str, str]:
    """Parse PAX records (``"%d %s=%s\\n"``), keeping values as surrogate-escaped text."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            break
        if length <= 0:
            break
        record = data[space + 1 : pos + length - 1]
        pos += length
        key, sep, value = record.partition(b"=")
        if sep:
            out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
    return out


def _checksum_ok(header: bytes) -> bool:
    stored = header[148:156]
    try:
        expected = _number(stored)
    except ValueError:
        return False
    unsigned = sum(header) - sum(stored) + 8 * 32
    return expected == unsigned


def normalize(name: str) -> str | None:
    """Absolute, normalised path of a tar name, or None when it escapes the root."""
    name = name.lstrip("/")
    if not name or name in {".", "./"}:
        return "/"
    norm = posixpath.normpath("/" + name)
    # normpath on an absolute path swallows ".." at the root; check the raw parts.
    depth = 0
    for part in name.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return None
        elif part and part != ".":
            depth += 1
    return norm


def scan_layer(
    raw: ByteSource,
    name: str,
    *,
    max_bytes: int | None = None,
    visitor: ContentVisitor | None = None,
) -> LayerScan:
    """Scan one layer blob (any compression) into a :class:`LayerScan`.

    ``name`` is how errors name the layer (a file in an archive, a blob digest).
    ``max_bytes`` bounds the uncompressed size, for untrusted input.
    ``visitor`` is asked, per regular file, for a sink to receive its content.
    """
    try:
        stream, _kind = open_decompressed(raw)
        return _scan_tar(_Stream(stream, name, max_bytes), visitor)
    except ImgscopeError:
        raise
    except decode_errors() as exc:
        raise ImgscopeError(f"{name}: layer does not decompress ({exc})") from exc


def _scan_tar(s: _Stream, visitor: ContentVisitor | None) -> LayerScan:
    entries: dict[str, Entry] = {}
    whiteouts: list[str] = []
    opaques: list[str] = []
    warnings: list[str] = []
    estargz = False
    pax_global: dict[str, str] = {}
    pax: dict[str, str] = {}
    long_name: str | None = None
    long_link: str | None = None
    first = True
    ended = False
    while True:
        header = s.read(BLOCK_SIZE)
        if not header:
            if first or ended:
                break  # a zero-byte layer file is an empty layer
            raise ImgscopeError(f"{s.name}: layer tar is truncated (no end-of-archive marker)")
        if len(header) < BLOCK_SIZE:
            if ended and not header.strip(b"\x00"):
                break
            raise ImgscopeError(f"{s.name}: layer tar is truncated (a header is cut)")
        if header == ZERO_BLOCK:
            # Keep reading past the end marker, as `tar --ignore-zeros` does: eStargz
            # puts its TOC entry after the first archive's end.
            ended = True
            continue
        if not _checksum_ok(header):
            if ended:
                warnings.append("bytes after the end of the tar archive were ignored")
                s.drain()
                break
            what = "is not a tar archive" if first else "has a corrupt tar header"
            raise ImgscopeError(f"{s.name}: layer {what}")
        first = False
        typeflag = header[156:157]
        try:
            size = _number(header[124:136])
        except ValueError as exc:
            raise ImgscopeError(f"{s.name}: layer has a corrupt tar header ({exc})") from exc
        if size < 0:
            raise ImgscopeError(f"{s.name}: layer has a negative entry size")
        padded = (size + BLOCK_SIZE - 1) // BLOCK_SIZE * BLOCK_SIZE

        if typeflag in (b"x", b"g", b"L", b"K"):
            data = s.read(padded)
            if len(data) < padded:
                raise ImgscopeError(f"{s.name}: layer tar is truncated (in a PAX or long-name record)")
            data = data[:size]
            if typeflag == b"x":
                pax = _pax(data)
            elif typeflag == b"g":
                pax_global.update(_pax(data))
            elif typeflag == b"L":
                long_name = data.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")
            else:
                long_link = data.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")
            continue

        fields = {**pax_global, **pax} if pax_global else pax
        raw_name = fields.get("path") or long_name
        if raw_name is None:
            raw_name = _text(header[0:100])
            if header[257:262] == b"ustar":
                prefix = _text(header[345:500])
                if prefix:
                    raw_name = prefix + "/" + raw_name
        link = fields.get("linkpath") or long_link or _text(header[157:257])
        if "size" in fields:
            with contextlib.suppress(ValueError):
                size = int(fields["size"])
            padded = (size + BLOCK_SIZE - 1) // BLOCK_SIZE * BLOCK_SIZE
        pax_now, pax = pax, {}
        long_name = long_link = None

        kind = _TYPES.get(typeflag)
        content_bytes = size if kind in (FILE, None) or typeflag == b"S" else 0
        if typeflag == b"S":
            kind = FILE
            warnings.append(f"{raw_name}: GNU sparse entry counted by its stored bytes")
        path = normalize(raw_name) if "\x00" not in raw_name else None
        if path is None:
            warnings.append(f"refused entry {raw_name[:200]!r}: it escapes the image root")
            s.feed(padded, [])
            continue
        if kind is None:
            warnings.append(f"{path}: unknown tar type {typeflag!r} read as a regular file")
            kind = FILE

        base = posixpath.basename(path)
        if base.startswith(WHITEOUT):
            parent = posixpath.dirname(path)
            if base == OPAQUE:
                opaques.append(parent)
            elif base.startswith(OPAQUE[:8]):
                pass  # other .wh..wh.* entries (AUFS .wh..wh.plnk) are bookkeeping
            elif base == WHITEOUT:
                warnings.append(f"{path}: invalid whiteout '.wh.' with no name, ignored")
            else:
                whiteouts.append(posixpath.join(parent, base[len(WHITEOUT) :]))
            s.feed(padded, [])
            continue
        if path == "/":
            s.feed(padded, [])
            continue

        digest = ""
        if kind == FILE:
            hasher = xxhash.xxh3_64()
            sinks: list[Callable[[memoryview], object]] = [hasher.update]
            if visitor is not None:
                sink = visitor(path, size)
                if sink is not None:
                    sinks.append(sink)
            s.feed(size, sinks)
            s.feed(padded - size, [])
            digest = hasher.hexdigest()
        else:
            s.feed(padded, [])

        try:
            mode = _number(header[100:108]) & 0o7777
            uid = int(pax_now["uid"]) if "uid" in pax_now else _number(header[108:116])
            gid = int(pax_now["gid"]) if "gid" in pax_now else _number(header[116:124])
            mtime = int(float(pax_now["mtime"])) if "mtime" in pax_now else _number(header[136:148])
            devmajor = _number(header[329:337]) if kind in (CHAR, BLOCK) else 0
            devminor = _number(header[337:345]) if kind in (CHAR, BLOCK) else 0
        except ValueError as exc:
            raise ImgscopeError(f"{s.name}: corrupt tar header for {path} ({exc})") from exc

        if kind == CHAR and devmajor == 0 and devminor == 0:
            warnings.append(f"{path}: char device 0/0 is a leaked overlay whiteout; read as one")
            whiteouts.append(path)
            continue

        xattrs = tuple(
            sorted((k[len("SCHILY.xattr.") :], v) for k, v in pax_now.items() if k.startswith("SCHILY.xattr."))
        )
        entry_size = content_bytes if kind == FILE else 0
        if kind == SYMLINK:
            entry_size = len(link.encode("utf-8", "surrogateescape"))
        elif kind == HARDLINK:
            target = normalize(link)
            if target is None:
                warnings.append(f"{path}: hardlink target {link!r} escapes the image root, ignored")
                continue
            link = target
            found = entries.get(target)
            if found is None:
                warnings.append(f"{path}: hardlink to {target}, which this layer does not hold")
            else:
                digest = found.digest
        if path in ESTARGZ_NAMES:
            estargz = True
        entries.pop(path, None)  # a later entry of the same name replaces the earlier one
        entries[path] = Entry(
            path=path,
            type=kind,
            mode=mode,
            uid=uid,
            gid=gid,
            size=entry_size,
            tar_size=content_bytes,
            mtime=mtime,
            link=link if kind in (SYMLINK, HARDLINK) else "",
            digest=digest,
            xattrs=xattrs,
            devmajor=devmajor,
            devminor=devminor,
        )
    return LayerScan(
        diff_id="sha256:" + s.sha.hexdigest(),
        tar_bytes=s.total,
        entries=tuple(entries.values()),
        whiteouts=tuple(whiteouts),
        opaques=tuple(opaques),
        warnings=tuple(warnings),
        estargz=estargz,
    )
