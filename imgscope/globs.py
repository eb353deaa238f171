"""Path globs as DESIGN.md defines them: ``*`` stays in one directory, ``**`` crosses them.

Globs match the absolute path.  A glob that does not start with ``/`` matches
at any depth (``*.pyc`` is ``**/*.pyc``), which is what people mean when they
type a bare name.
"""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=256)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """Compile one glob to an anchored regular expression."""
    if not pattern.startswith("/"):
        pattern = "/**/" + pattern.removeprefix("**/")
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("/**/", i):
            out.append("(?:/.*)?/")
            i += 4
            continue
        if pattern.startswith("/**", i) and i + 3 == len(pattern):
            out.append("(?:/.*)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def match(pattern: str, path: str) -> bool:
    """Does the absolute ``path`` match ``pattern``?"""
    return compile_glob(pattern).match(path) is not None
