"""Rich renderables for people: the image summary, the steps, a layer's changes, the tree.

Functions here only turn stacked data into rich objects; the CLI prints them.
Tests render them to strings through a recording console.
"""

from __future__ import annotations

import copy
import dataclasses
import heapq
import posixpath
import re
from collections import deque
from collections.abc import Iterable, Sequence

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.markup import escape
from rich.measure import Measurement
from rich.segment import Segment
from rich.table import Column, Table
from rich.text import Text
from rich.tree import Tree

from imgscope.globs import match
from imgscope.model import ADDED, DIR, METADATA, MODIFIED, REMOVED, RESHIPPED, SYMLINK, Entry, Image
from imgscope.stack import Change, FinalEntry, LayerResult, Stack
from imgscope.units import format_size

KIND_STYLE = {
    ADDED: "green",
    MODIFIED: "yellow",
    METADATA: "magenta",
    RESHIPPED: "cyan",
    REMOVED: "red",
}
KIND_MARK = {ADDED: "+", MODIFIED: "~", METADATA: "m", RESHIPPED: "=", REMOVED: "-"}


# C0 and C1 controls, DEL, bidi marks, embeddings, overrides and isolates (U+061C, U+200E,
# U+200F, U+202A-U+202E, U+2066-U+2069), the line and paragraph separators U+2028/U+2029
# (a line break to some terminals and editors), and lone surrogates: those that stand for
# bytes that were not UTF-8 (surrogateescape) and any other, which no UTF-8 output can hold.
_UNSAFE = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_UNPRINTABLE = re.compile(f"[\x00-\x1f{_UNSAFE}]")


def _escape_char(found: re.Match[str]) -> str:
    char = found.group()
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"  # the original byte
    return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(text: str) -> str:
    """``text`` safe to show on a terminal: controls and undecodable bytes as visible escapes.

    File names, history and labels come from the image, which may be hostile:
    an escape sequence in a name could clear the screen or redraw the report,
    a newline could fake a row.  JSON keeps the real names; people see
    ``\\x1b``, ``\\n`` or ``\\xe9`` instead.
    """
    return _UNPRINTABLE.sub(_escape_char, text) if _UNPRINTABLE.search(text) else text


_UNPRINTABLE_IN_LINES = re.compile(f"[\x00-\x09\x0b-\x1f{_UNSAFE}]")


class SafeConsole(Console):
    """A console that never writes a control character that came from an image.

    Rich emits its own escape sequences as *control* segments; every other
    segment is text, and text from an image (a file name, a history line, a
    label) may hold escape sequences.  Escaping them here, where segments
    become output, covers every renderer at once, including ones that forget
    :func:`printable`.  Newlines between rendered lines are kept.
    """

    def on_broken_pipe(self) -> None:
        """``imgscope ... | head``: stop quietly with 141 (128 + SIGPIPE), as a shell tool killed by
        SIGPIPE would; rich's default exit 1 would read as a failed check in ``ci`` and ``audit``."""
        import os
        import sys

        self.quiet = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(141)

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        safe = (
            seg
            if seg.control or not _UNPRINTABLE_IN_LINES.search(seg.text)
            else Segment(_UNPRINTABLE_IN_LINES.sub(_escape_char, seg.text), seg.style, seg.control)
            for seg in buffer
        )
        return super()._render_buffer(safe)


class Fitted:
    """A table that fits the width it is printed at: numbers whole, text cut or folded, columns dropped.

    Why: rich squeezes every column of a table wider than the terminal, and
    at 80 columns (any pipe or CI log) that turns sizes into ``(1…`` and
    headers into ``La…``.  Here right-aligned columns (numbers, sizes) keep
    their widest cell whole and never wrap; left-aligned text gives way (cut
    with an ellipsis or folded, at least ``min_text`` cells); when even
    that does not fit, the columns named in ``drop`` go, in that order.
    The width is the one the console offers at print time, so the same
    renderable fits a terminal, a pipe at ``COLUMNS=80`` or a wide log.
    """

    def __init__(self, table: Table, drop: Sequence[str] = (), min_text: int = 12) -> None:
        self.table = table
        self.drop = tuple(drop)
        self.min_text = min_text

    def fit(self, console: Console, width: int) -> Table:
        """A copy of the table whose columns fit ``width`` cells."""
        table = copy.copy(self.table)
        table.columns = [dataclasses.replace(c) for c in self.table.columns]
        measure_options = console.options.update(width=10_000, max_width=10_000)

        def widest(column: Column) -> int:
            cells = [column.header, *column.cells]
            return max(
                (Measurement.get(console, measure_options, c).maximum if c != "" else 0 for c in cells), default=0
            )

        widths = {id(c): widest(c) for c in table.columns}
        for column in table.columns:
            if column.justify == "right":  # a number: whole, on one line
                column.no_wrap = True
                column.min_width = widths[id(column)]
            else:
                least = min(widths[id(column)], max(self.min_text, _header_width(column.header)))
                column.min_width = max(column.min_width or 0, least)  # a caller's minimum stands

        def need() -> int:
            pad = table.padding[1] + table.padding[3]
            edges = (len(table.columns) + 1) if table.box is not None else max(len(table.columns) - 1, 0)
            return sum((c.min_width or 0) + pad for c in table.columns) + edges

        for header in self.drop:
            if need() <= width:
                break
            table.columns = [c for c in table.columns if str(c.header) != header]
        # rich shrinks every column alike once the wrapping ones are at their minimum, so the
        # text columns get a maximum here that leaves the numbers their room.
        text = [c for c in table.columns if c.justify != "right"]
        spare = max(0, width - need())  # beyond every column's minimum, shared by what the text wants more
        wants = {id(c): max(0, widths[id(c)] - (c.min_width or 0)) for c in text}
        total = sum(wants.values()) or 1
        for column in text:
            extra = min(wants[id(column)], spare * wants[id(column)] // total)
            column.max_width = (column.min_width or 0) + extra
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.fit(console, options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.fit(console, options.max_width))


def _header_width(header: object) -> int:
    return len(header.plain) if isinstance(header, Text) else len(str(header))


def _size(n: int | None, iec: bool) -> str:
    return "-" if n is None else format_size(n, iec)


def summary(image: Image, iec: bool = False) -> RenderableType:
    """The image's identity, size and the config fields users look for."""
    cfg = image.config
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rows: list[tuple[str, str]] = [
        ("Image", image.reference),
        ("Format", image.source),
        ("Id", image.image_id),
    ]
    if image.manifest_digest:
        rows.append(("Manifest", image.manifest_digest))
    if image.tags:
        rows.append(("Tags", ", ".join(image.tags)))
    rows += [
        ("Platform", cfg.platform),
        ("Created", cfg.created or "-"),
        ("Size", f"{format_size(image.size, iec)} ({image.size:,} bytes)"),
    ]
    if image.compressed_size is not None:
        # Docker 25's graphdriver archives name uncompressed blobs (digest == DiffID) in the manifest:
        # their sizes are what a push would read, not what it would send, so they are not "compressed".
        compressed = all(info.digest is not None and info.digest != info.diff_id for info in image.layers)
        label = "Compressed" if compressed else "Blobs"
        rows.append((label, f"{format_size(image.compressed_size, iec)} ({image.compressed_size:,} bytes)"))
    rows.append(("Layers", str(len(image.scans))))
    if cfg.entrypoint is not None:
        rows.append(("Entrypoint", " ".join(cfg.entrypoint)))
    if cfg.cmd is not None:
        rows.append(("Cmd", " ".join(cfg.cmd)))
    rows.append(("User", cfg.user or "(root by default)"))
    if cfg.working_dir:
        rows.append(("Workdir", cfg.working_dir))
    if cfg.exposed_ports:
        rows.append(("Ports", ", ".join(cfg.exposed_ports)))
    if cfg.volumes:
        rows.append(("Volumes", ", ".join(cfg.volumes)))
    for env in cfg.env:
        rows.append(("Env", env))
    for key, value in cfg.labels:
        rows.append(("Label", f"{key}={value}"))
    for key, value in rows:
        table.add_row(key, escape(printable(value)))
    return table


def changes_cell(result: LayerResult, iec: bool = False) -> Text:
    """Counts and bytes per change kind, compact: ``+3 6.4 kB  m1 6.4 kB  -2``."""
    text = Text()
    for kind in (ADDED, MODIFIED, METADATA, RESHIPPED, REMOVED):
        totals = result.total(kind)
        if not totals.count:
            continue
        if text:
            text.append("  ")
        text.append(f"{KIND_MARK[kind]}{totals.count}", style=KIND_STYLE[kind])
        if totals.bytes:
            text.append(f" {format_size(totals.bytes, iec)}", style=KIND_STYLE[kind])
    return text if text else Text("-", style="dim")


def layer_header(stack: Stack, layer: int, iec: bool = False) -> Text:
    """One line for ``inspect --layer N``: which image, which layer of how many, its size and counts."""
    result = stack.layers[layer]
    text = Text()
    text.append(printable(stack.image.reference), style="bold")
    text.append(f"  layer {layer} of {len(stack.layers)} (0-{len(stack.layers) - 1})  ")
    text.append(_size(result.size, iec), style="bold")
    text.append("  ")
    text.append_text(changes_cell(result, iec))
    return text


LEGEND = "changes: +added ~modified m:metadata =re-shipped -removed (count and bytes)"


def steps_table(stack: Stack, iec: bool = False, width: int = 100) -> RenderableType:
    """One row per history step, empty steps included, with size and change counts.

    Instructions are cut to what the terminal ``width`` leaves, so the numbers
    never get squeezed out by a long ``RUN`` line.
    """
    table = Table(title="Steps", title_justify="left", caption=LEGEND, caption_justify="left")
    cells = {r.index: changes_cell(r, iec) for r in stack.layers}
    widest = max((c.cell_len for c in cells.values()), default=7)
    table.add_column("Layer", justify="right", no_wrap=True, min_width=5)
    table.add_column("Size", justify="right", no_wrap=True, min_width=8)
    table.add_column("Changes", no_wrap=True, min_width=min(max(widest, 7), 48))
    changes_width = min(max(widest, 7), 48)
    table.add_column("Instruction", no_wrap=True, overflow="ellipsis", max_width=max(20, width - changes_width - 28))
    for step in stack.steps:
        if step.layer is None or step.layer >= len(stack.layers):
            table.add_row("", Text("-", style="dim"), "", Text(printable(step.instruction), style="dim"))
            continue
        result = stack.layers[step.layer]
        table.add_row(str(step.layer), _size(result.size, iec), cells[step.layer], Text(printable(step.instruction)))
    return Fitted(table)


def _mode(entry: Entry) -> str:
    return f"{entry.mode:04o} {entry.uid}:{entry.gid}"


def changes_table(
    stack: Stack,
    layer: int,
    *,
    sort: str = "size",
    pattern: str | None = None,
    iec: bool = False,
    limit: int | None = None,
) -> RenderableType:
    """The change list of one layer: path, kind, size, delta, mode/owner changes."""
    result = stack.layers[layer]
    changes: list[Change] = [c for c in result.changes if pattern is None or match(pattern, c.path)]
    if sort == "size":
        changes.sort(key=lambda c: (-max(c.size, c.old.size if c.old else 0), c.path))
    else:
        changes.sort(key=lambda c: c.path)
    step = next((s for s in stack.steps if s.layer == layer), None)
    title = f"Layer {layer}: {step.instruction if step else ''}"
    table = Table(title=Text(printable(title)), title_justify="left")  # a Text: no markup, no :emoji:
    table.add_column("Kind")
    table.add_column("Path", overflow="fold")
    table.add_column("Size", justify="right")
    table.add_column("Delta", justify="right")
    table.add_column("Mode uid:gid")
    shown = changes if limit is None else changes[:limit]
    for c in shown:
        entry = c.entry or c.old
        assert entry is not None
        mode = _mode(entry)
        if c.entry is not None and c.old is not None and _mode(c.old) != _mode(c.entry):
            mode = f"{_mode(c.old)} -> {_mode(c.entry)}"
        path = c.path + ("/" if entry.type == DIR else "")
        if entry.type == SYMLINK:
            path += f" -> {entry.link}"
        if c.cause and c.kind == REMOVED:
            path += f"  ({c.cause})"
        delta = f"{'+' if c.delta > 0 else ''}{format_size(c.delta, iec)}" if c.delta else "0"
        table.add_row(
            Text(c.kind, style=KIND_STYLE[c.kind]),
            Text(printable(path)),
            _size(c.size, iec) if c.entry is not None else "-",
            delta,
            mode,
        )
    parts: list[RenderableType] = [Fitted(table, drop=("Mode uid:gid",))]
    if limit is not None and len(changes) > limit:
        parts.append(Text(f"... {len(changes) - limit} more changes (use --top or --filter)", style="dim"))
    if not changes:
        parts.append(Text("no changes" + (f" match {pattern}" if pattern else ""), style="dim"))
    return Group(*parts)


def top_table(files: Iterable[FinalEntry], count: int, iec: bool = False) -> RenderableType:
    """The largest files of the final image."""
    ranked = sorted((f for f in files if f.entry.type != DIR), key=lambda f: (-f.entry.size, f.entry.path))
    table = Table(title=f"Top {count} largest files", title_justify="left")
    table.add_column("Size", justify="right")
    table.add_column("Layer", justify="right")
    table.add_column("Path", overflow="fold")
    for f in ranked[:count]:
        table.add_row(format_size(f.entry.size, iec), str(f.layer), Text(printable(f.entry.path)))
    return Fitted(table)


# A tree is for people: past these it is unreadable anyway, and a million nodes cost rich
# a minute and gigabytes (--json lists everything).
MAX_TREE_CHILDREN = 1000
MAX_TREE_NODES = 20_000


def tree_view(
    final: dict[str, FinalEntry],
    *,
    depth: int | None = None,
    pattern: str | None = None,
    touched: dict[str, str] | None = None,
    iec: bool = False,
    sort: str = "path",
) -> Tree:
    """The merged file tree with directory sizes summed from descendants.

    ``touched`` maps a path to the change kind of the selected layer, so the
    tree can show what that step did; each entry is marked with the layer
    that last wrote it.
    """
    children: dict[str, list[str]] = {}
    selected = [p for p in final if pattern is None or match(pattern, p)]
    keep: set[str] = set()
    # Plain slicing, not posixpath.dirname: these loops run once or more per entry, and a
    # million entries spent most of the tree's time in dirname.
    for path in selected:
        current = path
        while current != "/" and current not in keep:
            keep.add(current)
            parent = current[: current.rfind("/")] or "/"
            children.setdefault(parent, []).append(current)
            current = parent
    # Directory sizes: each file's size summed into its parent, then each directory's sum
    # into all its ancestors (once per directory, not once per file).
    direct: dict[str, int] = {}
    for path in selected:
        entry = final[path].entry
        if entry.type != DIR:
            parent = path[: path.rfind("/")] or "/"
            direct[parent] = direct.get(parent, 0) + entry.size
    dir_sizes: dict[str, int] = {}
    for directory, size in direct.items():
        current = directory
        while True:
            dir_sizes[current] = dir_sizes.get(current, 0) + size
            if current == "/":
                break
            current = current[: current.rfind("/")] or "/"
    root = Tree(Text(f"/ ({format_size(dir_sizes.get('/', 0), iec)})", style="bold"))

    def label(path: str) -> Text:
        found = final.get(path)
        name = printable(posixpath.basename(path))
        if found is None:
            return Text(f"{name}/  {format_size(dir_sizes.get(path, 0), iec)}", style="bold")
        entry = found.entry
        size = dir_sizes.get(path, 0) if entry.type == DIR else entry.size
        text = Text()
        kind = (touched or {}).get(path)
        if kind:
            text.append(f"{KIND_MARK[kind]} ", style=KIND_STYLE[kind])
        text.append(name + ("/" if entry.type == DIR else ""), style="bold" if entry.type == DIR else "")
        if entry.type == SYMLINK:
            text.append(f" -> {printable(entry.link)}", style="dim")
        text.append(f"  {format_size(size, iec)}  ", style="")
        text.append(f"L{found.layer}", style=KIND_STYLE.get(kind or "", "dim"))
        return text

    def size_of(path: str) -> int:
        found = final.get(path)
        if found is not None and found.entry.type != DIR:
            return found.entry.size
        return dir_sizes.get(path, 0)

    # Breadth first, so that the upper levels are complete when the total cap is reached.
    todo: deque[tuple[str, Tree, int]] = deque([("/", root, 0)])
    shown = 0
    while todo:
        path, node, level = todo.popleft()
        if depth is not None and level >= depth:
            continue
        kids = children.get(path, [])
        room = max(0, min(MAX_TREE_CHILDREN, MAX_TREE_NODES - shown))
        if sort == "size":
            key = lambda p: (-size_of(p), p)  # noqa: E731
            kids = heapq.nsmallest(room, kids, key=key) if len(kids) > room else sorted(kids, key=key)
        else:
            kids = heapq.nsmallest(room, kids) if len(kids) > room else sorted(kids)
        for child in kids:
            sub = node.add(label(child))
            todo.append((child, sub, level + 1))
        shown += len(kids)
        more = len(children.get(path, ())) - len(kids)
        if more:
            node.add(Text(f"... {more} more (narrow with --filter or --depth; --json lists all)", style="dim"))
    return root


def warnings_text(lines: Iterable[str]) -> RenderableType | None:
    """Warnings, one a line, or None when there are none."""
    items = list(lines)
    if not items:
        return None
    text = Text()
    shown = items[:20]
    for line in shown:
        text.append(f"warning: {printable(line)}\n", style="yellow")
    if len(items) > len(shown):
        text.append(f"... and {len(items) - len(shown)} more warnings (see --json)\n", style="yellow")
    return text
