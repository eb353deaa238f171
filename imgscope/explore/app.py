"""The textual App of ``imgscope explore``: steps on the left, the file tree of the selected step on the right.

Why it is built this way: every answer the screen needs is precomputed by
:class:`~imgscope.explore.model.ExploreModel`, so handlers here only pick a
step, options and folds, ask the model for the rows (one pass over what is
shown) and hand them to the line-drawn :class:`~imgscope.explore.widgets.FileTree`.
Loading runs in a worker thread behind a progress screen; reading a file's
content for the viewer does too, so the interface never blocks.

This is the only module that imports textual; the CLI imports it when the
command runs, never for ``--help``.
"""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.markup import escape
from textual.notifications import SeverityLevel
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Input, Label, ProgressBar, Static, TextArea

from imgscope.errors import ImgscopeError
from imgscope.explore.content import FileContent
from imgscope.explore.model import (
    CUMULATIVE_VIEW,
    HIDE_ADDED,
    HIDE_GROUPS,
    HIDE_MODIFIED,
    HIDE_REMOVED,
    HIDE_UNCHANGED,
    LAYER_VIEW,
    NO_CHANGES_VIEW,
    SORT_NAME,
    SORT_SIZE,
    ExploreModel,
    Finding,
    Progress,
    StepRow,
    TreeOptions,
    compile_filter,
    describe_entry,
    permissions,
)
from imgscope.explore.widgets import Columns, FileTree, KeyTable, fit_columns, header_text
from imgscope.model import DIR, FILE, HARDLINK, SYMLINK, Entry
from imgscope.render.console import KIND_MARK, KIND_STYLE
from imgscope.stack import FinalEntry
from imgscope.units import format_size

Loader = Callable[[Progress], ExploreModel]
Reader = Callable[[str, int, Entry], FileContent]
Auditor = Callable[[], tuple[list[Finding], int] | None]

#: The steps pane's columns (key, title), in order; which are shown depends on the width.
STEP_COLUMNS = (
    ("layer", "L"),
    ("size", "Size"),
    ("instruction", "Instruction"),
    ("added", "+"),
    ("modified", "~"),
    ("removed", "-"),
    ("wasted", "Wasted"),
)
DETAIL_COLUMNS = (
    ("layer", "L"),
    ("change", "Change"),
    ("size", "Size"),
    ("wasted", "Wasted"),
    ("hash", "Hash"),
    ("mode", "Mode"),
    ("owner", "Owner"),
    ("step", "Step"),
)

AUDIT_NONE, AUDIT_RUNNING, AUDIT_DONE, AUDIT_FAILED = "none", "running", "done", "failed"

HIDE_KEYS = {HIDE_ADDED: "A", HIDE_REMOVED: "R", HIDE_MODIFIED: "M", HIDE_UNCHANGED: "U"}

HELP = [
    ("Panes", ""),
    ("tab / shift+tab", "next / previous pane (steps, wasted paths, files, detail)"),
    ("↑ ↓  k j", "move in any pane; moving in the steps pane shows that step's tree"),
    ("[  ]", "previous / next step, from any pane"),
    ("Files", ""),
    ("← →  h l", "fold / unfold a directory, or go to the parent / first child"),
    ("space", "fold or unfold the directory under the cursor"),
    ("e", "fold all / unfold all"),
    ("enter  o", "open the file read-only (text) or show its size and hash (binary); on a symlink, go to its target"),
    ("v", "view: this step's changes  ⇄  everything changed from the base up to this step"),
    ("A R M U", "hide or show added, removed, modified (incl. metadata, re-shipped), unchanged entries"),
    ("s", "sort by name  ⇄  by size"),
    ("z  p", "show or hide the size column / the permissions and uid:gid columns"),
    ("/", "filter: a glob (/usr/**, *.so), re:REGEX, or text the path contains; empty clears"),
    ("escape", "clear the filter"),
    ("w", "jump to the step that stored the selected path's wasted bytes (again: the next involved step)"),
    ("Other panes", ""),
    ("enter (wasted paths)", "jump to the step that wasted that path (again: the next involved step)"),
    ("enter (detail)", "jump to that layer; o opens that layer's copy of the file"),
    ("General", ""),
    ("?", "this help"),
    ("q", "quit"),
    ("Marks", ""),
    ("+ ~ m = -", "added, modified, metadata only, re-shipped unchanged, removed (struck through)"),
    ("⚑", "an audit finding on that path"),
    ("Mouse", "click rows to select, click ▸/▾ or a selected directory to fold, double click a file to open,"),
    ("", "click the toolbar items and the keys in the footer"),
]


#: The bottom line: every key there is also a click target.  A plain Static rather than
#: textual's Footer, which rebuilds itself on every focus change (100 ms with tab).
KEYBAR = " ".join(
    f"[@click={action}][b]{key}[/b] {label}[/]"
    for key, label, action in (
        ("q", "Quit", "app.quit"),
        ("?", "Help", "screen.help"),
        ("tab", "Pane", "app.focus_next"),
        ("[ ]", "Step", "screen.step(1)"),
        ("space", "Fold", "screen.fold_selected"),
        ("e", "Fold all", "screen.fold_all"),
        ("/", "Filter", "screen.filter"),
        ("v", "View", "screen.toggle_view"),
        ("s", "Sort", "screen.toggle_sort"),
        ("o", "Open", "screen.open"),
        ("w", "Waste step", "screen.waste_jump"),
    )
)


def _size(n: int, iec: bool) -> str:
    return format_size(n, iec)


def _pack(parts: list[str], sep: str, width: int) -> str:
    """Parts joined by ``sep`` on as few lines of ``width`` cells as fit, never breaking inside a part."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + len(sep) + len(part) <= width:
            lines[-1] += sep + part
        else:
            lines.append(part)
    return "\n".join(lines)


# --------------------------------------------------------------------------- modal screens


class HelpScreen(ModalScreen[None]):
    """Every key, with what it does."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close"),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90%; height: 90%; border: round $accent; background: $panel; }
    """

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for key, text in HELP:
            if not text and key:
                table.add_row(Text(key, style="bold underline"), "")
            else:
                table.add_row(key, text)
        with VerticalScroll() as scroll:
            scroll.border_title = "imgscope explore — keys"
            yield Static("[@click=screen.dismiss]✕ close[/]  (escape, q or ?)", id="help-close")
            yield Static(table, id="help-text")

    def action_dismiss(self, result: None = None) -> None:  # type: ignore[override]
        self.dismiss(None)


class ContentScreen(ModalScreen[None]):
    """A read-only view of one file: text in a viewer; binary as size, hash and a hex preview."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "close", "Close")]
    DEFAULT_CSS = """
    ContentScreen { align: center middle; }
    ContentScreen > Vertical { width: 95%; height: 95%; border: round $accent; background: $panel; }
    ContentScreen #content-info, ContentScreen #content-close { height: auto; padding: 0 1; }
    ContentScreen TextArea { height: 1fr; }
    """

    def __init__(self, content: FileContent, iec: bool) -> None:
        super().__init__()
        self.content = content
        self.iec = iec

    def compose(self) -> ComposeResult:
        c = self.content
        kind = "text" if c.is_text else "binary"
        info = f"{c.path}  ·  layer {c.layer}  ·  {_size(c.size, self.iec)} ({c.size:,} bytes)  ·  xxh3 {c.digest}"
        info += f"  ·  {kind}"
        if c.truncated:
            info += f"  ·  first {_size(len(c.data), self.iec)} shown"
        with Vertical() as box:
            box.border_title = escape(f"{c.path} (read-only)")
            box.border_subtitle = "escape / q: close"
            yield Static("[@click=screen.close]✕ close[/]  (escape or q)", id="content-close")
            yield Label(info, id="content-info", markup=False)
            if c.is_text:
                yield TextArea(c.text(), read_only=True, show_line_numbers=True, soft_wrap=False, id="content-text")
            else:
                with VerticalScroll():
                    yield Static(Text(_hexdump(c.masked_bytes(4096))), id="content-hex")

    def action_close(self) -> None:
        self.dismiss(None)


def _hexdump(data: bytes) -> str:
    lines = []
    for off in range(0, len(data), 16):
        chunk = data[off : off + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{off:08x}  {hexes:<47}  {text}")
    return "\n".join(lines) if lines else "(empty file)"


class LoadingScreen(Screen[None]):
    """What the user sees while layers are read and per-step trees are built."""

    DEFAULT_CSS = """
    LoadingScreen { align: center middle; }
    LoadingScreen > Vertical { width: 70; height: auto; border: round $accent; padding: 1 2; }
    LoadingScreen Label { width: 100%; }
    """

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "imgscope explore"
            yield Label(f"Loading {self.what}", id="loading-ref", markup=False)
            yield ProgressBar(total=None, show_eta=False, id="loading-bar")
            yield Label("reading the image…", id="loading-status", markup=False)

    def update_progress(self, what: str, done: int, total: int) -> None:
        """Called (on the app thread) by the loader's progress callback."""
        bar = self.query_one("#loading-bar", ProgressBar)
        if total > 0:
            bar.update(total=total, progress=done)
        else:
            bar.update(total=None)
        self.query_one("#loading-status", Label).update(f"{what}: {done}/{total}" if total else what)


# --------------------------------------------------------------------------- the browser


class BrowserScreen(Screen[None]):
    """Steps, summary and wasted paths on the left; toolbar, file tree and detail panel on the right."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "app.quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("slash", "filter", "Filter"),
        Binding("v", "toggle_view", "View"),
        Binding("s", "toggle_sort", "Sort"),
        Binding("e", "fold_all", "Fold all"),
        Binding("o", "open", "Open"),
        Binding("w", "waste_jump", "Waste step"),
        Binding("left_square_bracket", "step(-1)", "Prev step", show=False),
        Binding("right_square_bracket", "step(1)", "Next step", show=False),
        Binding("A,ctrl+a", f"hide('{HIDE_ADDED}')", "Hide added", show=False),
        Binding("R,ctrl+r", f"hide('{HIDE_REMOVED}')", "Hide removed", show=False),
        Binding("M", f"hide('{HIDE_MODIFIED}')", "Hide modified", show=False),
        Binding("U,ctrl+u", f"hide('{HIDE_UNCHANGED}')", "Hide unchanged", show=False),
        Binding("z", "column('size')", "Size column", show=False),
        Binding("p,ctrl+b", "column('perms')", "Permissions column", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    DEFAULT_CSS = """
    BrowserScreen #main { height: 1fr; }
    BrowserScreen #left { width: 42%; min-width: 34; }
    BrowserScreen #right { width: 1fr; }
    BrowserScreen #steps { height: 2fr; min-height: 5; border: round $panel-lighten-2; }
    BrowserScreen #summary { height: auto; border: round $panel-lighten-2; padding: 0 1; }
    BrowserScreen #wasted { height: 1fr; min-height: 4; max-height: 14; border: round $panel-lighten-2; }
    BrowserScreen #toolbar { height: auto; padding: 0 1; background: $panel; }
    BrowserScreen #tree-header { height: 1; padding: 0 1; color: $text-muted; text-style: bold; }
    BrowserScreen #tree { height: 3fr; min-height: 5; border: round $panel-lighten-2; }
    BrowserScreen #filter { display: none; }
    BrowserScreen #filter.shown { display: block; }
    BrowserScreen #detail-title { height: 2; padding: 0 1; }
    BrowserScreen #detail { height: 1fr; min-height: 4; max-height: 10; border: round $panel-lighten-2; }
    BrowserScreen #keybar { height: 1; padding: 0 1; background: $panel; }
    BrowserScreen #steps:focus, BrowserScreen #wasted:focus,
    BrowserScreen #tree:focus, BrowserScreen #detail:focus { border: round $accent; }
    """

    def __init__(self, model: ExploreModel, *, reader: Reader | None, iec: bool) -> None:
        super().__init__()
        self.model = model
        self.reader = reader
        self.iec = iec
        self.step = 0  # as dive does: start at the base layer, where everything is added
        self.options = TreeOptions()
        self.collapsed: set[int] = set()
        self.columns = Columns()
        self._jump_cycle: dict[str, int] = {}
        self._detail_rows: list[tuple[int, Entry | None]] = []
        self._toolbar_text = ""
        self._steps_layout: tuple[tuple[str, ...], int] = ((), 0)
        self._detail_columns: tuple[tuple[str, ...], bool] = ((), False)
        self._wasted_width = 0

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield KeyTable(id="steps")
                yield Static(id="summary")
                yield KeyTable(id="wasted")
            with Vertical(id="right"):
                yield Static(id="toolbar")
                yield Static(header_text(self.columns), id="tree-header", markup=False)
                yield FileTree(self.model, self.iec, id="tree")
                yield Input(id="filter", placeholder="glob (/usr/**, *.so), re:REGEX, or text; enter applies")
                yield Static(id="detail-title")
                yield KeyTable(id="detail")
        yield Static(KEYBAR, id="keybar")

    def on_mount(self) -> None:
        steps = self.query_one("#steps", KeyTable)
        steps.border_title = "Steps"
        self._fill_steps()
        self.query_one("#summary", Static).update(self._summary_text())
        self.query_one("#summary", Static).border_title = "Image"
        wasted = self.query_one("#wasted", KeyTable)
        wasted.border_title = "Top wasted paths (enter: jump)"
        self._fill_wasted()
        detail = self.query_one("#detail", KeyTable)
        detail.border_title = "Every layer that touched it (enter: go to layer, o: open that copy)"
        self._detail_layout()
        if self.app.size.width < 110:
            # A narrow terminal: the name column matters more than permissions (p shows them).
            self.columns = replace(self.columns, perms=False)
            self.file_tree.set_columns(self.columns)
            self.query_one("#tree-header", Static).update(header_text(self.columns))
        self.refresh_tree()
        steps.focus()
        if isinstance(self.app, ExploreApp):
            self.app.start_audit()

    def on_resize(self) -> None:
        """A new terminal size: pick again which columns of the steps and detail panes fit."""
        self._fill_steps()
        self._fill_wasted()
        self.query_one("#summary", Static).update(self._summary_text())
        if self._detail_layout():
            self.show_detail(self.file_tree.node)

    def _pane_widths(self) -> tuple[int, int]:
        """Cells inside the left and right panes' borders (and a vertical scrollbar), from the CSS widths."""
        width = self.app.size.width
        left = max(34, width * 42 // 100)
        return left - 4, max(0, width - left) - 4

    def _fill_steps(self) -> None:
        """(Re)build the steps table with the columns that fit: numbers whole, the instruction cut to fit.

        +, ~ and - are dropped first, then the size; the instruction takes
        the width that remains (at least 12 cells).
        """
        rows = self.model.steps
        cells = [self._step_cells(row) for row in rows]
        widths = {key: len(title) for key, title in STEP_COLUMNS}
        for row_cells in cells:
            for key, value in row_cells.items():
                widths[key] = max(widths[key], len(value))
        widths["instruction"] = (
            max(
                widths["instruction"],
                *(len(r.instruction) + (len(f" ⚑{r.findings}") if r.findings else 0) for r in rows),
            )
            if rows
            else widths["instruction"]
        )
        widths["instruction"] = min(widths["instruction"], 60)
        kept, flex = fit_columns(
            widths, ("removed", "modified", "added", "size"), self._pane_widths()[0], "instruction", 12
        )
        layout = (tuple(kept), flex)
        if layout == self._steps_layout:
            return
        self._steps_layout = layout
        steps = self.query_one("#steps", KeyTable)
        steps.clear(columns=True)
        for key, title in STEP_COLUMNS:
            if key in kept:
                steps.add_column(title, key=key, width=flex if key == "instruction" else widths[key])
        styles = {"added": KIND_STYLE["added"], "modified": KIND_STYLE["modified"], "removed": KIND_STYLE["removed"]}
        for k, (row, row_cells) in enumerate(zip(rows, cells, strict=True)):
            values: list[Text] = []
            for key in kept:
                if key == "instruction":
                    values.append(self._instruction_cell(row))
                else:
                    style = "red" if key == "wasted" else styles.get(key, "dim" if row.empty else "")
                    values.append(Text(row_cells[key], style=style, justify="right"))
            steps.add_row(*values, key=str(k))
        if rows:
            steps.move_cursor(row=self.step, animate=False)

    def _fill_wasted(self) -> None:
        """(Re)build the wasted paths pane: sizes and counts whole, paths cut at the front to fit.

        A path wider than the pane would add a horizontal scrollbar, which at
        24 lines hides the pane's only visible row.
        """
        top = self.model.summary.top_paths
        sizes = [_size(item.bytes_wasted, self.iec) for item in top]
        size_w = max([len("Wasted"), *map(len, sizes)])
        count_w = max([len("Copies"), *(len(str(item.times_stored)) for item in top)])
        path_w = max(8, self._pane_widths()[0] - (size_w + 2) - (count_w + 2) - 2)
        if path_w == self._wasted_width:
            return
        self._wasted_width = path_w
        wasted = self.query_one("#wasted", KeyTable)
        wasted.clear(columns=True)
        wasted.add_column("Wasted", key="bytes", width=size_w)
        wasted.add_column("Copies", key="times", width=count_w)
        wasted.add_column("Path", key="path", width=path_w)
        for item, size in zip(top, sizes, strict=True):
            path = item.path if len(item.path) <= path_w else "…" + item.path[-(path_w - 1) :]
            wasted.add_row(
                Text(size, style="red", justify="right"),
                Text(str(item.times_stored), justify="right"),
                Text(path, no_wrap=True),
                key=item.path,
            )

    def _step_cells(self, row: StepRow) -> dict[str, str]:
        changed = row.modified + row.metadata + row.reshipped
        return {
            "layer": "" if row.layer is None else str(row.layer),
            "size": "" if row.empty else _size(row.size, self.iec),
            "added": str(row.added) if row.added else "",
            "modified": str(changed) if changed else "",
            "removed": str(row.removed) if row.removed else "",
            "wasted": _size(row.wasted, self.iec) if row.wasted else "",
        }

    def _detail_layout(self) -> bool:
        """Choose the detail pane's columns for this width; True when they changed (the table is rebuilt)."""
        layers = len(str(max(self.model.layer_count - 1, 0)))
        wide_waste = 29 + layers  # "yes 999.9 kB (overwritten, L12)"
        widths = {"layer": max(1, layers), "change": 11, "size": 8, "wasted": wide_waste, "hash": 16}
        widths |= {"mode": 10, "owner": 11, "step": 60}
        available = self._pane_widths()[1]
        kept, flex = fit_columns(widths, ("owner", "mode", "hash", "step"), available, "step", 8)
        if "step" not in kept and sum(widths[k] + 2 for k in kept) > available:
            widths["wasted"] = 12  # "yes 999.9 kB": the cause and the hiding layer go when narrow
            kept, flex = fit_columns(widths, ("owner", "mode", "hash", "step"), available, "step", 8)
        widths["step"] = flex
        compact = widths["wasted"] == 12
        layout = (tuple(kept), compact)
        if layout == self._detail_columns:
            return False
        self._detail_columns = layout
        detail = self.query_one("#detail", KeyTable)
        detail.clear(columns=True)
        for key, title in DETAIL_COLUMNS:
            if key in kept:
                detail.add_column(title, key=key, width=widths[key])
        return True

    def findings_changed(self) -> None:
        """The content audit finished: redraw what shows findings (summary, steps, tree, detail)."""
        self.query_one("#summary", Static).update(self._summary_text())
        steps = self.query_one("#steps", KeyTable)
        if "instruction" in self._steps_layout[0]:
            for k, row in enumerate(self.model.steps):
                steps.update_cell(str(k), "instruction", self._instruction_cell(row))
        self.file_tree.refresh()
        self.show_detail(self.file_tree.node)

    def _instruction_cell(self, row: StepRow) -> Text:
        mark = f" ⚑{row.findings}" if row.findings else ""
        room = max(1, (self._steps_layout[1] or 48) - len(mark))
        instruction = row.instruction if len(row.instruction) <= room else row.instruction[: room - 1] + "…"
        text = Text(instruction, style="dim" if row.empty else "", no_wrap=True)
        if mark:
            text.append(mark, style="red")
        return text

    def _summary_text(self) -> Text:
        """Short lines packed to the pane width, no number torn from its unit; one efficiency figure, in words."""
        s = self.model.summary
        width = self._pane_widths()[0]
        out = Text()
        out.append(s.reference + "\n", style="bold")
        out.append(_pack([f"{s.platform}", f"{s.layer_count} layers", f"{s.step_count} steps"], " · ", width) + "\n")
        out.append(_pack([f"{_size(s.size, self.iec)} stored", f"{s.file_count:,} files"], " · ", width) + "\n")
        headline = [f"Efficiency {s.efficiency * 100:.1f}%:", f"wasted {_size(s.wasted_bytes, self.iec)}"]
        headline.append(f"of {_size(s.size, self.iec)}")
        out.append(_pack(headline, " ", width) + "\n", style="bold red" if s.wasted_bytes else "bold")
        if s.dive_efficiency is not None:
            out.append(f"dive would report {s.dive_efficiency * 100:.1f}%\n", style="dim")
        if s.audit_available:
            state = self.app.audit_state if isinstance(self.app, ExploreApp) else AUDIT_NONE
            out.append(_pack([f"audit: {s.finding_total} finding(s),", f"{s.finding_count} on files ⚑"], " ", width))
            if s.content_audited:
                out.append("\nfile contents: checked", style="dim")
            elif state == AUDIT_FAILED:
                out.append("\nfile contents: not checked", style="yellow")
            elif state == AUDIT_RUNNING:
                out.append("\nfile contents: checking…", style="dim")
        else:
            out.append("audit: not available in this version", style="dim")
        return out

    # ------------------------------------------------------------------ state -> screen

    @property
    def file_tree(self) -> FileTree:
        return self.query_one("#tree", FileTree)

    @property
    def tree_layer(self) -> int:
        """The layer whose tree the selected step shows (-1 before the first layer)."""
        return self.model.steps[self.step].tree_layer if self.model.steps else -1

    @property
    def shown_view(self) -> str:
        """The view the tree shows (an empty step's layer view marks nothing)."""
        snap = self.file_tree.snap
        return snap.view if snap is not None else self.options.view

    def refresh_tree(self, keep: int | None = None) -> None:
        """Recompute the shown rows (one pass over what is visible) and redraw."""
        tree = self.file_tree
        options = self.options
        if options.view == LAYER_VIEW and self.model.steps and self.model.steps[self.step].empty:
            options = replace(options, view=NO_CHANGES_VIEW)  # an empty step changed nothing
        snap = self.model.snapshot(self.tree_layer, options, self.collapsed)
        tree.set_snapshot(snap, keep if keep is not None else tree.node)
        self._update_titles()

    def _update_titles(self) -> None:
        row = self.model.steps[self.step] if self.model.steps else None
        view = "this step's changes" if self.options.view == LAYER_VIEW else "changes since the base"
        if row is None:
            where = "no steps"
        elif row.layer is None:
            where = f"step {row.position} (no layer: {row.instruction[:40]}), tree of layer {row.tree_layer}"
        else:
            where = f"layer {row.layer}: {row.instruction[:60]}"
        tree = self.file_tree
        tree.border_title = escape(f"Files as of {where}")
        tree.border_subtitle = f"{len(tree.snap) if tree.snap else 0:,} rows · marks: {view}"
        toolbar = self._toolbar()
        if toolbar != self._toolbar_text:  # a layout pass only when the toolbar really changed
            self._toolbar_text = toolbar
            self.query_one("#toolbar", Static).update(toolbar)

    def _toolbar(self) -> str:
        o = self.options
        view = "step changes" if o.view == LAYER_VIEW else "since base"
        parts = [
            f"[@click=screen.toggle_view]View: [b]{view}[/b][/]",
            f"[@click=screen.toggle_sort]Sort: [b]{o.sort}[/b][/]",
        ]
        hides = []
        for group in HIDE_GROUPS:
            key = HIDE_KEYS[group]
            shown = group not in o.hide
            label = f"{key}:{group}" if shown else f"[strike]{key}:{group}[/strike]"
            hides.append(f"[@click=screen.hide('{group}')]{label}[/]")
        parts.append("Show " + " ".join(hides))
        size = "size" if self.columns.size else "[strike]size[/strike]"
        perms = "perms" if self.columns.perms else "[strike]perms[/strike]"
        parts.append(f"[@click=screen.column('size')]{size}[/] [@click=screen.column('perms')]{perms}[/]")
        parts.append("[@click=screen.fold_all]fold all[/]")
        if o.pattern:
            parts.append(
                f"[@click=screen.filter]Filter: [b]{escape(o.pattern)}[/b][/] [@click=screen.clear_filter]✕[/]"
            )
        else:
            parts.append("[@click=screen.filter]Filter…[/]")
        return " │ ".join(parts)

    def _say(self, message: str, severity: SeverityLevel = "information") -> None:
        """A notification whose text is shown as is (paths may contain markup characters)."""
        self.notify(message, severity=severity, markup=False)

    def _set_options(self, **changes: Any) -> None:
        self.options = replace(self.options, **changes)
        self.refresh_tree()

    # ------------------------------------------------------------------ events

    @on(DataTable.RowHighlighted, "#steps")
    def _step_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.select_step(event.cursor_row, from_table=True)

    @on(DataTable.RowSelected, "#steps")
    def _step_selected(self, event: DataTable.RowSelected) -> None:
        self.file_tree.focus()

    @on(DataTable.RowSelected, "#wasted")
    def _wasted_selected(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value
        if key is not None:
            self.waste_jump(key)

    @on(DataTable.RowSelected, "#detail")
    def _detail_selected(self, event: DataTable.RowSelected) -> None:
        if 0 <= event.cursor_row < len(self._detail_rows):
            layer, _entry = self._detail_rows[event.cursor_row]
            node = self.file_tree.node
            if node is not None:
                self.jump_to(layer, node)

    @on(FileTree.Highlighted)
    def _tree_highlighted(self, event: FileTree.Highlighted) -> None:
        self.show_detail(event.node)

    @on(FileTree.Toggled)
    def _tree_toggled(self, event: FileTree.Toggled) -> None:
        if event.node in self.collapsed:
            self.collapsed.discard(event.node)
        else:
            self.collapsed.add(event.node)
        self.refresh_tree(keep=event.node)

    @on(FileTree.Opened)
    def _tree_opened(self, event: FileTree.Opened) -> None:
        self.open_node(event.node)

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if text:
            try:
                compile_filter(text)
            except ImgscopeError as exc:
                self._say(exc.message, severity="error")
                return
        box = self.query_one("#filter", Input)
        box.remove_class("shown")
        self._set_options(pattern=text or None)
        self.file_tree.focus()

    # ------------------------------------------------------------------ actions

    def select_step(self, index: int, *, from_table: bool = False) -> None:
        """Show the tree of step ``index``, keeping the cursor on the same path when it is there."""
        if not self.model.steps:
            return
        index = max(0, min(index, len(self.model.steps) - 1))
        if index == self.step and self.file_tree.snap is not None:
            return
        self.step = index
        if not from_table:
            self.query_one("#steps", KeyTable).move_cursor(row=index, animate=False)
        self.refresh_tree()

    def action_step(self, delta: int) -> None:
        self.select_step(self.step + delta)

    def action_toggle_view(self) -> None:
        self._set_options(view=CUMULATIVE_VIEW if self.options.view == LAYER_VIEW else LAYER_VIEW)

    def action_toggle_sort(self) -> None:
        self._set_options(sort=SORT_SIZE if self.options.sort == SORT_NAME else SORT_NAME)

    def action_hide(self, group: str) -> None:
        hide = set(self.options.hide)
        hide.symmetric_difference_update({group})
        self._set_options(hide=frozenset(hide))

    def action_column(self, which: str) -> None:
        if which == "size":
            self.columns = replace(self.columns, size=not self.columns.size)
        else:
            self.columns = replace(self.columns, perms=not self.columns.perms)
        self.file_tree.set_columns(self.columns)
        self.query_one("#tree-header", Static).update(header_text(self.columns))
        self._update_titles()

    def action_fold_all(self) -> None:
        if self.collapsed:
            self.collapsed = set()
        else:
            self.collapsed = self.model.expandable_nodes()
        keep = self.file_tree.node
        if keep is not None and self.collapsed:
            # Folding everything leaves only top-level rows: stay on the selected path's top directory.
            while self.model.parent[keep] > 0:
                keep = self.model.parent[keep]
        self.refresh_tree(keep=keep)

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.value = self.options.pattern or ""
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_class("shown"):
            box.remove_class("shown")
            self.file_tree.focus()
            return
        if self.options.pattern:
            self._set_options(pattern=None)

    def action_fold_selected(self) -> None:
        self.file_tree.action_toggle_fold()

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen())

    def action_open(self) -> None:
        detail = self.query_one("#detail", KeyTable)
        if detail.has_focus and 0 <= detail.cursor_row < len(self._detail_rows):
            layer, entry = self._detail_rows[detail.cursor_row]
            if entry is not None:
                self.open_entry(FinalEntry(entry, layer))
            else:
                self._say("that layer removed the path: nothing to open", severity="warning")
            return
        node = self.file_tree.node
        if node is not None:
            self.open_node(node)

    def action_waste_jump(self) -> None:
        node = self.file_tree.node
        if node is None:
            return
        self.waste_jump(self.model.paths[node])

    # ------------------------------------------------------------------ jumps and detail

    def jump_to(self, layer: int, node: int) -> None:
        """Select the step of ``layer`` and put the cursor on ``node``, unfolding its parents."""
        parent = self.model.parent[node]
        while parent > 0:
            self.collapsed.discard(parent)
            parent = self.model.parent[parent]
        target = self.model.step_for_layer(layer)
        if target != self.step:
            self.step = target
            self.query_one("#steps", KeyTable).move_cursor(row=target, animate=False)
        self.refresh_tree(keep=node)
        if not self.file_tree.select_node(node):
            self._say(f"{self.model.paths[node]} is hidden by the current filter or hide keys", severity="warning")

    def waste_jump(self, path: str) -> None:
        """Go to the step that stored the path's wasted bytes; repeated, to the next layer involved."""
        node = self.model.ids.get(path)
        jumps = self.model.wasted_jumps(node) if node is not None else ()
        if node is None or not jumps:
            self._say(f"{path}: no wasted bytes", severity="information")
            return
        position = self._jump_cycle.get(path, -1) + 1
        position %= len(jumps)
        self._jump_cycle = {path: position}
        layer = jumps[position]
        self.jump_to(layer, node)
        stored = {t.layer: t for t in self.model.history(node)}
        touch = stored.get(layer)
        if touch is not None and touch.wasted:
            self._say(
                f"layer {layer} stored {_size(touch.wasted_bytes, self.iec)} of {path}, "
                f"hidden by layer {touch.hidden_by} ({touch.wasted_cause})"
            )
        else:
            self._say(f"layer {layer} hid a stored copy of {path}")

    def show_detail(self, node: int | None) -> None:
        """Fill the detail panel for the selected path: its entry here and every layer that touched it."""
        title = self.query_one("#detail-title", Static)
        detail = self.query_one("#detail", KeyTable)
        detail.clear()
        self._detail_rows = []
        if node is None:
            title.update("", layout=False)
            return
        path = self.model.paths[node]
        layer = self.tree_layer
        here = self.model.entry_at(node, layer)
        ghost = self.model.ghosts(layer, self.shown_view).get(node) if here is None else None
        text = Text()
        text.append(path, style="bold")
        shown = here or ghost
        if shown is not None:
            e = shown.entry
            state = "removed here; was " if ghost is not None else ""
            text.append(
                f"  {state}{describe_entry(e)} {permissions(e)} {e.uid}:{e.gid}, "
                f"{_size(self.model.sizes[layer][node] if e.type == DIR and here else e.size, self.iec)}, "
                f"written by layer {shown.layer}",
                style="dim",
            )
            if e.digest:
                text.append(f", xxh3 {e.digest}", style="dim")
        for finding in self.model.findings.get(path, ()):
            text.append(f"\n⚑ {finding.severity}: {finding.title}", style="red")
        title.update(text, layout=False)
        for touch in self.model.history(node):
            entry = touch.entry or touch.old
            kind_style = KIND_STYLE.get(touch.kind, "")
            if touch.entry is None:
                wasted = Text("—", style="dim")
            elif touch.wasted:
                why = "" if self._detail_columns[1] else f" ({touch.wasted_cause}, L{touch.hidden_by})"
                wasted = Text(f"yes {_size(touch.wasted_bytes, self.iec)}{why}", style="red")
            elif touch.entry.type == DIR:
                wasted = Text("—", style="dim")
            else:
                wasted = Text("no", style="green")
            cells = {
                "layer": Text(str(touch.layer), justify="right", style="bold" if touch.layer == layer else ""),
                "change": Text(f"{KIND_MARK.get(touch.kind, '')} {touch.kind}", style=kind_style),
                "size": Text(_size(touch.entry.size, self.iec) if touch.entry is not None else "", justify="right"),
                "wasted": wasted,
                "hash": Text(entry.digest if entry is not None and entry.digest else ""),
                "mode": Text(permissions(entry) if entry is not None else ""),
                "owner": Text(f"{entry.uid}:{entry.gid}" if entry is not None else ""),
                "step": Text(touch.instruction, no_wrap=True),
            }
            detail.add_row(*(cells[key] for key in self._detail_columns[0]))
            self._detail_rows.append((touch.layer, touch.entry))

    # ------------------------------------------------------------------ content

    def open_node(self, node: int) -> None:
        """Open what the selected row is: a file's content, a symlink's target, a directory's fold."""
        layer = self.tree_layer
        found = self.model.entry_at(node, layer)
        if found is None:
            found = self.model.ghosts(layer, self.shown_view).get(node)
            if found is None:
                return
        entry = found.entry
        if entry.type == SYMLINK:
            base = posixpath.dirname(entry.path)
            target = posixpath.normpath(entry.link if entry.link.startswith("/") else posixpath.join(base, entry.link))
            target_node = self.model.ids.get(target)
            if target_node is not None and self.model.entry_at(target_node, layer) is not None:
                self.jump_to(layer if layer >= 0 else 0, target_node)
                self._say(f"{entry.path} → {target}")
            else:
                self._say(f"{entry.path} → {entry.link} (not in the image)")
            return
        if entry.type == DIR:
            self._tree_toggled(FileTree.Toggled(self.file_tree, node))
            return
        self.open_entry(found)

    def open_entry(self, found: FinalEntry) -> None:
        """Read one stored file (a hard link reads its target) and show it in the viewer."""
        entry = found.entry
        path = entry.path
        if entry.type == HARDLINK:
            target = "/" + entry.link.lstrip("/")
            for candidate in self.model.stack.image.scans[found.layer].entries:
                if candidate.path == target and candidate.type == FILE:
                    path, entry = target, candidate
                    break
        if entry.type != FILE:
            self._say(f"{entry.path}: a {entry.type}, no content to show", severity="warning")
            return
        if self.reader is None:
            self._say("reading file content is not available here", severity="warning")
            return
        self._say(f"reading {path} from layer {found.layer}…")
        self._read(path, found.layer, entry)

    @work(thread=True, exclusive=True, group="content")
    def _read(self, path: str, layer: int, entry: Entry) -> None:
        assert self.reader is not None
        try:
            content = self.reader(path, layer, entry)
        except ImgscopeError as exc:
            self.app.call_from_thread(self._say, exc.message, severity="error")
            return
        self.app.call_from_thread(self.app.push_screen, ContentScreen(content, self.iec))


# --------------------------------------------------------------------------- the app


class ExploreApp(App[int]):
    """The explorer: a loading screen with progress, then the browser.

    Give it a ready ``model`` (tests) or a ``loader`` that builds one,
    reporting progress (the CLI).  An :class:`ImgscopeError` while loading
    ends the app with return code 2 and the error kept in :attr:`error`.
    """

    TITLE = "imgscope explore"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [Binding("q", "quit", "Quit", show=False)]

    def __init__(
        self,
        *,
        model: ExploreModel | None = None,
        loader: Loader | None = None,
        reader: Reader | None = None,
        auditor: Auditor | None = None,
        iec: bool = False,
        what: str = "image",
        freeze_gc: bool = False,
    ) -> None:
        super().__init__()
        self.freeze_gc = freeze_gc
        self.auditor = auditor
        if model is None and loader is None:
            raise ValueError("ExploreApp needs a model or a loader")
        self.model = model
        self.loader = loader
        self.reader = reader
        self.iec = iec
        self.what = what
        self.error: ImgscopeError | None = None
        #: An unexpected exception that ended the app (the CLI prints one line and exits 1).
        self.crash: BaseException | None = None
        #: Where the content audit is: none asked, running, done or failed (shown in the summary).
        self.audit_state = AUDIT_NONE

    def _freeze(self) -> None:
        """Take the (large, long-lived) model out of the cyclic garbage collector's scans.

        A full collection over millions of model objects costs a noticeable
        pause at a random keypress; the model lives until exit, so it is frozen.
        """
        if self.freeze_gc:
            import gc

            gc.collect()
            gc.freeze()

    def on_mount(self) -> None:
        if self.model is not None:
            self._freeze()
            self.push_screen(BrowserScreen(self.model, reader=self.reader, iec=self.iec))
            return
        self.push_screen(LoadingScreen(self.what))
        self._load()

    @work(thread=True, exclusive=True, group="load")
    def _load(self) -> None:
        assert self.loader is not None

        def progress(what: str, done: int, total: int) -> None:
            self.call_from_thread(self._progress, what, done, total)

        try:
            model = self.loader(progress)
        except ImgscopeError as exc:
            self.call_from_thread(self._failed, exc)
            return
        self.call_from_thread(self._loaded, model)

    def _progress(self, what: str, done: int, total: int) -> None:
        screen = self.screen
        if isinstance(screen, LoadingScreen):
            screen.update_progress(what, done, total)

    def _loaded(self, model: ExploreModel) -> None:
        self.model = model
        self._freeze()
        self.switch_screen(BrowserScreen(model, reader=self.reader, iec=self.iec))

    def start_audit(self) -> None:
        """Start the content audit (once the browser is on screen to show its result)."""
        if self.auditor is not None and self.model is not None and self.model.audit_available:
            self.audit_state = AUDIT_RUNNING
            self._run_audit()

    @work(thread=True, exclusive=True, group="audit")
    def _run_audit(self) -> None:
        """The content audit runs elsewhere (a child process); this thread only waits for it.

        Whatever goes wrong there becomes a one-line notice: the browser stays up
        with the findings it has (names, modes and config), never a traceback.
        """
        assert self.auditor is not None
        try:
            result = self.auditor()
        except ImgscopeError as exc:
            self._post(self._audit_failed, exc.message)
            return
        except Exception as exc:
            self._post(self._audit_failed, f"{type(exc).__name__}: {exc}".splitlines()[0])
            return
        if result is None:
            self._post(self._audit_failed, "the audit module is not installed")
        else:
            self._post(self._audited, *result)

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback`` on the app's thread, unless the user quit meanwhile (then nothing is left to show)."""
        with contextlib.suppress(RuntimeError):  # raised when the app is no longer running
            self.call_from_thread(callback, *args)

    def _audit_failed(self, message: str) -> None:
        self.audit_state = AUDIT_FAILED
        self.notify(f"audit of file contents failed: {message}", severity="warning", markup=False, timeout=10)
        self._audit_shown()

    def _audit_shown(self) -> None:
        try:
            browser = self.browser
        except LookupError:
            return
        browser.findings_changed()

    def _audited(self, findings: list[Finding], total: int) -> None:
        assert self.model is not None
        self.model.set_findings(findings, total, content_audited=True)
        self.audit_state = AUDIT_DONE
        self._audit_shown()

    def _handle_exception(self, error: Exception) -> None:
        """A bug ends the app quietly: kept in :attr:`crash` for the CLI's one line, no traceback on screen.

        Under a test pilot the exception is still re-raised by textual (it
        keeps the first one in ``_exception``), so tests see the failure.
        """
        self.crash = error
        self._return_code = 1
        if self._exception is None:
            self._exception = error
            self._exception_event.set()
        self._close_messages_no_wait()

    def _failed(self, exc: ImgscopeError) -> None:
        self.error = exc
        self.exit(2, return_code=2)

    @property
    def browser(self) -> BrowserScreen:
        """The browser screen (for tests and tools driving the app)."""
        for screen in reversed(self.screen_stack):
            if isinstance(screen, BrowserScreen):
                return screen
        raise LookupError("the browser is not shown yet")
