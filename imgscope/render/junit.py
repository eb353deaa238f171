"""``imgscope ci --junit FILE``: one JUnit testcase per rule, for CI servers that show test reports.

Why JUnit: GitLab, Jenkins, Azure Pipelines, CircleCI and GitHub test-report
actions all read it, so a failed size budget shows up next to failed unit
tests with its message.  The document keeps to the subset every reader
accepts (the shape of Jenkins' and Ant's JUnit schema): ``testsuites`` >
``testsuite`` (name, tests, failures, errors, skipped, time, timestamp) >
``testcase`` (name, classname, time) holding ``failure`` or ``skipped``.
A rule that fails is a ``failure`` with the measured value and the limit in
its message and what to look at in its body; a rule that is off is
``skipped``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from imgscope.analysis.rules import FAIL, PASS, SKIP, CiReport
from imgscope.render.ci import (
    finding_text,
    growth_headline,
    limit_text,
    measured_text,
    reason_text,
    summary_line,
)

CLASSNAME = "imgscope.ci"


def ci_junit(report: CiReport, *, elapsed: float = 0.0, iec: bool = False, now: datetime | None = None) -> str:
    """The JUnit XML document (UTF-8 text with its XML declaration)."""
    import xml.etree.ElementTree as ET

    from imgscope.render.console import printable as p  # controls are not even valid XML 1.0

    # Only the rules that ran, or were asked for and could not run (max-growth without a
    # baseline): a rule nobody configured is not a test case.
    results = [r for r in report.results if not r.unset]
    tests = len(results)
    counts = {
        "tests": str(tests),
        "failures": str(report.count(FAIL)),
        "errors": "0",
        "skipped": str(sum(1 for r in results if r.status == SKIP)),
        "time": f"{elapsed:.3f}",
    }
    root = ET.Element("testsuites", {"name": "imgscope ci", **counts})
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S")
    suite = ET.SubElement(
        root,
        "testsuite",
        {"name": p(f"imgscope ci {report.image.reference}"), **counts, "timestamp": stamp, "id": "0"},
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("image", report.image.reference),
        ("image.id", report.image.image_id),
        ("image.size", str(report.image.size)),
        ("rules.source", report.config.source),
    ):
        ET.SubElement(props, "property", {"name": name, "value": p(value)})
    for result in results:
        case = ET.SubElement(suite, "testcase", {"name": result.name, "classname": CLASSNAME, "time": "0"})
        measured, limit = measured_text(result, iec), limit_text(result, iec)
        if result.status == SKIP:
            ET.SubElement(case, "skipped", {"message": p(reason_text(result, iec) or "off")})
            continue
        if result.status == FAIL:
            failure = ET.SubElement(
                case, "failure", {"message": p(f"{result.name}: {measured}, limit {limit}"), "type": result.rule}
            )
            lines = [f"{result.name}: measured {measured}, limit {limit} (from {result.origin})"]
            if result.reason:
                lines.append(result.reason)
            lines.extend("  " + finding_text(result, f, iec) for f in result.findings)
            if result.rule == "max-growth" and report.growth is not None:
                lines.append("growth " + growth_headline(report.growth, iec))
            failure.text = "\n".join(p(line) for line in lines)
        elif result.status == PASS:
            out = ET.SubElement(case, "system-out")
            out.text = p(f"{measured}, limit {limit}")
    system_out = ET.SubElement(suite, "system-out")
    system_out.text = p(summary_line(report))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
