"""The audit for people (a rich table) and for scripts (``audit --json``).

Neither form shows a secret: evidence was redacted by the analysis, step
instructions that hold one were replaced, and the image summary here leaves
out ENV and LABEL values on purpose (the inspect report shows them; the audit
report is meant to be attached to tickets and CI logs).  The JSON shape is
published as ``imgscope/schema/audit.schema.json``.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from imgscope.analysis.audit import (
    CRITICAL,
    HIGH,
    INFO,
    LOW,
    MEDIUM,
    RULES,
    SEVERITIES,
    AuditReport,
    Finding,
    IgnoreEntry,
)
from imgscope.render.console import printable
from imgscope.units import format_size

SCHEMA_VERSION = 1

#: Below this many columns findings are a list (one block each), not a table of wrapped cells.
LIST_BELOW = 110

SEVERITY_STYLE = {CRITICAL: "bold white on red", HIGH: "bold red", MEDIUM: "yellow", LOW: "cyan", INFO: "dim"}
STEP_WIDTH = 48


def _layer_text(f: Finding) -> str:
    if f.layer is None and f.step is None:
        return "-"
    parts = []
    if f.layer is not None:
        parts.append(f"layer {f.layer}")
    elif f.step is not None:
        parts.append(f"step {f.step}")
    if f.instruction:
        text = " ".join(f.instruction.split())
        parts.append(text if len(text) <= STEP_WIDTH else text[: STEP_WIDTH - 1] + "…")
    return ": ".join(parts)


def _status_text(f: Finding) -> Text:
    text = Text(f.status, style="green" if f.status == "visible" else "magenta" if "only" in f.status else "")
    if f.hidden_by is not None:
        text.append(f" (hidden by layer {f.hidden_by})", style="dim")
    if f.inherited:
        text.append(" inherited", style="dim italic")
    return text


def _where(f: Finding) -> str:
    return f.path or f.subject or "(config)"


def _finding_cell(f: Finding, iec: bool) -> Text:
    """The message, then the rule id (what an ignore file names) and the redacted evidence, dimmed."""
    text = Text(printable(f.message))
    below = [f.rule]
    if f.bytes:
        below.append(format_size(f.bytes, iec))
    if f.evidence:
        below.append(printable(f.evidence))
    text.append("\n" + "  ".join(below), style="dim")
    return text


def findings_table(findings: tuple[Finding, ...], iec: bool = False, title: str | None = None) -> Table:
    """One row per finding: severity, what and where (rule id and redacted evidence below), layer and step, status."""
    table = Table(title=title, title_justify="left", show_lines=True, expand=False)
    table.add_column("Severity", no_wrap=True)
    table.add_column("Finding", overflow="fold", ratio=3)
    table.add_column("Layer / step", overflow="fold", ratio=2)
    table.add_column("Status", ratio=1)
    for f in findings:
        severity = Text(f.severity, style=SEVERITY_STYLE[f.severity])
        if f.inherited:
            severity.append(f"\n(was {f.rule_severity})", style="dim")
        table.add_row(severity, _finding_cell(f, iec), escape(printable(_layer_text(f))), _status_text(f))
    return table


class Findings:
    """The findings as a table at 110 columns and more, as a list below (where a table wraps every cell).

    Why: at 80 columns (a CI log) four columns leave each finding's message a
    dozen cells and every finding takes five lines; a block per finding keeps
    the severity, rule and where on one line and the message whole.
    """

    def __init__(self, findings: tuple[Finding, ...], iec: bool = False, title: str | None = None) -> None:
        self.findings = findings
        self.iec = iec
        self.title = title

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if options.max_width >= LIST_BELOW:
            yield findings_table(self.findings, self.iec, self.title)
            return
        if self.title:
            yield Text(self.title, style="italic")
        for f in self.findings:
            yield findings_block(f, self.iec)


def findings_block(f: Finding, iec: bool = False) -> Text:
    """One finding as a few short lines: severity and rule, the message, where, the evidence."""
    text = Text()
    text.append(f.severity.upper(), style=SEVERITY_STYLE[f.severity])
    if f.inherited:
        text.append(f" (was {f.rule_severity})", style="dim")
    text.append(f"  {f.rule}", style="bold")
    if f.bytes:
        text.append(f"  {format_size(f.bytes, iec)}")
    text.append("\n  " + printable(f.message))
    text.append("\n  ")
    where = _layer_text(f)
    if where != "-":
        text.append(printable(where) + " · ", style="dim")
    text.append_text(_status_text(f))
    if f.evidence:
        text.append("\n  " + printable(f.evidence), style="dim")
    return text


def _counts_line(report: AuditReport) -> Text:
    counts = report.counts()
    text = Text()
    shown = [s for s in reversed(SEVERITIES) if counts[s]]
    if not shown:
        text.append("no findings")
    for i, severity in enumerate(shown):
        if i:
            text.append(", ")
        text.append(f"{counts[severity]} {severity}", style=SEVERITY_STYLE[severity])
    if report.ignored:
        text.append(f"; {len(report.ignored)} ignored")
    return text


def _ignore_line(entry: IgnoreEntry) -> str:
    reason = entry.reason or "(no reason given)"
    return f"line {entry.line}: {entry.text} — {reason}"


def render(report: AuditReport, iec: bool = False) -> RenderableType:
    """The whole console report."""
    image = report.stack.image
    parts: list[RenderableType] = []
    head = Text()
    head.append("Audit of ", style="bold")
    head.append(printable(image.reference), style="bold")
    head.append(f"  {image.image_id[:19]}  {len(image.scans)} layers, {format_size(image.size, iec)}")
    parts.append(head)
    if report.base is not None:
        base = report.base
        state = "its layers are this image's first layers" if base.prefix else "not a ChainID prefix: ignored"
        parts.append(Text(f"Base {printable(base.reference)}: {base.layers} layers, {state}", style="dim"))
    if report.findings:
        parts.append(Findings(report.findings, iec))
    if report.ignored:
        table = Table(title=f"Ignored by {report.ignore_file or 'the ignore file'}", title_justify="left")
        table.add_column("Severity", no_wrap=True)
        table.add_column("Rule", no_wrap=True)
        table.add_column("Where", overflow="fold")
        table.add_column("Reason", overflow="fold")
        for item in report.ignored:
            f = item.finding
            table.add_row(
                Text(f.severity, style=SEVERITY_STYLE[f.severity]),
                f.rule,
                escape(printable(_where(f))),
                escape(printable(f"{item.entry.reason or '(no reason given)'} (line {item.entry.line})")),
            )
        parts.append(table)
    for entry in report.unused_ignores:
        parts.append(Text(printable(f"ignore entry hid nothing: {_ignore_line(entry)}"), style="dim"))
    stats = report.stats
    scanned = (
        f"Scanned {stats.files} files ({format_size(stats.bytes_scanned, iec)}) in every layer; "
        f"{stats.binary_files} binary (searched for private keys only, outside library trees)"
    )
    if stats.truncated_files:
        scanned += f"; {stats.truncated_files} read only up to --max-scan-bytes {format_size(report.max_scan_bytes)}"
    parts.append(Text(scanned, style="dim"))
    for warning in report.warnings:
        parts.append(Text(printable(f"warning: {warning}"), style="yellow"))
    summary = Text("Findings: ", style="bold")
    summary.append_text(_counts_line(report))
    parts.append(summary)
    failing = report.failing
    if failing:
        verdict = Text(f"FAIL: {len(failing)} finding{'s' if len(failing) != 1 else ''} at or above {report.fail_on}")
        verdict.stylize("bold red")
    else:
        verdict = Text(f"PASS: no finding at or above {report.fail_on}", style="bold green")
    parts.append(verdict)
    return Group(*parts)


# ---------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------


def finding_dict(f: Finding) -> dict[str, Any]:
    """One finding, every field present."""
    return {
        "rule": f.rule,
        "severity": f.severity,
        "rule_severity": f.rule_severity,
        "title": f.title,
        "message": f.message,
        "where": f.where,
        "path": f.path,
        "subject": f.subject,
        "layer": f.layer,
        "layers": list(f.layers),
        "step": f.step,
        "instruction": f.instruction,
        "visible": f.visible,
        "status": f.status,
        "hidden_by": f.hidden_by,
        "inherited": f.inherited,
        "evidence": f.evidence,
        "line": f.line,
        "count": f.count,
        "files": f.files,
        "bytes": f.bytes,
    }


def _entry_dict(entry: IgnoreEntry) -> dict[str, Any]:
    return {"line": entry.line, "entry": entry.text, "rule": entry.rule, "glob": entry.glob, "reason": entry.reason}


def rules_list() -> list[dict[str, str]]:
    """The rule table, as docs and SARIF list it."""
    return [
        {"id": r.id, "severity": r.severity, "category": r.category, "title": r.title, "description": r.description}
        for r in RULES.values()
    ]


def to_dict(report: AuditReport) -> dict[str, Any]:
    """The whole ``audit --json`` document."""
    image = report.stack.image
    counts = report.counts()
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "imgscope",
        "command": "audit",
        "image": {
            "reference": image.reference,
            "source": image.source,
            "id": image.image_id,
            "manifest_digest": image.manifest_digest,
            "tags": list(image.tags),
            "platform": image.config.platform,
            "layer_count": len(image.scans),
            "size": image.size,
        },
        "base": (
            None
            if report.base is None
            else {"reference": report.base.reference, "layer_count": report.base.layers, "prefix": report.base.prefix}
        ),
        "fail_on": report.fail_on,
        "failed": bool(report.failing),
        "exit_code": report.exit_code,
        "summary": {
            **counts,
            "total": len(report.findings),
            "failing": len(report.failing),
            "ignored": len(report.ignored),
        },
        "findings": [finding_dict(f) for f in report.findings],
        "ignored": [{**finding_dict(i.finding), "ignored_by": _entry_dict(i.entry)} for i in report.ignored],
        "ignore_file": report.ignore_file,
        "unused_ignores": [_entry_dict(e) for e in report.unused_ignores],
        "scan": {
            "max_scan_bytes": report.max_scan_bytes,
            "files": report.stats.files,
            "bytes_scanned": report.stats.bytes_scanned,
            "binary_files": report.stats.binary_files,
            "truncated_files": report.stats.truncated_files,
        },
        "rules": rules_list(),
        "warnings": list(report.warnings),
    }
