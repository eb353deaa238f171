"""What a container wrote since it started, in the words the image commands use.

``docker diff`` gives paths and a letter (A, C, D).  It cannot tell a real
content change from a file that was only copied up (``touch``, an open for
writing, a ``chmod``), and it reports every ancestor of a change as C.  Here
each path the engine lists is compared with the image's final tree, using the
same rules as the layer stack (:func:`imgscope.stack.classify`), so one
vocabulary covers images and containers: added, modified, metadata,
re-shipped, removed, plus ``parent`` for a directory the engine lists only
because something below it changed.

This module is pure: it takes what the daemon source observed
(:class:`~imgscope.sources.daemon.ContainerSnapshot`) and a stacked image,
and returns plain data for the renderers.
"""

from __future__ import annotations

import bisect
import dataclasses
import difflib
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from imgscope.model import ADDED, DIR, FILE, HARDLINK, METADATA, MODIFIED, REMOVED, RESHIPPED, Entry
from imgscope.stack import FinalEntry, classify

if TYPE_CHECKING:
    from imgscope.sources.daemon import ContainerSnapshot, Mount
    from imgscope.stack import Stack

PARENT = "parent"
CONTAINER_KINDS = (ADDED, MODIFIED, METADATA, RESHIPPED, REMOVED, PARENT)
# Files larger than this are compared by size and hash only: difflib is quadratic at worst.
TEXT_DIFF_LIMIT = 4 << 20
INIT_LAYER_NOTE = "not in the image: made by the engine when the container was created"


@dataclass(frozen=True, slots=True)
class PathChange:
    """One path of the writable layer, classified against the image.

    ``size`` is what the path holds now (Docker's count: content bytes, a
    symlink's target length, 0 for directories); for a removal it is what the
    path held in the image (a directory: everything below it).
    """

    path: str
    kind: str
    engine_kind: str
    size: int
    current: Entry | None
    image: Entry | None
    layer: int | None = None
    note: str = ""

    @property
    def type(self) -> str:
        entry = self.current or self.image
        return entry.type if entry is not None else FILE

    @property
    def delta(self) -> int:
        """Change of the path's visible size against the image."""
        if self.kind == REMOVED:
            return -self.size
        return self.size - (self.image.size if self.image is not None else 0)


@dataclass(frozen=True, slots=True)
class KindTotal:
    """Count and bytes of one kind of change."""

    count: int = 0
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class ContainerTotals:
    """Per-kind totals, and the bytes the writable layer holds (about ``docker ps -s``)."""

    kinds: tuple[tuple[str, KindTotal], ...]
    writable_bytes: int

    def of(self, kind: str) -> KindTotal:
        for name, total in self.kinds:
            if name == kind:
                return total
        return KindTotal()


@dataclass(frozen=True, slots=True)
class ContainerReport:
    """The container diff: identity, classified changes (largest first), totals, mounts."""

    container_id: str
    name: str
    status: str
    endpoint: str
    image_ref: str
    image_id: str
    changes: tuple[PathChange, ...]
    totals: ContainerTotals
    mounts: tuple[Mount, ...] = ()
    warnings: tuple[str, ...] = ()

    def change(self, path: str) -> PathChange | None:
        """The change at ``path``, if the container changed it."""
        for change in self.changes:
            if change.path == path:
                return change
        return None


class Content(Protocol):
    """Bytes of one version of a file (``data`` None when it was too large to fetch)."""

    @property
    def size(self) -> int: ...

    @property
    def digest(self) -> str: ...

    @property
    def data(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class ContentDiff:
    """``--content PATH``: a unified diff of a text file, or sizes and hashes of a binary one."""

    path: str
    kind: str
    image_size: int | None
    image_digest: str | None
    container_size: int | None
    container_digest: str | None
    binary: bool
    lines: tuple[str, ...] = ()
    note: str = ""


def _resolve(entry: Entry, lookup: dict[str, Entry]) -> Entry:
    """A hardlink compared as the regular file it shares an inode with (mode included)."""
    if entry.type != HARDLINK:
        return entry
    target = lookup.get(entry.link)
    if target is None or target.type != FILE:
        return dataclasses.replace(entry, type=FILE)
    return dataclasses.replace(entry, type=FILE, size=target.size, digest=target.digest, link="")


def _ancestors(path: str) -> list[str]:
    out = []
    while path not in ("/", ""):
        path = posixpath.dirname(path)
        out.append(path)
    return out


def _subtree_bytes(path: str, final: dict[str, FinalEntry], ordered: list[str]) -> int:
    """Bytes of ``path`` and everything below it in the image."""
    found = final.get(path)
    total = found.entry.size if found is not None else 0
    prefix = path.rstrip("/") + "/"
    start = bisect.bisect_left(ordered, prefix)
    for p in ordered[start:]:
        if not p.startswith(prefix):
            break
        total += final[p].entry.size
    return total


def bytes_below(stack: Stack) -> Callable[[str], int]:
    """``path -> bytes`` the image holds at and below a path: what reading it whole would stream.

    The daemon source uses it to decide whether one archive of a changed
    directory is cheaper than one request per changed file in it.
    """
    final = stack.final
    ordered = sorted(final)

    def measure(path: str) -> int:
        return _subtree_bytes(path, final, ordered)

    return measure


def analyse(snapshot: ContainerSnapshot, stack: Stack) -> ContainerReport:
    """Classify every path of ``docker diff`` against the stacked image of the container."""
    final = stack.final
    ordered = sorted(final)
    image_entries = {p: f.entry for p, f in final.items()}
    now = {c.path: c.current for c in snapshot.changes if c.current is not None}
    with_children: set[str] = set()
    for c in snapshot.changes:
        with_children.update(_ancestors(c.path))
    mount_points = {m.destination: m for m in snapshot.mounts}
    changes: list[PathChange] = []
    for observed in snapshot.changes:
        path = observed.path
        before = final.get(path)
        image_entry = _resolve(before.entry, image_entries) if before is not None else None
        layer = before.layer if before is not None else None
        note = ""
        if path in mount_points:
            note = f"mount point of a {mount_points[path].type or 'volume'}: its content is not in the writable layer"
        if observed.kind == "D":
            size = _subtree_bytes(path, final, ordered) if before is not None else 0
            changes.append(
                PathChange(
                    path, REMOVED, "D", size, None, image_entry, layer, note or ("" if before else INIT_LAYER_NOTE)
                )
            )
            continue
        current = observed.current
        if current is None:
            continue  # vanished before it could be read: the snapshot carries a warning
        shown = current
        if current.type == HARDLINK:
            target = now.get(current.link)
            note = note or f"hardlink to {current.link}"
            if target is not None and target.type == FILE:
                shown = dataclasses.replace(current, type=FILE, digest=target.digest, size=target.size, link="")
        if image_entry is None:
            kind = ADDED
            if observed.kind == "C":
                kind = PARENT if current.type == DIR and path in with_children else MODIFIED
                note = note or INIT_LAYER_NOTE
        else:
            found = classify(image_entry, shown)
            if found is None:  # a directory whose own metadata did not change
                found = PARENT if path in with_children else RESHIPPED
            kind = found
        changes.append(PathChange(path, kind, observed.kind, current.size, current, image_entry, layer, note))
    changes.sort(key=lambda c: (-c.size, CONTAINER_KINDS.index(c.kind), c.path))
    kinds = []
    for kind in CONTAINER_KINDS:
        picked = [c for c in changes if c.kind == kind]
        kinds.append((kind, KindTotal(len(picked), sum(c.size for c in picked))))
    writable = sum(c.size for c in changes if c.kind != REMOVED)
    return ContainerReport(
        container_id=snapshot.id,
        name=snapshot.name,
        status=snapshot.status,
        endpoint=snapshot.endpoint,
        image_ref=snapshot.image_ref,
        image_id=snapshot.image_id,
        changes=tuple(changes),
        totals=ContainerTotals(tuple(kinds), writable),
        mounts=snapshot.mounts,
        warnings=(*snapshot.warnings, *stack.image.warnings),
    )


def _is_text(data: bytes) -> bool:
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def content_diff(path: str, kind: str, old: Content | None, new: Content | None) -> ContentDiff:
    """A unified diff of the image's version (``old``) and the container's (``new``) of one file.

    Either side may be missing (an added or a removed file).  A side too large
    to fetch, or bytes that are not UTF-8 text, make it a binary comparison:
    sizes and hashes, no lines.
    """
    old_data = old.data if old is not None else b""
    new_data = new.data if new is not None else b""
    base = ContentDiff(
        path=path,
        kind=kind,
        image_size=old.size if old is not None else None,
        image_digest=old.digest if old is not None else None,
        container_size=new.size if new is not None else None,
        container_digest=new.digest if new is not None else None,
        binary=False,
    )
    if old_data is None or new_data is None:
        return dataclasses.replace(base, binary=True, note=f"larger than {TEXT_DIFF_LIMIT} bytes: compared by hash")
    if not (_is_text(old_data) and _is_text(new_data)):
        return dataclasses.replace(base, binary=True, note="binary file: compared by size and hash")
    if old is not None and new is not None and old.digest == new.digest:
        return dataclasses.replace(base, note="same content as in the image")
    lines = difflib.unified_diff(
        old_data.decode("utf-8").splitlines(),
        new_data.decode("utf-8").splitlines(),
        fromfile=f"image:{path}" if old is not None else "/dev/null",
        tofile=f"container:{path}" if new is not None else "/dev/null",
        lineterm="",
    )
    return dataclasses.replace(base, lines=tuple(lines))
