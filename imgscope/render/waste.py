"""The waste section of ``inspect`` for people: a compact summary built from the JSON-ready dict.

It reads the dict :func:`imgscope.analysis.waste.to_dict` returns rather than
the dataclasses, so a saved ``inspect --json`` report renders the same way as a
live analysis, and nothing here recomputes anything.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from imgscope.render.console import Fitted
from imgscope.units import format_size

#: How many rows each list shows; the JSON report keeps everything.
ROWS = 10


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def _headline(w: dict[str, Any], iec: bool) -> Text:
    """One headline figure said in words, and dive's figure on one labelled, dimmed line.

    Why one: two efficiencies side by side (imgscope's and dive's) left people
    unsure which to trust.  The headline is imgscope's (bytes stored that the
    final image does not show); dive counts differently (see docs/waste.md),
    so its figure is only what dive *would report*; JSON keeps all of them.
    """
    text = Text()
    wasted = int(w["wasted_bytes"])
    text.append(f"Efficiency {_pct(float(w['efficiency']))}: ", style="bold")
    text.append(f"wasted {format_size(wasted, iec)}", style="bold red" if wasted else "bold green")
    text.append(f" of {format_size(int(w['total_stored']), iec)} stored")
    text.append(f" ({wasted:,} bytes)\n" if wasted else "\n")
    text.append(
        f"dive would report efficiency {_pct(float(w['dive_efficiency']))}, "
        f"wasted {format_size(int(w['dive_wasted_bytes']), iec)}",
        style="dim",
    )
    return text


def _causes(w: dict[str, Any], iec: bool) -> RenderableType | None:
    rows = [(k, v) for k, v in w["by_cause"].items() if v["bytes"] or v["copies"]]
    if not rows:
        return None
    table = Table(title="Wasted by cause", title_justify="left")
    table.add_column("Cause")
    table.add_column("Bytes", justify="right")
    table.add_column("Copies", justify="right")
    for _, value in sorted(rows, key=lambda kv: -int(kv[1]["bytes"])):
        table.add_row(str(value["label"]), format_size(int(value["bytes"]), iec), f"{int(value['copies']):,}")
    return Fitted(table)


def _paths(w: dict[str, Any], iec: bool) -> RenderableType | None:
    rows = w["top_paths"][:ROWS]
    if not rows:
        return None
    table = Table(title="Top wasting paths", title_justify="left")
    table.add_column("Wasted", justify="right")
    table.add_column("Stored", justify="right")
    table.add_column("Layers")
    table.add_column("Path", overflow="fold")
    for p in rows:
        table.add_row(
            format_size(int(p["bytes_wasted"]), iec),
            f"{int(p['times_stored'])}x",
            ",".join(str(n) for n in p["layers"]),
            Text(str(p["path"])),
        )
    return Fitted(table, drop=("Layers",))


def _steps(w: dict[str, Any], iec: bool) -> RenderableType | None:
    rows = [s for s in w["steps"] if s["wasted"] or s["hidden"]]
    if not rows:
        return None
    hidden_rows = 0
    if len(rows) > ROWS:
        # The steps that matter most, still shown in build order.
        keep = sorted(rows, key=lambda s: -(int(s["wasted"]) + int(s["hidden"])))[:ROWS]
        hidden_rows = len(rows) - ROWS
        rows = [s for s in rows if s in keep]
    table = Table(
        title="Waste per step",
        title_justify="left",
        caption="wasted: what the step added that the final image no longer shows; hides: lower bytes it hid",
        caption_justify="left",
    )
    table.add_column("Layer", justify="right")
    table.add_column("Stored", justify="right")
    table.add_column("Wasted", justify="right")
    table.add_column("Hides", justify="right")
    table.add_column("Instruction", no_wrap=True, overflow="ellipsis")
    for s in rows:
        stored = int(s["stored"])
        wasted = int(s["wasted"])
        share = f" ({_pct(wasted / stored)})" if stored and wasted else ""
        table.add_row(
            str(s["layer"]),
            format_size(stored, iec),
            (format_size(wasted, iec) + share) if wasted else "-",
            format_size(int(s["hidden"]), iec) if s["hidden"] else "-",
            Text(str(s["instruction"])),
        )
    if hidden_rows:
        table.caption = f"... {hidden_rows} more steps in --json; " + str(table.caption)
    return Fitted(table, drop=("Hides",))


def _junk(w: dict[str, Any], iec: bool) -> RenderableType | None:
    rows = w["junk"]
    if not rows:
        return None
    table = Table(title=f"Junk left in the image: {format_size(int(w['junk_bytes']), iec)}", title_justify="left")
    table.add_column("Bytes", justify="right")
    table.add_column("Files", justify="right")
    table.add_column("Layer", justify="right")
    table.add_column("What")
    table.add_column("Path", overflow="fold")
    for j in rows[:ROWS]:
        table.add_row(
            format_size(int(j["bytes"]), iec),
            f"{int(j['files']):,}",
            str(j["layer"]),
            str(j["description"]),
            Text(str(j["path"])),
        )
    if len(rows) > ROWS:
        table.caption = f"... {len(rows) - ROWS} more in --json"
        table.caption_justify = "left"
    return Fitted(table, drop=("What",))


def _advice(w: dict[str, Any]) -> RenderableType | None:
    items = w["advice"]
    if not items:
        return None
    lines = [Text("Advice", style="bold")]
    for n, a in enumerate(items[:ROWS], 1):
        line = Text(f"{n}. ")
        line.append(str(a["text"]))
        lines.append(line)
    if len(items) > ROWS:
        lines.append(Text(f"... {len(items) - ROWS} more in --json", style="dim"))
    return Group(*lines)


def render(waste: dict[str, Any], iec: bool = False) -> RenderableType:
    """The waste summary: headline figures, causes, paths, steps, junk and advice."""
    parts: list[RenderableType] = [_headline(waste, iec)]
    for piece in (_causes(waste, iec), _steps(waste, iec), _paths(waste, iec), _junk(waste, iec), _advice(waste)):
        if piece is not None:
            parts.append(piece)
    return Group(*parts)
