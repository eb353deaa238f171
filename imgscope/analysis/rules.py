"""CI rules: which rules exist, how a limit is written, and the verdict of each rule. Pure.

Why one table of rule definitions: every rule is at once a config key
(``max-size: 300MB``), a command-line option (``--max-size 300MB``), a JUnit
testcase and a JSON record, so its name, the kind of value it takes and what
it measures live in one place (:data:`RULES`) that the config reader, the CLI
and the renderers all read.

Limits are parsed here (:func:`parse_limit`) with the place they came from
(a file and line, an option, a default), so a bad value is reported where the
user can fix it.  imgscope's own rules fail when the measure is past the limit
(``max-*``: above it; ``min-*``: below it; at the limit passes).  The three
``dive-*`` rules reproduce dive's CI mode exactly: values parsed as dive parses
them (a plain float for the two ratios, go-humanize byte sizes such as ``20MB``
or ``20MiB``), ``disabled``/``off``/``false``/empty switch a rule off, and a
rule fails only strictly past its limit, on dive's own figures
(``WasteReport.dive_*``).

Nothing here reads files or prints: :func:`evaluate` takes the stacked image,
its waste report, the push size and an optional baseline snapshot, and
returns a :class:`CiReport` for the renderers.
"""

from __future__ import annotations

import difflib
import math
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from imgscope.analysis.waste import PathWaste, WasteReport
from imgscope.errors import ImgscopeError
from imgscope.globs import compile_glob
from imgscope.model import DIR, Image
from imgscope.stack import Stack
from imgscope.units import parse_fraction, parse_size

# How a rule's limit is written.
SIZE = "size"  # 300MB, 300MiB, 4096
COUNT = "count"  # a whole number
FRACTION = "fraction"  # 0.9 or 90%
GROWTH = "growth"  # a size or a percent
GLOB = "glob"  # a path glob
DIVE_RATIO = "dive-ratio"  # dive: a float between 0 and 1, nothing else
DIVE_BYTES = "dive-bytes"  # dive: a go-humanize byte size

# What a measured value is, for renderers.
BYTES = "bytes"
RATIO = "ratio"
NUMBER = "count"
PATHS = "paths"

# Which way a limit goes.
AT_MOST = "at-most"
AT_LEAST = "at-least"
NONE_ALLOWED = "none"

# Verdicts.
PASS = "pass"
FAIL = "fail"
SKIP = "skip"

#: What turns any imgscope rule off; dive's own set for the dive rules (runtime/ci/rules.go).
OFF_WORDS = frozenset({"off", "disabled", "false", "none"})
DIVE_OFF_WORDS = frozenset({"", "disabled", "off", "false"})

#: How many steps and paths the "what grew" lists keep.
TOP_GROWTH = 10
#: How many forbidden paths a result lists (the count covers them all).
MAX_FINDINGS = 100


@dataclass(frozen=True, slots=True)
class RuleDef:
    """One rule: its name (config key and option), how its limit is written, what it measures."""

    name: str
    kind: str
    unit: str
    direction: str
    summary: str
    repeatable: bool = False
    dive_key: str = ""


RULES: tuple[RuleDef, ...] = (
    RuleDef("max-size", SIZE, BYTES, AT_MOST, "image size (sum of layer sizes, as docker image ls shows it)"),
    RuleDef(
        "max-compressed-size",
        SIZE,
        BYTES,
        AT_MOST,
        "what a push transfers: manifest layer sizes, else each layer gzipped at level 6",
    ),
    RuleDef("max-layers", COUNT, NUMBER, AT_MOST, "number of layers"),
    RuleDef("max-layer-size", SIZE, BYTES, AT_MOST, "size of the largest layer"),
    RuleDef("min-efficiency", FRACTION, RATIO, AT_LEAST, "imgscope's efficiency: 1 - wasted / stored bytes"),
    RuleDef("max-wasted-bytes", SIZE, BYTES, AT_MOST, "bytes stored in layers but hidden in the final image"),
    RuleDef("max-wasted-percent", FRACTION, RATIO, AT_MOST, "wasted bytes over all stored bytes"),
    RuleDef("max-growth", GROWTH, BYTES, AT_MOST, "growth of the image size since the baseline", repeatable=True),
    RuleDef("forbid-path", GLOB, PATHS, NONE_ALLOWED, "paths that must not exist in the final image", repeatable=True),
    RuleDef("max-junk-bytes", SIZE, BYTES, AT_MOST, "caches and junk left in the final image"),
    RuleDef(
        "dive-lowest-efficiency",
        DIVE_RATIO,
        RATIO,
        AT_LEAST,
        "dive's efficiency score (fails strictly below the limit)",
        dive_key="lowestEfficiency",
    ),
    RuleDef(
        "dive-highest-wasted-bytes",
        DIVE_BYTES,
        BYTES,
        AT_MOST,
        "dive's wasted bytes (every copy of a repeated path; fails strictly above)",
        dive_key="highestWastedBytes",
    ),
    RuleDef(
        "dive-highest-user-wasted-percent",
        DIVE_RATIO,
        RATIO,
        AT_MOST,
        "dive's wasted bytes over the bytes of all layers but the first (fails strictly above)",
        dive_key="highestUserWastedPercent",
    ),
)
RULES_BY_NAME: dict[str, RuleDef] = {r.name: r for r in RULES}
#: dive's defaults for a key its config file leaves out (dive's DefaultCIRules).
DIVE_DEFAULTS: dict[str, str] = {
    "dive-lowest-efficiency": "0.9",
    "dive-highest-wasted-bytes": "disabled",
    "dive-highest-user-wasted-percent": "0.1",
}
#: imgscope's defaults when neither a config file nor an option names a rule.
DEFAULTS: dict[str, str] = {"min-efficiency": "0.9", "max-wasted-percent": "10%"}
#: The default when ``--baseline`` is the only thing given: the question asked is "did it grow?",
#: not "does it waste?" (an unchanged image must pass, whatever it wastes).
BASELINE_DEFAULTS: dict[str, str] = {"max-growth": "10%"}


def rule(name: str) -> RuleDef:
    """The definition of a rule by name (an error suggesting the nearest name when unknown)."""
    found = RULES_BY_NAME.get(name)
    if found is None:
        raise ImgscopeError(unknown_rule(name))
    return found


def unknown_rule(name: str) -> str:
    """The message for an unknown rule name, with the nearest known name when one is close."""
    close = difflib.get_close_matches(name, list(RULES_BY_NAME), n=1)
    hint = f" (did you mean {close[0]}?)" if close else f"; rules are: {', '.join(RULES_BY_NAME)}"
    return f"unknown rule {name!r}{hint}"


# ---------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limit:
    """One configured limit: its value (None when the rule is off), as written, and where it came from.

    ``value`` is bytes (int) for sizes, a count, a fraction (float) for ratios
    and percents, or the glob text.  ``percent`` marks a ``max-growth`` given
    as a percent (``value`` is then a fraction of the baseline size).
    """

    rule: str
    value: int | float | str | None
    text: str
    origin: str
    percent: bool = False

    @property
    def off(self) -> bool:
        return self.value is None


_GO_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
# go-humanize's ParseBytes: the number, then one of these names (case-insensitive, spaces trimmed).
_HUMANIZE_UNITS: dict[str, int] = {"": 1, "b": 1}
for _i, _letter in enumerate("kmgtpe", start=1):
    _HUMANIZE_UNITS[_letter] = _HUMANIZE_UNITS[_letter + "b"] = 1000**_i
    _HUMANIZE_UNITS[_letter + "i"] = _HUMANIZE_UNITS[_letter + "ib"] = 1024**_i


def parse_dive_ratio(text: str) -> float:
    """A ratio as dive reads it (Go's ``strconv.ParseFloat``), checked to lie in [0, 1] as dive checks it."""
    if not _GO_FLOAT.match(text):
        raise ValueError(f"{text!r} is not a number (dive takes a ratio between 0 and 1, e.g. 0.9)")
    value = float(text)
    if not 0 <= value <= 1:
        raise ValueError(f"{text!r} is outside the allowed range 0-1")
    return value


def parse_dive_bytes(text: str) -> int:
    """A byte size as dive reads it (go-humanize ``ParseBytes``): ``20MB`` = 20*10^6, ``20MiB`` = 20*2^20.

    The leading run of digits, dots and commas is the number (commas are
    thousands separators); the rest, trimmed and lower-cased, must name a unit.
    """
    end = 0
    while end < len(text) and (text[end].isdigit() or text[end] in ".,"):
        end += 1
    number = text[:end].replace(",", "")
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{text!r} is not a byte size (examples: 20MB, 20MiB, 5000)") from None
    unit = text[end:].strip().lower()
    factor = _HUMANIZE_UNITS.get(unit)
    if factor is None:
        raise ValueError(f"{text!r}: unknown unit {unit!r} (use B, kB, MB, GB, KiB, MiB, GiB)")
    return int(value * factor)


def parse_limit(name: str, raw: str, origin: str) -> Limit:
    """Parse one value of rule ``name`` written as ``raw``; errors name ``origin`` (file and line, or option)."""
    definition = rule(name)
    text = raw.strip()
    where = origin if origin == f"--{name}" else f"{origin}: {name}"  # "--max-size", not "--max-size: max-size"
    if definition.kind in (DIVE_RATIO, DIVE_BYTES):
        if text.lower() in DIVE_OFF_WORDS:
            return Limit(name, None, text or "disabled", origin)
        try:
            value: int | float = parse_dive_ratio(text) if definition.kind == DIVE_RATIO else parse_dive_bytes(text)
        except ValueError as exc:
            raise ImgscopeError(f"{where}: {exc}") from None
        return Limit(name, value, text, origin)
    if not text:
        raise ImgscopeError(f"{where}: no value (write a limit, or off)")
    if text.lower() in OFF_WORDS:
        return Limit(name, None, "off", origin)
    if definition.kind == SIZE:
        return Limit(name, parse_size(text, where), text, origin)
    if definition.kind == COUNT:
        if not text.isdigit():
            raise ImgscopeError(f"{where}: {text!r} is not a whole number")
        return Limit(name, int(text), text, origin)
    if definition.kind == FRACTION:
        fraction = parse_fraction(text, where)
        if not 0 <= fraction <= 1 or math.isnan(fraction):
            raise ImgscopeError(f"{where}: {text!r} must lie between 0 and 1 (or 0% and 100%)")
        return Limit(name, fraction, text, origin)
    if definition.kind == GROWTH:
        if text.endswith("%"):
            fraction = parse_fraction(text, where)
            if fraction < 0 or math.isnan(fraction) or math.isinf(fraction):
                raise ImgscopeError(f"{where}: {text!r} must be a percent of 0% or more")
            return Limit(name, fraction, text, origin, percent=True)
        return Limit(name, parse_size(text, where), text, origin)
    # GLOB
    try:
        compile_glob(text)
    except re.error as exc:
        raise ImgscopeError(f"{where}: {text!r} is not a valid glob ({exc})") from None
    return Limit(name, text, text, origin)


@dataclass(frozen=True, slots=True)
class RuleConfig:
    """The limits in force, after the config file, the options and the defaults were merged.

    ``source`` says where the rules came from for people (``.imgscope.yaml``,
    ``.dive-ci``, ``options``, ``defaults``); ``notes`` are remarks worth showing
    (a config file with no rules, for instance).
    """

    limits: tuple[Limit, ...]
    source: str
    notes: tuple[str, ...] = ()

    def of(self, name: str) -> list[Limit]:
        """The limits of one rule (empty when it is not configured)."""
        return [limit for limit in self.limits if limit.rule == name]


def merge(
    file_limits: Iterable[Limit],
    option_limits: Iterable[Limit],
    *,
    source: str,
    had_file: bool,
    notes: Iterable[str] = (),
    baseline: bool = False,
) -> RuleConfig:
    """Options override the file rule by rule (a repeatable rule's options replace the file's list).

    With no config file and no option at all, imgscope's defaults apply
    (:data:`DEFAULTS`), or, when a baseline is given, the growth check of
    :data:`BASELINE_DEFAULTS` alone.  dive rules come only from files: no
    option touches them.
    """
    from_options = list(option_limits)
    from_file = list(file_limits)
    if not had_file and not from_options:
        chosen, source = DEFAULTS, "defaults"
        if baseline:
            chosen = BASELINE_DEFAULTS
            source = "the --baseline default: " + ", ".join(f"{k} {v}" for k, v in chosen.items())
        defaults = [parse_limit(name, value, "default") for name, value in chosen.items()]
        return RuleConfig(tuple(defaults), source, tuple(notes))
    overridden = {limit.rule for limit in from_options}
    kept = [limit for limit in from_file if limit.rule not in overridden]
    return RuleConfig(tuple(kept + from_options), source, tuple(notes))


# ---------------------------------------------------------------------------
# Snapshots and growth
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotLayer:
    """One layer of a snapshot: its index, the step that made it, its size."""

    index: int
    instruction: str
    size: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a size comparison needs of an image, from a live stack or a saved ``inspect --json`` report.

    ``files`` maps each non-directory path of the final tree to (size, layer that wrote it).
    """

    label: str
    kind: str  # "image" or "report"
    size: int
    compressed_size: int | None
    layers: tuple[SnapshotLayer, ...]
    files: dict[str, tuple[int, int | None]] = field(default_factory=dict, compare=False, hash=False)


def snapshot_of(stack: Stack, label: str | None = None) -> Snapshot:
    """The snapshot of a stacked image."""
    image = stack.image
    instructions = {s.layer: s.instruction for s in stack.steps if s.layer is not None}
    layers = tuple(SnapshotLayer(r.index, instructions.get(r.index, ""), r.size) for r in stack.layers)
    files: dict[str, tuple[int, int | None]] = {
        path: (f.entry.size, f.layer) for path, f in stack.final.items() if f.entry.type != DIR
    }
    return Snapshot(label or image.reference, "image", image.size, image.compressed_size, layers, files)


@dataclass(frozen=True, slots=True)
class StepGrowth:
    """A step matched between baseline and image (or only in one of them), and how its layer's size moved."""

    instruction: str
    layer: int | None
    baseline_layer: int | None
    before: int
    after: int

    @property
    def delta(self) -> int:
        return self.after - self.before


@dataclass(frozen=True, slots=True)
class PathGrowth:
    """A path of the final tree whose size grew (``before`` None: the path is new)."""

    path: str
    before: int | None
    after: int
    layer: int | None

    @property
    def delta(self) -> int:
        return self.after - (self.before or 0)


@dataclass(frozen=True, slots=True)
class Growth:
    """How the image moved since the baseline, and where: the steps and paths that grew most."""

    baseline: str
    baseline_kind: str
    before: int
    after: int
    before_compressed: int | None
    before_layers: int
    after_layers: int
    steps: tuple[StepGrowth, ...]
    paths: tuple[PathGrowth, ...]
    grown_paths: int  # paths in both whose size grew
    new_paths: int  # paths only the image has
    removed_paths: int  # paths only the baseline has

    @property
    def delta(self) -> int:
        return self.after - self.before

    @property
    def fraction(self) -> float:
        """Growth over the baseline size (infinite when the baseline was empty and the image is not)."""
        if self.before == 0:
            return 0.0 if self.after == 0 else math.inf
        return self.delta / self.before


_HASHES = re.compile(r"\b(?:file|dir|multi):[0-9a-f]{12}(?:…|[0-9a-f]{52})")


def _step_key(instruction: str) -> str:
    """An instruction without the content hashes the legacy builder puts in COPY/ADD (they change every build)."""
    return " ".join(_HASHES.sub("<content>", instruction).split())


def match_steps(before: tuple[SnapshotLayer, ...], after: tuple[SnapshotLayer, ...]) -> list[StepGrowth]:
    """Pair the layers of two builds by their instructions (a diff of the step lists), base first.

    Equal runs pair one to one; a replaced run pairs position by position (an
    edited ``RUN`` is still the same step); what is left is a step only one
    side has.
    """
    matcher = difflib.SequenceMatcher(
        None, [_step_key(x.instruction) for x in before], [_step_key(x.instruction) for x in after], autojunk=False
    )
    out: list[StepGrowth] = []
    for _tag, i1, i2, j1, j2 in matcher.get_opcodes():
        pairs = min(i2 - i1, j2 - j1)
        for k in range(pairs):
            b, a = before[i1 + k], after[j1 + k]
            out.append(StepGrowth(a.instruction, a.index, b.index, b.size, a.size))
        for b in before[i1 + pairs : i2]:
            out.append(StepGrowth(b.instruction, None, b.index, b.size, 0))
        for a in after[j1 + pairs : j2]:
            out.append(StepGrowth(a.instruction, a.index, None, 0, a.size))
    return out


def growth(baseline: Snapshot, current: Snapshot, top: int = TOP_GROWTH) -> Growth:
    """Compare a snapshot with its baseline: total growth, the steps and the paths that grew most."""
    steps = [s for s in match_steps(baseline.layers, current.layers) if s.delta > 0]
    steps.sort(key=lambda s: (-s.delta, s.layer if s.layer is not None else -1))
    grown: list[PathGrowth] = []
    new = bigger = 0
    for path, (size, layer) in current.files.items():
        old = baseline.files.get(path)
        if old is None:
            new += 1
            if size > 0:
                grown.append(PathGrowth(path, None, size, layer))
        elif size > old[0]:
            bigger += 1
            grown.append(PathGrowth(path, old[0], size, layer))
    removed = sum(1 for path in baseline.files if path not in current.files)
    grown.sort(key=lambda p: (-p.delta, p.path))
    return Growth(
        baseline=baseline.label,
        baseline_kind=baseline.kind,
        before=baseline.size,
        after=current.size,
        before_compressed=baseline.compressed_size,
        before_layers=len(baseline.layers),
        after_layers=len(current.layers),
        steps=tuple(steps[:top]),
        paths=tuple(grown[:top]),
        grown_paths=bigger,
        new_paths=new,
        removed_paths=removed,
    )


# ---------------------------------------------------------------------------
# Push size
# ---------------------------------------------------------------------------

MANIFEST = "manifest"
GZIP_ESTIMATE = "gzip-6"
MIXED = "manifest+gzip-6"


@dataclass(frozen=True, slots=True)
class PushSize:
    """What a push transfers, per layer, and how it was found.

    ``method`` is ``manifest`` (the blob sizes the source records),
    ``gzip-6`` (each uncompressed layer tar gzipped at level 6 here, as
    ``docker push`` compresses: an estimate, Go's deflate differs from zlib's
    by a few percent) or ``manifest+gzip-6`` when only some layers had a
    compressed blob.
    """

    layers: tuple[int, ...]
    method: str
    estimated: tuple[int, ...] = ()

    @property
    def total(self) -> int:
        return sum(self.layers)


_COMPRESSED_MEDIA = ("gzip", "zstd")


def manifest_push_sizes(image: Image) -> list[int | None]:
    """Per layer, the stored blob size when the source stores that layer compressed; None where it does not.

    A size is taken only when the blob is compressed: its media type says
    gzip or zstd, or (no media type) its size differs from the tar's.  Docker
    25's archive lists uncompressed blobs, whose size is not what a push sends.
    """
    out: list[int | None] = []
    for info, scan in zip(image.layers, image.scans, strict=False):
        size = info.compressed_size
        media = (info.media_type or "").lower()
        compressed = any(word in media for word in _COMPRESSED_MEDIA) or (not media and size != scan.tar_bytes)
        out.append(size if size is not None and compressed else None)
    out.extend([None] * (len(image.scans) - len(out)))
    return out


def push_size(manifest: list[int | None], estimates: dict[int, int]) -> PushSize:
    """Combine manifest sizes with gzip estimates for the layers that have none."""
    sizes: list[int] = []
    estimated: list[int] = []
    for index, size in enumerate(manifest):
        if size is not None:
            sizes.append(size)
        else:
            sizes.append(estimates[index])
            estimated.append(index)
    if not estimated:
        method = MANIFEST
    elif len(estimated) == len(manifest):
        method = GZIP_ESTIMATE
    else:
        method = MIXED
    return PushSize(tuple(sizes), method, tuple(estimated))


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a rule points at: a path, a layer, bytes, and a short note."""

    path: str = ""
    layer: int | None = None
    bytes: int | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class RuleResult:
    """The verdict of one rule (one limit for a repeatable ``max-growth``; all globs for ``forbid-path``).

    ``measured`` is in ``unit`` (bytes, a ratio, a count, a number of paths);
    ``limit`` likewise; ``limit_text`` is the limit as the user wrote it.
    ``reason`` explains a SKIP or qualifies a measure (``gzip-6 estimate``).
    """

    rule: str
    name: str
    status: str
    unit: str
    direction: str
    measured: int | float | None
    limit: int | float | None
    limit_text: str
    origin: str
    reason: str = ""
    findings: tuple[Finding, ...] = ()

    @property
    def unset(self) -> bool:
        """Skipped because nobody set a limit (or set it to off): not a test anyone asked for."""
        return self.status == SKIP and self.reason in _UNSET_REASONS


@dataclass(frozen=True, slots=True)
class CiReport:
    """Everything ``imgscope ci`` found: rule verdicts and what to look at when one fails."""

    image: Image
    config: RuleConfig
    results: tuple[RuleResult, ...]
    waste: WasteReport
    top_wasting: tuple[PathWaste, ...]
    push: PushSize | None
    growth: Growth | None

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def passed(self) -> bool:
        return self.count(FAIL) == 0


def _verdict(measured: float, limit: float, direction: str) -> str:
    if direction == AT_LEAST:
        return FAIL if measured < limit else PASS
    return FAIL if measured > limit else PASS


def _simple(
    definition: RuleDef,
    limit: Limit,
    measured: float | None,
    reason: str = "",
    findings: tuple[Finding, ...] = (),
) -> RuleResult:
    if measured is None:
        return RuleResult(
            definition.name,
            definition.name,
            SKIP,
            definition.unit,
            definition.direction,
            None,
            None,
            limit.text,
            limit.origin,
            reason,
        )
    assert isinstance(limit.value, int | float)
    status = _verdict(measured, limit.value, definition.direction)
    return RuleResult(
        definition.name,
        definition.name,
        status,
        definition.unit,
        definition.direction,
        measured,
        limit.value,
        limit.text,
        limit.origin,
        reason,
        findings if status == FAIL else (),
    )


def _skipped(definition: RuleDef, limits: list[Limit], name: str | None = None, reason: str = "") -> RuleResult:
    last = limits[-1] if limits else None
    return RuleResult(
        definition.name,
        name or definition.name,
        SKIP,
        definition.unit,
        definition.direction,
        None,
        None,
        last.text if last else "off",
        last.origin if last else "",
        reason or (_UNSET_REASONS[0] if last else _UNSET_REASONS[1]),
    )


#: The reasons of a rule skipped for want of a limit: set to off, or never set.
_UNSET_REASONS = ("off", "not configured")


def _instruction_of(stack: Stack) -> dict[int, str]:
    return {s.layer: s.instruction for s in stack.steps if s.layer is not None}


def evaluate(
    config: RuleConfig,
    stack: Stack,
    waste: WasteReport,
    *,
    push: PushSize | None = None,
    baseline: Snapshot | None = None,
    top: int = TOP_GROWTH,
) -> CiReport:
    """Every rule's verdict, in the order of :data:`RULES` (rules that are off or unset are SKIP)."""
    image = stack.image
    instructions = _instruction_of(stack)
    current = snapshot_of(stack)
    grew = growth(baseline, current, top) if baseline is not None else None
    results: list[RuleResult] = []
    for definition in RULES:
        limits = config.of(definition.name)
        active = [limit for limit in limits if not limit.off]
        if not active:
            results.append(_skipped(definition, limits))
            continue
        name = definition.name
        if name == "max-growth":
            results.extend(_growth_results(definition, active, grew))
            continue
        if name == "forbid-path":
            results.append(_forbidden(definition, active, stack))
            continue
        limit = active[-1]
        if name == "max-size":
            results.append(_simple(definition, limit, image.size))
        elif name == "max-compressed-size":
            if push is None:
                results.append(_simple(definition, limit, None, "push size not computed"))
            else:
                over = _layers_over(list(push.layers), None, instructions)
                reason = {MANIFEST: "manifest sizes", GZIP_ESTIMATE: "gzip -6 estimate"}.get(
                    push.method, f"manifest sizes, gzip -6 estimate for {len(push.estimated)} layers"
                )
                results.append(_simple(definition, limit, push.total, reason, over[:3]))
        elif name == "max-layers":
            results.append(_simple(definition, limit, len(image.scans)))
        elif name == "max-layer-size":
            sizes = [scan.size for scan in image.scans]
            assert isinstance(limit.value, int)
            over = _layers_over(sizes, limit.value, instructions)
            largest = max(range(len(sizes)), key=lambda i: sizes[i]) if sizes else None
            reason = f"layer {largest}" if largest is not None else "no layers"
            results.append(_simple(definition, limit, max(sizes, default=0), reason, over))
        elif name == "min-efficiency":
            results.append(_simple(definition, limit, waste.efficiency, findings=_wasting(waste, top)))
        elif name == "max-wasted-bytes":
            results.append(_simple(definition, limit, waste.wasted_bytes, findings=_wasting(waste, top)))
        elif name == "max-wasted-percent":
            fraction = waste.wasted_bytes / waste.total_stored if waste.total_stored else 0.0
            results.append(_simple(definition, limit, fraction, findings=_wasting(waste, top)))
        elif name == "max-junk-bytes":
            junk = tuple(Finding(j.path, j.layer, j.bytes, j.description) for j in waste.junk[:top])
            results.append(_simple(definition, limit, waste.junk_bytes, findings=junk))
        elif name == "dive-lowest-efficiency":
            results.append(_simple(definition, limit, waste.dive_efficiency))
        elif name == "dive-highest-wasted-bytes":
            results.append(_simple(definition, limit, waste.dive_wasted_bytes, findings=_wasting(waste, top)))
        elif name == "dive-highest-user-wasted-percent":
            results.append(
                _simple(
                    definition,
                    limit,
                    waste.dive_user_wasted_percent,
                    f"{waste.dive_wasted_bytes} wasted over {waste.dive_user_bytes} user bytes",
                )
            )
    return CiReport(
        image=image,
        config=config,
        results=tuple(results),
        waste=waste,
        top_wasting=waste.top_paths[:top],
        push=push,
        growth=grew,
    )


def _wasting(waste: WasteReport, top: int) -> tuple[Finding, ...]:
    return tuple(
        Finding(p.path, None, p.bytes_wasted, f"stored {p.times_stored}x, layers {', '.join(map(str, p.layers))}")
        for p in waste.top_paths[:top]
    )


def _layers_over(sizes: list[int], limit: int | None, instructions: dict[int, str]) -> tuple[Finding, ...]:
    """Layers above ``limit`` (all layers when None), largest first."""
    picked = [i for i, size in enumerate(sizes) if limit is None or size > limit]
    picked.sort(key=lambda i: (-sizes[i], i))
    return tuple(Finding("", i, sizes[i], instructions.get(i, "")) for i in picked)


def _growth_results(definition: RuleDef, limits: list[Limit], grew: Growth | None) -> list[RuleResult]:
    out: list[RuleResult] = []
    for limit in limits:
        name = f"max-growth {limit.text}"
        if grew is None:
            out.append(_skipped(definition, [limit], name, "no --baseline given"))
            continue
        findings = tuple(Finding("", s.layer, s.delta, s.instruction) for s in grew.steps) + tuple(
            Finding(p.path, p.layer, p.delta, "new" if p.before is None else "grew") for p in grew.paths
        )
        measured: float = grew.fraction if limit.percent else grew.delta
        assert isinstance(limit.value, int | float)
        status = _verdict(measured, limit.value, AT_MOST)
        out.append(
            RuleResult(
                definition.name,
                name,
                status,
                RATIO if limit.percent else BYTES,
                AT_MOST,
                measured,
                limit.value,
                limit.text,
                limit.origin,
                f"{grew.before} -> {grew.after} bytes since {grew.baseline}",
                findings if status == FAIL else (),
            )
        )
    return out


def _forbidden(definition: RuleDef, limits: list[Limit], stack: Stack) -> RuleResult:
    """Paths of the final tree matching a forbidden glob; a directory match hides what is below it."""
    globs = [str(limit.value) for limit in limits]
    compiled = [(g, compile_glob(g)) for g in globs]
    found: list[Finding] = []
    reported: set[str] = set()
    for path in sorted(stack.final):
        if _below(path, reported):
            continue  # already reported through a directory above it
        for glob, pattern in compiled:
            if pattern.match(path):
                final = stack.final[path]
                reported.add(path)
                found.append(Finding(path, final.layer, final.entry.size, glob))
                break
    text = ", ".join(globs)
    origin = limits[-1].origin if len({lim.origin for lim in limits}) == 1 else "several places"
    status = FAIL if found else PASS
    return RuleResult(
        definition.name,
        definition.name,
        status,
        PATHS,
        NONE_ALLOWED,
        len(found),
        0,
        text,
        origin,
        "",
        tuple(found[:MAX_FINDINGS]),
    )


def _below(path: str, roots: set[str]) -> bool:
    parent = posixpath.dirname(path)
    while parent not in ("/", ""):
        if parent in roots:
            return True
        parent = posixpath.dirname(parent)
    return False
