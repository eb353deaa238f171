"""The waste ledger: bytes an image stores but never shows, who stored them and who hid them.

Why a ledger and not a score: a layer is immutable, so a file written by one
step and deleted, overwritten or merely ``chmod``-ed by a later step still
ships in the earlier layer.  Users need to know *which step to change*, so
every stored copy that is not visible in the final filesystem is recorded
once, with the layer that stored it, the layer that hid it and why (new
content, identical content, a metadata change, an unchanged re-ship, a
deletion).  The sum of that ledger is exact: visible bytes plus wasted bytes
equal the bytes stored in all layers, as Docker counts them (FORMATS.md
section 5).

Next to imgscope's own figures this module computes dive's efficiency score
and "wasted" figure the way dive defines them (per path, the sum of the sizes
of every visit against the smallest one), so users who gate CI on dive's
numbers get the same numbers here.  The two disagree on purpose: dive counts
the copy that is kept as wasted, ignores opaque directories, and counts tar
header sizes (symlinks as 0).

Also here: junk left in the final image (package manager caches, ``.git``
directories, core dumps, temporary files) and advice tied to layer numbers.
Nothing here prints; :func:`to_dict` gives the JSON form and
``imgscope.render.waste`` the console form.
"""

from __future__ import annotations

import posixpath
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import compress, repeat
from operator import attrgetter, itemgetter
from typing import Any

from imgscope.model import DIR, FILE, METADATA, MODIFIED, REMOVED, RESHIPPED, Entry
from imgscope.stack import Stack
from imgscope.units import format_size

# Causes of waste, in the order reports list them.
OVERWRITTEN = "overwritten"  # a later step wrote new content at the path
IDENTICAL = "identical"  # a later step wrote the very same entry again (content, metadata and mtime)
METADATA_RESHIP = "metadata"  # a later step changed mode, owner or xattrs: the whole file ships again
RESHIPPED_UNCHANGED = "re-shipped"  # same content and metadata, only the mtime moved (touch, rewrite)
DELETED = "deleted"  # a later step deleted the path (whiteout, opaque directory, or a type change)
CAUSES = (OVERWRITTEN, IDENTICAL, METADATA_RESHIP, RESHIPPED_UNCHANGED, DELETED)
CAUSE_LABELS = {
    OVERWRITTEN: "overwritten with new content",
    IDENTICAL: "overwritten with identical content",
    METADATA_RESHIP: "re-shipped for a metadata change",
    RESHIPPED_UNCHANGED: "re-shipped unchanged",
    DELETED: "deleted later",
}

#: How many top wasting paths a report keeps (the full ledger stays in ``copies``).
TOP_PATHS = 20
#: Advice is given for wastes of at least this many bytes, or of 1/ADVICE_FRACTION of all stored bytes.
ADVICE_MIN_BYTES = 1_000_000
ADVICE_FRACTION = 1000
#: How long an instruction may be in advice text before it is shortened.
INSTRUCTION_WIDTH = 60


@dataclass(frozen=True, slots=True)
class WastedCopy:
    """One stored copy of a path that the final filesystem does not show.

    ``detail`` says more than ``cause``: ``whiteout``, ``opaque`` or ``replaced`` for a
    deletion; ``mode``, ``owner``, ``xattrs`` for a metadata change; ``type`` when an
    overwrite changed the entry type.
    """

    path: str
    bytes: int
    cause: str
    stored_layer: int
    hidden_layer: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class CauseTotal:
    """Bytes and stored copies wasted for one cause."""

    cause: str
    bytes: int
    copies: int


@dataclass(frozen=True, slots=True)
class Flow:
    """Bytes that one layer stored and a later layer hid, for one cause."""

    stored_layer: int
    hidden_layer: int
    cause: str
    bytes: int
    copies: int


@dataclass(frozen=True, slots=True)
class PathWaste:
    """A path stored more than once or deleted: how often, how many bytes lost, which layers."""

    path: str
    times_stored: int
    bytes_wasted: int
    layers: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class StepWaste:
    """One layer: what it stored, how much of that is wasted by the end, how much it hid."""

    layer: int
    instruction: str
    stored: int
    wasted: int
    hidden: int


@dataclass(frozen=True, slots=True)
class JunkItem:
    """Junk visible in the final image, under one root, put there by one layer."""

    category: str
    description: str
    path: str
    bytes: int
    files: int
    layer: int
    instruction: str


@dataclass(frozen=True, slots=True)
class Advice:
    """One thing a user can change, tied to the layer to change, with the bytes it would save."""

    layer: int
    kind: str
    bytes: int
    text: str
    layers: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class WasteReport:
    """Everything the waste analysis finds in one stacked image."""

    total_stored: int
    visible: int
    wasted_bytes: int
    efficiency: float
    by_cause: tuple[CauseTotal, ...]
    dive_efficiency: float
    dive_wasted_bytes: int
    dive_user_bytes: int
    dive_user_wasted_percent: float
    top_paths: tuple[PathWaste, ...]
    wasting_paths: int
    steps: tuple[StepWaste, ...]
    flows: tuple[Flow, ...]
    junk: tuple[JunkItem, ...]
    junk_bytes: int
    advice: tuple[Advice, ...]
    copies: tuple[WastedCopy, ...]

    def cause(self, name: str) -> CauseTotal:
        """The total of one cause (zero when absent)."""
        for total in self.by_cause:
            if total.cause == name:
                return total
        return CauseTotal(name, 0, 0)


# ---------------------------------------------------------------------------
# The ledger
# ---------------------------------------------------------------------------


def _metadata_detail(old: Entry, new: Entry) -> str:
    parts = []
    if old.mode != new.mode:
        parts.append("mode")
    if (old.uid, old.gid) != (new.uid, new.gid):
        parts.append("owner")
    if old.xattrs != new.xattrs:
        parts.append("xattrs")
    return ",".join(parts)


def _cause(kind: str, old: Entry, new: Entry | None, removal_cause: str) -> tuple[str, str]:
    """Waste cause and detail of one hidden copy, from the change that hid it."""
    if kind == REMOVED or new is None:
        return DELETED, removal_cause
    if kind == MODIFIED:
        return OVERWRITTEN, "type" if old.type != new.type else ""
    if kind == METADATA:
        return METADATA_RESHIP, _metadata_detail(old, new)
    if kind == RESHIPPED:
        # Same content, mode, owner and xattrs.  With the same mtime too the entry is a
        # byte-for-byte duplicate (COPY of the same file again keeps its mtime); with a
        # new mtime it was touched or rewritten with the same bytes.
        return (IDENTICAL, "") if old.mtime == new.mtime else (RESHIPPED_UNCHANGED, "mtime")
    return OVERWRITTEN, kind  # pragma: no cover - every kind with an old entry is handled above


def ledger(stack: Stack) -> list[WastedCopy]:
    """Every stored non-directory copy the final tree does not show, with who stored and who hid it.

    The stack records, for every change, the entry it replaced and the layer that
    had stored it, so each hidden copy is met exactly once: at the change that hid it.
    """
    out: list[WastedCopy] = []
    for result in stack.layers:
        for change in result.changes:
            old = change.old
            if old is None or old.type == DIR or change.old_layer is None or change.kept_by:
                continue  # (a hard link that kept the content shows those bytes: not wasted)
            cause, detail = _cause(change.kind, old, change.entry, change.cause)
            out.append(WastedCopy(change.path, old.size, cause, change.old_layer, result.index, detail))
    return out


# ---------------------------------------------------------------------------
# dive's efficiency
# ---------------------------------------------------------------------------

_WH = ".wh."
_PATH = attrgetter("path")
_TAR_SIZE = attrgetter("tar_size")


def _parent(path: str) -> str:
    """``posixpath.dirname`` for normalised absolute paths, without its overhead (called per path)."""
    cut = path.rfind("/")
    return path[:cut] if cut > 0 else "/"


class _DiveTree:
    """dive's stacked tree, reduced to what its score needs: per node, is-dir and tar size.

    dive keeps the data of the last layer that named a node, and a directory a
    layer only implies (a parent of its entries, with no entry of its own) gets
    empty data there, so it stops counting as a directory.  That is reproduced
    here, because it changes what a later whiteout of that directory weighs.
    Sizes and directory-ness are kept apart (a dict and a set), so that a layer is
    grafted with a few bulk updates rather than a tuple and a walk per entry.
    """

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}
        self.dirs: set[str] = set()
        self.children: dict[str, set[str]] = defaultdict(set)

    def remove(self, path: str) -> None:
        if path not in self.sizes:
            return
        todo = [path]
        while todo:
            current = todo.pop()
            self.sizes.pop(current, None)
            self.dirs.discard(current)
            todo.extend(self.children.pop(current, ()))
        self.children[_parent(path)].discard(path)

    def whiteout_size(self, path: str) -> int:
        """What dive charges a whiteout: for a directory, the tar sizes of everything below it."""
        if path not in self.dirs:
            return 0
        total = 0
        todo = [path]
        while todo:
            current = todo.pop()
            total += self.sizes[current]
            todo.extend(self.children.get(current, ()))
        return total

    def graft(self, implied: list[str], own: dict[str, int], own_dirs: set[str]) -> None:
        """Put a layer's nodes on the tree: implied directories get empty data, entries their own.

        Every proper ancestor of a layer's node is itself a node of that layer
        (``parents`` in :func:`dive_figures`), so the nodes new to the tree are
        exactly the ones to link to their parents: no walk up is needed.
        """
        sizes = self.sizes
        children = self.children
        fresh = set(implied).union(own).difference(sizes)
        fresh.discard("/")  # the root (an entry of its own in some layers) is no one's child
        for node, parent in zip(fresh, _heads(fresh), strict=True):
            children[parent or "/"].add(node)
        sizes.update(dict.fromkeys(implied, 0))
        sizes.update(own)
        self.dirs.difference_update(implied)
        self.dirs.difference_update(own)
        self.dirs.update(own_dirs)


def _heads(paths: Iterable[str]) -> Iterator[str]:
    """Each path's part before its last ``/`` ("" for ``/a`` and for a name without one), in C."""
    return map(itemgetter(0), map(str.rpartition, paths, repeat("/")))


def _ancestors(paths: Iterable[str]) -> set[str]:
    """Every proper ancestor of the paths but the root: their directories, then theirs, once each.

    The directories of the paths are found in C; only distinct directories are
    walked up (a layer has a directory for every few dozen entries).
    """
    found: set[str] = set()
    for head in set(_heads(paths)):
        current = head
        while current and current != "/" and current not in found:
            found.add(current)
            current = _parent(current)
    return found


def _whiteout_first(path: str) -> bool:
    """Whether dive removes a whiteout's path before adding the same layer's entries there.

    dive grafts a layer node by node, children first and siblings sorted by name, the
    whiteout being a node named ``.wh.<name>``: it comes before ``<name>`` unless the
    name sorts below ``.wh.`` (``-x``, ``.git``), and then the layer's own new entries
    at that path are removed again.
    """
    name = path[path.rfind("/") + 1 :]
    return _WH + name < name


@dataclass(frozen=True, slots=True)
class DiveFigures:
    """dive's figures for one image."""

    efficiency: float
    wasted_bytes: int
    user_bytes: int
    user_wasted_percent: float


def dive_figures(stack: Stack) -> DiveFigures:
    """dive's efficiency score, wasted bytes and "user wasted percent" (a fraction, as in dive's CI).

    Each layer's own tree is walked and only its leaves are visited: files, links,
    empty directories and whiteouts (a directory with children in that layer is
    not).  A visit adds the entry's tar size; a whiteout adds 0, or, when the path
    was a directory in the stack of all lower layers, the tar sizes below it.
    Per path, ``cum`` is the sum of its visits and ``min`` the smallest; the score
    is sum(min) / sum(cum); the wasted bytes are the ``cum`` of paths visited twice
    or more.  Opaque directories are ignored, as dive ignores them (but dive does
    create the directory that holds the marker).
    """
    scans = stack.image.scans[: len(stack.layers)]
    # Per path, the sum of its visits; the smallest visit is kept only for the few paths visited
    # twice or more (for the others it is that sum), so a first visit is one dict store.
    cum: dict[str, int] = {}
    least: dict[str, int] = {}

    def visit(path: str, size: int) -> None:
        if path not in cum:
            cum[path] = size
            return
        least[path] = min(least.get(path, cum[path]), size)
        cum[path] += size

    lower = _DiveTree()
    for index, scan in enumerate(scans):
        entries = scan.entries
        own = dict(zip(map(_PATH, entries), entries, strict=True))  # the last entry of a path is its node
        sizes = {path: entry.tar_size for path, entry in own.items()}
        own_dirs = {path for path, entry in own.items() if entry.type == DIR}
        whiteouts = list(dict.fromkeys(scan.whiteouts))
        opaques = [d for d in dict.fromkeys(scan.opaques) if d != "/"]
        # Directories with children in this layer: every proper ancestor of what the layer names.
        parents = _ancestors((*own, *whiteouts, *opaques))
        implied = [p for p in (*parents, *opaques) if p not in own]

        if index == 0:
            # dive sizes a whiteout of its first layer against that layer's own tree.
            lower = _DiveTree()
            lower.graft(implied, sizes, own_dirs)
        leaves = sizes.keys() - parents
        for path in leaves.intersection(cum):
            visit(path, sizes[path])
        fresh = leaves.difference(cum)
        cum.update(zip(fresh, map(sizes.__getitem__, fresh), strict=True))
        for path in opaques:
            if path not in own and path not in parents:
                visit(path, 0)  # the directory of an opaque marker, with nothing else in it
        for path in whiteouts:
            visit(path, lower.whiteout_size(path))
        if index > 0:
            for path in whiteouts:
                if _whiteout_first(path):
                    lower.remove(path)
            lower.graft(implied, sizes, own_dirs)
        for path in whiteouts:
            if not _whiteout_first(path):
                lower.remove(path)
    total_cum = sum(cum.values())
    wasted = sum(map(cum.__getitem__, least))  # the paths visited twice or more
    total_least = total_cum - wasted + sum(least.values())
    score = 1.0 if total_cum == 0 else total_least / total_cum
    user = sum(sum(map(_TAR_SIZE, scan.entries)) for scan in scans[1:])
    return DiveFigures(score, wasted, user, wasted / user if user else 0.0)


# ---------------------------------------------------------------------------
# Junk left in the final image
# ---------------------------------------------------------------------------

# (category, what it is, how to avoid it)
JUNK_KINDS: dict[str, tuple[str, str]] = {
    "apt-lists": ("apt package lists", "remove them in the same RUN: `rm -rf /var/lib/apt/lists/*`"),
    "apt-cache": ("apt package cache", "run `apt-get clean` in the same RUN"),
    "apk-cache": ("apk package cache", "use `apk add --no-cache`"),
    "yum-cache": ("yum cache", "run `yum clean all` in the same RUN"),
    "dnf-cache": ("dnf cache", "run `dnf clean all` in the same RUN"),
    "pip-cache": ("pip cache", "use `pip install --no-cache-dir`"),
    "npm-cache": ("npm cache", "run `npm cache clean --force` in the same RUN, or use a cache mount"),
    "yarn-cache": ("yarn cache", "run `yarn cache clean` in the same RUN, or use a cache mount"),
    "git": (".git directory", "exclude .git in .dockerignore"),
    "core-dump": ("core dump", "delete it; it was left by a crashed process during the build"),
    "tmp": ("temporary files", "delete them in the step that creates them"),
}

_PREFIX_ROOTS = (
    ("/var/lib/apt/lists/", "apt-lists"),
    ("/var/cache/apt/", "apt-cache"),
    ("/var/cache/apk/", "apk-cache"),
    ("/etc/apk/cache/", "apk-cache"),
    ("/var/cache/yum/", "yum-cache"),
    ("/var/cache/dnf/", "dnf-cache"),
    ("/var/cache/libdnf5/", "dnf-cache"),
)
_INNER_ROOTS = (
    ("/.cache/pip/", "pip-cache"),
    ("/.npm/", "npm-cache"),
    ("/.cache/yarn/", "yarn-cache"),
)
_CORE = re.compile(r"^core(\.\d+)?$")
# Every path whose name _CORE matches (and a few more): what the junk scan must look at for core dumps.
_CORE_PATH = re.compile(r"core(\.\d+)?$")
#: A file named ``core`` smaller than this is more likely a script or data than a core dump.
CORE_MIN_BYTES = 4096


_TMP_DIRS = ("/tmp/", "/var/tmp/")


def _junk_of_directory(prefix: str) -> tuple[str, str] | None:
    """The junk category and root of the files of one directory (``prefix`` ends in ``/``), core dumps aside.

    Every rule but the core dump's matches a pattern that ends in ``/``, so it
    matches within a file's directory: the answer is the same for all files
    of a directory, and :func:`junk` computes it once per directory.  A file
    right in ``/tmp/`` is its own root: the root is then ``/tmp/`` with its name to append.
    """
    if "/.git/" in prefix:
        return "git", prefix[: prefix.index("/.git/") + len("/.git")]
    for start, category in _PREFIX_ROOTS:
        if prefix.startswith(start):
            return category, start.rstrip("/")
    for marker, category in _INNER_ROOTS:
        at = prefix.find(marker)
        if at >= 0:
            return category, prefix[: at + len(marker) - 1]
    for tmp in _TMP_DIRS:
        if prefix.startswith(tmp):
            first = prefix[len(tmp) :].split("/", 1)[0]
            return "tmp", tmp + first
    return None


def _junk_hit(path: str, name_at: int, entry: Entry, in_dir: tuple[str, str] | None) -> tuple[str, str] | None:
    """:func:`junk_root` given the answer for the path's directory (``name_at``: where its name starts)."""
    if in_dir is not None and in_dir[0] == "git":
        return in_dir
    if entry.type == FILE and entry.size >= CORE_MIN_BYTES and _CORE.match(path[name_at:]):
        return "core-dump", path
    if in_dir is not None and in_dir[0] == "tmp" and in_dir[1] in _TMP_DIRS:
        return "tmp", in_dir[1] + path[name_at:]  # a file right in /tmp: its own root
    return in_dir


def junk_root(path: str, entry: Entry) -> tuple[str, str] | None:
    """The junk category of a final path and the root it is grouped under, or None."""
    name_at = path.rfind("/") + 1
    return _junk_hit(path, name_at, entry, _junk_of_directory(path[:name_at]))


def junk(stack: Stack, instructions: dict[int, str]) -> list[JunkItem]:
    """Junk visible in the final image, grouped by category, root and the layer that wrote it.

    The rules run once per directory, not once per file (:func:`_junk_of_directory`),
    and only the paths that can be junk are looked at one by one: those in a junk
    directory and those named like a core dump, both picked out in C.
    """
    final = stack.final
    paths = list(final)
    heads = list(_heads(paths))
    by_directory = {head: hit for head in set(heads) if (hit := _junk_of_directory(head + "/")) is not None}
    candidates = set(compress(paths, map(by_directory.__contains__, heads)))
    candidates.update(filter(_CORE_PATH.search, paths))
    groups: dict[tuple[str, str, int], list[int]] = {}
    for path in filter(candidates.__contains__, final):  # in the tree's order, as the groups were met
        found = final[path]
        entry = found.entry
        if entry.type == DIR:
            continue
        name_at = path.rfind("/") + 1
        in_dir = by_directory.get(path[: name_at - 1]) if name_at else None
        if in_dir is None and entry.size < CORE_MIN_BYTES:
            continue  # named like a core dump, too small for one
        hit = _junk_hit(path, name_at, entry, in_dir)
        if hit is None:
            continue
        key = (hit[0], hit[1], found.layer)
        acc = groups.setdefault(key, [0, 0])
        acc[0] += entry.size
        acc[1] += 1
    items = [
        JunkItem(cat, JUNK_KINDS[cat][0], root, nbytes, files, layer, instructions.get(layer, ""))
        for (cat, root, layer), (nbytes, files) in groups.items()
        if nbytes > 0
    ]
    items.sort(key=lambda j: (-j.bytes, j.path, j.layer))
    return items


# ---------------------------------------------------------------------------
# Advice
# ---------------------------------------------------------------------------


def _short(instruction: str) -> str:
    text = " ".join(instruction.split())
    if not text or (text.startswith("(") and text.endswith(")")):
        return text or "(no instruction)"  # "(missing)", "(no history)": not an instruction to quote
    if len(text) > INSTRUCTION_WIDTH:
        text = text[: INSTRUCTION_WIDTH - 1] + "…"
    return f"`{text}`"


def _what(copies: list[WastedCopy], nbytes: int) -> str:
    """``6.4 kB (/a/b)``, ``13.7 MB (120 files under /tmp/debs)``, or the largest file when they are spread."""
    size = format_size(nbytes)
    unique = sorted({c.path for c in copies})
    if len(unique) == 1:
        return f"{size} ({unique[0]})"
    common = posixpath.commonpath(unique)
    if common != "/":
        return f"{size} ({len(unique):,} files under {common})"
    largest = max(copies, key=lambda c: (c.bytes, c.path))
    return f"{size} ({len(unique):,} files, the largest {largest.path})"


def _sources(by_layer: dict[int, int], instructions: dict[int, str]) -> str:
    ranked = sorted(by_layer.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(ranked) == 1:
        layer = ranked[0][0]
        return f"layer {layer} {_short(instructions.get(layer, ''))}"
    shown = [f"layer {layer} {_short(instructions.get(layer, ''))} ({format_size(n)})" for layer, n in ranked[:3]]
    more = f" and {len(ranked) - 3} more layers" if len(ranked) > 3 else ""
    return ", ".join(shown) + more


_FAMILY = {
    DELETED: "delete",
    OVERWRITTEN: "overwrite",
    IDENTICAL: "reship",
    METADATA_RESHIP: "reship",
    RESHIPPED_UNCHANGED: "reship",
}


def advise(
    copies: list[WastedCopy], junk_items: list[JunkItem], instructions: dict[int, str], total_stored: int
) -> list[Advice]:
    """Advice per hiding step (deletes, overwrites, re-ships) and per junk-leaving step, largest first."""

    def worth(nbytes: int) -> bool:
        return nbytes > 0 and (nbytes >= ADVICE_MIN_BYTES or nbytes * ADVICE_FRACTION >= total_stored)

    grouped: dict[tuple[int, str], list[WastedCopy]] = defaultdict(list)
    for copy in copies:
        grouped[(copy.hidden_layer, _FAMILY[copy.cause])].append(copy)
    out: list[Advice] = []
    for (layer, family), items in grouped.items():
        nbytes = sum(c.bytes for c in items)
        if not worth(nbytes):
            continue
        by_layer: dict[int, int] = defaultdict(int)
        for c in items:
            by_layer[c.stored_layer] += c.bytes
        step = f"layer {layer} {_short(instructions.get(layer, ''))}"
        what = _what(items, nbytes)
        sources = _sources(by_layer, instructions)
        if family == "delete":
            text = (
                f"{step} deletes {what} added by {sources}: they still ship there; "
                "delete them in the step that adds them, or use a multi-stage build"
            )
        elif family == "overwrite":
            text = f"{step} overwrites {what} stored by {sources}: the old versions still ship; write them once"
        else:
            parts: dict[str, int] = defaultdict(int)
            for c in items:
                parts[c.cause] += c.bytes
            why = ", ".join(f"{format_size(parts[k])} {CAUSE_LABELS[k]}" for k in CAUSES if parts.get(k))
            fixes = []
            if parts.get(METADATA_RESHIP):
                fixes.append("set mode and owner where the files are added (COPY --chmod/--chown) or in that step")
            if parts.get(RESHIPPED_UNCHANGED):
                fixes.append("do not touch or rewrite files a lower layer already holds")
            if parts.get(IDENTICAL):
                fixes.append("drop the duplicate copy")
            text = f"{step} re-ships {what} from {sources} ({why}): " + "; ".join(fixes)
        out.append(Advice(layer, family, nbytes, text, tuple(sorted(by_layer))))
    junk_groups: dict[tuple[int, str], list[JunkItem]] = defaultdict(list)
    for item in junk_items:
        junk_groups[(item.layer, item.category)].append(item)
    for (layer, category), group in junk_groups.items():
        nbytes = sum(j.bytes for j in group)
        if not worth(nbytes):
            continue
        description, fix = JUNK_KINDS[category]
        roots = sorted({j.path for j in group})
        where = roots[0] if len(roots) == 1 else f"{len(roots)} places under {posixpath.commonpath(roots)}"
        text = (
            f"layer {layer} {_short(instructions.get(layer, ''))} leaves {format_size(nbytes)} of {description} "
            f"in {where}: {fix}"
        )
        if layer == 0:
            text += " (it is in the base layer: deleting it in a later step would not shrink the image)"
        out.append(Advice(layer, "junk", nbytes, text, (layer,)))
    out.sort(key=lambda a: (-a.bytes, a.layer, a.kind))
    return out


# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------


def _group(items: Iterable[WastedCopy], key: Callable[[WastedCopy], Any]) -> dict[Any, list[WastedCopy]]:
    out: dict[Any, list[WastedCopy]] = defaultdict(list)
    for item in items:
        out[key(item)].append(item)
    return out


def analyse(stack: Stack, top: int = TOP_PATHS) -> WasteReport:
    """The waste report of a stacked image (pure: reads the stack, returns data)."""
    layers = stack.layers
    instructions: dict[int, str] = {s.layer: s.instruction for s in stack.steps if s.layer is not None}
    total_stored = sum(r.size for r in layers)
    visible = sum(f.entry.size for f in stack.final.values())
    copies = ledger(stack)
    wasted = sum(c.bytes for c in copies)

    causes = _group(copies, lambda c: c.cause)
    by_cause = tuple(CauseTotal(k, sum(c.bytes for c in causes[k]), len(causes[k])) for k in CAUSES)

    flows = [
        Flow(s, h, cause, sum(c.bytes for c in group), len(group))
        for (s, h, cause), group in _group(copies, lambda c: (c.stored_layer, c.hidden_layer, c.cause)).items()
    ]
    flows.sort(key=lambda f: (-f.bytes, f.stored_layer, f.hidden_layer, f.cause))

    by_path = _group(copies, lambda c: c.path)
    paths: list[PathWaste] = []
    for path, group in by_path.items():
        nbytes = sum(c.bytes for c in group)
        if nbytes == 0:
            continue
        involved = {c.stored_layer for c in group} | {c.hidden_layer for c in group}
        final = stack.final.get(path)
        kept = 1 if final is not None and final.entry.type != DIR else 0
        paths.append(PathWaste(path, len(group) + kept, nbytes, tuple(sorted(involved))))
    paths.sort(key=lambda p: (-p.bytes_wasted, p.path))

    stored_by = _group(copies, lambda c: c.stored_layer)
    hidden_by = _group(copies, lambda c: c.hidden_layer)
    steps = tuple(
        StepWaste(
            r.index,
            instructions.get(r.index, ""),
            r.size,
            sum(c.bytes for c in stored_by.get(r.index, [])),
            sum(c.bytes for c in hidden_by.get(r.index, [])),
        )
        for r in layers
    )

    junk_items = junk(stack, instructions)
    dive = dive_figures(stack)
    return WasteReport(
        total_stored=total_stored,
        visible=visible,
        wasted_bytes=wasted,
        efficiency=1.0 if total_stored == 0 else 1.0 - wasted / total_stored,
        by_cause=by_cause,
        dive_efficiency=dive.efficiency,
        dive_wasted_bytes=dive.wasted_bytes,
        dive_user_bytes=dive.user_bytes,
        dive_user_wasted_percent=dive.user_wasted_percent,
        top_paths=tuple(paths[:top]),
        wasting_paths=len(paths),
        steps=steps,
        flows=tuple(flows),
        junk=tuple(junk_items),
        junk_bytes=sum(j.bytes for j in junk_items),
        advice=tuple(advise(copies, junk_items, instructions, total_stored)),
        copies=tuple(copies),
    )


SCHEMA_VERSION = 1


def to_dict(report: WasteReport) -> dict[str, Any]:
    """The JSON form (the ``waste`` section of ``inspect --json``): integers for every byte count."""
    return {
        "schema_version": SCHEMA_VERSION,
        "total_stored": report.total_stored,
        "visible": report.visible,
        "wasted_bytes": report.wasted_bytes,
        "efficiency": report.efficiency,
        "by_cause": {
            t.cause: {"label": CAUSE_LABELS[t.cause], "bytes": t.bytes, "copies": t.copies} for t in report.by_cause
        },
        "dive_efficiency": report.dive_efficiency,
        "dive_wasted_bytes": report.dive_wasted_bytes,
        "dive_user_bytes": report.dive_user_bytes,
        "dive_user_wasted_percent": report.dive_user_wasted_percent,
        "top_paths": [
            {"path": p.path, "times_stored": p.times_stored, "bytes_wasted": p.bytes_wasted, "layers": list(p.layers)}
            for p in report.top_paths
        ],
        "wasting_paths": report.wasting_paths,
        "steps": [
            {"layer": s.layer, "instruction": s.instruction, "stored": s.stored, "wasted": s.wasted, "hidden": s.hidden}
            for s in report.steps
        ],
        "flows": [
            {
                "stored_layer": f.stored_layer,
                "hidden_layer": f.hidden_layer,
                "cause": f.cause,
                "bytes": f.bytes,
                "copies": f.copies,
            }
            for f in report.flows
        ],
        "junk": [
            {
                "category": j.category,
                "description": j.description,
                "path": j.path,
                "bytes": j.bytes,
                "files": j.files,
                "layer": j.layer,
                "instruction": j.instruction,
            }
            for j in report.junk
        ],
        "junk_bytes": report.junk_bytes,
        "advice": [
            {"layer": a.layer, "kind": a.kind, "bytes": a.bytes, "layers": list(a.layers), "text": a.text}
            for a in report.advice
        ],
        "copies": [
            {
                "path": c.path,
                "bytes": c.bytes,
                "cause": c.cause,
                "detail": c.detail,
                "stored_layer": c.stored_layer,
                "hidden_layer": c.hidden_layer,
            }
            for c in report.copies
        ],
    }
