"""Layer scans cached by DiffID in SQLite, so base layers are read once per machine.

A scan is a pure function of the layer's bytes, so the DiffID (plus the
scanner's version, bumped whenever a scan's content changes) is a complete
key.  SQLite in WAL mode makes concurrent imgscope runs safe; a cache file
that is corrupt or was written by something else is moved aside and rebuilt,
never a crash.  Records are ``marshal``-ed tuples (fast, and unlike pickle
they cannot run code when read), compressed with zlib.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import sqlite3
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgscope.model import ENTRY_FIELDS, Entry, LayerScan

# Bump whenever LayerScan or Entry change shape or meaning, or a scan of the same bytes
# gives other results (tests/test_round2.py holds each version's field shape).
# 2: stop at the end-of-archive marker, GNU headers and dumpdirs (issue 15).
# 3: layers read as Docker applies them, shadowed copies and climbing names kept (issue 19).
# 4: deep entries cut after a repeated name; climbing whiteouts recorded by their target.
# 5: a climbing whiteout's warning says Docker applies it (cached scans carry their warnings);
#    LayerScan.undone: whiteouts a later entry of their layer wrote over (Docker ignores them).
SCANNER_VERSION = 5


def cache_dir() -> Path:
    """``$IMGSCOPE_CACHE_DIR``, else ``$XDG_CACHE_HOME/imgscope``, else ``~/.cache/imgscope``."""
    explicit = os.environ.get("IMGSCOPE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imgscope"


def pack(scan: LayerScan) -> bytes:
    """A scan as ``marshal``-ed tuples: what the cache stores and what scan workers send back.

    Unpickling frozen slotted dataclasses goes through ``__setstate__`` field by
    field (several times slower than the scan itself for a large layer);
    plain tuples are read back in C and turned into entries in one call each.
    """
    entries = _tuples(scan.entries)
    shadowed = _tuples(scan.shadowed)
    record = (
        scan.diff_id,
        scan.tar_bytes,
        entries,
        scan.whiteouts,
        scan.opaques,
        scan.warnings,
        scan.estargz,
        shadowed,
        scan.climbed,
        scan.undone,
    )
    return marshal.dumps(record)


def _tuples(entries: tuple[Entry, ...]) -> list[tuple[object, ...]]:
    return [
        (
            e.path,
            e.type,
            e.mode,
            e.uid,
            e.gid,
            e.size,
            e.tar_size,
            e.mtime,
            e.link,
            e.digest,
            e.xattrs,
            e.devmajor,
            e.devminor,
        )
        for e in entries
    ]


def unpack(data: bytes) -> LayerScan:
    """The scan :func:`pack` wrote; equal values are shared again, as the scanner shares them."""
    from imgscope.scan import paused_gc

    with paused_gc():
        return _unpack(data)


def _unpack(data: bytes) -> LayerScan:
    diff_id, tar_bytes, entries, whiteouts, opaques, warnings, estargz, shadowed, climbed, undone = marshal.loads(data)
    shared: dict[int, int] = {}
    return LayerScan(
        diff_id=diff_id,
        tar_bytes=tar_bytes,
        entries=_entries(entries, shared),
        whiteouts=tuple(whiteouts),
        opaques=tuple(opaques),
        warnings=tuple(warnings),
        estargz=bool(estargz),
        shadowed=_entries(shadowed, shared),
        climbed=tuple(climbed),
        undone=tuple(undone),
    )


# Each field's slot setter, in the order of pack's tuples: an Entry is filled in without its
# __init__, whose frozen-dataclass object.__setattr__ per field cost as much as the rest of
# unpacking (Entry has no __post_init__ and every field is set here).
_SETTERS = tuple(getattr(Entry, name).__set__ for name in ENTRY_FIELDS)


def _entries(entries: list[tuple[Any, ...]], shared: dict[int, int]) -> tuple[Entry, ...]:
    """Entries from pack's tuples, built without ``Entry.__init__`` (unpacking a worker's scans is on the
    parent's critical path: 2.2 -> 1.4 us an entry).
    """
    share = shared.setdefault
    new = object.__new__
    (
        put_path,
        put_type,
        put_mode,
        put_uid,
        put_gid,
        put_size,
        put_tar,
        put_mtime,
        put_link,
        put_digest,
        put_xattrs,
        put_major,
        put_minor,
    ) = _SETTERS
    out: list[Entry] = []
    append = out.append
    for path, kind, mode, uid, gid, size, tar_size, mtime, link, digest, xattrs, major, minor in entries:
        entry = new(Entry)
        put_path(entry, path)
        put_type(entry, kind)
        put_mode(entry, share(mode, mode))
        put_uid(entry, share(uid, uid))
        put_gid(entry, share(gid, gid))
        put_size(entry, size)
        put_tar(entry, size if tar_size == size else tar_size)
        put_mtime(entry, share(mtime, mtime))
        put_link(entry, link)
        put_digest(entry, digest)
        put_xattrs(entry, tuple(xattrs) if xattrs else ())
        put_major(entry, major)
        put_minor(entry, minor)
        append(entry)
    return tuple(out)


def _encode(scan: LayerScan) -> bytes:
    return zlib.compress(pack(scan), 1)


def _decode(blob: bytes) -> LayerScan:
    return unpack(zlib.decompress(blob))


@dataclass(frozen=True, slots=True)
class CacheInfo:
    """What ``imgscope cache info`` reports."""

    path: str
    layers: int
    bytes: int


class ScanCache:
    """A handle on the cache database; every failure degrades to 'not cached'."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        try:
            self._db = self._connect()
        except (sqlite3.DatabaseError, OSError):
            self._db = self._rebuild()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS scans (diff_id TEXT NOT NULL, version INTEGER NOT NULL, "
            "data BLOB NOT NULL, PRIMARY KEY (diff_id, version))"
        )
        # A registry blob's digest -> the DiffID its bytes had when last fetched (sources/registry.py).
        db.execute("CREATE TABLE IF NOT EXISTS blobs (digest TEXT PRIMARY KEY, diff_id TEXT NOT NULL)")
        db.execute("SELECT count(*) FROM scans").fetchone()
        return db

    def _rebuild(self) -> sqlite3.Connection | None:
        try:
            if self.path.exists():
                self.path.replace(self.path.with_suffix(".corrupt"))
            for suffix in ("-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            return self._connect()
        except (sqlite3.DatabaseError, OSError):
            return None

    def get(self, diff_id: str) -> LayerScan | None:
        if self._db is None:
            return None
        try:
            row = self._db.execute(
                "SELECT data FROM scans WHERE diff_id = ? AND version = ?", (diff_id, SCANNER_VERSION)
            ).fetchone()
            if row is None:
                return None
            scan = _decode(row[0])
        except (sqlite3.DatabaseError, ValueError, TypeError, EOFError, zlib.error):
            return None
        return scan if scan.diff_id == diff_id else None

    def put(self, scan: LayerScan) -> None:
        if self._db is None:
            return
        with contextlib.suppress(sqlite3.DatabaseError):
            self._db.execute(
                "INSERT OR REPLACE INTO scans (diff_id, version, data) VALUES (?, ?, ?)",
                (scan.diff_id, SCANNER_VERSION, _encode(scan)),
            )

    def blob_diff_id(self, digest: str) -> str | None:
        """The DiffID a compressed blob was seen to hold, or None."""
        if self._db is None:
            return None
        try:
            row = self._db.execute("SELECT diff_id FROM blobs WHERE digest = ?", (digest,)).fetchone()
        except sqlite3.DatabaseError:
            return None
        return str(row[0]) if row is not None else None

    def put_blob(self, digest: str, diff_id: str) -> None:
        """Record what a blob (checked against ``digest``) decompressed to."""
        if self._db is None:
            return
        with contextlib.suppress(sqlite3.DatabaseError):
            self._db.execute("INSERT OR REPLACE INTO blobs (digest, diff_id) VALUES (?, ?)", (digest, diff_id))

    def info(self) -> CacheInfo:
        layers = 0
        if self._db is not None:
            try:
                layers = int(self._db.execute("SELECT count(*) FROM scans").fetchone()[0])
            except sqlite3.DatabaseError:
                layers = 0
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        return CacheInfo(path=str(self.path), layers=layers, bytes=size)

    def clear(self) -> int:
        removed = self.info().layers
        if self._db is not None:
            try:
                self._db.execute("DELETE FROM scans")
                self._db.execute("DELETE FROM blobs")
                self._db.execute("VACUUM")
            except sqlite3.DatabaseError:
                self._db = self._rebuild()
        return removed


def open_cache() -> ScanCache:
    """The cache of this user (see :func:`cache_dir`)."""
    return ScanCache(cache_dir() / "scans.sqlite")
