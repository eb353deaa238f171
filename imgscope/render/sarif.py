"""SARIF 2.1.0 for code-scanning services: the audit's findings as ``results`` of one ``run``.

What services require and this file provides: ``version`` and ``$schema``;
``runs[].tool.driver`` with ``name`` and the full ``rules`` table (id, short
and full description, default level, ``security-severity`` so services can
rank them); ``results[]`` with ``ruleId``, ``level``, ``message.text`` and
``locations``.  An image has no source tree, so a file finding's physical
location is the path inside the image (made relative, as SARIF URIs are) and
the layer is a logical location next to it; config and history findings are
located at the image itself.  Ignored findings are kept with a
``suppressions`` entry whose justification is the ignore file's reason, which
is how SARIF says "reviewed and accepted".
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from imgscope import __version__
from imgscope.analysis.audit import (
    CRITICAL,
    HIGH,
    IN_FILE,
    INFO,
    LOW,
    MEDIUM,
    RULES,
    AuditReport,
    Finding,
    IgnoreEntry,
)
from imgscope.render.console import printable

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"

#: SARIF has three levels; imgscope's five severities map onto them.
LEVELS = {CRITICAL: "error", HIGH: "error", MEDIUM: "warning", LOW: "note", INFO: "note"}
#: The CVSS-like score GitHub code scanning ranks security results by (critical >= 9, high >= 7...).
SECURITY_SEVERITY = {CRITICAL: "9.5", HIGH: "8.0", MEDIUM: "5.5", LOW: "3.0", INFO: "0.0"}


_SURROGATES = re.compile("[\ud800-\udc7f\udd00-\udfff]")


def _rule(rule_id: str) -> dict[str, Any]:
    rule = RULES[rule_id]
    return {
        "id": rule.id,
        "name": "".join(word.capitalize() for word in rule.id.split("-")),
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": rule.description},
        "help": {"text": f"{rule.title}: {rule.description} Severity: {rule.severity}. See docs/audit.md."},
        "defaultConfiguration": {"level": LEVELS[rule.severity]},
        "properties": {
            "security-severity": SECURITY_SEVERITY[rule.severity],
            "severity": rule.severity,
            "tags": ["security", rule.category],
        },
    }


def _image_uri(reference: str) -> str:
    """The image as a relative URI for config and history findings.

    SARIF consumers resolve URIs against the repository, so an archive under
    the working directory is named relative to it, one elsewhere by its file
    name; a daemon name is quoted (``app:1`` would read as a URI scheme).
    """
    text = reference
    for transport in ("docker://", "podman://", "docker-archive:", "oci-archive:", "oci:"):
        if text.startswith(transport):
            text = text[len(transport) :]
            break
    path = Path(text)
    if path.is_absolute():
        try:
            text = path.resolve().relative_to(Path.cwd().resolve()).as_posix()
        except ValueError:
            text = path.name
    return quote(text.lstrip("/"), safe="/._-~")


def _location(f: Finding, reference: str) -> dict[str, Any]:
    uri = f.path.lstrip("/") if f.where == IN_FILE and f.path else _image_uri(reference)
    if f.where == IN_FILE:
        # A name that was not UTF-8 is percent-encoded as its bytes; any other lone surrogate
        # (no UTF-8 text holds one) as U+FFFD.
        uri = quote(_SURROGATES.sub("\ufffd", uri), safe="/._-~", errors="surrogateescape")
    physical: dict[str, Any] = {"artifactLocation": {"uri": uri}}
    if f.line is not None:
        physical["region"] = {"startLine": f.line}
    location: dict[str, Any] = {"physicalLocation": physical}
    logical = []
    for layer in f.layers:
        logical.append({"name": f"layer {layer}", "fullyQualifiedName": f"layer/{layer}", "kind": "module"})
    if f.where != IN_FILE:
        logical.append({"name": f.subject or f.where, "fullyQualifiedName": f"{f.where}/{f.subject or ''}"})
    if logical:
        location["logicalLocations"] = logical
    where = f"layer {f.layer}" if f.layer is not None else f.where
    if f.instruction:
        where += f" ({f.instruction})"
    location["message"] = {"text": printable(where)}
    return location


def _message(f: Finding) -> str:
    text = f.message
    if f.evidence and f.evidence not in text:
        text += f": {f.evidence}"
    if f.where == IN_FILE:
        text += f" [{f.status}"
        if f.layer is not None and f.status == "visible":
            text += f", added in layer {f.layer}"
        text += "]"
    if f.inherited:
        text += f" (inherited from the base image; {f.rule_severity} lowered to {f.severity})"
    return printable(text)


def _result(f: Finding, reference: str, index: dict[str, int], ignored_by: IgnoreEntry | None) -> dict[str, Any]:
    fingerprint = hashlib.sha256(
        f"{f.rule}\0{f.where}\0{f.path or f.subject or ''}".encode("utf-8", "surrogatepass")
    ).hexdigest()
    result: dict[str, Any] = {
        "ruleId": f.rule,
        "ruleIndex": index[f.rule],
        "level": LEVELS[f.severity],
        "message": {"text": _message(f)},
        "locations": [_location(f, reference)],
        "partialFingerprints": {"imgscopeFinding/v1": fingerprint},
        "properties": {
            "severity": f.severity,
            "ruleSeverity": f.rule_severity,
            "where": f.where,
            "layer": f.layer,
            "layers": list(f.layers),
            "step": f.step,
            "visible": f.visible,
            "status": f.status,
            "inherited": f.inherited,
        },
    }
    if ignored_by is not None:
        result["suppressions"] = [
            {"kind": "external", "justification": ignored_by.reason or f"ignore file line {ignored_by.line}"}
        ]
    return result


def to_sarif(report: AuditReport) -> dict[str, Any]:
    """The SARIF 2.1.0 log of one audit."""
    image = report.stack.image
    index = {rule_id: i for i, rule_id in enumerate(RULES)}
    results = [_result(f, image.reference, index, None) for f in report.findings]
    results += [_result(i.finding, image.reference, index, i.entry) for i in report.ignored]
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "imgscope",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "rules": [_rule(rule_id) for rule_id in RULES],
                    }
                },
                "automationDetails": {"id": f"imgscope-audit/{image.reference}"},
                "results": results,
                "properties": {
                    "image": image.reference,
                    "imageId": image.image_id,
                    "failOn": report.fail_on,
                    "failed": bool(report.failing),
                },
            }
        ],
    }
