"""``imgscope ci --markdown FILE`` and ``$GITHUB_STEP_SUMMARY``: the CI verdict as GitHub-flavoured markdown.

Why markdown: a pull request comment or a job summary is where reviewers
look, and a table of rules with a verdict mark, the measured value and the
limit reads there at a glance.  What to look at (growth since the baseline,
top wasting paths) sits in collapsed ``<details>`` blocks so a passing
summary stays short.  Text from the image (paths, instructions) is escaped so
a file name cannot break the table.
"""

from __future__ import annotations

from imgscope.analysis.rules import FAIL, PASS, SKIP, CiReport
from imgscope.render.ci import (
    INLINE_FINDINGS,
    finding_text,
    growth_headline,
    limit_text,
    measured_text,
    reason_text,
    value_text,
)
from imgscope.render.console import printable
from imgscope.units import format_size

MARK = {PASS: "✅ pass", FAIL: "❌ FAIL", SKIP: "skip"}


def cell(text: str) -> str:
    """Text safe inside a table cell: pipes, backticks, angle brackets, controls and bidi marks neutralised."""
    out = printable(text).replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")
    out = out.replace("<", "&lt;").replace(">", "&gt;")  # printable() already escaped line breaks
    return out


def code(text: str) -> str:
    """Inline code that survives backticks in the text."""
    text = printable(text)
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text.replace('|', '&#124;')}{pad}{fence}"


def ci_summary(report: CiReport, iec: bool = False) -> str:
    """The markdown summary of one ``imgscope ci`` run."""
    verdict = "✅ passed" if report.passed else f"❌ {report.count(FAIL)} rule(s) failed"
    lines = [
        f"### imgscope ci: {verdict}",
        "",
        f"Image {code(report.image.reference)}, {format_size(report.image.size, iec)} in "
        f"{len(report.image.scans)} layers; rules from {cell(report.config.source)}.",
        "",
        "| | rule | measured | limit | note |",
        "|---|---|---:|---|---|",
    ]
    skipped = []
    for result in report.results:
        if result.status == SKIP and not reason_text(result, iec):
            skipped.append(result.name)  # off or not configured: one line below, not a row each
            continue
        lines.append(
            f"| {MARK[result.status]} | {cell(result.name)} | {cell(measured_text(result, iec))} | "
            f"{cell(limit_text(result, iec).replace('<=', '≤').replace('>=', '≥'))} | "
            f"{cell(reason_text(result, iec))} |"
        )
    lines.append("")
    if skipped:
        lines += [f"Not checked (off): {', '.join(skipped)}.", ""]
    for result in report.results:
        if result.status == FAIL and result.rule in INLINE_FINDINGS and result.findings:
            lines.append(f"**{cell(result.name)}**:")
            lines.extend(f"- {cell(finding_text(result, f, iec))}" for f in result.findings)
            lines.append("")
    growth = report.growth
    if growth is not None:
        open_attr = "" if report.passed else " open"
        lines += [f"<details{open_attr}><summary>Size {cell(growth_headline(growth, iec))}</summary>", ""]
        if growth.steps:
            lines += ["| change | layer | step |", "|---:|---|---|"]
            for step in growth.steps:
                where = str(step.layer) if step.layer is not None else "removed"
                new = " (new step)" if step.baseline_layer is None else ""
                lines.append(
                    f"| {value_text(step.delta, 'bytes', iec, signed=True)} | {where} | {cell(step.instruction)}{new} |"
                )
            lines.append("")
        if growth.paths:
            lines += ["| change | path | before | layer |", "|---:|---|---:|---|"]
            for path in growth.paths:
                before = "new" if path.before is None else format_size(path.before, iec)
                layer = "" if path.layer is None else str(path.layer)
                lines.append(
                    f"| {value_text(path.delta, 'bytes', iec, signed=True)} | {cell(path.path)} | {before} | {layer} |"
                )
            lines.append("")
        lines += ["</details>", ""]
    if report.top_wasting:
        waste = report.waste
        open_attr = "" if report.passed else " open"
        lines += [
            f"<details{open_attr}><summary>Waste: {format_size(waste.wasted_bytes, iec)} of "
            f"{format_size(waste.total_stored, iec)} stored (efficiency {waste.efficiency * 100:.2f}%)</summary>",
            "",
            "| wasted | path | stored | layers |",
            "|---:|---|---:|---|",
        ]
        for item in report.top_wasting:
            lines.append(
                f"| {format_size(item.bytes_wasted, iec)} | {cell(item.path)} | {item.times_stored}x | "
                f"{', '.join(map(str, item.layers))} |"
            )
        if waste.advice:
            lines.append("")
            # Advice carries its own code spans (the instructions); only line breaks are flattened.
            lines.extend("- " + " ".join(a.text.split()) for a in waste.advice[:5])
        lines += ["", "</details>", ""]
    return "\n".join(lines).rstrip() + "\n"
