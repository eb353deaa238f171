"""The explorer's own widgets: the file tree (a line-API scroll view) and key-friendly tables.

The tree is drawn line by line from a :class:`~imgscope.explore.model.TreeSnapshot`:
only the rows on screen are turned into text, so a tree of 25,000 rows costs
the same to draw as one of 25.  Moving the cursor redraws two lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import DataTable

from imgscope.explore.model import ExploreModel, RowInfo, TreeSnapshot, permissions
from imgscope.model import SYMLINK
from imgscope.render.console import KIND_MARK, KIND_STYLE
from imgscope.units import format_size

#: Width of the fold glyph column ("▾ ", "▸ " or blanks) after the guides.
FOLD_WIDTH = 2
SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan"}


def fit_columns(
    widths: dict[str, int], drop_order: tuple[str, ...], available: int, flexible: str | None = None, flex_min: int = 0
) -> tuple[list[str], int]:
    """The columns (in their order) that fit ``available`` cells, and the width left for the flexible one.

    Why: a table wider than its pane scrolls sideways, and then the numbers
    at its right are what the user does not see.  Columns are dropped in
    ``drop_order`` until the rest fits whole (each costs its width plus a
    cell of padding on each side); the flexible column (a free text such as
    an instruction) takes what remains, at least ``flex_min``.
    """
    kept = list(widths)
    pad = 2

    def need() -> int:
        return sum(widths[k] + pad for k in kept if k != flexible) + ((flex_min + pad) if flexible in kept else 0)

    for key in drop_order:
        if need() <= available:
            break
        if key in kept:
            kept.remove(key)
    fixed = sum(widths[k] + pad for k in kept if k != flexible)
    flex = max(flex_min, available - fixed - pad) if flexible in kept else 0
    if flexible in kept:
        flex = min(flex, widths[flexible])
    return kept, flex


@lru_cache(maxsize=256)
def _style(text: str) -> Style:
    return Style.parse(text)


@dataclass(frozen=True, slots=True)
class Columns:
    """Which optional columns the tree shows."""

    size: bool = True
    perms: bool = True

    def prefix_width(self) -> int:
        """Width of the columns before the tree guides (mark, perms, owner, size)."""
        return 2 + (23 if self.perms else 0) + (10 if self.size else 0)


def header_text(columns: Columns) -> str:
    """The column titles drawn above the tree."""
    out = "  "
    if columns.perms:
        out += f"{'Permission':<10} {'UID:GID':>11} "
    if columns.size:
        out += f"{'Size':>9} "
    return out + "Name"


class FileTree(ScrollView, can_focus=True):
    """The file tree of one step: marks, optional columns, folding, a cursor, mouse support."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup,ctrl+b", "page(-1)", "Page up", show=False),
        Binding("pagedown,ctrl+f", "page(1)", "Page down", show=False),
        Binding("home,g", "edge(0)", "Top", show=False),
        Binding("end,G", "edge(1)", "Bottom", show=False),
        Binding("left,h", "collapse_or_parent", "Fold / parent", show=False),
        Binding("right,l", "expand_or_child", "Unfold / child", show=False),
        Binding("space", "toggle_fold", "Fold", show=True),
        Binding("enter", "open", "Open", show=False),
    ]

    DEFAULT_CSS = """
    FileTree { background: $surface; }
    """

    class Highlighted(Message):
        """The cursor moved to another node (or the rows changed under it)."""

        def __init__(self, tree: FileTree, node: int | None) -> None:
            super().__init__()
            self.tree = tree
            self.node = node

    class Toggled(Message):
        """The user asked to fold or unfold ``node``."""

        def __init__(self, tree: FileTree, node: int) -> None:
            super().__init__()
            self.tree = tree
            self.node = node

    class Opened(Message):
        """The user asked to open the file at ``node`` (enter or double click)."""

        def __init__(self, tree: FileTree, node: int) -> None:
            super().__init__()
            self.tree = tree
            self.node = node

    def __init__(self, model: ExploreModel, iec: bool = False, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model = model
        self.iec = iec
        self.columns = Columns()
        self.snap: TreeSnapshot | None = None
        self.cursor = 0
        self._name_width = max((len(n) for n in model.names), default=10)
        #: Rows turned into text so far: the work a keypress causes, counted (tests, benchmarks).
        self.lines_drawn = 0

    # ------------------------------------------------------------------ data

    @property
    def node(self) -> int | None:
        """The node under the cursor."""
        if self.snap is None or not len(self.snap):
            return None
        return self.snap.nodes[self.cursor]

    def set_snapshot(self, snap: TreeSnapshot, keep: int | None = None) -> None:
        """Show new rows, keeping the cursor on ``keep`` (or its nearest shown ancestor)."""
        self.snap = snap
        row: int | None = None
        node = keep
        while node is not None and node > 0:
            row = snap.index_of(node)
            if row is not None:
                break
            node = self.model.parent[node]
        if row is None:
            row = min(self.cursor, max(len(snap) - 1, 0))
        self.cursor = row
        self._update_virtual_size()
        self._scroll_cursor_into_view()
        self.refresh()
        self.post_message(self.Highlighted(self, self.node))

    def set_columns(self, columns: Columns) -> None:
        """Show or hide the optional columns."""
        self.columns = columns
        self._update_virtual_size()
        self.refresh()

    def _update_virtual_size(self) -> None:
        rows = len(self.snap) if self.snap is not None else 0
        guide = 4 * max(self.model.max_depth, 1)
        width = self.columns.prefix_width() + guide + FOLD_WIDTH + self._name_width + 24
        self.virtual_size = Size(width, rows)

    # ------------------------------------------------------------------ drawing

    def row_info(self, row: int) -> RowInfo:
        assert self.snap is not None
        return self.model.row_info(self.snap, row)

    def row_text(self, row: int) -> list[tuple[str, str]]:
        """The (text, style) runs of one row, before cropping: shared by drawing and tests."""
        info = self.row_info(row)
        runs: list[tuple[str, str]] = []
        kind = info.kind
        style = KIND_STYLE.get(kind, "") if kind else ""
        runs.append(((KIND_MARK[kind] if kind else " ") + " ", style))
        entry = info.entry
        if self.columns.perms:
            owner = f"{entry.uid}:{entry.gid}" if entry is not None else ""
            runs.append((f"{permissions(entry) if entry is not None else '':<10} {owner:>11} ", "dim"))
        if self.columns.size:
            size = format_size(info.size, self.iec) if entry is not None or info.size else ""
            runs.append((f"{size:>9} ", ""))
        runs.append((info.guide, "dim"))
        if info.expandable:
            runs.append(("▾ " if info.expanded else "▸ ", "bold"))
        else:
            runs.append(("  ", ""))
        name_style = style
        if info.is_dir:
            name_style = (name_style + " bold").strip()
        if info.ghost:
            name_style = (name_style + " strike").strip()
        runs.append((info.name + ("/" if info.is_dir else ""), name_style))
        if entry is not None and entry.type == SYMLINK:
            runs.append((f" → {entry.link}", "dim"))
        for finding in info.findings[:1]:
            sev = finding.severity.lower()
            more = f" (+{len(info.findings) - 1})" if len(info.findings) > 1 else ""
            runs.append((f"  ⚑ {sev or 'finding'}: {finding.title}{more}", SEVERITY_STYLE.get(sev, "red")))
        return runs

    def plain_line(self, row: int) -> str:
        """One row as plain text (what a screen reader or a test sees)."""
        return "".join(text for text, _style in self.row_text(row)).rstrip()

    def render_line(self, y: int) -> Strip:
        self.lines_drawn += 1
        scroll_x, scroll_y = self.scroll_offset
        row = scroll_y + y
        width = self.size.width
        base = self.rich_style
        if self.snap is None or row >= len(self.snap):
            return Strip.blank(width, base)
        selected = row == self.cursor
        highlight = (
            Style(reverse=True) if selected and self.has_focus else Style(bgcolor="grey23") if selected else None
        )
        segments = []
        for text, style in self.row_text(row):
            seg_style = base + _style(style) if style else base
            if highlight is not None:
                seg_style = seg_style + highlight
            segments.append(Segment(text, seg_style))
        fill = base + highlight if highlight is not None else base
        strip = Strip(segments).crop_extend(scroll_x, scroll_x + width, fill)
        return strip

    # ------------------------------------------------------------------ cursor

    def _scroll_cursor_into_view(self) -> None:
        height = max(self.size.height, 1)
        top = int(self.scroll_offset.y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False, immediate=True)

    def move_to(self, row: int) -> None:
        """Put the cursor on ``row`` (clamped), redraw the two lines, announce the node."""
        if self.snap is None or not len(self.snap):
            return
        row = max(0, min(row, len(self.snap) - 1))
        if row == self.cursor:
            return
        old = self.cursor
        self.cursor = row
        self.refresh_line(old)
        self.refresh_line(row)
        self._scroll_cursor_into_view()
        self.post_message(self.Highlighted(self, self.node))

    def select_node(self, node: int) -> bool:
        """Move the cursor to ``node`` if it is shown."""
        if self.snap is None:
            return False
        row = self.snap.index_of(node)
        if row is None:
            return False
        self.move_to(row)
        self._scroll_cursor_into_view()
        return True

    def action_cursor(self, delta: int) -> None:
        self.move_to(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self.move_to(self.cursor + direction * max(self.size.height - 1, 1))

    def action_edge(self, end: int) -> None:
        self.move_to(len(self.snap) - 1 if end and self.snap is not None else 0)

    def action_toggle_fold(self) -> None:
        if self.snap is None or not len(self.snap):
            return
        if self.snap.expandable(self.cursor):
            self.post_message(self.Toggled(self, self.snap.nodes[self.cursor]))

    def action_collapse_or_parent(self) -> None:
        if self.snap is None or not len(self.snap):
            return
        if self.snap.expanded(self.cursor):
            self.post_message(self.Toggled(self, self.snap.nodes[self.cursor]))
            return
        parent = self.model.parent[self.snap.nodes[self.cursor]]
        if parent > 0:
            self.select_node(parent)

    def action_expand_or_child(self) -> None:
        if self.snap is None or not len(self.snap):
            return
        if self.snap.expanded(self.cursor):
            self.move_to(self.cursor + 1)
        elif self.snap.expandable(self.cursor):
            self.post_message(self.Toggled(self, self.snap.nodes[self.cursor]))

    def action_open(self) -> None:
        if self.snap is None or not len(self.snap):
            return
        if self.snap.expandable(self.cursor):
            self.post_message(self.Toggled(self, self.snap.nodes[self.cursor]))
        else:
            self.post_message(self.Opened(self, self.snap.nodes[self.cursor]))

    # ------------------------------------------------------------------ mouse

    def on_click(self, event: events.Click) -> None:
        if self.snap is None:
            return
        offset = event.get_content_offset(self)
        if offset is None:
            return
        row = int(self.scroll_offset.y) + offset.y
        if not 0 <= row < len(self.snap):
            return
        self.focus()
        x = int(self.scroll_offset.x) + offset.x
        fold_at = self.columns.prefix_width() + len(self.snap.guide(row))
        expandable = self.snap.expandable(row)
        was_selected = row == self.cursor
        self.move_to(row)
        if expandable and (fold_at <= x < fold_at + FOLD_WIDTH or was_selected or event.chain > 1):
            self.post_message(self.Toggled(self, self.snap.nodes[row]))
        elif not expandable and event.chain > 1:
            self.post_message(self.Opened(self, self.snap.nodes[row]))


class KeyTable(DataTable[Text]):
    """A row-cursor DataTable that also moves with j/k, as every pane of the explorer does."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "scroll_top", "Top", show=False),
        Binding("G", "scroll_bottom", "Bottom", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
