"""Apply layer scans in order: what each step changed, and the final file tree.

This is where whiteouts, opaque directories and type changes take effect, and
where every entry a layer ships is classified in DESIGN.md's one vocabulary
(added, modified, metadata, re-shipped, removed).  Each change keeps the
entry it replaced and the layer that had stored it, so analyses (waste,
diff, audit) can follow every stored copy of a path without re-reading
anything.  History is paired with layers here, empty steps included.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

from imgscope.model import (
    ADDED,
    CHANGE_KINDS,
    DIR,
    FILE,
    HARDLINK,
    METADATA,
    MODIFIED,
    REMOVED,
    RESHIPPED,
    SYMLINK,
    Entry,
    HistoryEntry,
    Image,
    LayerScan,
)
from imgscope.scan import MAX_WARNINGS, paused_gc

WHITEOUT = "whiteout"
OPAQUE = "opaque"
REPLACED = "replaced"


@dataclass(frozen=True, slots=True)
class Change:
    """One path a layer changed, with what stood there before (``old``) and where it came from."""

    path: str
    kind: str
    entry: Entry | None
    old: Entry | None = None
    old_layer: int | None = None
    cause: str = ""
    # A hard link that took over ``old``'s content when this change hid it: those bytes stay visible.
    kept_by: str = ""

    @property
    def size(self) -> int:
        """Bytes this change stores in its layer (0 for a removal)."""
        return self.entry.size if self.entry is not None else 0

    @property
    def delta(self) -> int:
        """How the visible size of this path moved: new size minus old size."""
        return self.size - (self.old.size if self.old is not None else 0)


@dataclass(frozen=True, slots=True)
class KindTotals:
    """Count and bytes of one change kind in one layer."""

    count: int = 0
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class LayerResult:
    """One layer after stacking: its scan facts and its changes."""

    index: int
    diff_id: str
    chain_id: str
    size: int
    changes: tuple[Change, ...]
    totals: tuple[tuple[str, KindTotals], ...]
    warnings: tuple[str, ...] = ()

    def total(self, kind: str) -> KindTotals:
        """Totals of one change kind."""
        for name, value in self.totals:
            if name == kind:
                return value
        return KindTotals()


@dataclass(frozen=True, slots=True)
class Step:
    """One history step: a layer, or an empty step (ENV, CMD...) with ``layer`` None."""

    position: int
    layer: int | None
    instruction: str
    created_by: str
    created: str | None
    comment: str | None
    empty: bool
    history_missing: bool = False


@dataclass(frozen=True, slots=True)
class FinalEntry:
    """An entry of the final (or as-of-layer) tree and the layer that last wrote it."""

    entry: Entry
    layer: int


@dataclass(frozen=True, slots=True)
class Stack:
    """A stacked image: steps, per-layer changes and the final tree."""

    image: Image
    steps: tuple[Step, ...]
    layers: tuple[LayerResult, ...]
    final: dict[str, FinalEntry]
    warnings: tuple[str, ...] = ()

    def files(self) -> Iterator[FinalEntry]:
        """Final entries in path order."""
        return map(self.final.__getitem__, sorted(self.final))


def chain_ids(diff_ids: tuple[str, ...] | list[str]) -> list[str]:
    """ChainIDs of a DiffID list (FORMATS.md section 3)."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out


_BUILD_ARGS = re.compile(r"^\|(\d+)\s+")
_SHELLS = ("/bin/sh -c ", "/bin/bash -c ", "/bin/sh -c\t")
_CONTENT_HASH = re.compile(r"\b(file|dir|multi):([0-9a-f]{12})[0-9a-f]{52}\b")


def instruction(created_by: str) -> str:
    """A Dockerfile-like instruction from a history ``created_by`` (legacy builder or BuildKit).

    Long content hashes of the legacy builder (``ADD file:<64 hex> in /``) are
    shortened to 12 digits for people; JSON keeps the raw ``created_by``.
    """
    return _CONTENT_HASH.sub(r"\1:\2…", _instruction(created_by))


def _instruction(created_by: str) -> str:
    text = created_by.strip()
    if not text:
        return ""
    if text.endswith("# buildkit"):
        text = text[: -len("# buildkit")].rstrip()
    if text.startswith("RUN ") and (text[4:].startswith("|") or text[4:].startswith(_SHELLS)):
        inner = _instruction(text[4:])
        return inner if inner.startswith("RUN ") else "RUN " + inner
    match = _BUILD_ARGS.match(text)
    if match:
        rest = text[match.end() :].split(" ")
        count = int(match.group(1))
        text = " ".join(rest[count:])
    for shell in _SHELLS:
        if text.startswith(shell):
            body = text[len(shell) :].lstrip()
            if body.startswith("#(nop)"):
                return body[len("#(nop)") :].strip()
            return "RUN " + body.strip()
    return text


def _descendants(path: str, children: dict[str, set[str]]) -> Iterator[str]:
    """Every path below ``path`` that the tree holds (iteratively: trees can be deep)."""
    stack = [path]
    while stack:
        for child in children.get(stack.pop(), ()):
            yield child
            stack.append(child)


def classify(old: Entry, new: Entry) -> str | None:
    """The change kind from ``old`` to ``new`` at one path; None for an untouched directory."""
    if old.type != new.type:
        return MODIFIED
    if new.type == FILE and (old.digest != new.digest or old.size != new.size):
        return MODIFIED
    if new.type in (SYMLINK, HARDLINK) and old.link != new.link:
        return MODIFIED
    if new.type == HARDLINK and old.digest != new.digest:
        return MODIFIED
    if new.type not in (FILE, SYMLINK, HARDLINK, DIR) and (old.devmajor, old.devminor) != (
        new.devmajor,
        new.devminor,
    ):
        return MODIFIED
    if (old.mode, old.uid, old.gid, old.xattrs) != (new.mode, new.uid, new.gid, new.xattrs):
        return METADATA
    if new.type == DIR:
        return None  # a directory shipped again only to carry its children
    return RESHIPPED


def _slot_setters(cls: type) -> tuple[Callable[[Any, Any], None], ...]:
    """Each field's slot setter, in field order, to fill in a frozen dataclass without its ``__init__``.

    A frozen dataclass's ``__init__`` sets every field through ``object.__setattr__``
    (0.8 us a FinalEntry, 1.9 us a Change); the slots' own setters do the same
    in a third of that.  Only for the hot loop of :func:`_apply`, which sets
    every field (a slot left unset would raise on reading; a field added to the class
    breaks the unpacking of these setters there, loudly).
    """
    return tuple(getattr(cls, field.name).__set__ for field in fields(cls))


_FINAL_ENTRY_SLOTS = _slot_setters(FinalEntry)
_CHANGE_SLOTS = _slot_setters(Change)


class _Tree:
    """The merged tree while layers are applied, with a child index for subtree removals.

    The index maps a directory to the full paths of its children (the entries'
    own strings, so it costs a set slot per entry, not a new name string), and
    is kept up to date with plain string operations: it is touched once per
    entry of every layer, which makes it the hot loop of stacking.
    """

    def __init__(self) -> None:
        self.entries: dict[str, FinalEntry] = {}
        self.children: dict[str, set[str]] = {}
        # Hard-link target -> paths of links once stored to it (checked against ``entries`` on use).
        self.links: dict[str, list[str]] = {}

    def attach(self, path: str) -> None:
        """Link a path the tree does not hold yet into the child index, with its missing ancestors.

        Every directory the index holds is linked to its parent (up to the root), so
        the walk stops at the first link already there.
        """
        children = self.children
        child = path
        while child != "/":
            parent = child[: child.rfind("/")] or "/"
            siblings = children.get(parent)
            if siblings is None:
                children[parent] = {child}
            elif child in siblings:
                break  # the rest of the chain up to the root is there already
            else:
                siblings.add(child)
            child = parent

    def hand_over(self, path: str, old: Entry, stored: int, index: int) -> str:
        """Give ``old``'s content to a surviving hard link to it; the path of that link, or "".

        A hard link is a second name of the same inode: when a later layer deletes
        or rewrites the target (overlayfs copies it up, breaking the link), the
        link still holds the old bytes, as Docker shows.  One link (the first by
        path) becomes the file, credited to ``stored``, the layer that stored the
        bytes; the others stay links to it, so the bytes count once.
        """
        names = self.links.get(path)
        if not names:
            return ""
        # Only links of the layer that stored the file share its inode: Docker applies a layer's
        # hard links inside that layer's own directory.
        alive = sorted(
            {
                p
                for p in names
                if (found := self.entries.get(p)) is not None
                and found.layer == stored
                and stored < index
                and found.entry.type == HARDLINK
                and found.entry.link == path
            }
        )
        if not alive:
            return ""
        keeper = alive[0]
        self.entries[keeper] = FinalEntry(dataclasses.replace(old, path=keeper), stored)
        for other in alive[1:]:
            found = self.entries[other]
            self.entries[other] = FinalEntry(dataclasses.replace(found.entry, link=keeper), found.layer)
        self.links[keeper] = alive[1:]
        self.links[path] = [p for p in names if p not in alive]
        return keeper

    def remove_subtree(self, path: str, include_self: bool) -> list[tuple[str, FinalEntry]]:
        """Remove ``path``'s descendants (and itself when asked); return what was removed."""
        removed: list[tuple[str, FinalEntry]] = []
        below = list(_descendants(path, self.children))
        for p in below:
            found = self.entries.pop(p, None)
            if found is not None:
                removed.append((p, found))
            self.children.pop(p, None)
        self.children.pop(path, None)
        if include_self:
            found = self.entries.pop(path, None)
            if found is not None:
                removed.append((path, found))
            siblings = self.children.get(path[: path.rfind("/")] or "/")
            if siblings is not None:
                siblings.discard(path)
        return removed

    def exists(self, path: str) -> bool:
        return path in self.entries or path in self.children


def _hide_file_parents(tree: _Tree, path: str, hidden: dict[str, tuple[FinalEntry, str]]) -> None:
    """A lower non-directory where this layer implies a directory (``/a`` a file, ``a/b`` added) is hidden.

    Docker makes the missing parent a directory in the layer (UnpackLayer's
    MkdirAll), which the overlay shows over the lower file.  Only new
    directories are looked at: a parent already in the child index is one.
    """
    parent = path[: path.rfind("/")] or "/"
    while parent != "/" and parent not in tree.children:
        found = tree.entries.get(parent)
        if found is not None and found.entry.type != DIR:
            for p, removed in tree.remove_subtree(parent, include_self=True):
                hidden[p] = (removed, REPLACED)
            return
        parent = parent[: parent.rfind("/")] or "/"


def _apply(tree: _Tree, index: int, scan: LayerScan, chain_id: str) -> LayerResult:
    warnings: list[str] = list(scan.warnings)
    hidden: dict[str, tuple[FinalEntry, str]] = {}
    for directory in scan.opaques:
        for path, found in tree.remove_subtree(directory, include_self=False):
            hidden[path] = (found, OPAQUE)
        _hide_file_parents(tree, directory + "/", hidden)
    orphans = 0
    undone = set(scan.undone)
    for path in scan.whiteouts:
        if path in undone:
            continue  # a later entry of this layer wrote over it: Docker removed the whiteout device
        _hide_file_parents(tree, path, hidden)
        if not tree.exists(path):
            # Harmless (the path is simply absent), so reported but bounded in number.
            orphans += 1
            if orphans <= MAX_WARNINGS:
                warnings.append(f"whiteout for {path}, which no lower layer has")
            continue
        for p, found in tree.remove_subtree(path, include_self=True):
            hidden[p] = (found, WHITEOUT)
    if orphans > MAX_WARNINGS:
        warnings.append(f"... and {orphans - MAX_WARNINGS} more whiteouts for paths no lower layer has")
    entries = tree.entries
    children = tree.children
    links = tree.links
    new = object.__new__
    set_entry, set_layer = _FINAL_ENTRY_SLOTS
    set_path, set_kind, set_new, set_old, set_old_layer, set_cause, set_kept_by = _CHANGE_SLOTS
    changes: list[Change] = []
    append = changes.append
    counts = dict.fromkeys(CHANGE_KINDS, 0)
    sizes = dict.fromkeys(CHANGE_KINDS, 0)
    added = added_bytes = 0
    # The hot loop of stacking (once per entry of every layer): the common case, a path new to
    # the tree in a directory the tree already holds, takes one child-index lookup and builds its
    # FinalEntry and Change through their slots (see _FINAL_ENTRY_SLOTS).
    for entry in scan.entries:
        path = entry.path
        current = entries.get(path)
        before = current
        if current is None and hidden and path in hidden:
            before = hidden.pop(path)[0]
        if entry.type != DIR and children.get(path):
            # Whatever stood below a path that is now a file or a link is gone, whether the
            # directory itself was ever listed (a lower layer may ship only ``d/a``) or not.
            for p, gone in tree.remove_subtree(path, include_self=False):
                hidden[p] = (gone, REPLACED)
        if current is None and path != "/":  # (the root is no one's child)
            siblings = children.get(path[: path.rfind("/")] or "/")
            if siblings is not None:
                # The parent is a directory of the tree: nothing to hide above, one link to make.
                siblings.add(path)
            else:
                if before is None:
                    _hide_file_parents(tree, path, hidden)
                tree.attach(path)
        final = new(FinalEntry)
        set_entry(final, entry)
        set_layer(final, index)
        entries[path] = final
        if entry.type == HARDLINK:
            links.setdefault(entry.link, []).append(path)
        if before is None:
            change = new(Change)
            set_path(change, path)
            set_kind(change, ADDED)
            set_new(change, entry)
            set_old(change, None)
            set_old_layer(change, None)
            set_cause(change, "")
            set_kept_by(change, "")
            append(change)
            added += 1
            added_bytes += entry.size
            continue
        kind = classify(before.entry, entry)
        if kind is not None:
            append(Change(path, kind, entry, before.entry, before.layer))
            counts[kind] += 1
            sizes[kind] += entry.size
    counts[ADDED] += added
    sizes[ADDED] += added_bytes
    for path, (gone, cause) in sorted(hidden.items()):
        append(Change(path, REMOVED, None, gone.entry, gone.layer, cause))
    if tree.links:
        for i, change in enumerate(changes):
            old = change.old
            if old is not None and old.type == FILE and change.old_layer is not None:
                keeper = tree.hand_over(change.path, old, change.old_layer, index)
                if keeper:
                    changes[i] = dataclasses.replace(change, kept_by=keeper)
    for change in changes[len(changes) - len(hidden) :]:
        # Bytes hidden from view; none when a hard link kept them visible.
        counts[REMOVED] += 1
        if change.old is not None and not change.kept_by:
            sizes[REMOVED] += change.old.size
    totals = [(kind, KindTotals(counts[kind], sizes[kind])) for kind in CHANGE_KINDS]
    return LayerResult(
        index=index,
        diff_id=scan.diff_id,
        chain_id=chain_id,
        size=scan.size,
        changes=tuple(changes),
        totals=tuple(totals),
        warnings=tuple(warnings),
    )


def _steps(history: tuple[HistoryEntry, ...], layer_count: int) -> tuple[list[Step], list[str]]:
    """Pair history with layers as moby does; never fail on a history that does not add up."""
    steps: list[Step] = []
    warnings: list[str] = []
    next_layer = 0
    for position, item in enumerate(history):
        layer: int | None = None
        if not item.empty_layer:
            if next_layer < layer_count:
                layer = next_layer
                next_layer += 1
            else:
                warnings.append(f"history step {position} claims a layer, but the image has no more")
        steps.append(
            Step(
                position=position,
                layer=layer,
                instruction=instruction(item.created_by) or "(no instruction)",
                created_by=item.created_by,
                created=item.created,
                comment=item.comment,
                empty=layer is None,
            )
        )
    if history and next_layer < layer_count:
        warnings.append(f"history names {next_layer} of {layer_count} layers; the rest are shown as (missing)")
    for layer in range(next_layer, layer_count):
        steps.append(
            Step(
                position=len(steps),
                layer=layer,
                instruction="(missing)" if history else "(no history)",
                created_by="",
                created=None,
                comment=None,
                empty=False,
                history_missing=True,
            )
        )
    return steps, warnings


def build(image: Image, upto: int | None = None) -> Stack:
    """Stack an image's layers (all of them, or base through ``upto``)."""
    tree = _Tree()
    count = len(image.scans) if upto is None else min(upto + 1, len(image.scans))
    chains = chain_ids([s.diff_id for s in image.scans])
    with paused_gc():
        results = [_apply(tree, index, image.scans[index], chains[index]) for index in range(count)]
    steps, warnings = _steps(image.config.history, len(image.scans))
    return Stack(
        image=image,
        steps=tuple(steps),
        layers=tuple(results),
        final=tree.entries,
        warnings=tuple(warnings),
    )


class Stacker:
    """Applies an image's layers in order while their scans come in, in any order.

    A source tells each layer's scan as soon as it has it (``LoadOptions.on_layer``):
    on an archive on disk this process scans some layers while a worker scans
    others, and each layer whose predecessors are all in is applied between
    two scans, instead of all of them after the last (issue 18: stacking was
    a tenth of a second of wall time after the scan).  :meth:`finish` then
    gives what :func:`build` gives for the loaded image: it applies what is
    left, and stacks anew if what it was told is not that image's scans.
    """

    def __init__(self) -> None:
        self._tree = _Tree()
        self._waiting: dict[int, LayerScan] = {}
        self._applied: list[tuple[LayerScan, LayerResult]] = []
        self._retold = False

    def add(self, index: int, scan: LayerScan) -> None:
        """Take layer ``index``'s scan; apply it, and the ones it was holding up, once its turn comes."""
        nxt = len(self._applied)
        if index < nxt:
            self._retold = self._retold or scan is not self._applied[index][0]
            return
        self._waiting[index] = scan
        while nxt in self._waiting:
            ready = self._waiting.pop(nxt)
            # The chain ID needs every DiffID below: :meth:`finish` sets it.
            self._applied.append((ready, _apply(self._tree, nxt, ready, "")))
            nxt += 1

    def finish(self, image: Image) -> Stack:
        """The stack of ``image``, every layer applied (as :func:`build` would have)."""
        scans = image.scans
        told = self._applied
        if self._retold or len(told) > len(scans) or any(t is not scans[i] for i, (t, _) in enumerate(told)):
            return build(image)  # told of other scans than the image's: nothing here can be trusted
        with paused_gc():
            for index in range(len(self._applied), len(scans)):
                self._applied.append((scans[index], _apply(self._tree, index, scans[index], "")))
        chains = chain_ids([s.diff_id for s in scans])
        steps, warnings = _steps(image.config.history, len(scans))
        return Stack(
            image=image,
            steps=tuple(steps),
            layers=tuple(dataclasses.replace(r, chain_id=chains[i]) for i, (_, r) in enumerate(self._applied)),
            final=self._tree.entries,
            warnings=tuple(warnings),
        )
