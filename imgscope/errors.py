"""The one exception a user can cause.

Every failure that comes from the input (a missing file, a corrupt archive, a
daemon that does not answer) is raised as :class:`ImgscopeError` with a single
line that names the thing at fault; the CLI prints that line and exits 2.
Anything else that escapes is a bug and deserves its traceback.
"""

from __future__ import annotations


class ImgscopeError(Exception):
    """An error in what the user gave us, with a one-line message fit to print."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message.splitlines()[0] if message else "error")
        self.message = str(self)
