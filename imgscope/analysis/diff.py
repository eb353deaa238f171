"""Image against image: which steps changed, which files, which config fields, and by how much.

Two builds of "the same" image rarely have the same number of steps at the
same positions: a step is inserted, a base is bumped, a ``RUN`` gains a flag.
So steps are aligned the way a person would read two Dockerfiles side by
side: first the layers both images share (same ChainID: identical, nothing to
compare), then the rest by instruction, with a small alignment that pairs a
step with the step of the other image that runs the same instruction (or the
same kind of instruction with other arguments) and shows what is left over as
inserted or removed.

Files are compared on the two final trees, not layer by layer: what a user
gets in the container is what matters, whichever step put it there.  The
vocabulary is DESIGN.md's (added, removed, modified, metadata); an mtime
alone is no difference unless asked for, since every rebuild touches them.
Everything here is plain data; renderers turn it into text, markdown or JSON.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from imgscope.globs import compile_glob
from imgscope.model import ADDED, DIR, FILE, HARDLINK, METADATA, MODIFIED, REMOVED, SYMLINK, Entry, ImageConfig
from imgscope.stack import FinalEntry, Stack

# Status of an aligned step pair.
SAME = "same"  # both images have this layer (same ChainID), or the same empty step
CHANGED = "changed"  # the same step (by instruction) with different arguments or content
STEP_ADDED = "added"  # only in B
STEP_REMOVED = "removed"  # only in A
STEP_STATUSES = (SAME, CHANGED, STEP_ADDED, STEP_REMOVED)

FILE_KINDS = (ADDED, REMOVED, MODIFIED, METADATA)

# Config fields compared, in the order they are shown.
CONFIG_FIELDS = (
    "platform",
    "entrypoint",
    "cmd",
    "user",
    "working_dir",
    "env",
    "exposed_ports",
    "volumes",
    "labels",
)

# Alignment scores: an identical instruction beats a same-verb pair with similar
# arguments, which beats any weaker pair; steps of different verbs never pair.
_SCORE_IDENTICAL = 3.0
_SCORE_SAME_VERB = 1.0
_SCORE_SAME_CONTENT = 1.0


@dataclass(frozen=True, slots=True)
class StepSide:
    """One image's side of an aligned step: its history position, layer and size."""

    position: int
    layer: int | None
    instruction: str
    created_by: str
    size: int
    diff_id: str | None = None
    chain_id: str | None = None


@dataclass(frozen=True, slots=True)
class StepPair:
    """Two steps the alignment paired (or one, for an inserted or a removed step)."""

    status: str
    a: StepSide | None
    b: StepSide | None

    @property
    def size_a(self) -> int:
        return self.a.size if self.a is not None else 0

    @property
    def size_b(self) -> int:
        return self.b.size if self.b is not None else 0

    @property
    def delta(self) -> int:
        """B's bytes minus A's bytes for this step."""
        return self.size_b - self.size_a

    @property
    def same_content(self) -> bool:
        """Both sides store the same layer bytes (same DiffID), perhaps on another base."""
        return (
            self.a is not None
            and self.b is not None
            and self.a.diff_id is not None
            and self.a.diff_id == self.b.diff_id
        )


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One attribute of a path that differs: ``type``, ``content``, ``target``, ``mode``, ``uid``..."""

    name: str
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class FileDiff:
    """One path whose final state differs between A and B."""

    path: str
    kind: str
    old: Entry | None
    new: Entry | None
    old_layer: int | None = None
    new_layer: int | None = None
    fields: tuple[FieldChange, ...] = ()

    @property
    def size_a(self) -> int:
        return self.old.size if self.old is not None else 0

    @property
    def size_b(self) -> int:
        return self.new.size if self.new is not None else 0

    @property
    def delta(self) -> int:
        return self.size_b - self.size_a

    @property
    def type(self) -> str:
        shown = self.new if self.new is not None else self.old
        assert shown is not None
        return shown.type


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """One config difference; ``key`` names the variable, label, port or volume when the field is a set."""

    field: str
    key: str | None
    old: str | tuple[str, ...] | None
    new: str | tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class DirTotals:
    """Bytes and change counts under one top-level directory (or one file at the root)."""

    directory: str
    size_a: int
    size_b: int
    added: int = 0
    removed: int = 0
    modified: int = 0
    metadata: int = 0

    @property
    def delta(self) -> int:
        return self.size_b - self.size_a

    @property
    def changes(self) -> int:
        return self.added + self.removed + self.modified + self.metadata


@dataclass(frozen=True, slots=True)
class ImageDiff:
    """Everything ``imgscope diff`` reports; ``identical`` drives the exit code."""

    a: Stack
    b: Stack
    shared_layers: int
    shared_bytes: int
    steps: tuple[StepPair, ...]
    files: tuple[FileDiff, ...]
    config: tuple[ConfigChange, ...]
    directories: tuple[DirTotals, ...]
    files_size_a: int
    files_size_b: int
    paths: tuple[str, ...] = ()
    ignores: tuple[str, ...] = ()
    mtime: bool = False

    @property
    def identical(self) -> bool:
        """Same final filesystem (within the filters) and same config fields."""
        return not self.files and not self.config

    @property
    def size_delta(self) -> int:
        """Image size B minus A, as ``docker image ls`` counts it (sum of layers)."""
        return self.b.image.size - self.a.image.size

    @property
    def files_delta(self) -> int:
        """Final-filesystem bytes B minus A, within the path filters."""
        return self.files_size_b - self.files_size_a

    def count(self, kind: str) -> int:
        """How many paths have this change kind."""
        return sum(1 for f in self.files if f.kind == kind)

    def bytes_of(self, kind: str) -> int:
        """Bytes moved by one change kind: added sizes, removed sizes, modified deltas."""
        picked = [f for f in self.files if f.kind == kind]
        if kind == ADDED:
            return sum(f.size_b for f in picked)
        if kind == REMOVED:
            return sum(f.size_a for f in picked)
        return sum(f.delta for f in picked)


# --------------------------------------------------------------------------- steps


def verb(instruction: str) -> str:
    """The instruction's keyword (``RUN``, ``COPY``...): what makes two steps the same step."""
    text = instruction.strip()
    if not text or text.startswith("("):
        return "(missing)"
    return text.split(None, 1)[0].upper()


def _sides(stack: Stack) -> list[StepSide]:
    out: list[StepSide] = []
    for step in stack.steps:
        if step.layer is None or step.layer >= len(stack.layers):
            out.append(StepSide(step.position, None, step.instruction, step.created_by, 0))
            continue
        result = stack.layers[step.layer]
        out.append(
            StepSide(
                step.position,
                step.layer,
                step.instruction,
                step.created_by,
                result.size,
                result.diff_id,
                result.chain_id,
            )
        )
    return out


@lru_cache(maxsize=4096)
def _tokens(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _pair_score(a: StepSide, b: StepSide) -> float:
    """How well two steps pair: 0 means they must not (different instruction verbs).

    Same verb scores 1, plus the share of words the two instructions have in
    common (below 1, so an identical instruction, scored 3, always wins), plus
    1 when both layers hold the same bytes.  Word sets keep this cheap: two
    unrelated 100-step images mean 10,000 pairs.
    """
    if verb(a.instruction) != verb(b.instruction):
        return 0.0
    bonus = _SCORE_SAME_CONTENT if a.diff_id is not None and a.diff_id == b.diff_id else 0.0
    if a.created_by == b.created_by and a.instruction == b.instruction:
        return _SCORE_IDENTICAL + bonus
    left, right = _tokens(a.instruction), _tokens(b.instruction)
    union = len(left | right)
    similarity = len(left & right) / union if union else 0.0
    return _SCORE_SAME_VERB + min(similarity, 0.99) + bonus


def align(
    a: Sequence[StepSide], b: Sequence[StepSide], score: Callable[[StepSide, StepSide], float] = _pair_score
) -> list[tuple[StepSide | None, StepSide | None]]:
    """Pair two step lists in order, maximising the summed pair scores (an LCS with weights).

    Unpaired steps come out alone, in order: a removed step of A before an
    inserted step of B at the same place, as ``diff`` shows them.
    """
    n, m = len(a), len(b)
    scores = [[score(x, y) for y in b] for x in a]
    best = [[0.0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        row, below = best[i], best[i + 1]
        for j in range(m - 1, -1, -1):
            value = max(below[j], row[j + 1])
            s = scores[i][j]
            if s > 0:
                value = max(value, s + below[j + 1])
            row[j] = value
    out: list[tuple[StepSide | None, StepSide | None]] = []
    i = j = 0
    while i < n and j < m:
        s = scores[i][j]
        if s > 0 and best[i][j] == s + best[i + 1][j + 1]:
            out.append((a[i], b[j]))
            i += 1
            j += 1
        elif best[i][j] == best[i + 1][j]:
            out.append((a[i], None))
            i += 1
        else:
            out.append((None, b[j]))
            j += 1
    out.extend((x, None) for x in a[i:])
    out.extend((None, y) for y in b[j:])
    return out


def _status(a: StepSide | None, b: StepSide | None) -> str:
    if a is None:
        return STEP_ADDED
    if b is None:
        return STEP_REMOVED
    if a.chain_id is not None and a.chain_id == b.chain_id:
        return SAME
    if a.layer is None and b.layer is None and a.created_by == b.created_by:
        return SAME
    return CHANGED


def _segments(sides: list[StepSide], count: int) -> tuple[list[list[StepSide]], list[StepSide]]:
    """Split steps into the empty steps before each of the first ``count`` layers, and the rest."""
    segments: list[list[StepSide]] = [[] for _ in range(count)]
    rest: list[StepSide] = []
    current: list[StepSide] = []
    done = 0
    for side in sides:
        if done >= count:
            rest.append(side)
        elif side.layer is None:
            current.append(side)
        else:
            segments[done] = current
            current = []
            done += 1
    if done < count:  # history does not name every prefix layer: keep what is left in order
        rest = current + rest
    return segments, rest


def align_steps(a: Stack, b: Stack) -> tuple[int, list[StepPair]]:
    """The step alignment: shared ChainID prefix first, then the rest by instruction."""
    shared = 0
    for left, right in zip(a.layers, b.layers, strict=False):
        if left.chain_id != right.chain_id:
            break
        shared += 1
    sides_a, sides_b = _sides(a), _sides(b)
    layer_step_a = {s.layer: s for s in sides_a if s.layer is not None}
    layer_step_b = {s.layer: s for s in sides_b if s.layer is not None}
    # The prefix is only usable as far as both histories name its layers in order.
    usable = 0
    while usable < shared and usable in layer_step_a and usable in layer_step_b:
        usable += 1
    seg_a, rest_a = _segments(sides_a, usable)
    seg_b, rest_b = _segments(sides_b, usable)
    pairs: list[StepPair] = []
    for index in range(usable):
        for x, y in align(seg_a[index], seg_b[index]):
            pairs.append(StepPair(_status(x, y), x, y))
        pairs.append(StepPair(SAME, layer_step_a[index], layer_step_b[index]))
    for x, y in align(rest_a, rest_b):
        pairs.append(StepPair(_status(x, y), x, y))
    return shared, pairs


# --------------------------------------------------------------------------- files


def _mode(mode: int) -> str:
    return f"{mode:04o}"


def compare_entries(old: Entry, new: Entry, mtime: bool = False) -> tuple[str | None, tuple[FieldChange, ...]]:
    """The change kind between two final entries at one path, and every field that differs."""
    fields: list[FieldChange] = []
    kind: str | None = None
    if old.type != new.type:
        kind = MODIFIED
        fields.append(FieldChange("type", old.type, new.type))
        if old.link != new.link and (old.link or new.link):
            fields.append(FieldChange("target", old.link, new.link))
    else:
        if new.type == FILE and (old.digest != new.digest or old.size != new.size):
            kind = MODIFIED
            fields.append(FieldChange("content", f"{old.size} bytes", f"{new.size} bytes"))
        if new.type in (SYMLINK, HARDLINK) and old.link != new.link:
            kind = MODIFIED
            fields.append(FieldChange("target", old.link, new.link))
        elif new.type == HARDLINK and old.digest != new.digest:
            kind = MODIFIED
            fields.append(FieldChange("content", old.digest or "?", new.digest or "?"))
        if new.type not in (FILE, SYMLINK, HARDLINK, DIR) and (old.devmajor, old.devminor) != (
            new.devmajor,
            new.devminor,
        ):
            kind = MODIFIED
            fields.append(FieldChange("device", f"{old.devmajor},{old.devminor}", f"{new.devmajor},{new.devminor}"))
    meta: list[FieldChange] = []
    if old.mode != new.mode:
        meta.append(FieldChange("mode", _mode(old.mode), _mode(new.mode)))
    if old.uid != new.uid:
        meta.append(FieldChange("uid", str(old.uid), str(new.uid)))
    if old.gid != new.gid:
        meta.append(FieldChange("gid", str(old.gid), str(new.gid)))
    if old.xattrs != new.xattrs:
        before, after = dict(old.xattrs), dict(new.xattrs)
        for key in sorted(before.keys() | after.keys()):
            if before.get(key) != after.get(key):
                meta.append(FieldChange(f"xattr {key}", before.get(key, "(none)"), after.get(key, "(none)")))
    if mtime and old.mtime != new.mtime:
        meta.append(FieldChange("mtime", str(old.mtime), str(new.mtime)))
    if meta and kind is None:
        kind = METADATA
    return kind, tuple(fields + meta)


class PathFilter:
    """``--path`` and ``--ignore``: a path is in when it or one of its parent directories matches.

    Matching parents too means ``--path /etc`` and ``--ignore /var/log`` take
    whole subtrees, as people mean them; globs keep DESIGN.md's rules.  Each
    pattern list becomes one regular expression, and answers for directories
    are remembered, because final trees hold hundreds of thousands of paths.
    """

    def __init__(self, paths: Iterable[str] = (), ignores: Iterable[str] = ()) -> None:
        self.paths = tuple(paths)
        self.ignores = tuple(ignores)
        self._want = _combined(self.paths)
        self._skip = _combined(self.ignores)
        self._want_dirs: dict[str, bool] = {}
        self._skip_dirs: dict[str, bool] = {}

    @staticmethod
    def _under(regex: re.Pattern[str], memo: dict[str, bool], directory: str) -> bool:
        """Does ``directory`` or one of its ancestors match?"""
        pending: list[str] = []
        found = False
        while directory != "/":
            known = memo.get(directory)
            if known is not None:
                found = known
                break
            if regex.match(directory) is not None:
                found = True
                memo[directory] = True
                break
            pending.append(directory)
            directory = posixpath.dirname(directory)
        for d in pending:
            memo[d] = found
        return found

    def _hits(self, regex: re.Pattern[str], memo: dict[str, bool], path: str) -> bool:
        return regex.match(path) is not None or self._under(regex, memo, posixpath.dirname(path))

    def __call__(self, path: str) -> bool:
        if self._want is not None and not self._hits(self._want, self._want_dirs, path):
            return False
        return self._skip is None or not self._hits(self._skip, self._skip_dirs, path)


def _combined(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regular expression matching what any of the globs matches (None for no globs)."""
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{compile_glob(p).pattern})" for p in patterns))


def top_level(path: str, is_dir: bool = False) -> str:
    """``/usr/lib/x`` -> ``/usr``; files at the root share one bucket, ``/``."""
    parts = path.strip("/").split("/", 1)
    if not parts[0] or (len(parts) == 1 and not is_dir):
        return "/"
    return "/" + parts[0]


def diff_files(
    final_a: dict[str, FinalEntry], final_b: dict[str, FinalEntry], keep: Callable[[str], bool], mtime: bool = False
) -> list[FileDiff]:
    """Every path whose final state differs, sorted by size impact (largest first), then path."""
    out: list[FileDiff] = []
    for path in sorted(final_a.keys() | final_b.keys()):
        if not keep(path):
            continue
        left, right = final_a.get(path), final_b.get(path)
        if left is None and right is not None:
            out.append(FileDiff(path, ADDED, None, right.entry, None, right.layer))
        elif right is None and left is not None:
            out.append(FileDiff(path, REMOVED, left.entry, None, left.layer, None))
        elif left is not None and right is not None:
            if left.entry is right.entry or left.entry == right.entry:
                continue  # the same layer, or an identical entry: the common case, kept cheap
            kind, fields = compare_entries(left.entry, right.entry, mtime)
            if kind is not None:
                out.append(FileDiff(path, kind, left.entry, right.entry, left.layer, right.layer, fields))
    out.sort(key=lambda f: (-abs(f.delta), -max(f.size_a, f.size_b), f.path))
    return out


def _dir_totals(
    final_a: dict[str, FinalEntry],
    final_b: dict[str, FinalEntry],
    files: list[FileDiff],
    keep: Callable[[str], bool],
) -> tuple[list[DirTotals], int, int]:
    sizes: dict[str, list[int]] = {}
    for side, final in ((0, final_a), (1, final_b)):
        for path, found in final.items():
            if found.entry.type == DIR or not keep(path):
                continue
            sizes.setdefault(top_level(path), [0, 0])[side] += found.entry.size  # directories are skipped above
    counts: dict[str, dict[str, int]] = {}
    for f in files:
        bucket = counts.setdefault(top_level(f.path, f.type == DIR), dict.fromkeys(FILE_KINDS, 0))
        bucket[f.kind] += 1
    rows = []
    for directory in sorted(sizes.keys() | counts.keys()):
        a_size, b_size = sizes.get(directory, [0, 0])
        c = counts.get(directory, dict.fromkeys(FILE_KINDS, 0))
        rows.append(DirTotals(directory, a_size, b_size, c[ADDED], c[REMOVED], c[MODIFIED], c[METADATA]))
    rows.sort(key=lambda r: (-abs(r.delta), -r.changes, r.directory))
    total_a = sum(v[0] for v in sizes.values())
    total_b = sum(v[1] for v in sizes.values())
    return rows, total_a, total_b


# --------------------------------------------------------------------------- config


def _env_map(env: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in env:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def diff_config(a: ImageConfig, b: ImageConfig) -> list[ConfigChange]:
    """The config fields users run with, compared; sets and maps item by item."""
    out: list[ConfigChange] = []
    if a.platform != b.platform:
        out.append(ConfigChange("platform", None, a.platform, b.platform))
    if a.entrypoint != b.entrypoint:
        out.append(ConfigChange("entrypoint", None, a.entrypoint, b.entrypoint))
    if a.cmd != b.cmd:
        out.append(ConfigChange("cmd", None, a.cmd, b.cmd))
    if a.user != b.user:
        out.append(ConfigChange("user", None, a.user, b.user))
    if a.working_dir != b.working_dir:
        out.append(ConfigChange("working_dir", None, a.working_dir, b.working_dir))
    for name, left, right in (
        ("env", _env_map(a.env), _env_map(b.env)),
        ("labels", dict(a.labels), dict(b.labels)),
    ):
        for key in sorted(left.keys() | right.keys()):
            if left.get(key) != right.get(key):
                out.append(ConfigChange(name, key, left.get(key), right.get(key)))
    for name, items_a, items_b in (
        ("exposed_ports", set(a.exposed_ports), set(b.exposed_ports)),
        ("volumes", set(a.volumes), set(b.volumes)),
    ):
        for key in sorted(items_a ^ items_b):
            present_a, present_b = key in items_a, key in items_b
            out.append(ConfigChange(name, key, key if present_a else None, key if present_b else None))
    order = {name: i for i, name in enumerate(CONFIG_FIELDS)}
    out.sort(key=lambda c: order[c.field])
    return out


# --------------------------------------------------------------------------- the whole diff


def diff(
    a: Stack,
    b: Stack,
    *,
    paths: Sequence[str] = (),
    ignores: Sequence[str] = (),
    mtime: bool = False,
) -> ImageDiff:
    """Compare two stacked images: steps, final files (within the filters), config and totals."""
    shared, steps = align_steps(a, b)
    keep = PathFilter(paths, ignores)
    files = diff_files(a.final, b.final, keep, mtime)
    directories, size_a, size_b = _dir_totals(a.final, b.final, files, keep)
    return ImageDiff(
        a=a,
        b=b,
        shared_layers=shared,
        shared_bytes=sum(r.size for r in a.layers[:shared]),
        steps=tuple(steps),
        files=tuple(files),
        config=tuple(diff_config(a.image.config, b.image.config)),
        directories=tuple(directories),
        files_size_a=size_a,
        files_size_b=size_b,
        paths=tuple(paths),
        ignores=tuple(ignores),
        mtime=mtime,
    )
