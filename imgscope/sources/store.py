"""Where an image's files live: a seekable tar, a directory, or a stream already read.

Format parsers (``docker save`` manifests, OCI indexes) only ask a store for
small metadata files by name and for the scan of a layer by name, so the same
parser serves an archive on disk, an OCI layout directory, a compressed
archive read as a stream and the daemon's ``docker save`` stream.
"""

from __future__ import annotations

import io
import os
import posixpath
import tarfile
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import IO, BinaryIO, Protocol, cast

from imgscope.errors import ImgscopeError
from imgscope.model import LayerScan
from imgscope.scan import ContentVisitor, scan_layer
from imgscope.sources.compression import ByteSource

# Metadata files larger than this are not JSON we want to hold in memory.
MAX_METADATA = 64 << 20


class Store(Protocol):
    """Read access to the named files of one image archive or layout."""

    label: str

    def exists(self, name: str) -> bool: ...

    def read(self, name: str) -> bytes: ...

    def size(self, name: str) -> int | None: ...

    def names(self) -> Iterable[str]: ...

    def scan_many(
        self,
        names: list[str],
        *,
        max_bytes: int | None,
        visitor: ContentVisitor | None,
        on_scan: Callable[[int], None] | None = None,
    ) -> list[LayerScan]: ...

    def digest_of(self, name: str) -> str: ...


class _Window(io.RawIOBase):
    """A read-only view of ``length`` bytes at ``offset`` of an open file."""

    def __init__(self, fh: BinaryIO, offset: int, length: int) -> None:
        self._fh = fh
        self._left = length
        fh.seek(offset)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            return 0
        want = min(len(buffer), self._left)
        data = self._fh.read(want)
        n = len(data)
        buffer[:n] = data
        self._left -= n
        return n


def _scan_window(args: tuple[str, int, int, str, int | None]) -> LayerScan:
    """Worker for parallel scans: reopen the file, scan one member's window."""
    path, offset, length, label, max_bytes = args
    with open(path, "rb") as fh:
        reader = io.BufferedReader(_Window(fh, offset, length), 1 << 20)
        return scan_layer(reader, label, max_bytes=max_bytes)


def _sha256_window(fh: BinaryIO, offset: int, length: int) -> str:
    import hashlib

    h = hashlib.sha256()
    fh.seek(offset)
    left = length
    while left > 0:
        data = fh.read(min(left, 1 << 20))
        if not data:
            break
        h.update(data)
        left -= len(data)
    return "sha256:" + h.hexdigest()


def _scan_parallel(
    jobs: list[tuple[str, int, int, str, int | None]],
    on_scan: Callable[[int], None] | None,
) -> list[LayerScan]:
    """Scan windows of files, in worker processes when there is enough to gain."""
    total = sum(job[2] for job in jobs)
    workers = min(len(jobs), os.cpu_count() or 1)
    if workers <= 1 or total < (64 << 20):
        out = []
        for job in jobs:
            out.append(_scan_window(job))
            if on_scan:
                on_scan(job[2])
        return out
    # Largest first keeps both cores busy to the end.
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i][2])
    results: dict[int, LayerScan] = {}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {i: pool.submit(_scan_window, jobs[i]) for i in order}
        for i in order:
            results[i] = futures[i].result()
            if on_scan:
                on_scan(jobs[i][2])
    return [results[i] for i in range(len(jobs))]


class TarStore:
    """An uncompressed tar on disk, indexed once; members are read in place."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = str(path)
        self._members: dict[str, tarfile.TarInfo] = {}
        try:
            with tarfile.open(path, "r:") as tf:
                for member in tf:
                    name = posixpath.normpath(member.name.lstrip("/")) if member.name else ""
                    if name.startswith("./"):
                        name = name[2:]
                    self._members[name] = member
        except tarfile.ReadError as exc:
            raise ImgscopeError(f"{path}: not a readable tar archive ({exc})") from exc
        except (EOFError, OSError) as exc:
            raise ImgscopeError(f"{path}: archive is truncated or unreadable ({exc})") from exc

    def names(self) -> Iterable[str]:
        return self._members.keys()

    def _resolve(self, name: str) -> tarfile.TarInfo:
        """The regular member behind ``name``, following one level of symlink inside the archive."""
        member = self._members.get(name)
        if member is None:
            raise ImgscopeError(f"{self.label}: {name} is missing from the archive")
        if member.issym() or member.islnk():
            target = member.linkname
            if member.issym():
                target = posixpath.join(posixpath.dirname(name), target)
            target = posixpath.normpath(target.lstrip("/"))
            if target.startswith("..") or target == name:
                raise ImgscopeError(f"{self.label}: {name} links to {member.linkname}, outside the archive")
            resolved = self._members.get(target)
            if resolved is None or not resolved.isfile():
                raise ImgscopeError(f"{self.label}: {name} links to {member.linkname}, which is not in the archive")
            return resolved
        if not member.isfile():
            raise ImgscopeError(f"{self.label}: {name} is not a regular file")
        return member

    def exists(self, name: str) -> bool:
        return name in self._members

    def size(self, name: str) -> int | None:
        return self._resolve(name).size if name in self._members else None

    def read(self, name: str) -> bytes:
        member = self._resolve(name)
        if member.size > MAX_METADATA:
            raise ImgscopeError(f"{self.label}: {name} is too large to be metadata")
        with open(self.path, "rb") as fh:
            fh.seek(member.offset_data)
            data = fh.read(member.size)
        if len(data) < member.size:
            raise ImgscopeError(f"{self.label}: archive is truncated inside {name}")
        return data

    def _check_complete(self, member: tarfile.TarInfo, name: str) -> None:
        if member.offset_data + member.size > self.path.stat().st_size:
            raise ImgscopeError(f"{self.label}: archive is truncated inside {name}")

    def scan_many(
        self,
        names: list[str],
        *,
        max_bytes: int | None,
        visitor: ContentVisitor | None,
        on_scan: Callable[[int], None] | None = None,
    ) -> list[LayerScan]:
        members = [self._resolve(n) for n in names]
        for member, name in zip(members, names, strict=True):
            self._check_complete(member, name)
        labels = [f"{self.label}: {n}" for n in names]
        if visitor is not None:
            out = []
            with open(self.path, "rb") as fh:
                for member, label in zip(members, labels, strict=True):
                    reader = io.BufferedReader(_Window(fh, member.offset_data, member.size), 1 << 20)
                    out.append(scan_layer(reader, label, max_bytes=max_bytes, visitor=visitor))
            return out
        jobs = [
            (str(self.path), m.offset_data, m.size, label, max_bytes) for m, label in zip(members, labels, strict=True)
        ]
        return _scan_parallel(jobs, on_scan)

    def digest_of(self, name: str) -> str:
        member = self._resolve(name)
        with open(self.path, "rb") as fh:
            return _sha256_window(fh, member.offset_data, member.size)


class DirStore:
    """A directory (an OCI layout); names are relative paths inside it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.label = str(root)

    def _path(self, name: str) -> Path:
        norm = posixpath.normpath(name.lstrip("/"))
        if norm.startswith(".."):
            raise ImgscopeError(f"{self.label}: {name} points outside the layout")
        return self.root / norm

    def names(self) -> Iterable[str]:
        for dirpath, _dirs, files in os.walk(self.root):
            for f in files:
                yield os.path.relpath(os.path.join(dirpath, f), self.root)

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def size(self, name: str) -> int | None:
        p = self._path(name)
        return p.stat().st_size if p.is_file() else None

    def read(self, name: str) -> bytes:
        p = self._path(name)
        if not p.is_file():
            raise ImgscopeError(f"{self.label}: {name} is missing from the layout")
        if p.stat().st_size > MAX_METADATA:
            raise ImgscopeError(f"{self.label}: {name} is too large to be metadata")
        return p.read_bytes()

    def scan_many(
        self,
        names: list[str],
        *,
        max_bytes: int | None,
        visitor: ContentVisitor | None,
        on_scan: Callable[[int], None] | None = None,
    ) -> list[LayerScan]:
        paths = [self._path(n) for n in names]
        for p, n in zip(paths, names, strict=True):
            if not p.is_file():
                raise ImgscopeError(f"{self.label}: blob {n} is missing from the layout")
        labels = [f"{self.label}: {n}" for n in names]
        if visitor is not None:
            out = []
            for p, label in zip(paths, labels, strict=True):
                with open(p, "rb") as fh:
                    out.append(scan_layer(fh, label, max_bytes=max_bytes, visitor=visitor))
            return out
        jobs = [(str(p), 0, p.stat().st_size, label, max_bytes) for p, label in zip(paths, labels, strict=True)]
        return _scan_parallel(jobs, on_scan)

    def digest_of(self, name: str) -> str:
        p = self._path(name)
        with open(p, "rb") as fh:
            return _sha256_window(fh, 0, p.stat().st_size)


class StreamStore:
    """An archive read once from a stream: metadata kept, layers scanned on the fly.

    ``docker save`` writes ``manifest.json`` last, so while streaming we cannot
    know which member is a layer.  Every member that looks like a tar (or a
    compressed stream) is scanned as it passes; small JSON members are kept.
    Nothing is written to disk and no layer's bytes are held.
    """

    def __init__(
        self,
        stream: ByteSource,
        label: str,
        *,
        max_bytes: int | None = None,
        visitor: ContentVisitor | None = None,
        want: Callable[[str], bool] | None = None,
    ) -> None:
        self.label = label
        self._files: dict[str, bytes] = {}
        self._scans: dict[str, LayerScan] = {}
        self._digests: dict[str, str] = {}
        self._sizes: dict[str, int] = {}
        self._links: dict[str, str] = {}
        self._read_all(stream, max_bytes, visitor, want)

    def _read_all(
        self,
        stream: ByteSource,
        max_bytes: int | None,
        visitor: ContentVisitor | None,
        want: Callable[[str], bool] | None,
    ) -> None:
        import hashlib

        try:
            with tarfile.open(fileobj=cast(IO[bytes], stream), mode="r|") as tf:
                for member in tf:
                    name = posixpath.normpath(member.name.lstrip("/"))
                    if member.issym() or member.islnk():
                        self._links[name] = member.linkname
                        continue
                    if not member.isfile():
                        continue
                    self._sizes[name] = member.size
                    fh = tf.extractfile(member)
                    if fh is None:
                        continue
                    head = fh.read(min(member.size, 512))
                    if self._looks_like_layer(head) and (want is None or want(name)):
                        digest = hashlib.sha256(head)
                        reader = _Tee(head, fh, digest.update)
                        self._scans[name] = scan_layer(
                            reader, f"{self.label}: {name}", max_bytes=max_bytes, visitor=visitor
                        )
                        self._digests[name] = "sha256:" + digest.hexdigest()
                    elif member.size <= MAX_METADATA:
                        self._files[name] = head + fh.read()
        except tarfile.ReadError as exc:
            raise ImgscopeError(f"{self.label}: not a readable tar archive ({exc})") from exc
        except EOFError as exc:
            raise ImgscopeError(f"{self.label}: archive is truncated ({exc})") from exc

    @staticmethod
    def _looks_like_layer(head: bytes) -> bool:
        from imgscope.sources.compression import PLAIN, sniff

        if sniff(head) != PLAIN:
            return True
        if len(head) == 512 and head[257:262] == b"ustar":
            return True
        return len(head) == 512 and head == b"\x00" * 512

    def _resolve(self, name: str) -> str:
        if name in self._links:
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), self._links[name]))
            if target.startswith("..") or target == name or target in self._links:
                raise ImgscopeError(f"{self.label}: {name} links to {self._links[name]}, outside the archive")
            return target
        return name

    def names(self) -> Iterable[str]:
        return [*self._files, *self._scans, *self._links]

    def exists(self, name: str) -> bool:
        return name in self._files or name in self._scans or name in self._links

    def size(self, name: str) -> int | None:
        return self._sizes.get(self._resolve(name)) if self.exists(name) else None

    def read(self, name: str) -> bytes:
        real = self._resolve(name)
        if real not in self._files:
            raise ImgscopeError(f"{self.label}: {name} is missing from the archive")
        return self._files[real]

    def scan_many(
        self,
        names: list[str],
        *,
        max_bytes: int | None,
        visitor: ContentVisitor | None,
        on_scan: Callable[[int], None] | None = None,
    ) -> list[LayerScan]:
        out = []
        for name in names:
            real = self._resolve(name)
            scan = self._scans.get(real)
            if scan is None:
                if real in self._files:
                    data = self._files[real]
                    scan = scan_layer(io.BytesIO(data), f"{self.label}: {name}", max_bytes=max_bytes)
                else:
                    raise ImgscopeError(f"{self.label}: layer {name} is missing from the archive")
            out.append(scan)
        return out

    def digest_of(self, name: str) -> str:
        import hashlib

        real = self._resolve(name)
        if real in self._digests:
            return self._digests[real]
        return "sha256:" + hashlib.sha256(self.read(real)).hexdigest()


class _Tee(io.RawIOBase):
    """Replays a sniffed head, then reads on, passing every byte to ``observe``."""

    def __init__(self, head: bytes, fh: ByteSource, observe: Callable[[bytes], object]) -> None:
        self._head = head
        self._fh = fh
        self._observe = observe

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._head:
            out, self._head = (
                (self._head, b"")
                if size < 0 or size >= len(self._head)
                else (
                    self._head[:size],
                    self._head[size:],
                )
            )
            return out
        data = self._fh.read(size)
        self._observe(data)
        return data

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
