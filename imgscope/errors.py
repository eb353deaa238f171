"""The one exception a user can cause.

Every failure that comes from the input (a missing file, a corrupt archive, a
daemon that does not answer) is raised as :class:`ImgscopeError` with a single
line that names the thing at fault; the CLI prints that line and exits 2.
Anything else that escapes is a bug and deserves its traceback.
"""

from __future__ import annotations

import re

# What str.splitlines() breaks on: each is shown as an escape, so a name holding one keeps
# the message on one line without cutting off the reason after it.
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def _escape_break(found: re.Match[str]) -> str:
    char = found.group()
    return {"\n": "\\n", "\r": "\\r"}.get(char) or f"\\u{ord(char):04x}"


class ImgscopeError(Exception):
    """An error in what the user gave us, with a one-line message fit to print."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(_LINE_BREAKS.sub(_escape_break, message.strip()) if message.strip() else "error")
        self.message = str(self)
