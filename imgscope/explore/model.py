"""What the explorer shows, computed once from a Stack and without any UI.

Why a separate model: the browser must redraw within 100 ms on an image of
25,000 files, so nothing may walk the whole image per keypress.  At load time
every path the image ever held gets an integer id in tree order, and for each
layer the state of the tree *as of that layer* is kept as flat lists indexed
by id (the entry visible there, the subtree's size and entry count).  Those
lists are built incrementally, layer by layer, from the stack's changes, so
switching steps is a list lookup.  Only the rows of the tree that a given
combination of step, view, filter and folds shows are computed on demand, in
one pass over the nodes the user can actually see.

The same model answers the detail panel (every layer that touched a path,
with size, hash and whether that copy is wasted) and the summary pane (size,
efficiency, top wasting paths), using :mod:`imgscope.analysis.waste` when it
is installed and an equivalent ledger of our own when it is not.

Two views, as in dive:

* **layer** marks what the selected step's own layer did (its added,
  modified, metadata-only, re-shipped and removed entries), exactly the
  changes ``inspect --json`` lists for that layer;
* **cumulative** marks everything that changed from the base layer up to the
  selected step: a path's state now compared with its state in layer 0 (at
  layer 0 itself, that layer's own changes).  A path added and removed again
  above the base shows as removed, since its bytes still ship.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import compress
from typing import Any

from imgscope.model import ADDED, DIR, FILE, HARDLINK, METADATA, MODIFIED, REMOVED, RESHIPPED, SYMLINK, Entry
from imgscope.stack import Change, FinalEntry, Stack, classify

LAYER_VIEW = "layer"
CUMULATIVE_VIEW = "cumulative"
VIEWS = (LAYER_VIEW, CUMULATIVE_VIEW)
#: The layer view of an empty step (ENV, CMD...): the tree of the layer before, nothing marked.
NO_CHANGES_VIEW = "none"
SORT_NAME = "name"
SORT_SIZE = "size"

#: The four groups the hide keys act on; metadata and re-shipped entries count as modified.
HIDE_ADDED = "added"
HIDE_REMOVED = "removed"
HIDE_MODIFIED = "modified"
HIDE_UNCHANGED = "unchanged"
HIDE_GROUPS = (HIDE_ADDED, HIDE_REMOVED, HIDE_MODIFIED, HIDE_UNCHANGED)

_GROUP_OF = {ADDED: HIDE_ADDED, REMOVED: HIDE_REMOVED, MODIFIED: HIDE_MODIFIED, METADATA: HIDE_MODIFIED}
_GROUP_OF[RESHIPPED] = HIDE_MODIFIED

ROOT = 0
Progress = Callable[[str, int, int], None]


def hide_group(kind: str | None) -> str:
    """The hide group of a change kind (``None``, no change, is *unchanged*)."""
    return _GROUP_OF.get(kind, HIDE_UNCHANGED) if kind else HIDE_UNCHANGED


def _components(path: str) -> tuple[str, ...]:
    return tuple(path.strip("/").split("/")) if path != "/" else ()


# --------------------------------------------------------------------------- plain data the UI reads


@dataclass(frozen=True, slots=True)
class StepRow:
    """One history step as the steps pane lists it.

    ``layer`` is None for an empty step (ENV, CMD...); ``tree_layer`` is the
    layer whose tree the step shows (the last layer at or before it, -1 when
    no layer came yet).
    """

    position: int
    layer: int | None
    tree_layer: int
    instruction: str
    created_by: str
    size: int
    added: int = 0
    modified: int = 0
    metadata: int = 0
    reshipped: int = 0
    removed: int = 0
    wasted: int = 0
    findings: int = 0

    @property
    def empty(self) -> bool:
        return self.layer is None


@dataclass(frozen=True, slots=True)
class WastedPath:
    """A path whose stored bytes the final image does not show, and the layers involved.

    ``jumps`` are the layers a user may want to visit, in the order the
    explorer cycles through them: the layers that stored wasted copies (largest
    first), then the layers that hid them.
    """

    path: str
    bytes_wasted: int
    times_stored: int
    jumps: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Finding:
    """One audit finding tied to a path, as the explorer marks it."""

    path: str
    severity: str
    title: str
    layer: int | None = None


@dataclass(frozen=True, slots=True)
class Summary:
    """The image summary pane: identity, size and waste figures.

    ``wasted_bytes`` and ``efficiency`` come from the waste analysis when it is
    installed, otherwise from the explorer's own ledger (same definition:
    every stored copy the final tree does not show); ``waste_source`` says which.
    """

    reference: str
    source: str
    image_id: str
    tags: tuple[str, ...]
    platform: str
    size: int
    compressed_size: int | None
    layer_count: int
    step_count: int
    file_count: int
    total_stored: int
    wasted_bytes: int
    efficiency: float
    waste_source: str
    top_paths: tuple[WastedPath, ...]
    dive_efficiency: float | None = None
    audit_available: bool = False
    finding_count: int = 0
    finding_total: int = 0
    content_audited: bool = False
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Touch:
    """One layer's change to one path, for the detail panel.

    ``entry`` is what the layer stored there (None for a removal); ``wasted``
    tells whether that stored copy is hidden by a later layer, with how many
    bytes, why, and which layer hid it.
    """

    layer: int
    instruction: str
    kind: str
    entry: Entry | None
    old: Entry | None
    cause: str = ""
    wasted_bytes: int = 0
    wasted_cause: str = ""
    hidden_by: int | None = None

    @property
    def wasted(self) -> bool:
        return self.hidden_by is not None and self.entry is not None


@dataclass(frozen=True, slots=True)
class RowInfo:
    """Everything needed to draw one tree row; built only for rows on screen."""

    node: int
    path: str
    name: str
    depth: int
    guide: str
    is_dir: bool
    expandable: bool
    expanded: bool
    kind: str | None
    entry: Entry | None
    layer: int | None
    ghost: bool
    size: int
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True, slots=True)
class TreeOptions:
    """How the tree is shown: view, sort order, hidden groups and path filter."""

    view: str = LAYER_VIEW
    sort: str = SORT_NAME
    hide: frozenset[str] = frozenset()
    pattern: str | None = None


# --------------------------------------------------------------------------- path filters


def compile_filter(text: str) -> Callable[[str], bool]:
    """A predicate over absolute paths from what the user typed after ``/``.

    ``re:EXPR`` (or ``~EXPR``) is a regular expression searched in the full
    path; text with a glob character (``* ? [``) or starting with ``/`` is a
    glob with DESIGN.md's rules (``*`` stays in one directory, ``**``
    crosses them, a glob without a leading ``/`` matches at any depth); any
    other text matches paths that contain it.  A bad expression raises
    :class:`~imgscope.errors.ImgscopeError` with a one-line reason.
    """
    from imgscope.errors import ImgscopeError

    text = text.strip()
    if text.startswith(("re:", "~")):
        expr = text[3:] if text.startswith("re:") else text[1:]
        try:
            rx = re.compile(expr)
        except re.error as exc:
            raise ImgscopeError(f"bad regular expression {expr!r}: {exc}") from exc
        return lambda path: rx.search(path) is not None
    if text.startswith("/") or any(c in text for c in "*?["):
        from imgscope.globs import compile_glob

        glob = compile_glob(text)
        return lambda path: glob.match(path) is not None
    return lambda path: text in path


# --------------------------------------------------------------------------- the model


@dataclass(slots=True)
class _Cumulative:
    """Marks and ghosts of the cumulative view at one layer (built from the layer below)."""

    marks: dict[int, str]
    ghosts: dict[int, FinalEntry]


@dataclass(slots=True)
class TreeSnapshot:
    """The rows of the tree for one step and one set of options.

    A snapshot holds only the list of node ids shown, in order, and the
    bytes saying which nodes survive the filters (``keep``, indexed by id).
    Everything else a row needs (its guide, whether it has children, whether
    it is the last of its siblings) is answered on demand for the few rows on
    screen, with C-speed searches in ``keep``: a node's subtree is the id
    range ``[node, subtree_end[node])``.  So building the rows of 25,000
    nodes is a couple of byte operations, not a Python loop over them.
    """

    model: ExploreModel = field(repr=False)
    layer: int
    view: str
    sort: str
    nodes: list[int]
    keep: bytearray = field(repr=False)
    collapsed: frozenset[int] = field(repr=False)
    _prefix: dict[int, str] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.nodes)

    def index_of(self, node: int) -> int | None:
        """The row showing ``node`` (None when it is not shown)."""
        nodes = self.nodes
        if self.sort == SORT_NAME:
            k = bisect_left(nodes, node)
            return k if k < len(nodes) and nodes[k] == node else None
        try:
            return nodes.index(node)
        except ValueError:
            return None

    def has_children(self, node: int) -> bool:
        """Does ``node`` have children the filters keep (so it can fold)?"""
        return self.keep.find(1, node + 1, self.model.subtree_end[node]) != -1

    def expandable(self, row: int) -> bool:
        return self.has_children(self.nodes[row])

    def expanded(self, row: int) -> bool:
        node = self.nodes[row]
        return node not in self.collapsed and self.has_children(node)

    def is_last(self, node: int) -> bool:
        """Is ``node`` the last shown child of its parent, in the snapshot's order?"""
        model = self.model
        parent = model.parent[node]
        if self.sort == SORT_NAME:
            return self.keep.find(1, model.subtree_end[node], model.subtree_end[parent]) == -1
        for sibling in reversed(model.ordered_children(parent, self.layer)):
            if self.keep[sibling]:
                return sibling == node
        return True

    def guide(self, row: int) -> str:
        """The tree guide drawn before a row's name (``│   ├── ``)."""
        node = self.nodes[row]
        return self._child_prefix(self.model.parent[node]) + ("└── " if self.is_last(node) else "├── ")

    def _child_prefix(self, node: int) -> str:
        if node <= ROOT:
            return ""
        done = self._prefix.get(node)
        if done is None:
            done = self._child_prefix(self.model.parent[node]) + ("    " if self.is_last(node) else "│   ")
            self._prefix[node] = done
        return done


class ExploreModel:
    """Per-step trees, marks and histories of one stacked image.

    Build it with :meth:`build` (which can report progress); afterwards every
    query is cheap: see the module docstring for the layout.
    """

    def __init__(
        self,
        stack: Stack,
        *,
        waste: Any | None = None,
        findings: Iterable[Finding] | None = None,
        audit_available: bool = False,
        finding_total: int | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.stack = stack
        self._progress = progress
        layers = stack.layers
        self.layer_count = len(layers)
        self.instructions: dict[int, str] = {s.layer: s.instruction for s in stack.steps if s.layer is not None}

        # ---- node table: every path any layer touched, plus its ancestors, in tree order
        names: set[str] = {"/"}
        for result in layers:
            for change in result.changes:
                path = change.path
                while path not in names:
                    names.add(path)
                    path = path.rsplit("/", 1)[0] or "/"
        ordered = sorted(names, key=_components)
        self.paths: list[str] = ordered
        self.ids: dict[str, int] = {p: i for i, p in enumerate(ordered)}
        count = len(ordered)
        self.parent: list[int] = [-1] * count
        self.depth: list[int] = [0] * count
        self.names: list[str] = [""] * count
        kids: list[list[int]] = [[] for _ in range(count)]
        for i, path in enumerate(ordered):
            if i == ROOT:
                self.names[i] = "/"
                continue
            head, _, name = path.rpartition("/")
            p = self.ids[head or "/"]
            self.parent[i] = p
            self.depth[i] = self.depth[p] + 1
            self.names[i] = name
            kids[p].append(i)  # ids grow in tree order, so children come sorted by name
        self.children: list[tuple[int, ...]] = [tuple(k) for k in kids]
        self.max_depth = max(self.depth, default=0)
        # Ids are in tree order, so a node's subtree is the id range [node, subtree_end[node]).
        self.subtree_end: list[int] = list(range(1, count + 1))
        for i in range(count - 1, 0, -1):
            p = self.parent[i]
            if self.subtree_end[i] > self.subtree_end[p]:
                self.subtree_end[p] = self.subtree_end[i]

        # ---- per-layer trees, incrementally
        self.entries: list[list[FinalEntry | None]] = []
        self.sizes: list[list[int]] = []
        self.counts: list[list[int]] = []
        self.layer_marks: list[dict[int, str]] = []
        self.layer_ghosts: list[dict[int, FinalEntry]] = []
        self.timeline: dict[int, list[tuple[int, Change]]] = {}
        entries: list[FinalEntry | None] = [None] * count
        sizes = [0] * count
        counts = [0] * count
        parent = self.parent
        for result in layers:
            index = result.index
            entries = entries.copy()
            sizes = sizes.copy()
            counts = counts.copy()
            marks: dict[int, str] = {}
            ghosts: dict[int, FinalEntry] = {}
            for change in result.changes:
                i = self.ids[change.path]
                before = entries[i]
                new = FinalEntry(change.entry, index) if change.entry is not None else None
                entries[i] = new
                marks[i] = change.kind
                if new is None and change.old is not None:
                    ghosts[i] = FinalEntry(change.old, change.old_layer if change.old_layer is not None else index)
                self.timeline.setdefault(i, []).append((index, change))
                ds = (new.entry.size if new is not None and new.entry.type != DIR else 0) - (
                    before.entry.size if before is not None and before.entry.type != DIR else 0
                )
                dc = (new is not None) - (before is not None)
                if ds or dc:
                    j = i
                    while j >= 0:
                        sizes[j] += ds
                        counts[j] += dc
                        j = parent[j]
            self.entries.append(entries)
            self.sizes.append(sizes)
            self.counts.append(counts)
            self.layer_marks.append(marks)
            self.layer_ghosts.append(ghosts)
            if progress:
                progress("building per-step trees", index + 1, len(layers))

        self._cumulative: dict[int, _Cumulative] = {}
        self._keep_cache: OrderedDict[tuple[Any, ...], bytearray] = OrderedDict()
        self._filter_cache: OrderedDict[str, bytearray] = OrderedDict()
        self._size_order: dict[tuple[int, int], tuple[int, ...]] = {}

        # ---- waste: the analysis when installed, else our own ledger (same definition)
        self.waste = waste
        # (path, layer that stored the copy) -> (bytes, cause, layer that hid it)
        self._wasted_copies: dict[tuple[str, int], tuple[int, str, int]] = {}
        if waste is not None:
            for copy in waste.copies:
                self._wasted_copies[(copy.path, copy.stored_layer)] = (copy.bytes, copy.cause, copy.hidden_layer)
        else:
            for result in layers:
                for change in result.changes:
                    old = change.old
                    if old is None or old.type == DIR or change.old_layer is None:
                        continue
                    cause = "deleted" if change.kind == REMOVED else change.kind
                    self._wasted_copies[(change.path, change.old_layer)] = (old.size, cause, result.index)
        self._copies_by_path: dict[str, list[tuple[int, tuple[int, str, int]]]] = {}
        for (path, stored), info in self._wasted_copies.items():
            self._copies_by_path.setdefault(path, []).append((stored, info))

        # ---- audit findings by path
        self.findings: dict[str, tuple[Finding, ...]] = {}
        grouped: dict[str, list[Finding]] = {}
        for finding in findings or ():
            grouped.setdefault(finding.path, []).append(finding)
        self.findings = {path: tuple(items) for path, items in grouped.items()}
        self.audit_available = audit_available

        self.finding_total = finding_total if finding_total is not None else sum(map(len, self.findings.values()))
        self.content_audited = False
        self.steps = self._steps()
        self.summary = self._summary()

    def set_findings(self, findings: Iterable[Finding], total: int, content_audited: bool) -> None:
        """Replace the audit findings (when the content scan finishes) and recompute what shows them."""
        grouped: dict[str, list[Finding]] = {}
        for finding in findings:
            grouped.setdefault(finding.path, []).append(finding)
        self.findings = {path: tuple(items) for path, items in grouped.items()}
        self.finding_total = total
        self.content_audited = content_audited
        self.audit_available = True
        self.steps = self._steps()
        self.summary = self._summary()

    # ------------------------------------------------------------------ construction helpers

    @classmethod
    def build(cls, stack: Stack, *, progress: Progress | None = None, with_audit: bool = True) -> ExploreModel:
        """The model of a stack, with the waste analysis and audit findings when those modules exist."""
        waste = None
        try:
            from imgscope.analysis import waste as waste_module
        except ImportError:
            waste_module = None  # type: ignore[assignment]
        if waste_module is not None:
            if progress:
                progress("analysing waste", 0, 1)
            waste = waste_module.analyse(stack)
        findings: list[Finding] = []
        total = 0
        if with_audit and progress:
            progress("auditing names, modes and config", 0, 1)
        audited = audit_findings(stack) if with_audit else None
        if audited is not None:
            findings, total = audited
        return cls(
            stack,
            waste=waste,
            findings=findings,
            audit_available=audited is not None,
            finding_total=total,
            progress=progress,
        )

    def _steps(self) -> tuple[StepRow, ...]:
        rows: list[StepRow] = []
        wasted_by_layer: dict[int, int] = {}
        for (_path, stored), (nbytes, _cause, _hidden) in self._wasted_copies.items():
            wasted_by_layer[stored] = wasted_by_layer.get(stored, 0) + nbytes
        findings_by_layer: dict[int, int] = {}
        for items in self.findings.values():
            for f in items:
                if f.layer is not None:
                    findings_by_layer[f.layer] = findings_by_layer.get(f.layer, 0) + 1
        last = -1
        for step in self.stack.steps:
            if step.layer is None or step.layer >= self.layer_count:
                rows.append(StepRow(step.position, None, last, step.instruction, step.created_by, 0))
                continue
            last = step.layer
            result = self.stack.layers[step.layer]
            rows.append(
                StepRow(
                    position=step.position,
                    layer=step.layer,
                    tree_layer=step.layer,
                    instruction=step.instruction,
                    created_by=step.created_by,
                    size=result.size,
                    added=result.total(ADDED).count,
                    modified=result.total(MODIFIED).count,
                    metadata=result.total(METADATA).count,
                    reshipped=result.total(RESHIPPED).count,
                    removed=result.total(REMOVED).count,
                    wasted=wasted_by_layer.get(step.layer, 0),
                    findings=findings_by_layer.get(step.layer, 0),
                )
            )
        return tuple(rows)

    def _summary(self) -> Summary:
        image = self.stack.image
        total = sum(r.size for r in self.stack.layers)
        dive_eff: float | None = None
        if self.waste is not None:
            wasted = int(self.waste.wasted_bytes)
            eff = float(self.waste.efficiency)
            dive_eff = float(self.waste.dive_efficiency)
            source = "imgscope.analysis.waste"
            top = tuple(self._wasted_path(p.path, p.bytes_wasted, p.times_stored) for p in self.waste.top_paths)
        else:
            wasted = sum(nbytes for nbytes, _c, _h in self._wasted_copies.values())
            eff = 1.0 if total == 0 else 1.0 - wasted / total
            source = "explorer ledger (imgscope.analysis.waste not installed)"
            per_path: dict[str, int] = {}
            stored: dict[str, int] = {}
            for (path, _layer), (nbytes, _c, _h) in self._wasted_copies.items():
                per_path[path] = per_path.get(path, 0) + nbytes
                stored[path] = stored.get(path, 0) + 1
            ranked = sorted((p for p in per_path if per_path[p] > 0), key=lambda p: (-per_path[p], p))[:20]
            top = tuple(
                self._wasted_path(p, per_path[p], stored[p] + (1 if self._final_is_file(p) else 0)) for p in ranked
            )
        final = self.stack.final
        return Summary(
            reference=image.reference,
            source=image.source,
            image_id=image.image_id,
            tags=image.tags,
            platform=image.config.platform,
            size=image.size,
            compressed_size=image.compressed_size,
            layer_count=self.layer_count,
            step_count=len(self.stack.steps),
            file_count=sum(1 for f in final.values() if f.entry.type != DIR),
            total_stored=total,
            wasted_bytes=wasted,
            efficiency=eff,
            waste_source=source,
            top_paths=top,
            dive_efficiency=dive_eff,
            audit_available=self.audit_available,
            finding_count=sum(len(v) for v in self.findings.values()),
            finding_total=self.finding_total,
            content_audited=self.content_audited,
            warnings=(*image.warnings, *self.stack.warnings),
        )

    def _final_is_file(self, path: str) -> bool:
        found = self.stack.final.get(path)
        return found is not None and found.entry.type != DIR

    def _wasted_path(self, path: str, nbytes: int, times: int) -> WastedPath:
        copies = sorted(self._copies_by_path.get(path, ()), key=lambda item: (-item[1][0], item[0]))
        jumps: list[int] = []
        for stored, _info in copies:
            if stored not in jumps:
                jumps.append(stored)
        for _stored, (_n, _c, hidden) in copies:
            if hidden not in jumps:
                jumps.append(hidden)
        return WastedPath(path, nbytes, times, tuple(jumps))

    # ------------------------------------------------------------------ per-step state

    def step_for_layer(self, layer: int) -> int:
        """Index (in :attr:`steps`) of the step that made ``layer``."""
        for k, row in enumerate(self.steps):
            if row.layer == layer:
                return k
        return 0

    def marks(self, layer: int, view: str) -> dict[int, str]:
        """Node id -> change kind of the view at ``layer`` (nothing before the first layer)."""
        if layer < 0 or view == NO_CHANGES_VIEW:
            return {}
        if view == LAYER_VIEW or layer == 0:
            return self.layer_marks[layer]
        return self._cumulative_at(layer).marks

    def ghosts(self, layer: int, view: str) -> dict[int, FinalEntry]:
        """Removed nodes the view shows, with the entry they had before removal."""
        if layer < 0 or view == NO_CHANGES_VIEW:
            return {}
        if view == LAYER_VIEW or layer == 0:
            return self.layer_ghosts[layer]
        return self._cumulative_at(layer).ghosts

    def _cumulative_at(self, layer: int) -> _Cumulative:
        """Cumulative marks, built from the nearest layer below already computed."""
        done = self._cumulative.get(layer)
        if done is not None:
            return done
        start = layer
        while start > 0 and start - 1 not in self._cumulative:
            start -= 1
        current = self._cumulative.get(start - 1) if start > 0 else None
        if current is None:
            current = _Cumulative({}, {})
            start = 1
        base = self.entries[0]
        for index in range(start, layer + 1):
            marks = current.marks.copy()
            ghosts = current.ghosts.copy()
            now = self.entries[index]
            for i in self.layer_marks[index]:
                entry = now[i]
                if entry is None:
                    marks[i] = REMOVED
                    ghost = self.layer_ghosts[index].get(i)
                    if ghost is not None:
                        ghosts[i] = ghost
                    continue
                ghosts.pop(i, None)
                old = base[i]
                kind = ADDED if old is None else classify(old.entry, entry.entry)
                if kind is None:
                    marks.pop(i, None)
                else:
                    marks[i] = kind
            current = _Cumulative(marks, ghosts)
            self._cumulative[index] = current
        return current

    def _filter_bits(self, pattern: str) -> bytearray:
        bits = self._filter_cache.get(pattern)
        if bits is None:
            predicate = compile_filter(pattern)
            bits = bytearray(1 if predicate(p) else 0 for p in self.paths)
            self._filter_cache[pattern] = bits
            while len(self._filter_cache) > 8:
                self._filter_cache.popitem(last=False)
        return bits

    def keep(self, layer: int, options: TreeOptions) -> bytearray:
        """Which nodes the tree shows (visible or a ghost, not hidden, matching, plus their ancestors).

        Built with byte-wide operations where possible (``map(bool, ...)`` and
        big-integer AND run in C); Python loops only touch marked, ghost or
        selected nodes, never the whole image when nothing is filtered.
        """
        key = (layer, options.view, options.hide, options.pattern)
        cached = self._keep_cache.get(key)
        if cached is not None:
            self._keep_cache.move_to_end(key)
            return cached
        count = len(self.paths)
        parent = self.parent
        if layer < 0:
            keep = bytearray(count)
        elif not options.hide and not options.pattern:
            keep = bytearray(map(bool, self.counts[layer]))
            for i in self.ghosts(layer, options.view):
                j = i
                while j >= 0 and not keep[j]:
                    keep[j] = 1
                    j = parent[j]
        else:
            marks = self.marks(layer, options.view)
            ghosts = self.ghosts(layer, options.view)
            hide = options.hide
            if HIDE_UNCHANGED in hide:
                chosen = bytearray(count)
                for i, kind in marks.items():
                    if _GROUP_OF[kind] not in hide:
                        chosen[i] = 1
            else:
                chosen = bytearray(map(bool, self.entries[layer]))
                for i in ghosts:
                    chosen[i] = 1
                for i, kind in marks.items():
                    if _GROUP_OF[kind] in hide:
                        chosen[i] = 0
            if options.pattern:
                bits = self._filter_bits(options.pattern)
                both = int.from_bytes(chosen, "little") & int.from_bytes(bits, "little")
                chosen = bytearray(both.to_bytes(count, "little"))
            chosen[ROOT] = 0
            keep = bytearray(chosen)
            i = chosen.find(1)
            while i != -1:
                j = parent[i]
                while j >= 0 and not keep[j]:
                    keep[j] = 1
                    j = parent[j]
                i = chosen.find(1, i + 1)
        keep[ROOT] = 1
        self._keep_cache[key] = keep
        while len(self._keep_cache) > 16:
            self._keep_cache.popitem(last=False)
        return keep

    def ordered_children(self, node: int, layer: int) -> tuple[int, ...]:
        """Children of ``node`` largest first as of ``layer`` (ties in name order), cached."""
        kids = self.children[node]
        if len(kids) < 2 or layer < 0:
            return kids
        key = (layer, node)
        done = self._size_order.get(key)
        if done is None:
            sizes = self.sizes[layer]
            done = tuple(sorted(kids, key=lambda c: -sizes[c]))  # stable: ties stay in name order
            self._size_order[key] = done
        return done

    def snapshot(self, layer: int, options: TreeOptions, collapsed: set[int] | frozenset[int]) -> TreeSnapshot:
        """The rows shown for ``layer``; folded directories keep their subtree out.

        Sorted by name, node ids are already in display order: the rows are the
        kept ids with folded subtrees blanked out, taken in one C-level pass
        (``itertools.compress``).  Sorted by size, a depth-first walk over the
        shown nodes orders each directory's children by their size as of ``layer``.
        """
        keep = self.keep(layer, options)
        folded = frozenset(collapsed)
        if options.sort == SORT_SIZE:
            nodes = self._rows_by_size(layer, keep, folded)
        else:
            end = self.subtree_end
            shown = keep
            for node in folded:
                if keep[node] and end[node] > node + 1:
                    if shown is keep:
                        shown = bytearray(keep)
                    shown[node + 1 : end[node]] = bytes(end[node] - node - 1)
            nodes = list(compress(range(1, len(shown)), memoryview(shown)[1:]))
        return TreeSnapshot(self, layer, options.view, options.sort, nodes, keep, folded)

    def _rows_by_size(self, layer: int, keep: bytearray, folded: frozenset[int]) -> list[int]:
        nodes: list[int] = []
        ordered = self.ordered_children
        children = self.children
        stack: list[int] = [c for c in reversed(ordered(ROOT, layer)) if keep[c]]
        while stack:
            node = stack.pop()
            nodes.append(node)
            if children[node] and node not in folded:
                stack.extend(c for c in reversed(ordered(node, layer)) if keep[c])
        return nodes

    def row_info(self, snap: TreeSnapshot, row: int) -> RowInfo:
        """Drawing data of one row of a snapshot."""
        node = snap.nodes[row]
        layer = snap.layer
        found = self.entries[layer][node] if layer >= 0 else None
        ghost = None
        if found is None:
            ghost = self.ghosts(layer, snap.view).get(node)
        shown = found or ghost
        entry = shown.entry if shown is not None else None
        has_children = snap.has_children(node)
        is_dir = (entry.type == DIR) if entry is not None else True
        if found is not None:
            size = self.sizes[layer][node] if is_dir else found.entry.size
        elif ghost is not None:
            size = ghost.entry.size
        else:
            size = self.sizes[layer][node] if layer >= 0 else 0
        path = self.paths[node]
        return RowInfo(
            node=node,
            path=path,
            name=self.names[node],
            depth=self.depth[node] - 1,
            guide=snap.guide(row),
            is_dir=is_dir or has_children,
            expandable=has_children,
            expanded=has_children and node not in snap.collapsed,
            kind=self.marks(layer, snap.view).get(node),
            entry=entry,
            layer=shown.layer if shown is not None else None,
            ghost=found is None and ghost is not None,
            size=size,
            findings=self.findings.get(path, ()),
        )

    def expandable_nodes(self) -> set[int]:
        """Every node with children (for fold all)."""
        return {i for i, kids in enumerate(self.children) if kids}

    # ------------------------------------------------------------------ one path

    def history(self, node: int) -> tuple[Touch, ...]:
        """Every layer that touched the path, base first, with what it stored and whether it is wasted."""
        path = self.paths[node]
        out: list[Touch] = []
        for layer, change in self.timeline.get(node, ()):
            wasted = self._wasted_copies.get((path, layer)) if change.entry is not None else None
            out.append(
                Touch(
                    layer=layer,
                    instruction=self.instructions.get(layer, ""),
                    kind=change.kind,
                    entry=change.entry,
                    old=change.old,
                    cause=change.cause,
                    wasted_bytes=wasted[0] if wasted else 0,
                    wasted_cause=wasted[1] if wasted else "",
                    hidden_by=wasted[2] if wasted else None,
                )
            )
        return tuple(out)

    def wasted_jumps(self, node: int) -> tuple[int, ...]:
        """Layers to visit for a wasted path: those that stored wasted copies, then those that hid them."""
        path = self.paths[node]
        if path not in self._copies_by_path:
            return ()
        return self._wasted_path(path, 0, 0).jumps

    def entry_at(self, node: int, layer: int) -> FinalEntry | None:
        """The entry visible at ``node`` as of ``layer`` (None when absent)."""
        return self.entries[layer][node] if layer >= 0 else None

    def content_source(self, node: int, layer: int) -> tuple[str, FinalEntry] | None:
        """Which stored file holds the bytes of ``node`` as of ``layer``: (path, entry in its layer).

        A hard link carries no bytes: its target in the same layer does.
        """
        found = self.entry_at(node, layer)
        if found is None:
            return None
        entry = found.entry
        if entry.type == FILE:
            return entry.path, found
        if entry.type == HARDLINK:
            target = "/" + entry.link.lstrip("/")
            scan = self.stack.image.scans[found.layer]
            for candidate in scan.entries:
                if candidate.path == target and candidate.type == FILE:
                    return target, FinalEntry(candidate, found.layer)
        return None


def describe_entry(entry: Entry) -> str:
    """A short type word for the detail panel."""
    if entry.type == SYMLINK:
        return f"symlink -> {entry.link}"
    if entry.type == HARDLINK:
        return f"hard link to /{entry.link.lstrip('/')}"
    return entry.type


def permissions(entry: Entry | None) -> str:
    """``drwxr-xr-x`` style permissions (setuid, setgid and sticky included)."""
    if entry is None:
        return "----------"
    first = {DIR: "d", SYMLINK: "l", "char": "c", "block": "b", "fifo": "p"}.get(entry.type, "-")
    mode = entry.mode
    out = [first]
    for shift, special, special_char in ((6, 0o4000, "s"), (3, 0o2000, "s"), (0, 0o1000, "t")):
        bits = (mode >> shift) & 7
        out.append("r" if bits & 4 else "-")
        out.append("w" if bits & 2 else "-")
        execute = bool(bits & 1)
        if mode & special:
            out.append(special_char if execute else special_char.upper())
        else:
            out.append("x" if execute else "-")
    return "".join(out)


def audit_findings(stack: Stack, content: Any = None) -> tuple[list[Finding], int] | None:
    """Findings of :mod:`imgscope.analysis.audit`, adapted to :class:`Finding`; None without that module.

    ``content`` is what the audit's content scanner found while layers were
    read (secrets in files); without it only what the stack shows is audited
    (file names, modes, devices, config and history), which costs nothing
    extra.  Returns the findings tied to a path and the total count (config
    and history findings have no path).  The audit's own reports stay the
    authority: the explorer only marks paths.
    """
    import importlib

    try:
        audit = importlib.import_module("imgscope.analysis.audit")
    except ModuleNotFoundError as exc:
        if exc.name not in ("imgscope.analysis.audit", "imgscope.analysis"):
            raise
        return None
    report = audit.audit(stack, content or {})
    out: list[Finding] = []
    for item in report.findings:
        # A grouped finding (the base image's setuid files) marks each path it lists.
        for path in item.paths or ((item.path,) if item.path else ()):
            out.append(Finding(str(path), str(item.severity), str(item.message), item.layer))
    return out, len(report.findings)
