"""``imgscope shared`` for people (rich tables) and machines (JSON).

A pairwise matrix reads well for a handful of images and not at all for a
host's fifty, so text shows it only up to :data:`MATRIX_LIMIT` images and
always shows the grouped table; JSON always carries the matrix.  The JSON
shape is published as ``imgscope/schema/shared.schema.json``.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group as RichGroup
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from imgscope.analysis.shared import SharedReport
from imgscope.units import format_size

SCHEMA_VERSION = 1
MATRIX_LIMIT = 6


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def to_dict(report: SharedReport) -> dict[str, Any]:
    """The whole ``shared --json`` document."""
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "imgscope",
        "command": "shared",
        "images": [
            {
                "index": i,
                "name": m.name,
                "aliases": list(m.aliases),
                "reference": m.image.reference,
                "id": m.image.image_id,
                "tags": list(m.image.tags),
                "size": m.size,
                "shared_size": m.shared,
                "unique_size": m.unique,
                "layer_count": len(m.chain_ids),
                "shared_layers": m.shared_layers,
                "group": m.group,
                "chain_ids": list(m.chain_ids),
            }
            for i, m in enumerate(report.members)
        ],
        "layers": [
            {
                "chain_id": layer.chain_id,
                "diff_id": layer.diff_id,
                "index": layer.index,
                "size": layer.size,
                "instruction": layer.instruction,
                "images": list(layer.images),
                "shared": layer.shared,
            }
            for layer in report.layers
        ],
        "matrix": [list(row) for row in report.matrix],
        "groups": [
            {
                "group": g.number,
                "images": list(g.images),
                "base_layers": g.base_layers,
                "base_chain_id": g.base_chain_id,
                "base_size": g.base_size,
                "base_instruction": g.base_instruction or None,
                "total": g.total,
                "stored": g.stored,
                "savings": g.savings,
            }
            for g in report.groups
        ],
        "same_content": [
            {
                "diff_id": s.diff_id,
                "size": s.size,
                "instruction": s.instruction,
                "chains": s.chains,
                "extra_bytes": s.extra_bytes,
                "occurrences": [{"image": o.image, "layer": o.layer, "chain_id": o.chain_id} for o in s.occurrences],
            }
            for s in report.same_content
        ],
        "totals": {
            "images": len(report.members),
            "layers": len(report.layers),
            "shared_layers": report.shared_layer_count,
            "total": report.total,
            "stored": report.stored,
            "savings": report.savings,
        },
        "warnings": list(report.warnings),
    }


def images_table(report: SharedReport, iec: bool = False) -> Table:
    """Each image's size split into shared and unique bytes (``docker system df -v``'s columns)."""
    table = Table(title="Images", title_justify="left")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("Image", overflow="fold", ratio=1, min_width=16)
    table.add_column("Size", justify="right", no_wrap=True)
    table.add_column("Shared", justify="right", no_wrap=True)
    table.add_column("Unique", justify="right", no_wrap=True)
    table.add_column("Layers", justify="right", no_wrap=True)
    table.add_column("Group", justify="right", no_wrap=True)
    for i, m in enumerate(report.members):
        name = Text(m.name + (f" (= {', '.join(m.aliases)})" if m.aliases else ""))
        name.append("\n" + m.image.image_id.removeprefix("sha256:")[:12], style="dim")
        table.add_row(
            str(i),
            name,
            format_size(m.size, iec),
            format_size(m.shared, iec),
            format_size(m.unique, iec),
            f"{m.shared_layers}/{len(m.chain_ids)} shared",
            str(m.group),
        )
    return table


def matrix_table(report: SharedReport, iec: bool = False) -> Table:
    """Bytes each pair of images shares (the diagonal is each image's own size)."""
    table = Table(title="Shared bytes, image by image", title_justify="left")
    table.add_column("#", justify="right", no_wrap=True)
    for j in range(len(report.members)):
        table.add_column(str(j), justify="right", no_wrap=True)
    for i, row in enumerate(report.matrix):
        cells: list[Text | str] = []
        for j, value in enumerate(row):
            if i == j:
                cells.append(Text(format_size(value, iec), style="dim"))
            else:
                cells.append(Text(format_size(value, iec) if value else "-", style="" if value else "dim"))
        table.add_row(str(i), *cells)
    return table


def groups_table(report: SharedReport, iec: bool = False) -> Table:
    """Images grouped by base layer, their longest common chain and the bytes sharing saves."""
    table = Table(title="Groups (same base layer)", title_justify="left")
    table.add_column("Group", justify="right", no_wrap=True)
    table.add_column("Images", overflow="fold")
    table.add_column("Common base", overflow="fold")
    table.add_column("Total", justify="right", no_wrap=True)
    table.add_column("Stored", justify="right", no_wrap=True)
    table.add_column("Savings", justify="right", no_wrap=True)
    for g in sorted(report.groups, key=lambda g: (-g.savings, g.number)):
        names = "\n".join(f"{i}: {report.members[i].name}" for i in g.images)
        if g.base_layers:
            plural = "s" if g.base_layers != 1 else ""
            base = Text(f"{g.base_layers} layer{plural}, {format_size(g.base_size, iec)}\n")
            base.append(f"top: {g.base_instruction}", style="dim")
        else:
            base = Text("nothing shared", style="dim")
        table.add_row(
            str(g.number),
            Text(names),
            base,
            format_size(g.total, iec),
            format_size(g.stored, iec),
            format_size(g.savings, iec) if g.savings else "-",
        )
    return table


def same_content_table(report: SharedReport, iec: bool = False) -> Table:
    """Layers whose bytes recur on another base: not shared, stored once per ChainID."""
    table = Table(
        title="Same content, different base (identical DiffID, different ChainID: not shared)",
        title_justify="left",
    )
    table.add_column("DiffID", no_wrap=True)
    table.add_column("Size", justify="right", no_wrap=True)
    table.add_column("Stored again", justify="right", no_wrap=True)
    table.add_column("Where (image, layer)", overflow="fold", min_width=16, ratio=1)
    table.add_column("Instruction", overflow="fold", min_width=16, ratio=1)
    for s in report.same_content:
        where = "\n".join(f"{o.image}: {report.members[o.image].name} L{o.layer}" for o in s.occurrences)
        table.add_row(
            s.diff_id.removeprefix("sha256:")[:12],
            format_size(s.size, iec),
            format_size(s.extra_bytes, iec),
            Text(where),
            Text(s.instruction),
        )
    return table


def totals_text(report: SharedReport, iec: bool = False) -> Text:
    """One line: how much the set would take alone, what is stored, what sharing saves."""
    return Text(
        f"{len(report.members)} images, {len(report.layers)} distinct layers ({report.shared_layer_count} shared): "
        f"{format_size(report.total, iec)} if stored separately, {format_size(report.stored, iec)} stored, "
        f"{format_size(report.savings, iec)} saved by sharing ({_percent(report.savings, report.total)})",
        style="bold",
    )


def render(report: SharedReport, iec: bool = False) -> RenderableType:
    """The whole text report."""
    parts: list[RenderableType] = [images_table(report, iec)]
    if 1 < len(report.members) <= MATRIX_LIMIT:
        parts.append(matrix_table(report, iec))
    parts.append(groups_table(report, iec))
    if report.same_content:
        parts.append(same_content_table(report, iec))
    parts.append(totals_text(report, iec))
    return RichGroup(*parts)
