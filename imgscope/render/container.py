"""The container report for people (rich) and for machines (JSON).

Only turns :class:`~imgscope.analysis.container.ContainerReport` and
:class:`~imgscope.analysis.container.ContentDiff` into output; no analysis
happens here.  The JSON shape is published in
``imgscope/schema/container.schema.json``; bump :data:`SCHEMA_VERSION` on any
change that could break a reader.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from imgscope.analysis.container import (
    CONTAINER_KINDS,
    PARENT,
    ContainerReport,
    ContentDiff,
    PathChange,
)
from imgscope.model import DIR, REMOVED, SYMLINK, Entry
from imgscope.render.console import printable
from imgscope.render.json_report import entry_dict
from imgscope.units import format_size

SCHEMA_VERSION = 1

KIND_STYLE = {
    "added": "green",
    "modified": "yellow",
    "metadata": "magenta",
    "re-shipped": "cyan",
    "removed": "red",
    PARENT: "dim",
}


# --------------------------------------------------------------------------- JSON


def _entry_dict(entry: Entry | None) -> dict[str, Any] | None:
    """inspect's entry fields, without the path (the change names it) and with the mtime."""
    if entry is None:
        return None
    out = entry_dict(entry)
    del out["path"]
    out["mtime"] = entry.mtime
    return out


def change_dict(change: PathChange) -> dict[str, Any]:
    """One path of the container diff; ``image`` is what the image holds there."""
    image = _entry_dict(change.image)
    if image is not None:
        image["layer"] = change.layer
    return {
        "path": change.path,
        "kind": change.kind,
        "engine_kind": change.engine_kind,
        "type": change.type,
        "size": change.size,
        "delta": change.delta,
        "current": _entry_dict(change.current),
        "image": image,
        "note": change.note or None,
    }


def content_dict(diff: ContentDiff) -> dict[str, Any]:
    """``--content``: the unified diff lines, or sizes and hashes of a binary file."""
    return {
        "path": diff.path,
        "kind": diff.kind,
        "binary": diff.binary,
        "image": None if diff.image_size is None else {"size": diff.image_size, "hash": diff.image_digest},
        "container": None
        if diff.container_size is None
        else {"size": diff.container_size, "hash": diff.container_digest},
        "diff": list(diff.lines),
        "note": diff.note or None,
    }


def report_dict(report: ContainerReport, content: ContentDiff | None = None) -> dict[str, Any]:
    """The whole container report, as ``imgscope container --json`` prints it."""
    totals: dict[str, Any] = {
        kind: {"count": report.totals.of(kind).count, "bytes": report.totals.of(kind).bytes} for kind in CONTAINER_KINDS
    }
    totals["writable_bytes"] = report.totals.writable_bytes
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "tool": "imgscope",
        "container": {
            "id": report.container_id,
            "name": report.name,
            "status": report.status,
            "endpoint": report.endpoint,
            "image": report.image_ref,
            "image_id": report.image_id,
        },
        "totals": totals,
        "changes": [change_dict(c) for c in report.changes],
        "mounts": [
            {"type": m.type, "destination": m.destination, "source": m.source or None, "rw": m.rw}
            for m in report.mounts
        ],
        "mounts_excluded": bool(report.mounts),
        "warnings": list(report.warnings),
    }
    if content is not None:
        out["content"] = content_dict(content)
    return out


# --------------------------------------------------------------------------- console


def _size(n: int, iec: bool) -> str:
    return format_size(n, iec)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def header(report: ContainerReport, iec: bool = False) -> RenderableType:
    """Who the container is, its image, and the totals in one glance."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    t = report.totals
    rows = [
        ("Container", f"{report.name} ({report.container_id[:12]})"),
        ("Status", report.status or "-"),
        ("Image", f"{report.image_ref} ({report.image_id[:19]})"),
        ("Engine", report.endpoint),
        ("Added", f"{_count(t.of('added').count, 'path')}, {_size(t.of('added').bytes, iec)}"),
        ("Modified", f"{_count(t.of('modified').count, 'path')}, {_size(t.of('modified').bytes, iec)}"),
        (
            "Copied up",
            f"{t.of('metadata').count} metadata only ({_size(t.of('metadata').bytes, iec)}), "
            f"{t.of('re-shipped').count} unchanged ({_size(t.of('re-shipped').bytes, iec)})",
        ),
        (
            "Removed",
            f"{_count(t.of('removed').count, 'path')} ({_size(t.of('removed').bytes, iec)} of the image hidden)",
        ),
        ("Writable layer", f"{_size(t.writable_bytes, iec)} ({t.writable_bytes:,} bytes)"),
    ]
    for key, value in rows:
        grid.add_row(key, escape(value))
    return grid


def _mode(entry: Entry) -> str:
    return f"{entry.mode:04o} {entry.uid}:{entry.gid}"


def changes_table(report: ContainerReport, iec: bool = False, limit: int | None = None) -> RenderableType:
    """Every change, largest first; directories listed only because of a child come last, dimmed."""
    table = Table(title="Changes in the writable layer (largest first)", title_justify="left")
    table.add_column("Kind", no_wrap=True)
    table.add_column("Size", justify="right", no_wrap=True)
    table.add_column("Delta", justify="right", no_wrap=True)
    table.add_column("Mode uid:gid", no_wrap=True)
    table.add_column("Path", overflow="fold")
    shown = [c for c in report.changes if c.kind != PARENT]
    parents = [c for c in report.changes if c.kind == PARENT]
    rows = shown if limit is None else shown[:limit]
    for c in rows:
        entry = c.current or c.image
        mode = _mode(entry) if entry is not None else "-"
        if c.current is not None and c.image is not None and _mode(c.current) != _mode(c.image):
            mode = f"{_mode(c.image)} -> {_mode(c.current)}"
        path = c.path + ("/" if c.type == DIR else "")
        if c.current is not None and c.current.type == SYMLINK:
            path += f" -> {c.current.link}"
        if c.note:
            path += f"  ({c.note})"
        delta = "" if c.kind == REMOVED or not c.delta else f"{'+' if c.delta > 0 else ''}{_size(c.delta, iec)}"
        table.add_row(
            Text(c.kind, style=KIND_STYLE.get(c.kind, "")),
            _size(c.size, iec),
            delta,
            mode,
            Text(printable(path)),
        )
    parts: list[RenderableType] = [table]
    if limit is not None and len(shown) > limit:
        parts.append(Text(f"... {len(shown) - limit} more changes (see --json)", style="dim"))
    if not report.changes:
        parts.append(Text("no changes: the container has written nothing outside its mounts", style="dim"))
    if parents:
        names = ", ".join(c.path for c in sorted(parents, key=lambda c: c.path)[:8])
        more = f" and {len(parents) - 8} more" if len(parents) > 8 else ""
        parts.append(
            Text(
                f"{len(parents)} parent directories listed by the engine only because something below "
                f"them changed: {names}{more}",
                style="dim",
            )
        )
    return Group(*parts)


def mounts_text(report: ContainerReport) -> RenderableType | None:
    """Mounts hold data that is not in the writable layer: say so, once."""
    if not report.mounts:
        return None
    text = Text("Not included (mounts are outside the writable layer):\n", style="bold")
    for m in report.mounts:
        source = f" from {m.source}" if m.source else ""
        text.append(f"  {m.type or 'mount'} {m.destination}{source}{'' if m.rw else ' (read-only)'}\n")
    return text


def content_view(diff: ContentDiff, iec: bool = False) -> RenderableType:
    """The unified diff, coloured; a binary file gets sizes and hashes instead."""
    title = Text(f"Content of {diff.path} ({diff.kind})", style="bold")
    if diff.binary or not diff.lines:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        image = (
            "absent"
            if diff.image_size is None
            else (f"{_size(diff.image_size, iec)} ({diff.image_size:,} bytes), xxh3 {diff.image_digest}")
        )
        current = (
            "absent"
            if diff.container_size is None
            else (f"{_size(diff.container_size, iec)} ({diff.container_size:,} bytes), xxh3 {diff.container_digest}")
        )
        grid.add_row("Image", escape(image))
        grid.add_row("Container", escape(current))
        parts: list[RenderableType] = [title, grid]
        if diff.note:
            parts.append(Text(diff.note, style="dim"))
        return Group(*parts)
    text = Text()
    for line in diff.lines:
        style = ""
        if line.startswith(("+++", "---")):
            style = "bold"
        elif line.startswith("@@"):
            style = "cyan"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        text.append(line + "\n", style=style)
    return Group(title, text)
