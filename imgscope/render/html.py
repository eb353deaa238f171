"""Self-contained HTML reports (``--html FILE`` of inspect, diff, ci and audit).

One file that opens anywhere, offline, and can be kept as a CI artifact: the
stylesheet and the script (``assets/report.css``, ``assets/report.js``) are
inlined, the report's data is embedded as JSON in a
``<script type="application/json">`` block, and a Content-Security-Policy
``<meta>`` allows nothing but those two inline blocks (by hash) and ``data:``
icons: the page cannot load anything from the network, and a file name that
looks like markup can neither run nor break out of the data block.  The
script draws every view from the embedded data and only ever inserts text
(``textContent``), never markup.

The embedded data is each command's ``--json`` document, trimmed where it
grows with the number of files (so that the page of an 800 MB image stays
well under 1.5 MB): ``inspect`` leaves out the complete file list and each
layer's change list, and adds a treemap tree in which small items are folded;
``diff`` keeps the ``MAX_DIFF_FILES`` largest file differences.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from importlib import resources
from typing import TYPE_CHECKING, Any

from imgscope.model import DIR

if TYPE_CHECKING:
    from imgscope.analysis.audit import AuditReport
    from imgscope.analysis.diff import ImageDiff
    from imgscope.analysis.rules import CiReport
    from imgscope.stack import Stack

#: Version of the embedded document (``data.html_schema``): bump on an incompatible change.
HTML_SCHEMA_VERSION = 1
#: At most this many treemap nodes are embedded; the rest are folded into "N smaller items".
#: Levels of directories the treemap keeps (the page draws at most 24).
MAX_TREEMAP_DEPTH = 32
MAX_TREEMAP_NODES = 20_000
#: A node is kept when it holds at least this share of the image's bytes or of one step's bytes.
TREEMAP_SHARE = 1 / 2500
#: Largest files listed per step (the list shown when a step is picked).
TOP_PER_LAYER = 25
#: Largest file differences embedded in a diff page (the JSON has them all).
MAX_DIFF_FILES = 2_000


def embed_json(data: Any) -> str:
    """JSON text that is safe inside a ``<script>`` element.

    ``<``, ``>`` and ``&`` are written as ``\\u`` escapes so that no file name
    can close the element (``</script>``) or open a comment; ``ensure_ascii``
    escapes everything else outside ASCII, U+2028 and U+2029 included, and the
    lone surrogates that stand for file names that are not UTF-8.
    """
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _asset(name: str) -> str:
    return resources.files("imgscope.render").joinpath("assets", name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def page(kind: str, title: str, data: dict[str, Any]) -> str:
    """The whole HTML document of one report: ``kind`` picks the view the script draws."""
    from imgscope import __version__
    from imgscope.render.console import printable

    css = _asset("report.css")
    js = _asset("report.js")
    policy = (
        f"default-src 'none'; style-src {_csp_hash(css)}; script-src {_csp_hash(js)}; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    document = {"html_schema": HTML_SCHEMA_VERSION, "kind": kind, "report": data}
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="imgscope {html.escape(__version__)}">\n'
        f"<title>{html.escape(printable(title))}</title>\n"
        '<link rel="icon" href="data:,">\n'
        f"<style>{css}</style>\n"
        "</head>\n"
        f'<body data-kind="{html.escape(kind)}">\n'
        "<noscript>This report is drawn by JavaScript; its data is the JSON in the "
        "imgscope-data element of this file.</noscript>\n"
        '<main id="app"></main>\n'
        f'<script type="application/json" id="imgscope-data">{embed_json(document)}</script>\n'
        f"<script>{js}</script>\n"
        "</body>\n</html>\n"
    )


def _image_title(reference: str, tags: list[str] | tuple[str, ...]) -> str:
    return tags[0] if tags else reference


# --------------------------------------------------------------------------- inspect


class _Node:
    """A treemap node while the tree is built (a plain mutable builder, not part of any result)."""

    __slots__ = ("by_layer", "children", "depth", "files", "layer", "name", "size")

    def __init__(self, name: str, depth: int) -> None:
        self.name = name
        self.depth = depth
        self.size = 0
        self.files = 0
        self.by_layer: dict[int, int] = {}
        self.children: dict[str, _Node] | None = None
        self.layer: int | None = None


def treemap_tree(stack: Stack, max_nodes: int = MAX_TREEMAP_NODES, share: float = TREEMAP_SHARE) -> dict[str, Any]:
    """The final tree by size, for the treemap: ``{"n", "s", "c": [...]}`` from the root.

    Only entries with bytes are drawn (directories, empty files, devices and
    hard links weigh 0).  A file is ``{"n": name, "s": size, "l": layer that
    last wrote it}``; a directory ``{"n", "s", "c": children}``.  A node is
    kept when it holds at least ``share`` of the image's bytes, or of the
    final bytes of one step (so that a small step still shows its own files
    when it is picked), most important first up to ``max_nodes``; the others
    of a directory become one ``{"n", "s", "f": count, "b": {layer: bytes}}``.
    Top-level entries are never folded.
    """
    root = _Node("/", 0)
    root.children = {}
    for path in stack.final:
        final = stack.final[path]
        entry = final.entry
        if entry.type == DIR or entry.size <= 0:
            continue
        node = root
        parts = path.strip("/").split("/")
        for depth, part in enumerate(parts, 1):
            node.size += entry.size
            node.files += 1
            node.by_layer[final.layer] = node.by_layer.get(final.layer, 0) + entry.size
            if node.children is None:
                node.children = {}
            child = node.children.get(part)
            if child is None:
                child = node.children[part] = _Node(part, depth)
            node = child
        node.size += entry.size
        node.files += 1
        node.by_layer[final.layer] = node.by_layer.get(final.layer, 0) + entry.size
        node.layer = final.layer
    layer_totals = root.by_layer
    total = root.size or 1

    def importance(node: _Node) -> float:
        best = node.size / total
        for layer, size in node.by_layer.items():
            best = max(best, size / layer_totals[layer])
        return best

    ranked: list[tuple[float, int, int, _Node]] = []
    stack_: list[_Node] = [root]
    while stack_:
        node = stack_.pop()
        weight = importance(node)
        if weight >= share or node is root:
            ranked.append((-weight, node.depth, len(ranked), node))
            # Deeper levels are folded: the page draws no deeper, and _emit recurses per level kept.
            if node.children and node.depth < MAX_TREEMAP_DEPTH:
                stack_.extend(node.children.values())
    ranked.sort(key=lambda item: item[:3])
    # Ancestors weigh at least as much as their descendants and sort first on a tie: any prefix is a tree.
    kept = {id(item[3]) for item in ranked[:max_nodes]}
    # Every top-level entry gets its own rectangle, however small: they are few and name the image's layout.
    kept.update(id(child) for child in root.children.values())
    return _emit(root, kept)


def _emit(node: _Node, kept: set[int]) -> dict[str, Any]:
    if node.children is None:
        return {"n": node.name, "s": node.size, "l": node.layer}
    children: list[dict[str, Any]] = []
    count = size = 0
    by_layer: dict[int, int] = {}
    for child in sorted(node.children.values(), key=lambda c: (-c.size, c.name)):
        if id(child) in kept:
            children.append(_emit(child, kept))
            continue
        # Too small to draw: summed into one node, per layer, so that picking a step still adds up.
        count += child.files
        size += child.size
        for layer, part in child.by_layer.items():
            by_layer[layer] = by_layer.get(layer, 0) + part
    if count:
        folded = {str(k): v for k, v in sorted(by_layer.items())}
        children.append({"n": f"({count} smaller files)", "s": size, "f": count, "b": folded})
    return {"n": node.name, "s": node.size, "c": children}


def top_per_layer(stack: Stack, count: int = TOP_PER_LAYER) -> dict[str, list[dict[str, Any]]]:
    """The largest files each step last wrote (keys are layer numbers as strings, as in JSON)."""
    from imgscope.render.json_report import entry_dict

    by_layer: dict[int, list[Any]] = {}
    for final in stack.final.values():
        if final.entry.type != DIR:
            by_layer.setdefault(final.layer, []).append(final)
    out: dict[str, list[dict[str, Any]]] = {}
    for layer in sorted(by_layer):
        files = sorted(by_layer[layer], key=lambda f: (-f.entry.size, f.entry.path))[:count]
        out[str(layer)] = [entry_dict(f.entry, f.layer) for f in files]
    return out


def inspect_data(stack: Stack, top: int = 25, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``inspect --json`` report without its per-file lists, plus the treemap and per-step tops."""
    from imgscope.render.json_report import inspect_report

    report = inspect_report(stack, top=top, extra=extra, lazy=True)
    del report["files"]
    for layer in report["layers"]:
        del layer["changes"]
    report["treemap"] = treemap_tree(stack)
    report["top_per_layer"] = top_per_layer(stack)
    return report


def inspect_page(stack: Stack, extra: dict[str, Any] | None = None, top: int = 25) -> str:
    """The inspect report: steps, treemap, waste ledger, largest files."""
    image = stack.image
    return page(
        "inspect", f"imgscope inspect: {_image_title(image.reference, image.tags)}", inspect_data(stack, top, extra)
    )


# --------------------------------------------------------------------------- diff, ci, audit


def diff_data(result: ImageDiff, max_files: int = MAX_DIFF_FILES) -> dict[str, Any]:
    """The ``diff --json`` document, with the largest ``max_files`` file differences and without their entries.

    Each difference keeps its path, kind, sizes, layers and changed fields;
    the two full entries (``a``, ``b``: mode, owner, hash...) are left out,
    as are the smaller differences past ``max_files``: ``files_total`` says
    how many there are, and ``diff --json`` has them all.
    """
    from imgscope.render.diff import to_dict

    data = to_dict(result)
    files: list[dict[str, Any]] = data["files"]
    data["files_total"] = len(files)
    if len(files) > max_files:
        order = sorted(range(len(files)), key=lambda i: (-abs(files[i]["delta"]), -_largest(files[i]), i))
        files = [files[i] for i in sorted(order[:max_files])]
    data["files"] = [{k: v for k, v in f.items() if k not in ("a", "b")} for f in files]
    return data


def _largest(file: dict[str, Any]) -> int:
    return max(file["size_a"] or 0, file["size_b"] or 0)


def diff_page(result: ImageDiff) -> str:
    """The diff report: aligned steps side by side, then the differing files."""
    a, b = result.a.image, result.b.image
    title = f"imgscope diff: {_image_title(a.reference, a.tags)} vs {_image_title(b.reference, b.tags)}"
    return page("diff", title, diff_data(result))


def ci_page(report: CiReport) -> str:
    """The ci report: the verdict and every rule's result (the artifact a CI job keeps)."""
    from imgscope.render.ci import report_dict

    data = report_dict(report)
    image = data.get("image", {})
    return page("ci", f"imgscope ci: {_image_title(image.get('reference', ''), image.get('tags', []))}", data)


def audit_page(report: AuditReport) -> str:
    """The audit report: findings, with evidence already redacted by the analysis."""
    from imgscope.render.audit import to_dict

    data = to_dict(report)
    image = data.get("image", {})
    return page("audit", f"imgscope audit: {_image_title(image.get('reference', ''), image.get('tags', []))}", data)
