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
from rich.segment import Segment
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

SEVERITY_STYLE = {CRITICAL: "bold white on red", HIGH: "bold red", MEDIUM: "yellow", LOW: "cyan", INFO: "dim"}
STEP_WIDTH = 48
#: Below this many columns the findings are a list rather than a table (a table cuts words there).
LIST_BELOW = 110


def _layer_text(f: Finding, full: bool = False) -> str:
    if f.layer is None and f.step is None:
        return "-"
    parts = []
    if f.layer is not None:
        parts.append(f"layer {f.layer}")
    elif f.step is not None:
        parts.append(f"step {f.step}")
    if f.instruction:
        text = " ".join(f.instruction.split())
        parts.append(text if full or len(text) <= STEP_WIDTH else text[: STEP_WIDTH - 1] + "…")
    return ": ".join(parts)


def _status_text(f: Finding, breaks: bool = False) -> Text:
    style = "green" if f.status == "visible" else "magenta" if not f.visible else ""
    words = f.status_words.replace(", still", ",\nstill") if breaks else f.status_words
    text = Text(words, style=style)
    if f.inherited:
        text.append(" (inherited from --base)", style="dim italic")
    return text


def _where(f: Finding) -> str:
    return f.path or f.subject or "(config)"


def _finding_cell(f: Finding, iec: bool) -> Text:
    """The message, then the rule id (what an ignore file names) and the redacted evidence, dimmed."""
    text = Text(printable(f.message))
    text.append("\n" + _rule_line(f, iec), style="dim")
    return text


def _rule_line(f: Finding, iec: bool) -> str:
    """The rule id, the bytes at stake and the redacted evidence: the line under a finding's message."""
    below = [f.rule]
    if f.bytes:
        below.append(format_size(f.bytes, iec))
    if f.evidence:
        below.append(printable(f.evidence))
    return "  ".join(below)


def findings_table(findings: tuple[Finding, ...], iec: bool = False, title: str | None = None) -> Table:
    """One row per finding: severity, what and where (rule id and redacted evidence below), layer and step, status."""
    table = Table(title=title, title_justify="left", show_lines=True, expand=False)
    table.add_column("Severity", no_wrap=True)
    table.add_column("Finding", overflow="fold", ratio=3)
    table.add_column("Layer / step", overflow="fold", ratio=2)
    table.add_column("Status", ratio=1)
    for f in findings:
        table.add_row(_severity_text(f), _finding_cell(f, iec), escape(printable(_layer_text(f))), _status_text(f))
    return table


def _severity_text(f: Finding) -> Text:
    severity = Text(f.severity, style=SEVERITY_STYLE[f.severity])
    if f.inherited and f.severity != f.rule_severity:
        severity.append(f"\n(was {f.rule_severity})", style="dim")
    return severity


def _finding_block(f: Finding, iec: bool) -> Text:
    """One finding of the list: the message, the rule id and evidence, the layer and step, the status."""
    body = Text(printable(f.message), style="bold")
    body.append("\n" + _rule_line(f, iec), style="dim")
    layer = _layer_text(f, full=True)
    if layer != "-":
        body.append("\n" + printable(layer))
    body.append("\n")
    # "deleted in layer 10," and "still readable ...: layer 9" on lines of their own: a wrap
    # inside either would part a layer number from its word.
    body.append_text(_status_text(f, breaks=True))
    if f.inherited and f.severity != f.rule_severity:
        body.append(f" (was {f.rule_severity})", style="dim")
    return body


class FindingsList:
    """The findings as blocks under their severity, for terminals too narrow for four columns.

    At 80 columns a four-column table cuts paths, sizes and steps mid-word;
    here the text gets the full width less the severity: the message, then
    the rule id and evidence, the layer and step, and the status, each on its
    own line(s), wrapped at spaces under the text.  Lines are not padded to
    the width, so piped output has no trailing blanks.
    """

    def __init__(self, findings: tuple[Finding, ...], iec: bool = False) -> None:
        self.findings = findings
        self.iec = iec

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        indent = max(len(s) for s in SEVERITIES) + 2
        width = max(20, options.max_width - indent)
        for i, f in enumerate(self.findings):
            if i:
                yield Segment.line()
            lines = _finding_block(f, self.iec).wrap(console, width, justify="default", overflow="fold")
            for n, line in enumerate(lines):
                head = Text(f.severity, style=SEVERITY_STYLE[f.severity]) if n == 0 else Text("")
                yield from head.render(console)
                yield Segment(" " * (indent - head.cell_len))
                line.rstrip()  # the space a wrap broke at
                yield from line.render(console)
                yield Segment.line()


class _Findings:
    """The findings as a table when the terminal is wide enough, else as a list (decided at print time)."""

    def __init__(self, findings: tuple[Finding, ...], iec: bool) -> None:
        self.findings = findings
        self.iec = iec

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if options.max_width < LIST_BELOW:
            yield FindingsList(self.findings, self.iec)
        else:
            yield findings_table(self.findings, self.iec)


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
        parts.append(_Findings(report.findings, iec))
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
    return Group(*(_Unpadded(part) if isinstance(part, Text) else part for part in parts))


class _Unpadded:
    """A text wrapped to the width without the blank a wrap leaves at the end of a line."""

    def __init__(self, text: Text) -> None:
        self.text = text

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in self.text.wrap(console, options.max_width, justify="default", overflow="fold"):
            line.rstrip()
            yield from line.render(console)
            yield Segment.line()


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
        "deleted": f.deleted,
        "paths": list(f.paths),
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
            "diff_ids_verified": image.diff_ids_verified,
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
