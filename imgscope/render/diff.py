"""``imgscope diff`` for people (rich text, markdown for pull requests) and for machines (JSON).

The three forms show the same facts from :class:`~imgscope.analysis.diff.ImageDiff`.
Text and markdown collapse long runs of identical steps and cap the file
list (``top``), because a rebuilt base can change thousands of files and a
pull-request comment has a size limit; JSON is always complete.
The JSON shape is published as ``imgscope/schema/diff.schema.json``.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from imgscope.analysis.diff import (
    CHANGED,
    SAME,
    STEP_ADDED,
    STEP_REMOVED,
    ConfigChange,
    FileDiff,
    ImageDiff,
    StepPair,
    StepSide,
)
from imgscope.model import ADDED, DIR, METADATA, MODIFIED, REMOVED, SYMLINK, Image
from imgscope.render.json_report import entry_dict
from imgscope.units import format_size

SCHEMA_VERSION = 1

STEP_MARK = {SAME: "=", CHANGED: "~", STEP_ADDED: "+", STEP_REMOVED: "-"}
STEP_STYLE = {SAME: "dim", CHANGED: "yellow", STEP_ADDED: "green", STEP_REMOVED: "red"}
FILE_MARK = {ADDED: "+", REMOVED: "-", MODIFIED: "~", METADATA: "m"}
FILE_STYLE = {ADDED: "green", REMOVED: "red", MODIFIED: "yellow", METADATA: "magenta"}
CONFIG_LABEL = {
    "platform": "Platform",
    "entrypoint": "Entrypoint",
    "cmd": "Cmd",
    "user": "User",
    "working_dir": "Workdir",
    "env": "Env",
    "exposed_ports": "Port",
    "volumes": "Volume",
    "labels": "Label",
}
# A run of at least this many identical steps is shown as one line in text and markdown.
COLLAPSE_RUN = 3
# Instructions longer than this are cut in text and markdown (JSON keeps them whole).
INSTRUCTION_CHARS = 160


def signed(n: int, iec: bool = False) -> str:
    """``+1.2 kB``, ``-300 B`` or ``0``."""
    if n == 0:
        return "0"
    return ("+" if n > 0 else "") + format_size(n, iec)


# --------------------------------------------------------------------------- JSON


def _side_dict(side: StepSide | None) -> dict[str, Any] | None:
    if side is None:
        return None
    return {
        "position": side.position,
        "layer": side.layer,
        "instruction": side.instruction,
        "created_by": side.created_by,
        "size": side.size,
        "diff_id": side.diff_id,
        "chain_id": side.chain_id,
    }


def _image_dict(image: Image) -> dict[str, Any]:
    return {
        "reference": image.reference,
        "source": image.source,
        "id": image.image_id,
        "diff_ids_verified": image.diff_ids_verified,
        "tags": list(image.tags),
        "platform": image.config.platform,
        "size": image.size,
        "layer_count": len(image.scans),
    }


def _config_value(value: str | tuple[str, ...] | None) -> str | list[str] | None:
    return list(value) if isinstance(value, tuple) else value


def file_dict(f: FileDiff) -> dict[str, Any]:
    """One differing path, with both sides' entries and every field that differs."""
    return {
        "path": f.path,
        "kind": f.kind,
        "type": f.type,
        "size_a": f.size_a,
        "size_b": f.size_b,
        "delta": f.delta,
        "layer_a": f.old_layer,
        "layer_b": f.new_layer,
        "a": entry_dict(f.old) if f.old is not None else None,
        "b": entry_dict(f.new) if f.new is not None else None,
        "changes": [{"field": c.name, "old": c.old, "new": c.new} for c in f.fields],
    }


def to_dict(d: ImageDiff) -> dict[str, Any]:
    """The whole ``diff --json`` document."""
    kinds = {kind: {"count": d.count(kind), "bytes": d.bytes_of(kind)} for kind in (ADDED, REMOVED, MODIFIED, METADATA)}
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "imgscope",
        "command": "diff",
        "identical": d.identical,
        "a": _image_dict(d.a.image),
        "b": _image_dict(d.b.image),
        "options": {"paths": list(d.paths), "ignores": list(d.ignores), "mtime": d.mtime},
        "summary": {
            "size_a": d.a.image.size,
            "size_b": d.b.image.size,
            "size_delta": d.size_delta,
            "files_size_a": d.files_size_a,
            "files_size_b": d.files_size_b,
            "files_delta": d.files_delta,
            "shared_layers": d.shared_layers,
            "shared_bytes": d.shared_bytes,
            "files": kinds,
            "config_changes": len(d.config),
        },
        "steps": [
            {
                "status": p.status,
                "same_content": p.same_content,
                "size_a": p.size_a,
                "size_b": p.size_b,
                "delta": p.delta,
                "a": _side_dict(p.a),
                "b": _side_dict(p.b),
            }
            for p in d.steps
        ],
        "files": [file_dict(f) for f in d.files],
        "config": [
            {"field": c.field, "key": c.key, "old": _config_value(c.old), "new": _config_value(c.new)} for c in d.config
        ],
        "directories": [
            {
                "directory": r.directory,
                "size_a": r.size_a,
                "size_b": r.size_b,
                "delta": r.delta,
                "added": r.added,
                "removed": r.removed,
                "modified": r.modified,
                "metadata": r.metadata,
            }
            for r in d.directories
        ],
        "warnings": [*d.a.image.warnings, *d.a.warnings, *d.b.image.warnings, *d.b.warnings],
    }


# --------------------------------------------------------------------------- shared wording


def verdict(d: ImageDiff, iec: bool = False) -> str:
    """One line: identical, or what differs and by how much."""
    size = (
        f"image size {format_size(d.a.image.size, iec)} -> {format_size(d.b.image.size, iec)} "
        f"({signed(d.size_delta, iec)})"
    )
    if d.identical:
        scope = " within the path filters" if d.paths or d.ignores else ""
        return f"identical: same files{scope} and config; {size}"
    parts = [f"{d.count(kind)} {kind}" for kind in (ADDED, REMOVED, MODIFIED, METADATA) if d.count(kind)]
    if d.config:
        parts.append(f"{len(d.config)} config change{'s' if len(d.config) != 1 else ''}")
    return "different: " + ", ".join(parts) + f"; {size}"


def field_text(f: FileDiff) -> str:
    """What changed at a path, in a few words: ``file -> symlink``, ``mode 0644 -> 0755``..."""
    parts: list[str] = []
    for c in f.fields:
        if c.name == "type":
            parts.append(f"{c.old} -> {c.new}")
        elif c.name == "content":
            parts.append("content")
        else:
            parts.append(f"{c.name} {c.old or '(none)'} -> {c.new or '(none)'}")
    if f.kind == ADDED and f.new is not None and f.new.type == SYMLINK:
        parts.append(f"-> {f.new.link}")
    if f.kind == REMOVED and f.old is not None and f.old.type == SYMLINK:
        parts.append(f"was -> {f.old.link}")
    return ", ".join(parts)


def _path_text(f: FileDiff) -> str:
    return f.path + ("/" if f.type == DIR else "")


def config_text(value: str | tuple[str, ...] | None) -> str:
    """A config value as people read it; ``(unset)`` for an absent one."""
    if value is None:
        return "(unset)"
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    return value if value else '""'


def _layer_text(side: StepSide | None) -> str:
    if side is None:
        return ""
    return "-" if side.layer is None else str(side.layer)


def _rows(d: ImageDiff) -> list[StepPair | tuple[int, int, int, int]]:
    """Step rows, with runs of identical steps collapsed to (first layer, last layer, steps, bytes)."""
    out: list[StepPair | tuple[int, int, int, int]] = []
    run: list[StepPair] = []

    def flush() -> None:
        layers = [p.a.layer for p in run if p.a is not None and p.a.layer is not None]
        if len(run) >= COLLAPSE_RUN and layers:
            out.append((min(layers), max(layers), len(run), sum(p.size_a for p in run)))
        else:
            out.extend(run)
        run.clear()

    for pair in d.steps:
        if pair.status == SAME:
            run.append(pair)
        else:
            flush()
            out.append(pair)
    flush()
    return out


def _layers(count: int) -> str:
    return f"{count} layer{'s' if count != 1 else ''}"


def _span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def _short(text: str, limit: int = INSTRUCTION_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _instruction_lines(p: StepPair) -> list[tuple[str, str]]:
    """(marker, text) lines: one for a same or one-sided step, two when a changed step's text differs."""
    if p.a is not None and p.b is not None and p.a.instruction != p.b.instruction:
        return [("-", _short(p.a.instruction)), ("+", _short(p.b.instruction))]
    side = p.b if p.b is not None else p.a
    assert side is not None
    note = " (same content, other base)" if p.status == CHANGED and p.same_content else ""
    return [("", _short(side.instruction) + note)]


# --------------------------------------------------------------------------- rich text


def _header(d: ImageDiff, iec: bool) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for label, stack in (("A", d.a), ("B", d.b)):
        image = stack.image
        table.add_row(label, escape(image.reference))
        table.add_row(
            "",
            Text(
                f"{image.image_id[:19]}  {format_size(image.size, iec)}  {_layers(len(image.scans))}  "
                f"{image.config.platform}",
                style="dim",
            ),
        )
    if d.paths or d.ignores:
        scope = " ".join([*(f"--path {p}" for p in d.paths), *(f"--ignore {p}" for p in d.ignores)])
        table.add_row("Filters", escape(scope))
    style = "green" if d.identical else "yellow"
    table.add_row("Result", Text(verdict(d, iec), style=style))
    return table


def steps_table(d: ImageDiff, iec: bool = False) -> Table:
    """Aligned steps: what each image spent per step and the delta."""
    table = Table(
        title="Steps (aligned)",
        title_justify="left",
        caption="= same layer  ~ changed  + only in B  - only in A",
        caption_justify="left",
    )
    table.add_column("", no_wrap=True)
    table.add_column("A", justify="right", no_wrap=True)
    table.add_column("Size A", justify="right", no_wrap=True)
    table.add_column("B", justify="right", no_wrap=True)
    table.add_column("Size B", justify="right", no_wrap=True)
    table.add_column("Delta", justify="right", no_wrap=True)
    table.add_column("Instruction", overflow="fold", ratio=1, min_width=20)
    for row in _rows(d):
        if isinstance(row, tuple):
            first, last, count, nbytes = row
            size = format_size(nbytes, iec)
            span = _span(first, last)
            table.add_row(
                Text("=", style="dim"),
                span,
                size,
                span,
                size,
                "0",
                Text(f"{count} identical steps (shared layers)", style="dim"),
            )
            continue
        text = Text()
        for i, (mark, line) in enumerate(_instruction_lines(row)):
            if i:
                text.append("\n")
            style = {"-": "red", "+": "green"}.get(mark, STEP_STYLE[row.status] if row.status == SAME else "")
            text.append((mark + " " if mark else "") + line, style=style)
        table.add_row(
            Text(STEP_MARK[row.status], style=STEP_STYLE[row.status]),
            _layer_text(row.a),
            format_size(row.size_a, iec) if row.a is not None else "",
            _layer_text(row.b),
            format_size(row.size_b, iec) if row.b is not None else "",
            signed(row.delta, iec),
            text,
        )
    return table


def config_table(changes: tuple[ConfigChange, ...]) -> Table:
    """Config fields that differ, old -> new."""
    table = Table(title="Config", title_justify="left")
    table.add_column("Field", no_wrap=True)
    table.add_column("Key", overflow="fold")
    table.add_column("A", overflow="fold")
    table.add_column("B", overflow="fold")
    for c in changes:
        table.add_row(CONFIG_LABEL[c.field], escape(c.key or ""), Text(config_text(c.old)), Text(config_text(c.new)))
    return table


def files_table(d: ImageDiff, top: int | None, iec: bool = False) -> RenderableType:
    """Differing paths by size impact, at most ``top`` of them (None: all)."""
    shown = d.files if top is None else d.files[:top]
    title = "Files (by size impact)"
    if top is not None and len(d.files) > top:
        title = f"Files: the {top} largest of {len(d.files)} changes (by size impact)"
    table = Table(title=title, title_justify="left")
    table.add_column("Kind", no_wrap=True)
    table.add_column("Path", overflow="fold")
    table.add_column("Size A", justify="right", no_wrap=True)
    table.add_column("Size B", justify="right", no_wrap=True)
    table.add_column("Delta", justify="right", no_wrap=True)
    table.add_column("Change", overflow="fold")
    for f in shown:
        table.add_row(
            Text(f.kind, style=FILE_STYLE[f.kind]),
            Text(_path_text(f)),
            format_size(f.size_a, iec) if f.old is not None else "-",
            format_size(f.size_b, iec) if f.new is not None else "-",
            signed(f.delta, iec),
            Text(field_text(f)),
        )
    parts: list[RenderableType] = [table]
    if top is not None and len(d.files) > top:
        parts.append(Text(f"... {len(d.files) - top} more (use --top 0 for all, or --json)", style="dim"))
    return Group(*parts)


def _counts_text(added: int, removed: int, modified: int, metadata: int) -> str:
    parts = [
        f"{FILE_MARK[k]}{n}"
        for k, n in ((ADDED, added), (REMOVED, removed), (MODIFIED, modified), (METADATA, metadata))
        if n
    ]
    return " ".join(parts) or "-"


def directories_table(d: ImageDiff, iec: bool = False) -> Table:
    """Final-filesystem bytes per top-level directory, A and B."""
    table = Table(title="Size by top-level directory", title_justify="left")
    table.add_column("Directory", no_wrap=True)
    table.add_column("Size A", justify="right", no_wrap=True)
    table.add_column("Size B", justify="right", no_wrap=True)
    table.add_column("Delta", justify="right", no_wrap=True)
    table.add_column("Changes", no_wrap=True)
    for r in d.directories:
        if not r.changes and not r.delta:
            continue
        table.add_row(
            escape(r.directory if r.directory != "/" else "/ (files at the root)"),
            format_size(r.size_a, iec),
            format_size(r.size_b, iec),
            signed(r.delta, iec),
            _counts_text(r.added, r.removed, r.modified, r.metadata),
        )
    table.add_row(
        Text("total (files)", style="bold"),
        format_size(d.files_size_a, iec),
        format_size(d.files_size_b, iec),
        signed(d.files_delta, iec),
        _counts_text(d.count(ADDED), d.count(REMOVED), d.count(MODIFIED), d.count(METADATA)),
    )
    return table


def render(d: ImageDiff, top: int | None = 50, iec: bool = False) -> RenderableType:
    """The whole text report."""
    parts: list[RenderableType] = [_header(d, iec), Text(""), steps_table(d, iec)]
    if d.config:
        parts.append(config_table(d.config))
    if d.files:
        parts.append(files_table(d, top, iec))
    if d.files or any(r.delta for r in d.directories):
        parts.append(directories_table(d, iec))
    return Group(*parts)


# --------------------------------------------------------------------------- markdown


def _md(text: str) -> str:
    """A table cell: pipes escaped, newlines flattened, backticks kept out of code spans."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("`", "'")


def _code(text: str) -> str:
    return f"`{_md(text)}`" if text else ""


def to_markdown(d: ImageDiff, top: int | None = 50, iec: bool = False) -> str:
    """GitHub-flavoured markdown, fit to paste in a pull request."""
    a, b = d.a.image, d.b.image
    lines = [
        f"### imgscope diff: {_code(a.reference)} -> {_code(b.reference)}",
        "",
        f"**{'Identical' if d.identical else 'Different'}**: {_md(verdict(d, iec).split(': ', 1)[1])}",
        "",
        "| | A | B | Delta |",
        "|---|---|---|---:|",
        f"| Image | {_code(a.reference)} | {_code(b.reference)} | |",
        f"| Id | {_code(a.image_id[:19])} | {_code(b.image_id[:19])} | |",
        f"| Size | {format_size(a.size, iec)} | {format_size(b.size, iec)} | {signed(d.size_delta, iec)} |",
        f"| Layers | {len(a.scans)} | {len(b.scans)} | {len(b.scans) - len(a.scans):+d} |",
        f"| Shared layers | {d.shared_layers} ({format_size(d.shared_bytes, iec)}) | | |",
    ]
    if d.paths or d.ignores:
        scope = " ".join([*(f"--path {p}" for p in d.paths), *(f"--ignore {p}" for p in d.ignores)])
        lines += ["", f"Filters: {_code(scope)}"]
    lines += [
        "",
        "#### Steps",
        "",
        "| | Layer A | Size A | Layer B | Size B | Delta | Instruction |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in _rows(d):
        if isinstance(row, tuple):
            first, last, count, nbytes = row
            size = format_size(nbytes, iec)
            span = _span(first, last)
            lines.append(f"| = | {span} | {size} | {span} | {size} | 0 | {count} identical steps |")
            continue
        text = "<br>".join((f"{mark} " if mark else "") + _code(line) for mark, line in _instruction_lines(row))
        lines.append(
            f"| {STEP_MARK[row.status]} | {_layer_text(row.a)} | "
            f"{format_size(row.size_a, iec) if row.a is not None else ''} | {_layer_text(row.b)} | "
            f"{format_size(row.size_b, iec) if row.b is not None else ''} | {signed(row.delta, iec)} | {text} |"
        )
    lines += ["", "`=` same layer, `~` changed, `+` only in B, `-` only in A"]
    if d.config:
        lines += ["", "#### Config", "", "| Field | Key | A | B |", "|---|---|---|---|"]
        for c in d.config:
            lines.append(
                f"| {CONFIG_LABEL[c.field]} | {_code(c.key or '')} | {_code(config_text(c.old))} | "
                f"{_code(config_text(c.new))} |"
            )
    if d.files:
        shown = d.files if top is None else d.files[:top]
        more = len(d.files) - len(shown)
        heading = "#### Files" + (f" (the {len(shown)} largest of {len(d.files)} changes)" if more else "")
        lines += [
            "",
            heading,
            "",
            "| Kind | Path | Size A | Size B | Delta | Change |",
            "|---|---|---:|---:|---:|---|",
        ]
        for f in shown:
            lines.append(
                f"| {f.kind} | {_code(_path_text(f))} | {format_size(f.size_a, iec) if f.old is not None else '-'} | "
                f"{format_size(f.size_b, iec) if f.new is not None else '-'} | {signed(f.delta, iec)} | "
                f"{_md(field_text(f))} |"
            )
        if more:
            lines += ["", f"... and {more} more changes (see `imgscope diff --json`)."]
        lines += [
            "",
            "#### Size by top-level directory",
            "",
            "| Directory | Size A | Size B | Delta | Changes |",
            "|---|---:|---:|---:|---|",
        ]
        for r in d.directories:
            if r.changes or r.delta:
                lines.append(
                    f"| {_code(r.directory)} | {format_size(r.size_a, iec)} | {format_size(r.size_b, iec)} | "
                    f"{signed(r.delta, iec)} | {_counts_text(r.added, r.removed, r.modified, r.metadata)} |"
                )
        lines.append(
            f"| **total** | {format_size(d.files_size_a, iec)} | {format_size(d.files_size_b, iec)} | "
            f"{signed(d.files_delta, iec)} | "
            f"{_counts_text(d.count(ADDED), d.count(REMOVED), d.count(MODIFIED), d.count(METADATA))} |"
        )
    return "\n".join(lines) + "\n"
