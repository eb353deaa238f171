"""``imgscope explore``: the model against independent oracles, the app driven by textual's Pilot, a tmux smoke run.

Oracles: the tree of each step is compared with ``stack.build(image, upto=L)``
(the stack applied afresh up to that layer, not the explorer's incremental
lists); the marks of the layer view with the ``inspect --json`` report (and
the real CLI once); file contents with the layer tar read by ``tarfile``.
Screen snapshots are plain-text goldens of the file tree region under
``tests/snapshots/explore/`` (regenerate with ``IMGSCOPE_UPDATE_SNAPSHOTS=1``);
they are checked against the JSON report too, so a wrong golden cannot pass.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import xxhash

pytest.importorskip("textual", reason="textual is not installed")

from typer.testing import CliRunner

from imgscope import globs
from imgscope import stack as stacking
from imgscope.cli import app as cli_app
from imgscope.cli.common import SourceOptions, load_image
from imgscope.explore.app import BrowserScreen, ContentScreen, ExploreApp, HelpScreen
from imgscope.explore.content import read_file
from imgscope.explore.model import (
    CUMULATIVE_VIEW,
    LAYER_VIEW,
    SORT_SIZE,
    ExploreModel,
    TreeOptions,
    compile_filter,
)
from imgscope.explore.widgets import KeyTable
from imgscope.model import ADDED, DIR, REMOVED
from imgscope.render.console import KIND_MARK
from imgscope.render.json_report import inspect_report
from imgscope.stack import classify
from imgscope.units import format_size
from tests import imagebuild as ib

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "sample_images" / "demo-legacy.tar"
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots" / "explore"
SIZE = (160, 48)


# --------------------------------------------------------------------------- helpers


def load_stack(ref: str | Path) -> stacking.Stack:
    return stacking.build(load_image(str(ref), SourceOptions(), quiet=True))


@pytest.fixture(scope="module")
def demo() -> stacking.Stack:
    if not DEMO.exists():
        pytest.skip(f"{DEMO} is missing (run sample_images/build.py)")
    return load_stack(DEMO)


@pytest.fixture(scope="module")
def demo_model(demo: stacking.Stack) -> ExploreModel:
    return ExploreModel.build(demo)


@pytest.fixture(scope="module")
def demo_report(demo: stacking.Stack) -> dict[str, Any]:
    return inspect_report(demo)


def drive(app: ExploreApp, scenario: Callable[[Any], Awaitable[None]], size: tuple[int, int] = SIZE) -> None:
    """Run ``scenario(pilot)`` against ``app`` headless, once the browser is shown."""

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await wait_for_browser(app, pilot)
            await scenario(pilot)

    asyncio.run(main())


async def wait_for_browser(app: ExploreApp, pilot: Any, timeout: float = 60.0) -> BrowserScreen:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for screen in app.screen_stack:
            if isinstance(screen, BrowserScreen):
                await pilot.pause()
                return screen
        await pilot.pause(0.05)
    raise AssertionError("the browser never showed up")


def marked_rows(browser: BrowserScreen) -> dict[str, str]:
    """Path -> change kind of every marked row the tree shows (read from the widget)."""
    tree = browser.file_tree
    assert tree.snap is not None
    out = {}
    for row in range(len(tree.snap)):
        info = tree.row_info(row)
        if info.kind:
            out[info.path] = info.kind
            # The mark is drawn, too, as the first character of the line.
            assert tree.plain_line(row).startswith(KIND_MARK[info.kind]), tree.plain_line(row)
    return out


def shown_paths(browser: BrowserScreen) -> list[str]:
    tree = browser.file_tree
    assert tree.snap is not None
    return [browser.model.paths[n] for n in tree.snap.nodes]


def ancestors(path: str) -> list[str]:
    out = []
    while True:
        path = path.rsplit("/", 1)[0] or "/"
        if path == "/":
            return out
        out.append(path)


def with_ancestors(paths: set[str]) -> set[str]:
    out = set(paths)
    for p in paths:
        out.update(ancestors(p))
    return out


def layer_member_bytes(archive: Path, layer: int, path: str) -> bytes:
    """A file's bytes read straight from the docker-save archive with tarfile (independent of imgscope)."""
    with tarfile.open(archive) as outer:
        manifest = json.loads(outer.extractfile("manifest.json").read())  # type: ignore[union-attr]
        member = outer.getmember(manifest[0]["Layers"][layer])
        if member.issym():
            member = outer.getmember(os.path.normpath(os.path.join(os.path.dirname(member.name), member.linkname)))
        layer_bytes = outer.extractfile(member).read()  # type: ignore[union-attr]
    with tarfile.open(fileobj=io.BytesIO(layer_bytes)) as inner:
        for m in inner.getmembers():
            if "/" + m.name.lstrip("./").rstrip("/") == path:
                return inner.extractfile(m).read()  # type: ignore[union-attr]
    raise KeyError(path)


def screen_region_text(app: ExploreApp, widget: Any) -> list[str]:
    """The characters the compositor drew inside ``widget``'s region (what a terminal would show)."""
    strips = app.screen._compositor.render_strips()
    region = widget.region
    lines = []
    for y in range(region.y, region.y + region.height):
        text = strips[y].text
        lines.append(text[region.x : region.x + region.width].rstrip())
    return lines


# --------------------------------------------------------------------------- the model against the stack


def test_per_step_trees_match_a_fresh_stack(demo: stacking.Stack, demo_model: ExploreModel) -> None:
    for layer in range(len(demo.layers)):
        fresh = stacking.build(demo.image, upto=layer).final
        present = {demo_model.paths[i]: fe for i, fe in enumerate(demo_model.entries[layer]) if fe is not None}
        assert set(present) == set(fresh), layer
        for path, found in present.items():
            expected = fresh[path]
            if expected.entry.type == DIR:
                # A directory re-shipped unchanged is no change: the model keeps the earlier copy.
                assert classify(found.entry, expected.entry) is None
            else:
                assert found == expected, path
        # Directory sizes: the sum of the non-directory sizes below, from the fresh tree.
        for directory in ("/etc", "/tmp", "/app"):
            if directory in fresh:
                below = sum(
                    f.entry.size for p, f in fresh.items() if p.startswith(directory + "/") and f.entry.type != DIR
                )
                assert demo_model.sizes[layer][demo_model.ids[directory]] == below


def test_layer_marks_match_inspect_json(demo_model: ExploreModel, demo_report: dict[str, Any]) -> None:
    for layer in demo_report["layers"]:
        snap = demo_model.snapshot(layer["index"], TreeOptions(), set())
        marks = {}
        for row in range(len(snap)):
            info = demo_model.row_info(snap, row)
            if info.kind:
                marks[info.path] = info.kind
        assert marks == {c["path"]: c["kind"] for c in layer["changes"]}


def test_cumulative_marks_against_base_and_fresh_stacks(demo: stacking.Stack, demo_model: ExploreModel) -> None:
    report = inspect_report(demo)
    base = stacking.build(demo.image, upto=0).final
    for layer in range(1, len(demo.layers)):
        now = stacking.build(demo.image, upto=layer).final
        touched = {c["path"] for item in report["layers"][1 : layer + 1] for c in item["changes"]}
        expected = {}
        for path in touched:
            if path not in now:
                expected[path] = REMOVED
            elif path not in base:
                expected[path] = ADDED
            else:
                kind = classify(base[path].entry, now[path].entry)
                if kind is not None:
                    expected[path] = kind
        snap = demo_model.snapshot(layer, TreeOptions(view=CUMULATIVE_VIEW), set())
        got = {}
        for row in range(len(snap)):
            info = demo_model.row_info(snap, row)
            if info.kind:
                got[info.path] = info.kind
        assert got == expected, layer


def test_filters_hide_and_sort_against_direct_computation(demo: stacking.Stack, demo_model: ExploreModel) -> None:
    final_layer = len(demo.layers) - 1
    final = demo.final
    for pattern, predicate in (
        ("*.txt", lambda p: globs.match("*.txt", p)),
        ("/etc/*", lambda p: globs.match("/etc/*", p)),
        ("re:pass|busy", lambda p: "pass" in p or "busy" in p),
        ("log", lambda p: "log" in p),
    ):
        snap = demo_model.snapshot(final_layer, TreeOptions(pattern=pattern), set())
        shown = [demo_model.paths[n] for n in snap.nodes]
        assert set(shown) == with_ancestors({p for p in final if predicate(p)}), pattern
    # Hide unchanged at layer 2 (rm -rf /tmp/debs): only the removed paths and their parents.
    snap = demo_model.snapshot(2, TreeOptions(hide=frozenset({"unchanged"})), set())
    assert [demo_model.paths[n] for n in snap.nodes] == [
        "/tmp",
        "/tmp/debs",
        "/tmp/debs/pkg1.deb",
        "/tmp/debs/pkg2.deb",
    ]
    # Sort by size: every directory's shown children are in non-increasing size order.
    snap = demo_model.snapshot(final_layer, TreeOptions(sort=SORT_SIZE), set())
    rows = [demo_model.row_info(snap, r) for r in range(len(snap))]
    for r, info in enumerate(rows):
        siblings = [
            x.size
            for x in rows[r:]
            if x.depth == info.depth and demo_model.parent[x.node] == demo_model.parent[info.node]
        ]
        assert siblings == sorted(siblings, reverse=True)
    with pytest.raises(Exception, match="bad regular expression"):
        compile_filter("re:(")


def test_history_and_waste_of_a_path(demo_model: ExploreModel, demo_report: dict[str, Any]) -> None:
    node = demo_model.ids["/etc/passwd"]
    touches = demo_model.history(node)
    expected = [
        (item["index"], c["kind"])
        for item in demo_report["layers"]
        for c in item["changes"]
        if c["path"] == "/etc/passwd"
    ]
    assert [(t.layer, t.kind) for t in touches] == expected
    first, last = touches[0], touches[-1]
    assert first.wasted and first.hidden_by == last.layer and first.wasted_bytes == first.entry.size  # type: ignore[union-attr]
    assert not last.wasted
    assert demo_model.wasted_jumps(node) == (first.layer, last.layer)


# --------------------------------------------------------------------------- the app, driven by Pilot


def test_moving_between_steps_marks_what_inspect_json_lists(
    demo_model: ExploreModel, demo_report: dict[str, Any]
) -> None:
    app = ExploreApp(model=demo_model)

    async def scenario(pilot: Any) -> None:
        browser = app.browser
        steps = browser.query_one("#steps", KeyTable)
        assert app.focused is steps
        seen_layers = []
        for k, row in enumerate(demo_model.steps):
            if k:
                await pilot.press("down")
            assert browser.step == k
            marks = marked_rows(browser)
            if row.layer is None:
                assert marks == {}
                continue
            seen_layers.append(row.layer)
            assert marks == {c["path"]: c["kind"] for c in demo_report["layers"][row.layer]["changes"]}
        assert seen_layers == list(range(len(demo_report["layers"])))
        # k and [ move back too.
        await pilot.press("k")
        assert browser.step == len(demo_model.steps) - 2
        await pilot.press("left_square_bracket")
        assert browser.step == len(demo_model.steps) - 3

    drive(app, scenario)


def test_marks_match_the_real_cli_json(demo_model: ExploreModel) -> None:
    result = CliRunner().invoke(cli_app, ["inspect", str(DEMO), "--json"])
    assert result.exit_code == 0
    report = json.loads(result.output)
    app = ExploreApp(model=demo_model)

    async def scenario(pilot: Any) -> None:
        browser = app.browser
        for layer in report["layers"]:
            browser.select_step(demo_model.step_for_layer(layer["index"]))
            await pilot.pause()
            assert marked_rows(browser) == {c["path"]: c["kind"] for c in layer["changes"]}

    drive(app, scenario)


def test_view_filter_hide_fold_sort_and_columns(demo_model: ExploreModel, demo: stacking.Stack) -> None:
    app = ExploreApp(model=demo_model)

    async def scenario(pilot: Any) -> None:
        browser = app.browser
        tree = browser.file_tree
        browser.select_step(demo_model.step_for_layer(5))
        await pilot.press("tab", "tab")
        assert app.focused is tree
        # View: cumulative marks the earlier removal of /tmp/debs as well.
        layer_marks = marked_rows(browser)
        await pilot.press("v")
        assert browser.options.view == CUMULATIVE_VIEW
        cumulative = marked_rows(browser)
        assert set(layer_marks) < set(cumulative)
        assert cumulative["/tmp/debs/pkg1.deb"] == REMOVED and cumulative["/etc/passwd"] == "modified"
        await pilot.press("v")
        assert browser.options.view == LAYER_VIEW
        # Hide unchanged: only the marked rows and their parents are left.
        await pilot.press("U")
        assert set(shown_paths(browser)) == with_ancestors(set(layer_marks))
        await pilot.press("R")
        assert set(shown_paths(browser)) == with_ancestors({p for p, k in layer_marks.items() if k != REMOVED})
        await pilot.press("R", "U")
        assert browser.options.hide == frozenset()
        # Filter with a glob, then a regular expression, then clear it.
        await pilot.press("slash")
        assert app.focused is browser.query_one("#filter")
        await pilot.press(*"*.conf", "enter")
        assert browser.options.pattern == "*.conf"
        assert set(shown_paths(browser)) == {"/etc", "/etc/app.conf"}
        assert app.focused is tree
        await pilot.press("slash", *"re:^/bin/", "enter")
        final = stacking.build(demo.image, upto=5).final
        assert set(shown_paths(browser)) == with_ancestors({p for p in final if p.startswith("/bin/")})
        await pilot.press("escape")
        assert browser.options.pattern is None
        # Fold and unfold: space on the first directory, then e for all.
        rows_before = len(tree.snap or ())
        await pilot.press("home")
        first = tree.node
        assert first is not None and tree.snap is not None and tree.snap.expandable(0)
        await pilot.press("space")
        hidden = [p for p in shown_paths(browser) if p.startswith(demo_model.paths[first] + "/")]
        assert hidden == [] and len(tree.snap) < rows_before
        await pilot.press("space")
        assert len(tree.snap) == rows_before
        await pilot.press("e")
        assert all(demo_model.depth[n] == 1 for n in tree.snap.nodes)
        await pilot.press("e")
        assert len(tree.snap) == rows_before
        # Sort by size: top-level rows largest first.
        await pilot.press("s")
        top = [tree.row_info(r) for r in range(len(tree.snap)) if tree.row_info(r).depth == 0]
        assert [r.size for r in top] == sorted((r.size for r in top), reverse=True)
        await pilot.press("s")
        # Columns: permissions and size go away and come back.
        line = tree.plain_line(0)
        assert "drwx" in line
        await pilot.press("p")
        assert "drwx" not in tree.plain_line(0)
        await pilot.press("z")
        assert "B " not in tree.plain_line(0)
        await pilot.press("p", "z")
        assert tree.plain_line(0) == line

    drive(app, scenario)


def test_detail_panel_lists_every_layer_that_touched_the_path(
    demo_model: ExploreModel, demo_report: dict[str, Any]
) -> None:
    app = ExploreApp(model=demo_model)

    async def scenario(pilot: Any) -> None:
        browser = app.browser
        browser.select_step(len(demo_model.steps) - 1)
        await pilot.pause()
        assert browser.file_tree.select_node(demo_model.ids["/etc/passwd"])
        await pilot.pause()
        detail = browser.query_one("#detail", KeyTable)
        keys = [column.key.value for column in detail.ordered_columns]
        assert keys[:4] == ["layer", "change", "size", "wasted"]  # the numbers first: dropped last
        rows = [dict(zip(keys, (c.plain for c in detail.get_row_at(r)), strict=True)) for r in range(detail.row_count)]
        changes = [
            (item["index"], c) for item in demo_report["layers"] for c in item["changes"] if c["path"] == "/etc/passwd"
        ]
        assert [int(r["layer"]) for r in rows] == [index for index, _c in changes]
        for row, (_index, change) in zip(rows, changes, strict=True):
            assert change["kind"] in row["change"]
            assert row["hash"] == change["hash"]
        assert rows[0]["wasted"].startswith("yes") and rows[-1]["wasted"] == "no"
        # Enter on a detail row goes to that layer.
        detail.focus()
        detail.move_cursor(row=0)
        await pilot.press("enter")
        assert demo_model.steps[browser.step].layer == changes[0][0]
        assert browser.file_tree.node == demo_model.ids["/etc/passwd"]

    drive(app, scenario)


def test_jump_from_a_wasted_path_to_the_step_that_wasted_it(demo_model: ExploreModel) -> None:
    app = ExploreApp(model=demo_model)
    top = demo_model.summary.top_paths[0]

    async def scenario(pilot: Any) -> None:
        browser = app.browser
        wasted = browser.query_one("#wasted", KeyTable)
        await pilot.press("tab")
        assert app.focused is wasted
        await pilot.press("enter")
        node = demo_model.ids[top.path]
        first = demo_model.history(node)[0]
        assert first.wasted
        assert demo_model.steps[browser.step].layer == first.layer == top.jumps[0]
        assert browser.file_tree.node == node
        assert marked_rows(browser)[top.path] == ADDED
        # Again: the step that hid it, where it shows as removed.
        assert wasted.has_focus
        await pilot.press("enter")
        assert demo_model.steps[browser.step].layer == first.hidden_by
        assert marked_rows(browser)[top.path] == REMOVED
        # w on the tree does the same from the selected path.
        browser.file_tree.focus()
        await pilot.press("w")
        assert demo_model.steps[browser.step].layer == first.layer

    drive(app, scenario)


def test_open_text_and_binary_files_read_only(demo_model: ExploreModel) -> None:
    opts = SourceOptions()
    app = ExploreApp(model=demo_model, reader=lambda path, layer, entry: read_file(str(DEMO), opts, path, layer, entry))

    async def scenario(pilot: Any) -> None:
        browser = app.browser
        browser.select_step(len(demo_model.steps) - 1)
        await pilot.pause()
        browser.file_tree.focus()
        assert browser.file_tree.select_node(demo_model.ids["/etc/passwd"])
        await pilot.press("enter")
        for _ in range(100):
            if isinstance(app.screen, ContentScreen):
                break
            await pilot.pause(0.05)
        screen = app.screen
        assert isinstance(screen, ContentScreen)
        from textual.widgets import TextArea

        area = screen.query_one(TextArea)
        assert area.read_only
        assert area.text.encode() == layer_member_bytes(DEMO, 4, "/etc/passwd")
        await pilot.press("q")
        assert not isinstance(app.screen, ContentScreen)
        assert app.is_running
        # A binary file: size and hash, no text viewer.
        assert browser.file_tree.select_node(demo_model.ids["/bin/busybox"])
        await pilot.press("o")
        for _ in range(100):
            if isinstance(app.screen, ContentScreen):
                break
            await pilot.pause(0.05)
        screen = app.screen
        assert isinstance(screen, ContentScreen)
        data = layer_member_bytes(DEMO, 0, "/bin/busybox")
        assert not screen.content.is_text
        assert screen.content.size == len(data)
        assert screen.content.digest == xxhash.xxh3_64(data).hexdigest()
        assert not screen.query(TextArea)
        await pilot.press("escape")

    drive(app, scenario)


@pytest.mark.parametrize(
    "ref", ["demo-legacy.tar", "demo-legacy.tar.gz", "demo-oci", "demo-containerd.tar", "demo-legacy.tar.zst"]
)
def test_read_file_from_each_kind_of_source(demo_model: ExploreModel, ref: str) -> None:
    path = ROOT / "sample_images" / ref
    if not path.exists():
        pytest.skip(f"{path} missing")
    node = demo_model.ids["/etc/passwd"]
    for layer in (0, 4):  # both stored versions: the one that was overwritten, and the final one
        found = demo_model.entry_at(node, layer)
        assert found is not None
        content = read_file(str(path), SourceOptions(), "/etc/passwd", found.layer, found.entry)
        assert content.data == layer_member_bytes(DEMO, layer, "/etc/passwd")
        assert content.is_text and not content.truncated
    # A hard link reads its target's bytes from the same layer.
    source = demo_model.content_source(demo_model.ids["/usr/bin/env"], len(demo_model.stack.layers) - 1)
    assert source is not None and source[0] == "/bin/busybox"


def test_help_quit_and_mouse(demo_model: ExploreModel) -> None:
    app = ExploreApp(model=demo_model)

    async def scenario(pilot: Any) -> None:
        browser = app.browser
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert app.screen is browser
        # Click the third data row of the steps table (row 0 is its header, inside a border).
        steps = browser.query_one("#steps", KeyTable)
        await pilot.click(steps, offset=(3, 1 + 1 + 3))
        assert browser.step == 3
        # Click a tree row, then its fold glyph.
        tree = browser.file_tree
        await pilot.click(tree, offset=(5, 1 + 2))
        assert app.focused is tree and tree.cursor == 2
        assert tree.snap is not None
        row0 = tree.snap.nodes[0]
        fold_x = 1 + tree.columns.prefix_width() + len(tree.snap.guide(0))
        before = len(tree.snap)
        await pilot.click(tree, offset=(fold_x, 1))
        assert row0 in browser.collapsed and len(tree.snap) < before
        # The toolbar items are clickable: find "View" and click it.
        toolbar = browser.query_one("#toolbar")
        text = screen_region_text(app, toolbar)[0]
        await pilot.click(toolbar, offset=(text.index("View") + 1, 0))
        assert browser.options.view == CUMULATIVE_VIEW
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running

    drive(app, scenario)


# --------------------------------------------------------------------------- snapshots of the screen


SNAPSHOT_CASES = [(2, LAYER_VIEW), (5, LAYER_VIEW), (5, CUMULATIVE_VIEW)]


@pytest.mark.parametrize(("layer", "view"), SNAPSHOT_CASES)
def test_tree_region_snapshot(demo_model: ExploreModel, demo_report: dict[str, Any], layer: int, view: str) -> None:
    app = ExploreApp(model=demo_model)
    captured: list[str] = []

    async def scenario(pilot: Any) -> None:
        browser = app.browser
        browser.select_step(demo_model.step_for_layer(layer))
        if view != browser.options.view:
            await pilot.press("v")
        await pilot.pause()
        captured.extend(screen_region_text(app, browser.file_tree))

    drive(app, scenario, size=(120, 40))
    text = "\n".join(captured).rstrip() + "\n"
    # Independent of the golden: each change of the layer appears on a line with its mark and name.
    if view == LAYER_VIEW:
        for change in demo_report["layers"][layer]["changes"]:
            name = change["path"].rsplit("/", 1)[1]
            assert any(line[1:].lstrip().startswith(KIND_MARK[change["kind"]]) and name in line for line in captured)
    golden = SNAPSHOTS / f"demo-layer{layer}-{view}.txt"
    if os.environ.get("IMGSCOPE_UPDATE_SNAPSHOTS") == "1" or not golden.exists():
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
        if os.environ.get("IMGSCOPE_UPDATE_SNAPSHOTS") != "1":
            pytest.fail(f"golden {golden.name} was missing and has been written; check it and rerun")
    assert text == golden.read_text()


def test_external_dive_image_marks(external: Path) -> None:
    ref = external / "test-docker-image.tar"
    stacked = load_stack(ref)
    model = ExploreModel.build(stacked)
    report = inspect_report(stacked)
    for layer in report["layers"]:
        for view in (LAYER_VIEW,):
            snap = model.snapshot(layer["index"], TreeOptions(view=view), set())
            marks = {}
            for row in range(len(snap)):
                info = model.row_info(snap, row)
                if info.kind:
                    marks[info.path] = info.kind
            assert marks == {c["path"]: c["kind"] for c in layer["changes"]}


# --------------------------------------------------------------------------- 25,000 files: responsiveness


def stress_spec(dirs: int = 520, per_dir: int = 50) -> ib.ImageSpec:
    """A deterministic image of ``dirs * per_dir`` stored files (25,004 visible at the end) with every change kind.

    Layer 0 holds 60 % of the files, layer 1 the rest; later layers overwrite,
    chmod, delete a fifth of a tree by whiteouts, add and then wipe a cache, and
    add a few small files, so each view has work to do.
    """
    base_dirs = dirs * 3 // 5
    base = [ib.directory("usr"), ib.directory("usr/lib"), ib.directory("etc")]
    for d in range(base_dirs):
        base.append(ib.directory(f"usr/lib/pkg{d:03d}"))
        base += [ib.file(f"usr/lib/pkg{d:03d}/f{f:02d}.so", f"pkg{d} file{f}\n" * (1 + f % 7)) for f in range(per_dir)]
    app_layer = [ib.directory("app"), ib.directory("app/node_modules")]
    for d in range(dirs - base_dirs):
        app_layer.append(ib.directory(f"app/node_modules/mod{d:03d}"))
        app_layer += [
            ib.file(f"app/node_modules/mod{d:03d}/i{f:02d}.js", f"exports.v={d * 100 + f};\n") for f in range(per_dir)
        ]
    patch = []
    for d in range(100, 110):
        patch.append(ib.directory(f"usr/lib/pkg{d:03d}"))
        for f in range(per_dir):
            content = f"patched {d} {f}\n" if f % 2 else f"pkg{d} file{f}\n" * (1 + f % 7)
            patch.append(ib.file(f"usr/lib/pkg{d:03d}/f{f:02d}.so", content, mode=0o644 if f % 2 else 0o755))
    cache = [ib.directory("usr/lib"), *(ib.whiteout(f"usr/lib/pkg{d:03d}") for d in range(20))]
    cache += [ib.directory("var"), ib.directory("var/cache")]
    cache += [ib.file(f"var/cache/c{f:04d}.bin", bytes([f % 256]) * 64) for f in range(1500)]
    steps = [
        ib.BuildStep("/bin/sh -c #(nop) ADD file:base in / ", tuple(base)),
        ib.nop("ENV A=1"),
        ib.copy("dir:app", "/app", *app_layer),
        ib.run("patch libs", *patch),
        ib.run("apt-get update", *cache),
        ib.run("rm -rf /var/cache", ib.directory("var"), ib.whiteout("var/cache")),
        *(ib.run(f"echo {k} > /etc/conf{k}", ib.directory("etc"), ib.file(f"etc/conf{k}", f"{k}\n")) for k in range(4)),
    ]
    return ib.ImageSpec(tuple(steps))


@pytest.fixture(scope="module")
def stress_model(tmp_path_factory: pytest.TempPathFactory) -> ExploreModel:
    path = tmp_path_factory.mktemp("stress") / "stress.tar"
    ib.write_docker_archive(path, stress_spec())
    return ExploreModel.build(load_stack(path))


def test_keypresses_draw_only_what_is_on_screen_on_25000_files(stress_model: ExploreModel) -> None:
    """Every kind of keypress on a 25,000-file image turns at most a screenful of rows into text.

    The work a key causes is counted, not timed: a timing depends on what
    else the machine runs (``benchmarks/explore_keys.py`` prints them).  The
    tree draws only the rows on screen, so a key costs the same on 25,000
    files as on 25: at most the visible rows twice (a redraw of the whole
    pane plus the cursor's lines), never a number that grows with the image.
    """
    assert stress_model.summary.file_count >= 25_000
    app = ExploreApp(model=stress_model)
    drawn: dict[str, list[int]] = {}

    async def counted(pilot: Any, label: str, key: str) -> None:
        tree = app.browser.file_tree
        before = tree.lines_drawn
        await pilot.press(key)
        await pilot.pause()
        drawn.setdefault(label, []).append(tree.lines_drawn - before)

    async def scenario(pilot: Any) -> None:
        browser = app.browser
        tree = browser.file_tree
        assert tree.snap is not None and len(tree.snap) > 15_000
        for _ in range(len(stress_model.steps) - 1):
            await counted(pilot, "next step (steps pane)", "down")
        assert len(tree.snap) > 25_000
        await pilot.press("tab", "tab")
        assert app.focused is tree
        for _ in range(20):
            await counted(pilot, "cursor down (tree)", "j")
        await counted(pilot, "page down", "pagedown")
        await counted(pilot, "end", "end")
        for _ in range(4):
            await counted(pilot, "previous step ([)", "left_square_bracket")
        for _ in range(2):
            for label, key in (("view", "v"), ("hide unchanged", "U"), ("sort", "s"), ("fold all", "e")):
                await counted(pilot, label, key)
        await pilot.press("slash", *"*.so")
        await counted(pilot, "apply filter (enter)", "enter")
        await counted(pilot, "clear filter (escape)", "escape")
        drawn["height"] = [tree.size.height]

    drive(app, scenario, size=(160, 50))
    height = drawn.pop("height")[0]
    assert height > 10
    assert all(count <= 2 * height for counts in drawn.values() for count in counts), (height, drawn)


# --------------------------------------------------------------------------- the command


def test_help_does_not_import_textual() -> None:
    code = (
        "import sys\n"
        "sys.argv = ['imgscope', '--help']\n"
        "import imgscope.cli as cli\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "print('TEXTUAL' if any(m.startswith('textual') for m in sys.modules) else 'CLEAN')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "explore" in out
    assert out.strip().endswith("CLEAN")


def test_explore_without_a_terminal_or_with_a_bad_ref_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli_app, ["explore", str(tmp_path / "missing.tar")])
    assert result.exit_code == 2
    assert "imgscope: error:" in result.output
    result = CliRunner().invoke(cli_app, ["explore", str(DEMO)])
    assert result.exit_code == 2
    assert "needs a terminal" in result.output


def test_loader_error_ends_the_app_with_the_error(tmp_path: Path) -> None:
    from imgscope.cli.explore import make_loader

    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar at all" * 64)
    app = ExploreApp(loader=make_loader(str(bad), SourceOptions()), what=str(bad))

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            for _ in range(200):
                if not app.is_running:
                    break
                await pilot.pause(0.05)

    asyncio.run(main())
    assert app.error is not None and app.return_code == 2


def test_loader_shows_progress_then_the_browser() -> None:
    from imgscope.cli.explore import make_loader

    seen: list[tuple[str, int, int]] = []
    loader = make_loader(str(DEMO), SourceOptions(no_cache=True))

    def recording(progress: Any) -> ExploreModel:
        def both(what: str, done: int, total: int) -> None:
            seen.append((what, done, total))
            progress(what, done, total)

        return loader(both)

    app = ExploreApp(loader=recording, what=str(DEMO))

    async def scenario(pilot: Any) -> None:
        assert app.browser.model.summary.layer_count == 7

    drive(app, scenario)
    whats = [w for w, _d, _t in seen]
    assert "scanning layers" in whats and "building per-step trees" in whats
    assert seen[-1][1] == seen[-1][2]


@pytest.fixture
def tmux() -> Iterator[list[str]]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install tmux)")
    socket = f"imgscope-test-{os.getpid()}"
    base = ["tmux", "-L", socket, "-f", "/dev/null"]
    yield base
    subprocess.run([*base, "kill-server"], capture_output=True)


def run_in_tmux(tmux: list[str], tmp_path: Path, ref: str, size: tuple[int, int]) -> tuple[str, str]:
    """``imgscope explore REF`` in a tmux pane of ``size``: the screen once all background work is done, and the status.

    Waits until the browser is up *and* the content audit has finished (the
    summary says "file contents: checked"), so a worker that fails late is
    seen; the pane is checked for a traceback all along, then ``q`` quits.
    """
    status = tmp_path / f"status-{size[0]}"
    session = f"explore-{size[0]}"
    command = f"{sys.executable} -m imgscope explore {ref}"  # this interpreter, whatever is on PATH
    if ref == "CRASH":  # the demo, with a bug planted in the browser
        plant = (
            "import sys; from imgscope.explore import app; "
            "app.BrowserScreen.on_mount = lambda self: 1 / 0; "
            f"sys.argv = ['imgscope', 'explore', '{DEMO}']; "
            "from imgscope.cli import main; main()"
        )
        command = f'{sys.executable} -c "{plant}"'
    cache = os.environ.get("IMGSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    # COLUMNS/LINES inherited from pytest would override the pane's real size; the shell stays
    # after the command so that whatever it printed on exit can still be captured.
    shell = f"cd {ROOT} && env -u COLUMNS -u LINES IMGSCOPE_CACHE_DIR={cache} {command}; echo $? > {status}; sleep 60"
    width, height = size
    new = [*tmux, "new-session", "-d", "-s", session, "-x", str(width), "-y", str(height), shell]
    subprocess.run(new, check=True)

    def screen() -> str:
        done = subprocess.run([*tmux, "capture-pane", "-p", "-t", session], capture_output=True, text=True)
        return done.stdout

    wanted = ("Files as of layer 0", "Steps", "Top wasted paths", "q Quit", "file contents: checked")
    if ref == "CRASH":
        wanted = ("internal error",)
    deadline = time.monotonic() + 120
    text = ""
    while time.monotonic() < deadline and not all(w in text for w in wanted) and not status.exists():
        time.sleep(0.2)
        text = screen()
        assert "Traceback" not in text, text
    assert all(w in text for w in wanted), text
    if ref == "CRASH":
        return text, status.read_text().strip() if status.exists() else ""
    time.sleep(1)  # a little longer: nothing may fail after the audit either
    settled = screen()
    assert "Traceback" not in settled and not status.exists(), settled
    subprocess.run([*tmux, "send-keys", "-t", session, "q"], check=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not status.exists():
        time.sleep(0.1)
    assert status.exists(), screen()
    after = screen()
    assert "Traceback" not in after, after
    return settled, status.read_text().strip()


@pytest.mark.parametrize("size", [(80, 24), (200, 50)], ids=["80x24", "200x50"])
def test_real_terminal_stays_up_until_background_work_is_done(
    tmux: list[str], tmp_path: Path, size: tuple[int, int]
) -> None:
    """In a tmux pseudo-terminal at 80x24 and 200x50: the browser, the finished audit, no traceback, exit 0."""
    settled, status = run_in_tmux(tmux, tmp_path, str(DEMO), size)
    assert status == "0"
    # The steps pane keeps its Wasted column whole at any width: layer 0 of the demo wasted 181 B.
    assert re.search(r"^│ 0 .* 181 B .*│", settled, re.M), settled
    assert "Efficiency 33.4%:" in settled


def test_real_terminal_on_a_daemon_image(tmux: list[str], tmp_path: Path, daemon_images: dict[str, str]) -> None:
    """The same on an image the Docker engine holds (the audit re-reads it through the daemon)."""
    settled, status = run_in_tmux(tmux, tmp_path, "imgscope-test/layers", (80, 24))
    assert status == "0"
    assert "imgscope-test/layers" in settled


def test_a_crash_in_a_real_terminal_is_one_line_and_exit_1(tmux: list[str], tmp_path: Path) -> None:
    text, status = run_in_tmux(tmux, tmp_path, "CRASH", (80, 24))
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines == ["imgscope: internal error in explore: ZeroDivisionError: division by zero"], text
    for _ in range(50):
        if status:
            break
        time.sleep(0.1)
        status = (tmp_path / "status-80").read_text().strip() if (tmp_path / "status-80").exists() else ""
    assert status == "1"


def test_a_failing_audit_is_a_notice_and_a_crash_exits_1(tmp_path: Path) -> None:
    """A failing content audit leaves the browser up with a one-line notice; a bug ends the app with code 1."""
    model = ExploreModel.build(load_stack(DEMO))

    def failing() -> None:
        raise OSError("disk on fire")

    app = ExploreApp(model=model, auditor=failing)  # type: ignore[arg-type]

    async def scenario(pilot: Any) -> None:
        for _ in range(100):
            if app.audit_state != "running":
                break
            await pilot.pause(0.05)
        assert app.audit_state == "failed"
        summary = screen_region_text(app, app.browser.query_one("#summary"))
        assert any("file contents: not checked" in line for line in summary)
        assert [n.message for n in app._notifications] == ["audit of file contents failed: OSError: disk on fire"]

    drive(app, scenario)
    assert app.crash is None and not app.return_code

    # A bug inside the app: kept for the command's one line, and the return code is 1, never 0.
    crashing = ExploreApp(model=model)

    async def crash(pilot: Any) -> None:
        crashing.call_later(lambda: 1 / 0)
        await pilot.pause(0.2)

    with pytest.raises(ZeroDivisionError):
        drive(crashing, crash)
    assert isinstance(crashing.crash, ZeroDivisionError) and crashing.return_code == 1


# --------------------------------------------------------------------------- audit markers


def audited_spec() -> ib.ImageSpec:
    """A small image with a setuid binary, a private key added then deleted, and a clean file."""
    key = "-----BEGIN RSA PRIVATE KEY-----\n" + "MIIEowIBAAKCAQEA" + "x" * 200 + "\n-----END RSA PRIVATE KEY-----\n"
    return ib.ImageSpec(
        (
            ib.BuildStep(
                "/bin/sh -c #(nop) ADD file:base in / ",
                (ib.directory("bin"), ib.file("bin/tool", b"\x7fELF" + b"\x00" * 64, mode=0o4755)),
            ),
            ib.copy("file:key", "/root/", ib.directory("root"), ib.file("root/id_rsa", key, mode=0o600)),
            ib.run("rm /root/id_rsa", ib.directory("root"), ib.whiteout("root/id_rsa")),
            ib.run("echo hi > /etc/motd", ib.directory("etc"), ib.file("etc/motd", "hi\n")),
        )
    )


def test_audit_markers_match_the_audit_command(tmp_path: Path) -> None:
    pytest.importorskip("imgscope.analysis.audit", reason="the audit analysis is not installed")
    from imgscope.cli.explore import make_auditor
    from imgscope.explore.content import audit_contents

    path = tmp_path / "audited.tar"
    ib.write_docker_archive(path, audited_spec())
    result = CliRunner().invoke(cli_app, ["audit", str(path), "--json", "--fail-on", "critical"])
    assert result.exit_code in (0, 1), result.output
    expected = json.loads(result.output)["findings"]
    on_paths = {(f["path"], f["severity"]) for f in expected if f.get("path")}
    # The base image's setuid files are one grouped finding; the explorer marks each path it lists.
    on_paths |= {(p, f["severity"]) for f in expected for p in f["paths"]}
    assert ("/root/id_rsa", "critical") in on_paths or any(p == "/root/id_rsa" for p, _s in on_paths)

    # In-process: the same findings on the same paths.
    audited = audit_contents(str(path), SourceOptions())
    assert audited is not None
    findings, total = audited
    assert {(f.path, f.severity) for f in findings} == on_paths
    assert total == len(expected)
    # Through the child process the command uses.
    assert make_auditor(str(path), SourceOptions())() == audited

    # The app: metadata findings at once, content findings after the (here immediate) auditor.
    model = ExploreModel.build(load_stack(path))
    before = set(model.findings)
    assert "/bin/tool" in before and "/root/id_rsa" not in before
    app = ExploreApp(model=model, auditor=lambda: audited)

    async def scenario(pilot: Any) -> None:
        browser = app.browser
        for _ in range(100):
            if model.content_audited:
                break
            await pilot.pause(0.05)
        assert model.content_audited
        await pilot.pause()
        browser.select_step(model.step_for_layer(1))
        await pilot.pause()
        tree = browser.file_tree
        assert tree.select_node(model.ids["/root/id_rsa"])
        assert "⚑" in tree.plain_line(tree.cursor)
        summary = screen_region_text(app, browser.query_one("#summary"))
        assert any(f"audit: {total} finding(s)" in line for line in summary)
        steps = browser.query_one("#steps", KeyTable)
        key_layer_row = model.step_for_layer(1)
        assert "⚑" in steps.get_row_at(key_layer_row)[2].plain

    drive(app, scenario)


def test_images_without_layers_or_history_do_not_break_the_browser(tmp_path: Path) -> None:
    empty = tmp_path / "empty.tar"
    ib.write_docker_archive(empty, ib.ImageSpec((ib.nop("ENV A=1"), ib.nop('CMD ["sh"]'))))
    one = tmp_path / "one.tar"
    ib.write_docker_archive(one, ib.ImageSpec((ib.nop("ARG X=1"), ib.run("true", ib.file("a", "a\n")))))
    for path, layers in ((empty, 0), (one, 1)):
        model = ExploreModel.build(load_stack(path))
        assert model.layer_count == layers
        app = ExploreApp(model=model)

        async def scenario(pilot: Any, model: ExploreModel = model, app: ExploreApp = app) -> None:
            browser = app.browser
            # The first step is empty and comes before any layer: an empty tree, nothing marked.
            assert browser.tree_layer == -1 and shown_paths(browser) == []
            await pilot.press("down", "v", "tab", "tab", "j", "space", "e", "s", "o", "w", "end")
            if model.layer_count:
                assert shown_paths(browser) == ["/a"]
            await pilot.press("q")

        drive(app, scenario)


def test_without_the_waste_analysis_the_own_ledger_gives_the_same_figures(demo: stacking.Stack) -> None:
    waste = pytest.importorskip("imgscope.analysis.waste", reason="nothing to compare with")
    report = waste.analyse(demo)
    own = ExploreModel(demo, waste=None)
    assert own.summary.waste_source.startswith("explorer ledger")
    assert own.summary.wasted_bytes == report.wasted_bytes
    assert own.summary.efficiency == pytest.approx(report.efficiency)
    assert [(p.path, p.bytes_wasted, p.times_stored) for p in own.summary.top_paths] == [
        (p.path, p.bytes_wasted, p.times_stored) for p in report.top_paths
    ]
    stored_waste = {s.layer: s.wasted for s in report.steps}
    assert {r.layer: r.wasted for r in own.steps if r.layer is not None} == stored_waste


@pytest.mark.parametrize("width", [80, 120, 200])
def test_steps_and_detail_panes_fit_their_width(demo_model: ExploreModel, width: int) -> None:
    """At 80, 120 and 200 columns no pane scrolls sideways: the Wasted column is whole, text columns give way."""
    app = ExploreApp(model=demo_model)

    async def scenario(pilot: Any) -> None:
        browser = app.browser
        browser.select_step(len(demo_model.steps) - 1)
        assert browser.file_tree.select_node(demo_model.ids["/etc/passwd"])
        await pilot.pause()
        for pane in ("#steps", "#detail"):
            table = browser.query_one(pane, KeyTable)
            keys = [column.key.value for column in table.ordered_columns]
            assert "wasted" in keys and "layer" in keys, (pane, keys)
            used = sum(column.get_render_width(table) for column in table.ordered_columns)
            assert used <= table.scrollable_content_region.width, (pane, keys, used)
            assert table.max_scroll_x == 0, pane
        wasted_pane = browser.query_one("#wasted", KeyTable)
        assert wasted_pane.max_scroll_x == 0
        sizes = [wasted_pane.get_row_at(k)[0].plain for k in range(wasted_pane.row_count)]
        assert sizes == [format_size(p.bytes_wasted) for p in demo_model.summary.top_paths]
        steps = browser.query_one("#steps", KeyTable)
        shown = {column.key.value for column in steps.ordered_columns}
        if width >= 120:
            assert {"size", "added", "modified", "removed"} <= shown
        wasted = [steps.get_row_at(k)[-1].plain for k in range(steps.row_count)]
        expected = [format_size(row.wasted) if row.wasted else "" for row in demo_model.steps]
        assert wasted == expected

    drive(app, scenario, size=(width, 40))


def test_child_audit_gives_the_in_process_result_and_stops_when_closed(tmp_path: Path) -> None:
    """The child process answers what ``audit_contents`` answers in process; ``close`` ends it, no child left."""
    import threading

    from imgscope.errors import ImgscopeError
    from imgscope.explore.child import ChildAudit
    from imgscope.explore.content import audit_contents

    assert ChildAudit(str(DEMO), SourceOptions()).run() == audit_contents(str(DEMO), SourceOptions())
    missing = ChildAudit(str(tmp_path / "gone.tar"), SourceOptions())
    with pytest.raises(ImgscopeError, match=r"gone\.tar"):
        missing.run()

    audit = ChildAudit(str(DEMO), SourceOptions())
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(audit.run())
        except ImgscopeError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    for _ in range(200):
        if audit._proc is not None:
            break
        time.sleep(0.01)
    audit.close()
    thread.join(30)
    assert not thread.is_alive() and len(outcome) == 1
    assert audit._proc is not None and audit._proc.poll() is not None  # no child left behind
    with pytest.raises(ImgscopeError, match="cancelled"):
        audit.run()  # closed: never starts again
