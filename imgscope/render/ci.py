"""``imgscope ci`` for people (a rich renderable) and for machines (the ``--json`` dict).

One line per rule, PASS / FAIL / SKIP with the measured value and the limit,
because that is what a CI log reader scans for; then, only when something
failed, what to look at: the steps and paths that grew most since the
baseline and the paths that waste most.  The text helpers here
(:func:`value_text`, :func:`limit_text`, :func:`finding_text`) are shared by
the JUnit and markdown renderers so all three say the same thing.

The JSON shape is published as ``imgscope/schema/ci.schema.json``; bump
``SCHEMA_VERSION`` on any incompatible change.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.text import Text

from imgscope.analysis.rules import (
    AT_LEAST,
    BYTES,
    FAIL,
    GZIP_ESTIMATE,
    MANIFEST,
    NUMBER,
    PASS,
    PATHS,
    RATIO,
    SKIP,
    CiReport,
    Finding,
    Growth,
    RuleResult,
)
from imgscope.units import format_size

SCHEMA_VERSION = 1

#: Rules about wasted bytes: when one fails, "what to look at" lists the wasting paths and advice.
WASTE_RULES = frozenset(
    (
        "min-efficiency",
        "max-wasted-bytes",
        "max-wasted-percent",
        "max-junk-bytes",
        "dive-lowest-efficiency",
        "dive-highest-wasted-bytes",
        "dive-highest-user-wasted-percent",
    )
)
STATUS_WORD = {PASS: "PASS", FAIL: "FAIL", SKIP: "SKIP"}
STATUS_STYLE = {PASS: "green", FAIL: "bold red", SKIP: "dim"}
#: Rules whose findings are listed under their own line (the others point at the sections below).
INLINE_FINDINGS = frozenset({"forbid-path", "max-layer-size", "max-compressed-size", "max-junk-bytes"})
#: How long an instruction may be on the console.
INSTRUCTION_WIDTH = 72
#: How many findings a rule lists under its line on the console (JSON and JUnit keep them all).
INLINE_LIMIT = 10
PUSH_METHOD_TEXT = {MANIFEST: "manifest sizes", GZIP_ESTIMATE: "gzip -6 estimate"}


def value_text(value: float | None, unit: str, iec: bool = False, signed: bool = False) -> str:
    """A measured value or a limit for people: ``12.3 MB``, ``98.44%``, ``3``, ``2 paths``."""
    if value is None:
        return "-"
    if unit == BYTES:
        text = format_size(value, iec)
        return ("+" + text) if signed and value > 0 else text
    if unit == RATIO:
        if math.isinf(value):
            return "+inf%" if value > 0 else "-inf%"
        text = f"{value * 100:.2f}%"
        return ("+" + text) if signed and value > 0 else text
    if unit == PATHS:
        count = int(value)
        return f"{count} path" + ("" if count == 1 else "s")
    if unit == NUMBER:
        return str(int(value))
    return str(value)


def limit_text(result: RuleResult, iec: bool = False) -> str:
    """``<= 300.0 MB``, ``>= 90.00%``, ``none of **/.env``, or why the rule was skipped."""
    if result.status == SKIP:
        return result.limit_text if result.limit_text not in ("", "off") else "off"
    if result.rule == "forbid-path":
        return f"none of {result.limit_text}"
    relation = ">=" if result.direction == AT_LEAST else "<="
    return f"{relation} {value_text(result.limit, result.unit, iec)}"


def measured_text(result: RuleResult, iec: bool = False) -> str:
    """The measured value; growth is signed; a skipped rule shows a dash."""
    if result.status == SKIP:
        return "-"
    return value_text(result.measured, result.unit, iec, signed=result.rule == "max-growth")


def finding_text(result: RuleResult, finding: Finding, iec: bool = False) -> str:
    """One finding as a line: a path with its layer, or a layer with its instruction."""
    size = value_text(finding.bytes, BYTES, iec) if finding.bytes is not None else ""
    if result.rule == "forbid-path":
        return f"{finding.path} (layer {finding.layer}, matches {finding.note})"
    if finding.path:
        where = f", layer {finding.layer}" if finding.layer is not None else ""
        note = f", {finding.note}" if finding.note else ""
        return f"{finding.path}: {size}{where}{note}"
    instruction = f" {short(finding.note)}" if finding.note else ""
    return f"layer {finding.layer}{instruction}: {size}"


def short(text: str, width: int = INSTRUCTION_WIDTH) -> str:
    """An instruction on one line, cut to ``width`` characters for the console."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def reason_text(result: RuleResult, iec: bool = False) -> str:
    """The short note after a result (skip reason, how a size was found, which layer is largest)."""
    if result.status == SKIP:
        return "" if result.unset else result.reason
    if result.rule == "max-growth":
        return ""
    return result.reason


def summary_line(report: CiReport) -> str:
    """``FAIL: 1 failed, 2 passed, 10 off``.

    Rules nobody set are "off", not "skipped": a skip is a rule that was asked for and
    could not run (max-growth without a baseline), which a reader should notice.
    """
    word = "PASS" if report.passed else "FAIL"
    off = sum(1 for r in report.results if r.unset)
    skipped = report.count(SKIP) - off
    counts = f"{report.count(FAIL)} failed, {report.count(PASS)} passed"
    if skipped:
        counts += f", {skipped} skipped"
    if off:
        counts += f", {off} off"
    return f"{word}: {counts} (rules from {report.config.source})"


def growth_headline(growth: Growth, iec: bool = False) -> str:
    """``+1.2 MB (+4.20%) since base.json: 10.0 MB -> 11.2 MB``."""
    delta = value_text(growth.delta, BYTES, iec, signed=True)
    pct = value_text(growth.fraction, RATIO, iec, signed=True)
    before, after = format_size(growth.before, iec), format_size(growth.after, iec)
    return f"{delta} ({pct}) since {growth.baseline}: {before} -> {after}"


def render(report: CiReport, iec: bool = False) -> RenderableType:
    """The console report: header, one line per rule, what to look at on failure, the verdict."""
    parts: list[RenderableType] = []
    image = report.image
    title = Text.assemble(("imgscope ci ", "bold"), image.reference)
    if image.tags:
        title.append(f"  ({', '.join(image.tags)})", style="dim")
    parts.append(title)
    parts.append(Text(f"rules from {report.config.source}", style="dim"))
    for note in report.config.notes:
        parts.append(Text(f"note: {note}", style="yellow"))
    for warning in image.warnings:  # a DiffID that does not match the config, a skipped artifact...
        parts.append(Text(f"warning: {warning}", style="yellow"))
    ran = [r for r in report.results if not r.unset]
    rows = [(result, measured_text(result, iec), limit_text(result, iec), reason_text(result, iec)) for result in ran]
    name_width = max((len(r.name) for r in ran), default=0)
    measured_width = max((len(m) for _, m, _, _ in rows), default=0)
    limit_width = max((len(lim) for _, _, lim, _ in rows), default=0)
    for result, measured, limit, reason in rows:
        line = Text(STATUS_WORD[result.status], style=STATUS_STYLE[result.status])
        line.append("  " + result.name.ljust(name_width), style="bold" if result.status == FAIL else "")
        line.append("  " + measured.rjust(measured_width))
        line.append("  " + (limit.ljust(limit_width) if reason else limit))
        if reason:
            line.append("  " + reason, style="dim")
        parts.append(line)
        if result.status == FAIL and result.rule in INLINE_FINDINGS:
            shown = result.findings[:INLINE_LIMIT]
            for finding in shown:
                parts.append(Text("        " + finding_text(result, finding, iec), style="red"))
            if len(result.findings) > len(shown):
                parts.append(Text(f"        ... and {len(result.findings) - len(shown)} more", style="red"))
    off = [r.name for r in report.results if r.unset]
    if off:
        parts.append(Text(f"off: {', '.join(off)}", style="dim"))
    if not report.passed:
        parts.extend(_look_at(report, iec))
    elif report.growth is not None:
        parts.append(Text("Growth " + growth_headline(report.growth, iec)))
    style = "bold green" if report.passed else "bold red"
    parts.append(Text(summary_line(report), style=style))
    return Group(*parts)


def _look_at(report: CiReport, iec: bool) -> list[RenderableType]:
    out: list[RenderableType] = [Text("\nWhat to look at", style="bold")]
    growth = report.growth
    if growth is not None:
        out.append(Text("Growth " + growth_headline(growth, iec)))
        if growth.steps:
            out.append(Text("  steps that grew most:"))
            for step in growth.steps:
                where = f"layer {step.layer}" if step.layer is not None else "removed step"
                tag = " (new step)" if step.baseline_layer is None else ""
                out.append(
                    Text(
                        f"    {value_text(step.delta, BYTES, iec, signed=True):>10}  {where} "
                        f"{short(step.instruction)}{tag}"
                    )
                )
        if growth.paths:
            out.append(
                Text(
                    f"  paths that grew most ({growth.grown_paths} grew, {growth.new_paths} new, "
                    f"{growth.removed_paths} gone):"
                )
            )
            for path in growth.paths:
                tag = "new" if path.before is None else f"was {format_size(path.before, iec)}"
                layer = f", layer {path.layer}" if path.layer is not None else ""
                out.append(
                    Text(f"    {value_text(path.delta, BYTES, iec, signed=True):>10}  {path.path} ({tag}{layer})")
                )
    # Waste advice only when a waste rule failed: a growth failure is about growth.
    waste_failed = any(r.status == FAIL and r.rule in WASTE_RULES for r in report.results)
    if report.top_wasting and waste_failed:
        waste = report.waste
        out.append(
            Text(
                f"Top wasting paths ({format_size(waste.wasted_bytes, iec)} wasted of "
                f"{format_size(waste.total_stored, iec)} stored, {waste.wasting_paths} paths):"
            )
        )
        for item in report.top_wasting:
            layers = ", ".join(str(n) for n in item.layers)
            out.append(
                Text(
                    f"    {format_size(item.bytes_wasted, iec):>10}  {item.path} "
                    f"(stored {item.times_stored}x, layers {layers})"
                )
            )
    for advice in report.waste.advice[:3] if waste_failed else ():
        out.append(Text(f"  advice: {escape(advice.text)}", style="cyan"))
    return out


# ---------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------


def _finding_dict(finding: Finding) -> dict[str, Any]:
    return {"path": finding.path or None, "layer": finding.layer, "bytes": finding.bytes, "note": finding.note}


def result_dict(result: RuleResult) -> dict[str, Any]:
    """One rule's verdict."""
    measured: float | int | None = result.measured
    if isinstance(measured, float) and math.isinf(measured):
        measured = None
    return {
        "rule": result.rule,
        "name": result.name,
        "status": result.status,
        "unit": result.unit,
        "direction": result.direction,
        "measured": measured,
        "limit": result.limit,
        "limit_text": result.limit_text,
        "origin": result.origin,
        "reason": result.reason,
        "findings": [_finding_dict(f) for f in result.findings],
    }


def growth_dict(growth: Growth) -> dict[str, Any]:
    """How the image moved since the baseline."""
    return {
        "baseline": growth.baseline,
        "baseline_kind": growth.baseline_kind,
        "before": growth.before,
        "after": growth.after,
        "delta": growth.delta,
        "fraction": None if math.isinf(growth.fraction) else growth.fraction,
        "before_compressed": growth.before_compressed,
        "before_layers": growth.before_layers,
        "after_layers": growth.after_layers,
        "grown_paths": growth.grown_paths,
        "new_paths": growth.new_paths,
        "removed_paths": growth.removed_paths,
        "steps": [
            {
                "instruction": s.instruction,
                "layer": s.layer,
                "baseline_layer": s.baseline_layer,
                "before": s.before,
                "after": s.after,
                "delta": s.delta,
            }
            for s in growth.steps
        ],
        "paths": [
            {"path": p.path, "before": p.before, "after": p.after, "delta": p.delta, "layer": p.layer}
            for p in growth.paths
        ],
    }


def report_dict(report: CiReport) -> dict[str, Any]:
    """The whole ``ci --json`` document."""
    image = report.image
    waste = report.waste
    push = report.push
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "imgscope",
        "command": "ci",
        "passed": report.passed,
        "counts": {"pass": report.count(PASS), "fail": report.count(FAIL), "skip": report.count(SKIP)},
        "image": {
            "reference": image.reference,
            "id": image.image_id,
            "diff_ids_verified": image.diff_ids_verified,
            "tags": list(image.tags),
            "size": image.size,
            "layer_count": len(image.scans),
            "layer_sizes": [scan.size for scan in image.scans],
            "warnings": list(image.warnings),
        },
        "config": {"source": report.config.source, "notes": list(report.config.notes)},
        "rules": [result_dict(r) for r in report.results],
        "push": None
        if push is None
        else {
            "total": push.total,
            "method": push.method,
            "layers": list(push.layers),
            "estimated_layers": list(push.estimated),
        },
        "growth": None if report.growth is None else growth_dict(report.growth),
        "waste": {
            "total_stored": waste.total_stored,
            "wasted_bytes": waste.wasted_bytes,
            "efficiency": waste.efficiency,
            "junk_bytes": waste.junk_bytes,
            "dive_efficiency": waste.dive_efficiency,
            "dive_wasted_bytes": waste.dive_wasted_bytes,
            "dive_user_bytes": waste.dive_user_bytes,
            "dive_user_wasted_percent": waste.dive_user_wasted_percent,
            "top_paths": [
                {
                    "path": p.path,
                    "times_stored": p.times_stored,
                    "bytes_wasted": p.bytes_wasted,
                    "layers": list(p.layers),
                }
                for p in report.top_wasting
            ],
            "advice": [a.text for a in waste.advice],
        },
    }
