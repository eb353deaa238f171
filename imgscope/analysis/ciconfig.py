"""Where ``imgscope ci`` gets its rules and a saved baseline: config files and ``inspect --json`` reports.

Why a module of its own: the rules themselves (:mod:`imgscope.analysis.rules`)
are pure, but users write them in files, and a mistake in a file must be
reported with the file and the line, before any image is read.  So this
module reads the files, keeps each value's line, and hands
:func:`imgscope.analysis.rules.parse_limit` an origin such as
``.imgscope.yaml line 4``.

Which file: ``--config FILE``; else ``.imgscope.yaml`` (or ``.yml``) or
``.imgscope.toml`` in the working directory; else a ``.dive-ci`` there.  Each
holds a ``rules:`` mapping (TOML: a ``[rules]`` table) of rule names to
values; a repeatable rule (``max-growth``, ``forbid-path``) takes a list.  An
optional top-level ``baseline:`` names the baseline (a path relative to the
file, or an image reference).

dive's format: a file named ``.dive-ci``, or one whose rules all use dive's
own keys (``lowestEfficiency``, ``highestWastedBytes``,
``highestUserWastedPercent``, or dive's newer kebab-case spellings), is read
as dive reads it: keys are case-insensitive, a key it leaves out takes dive's
default (0.9, disabled, 0.1), and its rules become imgscope's three
``dive-*`` rules.  YAML values are read as the text the user typed (the
scalar, not PyYAML's guess at a type), so ``off`` stays ``off`` instead of
becoming ``False``, exactly as dive's string-typed settings see it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgscope.analysis.rules import (
    DIVE_DEFAULTS,
    RULES,
    RULES_BY_NAME,
    Limit,
    RuleConfig,
    Snapshot,
    SnapshotLayer,
    merge,
    parse_limit,
    unknown_rule,
)
from imgscope.errors import ImgscopeError

YAML_NAMES = (".imgscope.yaml", ".imgscope.yml")
TOML_NAME = ".imgscope.toml"
DIVE_NAME = ".dive-ci"
#: dive's keys (lower-cased: viper and yaml lookups in dive are case-insensitive) -> imgscope's dive rules.
DIVE_KEYS: dict[str, str] = {}
for _definition in RULES:
    if _definition.dive_key:
        DIVE_KEYS[_definition.dive_key.lower()] = _definition.name
DIVE_KEYS.update(
    {
        "lowest-efficiency-threshold": "dive-lowest-efficiency",
        "highest-wasted-bytes": "dive-highest-wasted-bytes",
        "highest-user-wasted-percent": "dive-highest-user-wasted-percent",
    }
)
#: The ``inspect --json`` schema versions a baseline may have.
BASELINE_SCHEMA_VERSIONS = (1,)


@dataclass(frozen=True, slots=True)
class RawRule:
    """One key of a ``rules`` mapping as written: its values as text and its line."""

    key: str
    values: tuple[str, ...]
    line: int | None
    is_list: bool


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """A config file once read: its limits, whether it is dive's format, and the baseline it names."""

    path: Path
    label: str
    dive: bool
    limits: tuple[Limit, ...]
    baseline: str | None = None
    has_rules: bool = True


@dataclass(frozen=True, slots=True)
class CiSettings:
    """The merged rules and the baseline to compare against (None when there is none)."""

    rules: RuleConfig
    baseline: str | None


# ---------------------------------------------------------------------------
# Finding and reading a config file
# ---------------------------------------------------------------------------


def _label(path: Path, cwd: Path) -> str:
    try:
        return str(path.resolve().relative_to(cwd.resolve()))
    except ValueError:
        return str(path)


def find_config(cwd: Path) -> Path | None:
    """The config file of a working directory: ``.imgscope.yaml``/``.yml``/``.toml``, else ``.dive-ci``."""
    found = [cwd / name for name in (*YAML_NAMES, TOML_NAME) if (cwd / name).is_file()]
    if len(found) > 1:
        names = " and ".join(p.name for p in found)
        raise ImgscopeError(f"{cwd}: both {names} exist: keep one, or pick one with --config")
    if found:
        return found[0]
    dive = cwd / DIVE_NAME
    return dive if dive.is_file() else None


def _read_text(path: Path, label: str) -> str:
    try:
        return path.read_text("utf-8")
    except FileNotFoundError:
        raise ImgscopeError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise ImgscopeError(f"{label}: is a directory, not a config file") from None
    except UnicodeDecodeError as exc:
        raise ImgscopeError(f"{label}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ImgscopeError(f"{label}: cannot read ({exc.strerror})") from None


def _yaml_scalar(node: Any) -> str:
    """The text a YAML scalar was written as (a null reads as empty, as it does in dive's string settings)."""
    if node.tag == "tag:yaml.org,2002:null":
        return ""
    return str(node.value)


def _read_yaml(text: str, label: str) -> tuple[list[RawRule] | None, str | None]:
    """The ``rules`` mapping (None when absent) and the ``baseline`` of a YAML file, with lines."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ImgscopeError(f"{label}{where}: not valid YAML ({exc.problem or exc.context})") from None
    except yaml.YAMLError as exc:
        raise ImgscopeError(f"{label}: not valid YAML ({exc})") from None
    if root is None:
        return None, None
    if not isinstance(root, yaml.MappingNode):
        raise ImgscopeError(f"{label} line {root.start_mark.line + 1}: expected a mapping with a rules: key")
    rules_node = None
    baseline: str | None = None
    for key_node, value_node in root.value:
        key = str(key_node.value)
        if key == "rules":
            rules_node = value_node
        elif key == "baseline":
            if not isinstance(value_node, yaml.ScalarNode):
                raise ImgscopeError(f"{label} line {value_node.start_mark.line + 1}: baseline: expected one value")
            baseline = _yaml_scalar(value_node) or None
    if rules_node is None:
        return None, baseline
    if isinstance(rules_node, yaml.ScalarNode) and rules_node.tag == "tag:yaml.org,2002:null":
        return [], baseline
    if not isinstance(rules_node, yaml.MappingNode):
        raise ImgscopeError(
            f"{label} line {rules_node.start_mark.line + 1}: rules: expected a mapping of rule names to limits"
        )
    out: list[RawRule] = []
    for key_node, value_node in rules_node.value:
        line = key_node.start_mark.line + 1
        key = str(key_node.value)
        if isinstance(value_node, yaml.SequenceNode):
            values = []
            for item in value_node.value:
                if not isinstance(item, yaml.ScalarNode):
                    raise ImgscopeError(f"{label} line {item.start_mark.line + 1}: {key}: expected plain values")
                values.append(_yaml_scalar(item))
            out.append(RawRule(key, tuple(values), line, True))
        elif isinstance(value_node, yaml.ScalarNode):
            out.append(RawRule(key, (_yaml_scalar(value_node),), line, False))
        else:
            raise ImgscopeError(f"{label} line {line}: {key}: expected a value or a list of values")
    return out, baseline


def _toml_text(value: Any, key: str, where: str) -> str:
    if isinstance(value, bool):
        if value:
            raise ImgscopeError(f"{where}: {key}: true is not a limit (write a limit, or off)")
        return "off"
    if isinstance(value, int | float | str):
        return str(value)
    raise ImgscopeError(f"{where}: {key}: expected a string or a number")


def _toml_line(text: str, key: str) -> int | None:
    """The line that assigns ``key`` (tomllib keeps no positions), for error messages."""
    pattern = re.compile(rf"(^|[\s{{,])[\"']?{re.escape(key)}[\"']?\s*=")
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.search(line.split("#", 1)[0]):
            return number
    return None


def _read_toml(text: str, label: str) -> tuple[list[RawRule] | None, str | None]:
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = re.search(r"\s*\(at line (\d+), column \d+\)$", message)
        if found:
            message = message[: found.start()]
        where = f"{label} line {found.group(1)}" if found else label
        raise ImgscopeError(f"{where}: not valid TOML ({message})") from None
    baseline = data.get("baseline")
    if baseline is not None and not isinstance(baseline, str):
        raise ImgscopeError(f"{label} line {_toml_line(text, 'baseline')}: baseline: expected a string")
    rules = data.get("rules")
    if rules is None:
        return None, baseline
    if not isinstance(rules, dict):
        raise ImgscopeError(f"{label} line {_toml_line(text, 'rules')}: rules: expected a table of rule names")
    out: list[RawRule] = []
    for key, value in rules.items():
        line = _toml_line(text, key)
        where = f"{label} line {line}" if line else label
        if isinstance(value, list):
            out.append(RawRule(key, tuple(_toml_text(v, key, where) for v in value), line, True))
        else:
            out.append(RawRule(key, (_toml_text(value, key, where),), line, False))
    return out, baseline


def _dive_rule(key: str) -> str | None:
    return DIVE_KEYS.get(key.lower())


def _imgscope_rule(key: str) -> str | None:
    name = key.replace("_", "-")
    return name if name in RULES_BY_NAME else None


def read_config(path: Path, cwd: Path | None = None) -> ConfigFile:
    """Read one config file (YAML, TOML, or dive's ``.dive-ci``) into limits that name their line."""
    here = cwd or Path.cwd()
    label = _label(path, here)
    text = _read_text(path, label)
    if path.suffix.lower() == ".toml":
        raw, baseline = _read_toml(text, label)
    else:
        raw, baseline = _read_yaml(text, label)
    if baseline is not None and not Path(baseline).is_absolute() and (path.parent / baseline).exists():
        baseline = str(path.parent / baseline)
    keys = [r.key for r in raw or []]
    dive = path.name == DIVE_NAME or (bool(keys) and all(_dive_rule(k) is not None for k in keys))
    limits: list[Limit] = []
    seen: dict[str, int | None] = {}
    for item in raw or []:
        where = f"{label} line {item.line}" if item.line else label
        name = _dive_rule(item.key) if dive else (_imgscope_rule(item.key) or _dive_rule(item.key))
        if name is None:
            if dive:
                raise ImgscopeError(
                    f"{where}: unknown dive rule {item.key!r} (a dive config holds lowestEfficiency, "
                    "highestWastedBytes and highestUserWastedPercent)"
                )
            raise ImgscopeError(f"{where}: {unknown_rule(item.key)}")
        if name in seen:
            earlier = f" (first set on line {seen[name]})" if seen[name] else ""
            raise ImgscopeError(f"{where}: {item.key} is set twice{earlier}")
        seen[name] = item.line
        definition = RULES_BY_NAME[name]
        if item.is_list and not definition.repeatable:
            raise ImgscopeError(f"{where}: {item.key} takes one value, not a list")
        if item.is_list and not item.values:
            limits.append(parse_limit(name, "off", where))
        for value in item.values:
            limits.append(parse_limit(name, value, where))
    if dive:
        for name, value in DIVE_DEFAULTS.items():
            if name not in seen:
                limits.append(parse_limit(name, value, f"{label} (dive default)"))
    return ConfigFile(path, label, dive, tuple(limits), baseline, raw is not None)


def load_settings(
    config: str | None,
    options: Mapping[str, list[str]],
    baseline: str | None = None,
    cwd: Path | None = None,
) -> CiSettings:
    """The rules in force: the config file (``--config`` or found in ``cwd``), overridden by options.

    ``options`` maps rule names to the values given on the command line (only
    the rules whose option was used).  ``baseline`` is ``--baseline``, which
    wins over the file's.
    """
    here = cwd or Path.cwd()
    path: Path | None
    if config is not None:
        path = Path(config)
        if not path.is_absolute():
            path = here / path
        if not path.exists():
            raise ImgscopeError(f"--config {config}: no such file")
    else:
        path = find_config(here)
    option_limits = [parse_limit(name, value, f"--{name}") for name, values in options.items() for value in values]
    notes: list[str] = []
    if path is None:
        rules = merge([], option_limits, source="options", had_file=False, baseline=baseline is not None)
        return CiSettings(rules, baseline)
    read = read_config(path, here)
    if not read.has_rules:
        if config is not None:
            raise ImgscopeError(f"{read.label}: no rules: mapping (see docs/ci.md)")
        notes.append(f"{read.label} has no rules: mapping; it was ignored")
        rules = merge([], option_limits, source="options", had_file=False, notes=notes, baseline=baseline is not None)
        return CiSettings(rules, baseline)
    source = read.label + (" (dive format)" if read.dive else "")
    if option_limits:
        source += " and options"
    rules = merge(read.limits, option_limits, source=source, had_file=True, notes=notes)
    return CiSettings(rules, baseline if baseline is not None else read.baseline)


# ---------------------------------------------------------------------------
# Saved reports as baselines
# ---------------------------------------------------------------------------


def is_report_path(text: str) -> bool:
    """Does ``--baseline`` name a saved JSON report (rather than an image)?

    A regular file that ends in ``.json`` or whose first non-blank byte is
    ``{``: image archives are tars and never start with a brace.
    """
    path = Path(text)
    if not path.is_file():
        return False
    if path.suffix.lower() == ".json":
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError:
        return False
    return head.lstrip()[:1] == b"{"


def _need(cond: bool, label: str, what: str) -> None:
    if not cond:
        raise ImgscopeError(f"baseline {label}: not an `imgscope inspect --json` report ({what})")


def read_report(path: Path) -> Snapshot:
    """A snapshot from a saved ``imgscope inspect --json`` report (image size, layers, final files)."""
    label = str(path)
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ImgscopeError(f"baseline {label}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ImgscopeError(f"baseline {label}: not UTF-8 text ({exc.reason})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImgscopeError(f"baseline {label} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    return snapshot_from_report(data, label)


def snapshot_from_report(data: Any, label: str) -> Snapshot:
    """Check the shape of an ``inspect --json`` document and keep what a comparison needs."""
    _need(isinstance(data, dict), label, "not a JSON object")
    version = data.get("schema_version")
    _need(isinstance(version, int), label, "no schema_version")
    if version not in BASELINE_SCHEMA_VERSIONS:
        raise ImgscopeError(
            f"baseline {label}: schema_version {version} is not one this imgscope reads "
            f"({', '.join(map(str, BASELINE_SCHEMA_VERSIONS))}); write it again with this version"
        )
    image = data.get("image")
    _need(isinstance(image, dict), label, "no image object")
    size = image.get("size")
    _need(isinstance(size, int) and not isinstance(size, bool), label, "no image.size")
    compressed = image.get("compressed_size")
    layers_raw = data.get("layers")
    _need(isinstance(layers_raw, list), label, "no layers list")
    layers: list[SnapshotLayer] = []
    for i, item in enumerate(layers_raw):
        _need(isinstance(item, dict) and isinstance(item.get("size"), int), label, f"layers[{i}] has no size")
        index = item.get("index")
        instruction = str(item.get("instruction") or "")
        layers.append(SnapshotLayer(index if isinstance(index, int) else i, instruction, item["size"]))
    files_raw = data.get("files")
    _need(isinstance(files_raw, list), label, "no files list")
    files: dict[str, tuple[int, int | None]] = {}
    for i, item in enumerate(files_raw):
        _need(
            isinstance(item, dict) and isinstance(item.get("path"), str) and isinstance(item.get("size"), int),
            label,
            f"files[{i}] has no path or size",
        )
        if item.get("type") == "dir":
            continue
        layer = item.get("layer")
        files[item["path"]] = (item["size"], layer if isinstance(layer, int) else None)
    reference = image.get("reference")
    shown = f"{label} ({reference})" if isinstance(reference, str) and reference else label
    return Snapshot(
        label=shown,
        kind="report",
        size=size,
        compressed_size=compressed if isinstance(compressed, int) else None,
        layers=tuple(layers),
        files=files,
    )


def step_summary_path(env: Mapping[str, str] | None = None) -> Path | None:
    """``$GITHUB_STEP_SUMMARY`` when GitHub Actions sets it (the markdown is appended there)."""
    value = (env if env is not None else os.environ).get("GITHUB_STEP_SUMMARY", "")
    return Path(value) if value else None
