"""A pure computation run in a forked copy of this process while this one does other work.

After a large image is stacked, ``inspect --json`` has two independent jobs
left, each a few tens of milliseconds of pure Python: the waste analysis and
the writing of the report.  One process does them one after the other
while the second core idles; a forked copy of the process already holds the
stacked image (copy-on-write, nothing is sent), so it can compute the
analysis and send back its small JSON-ready result while this one writes
the report.

Only where it is safe and pays: ``os.fork`` exists, this process runs no
other thread (a fork copies a lock another thread holds, never released in
the child), a core is idle, and the work is large enough.  Otherwise, and
whenever the child fails in any way (an exception, a kill, a result that
does not read back), the computation runs here, in this process: a child's
failure is never the user's error, and a real error of the computation is
raised here, as it would have been without the child.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import signal
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

# Below this much work (callers count it in entries) a fork costs more than it saves.
MIN_WORK = 10_000


class Forked:
    """``fn(*args)``, computed in a forked child when that pays, else when asked for.

    The result must be plain data that :mod:`marshal` carries (dicts, lists,
    strings, numbers): it crosses back through a pipe.  Use as a context
    manager: leaving it stops a child whose result was never asked for.
    """

    def __init__(self, fn: Callable[..., Any], *args: Any, work: int = 0) -> None:
        self._fn = fn
        self._args = args
        self._pid = 0
        self._fd = -1
        self._done = False
        self._value: Any = None
        if work >= MIN_WORK and _can_fork():
            self._start()

    def _start(self) -> None:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: compute, send, and end without running any of the parent's exit code
            status = 1
            try:
                os.close(read)
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
                data = marshal.dumps(self._fn(*self._args))
                with open(write, "wb") as out:
                    out.write(data)
                status = 0
            finally:
                os._exit(status)
        os.close(write)
        self._pid, self._fd = pid, read

    def result(self) -> Any:
        """The value: the child's when it sent one, else computed here, now."""
        if self._done:
            return self._value
        value: Any = None
        sent = False
        if self._pid:
            with open(self._fd, "rb") as pipe:
                data = pipe.read()
            self._fd = -1
            _, status = os.waitpid(self._pid, 0)
            self._pid = 0
            if status == 0:
                with contextlib.suppress(ValueError, EOFError, TypeError):
                    value, sent = marshal.loads(data), True
        if not sent:
            value = self._fn(*self._args)
        self._value, self._done = value, True
        return value

    def close(self) -> None:
        """Stop and reap a child still running (its result will not be asked for)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, 0)
            self._pid = 0

    def __enter__(self) -> Forked:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _can_fork() -> bool:
    """Whether a child may run beside this process now: fork exists, no other thread, a core idle."""
    if not hasattr(os, "fork") or threading.active_count() > 1:
        return False
    from imgscope.sources.store import _cores

    cores, spare = _cores()
    return cores >= 2 and spare >= 1
