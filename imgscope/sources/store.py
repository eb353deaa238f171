"""Where an image's files live: a seekable tar, a directory, or a stream already read.

Format parsers (``docker save`` manifests, OCI indexes) only ask a store for
small metadata files by name and for the scan of a layer by name, so the same
parser serves an archive on disk, an OCI layout directory, a compressed
archive read as a stream and the daemon's ``docker save`` stream.
"""

from __future__ import annotations

import contextlib
import io
import mmap
import os
import posixpath
import tarfile
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Protocol, cast

from imgscope.errors import ImgscopeError
from imgscope.model import LayerScan
from imgscope.scan import ContentVisitor, paused_gc, scan_layer
from imgscope.sources.compression import PLAIN, ByteSource, sniff

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

    from imgscope.sources.scanproc import ScanWorker

# The DiffID of a scan made without hashing, for load_plan to fill in from the config.
UNKNOWN_DIFF_ID = ""
# Metadata files larger than this are not JSON we want to hold in memory.
MAX_METADATA = 64 << 20
# Below this many bytes of layers, starting worker processes costs more than it saves
# (0: always use them); on a machine with no idle core, BUSY_FACTOR times as many.
PARALLEL_MIN_BYTES = 64 << 20
BUSY_FACTOR = 64
# What a streamed archive may hold in files that are not layers, all together.
MAX_KEPT = 4 * MAX_METADATA


# Told (position among the names asked for, scan) as each scan is done; see ``Store.scan_many``.
ScanDone = Callable[[int, LayerScan], None]


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
        on_scan: ScanDone | None = None,
        trusted: list[str | None] | None = None,
    ) -> list[LayerScan]:
        """Scan the named layers; ``trusted`` gives, per name, a DiffID to take as is (no SHA-256) or None.

        ``on_scan`` is told each scan as soon as it is done, with its position in ``names``, in
        whatever order the scans finish: progress, and consumers that start before the last one.
        """
        ...

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
        # Straight into the caller's buffer (a bytearray from RawIOBase.read is viewed, not sliced).
        n = cast(io.RawIOBase, self._fh).readinto(memoryview(buffer)[:want]) or 0
        self._left -= n
        return n


# One layer to scan: file, offset and length of its bytes, label, byte limit, trusted DiffID.
_Job = tuple[str, int, int, str, int | None, str | None]


def _scan_window(job: _Job) -> LayerScan:
    """Reopen the file and scan one window, in place in a mapping of the file when it can be mapped.

    Reading copies every byte from the page cache into the scanner's buffer
    (a third of the CPU of scanning a large archive); a mapping lets the scan
    hash and parse the cached pages themselves.  A file that cannot be
    mapped, or is shorter than the window now, is read (unbuffered: straight
    into the scanner's own buffer), which reports a cut window as such.
    """
    path, offset, length, label, max_bytes, trusted = job
    with open(path, "rb", buffering=0) as fh:
        mapped = _MappedWindow.of(fh, offset, length)
        try:
            return scan_layer(_Window(fh, offset, length), label, max_bytes=max_bytes, diff_id=trusted, mapped=mapped)
        finally:
            if mapped is not None:
                mapped.close()


class _MappedWindow:
    """A read-only mapping of a window of a file, for :func:`scan_layer` to scan in place.

    Pages the scan is done with are let go of as it goes (``MADV_DONTNEED``:
    they stay in the page cache, a later touch maps them again), else a
    scanned layer would count in the process's resident memory, all 300 MB
    of it.
    """

    def __init__(self, mm: mmap.mmap, skip: int) -> None:
        self._mm = mm
        self._skip = skip  # the window starts this far into the mapping (mappings start on a page)
        self._released = 0
        self.view = memoryview(mm)[skip:]

    @classmethod
    def of(cls, fh: BinaryIO, offset: int, length: int) -> _MappedWindow | None:
        """The mapping of ``length`` bytes at ``offset`` of ``fh``, or None when it cannot be had safely.

        The file is checked to hold the whole window first: touching a mapped
        page past the end of the file kills the process (SIGBUS).  A file cut
        while it is scanned still would: a risk taken for files on disk, which
        imgscope reads once and does not write.
        """
        if length <= 0 or not hasattr(mmap, "MADV_DONTNEED"):
            return None
        try:
            if os.fstat(fh.fileno()).st_size < offset + length:
                return None
            start = offset - offset % mmap.ALLOCATIONGRANULARITY
            mm = mmap.mmap(fh.fileno(), offset + length - start, mmap.MAP_SHARED, mmap.PROT_READ, offset=start)
        except (OSError, ValueError, OverflowError):
            return None
        return cls(mm, offset - start)

    def release(self, upto: int) -> None:
        end = (self._skip + upto) & ~(mmap.PAGESIZE - 1)
        if end > self._released:
            self._mm.madvise(mmap.MADV_DONTNEED, self._released, end - self._released)
            self._released = end

    def close(self) -> None:
        """Unmap; after an error the traceback's frames may still view the mapping: it goes with them."""
        with contextlib.suppress(BufferError):
            self.view.release()
            self._mm.close()


# What a worker process scans: set by its initializer (:func:`_start_worker`), inherited by forked ones.
_worker_jobs: list[_Job] = []
_worker_next: Any = None


def _start_worker(jobs: list[_Job], counter: Any) -> None:
    """Worker start: take the job list and the shared counter; leave Ctrl-C to the parent.

    Ctrl-C reaches the whole process group, but only the parent handles it:
    without this every worker prints its own KeyboardInterrupt traceback; the
    parent stops them itself (:func:`_stop_workers`).
    """
    import signal

    global _worker_jobs, _worker_next
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_jobs, _worker_next = jobs, counter


def _claim(counter: Any, count: int) -> int | None:
    """The next job nobody has taken yet, in the shared order, or None when all are taken."""
    with counter.get_lock():
        i = int(counter.value)
        if i >= count:
            return None
        counter.value = i + 1
    return i


def _scan_claimed() -> tuple[int, bytes] | None:
    """Worker process: scan the next job not yet taken, sent back as marshal data (see ``cache.pack``)."""
    from imgscope.cache import pack

    i = _claim(_worker_next, len(_worker_jobs))
    if i is None:
        return None
    with paused_gc():
        return i, pack(_scan_window(_worker_jobs[i]))


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


def _scan_parallel(jobs: list[_Job], on_scan: ScanDone | None) -> list[LayerScan]:
    """Scan windows of files, in worker processes when there is enough to gain.

    This process and N - 1 workers (N cores) take the layers one at a time,
    largest first, from one shared counter: whoever is free takes the next.
    Time follows entries as much as bytes, and entries are not known before
    the scan, so a split made in advance left one side idle for a tenth of a
    second on the benchmark image; taken on demand, the sides end within a
    small layer of each other.  This process scans instead of idling, and
    unpacks the workers' scans between its own layers.  Workers return packed
    scans (``cache.pack``), which cross the process boundary several times
    faster than pickled dataclasses.
    """
    workers = worker_count(sum(job[2] for job in jobs), len(jobs))
    if workers <= 1:
        out = []
        for position, job in enumerate(jobs):
            out.append(_scan_window(job))
            if on_scan:
                on_scan(position, out[-1])
        return out
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

    from imgscope.cache import unpack

    where = sorted(range(len(jobs)), key=lambda i: -jobs[i][2])  # largest first: the last taken are small
    order = [jobs[i] for i in where]
    counter = multiprocessing.get_context().Value("i", 0)
    results: dict[int, LayerScan] = {}

    def collect(done: Iterable[Future[tuple[int, bytes] | None]]) -> None:
        for future in done:
            got = future.result()
            if got is not None:
                results[where[got[0]]] = scanned = unpack(got[1])
                if on_scan:
                    on_scan(where[got[0]], scanned)

    with ProcessPoolExecutor(max_workers=workers - 1, initializer=_start_worker, initargs=(order, counter)) as pool:
        try:
            # One task per layer at most: each takes the next layer left, or returns None at once.
            pending = {pool.submit(_scan_claimed) for _ in range(len(jobs))}
            while (i := _claim(counter, len(order))) is not None:
                results[where[i]] = scanned = _scan_window(order[i])
                if on_scan:
                    on_scan(where[i], scanned)
                finished = {f for f in pending if f.done()}
                pending -= finished
                collect(finished)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                collect(finished)
        except BaseException:
            with counter.get_lock():
                counter.value = len(order)  # nothing more to take, for anyone
            _stop_workers(pool)
            raise
    return [results[i] for i in range(len(jobs))]


def worker_count(total: int, tasks: int, *, mind_load: bool = True) -> int:
    """How many processes should scan ``tasks`` layers of ``total`` bytes (1: this one alone).

    ``mind_load=False`` is for callers already busy on several threads (parallel
    downloads), whose helpers take work over rather than add to it: then only
    the cores and the size count.  ``IMGSCOPE_WORKERS`` forces the number,
    whatever the load and the size.
    """
    forced = forced_workers()
    if forced:
        return min(tasks, forced)
    cores, spare = _cores()
    if not mind_load:
        return min(tasks, cores) if total >= PARALLEL_MIN_BYTES else 1
    # On a busy machine a worker mostly competes with this process for the same core and
    # pays its start and the hand-back of its scans for nothing (measured on 2 cores with
    # one kept busy: the serial scan was 20-70% faster), so it takes far more bytes to pay.
    needed = PARALLEL_MIN_BYTES if spare >= 1 else PARALLEL_MIN_BYTES * BUSY_FACTOR
    if total < needed:
        return 1
    return min(tasks, cores, max(2, int(spare + 0.5)))


def forced_workers() -> int:
    """``IMGSCOPE_WORKERS``: the processes to scan with, whatever the load and size (1: none; 0: imgscope decides)."""
    forced = os.environ.get("IMGSCOPE_WORKERS", "")
    return int(forced) if forced.isdigit() else 0


def _cores() -> tuple[int, float]:
    """Cores this process may run on, and how many of them other processes leave idle.

    How busy the machine is: the smaller of the 1-minute load average and the
    number of other tasks runnable right now.  The load average alone lags:
    right after a run of imgscope (or of a benchmark's other command) it still
    says a core is busy when both are idle, and sent every run of a benchmark
    series to one process.  A snapshot alone sometimes catches a passing kernel
    thread (one read in twelve on an idle 2-core machine).  A steady load shows
    in both.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return cores, max(0.0, cores - _busy())


def _busy() -> float:
    """Cores' worth of other work: min(load average, other tasks runnable now), from ``/proc/loadavg``."""
    try:
        with open("/proc/loadavg", "rb") as fh:
            return _busy_of(fh.read())
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - no load average on this platform
        return 0.0


def _busy_of(loadavg: bytes) -> float:
    """``/proc/loadavg`` (``"1.42 1.30 1.10 3/113 4242"``) read as :func:`_busy` reads it."""
    fields = loadavg.split()
    average = float(fields[0])
    running = int(fields[3].split(b"/")[0])  # runnable tasks, the reader included
    return min(average, float(max(0, running - 1)))


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """On an error or Ctrl-C, end the workers now instead of waiting for their layers.

    ``ProcessPoolExecutor`` has no public way to stop a running task; its
    ``_processes`` map is read defensively.  The shutdown then waits for the
    executor's own thread (quick once the workers are gone): left running, it
    races the interpreter's exit and prints an "Exception ignored" traceback.
    """
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


# Members of an outer archive: a docker save archive has a few per layer.  tarfile keeps a
# TarInfo of every member (stream mode too), about 760 bytes each: a million empty members,
# a few hundred kilobytes compressed, took 762 MB.  So the number is bounded, not the bytes.
MAX_MEMBERS = 100_000


def _check_count(count: int, label: str) -> None:
    if count > MAX_MEMBERS:
        raise ImgscopeError(f"{label}: more than {MAX_MEMBERS:,} members: not an image archive")


class TarStore:
    """An uncompressed tar on disk, indexed once; members are read in place."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = str(path)
        self._members: dict[str, tarfile.TarInfo] = {}
        try:
            with tarfile.open(path, "r:") as tf:
                for count, member in enumerate(tf, 1):
                    _check_count(count, self.label)
                    name = posixpath.normpath(member.name.lstrip("/")) if member.name else ""
                    if name.startswith("./"):
                        name = name[2:]
                    self._members[name] = member
                end = tf.offset
        except tarfile.ReadError as exc:
            if "unexpected end of data" in str(exc):
                raise ImgscopeError(f"{path}: archive is truncated ({exc})") from exc
            raise ImgscopeError(f"{path}: not a readable tar archive ({exc})") from exc
        except (EOFError, OSError) as exc:
            raise ImgscopeError(f"{path}: archive is truncated or unreadable ({exc})") from exc
        self._check_end(end)

    def _check_end(self, end: int) -> None:
        """Refuse an archive that stops early: ``tarfile`` takes a cut or a bad header for the end.

        A whole tar ends with a zero block where the next header would be.  A
        half-downloaded archive has nothing there (or not all of the last
        member's data), a damaged one has garbage: without this check both would
        read as a shorter archive and fail later with a misleading "missing".
        """
        size = self.path.stat().st_size
        last = next(reversed(self._members), None) if self._members else None
        if end > size:
            raise ImgscopeError(f"{self.label}: archive is truncated (inside {last or 'its first member'})")
        with open(self.path, "rb") as fh:
            fh.seek(end)
            block = fh.read(512)
        if len(block) < 512:
            where = f"after {last}" if last else "at its start"
            raise ImgscopeError(f"{self.label}: archive is truncated {where} (no end-of-archive marker)")
        if block.strip(b"\x00"):
            raise ImgscopeError(f"{self.label}: archive has a corrupt tar header at byte {end}")

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
            if target == ".." or target.startswith("../"):
                raise ImgscopeError(f"{self.label}: {name} links to {member.linkname}, outside the archive")
            if target == name:
                raise ImgscopeError(f"{self.label}: {name} links to itself")
            resolved = self._members.get(target)
            if resolved is None:
                raise ImgscopeError(f"{self.label}: {name} links to {member.linkname}, which is not in the archive")
            if resolved.issym() or resolved.islnk():
                raise ImgscopeError(
                    f"{self.label}: {name} links to {member.linkname}, itself a link (only one level is followed)"
                )
            if not resolved.isfile():
                raise ImgscopeError(f"{self.label}: {name} links to {member.linkname}, which is not a regular file")
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
        on_scan: ScanDone | None = None,
        trusted: list[str | None] | None = None,
    ) -> list[LayerScan]:
        members = [self._resolve(n) for n in names]
        for member, name in zip(members, names, strict=True):
            self._check_complete(member, name)
        labels = [f"{self.label}: {n}" for n in names]
        ids: list[str | None] = trusted or [None] * len(names)
        if visitor is not None:
            out = []
            with open(self.path, "rb", buffering=0) as fh:
                for member, label, t in zip(members, labels, ids, strict=True):
                    reader = _Window(fh, member.offset_data, member.size)
                    out.append(scan_layer(reader, label, max_bytes=max_bytes, visitor=visitor, diff_id=t))
            return out
        jobs: list[_Job] = [
            (str(self.path), m.offset_data, m.size, label, max_bytes, t)
            for m, label, t in zip(members, labels, ids, strict=True)
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
        self._real_root = root.resolve()

    def _path(self, name: str) -> Path:
        norm = posixpath.normpath(name.lstrip("/"))
        if norm == ".." or norm.startswith("../"):
            raise ImgscopeError(f"{self.label}: {name} points outside the layout")
        path = self.root / norm
        # A link may point at another blob of the layout, never out of it (to a secret,
        # a device or /proc): resolve every name and check where it lands.
        if not path.resolve().is_relative_to(self._real_root):
            raise ImgscopeError(f"{self.label}: {name} is a link that leads outside the layout")
        return path

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
        on_scan: ScanDone | None = None,
        trusted: list[str | None] | None = None,
    ) -> list[LayerScan]:
        paths = [self._path(n) for n in names]
        for p, n in zip(paths, names, strict=True):
            if not p.is_file():
                raise ImgscopeError(f"{self.label}: blob {n} is missing from the layout")
        labels = [f"{self.label}: {n}" for n in names]
        ids: list[str | None] = trusted or [None] * len(names)
        if visitor is not None:
            out = []
            for p, label, t in zip(paths, labels, ids, strict=True):
                with open(p, "rb", buffering=0) as fh:
                    out.append(scan_layer(fh, label, max_bytes=max_bytes, visitor=visitor, diff_id=t))
            return out
        jobs: list[_Job] = [
            (str(p), 0, p.stat().st_size, label, max_bytes, t) for p, label, t in zip(paths, labels, ids, strict=True)
        ]
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
        diff_ids: bool = True,
        worker: ScanWorker | None = None,
        prefetch: bool = True,
    ) -> None:
        """Read the whole stream.

        Layers are scanned in this process, as they pass: with the scanner's C
        loop, relaying a stream's bytes to a helper process costs more than the
        scan it takes over (the 815 MB benchmark app image as a plain stream:
        0.53 s here against 0.93 s with a helper; gzipped, where a thread
        already decompresses beside the scan: 2.8-3.1 s both).
        ``IMGSCOPE_WORKERS`` above 1 still relays them to a helper
        (``scanproc``), started at the first layer; a ``worker`` the caller
        started already (the daemon, before its request: the engine's seconds
        of preparing a save hide the start) is used instead, and stopped at
        the end.  With a ``visitor`` every layer is scanned here: the visitor
        lives in this process.

        ``prefetch``: read the stream on a helper thread, a few chunks ahead
        (:class:`_Prefetch`).  False for a source that reads ahead by itself: a
        socket's kernel buffer takes what the engine sends while the scan runs,
        and a thread on top cost a daemon load more than it hid (the app image's
        save stream, 5 runs alternating: 0.63-1.07 s without against 1.12-1.53 s
        with, 0.2 s less CPU).
        """
        self.label = label
        # False: no SHA-256 of the layers (the costliest part of a scan); their scans then carry
        # an empty DiffID, which load_plan fills in from the config.  For callers that neither
        # verify nor cache, as for the other stores (see ``scan_many``'s ``trusted``).
        self._compute = diff_ids
        self._files: dict[str, bytes] = {}
        self._scans: dict[str, LayerScan] = {}
        self._digests: dict[str, str] = {}
        self._sizes: dict[str, int] = {}
        self._links: dict[str, str] = {}
        self._order: list[str] = []  # the layers, in stream order
        self._worker: ScanWorker | None = worker if visitor is None else None
        if worker is not None and self._worker is None:
            worker.stop()
        try:
            with paused_gc():
                self._read_all(stream, max_bytes, visitor, want, prefetch)
                if self._worker is not None:
                    self._collect(self._worker.results())
        except BaseException as exc:
            if self._worker is None:
                raise
            # A layer the helper had whole came before whatever failed here: its error is the one.
            earlier = None if isinstance(exc, KeyboardInterrupt) else self._worker.earlier_failure()
            self._worker.stop()
            if earlier is not None:
                raise earlier from None
            raise

    def _relay_to(self) -> ScanWorker | None:
        """The helper process to scan layers with, started at the first layer; None: scan here."""
        if self._worker is None and forced_workers() > 1:
            from imgscope.sources.scanproc import ScanWorker

            self._worker = ScanWorker()
        return self._worker

    def _collect(self, scans: dict[str, LayerScan]) -> None:
        """Add the helper's scans, keeping stream order; a plain layer's digest is its DiffID."""
        for name, scanned in scans.items():
            if self._compute and name not in self._digests:
                self._digests[name] = scanned.diff_id
        self._scans = {name: self._scans.get(name) or scans[name] for name in self._order}

    def _read_all(
        self,
        stream: ByteSource,
        max_bytes: int | None,
        visitor: ContentVisitor | None,
        want: Callable[[str], bool] | None,
        ahead: bool,
    ) -> None:
        import hashlib

        prefetch = _Prefetch(stream) if ahead else None
        counted = _Counted(stream if prefetch is None else prefetch)
        kept = 0
        whole = False
        try:
            # 1 MiB reads, not tarfile's 10 KiB: a hundred times fewer Python calls per layer byte.
            with tarfile.open(fileobj=cast(IO[bytes], counted), mode="r|", bufsize=1 << 20) as tf:
                for count, member in enumerate(tf, 1):
                    _check_count(count, self.label)
                    name = posixpath.normpath(member.name.lstrip("/"))
                    if member.issym() or member.islnk():
                        self._links[name] = member.linkname
                        continue
                    if not member.isfile():
                        continue
                    self._sizes[name] = member.size
                    fh = _StreamMember.of(tf, member, counted) or tf.extractfile(member)
                    if fh is None:
                        continue
                    head = fh.read(min(member.size, 512))
                    if self._looks_like_layer(head) and (want is None or want(name)):
                        # A plain layer's blob digest is its DiffID, which the scan computes anyway:
                        # a second SHA-256 of every byte here cost a daemon load a tenth of its time.
                        plain = sniff(head) == PLAIN
                        digest = hashlib.sha256(head)
                        observe = digest.update if self._compute and not plain else _ignore
                        label = f"{self.label}: {name}"
                        self._order.append(name)
                        worker = self._relay_to() if visitor is None else None
                        if worker is not None:
                            diff_id = None if self._compute else UNKNOWN_DIFF_ID
                            worker.scan(name, label, head, _Tee(b"", fh, observe), max_bytes, diff_id)
                            if self._compute and not plain:
                                self._digests[name] = "sha256:" + digest.hexdigest()
                            continue
                        reader = _Tee(head, fh, observe)
                        scanned = scan_layer(
                            reader,
                            label,
                            max_bytes=max_bytes,
                            visitor=visitor,
                            diff_id=None if self._compute else UNKNOWN_DIFF_ID,
                        )
                        self._scans[name] = scanned
                        if self._compute:
                            self._digests[name] = scanned.diff_id if plain else "sha256:" + digest.hexdigest()
                    elif member.size <= MAX_METADATA:
                        kept += member.size
                        if kept > MAX_KEPT:
                            raise ImgscopeError(
                                f"{self.label}: more than {MAX_KEPT >> 20} MiB of files that are neither layers nor "
                                f"metadata (at {name}): not an image archive"
                            )
                        self._files[name] = head + fh.read()
                end = tf.offset
            whole = True
        except (tarfile.ReadError, tarfile.StreamError) as exc:
            if "unexpected end of data" in str(exc):
                raise ImgscopeError(f"{self.label}: archive is truncated ({exc})") from exc
            raise ImgscopeError(f"{self.label}: not a readable tar archive ({exc})") from exc
        except EOFError as exc:
            raise ImgscopeError(f"{self.label}: archive is truncated ({exc})") from exc
        finally:
            # After a failure its read may block until the source sends more: do not wait for it.
            if prefetch is not None:
                prefetch.stop(wait=whole)
        # As in TarStore._check_end: tarfile takes a cut or a bad header for the end.
        block = counted.block_at(end, 512)
        if block is not None and len(block) < 512:
            raise ImgscopeError(f"{self.label}: archive is truncated (no end-of-archive marker)")
        if block is not None and block.strip(b"\x00"):
            raise ImgscopeError(f"{self.label}: archive has a corrupt tar header at byte {end}")

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
        on_scan: ScanDone | None = None,
        trusted: list[str | None] | None = None,
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
            if on_scan:
                on_scan(len(out) - 1, scan)
        return out

    def digest_of(self, name: str) -> str:
        import hashlib

        real = self._resolve(name)
        if real in self._digests:
            return self._digests[real]
        if real in self._scans:
            raise ImgscopeError(f"{self.label}: {name} was read without its digest (use --verify)")
        return "sha256:" + hashlib.sha256(self.read(real)).hexdigest()


class _StreamMember(io.RawIOBase):
    """A member's bytes read from the source itself, not through ``tarfile``'s stream buffer.

    ``tarfile`` in stream mode hands data out through ``_Stream.read``, which
    joins and slices its buffer three times per call: for a daemon's 800 MB
    ``save`` stream, about 2.4 GB of copies and half a second of CPU, as much
    as the rest of the scan.  This reader takes what the stream had buffered,
    then reads the source straight into the scanner's buffer, and keeps the
    stream's position in step, so that ``tarfile`` finds the next header where
    it expects it (it reads only the padding).  :meth:`of` uses it only on the
    ``_Stream`` it knows (CPython's, plain tar); anything else gets
    ``extractfile``.
    """

    def __init__(self, stream: Any, size: int, source: _Counted) -> None:
        self._stream = stream
        self._left = size
        self._source = source

    @classmethod
    def of(cls, tf: tarfile.TarFile, member: tarfile.TarInfo, source: _Counted) -> _StreamMember | None:
        """A reader of ``member`` when ``tf`` streams plain tar from ``source`` and stands at its data, else None."""
        stream = getattr(tf, "fileobj", None)
        if (
            member.issparse()  # its stored data is shorter than member.size: tarfile maps the holes
            or type(stream).__name__ != "_Stream"
            or getattr(stream, "comptype", None) != "tar"
            or getattr(stream, "fileobj", None) is not source
            or getattr(stream, "pos", None) != member.offset_data
            or type(getattr(stream, "buf", None)) is not bytes
        ):
            return None
        return cls(stream, member.size, source)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), self._left)
        if want <= 0:
            return 0
        stream = self._stream
        held = stream.buf
        if held:
            n = min(want, len(held))
            buffer[:n] = held[:n]
            stream.buf = held[n:]
        else:
            n = self._source.readinto(memoryview(buffer)[:want]) or 0
        stream.pos += n
        self._left -= n
        return n


def _ignore(_data: bytes | memoryview) -> None:
    """An observer that does not look."""


class _Prefetch(io.RawIOBase):
    """Reads the source on a helper thread, a few chunks ahead of the scan.

    A daemon's ``save`` stream moves only while someone reads it: read from
    the scanning thread, the engine waits whenever imgscope parses and
    imgscope waits whenever the engine sends.  Socket reads and decompression
    release the GIL, so on a second core the transfer overlaps the scan.  At
    most ``DEPTH`` chunks are held; a failure of the source is raised, as is,
    where the scan reads next.  After :meth:`stop`, reads return what the
    helper had read (nothing is lost) and then read on in the calling thread.
    """

    DEPTH = 8

    def __init__(self, raw: ByteSource) -> None:
        import queue
        import threading

        self._raw = raw
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=self.DEPTH)
        self._empty = queue.Empty
        self._full = queue.Full
        self._spill: list[bytes | BaseException] = []  # what the helper read but could not queue
        self._view = memoryview(b"")
        self._ended = False
        self._direct = False  # stopped, and all it had read consumed: read the source directly
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="imgscope-prefetch", daemon=True)
        self._thread.start()

    def readable(self) -> bool:
        return True

    def _pump(self) -> None:
        try:
            while not self._halt.is_set():
                data = self._raw.read(1 << 20)
                self._put(data)
                if not data:
                    return
        except BaseException as exc:  # handed to the reading thread, which raises it
            self._put(exc)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._halt.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return
            except self._full:
                continue
        self._spill.append(item)

    def _fetch(self) -> bool:
        """Make the next chunk current; False at the end (or once reading directly)."""
        if self._direct:
            return False
        if not self._halt.is_set():
            item: bytes | BaseException | None = self._queue.get()
        else:
            try:
                item = self._queue.get_nowait()
            except self._empty:
                item = self._spill.pop(0) if self._spill else None
        if item is None:
            self._direct = True
            return False
        if isinstance(item, BaseException):
            self._ended = True
            raise item
        if not item:
            self._ended = True
            return False
        self._view = memoryview(item)
        return True

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes; a whole chunk the helper read is handed over as is, without a copy."""
        if not self._view and not self._ended and size >= 1 << 20 and self._fetch() and self._view.nbytes <= size:
            data = self._view.obj
            if isinstance(data, bytes):
                self._view = memoryview(b"")
                return data
        return super().read(size) or b""

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._view:
            if self._ended:
                return 0
            if not self._fetch():
                if self._direct and not self._ended:
                    data = self._raw.read(len(buffer))  # stopped and drained: read on directly
                    buffer[: len(data)] = data
                    return len(data)
                return 0
        n = min(len(buffer), len(self._view))
        buffer[:n] = self._view[:n]
        self._view = self._view[n:]
        return n

    def stop(self, wait: bool = True) -> None:
        """End the helper thread; after waiting for it, what it read stays readable, in order."""
        self._halt.set()
        if wait:
            self._thread.join()


class _Counted(io.RawIOBase):
    """Passes reads through, remembering the last 64 KiB and their offsets.

    ``tarfile`` in stream mode ends quietly on a cut or a corrupt header; the
    bytes kept here let the store look at what stood where it stopped.
    """

    KEEP = 1 << 16

    def __init__(self, raw: ByteSource) -> None:
        self._raw = raw
        self.total = 0
        self._tail: deque[tuple[int, bytes]] = deque()
        self._kept = 0

    def readable(self) -> bool:
        return True

    def _remember(self, data: bytes) -> None:
        """Keep ``data``, which ends at ``self.total``.

        The kept pieces stay contiguous and cover the last ``KEEP`` bytes or more,
        which is what ``block_at`` reads back after a member's header was passed.
        """
        self._tail.append((self.total - len(data), data))
        self._kept += len(data)
        while self._kept - len(self._tail[0][1]) >= self.KEEP:
            self._kept -= len(self._tail.popleft()[1])

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if data:
            self.total += len(data)
            self._remember(data)
        return data

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        """Straight into ``buffer`` (the scanner's): a member's bytes are copied once here, not three times.

        Only the last ``KEEP`` bytes of a read are copied aside; a read that long
        alone covers the whole tail, so nothing older is needed.
        """
        readinto = getattr(self._raw, "readinto", None)
        if readinto is None:
            data = self.read(len(buffer))
            buffer[: len(data)] = data
            return len(data)
        n = int(readinto(buffer) or 0)
        if n:
            self.total += n
            self._remember(bytes(memoryview(buffer)[max(0, n - self.KEEP) : n]))
        return n

    def block_at(self, offset: int, size: int) -> bytes | None:
        """``size`` bytes at ``offset`` (fewer at the end), reading on; None if no longer kept."""
        extra: list[bytes] = []
        have = self.total
        while have < offset + size:
            data = self._raw.read(1 << 16)
            if not data:
                break
            extra.append(data)
            have += len(data)
        start = self._tail[0][0] if self._tail else self.total
        if offset < start:
            return None
        joined = b"".join([d for _, d in self._tail] + extra)
        return joined[offset - start : offset - start + size]


class _Tee(io.RawIOBase):
    """Replays a sniffed head, then reads on, passing every byte to ``observe``."""

    def __init__(self, head: bytes, fh: ByteSource, observe: Callable[[bytes | memoryview], object]) -> None:
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
        readinto = getattr(self._fh, "readinto", None)
        if self._head or readinto is None:
            data = self.read(len(buffer))
            buffer[: len(data)] = data
            return len(data)
        n = int(readinto(buffer) or 0)  # straight into the scanner's buffer: one copy fewer per byte
        if n:
            self._observe(memoryview(buffer)[:n])
        return n
