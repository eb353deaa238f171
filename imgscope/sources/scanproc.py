"""Scan the layers of a stream in a helper process, fed through a pipe.

A stream (the daemon's ``docker save``, a compressed archive) can only be
read in order, by one reader, so its layers cannot be split between
processes the way an archive on disk is (``store._scan_parallel``).  But
reading it is itself half the work: the HTTP body of an 800 MB save stream
costs this process as much CPU as parsing the tars inside it.  So this
process reads the stream and relays each layer's bytes, as they pass, to one
helper process that scans them (``scan_layer``, the very same function) and
sends the scans back packed (``cache.pack``).  Reading and scanning then run
on two cores instead of taking turns on one.

Protocol (private to this module; both ends are this file):

- to the helper, per layer: a header frame (4-byte big-endian length, then
  ``marshal`` of ``(label, max_bytes, diff_id)``), then data frames (4-byte
  length and that many bytes), then an empty frame: the layer's end;
- from the helper, per layer, in the same order: one byte of kind (``S`` a
  packed scan, ``E`` an :class:`ImgscopeError`'s message, ``X`` an unexpected
  failure's traceback), an 8-byte length, and the payload.

The helper is started with ``python -m imgscope.sources.scanproc`` rather than
forked: the parent has threads running (the stream's prefetch), and a fork
would copy whatever locks they held.  Its start (under a tenth of a second)
is hidden when the caller starts it before the stream's first byte arrives
(the daemon spends seconds preparing a ``save``).
"""

from __future__ import annotations

import contextlib
import io
import marshal
import os
import signal
import struct
import subprocess
import sys
import threading
import traceback
from collections import deque
from typing import BinaryIO, cast

from imgscope.errors import ImgscopeError
from imgscope.model import LayerScan
from imgscope.sources.compression import CHUNK, ByteSource

_LEN = struct.Struct(">I")
_RESULT = struct.Struct(">cQ")
# Bytes the kernel holds between the two processes: the largest a pipe takes unprivileged by
# default (``/proc/sys/fs/pipe-max-size``), so a 1 MiB chunk passes in one write.
_PIPE_SIZE = 1 << 20


class ScanWorker:
    """One helper process scanning, in order, the layers this process relays to it."""

    def __init__(self) -> None:
        env = dict(os.environ)
        env.pop("IMGSCOPE_WORKERS", None)  # the helper scans in one process, whatever its parent was told
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "imgscope.sources.scanproc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            bufsize=0,
        )
        self._to = cast(BinaryIO, self._proc.stdin)
        self._from = cast(BinaryIO, self._proc.stdout)
        _widen(self._to)
        self._buf = bytearray(_LEN.size + CHUNK)
        self._names: list[str] = []  # every layer sent, in order
        self._ready: deque[tuple[bytes, bytes]] = deque()  # (kind, payload) read back, not yet taken
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # notified on each result and at the end
        self._ended = False  # the helper's output ended (it exited)
        self._scans: dict[str, LayerScan] = {}
        self._failure: tuple[int, ImgscopeError | RuntimeError] | None = None  # the first, by layer order
        self._taken = 0  # results taken so far (index of the next layer's result)
        self._relaying: int | None = None  # the layer whose bytes are being relayed
        self._reader = threading.Thread(target=self._collect, name="imgscope-scan-results", daemon=True)
        self._reader.start()

    # ------------------------------------------------------------------ parent side

    def scan(
        self, name: str, label: str, head: bytes, fh: ByteSource, max_bytes: int | None, diff_id: str | None
    ) -> int:
        """Relay one layer (``head``, then ``fh`` to its end) to the helper; the bytes relayed.

        ``diff_id`` is ``scan_layer``'s: None to compute the DiffID, else taken
        as is.  Returns once every byte is in the pipe, not when the scan is
        done: :meth:`wait` or :meth:`results` give the scans.  A failure the
        helper already reported for an earlier layer is raised here, so a
        broken layer stops the stream about as soon as scanning it in this
        process would have.
        """
        self._raise_failure()
        index = len(self._names)
        self._names.append(name)
        self._relaying = index
        header = marshal.dumps((label, max_bytes, diff_id))
        self._write(_LEN.pack(len(header)) + header)
        total = 0
        if head:
            self._write(_LEN.pack(len(head)) + head)
            total += len(head)
        view = memoryview(self._buf)
        readinto = getattr(fh, "readinto", None)
        while True:
            if readinto is not None:
                n = int(readinto(view[_LEN.size :]) or 0)
            else:
                data = fh.read(CHUNK)
                n = len(data)
                view[_LEN.size : _LEN.size + n] = data
            if not n:
                break
            _LEN.pack_into(self._buf, 0, n)
            self._write(view[: _LEN.size + n])
            total += n
            self._take()
            if self._failure is not None and self._failure[0] <= index:
                # This layer (or an earlier one) failed: what is left of it would be relayed for nothing.
                self._raise_failure()
        self._write(_LEN.pack(0))
        self._relaying = None
        self._take()
        return total

    def wait(self, name: str) -> LayerScan:
        """The scan of the layer relayed as ``name``, once the helper sent it (its failure is raised)."""
        while True:
            self._take()
            scan = self._scans.get(name)
            if scan is not None:
                return scan
            self._raise_failure()
            if self._ended and not self._ready:
                self.stop()
                raise RuntimeError(f"the scan helper process ended early (exit code {self._proc.poll()})")
            with self._arrived:
                if not self._ready and not self._ended:
                    self._arrived.wait(1.0)

    def close(self) -> None:
        """End an idle helper the polite way: no more layers (it exits when its input ends)."""
        self._close_input()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=10)
        self.stop()

    def results(self) -> dict[str, LayerScan]:
        """Wait for the scans of every layer relayed: by name; a failure is raised, the earliest layer's first."""
        self._close_input()
        self._reader.join()
        self._take()
        self._raise_failure()
        if self._taken < len(self._names):
            self.stop()
            raise RuntimeError(f"the scan helper process ended early (exit code {self._proc.poll()})")
        self.stop()
        return self._scans

    def earlier_failure(self, timeout: float = 10.0) -> ImgscopeError | RuntimeError | None:
        """After this process failed mid-stream: a failure the helper found in a layer it had whole.

        Such a layer came first in the stream, so its error is the one the
        in-process scan would have raised.  The layer being relayed when this
        process failed is cut short: its result says nothing and is ignored.
        """
        self._close_input()
        self._reader.join(timeout)
        self._take()
        self.stop()
        if self._failure is not None and self._failure[0] != self._relaying:
            return self._failure[1]
        return None

    def stop(self) -> None:
        """End the helper now (after an error or Ctrl-C; a no-op once it exited)."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._close_input()
        self._reader.join()
        self._from.close()

    def _write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                done = os.write(self._to.fileno(), view)
                view = view[done:]
        except (BrokenPipeError, ValueError):
            self._reader.join(1.0)
            self._take()
            self._raise_failure()
            raise RuntimeError(f"the scan helper process ended early (exit code {self._proc.poll()})") from None

    def _close_input(self) -> None:
        if not self._to.closed:
            with contextlib.suppress(BrokenPipeError):
                self._to.close()

    def _collect(self) -> None:
        """Reader thread: results as they come (the pipe must never fill while this process writes)."""
        source = self._from
        try:
            while True:
                head = _read_exact(source, _RESULT.size)
                if len(head) < _RESULT.size:
                    break
                kind, size = _RESULT.unpack(head)
                payload = _read_exact(source, size)
                if len(payload) < size:
                    break
                with self._arrived:
                    self._ready.append((kind, payload))
                    self._arrived.notify_all()
        except (OSError, ValueError):
            pass
        with self._arrived:
            self._ended = True
            self._arrived.notify_all()

    def _take(self) -> None:
        """Turn the results read so far into scans (in this thread: unpacking builds many objects)."""
        from imgscope.cache import unpack

        while self._ready:
            with self._lock:
                kind, payload = self._ready.popleft()
            index = self._taken
            self._taken += 1
            name = self._names[index]
            if kind == b"S":
                self._scans[name] = unpack(payload)
            elif self._failure is None:
                text = payload.decode("utf-8", "replace")
                failure = ImgscopeError(text) if kind == b"E" else RuntimeError(f"the scan helper failed: {text}")
                self._failure = (index, failure)

    def _raise_failure(self) -> None:
        if self._failure is not None:
            self.stop()
            raise self._failure[1]


def _widen(pipe: BinaryIO) -> None:
    """Let the pipe hold a whole chunk (Linux; elsewhere the default size only costs more writes)."""
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
    except (ImportError, AttributeError, OSError):
        pass


def _read_exact(source: BinaryIO | io.FileIO, size: int) -> bytes:
    parts = []
    left = size
    while left:
        data = source.read(left)
        if not data:
            break
        parts.append(data)
        left -= len(data)
    return b"".join(parts)


# ---------------------------------------------------------------------- helper side


class _Frames(io.RawIOBase):
    """One layer's bytes, read from the frames on standard input, up to its empty frame."""

    def __init__(self, source: io.FileIO) -> None:
        self._source = source
        self._left = 0
        self.ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._left:
            if self.ended:
                return 0
            head = _read_exact(self._source, _LEN.size)
            if len(head) < _LEN.size:  # the parent went away mid-layer: the layer ends here
                self.ended = True
                return 0
            (self._left,) = _LEN.unpack(head)
            if not self._left:
                self.ended = True
                return 0
        n = self._source.readinto(memoryview(buffer)[: min(len(buffer), self._left)]) or 0
        if not n:
            self.ended = True
            self._left = 0
            return 0
        self._left -= n
        return n

    def drain(self) -> None:
        """Skip what the scan did not read (padding after the tar's end, or all of it after an error)."""
        sink = memoryview(bytearray(CHUNK))
        while self.readinto(sink):
            pass


def serve(source: io.FileIO, out: BinaryIO) -> None:
    """The helper's loop: scan each layer it is sent, send back its scan or its error."""
    from imgscope.cache import pack
    from imgscope.scan import scan_layer

    while True:
        head = _read_exact(source, _LEN.size)
        if len(head) < _LEN.size:
            return
        (size,) = _LEN.unpack(head)
        label, max_bytes, diff_id = marshal.loads(_read_exact(source, size))
        frames = _Frames(source)
        try:
            scan = scan_layer(frames, label, max_bytes=max_bytes, diff_id=diff_id)
            kind, payload = b"S", pack(scan)
        except ImgscopeError as exc:
            kind, payload = b"E", str(exc).encode("utf-8", "surrogateescape")
        except Exception:  # reported to the parent, which raises it as an internal error
            kind, payload = b"X", traceback.format_exc().encode("utf-8", "replace")
        frames.drain()
        out.write(_RESULT.pack(kind, len(payload)))
        out.write(payload)
        out.flush()


def main() -> None:
    """Entry point of the helper process."""
    # Ctrl-C reaches the whole process group; the parent stops this process itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(io.FileIO(sys.stdin.fileno(), "rb", closefd=False), sys.stdout.buffer)


if __name__ == "__main__":
    main()
