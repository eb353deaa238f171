"""Types of the C fast path of the tar scanner (``imgscope/_tarscan.c``)."""

from collections.abc import Callable

from imgscope.model import Entry

def configure(
    entry: type[Entry],
    setters: tuple[object, ...],
    file: str,
    directory: str,
    symlink: str,
    estargz_names: frozenset[str],
    hexdigest: Callable[[memoryview], str],
    /,
) -> None: ...
def run(
    view: memoryview,
    pos: int,
    end: int,
    entries: dict[str, Entry],
    shared: dict[int, int],
    written: Callable[[str, bool], None] | None,
    index: Callable[[str], None] | None,
    /,
) -> int: ...
