"""Run the explorer's content audit in a plain child process, and this module's ``python -m`` entry.

Why not multiprocessing: under textual ``sys.stderr`` is replaced by an
object whose ``fileno()`` is -1, and multiprocessing's resource tracker
(started lazily by the first pool) hands that descriptor to the child it
spawns: ``ValueError: bad value(s) in fds_to_keep`` a second after the
browser shows.  A ``subprocess.Popen`` with every standard stream given
explicitly as a pipe never looks at ``sys.stderr``, so it starts the same
way before and after textual takes the terminal.  The request and the
answer travel pickled over stdin and stdout; the child's stderr is kept so
a crash can be reported as one line.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imgscope.errors import ImgscopeError

if TYPE_CHECKING:
    from imgscope.cli.common import SourceOptions
    from imgscope.explore.model import Finding

AuditResult = tuple[list["Finding"], int] | None


@dataclass(frozen=True, slots=True)
class _Request:
    ref: str
    opts: SourceOptions


class ChildAudit:
    """One content audit in a child process: :meth:`run` waits for it, :meth:`close` ends it early.

    Every failure of the child (an error of the image, a crash, a kill)
    becomes an :class:`ImgscopeError` with a one-line message, which the
    explorer shows as a notice.
    """

    def __init__(self, ref: str, opts: SourceOptions) -> None:
        self.ref = ref
        self.opts = opts
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._closed = False

    def run(self) -> AuditResult:
        """Start the child, send it the request and wait for its answer."""
        with self._lock:
            if self._closed:
                raise ImgscopeError("the audit was cancelled")
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "imgscope.explore.child"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                close_fds=True,
            )
        proc = self._proc
        out, err = proc.communicate(pickle.dumps(_Request(self.ref, self.opts)))
        if self._closed:
            raise ImgscopeError("the audit was cancelled")
        try:
            status, value = pickle.loads(out)
        except Exception:
            raise ImgscopeError(f"the audit process ended with status {proc.returncode}{_last_line(err)}") from None
        if status == "ok":
            result: AuditResult = value
            return result
        raise ImgscopeError(str(value))

    def close(self) -> None:
        """Stop the child if it still runs (the user quit before the audit finished)."""
        with self._lock:
            self._closed = True
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def __call__(self) -> AuditResult:
        return self.run()


def _last_line(err: bytes) -> str:
    lines = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
    return f": {lines[-1].strip()}" if lines else ""


def _main() -> int:
    """The child: read a request on stdin, write ("ok", result) or ("error", message) on stdout."""
    from imgscope.explore.content import audit_contents

    request: _Request = pickle.loads(sys.stdin.buffer.read())
    try:
        answer: tuple[str, object] = ("ok", audit_contents(request.ref, request.opts))
    except ImgscopeError as exc:
        answer = ("error", exc.message)
    except Exception as exc:  # a bug: still one line for the notice, never a traceback on the screen
        answer = ("error", f"internal error in the audit: {type(exc).__name__}: {exc}")
    sys.stdout.buffer.write(pickle.dumps(answer))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_main())
