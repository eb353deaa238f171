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
import dataclasses
import functools
import gc
import hashlib
import os
import posixpath
import queue
import re
import threading
from collections.abc import Callable, Iterator
from typing import Protocol
from zlib import adler32

import xxhash

from imgscope.errors import ImgscopeError
from imgscope.model import BLOCK, CHAR, DIR, ENTRY_FIELDS, FIFO, FILE, HARDLINK, SYMLINK, Entry, LayerScan
from imgscope.sources.compression import PLAIN, ByteSource, decode_errors, open_decompressed, sniff

BLOCK_SIZE = 512
CHUNK = 1 << 20
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
ZERO_BLOCK = b"\x00" * BLOCK_SIZE
# Largest PAX or GNU long-name record read (Go's archive/tar limit, maxSpecialFileSize).
MAX_RECORD = 1 << 20
# Warnings kept per layer: a hostile layer can earn one per entry, a million of them.
MAX_WARNINGS = 100
# One chunk behind the unread rest of the last one, which is under a header or a record.
_CAPACITY = CHUNK + MAX_RECORD + 2 * BLOCK_SIZE
_SPECIAL = frozenset((b"x", b"g", b"L", b"K"))
# Types Go's archive/tar reads as a header alone (isHeaderOnlyType): a size is not data.
_HEADER_ONLY = frozenset((b"1", b"2", b"3", b"4", b"5", b"6"))
# Extended attributes kept, in characters of names and values: per entry, and per layer.
MAX_XATTR_ENTRY = 64 * 1024
MAX_XATTR_LAYER = 4 * 1024 * 1024
_PAX_INT = re.compile(r"([+-]?[0-9]+)")
_PAX_TIME = re.compile(r"([+-]?[0-9]+)(?:\.[0-9]*)?")
_xxh3_hex = xxhash.xxh3_64_hexdigest
ESTARGZ_NAMES = frozenset({"/stargz.index.json", "/.prefetch.landmark", "/.no.prefetch.landmark"})


def _fast_path() -> Callable[..., int] | None:
    """The C loop for plain entries (``_tarscan.c``), or None: not built, or ``IMGSCOPE_PURE_SCAN=1``.

    It takes the entries whose rules are simple and stops at the first it is
    not sure of, which the Python loop below takes; both give the same scan.
    The variable exists to compare the two (tests, benchmarks).
    """
    if os.environ.get("IMGSCOPE_PURE_SCAN") == "1":
        return None
    try:
        from imgscope import _tarscan
    except ImportError:  # built where no C compiler was at hand
        return None
    names = tuple(field.name for field in dataclasses.fields(Entry))
    if names != ENTRY_FIELDS:  # the C loop fills an Entry's fields in this order
        return None
    setters = tuple(getattr(Entry, name) for name in names)
    _tarscan.configure(Entry, setters, FILE, DIR, SYMLINK, ESTARGZ_NAMES, _xxh3_hex)
    return _tarscan.run


_fast = _fast_path()

# A sink receives a regular file's content, chunk by chunk, for analyses that read
# content (audit, container --content) in the same single pass.  The view it gets is
# of a reused buffer: valid during the call only (copy what must be kept).
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
    # GNU dumpdir (``tar -G``): a directory whose data lists its names for incremental restores.
    b"D": DIR,
}


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cycle collector while a large image's objects are built.

    Loading and stacking 200,000 entries allocates millions of small objects
    (entries, changes, tree nodes), none of them in reference cycles; yet the
    collector runs every few hundred allocations and, as the heap grows, walks
    more and more of them: a third of the time of stacking.  Nothing is frozen
    afterwards: in a long-lived process (the test suite, ``explore``) frozen
    garbage would never be collected.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Mapped(Protocol):
    """A layer's bytes in memory (a mapped file), which the scan tells when it is done with a part."""

    @property
    def view(self) -> memoryview: ...

    def release(self, upto: int) -> None:
        """The bytes before ``upto`` will not be looked at again (they may still be, harmlessly)."""
        ...


class _Stream:
    """Chunked reader over the decompressed layer that hashes everything it reads.

    Reads go into two reused buffers (no new ``bytes`` per chunk, no copy of a
    file's content), and the SHA-256 of each chunk runs on a helper thread
    while this one parses the chunk and hashes its files: ``hashlib`` releases
    the GIL, so the DiffID, the slowest hash, costs almost no wall time on a
    second core.  A buffer is refilled only after the helper is done with it.
    """

    __slots__ = (
        "_bufs",
        "_cur",
        "_done",
        "_jobs",
        "_mapped",
        "_pending",
        "_readinto",
        "_thread",
        "end",
        "limit",
        "name",
        "pos",
        "raw",
        "sha",
        "total",
        "trusted",
        "view",
    )

    def __init__(
        self,
        raw: ByteSource | None,
        name: str,
        limit: int | None,
        trusted: str | None = None,
        mapped: Mapped | None = None,
    ) -> None:
        self.raw = raw
        self.name = name
        self.limit = limit
        # A DiffID the caller takes on trust: then no SHA-256 at all (the costliest hash by far).
        self.trusted = trusted
        self.sha = hashlib.sha256()
        self.total = 0
        # The whole layer already in memory (a mapped file): chunks are views of it, no copy.
        self._mapped = mapped
        self._bufs: list[memoryview] = [] if mapped is not None else [memoryview(bytearray(_CAPACITY))]
        self._cur = 0
        self.view = mapped.view if mapped is not None else self._bufs[0]
        self.pos = 0
        self.end = 0
        self._readinto: Callable[[memoryview], int | None] | None = getattr(raw, "readinto", None)
        self._thread: threading.Thread | None = None
        self._jobs: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        self._pending = 0

    def _hash_worker(self) -> None:
        update = self.sha.update
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                update(job)
            except BaseException as exc:  # pragma: no cover - hashlib does not fail on a buffer
                self._done.put(exc)
            else:
                self._done.put(None)

    def _wait(self, keep: int) -> None:
        """Wait until at most ``keep`` chunks are still being hashed."""
        while self._pending > keep:
            failure = self._done.get()
            self._pending -= 1
            if failure is not None:  # pragma: no cover
                raise failure

    def _hash(self, data: memoryview) -> None:
        if self.trusted is not None:
            return
        if self._thread is None:
            if self.total <= CHUNK:  # small layers: a thread would cost more than it saves
                self.sha.update(data)
                return
            self._thread = threading.Thread(target=self._hash_worker, name="imgscope-sha256", daemon=True)
            self._thread.start()
        self._pending += 1
        self._jobs.put(data)

    def _fill(self) -> bool:
        """Read the next chunk behind the bytes not yet consumed; False at the end of the stream."""
        if self._mapped is not None:
            return self._extend()
        rest = self.end - self.pos
        other = 1 - self._cur
        if len(self._bufs) == 1:
            self._bufs.append(memoryview(bytearray(_CAPACITY)))
        self._wait(1)  # the helper may still hash the other buffer's last chunk
        dst = self._bufs[other]
        if rest:
            dst[:rest] = self.view[self.pos : self.end]
        if self._readinto is not None:
            n = self._readinto(dst[rest : rest + CHUNK]) or 0
        else:
            assert self.raw is not None  # only a mapped layer has none, and it never gets here
            data = self.raw.read(CHUNK)
            n = len(data)
            dst[rest : rest + n] = data
        if not n:
            return False
        self.total += n
        if self.limit is not None and self.total > self.limit:
            raise ImgscopeError(
                f"{self.name}: layer expands past --max-layer-bytes ({self.limit} bytes); stopped reading it"
            )
        self._hash(dst[rest : rest + n])
        self._cur = other
        self.view = dst
        self.pos = 0
        self.end = rest + n
        return True

    def _extend(self) -> bool:
        """The next chunk of a mapped layer: the view grows by a chunk, nothing is copied.

        Chunk by chunk, as reads would come, so that the byte limit stops the
        scan at the same point and with the same error as when reading.  What
        lies before the previous chunk is parsed and hashed: the mapping may
        let go of it, so that a large layer does not stay resident.
        """
        assert self._mapped is not None
        self._wait(1)  # the helper may still hash the previous chunk, not the ones before it
        self._mapped.release(min(self.pos, self.end - CHUNK))
        n = min(CHUNK, len(self.view) - self.end)
        if n <= 0:
            return False
        self.total += n
        if self.limit is not None and self.total > self.limit:
            raise ImgscopeError(
                f"{self.name}: layer expands past --max-layer-bytes ({self.limit} bytes); stopped reading it"
            )
        self._hash(self.view[self.end : self.end + n])
        self.end += n
        return True

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes (at most ``MAX_RECORD`` + a block), or fewer only at the end of the stream."""
        while self.end - self.pos < n:
            if not self._fill():
                break
        start = self.pos
        stop = min(start + n, self.end)
        self.pos = stop
        return bytes(self.view[start:stop])

    def feed(self, n: int, sinks: list[Callable[[memoryview], object]]) -> None:
        """Pass the next ``n`` bytes to every sink without building one big string.

        A sink sees a view of a reused buffer: valid only during the call.
        """
        while n > 0:
            avail = self.end - self.pos
            if avail == 0:
                if not self._fill():
                    raise ImgscopeError(f"{self.name}: layer tar is truncated (a file's data is cut)")
                avail = self.end - self.pos
            take = avail if avail < n else n
            if sinks:
                view = self.view[self.pos : self.pos + take]
                for sink in sinks:
                    sink(view)
            self.pos += take
            n -= take

    def file_digest(self, size: int, padded: int, sink: ContentSink | None) -> str:
        """xxh3 of a regular file's ``size`` bytes, skipping its padding; ``sink`` sees them too."""
        start = self.pos
        if self.end - start >= padded:  # the whole file is in the buffer: one call, no hasher object
            view = self.view[start : start + size]
            if sink is not None:
                sink(view)
            self.pos = start + padded
            return _xxh3_hex(view)
        hasher = xxhash.xxh3_64()
        self.feed(size, [hasher.update] if sink is None else [hasher.update, sink])
        self.feed(padded - size, [])
        return hasher.hexdigest()

    def skip(self, n: int) -> None:
        """Pass over ``n`` bytes (padding, content that is not hashed)."""
        if self.end - self.pos >= n:
            self.pos += n
        else:
            self.feed(n, [])

    def rest(self) -> tuple[int, bytes]:
        """Read to the end, so the DiffID covers every byte: how many bytes were left, and a block.

        The block is the 512 bytes at the first non-zero byte left, aligned so that
        a tar header there can be read, or ``b""`` when every byte left is zero (the
        usual padding of a tar record).
        """
        count = 0
        block = b""
        while True:
            if self.end > self.pos:
                count += self.end - self.pos
                if not block:
                    data = self.view[self.pos : self.end].tobytes()
                    stripped = data.lstrip(b"\x00")
                    if stripped:
                        at = (len(data) - len(stripped)) & ~(BLOCK_SIZE - 1)
                        block = data[at : at + BLOCK_SIZE]
            self.pos = self.end
            if not self._fill():
                return count, block

    def digest(self) -> str:
        """The SHA-256 of every byte read, once the helper has hashed them all."""
        if self.trusted is not None:
            return self.trusted
        self._wait(0)
        return "sha256:" + self.sha.hexdigest()

    def close(self) -> None:
        """Stop the helper thread (after an error too: it must not outlive the scan); drop the buffers.

        After an error a traceback may keep this object alive for a while: it
        should not keep its 4 MiB of buffers alive with it.
        """
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None
        self.view = memoryview(b"")
        self._mapped = None
        self._bufs.clear()


def _number(field: bytes) -> int:
    """A tar numeric field: octal text, or GNU base-256 when the high bit is set."""
    if field[:1] == b"0":  # the common case: zero-padded octal digits, then NUL or space
        try:
            return int(field.rstrip(b" \x00"), 8)
        except ValueError:
            pass  # the careful way below says what is wrong
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


_TERMINATORS = frozenset((0, 32))


def _octal_fields(header: bytes) -> tuple[int, int, int, int, int] | None:
    """Mode, uid, gid, size and mtime in one go when all five are plain octal digits (nearly always).

    Each field then is its digits and one NUL or space; anything else (base-256,
    no terminator, blanks) returns None and goes the careful way, :func:`_number`.
    """
    t = _TERMINATORS
    if header[107] in t and header[115] in t and header[123] in t and header[135] in t and header[147] in t:
        try:
            return (
                int(header[100:107], 8),
                int(header[108:115], 8),
                int(header[116:123], 8),
                int(header[124:135], 8),
                int(header[136:147], 8),
            )
        except ValueError:
            return None
    return None


def _plain_header(header: bytes) -> tuple[int, int, int, int, int] | None:
    """:func:`_octal_fields` of a header whose checksum is right, checked in two C calls; None to go the careful way.

    For the header of nearly every entry: ASCII only (so its byte sum is below
    Adler-32's modulus, and signed and unsigned sums agree), a checksum field
    of octal digits starting with ``0``, plain octal numeric fields.  Then one
    ``adler32`` of the whole block gives its byte sum.  Anything else, a wrong
    checksum included, returns None: :func:`_checksum_ok` and :func:`_octal_fields`
    then decide, as they always did.
    """
    if not header.isascii() or header[148] != 48:  # 48: "0"
        return None
    fields = _octal_fields(header)
    if fields is None:
        return None
    stored = header[148:156]
    try:
        expected = int(stored.rstrip(b" \x00"), 8)
    except ValueError:
        return None
    # Sum of the header with its checksum field read as eight spaces (adler32's low half is 1 + the sum).
    return fields if expected == (adler32(header) & 0xFFFF) - (adler32(stored) & 0xFFFF) + 8 * 32 else None


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


def _child_index(entries: dict[str, Entry]) -> dict[str, list[str]]:
    """Every path of ``entries`` under each of its parents (implied directories included)."""
    kids: dict[str, list[str]] = {}
    for path in entries:
        _index_path(kids, path)
    return kids


def _index_path(kids: dict[str, list[str]], path: str) -> None:
    """List ``path`` under its parent, and each implied ancestor under its own, up to one already listed."""
    child = path
    while child != "/":
        parent = child[: child.rfind("/")] or "/"
        siblings = kids.get(parent)
        if siblings is None:
            kids[parent] = [child]
        else:
            siblings.append(child)
            break
        child = parent


def _cut_below(path: str, entries: dict[str, Entry], kids: dict[str, list[str]], shadowed: list[Entry]) -> None:
    """Move what ``entries`` holds below ``path`` to ``shadowed`` (the index lists implied directories too)."""
    todo = list(kids.pop(path, ()))
    while todo:
        child = todo.pop()
        found = entries.pop(child, None)
        if found is not None:
            shadowed.append(found)
        todo.extend(kids.pop(child, ()))


def _drop_replaced(entries: dict[str, Entry], shadowed: list[Entry]) -> None:
    """Move to ``shadowed`` the entries a later non-directory of this layer removed with their directory.

    Docker's UnpackLayer ``RemoveAll``s a path before writing a non-directory
    there, so what the layer had put below it (under a listed or an implied
    directory) is gone.  ``entries`` keeps insertion order (a replaced name is
    re-inserted), which is tar order.  Only the distinct parent directories
    are walked up, so a layer without such a replacement costs one set.
    """
    parents = {p[: p.rfind("/")] or "/" for p in entries}
    blocked: set[str] = set()
    for directory in parents:
        up = directory
        while up != "/":
            found = entries.get(up)
            if found is not None and found.type != DIR:
                blocked.add(directory)
                break
            up = up[: up.rfind("/")] or "/"
    if not blocked:
        return
    order = {p: i for i, p in enumerate(entries)}
    for path in list(entries):
        parent = path[: path.rfind("/")] or "/"
        if parent not in blocked:
            continue
        up = parent
        while up != "/":
            found = entries.get(up)
            if found is not None and found.type != DIR and order[up] > order[path]:
                shadowed.append(entries.pop(path))
                break
            up = up[: up.rfind("/")] or "/"


class _Whiteouts:
    """The paths a layer whites out that no later entry of the layer undid (yet).

    overlay2 applies a layer into its own directory: a whiteout is a 0/0
    device at its path, and a later entry at that path (or a non-directory
    over one of its parents) ``RemoveAll``s it first, so it whites out
    nothing.  ``below`` indexes the paths by each parent, so a write only
    looks at the whiteouts under it (a crafted layer may hold 100,000).
    """

    __slots__ = ("_below", "_paths")

    def __init__(self) -> None:
        self._paths: set[str] = set()
        self._below: dict[str, set[str]] = {}

    def __bool__(self) -> bool:
        return bool(self._paths)

    def add(self, path: str) -> None:
        self._paths.add(path)
        up = path
        while up != "/":
            up = up[: up.rfind("/")] or "/"
            self._below.setdefault(up, set()).add(path)

    def written(self, path: str, replaces: bool) -> None:
        """An entry is written at ``path``; ``replaces``: what stood there goes, with all below it."""
        if path in self._paths:
            self._drop(path)
        if replaces:
            for below in list(self._below.get(path, ())):
                self._drop(below)

    def _drop(self, path: str) -> None:
        self._paths.discard(path)
        up = path
        while up != "/":
            up = up[: up.rfind("/")] or "/"
            under = self._below.get(up)
            if under is not None:
                under.discard(path)
                if not under:
                    del self._below[up]

    def undone(self, recorded: list[str]) -> tuple[str, ...]:
        """Of the whiteouts recorded, in order, those no longer live."""
        return tuple(dict.fromkeys(p for p in recorded if p not in self._paths))


def _check_pax(fields: dict[str, str], layer: str, name: str) -> None:
    """Refuse PAX numbers Go's archive/tar refuses (its mergePAX): Docker fails to load such a layer.

    A negative or non-decimal size would also make the scan loop go backwards
    or forever; a huge mtime (``1e400``) would overflow.
    """
    for key in ("size", "uid", "gid", "mtime", "atime", "ctime"):
        value = fields.get(key)
        if value is None:
            continue
        ok = _PAX_TIME.fullmatch(value) if key.endswith("time") else _PAX_INT.fullmatch(value)
        if ok is not None:
            number = int(ok.group(1))
            if -(1 << 63) <= number < (1 << 63) and not (key == "size" and number < 0):
                continue
        raise ImgscopeError(f"{layer}: layer has a bad PAX {key}={value[:40]!r} for {name[:200]!r}")


def _checksum_ok(header: bytes) -> bool:
    """Whether the header's checksum field matches the (unsigned) sum of its bytes.

    ``zlib.adler32`` of 256 bytes holds their exact sum in its low 16 bits
    (at most 255 * 256 = 65280, below Adler's modulus 65521): two C calls
    instead of summing 512 Python ints, which cost more than the rest of a header.
    """
    stored = header[148:156]
    try:
        expected = _number(stored)
    except ValueError:
        return False
    unsigned = (adler32(header[:256]) & 0xFFFF) + (adler32(header[256:]) & 0xFFFF) - 2
    unsigned += 8 * 32 - sum(stored)
    if expected == unsigned:
        return True
    # Go's archive/tar (and so Docker) also takes the sum of the bytes read as signed chars,
    # which some old tars wrote: bytes 128..255 count 256 less each.
    high = sum(1 for b in header if b >= 128) - sum(1 for b in stored if b >= 128)
    return expected == unsigned - 256 * high


def _is_estargz_toc(header: bytes) -> bool:
    """Whether a block after the end-of-archive marker is eStargz's TOC entry (``stargz.index.json``)."""
    return _checksum_ok(header) and normalize(_text(header[:100])) == "/stargz.index.json"


def normalize(name: str) -> str:
    """Absolute, normalised path of a tar name, ``..`` clamped at the root as Docker applies it.

    Docker 20.10 applies a layer in a chroot of the layer's directory
    (moby ``pkg/chrootarchive/diff_unix.go`` ``applyLayerHandler``), where
    ``pkg/archive/diff.go`` ``UnpackLayer`` joins ``filepath.Clean(hdr.Name)``
    to ``/``: ``filepath.Join("/", "../../root/x")`` is ``/root/x``, so a name
    climbing above the root lands inside it instead of being refused, and
    the file ships.  ``posixpath.normpath`` of ``"/" + name`` is that rule
    (the name's leading slashes are stripped first: normpath keeps ``//``).
    :func:`climbs` says whether a name did climb, for audit's rule.
    """
    name = name.lstrip("/")
    if name and name[0] != "." and "/." not in name and "//" not in name:
        # The common case (``usr/lib/x``, ``etc/``): no ``.``, ``..`` or empty part.
        return "/" + name.rstrip("/")
    if not name or name in {".", "./"}:
        return "/"
    return posixpath.normpath("/" + name)


def climbs(name: str) -> bool:
    """Whether a tar name's ``..`` parts climb above the root at some point (what Docker clamps)."""
    if ".." not in name:
        return False
    depth = 0
    for part in name.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part and part != ".":
            depth += 1
    return False


def scan_layer(
    raw: ByteSource,
    name: str,
    *,
    max_bytes: int | None = None,
    visitor: ContentVisitor | None = None,
    diff_id: str | None = None,
    mapped: Mapped | None = None,
) -> LayerScan:
    """Scan one layer blob (any compression) into a :class:`LayerScan`.

    ``name`` is how errors name the layer (a file in an archive, a blob digest).
    ``max_bytes`` bounds the uncompressed size, for untrusted input.
    ``visitor`` is asked, per regular file, for a sink to receive its content.
    ``diff_id``, when given, is taken as the layer's DiffID instead of computing
    the SHA-256 of its bytes: for callers that neither verify nor cache (a
    trusted DiffID must never key the cache).
    ``mapped``, when given, holds the same bytes as ``raw`` in memory (a mapped
    file): an uncompressed layer is then scanned in place, without copying
    its bytes into the scanner's buffers; a compressed one is read from ``raw``.
    """
    try:
        if mapped is not None and sniff(bytes(mapped.view[:BLOCK_SIZE])) == PLAIN:
            s = _Stream(None, name, max_bytes, diff_id, mapped)
            try:
                return _scan_tar(s, visitor)
            finally:
                s.close()
        stream, _kind = open_decompressed(raw)
        s = _Stream(stream, name, max_bytes, diff_id)
        try:
            return _scan_tar(s, visitor)
        finally:
            s.close()
    except ImgscopeError:
        raise
    except decode_errors() as exc:
        raise ImgscopeError(f"{name}: layer does not decompress ({exc})") from exc


def _scan_tar(s: _Stream, visitor: ContentVisitor | None) -> LayerScan:
    """The scan loop: one pass over headers and content.

    It runs once per entry, hundreds of thousands of times on a large image, so
    the common case (a ustar or GNU header with no PAX record and a plain name)
    takes a short path: numeric fields parsed in place, the link name decoded
    only for links, small files hashed in one call, and repeated integers
    (modes, mtimes) shared between entries so that a scan stays small in memory.
    """
    entries: dict[str, Entry] = {}
    whiteouts: list[str] = []
    live = _Whiteouts()  # those no later entry undid yet
    opaques: list[str] = []
    warnings: list[str] = []
    dropped = 0

    def warn(message: str) -> None:
        nonlocal dropped
        if len(warnings) < MAX_WARNINGS:
            warnings.append(message)
        else:
            dropped += 1

    estargz = False
    pax: dict[str, str] = {}
    shadowed: list[Entry] = []
    climbed: list[str] = []
    xattr_budget = MAX_XATTR_LAYER
    # Children by parent, built only once a layer replaces a path it already wrote (rare).
    kids: dict[str, list[str]] | None = None
    long_name: str | None = None
    long_link: str | None = None
    first = True
    pending = b""
    shared: dict[int, int] = {}
    share = shared.setdefault
    read = s.read
    fast = _fast if visitor is None else None
    while True:
        if pending:
            header, pending = pending, b""
        else:
            if fast is not None and s.end - s.pos >= BLOCK_SIZE and not pax and long_name is None and long_link is None:
                # The plain entries from here on, in C; it stops before the first one it leaves to us.
                written = live.written if whiteouts else None
                index = None if kids is None else functools.partial(_index_path, kids)
                at = fast(s.view, s.pos, s.end, entries, shared, written, index)
                if at != s.pos:
                    s.pos = at
                    first = False
            header = read(BLOCK_SIZE)
        if len(header) < BLOCK_SIZE:
            if not header and first:
                break  # a zero-byte layer file is an empty layer
            if first:
                raise ImgscopeError(f"{s.name}: layer is not a tar archive (only {len(header)} bytes)")
            if not header:
                raise ImgscopeError(f"{s.name}: layer tar is truncated (no end-of-archive marker)")
            raise ImgscopeError(f"{s.name}: layer tar is truncated (a header is cut)")
        if header == ZERO_BLOCK:
            after = read(BLOCK_SIZE)
            if after.count(0) == len(after):
                # Two zero blocks (or one at the very end) end the archive.  Docker's and dive's
                # readers (Go's archive/tar) stop here, so whatever follows is no part of the layer;
                # eStargz puts its TOC entry there on purpose.
                left, block = s.rest()
                if block and _is_estargz_toc(block):
                    estargz = True
                elif block:
                    warn(f"{left} bytes after the end-of-archive marker were ignored, as Docker ignores them")
                break
            pending = after  # a lone zero block: read on, as GNU tar does
            continue
        nums = _plain_header(header)
        if nums is None:
            if not _checksum_ok(header):
                what = "is not a tar archive" if first else "has a corrupt tar header"
                raise ImgscopeError(f"{s.name}: layer {what}")
            nums = _octal_fields(header)
        first = False
        typeflag = header[156:157]
        if nums is not None:
            size = nums[3]
        else:
            try:
                size = _number(header[124:136])
            except ValueError as exc:
                raise ImgscopeError(f"{s.name}: layer has a corrupt tar header ({exc})") from exc
        if size < 0:
            raise ImgscopeError(f"{s.name}: layer has a negative entry size")
        padded = (size + BLOCK_SIZE - 1) & ~(BLOCK_SIZE - 1)

        if typeflag in _SPECIAL:
            if size > MAX_RECORD:
                # Held in memory to be parsed, so bounded; Go's archive/tar (which wrote and
                # reads every Docker layer) refuses the same records.
                what = "PAX" if typeflag in (b"x", b"g") else "long-name"
                raise ImgscopeError(f"{s.name}: layer has a {what} record of {size} bytes (over 1 MiB), refused")
            data = read(padded)
            if len(data) < padded:
                raise ImgscopeError(f"{s.name}: layer tar is truncated (in a PAX or long-name record)")
            data = data[:size]
            if typeflag == b"x":
                pax = _pax(data)
            elif typeflag == b"g":
                # Go's archive/tar hands a global header over as an entry of its own, which
                # Docker's createTarFile ignores: its records apply to no later entry.
                pass
            elif typeflag == b"L":
                long_name = data.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")
            else:
                long_link = data.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")
            continue

        fields = pax
        raw_name = (fields.get("path") if fields else None) or long_name
        if raw_name is None:
            nul = header.find(0, 0, 100)
            raw_name = header[: nul if nul >= 0 else 100].decode("utf-8", "surrogateescape")
            # Only POSIX ustar has a prefix field; GNU headers (magic "ustar  ") keep times there.
            if header[345] and header[257:263] == b"ustar\x00":
                prefix = _text(header[345:500])
                if prefix:
                    raw_name = prefix + "/" + raw_name
        if fields:
            _check_pax(fields, s.name, raw_name)
            if "size" in fields:
                size = int(fields["size"])
        if typeflag in _HEADER_ONLY:
            size = 0  # Go's archive/tar reads no data for these, whatever the header says
        padded = (size + BLOCK_SIZE - 1) & ~(BLOCK_SIZE - 1)
        pax_now = pax
        if pax:
            pax = {}
        link_long, long_name, long_link = long_link, None, None

        kind = _TYPES.get(typeflag)
        content_bytes = size if kind in (FILE, None) or typeflag == b"S" else 0
        if typeflag == b"S":
            kind = FILE
            warn(f"{raw_name}: GNU sparse entry counted by its stored bytes")
        if "\x00" in raw_name:
            warn(f"refused entry {raw_name[:200]!r}: a NUL byte in its name")
            s.skip(padded)
            continue
        path = normalize(raw_name)
        climbing = climbs(raw_name)
        if climbing:
            # Docker clamps the name at the root and ships the file there (see normalize).
            # Recorded for audit once the entry is known to ship (or, for a whiteout, what it deletes).
            # A whiteout ships no file: Docker deletes what it names, at the clamped place.
            deletes = path.startswith(WHITEOUT, path.rfind("/") + 1)
            where = f"applies the whiteout at {path!r}" if deletes else f"puts it at {path!r}"
            warn(f"entry {raw_name[:200]!r} climbs above the root; Docker {where}")
        if kind is None:
            warn(f"{path}: unknown tar type {typeflag!r} read as a regular file")
            kind = FILE

        slash = path.rfind("/")
        if path.startswith(WHITEOUT, slash + 1):
            base = path[slash + 1 :]
            parent = path[:slash] or "/"
            if base == OPAQUE:
                opaques.append(parent)
            elif base.startswith(OPAQUE[:8]):
                pass  # other .wh..wh.* entries (AUFS .wh..wh.plnk) are bookkeeping
            elif base in (WHITEOUT, WHITEOUT + ".", WHITEOUT + ".."):
                warn(f"{path}: invalid whiteout {base!r} names no file, ignored")
            else:
                target = posixpath.join(parent, base[len(WHITEOUT) :])
                whiteouts.append(target)
                live.add(target)
                if climbing:
                    climbed.append(target)
            s.skip(padded)
            continue
        if path == "/":
            s.skip(padded)
            continue

        digest = ""
        if kind == FILE:
            sink = visitor(path, size) if visitor is not None else None
            digest = s.file_digest(size, padded, sink)
        else:
            s.skip(padded)

        try:
            if nums is not None:
                mode, uid, gid, _size, mtime = nums
                mode &= 0o7777
            else:
                mode = _number(header[100:108]) & 0o7777
                uid = _number(header[108:116])
                gid = _number(header[116:124])
                mtime = _number(header[136:148])
            if pax_now:
                uid = int(pax_now["uid"]) if "uid" in pax_now else uid
                gid = int(pax_now["gid"]) if "gid" in pax_now else gid
                mtime = int(pax_now["mtime"].partition(".")[0]) if "mtime" in pax_now else mtime
            if kind in (CHAR, BLOCK):
                devmajor = _number(header[329:337])
                devminor = _number(header[337:345])
            else:
                devmajor = devminor = 0
        except ValueError as exc:
            raise ImgscopeError(f"{s.name}: corrupt tar header for {path} ({exc})") from exc
        mode = share(mode, mode)
        mtime = share(mtime, mtime)
        if uid > 256:  # smaller ints are shared by Python already
            uid = share(uid, uid)
        if gid > 256:
            gid = share(gid, gid)

        if kind == CHAR and devmajor == 0 and devminor == 0:
            warn(f"{path}: char device 0/0 is a leaked overlay whiteout; read as one")
            whiteouts.append(path)
            live.add(path)
            if climbing:
                climbed.append(path)
            continue

        xattrs: tuple[tuple[str, str], ...] = ()
        if pax_now:
            xattrs = tuple(
                sorted((k[len("SCHILY.xattr.") :], v) for k, v in pax_now.items() if k.startswith("SCHILY.xattr."))
            )
            if xattrs:
                # Kept in memory for every entry of every layer: bounded, or 400 entries with
                # 1 MiB of attributes each (a 92 KB download) would cost gigabytes.
                weight = sum(len(k) + len(v) for k, v in xattrs)
                if weight > MAX_XATTR_ENTRY or weight > xattr_budget:
                    why = "64 KiB for one entry" if weight > MAX_XATTR_ENTRY else "4 Mi characters for the layer"
                    warn(f"{path!r}: extended attributes of {weight} characters dropped (over {why})")
                    xattrs = (("(dropped)", f"{weight} characters"),)
                else:
                    xattr_budget -= weight
        entry_size = content_bytes if kind == FILE else 0
        link = ""
        if kind in (SYMLINK, HARDLINK):
            link = (fields.get("linkpath") if fields else None) or link_long or _text(header[157:257])
            if kind == SYMLINK:
                entry_size = len(link.encode("utf-8", "surrogateescape"))
            else:
                link = target = normalize(link)
                found = entries.get(target)
                if found is None:
                    warn(f"{path}: hardlink to {target}, which this layer does not hold")
                else:
                    digest = found.digest
        if path in ESTARGZ_NAMES:
            estargz = True
        if climbing:
            climbed.append(path)
        earlier = entries.pop(path, None)
        if whiteouts:  # the list's truth is a C check: this runs once per entry
            # Docker removes what stands at a path before writing there (its whiteout device too,
            # and below it unless a directory meets a directory): a whiteout this layer made there
            # is undone, and the lower path shows through a directory written after it.
            live.written(path, kind != DIR or (earlier is not None and earlier.type != DIR))
        if earlier is not None:
            # A later entry of the same name replaces the earlier one in the container, but the
            # earlier copy's bytes still ship in the blob: kept for audit.
            shadowed.append(earlier)
            if earlier.type != DIR or kind != DIR:
                # Docker RemoveAll()ed the path when it wrote a non-directory there (then or now):
                # what this layer had put below it is gone from the container.
                if kids is None:
                    kids = _child_index(entries)
                _cut_below(path, entries, kids, shadowed)
        entries[path] = Entry(
            path, kind, mode, uid, gid, entry_size, content_bytes, mtime, link, digest, xattrs, devmajor, devminor
        )
        if kids is not None:
            _index_path(kids, path)
    _drop_replaced(entries, shadowed)
    if dropped:
        warnings.append(f"... and {dropped} more warnings like these")
    return LayerScan(
        diff_id=s.digest(),
        tar_bytes=s.total,
        entries=tuple(entries.values()),
        whiteouts=tuple(whiteouts),
        undone=live.undone(whiteouts),
        opaques=tuple(opaques),
        warnings=tuple(warnings),
        estargz=estargz,
        shadowed=tuple(shadowed),
        climbed=tuple(climbed),
    )
