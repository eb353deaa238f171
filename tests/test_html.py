"""``--html FILE``: self-contained HTML reports, checked as files and in a real browser.

Oracles: an independent final tree (``tarfile`` on the archive's layer tars,
whiteouts applied by hand, the last layer that holds each path) for the
treemap and for which top-level directories a page must draw; the embedded
JSON read back with ``json`` for the escaping; ``hashlib`` for the CSP
hashes; and headless Chromium (``tests/browser.py``) for what a person sees:
no console error, one treemap rectangle per top-level entry with bytes, a
click on a step that leaves only that step's files.

The browser tests skip with the reason when no Chromium is installed, and
fail instead when ``IMGSCOPE_REQUIRE_BROWSER=1`` (CI sets it).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import posixpath
import re
import tarfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from imgscope import reference
from imgscope import stack as stacking
from imgscope.cli import app
from imgscope.render import html as html_report
from imgscope.render.console import printable
from imgscope.sources.common import LoadOptions
from tests import browser as chromium
from tests import imagebuild as ib
from tests.conftest import SAMPLES
from tests.gnutar import archive_layers

runner = CliRunner()
DEMO = SAMPLES / "demo-legacy.tar"
HOSTILE_NAME = "</script><script>document.title='pwned'</script><!--&\u2028.txt"
# Not UTF-8 (byte 0xe9), an escape sequence and a right-to-left override: shown as escapes, as on the console.
UNPRINTABLE_NAME = "caf\udce9\x1b[2J\u202e.txt"
# Rules that fail on the demo and on the hostile image: a layer count, a forbidden path (and the size, for the demo).
CI_RULES = ("--max-size", "40kB", "--max-layers", "2", "--forbid-path", "/etc/*.conf")
GITHUB_TOKEN = "gh" + "p_" + "Zx8Qw3Er5Ty7Ui9Op1As2Df4Gh6Jk8Lz0Xc"


# --------------------------------------------------------------------------- oracle


def oracle_final(archive: Path) -> dict[str, tuple[str, int, int]]:
    """Path -> (type, Docker size, layer that last wrote it), from the layer tars with ``tarfile`` only."""
    tree: dict[str, tuple[str, int, int]] = {}
    for index, blob in enumerate(archive_layers(archive)):
        with tarfile.open(fileobj=io.BytesIO(blob)) as tf:
            members = tf.getmembers()
        names = [posixpath.normpath("/" + m.name.strip("/").removeprefix("./")) for m in members]
        for name in names:  # an opaque marker hides what lower layers had, before this layer's entries
            if posixpath.basename(name) == ".wh..wh..opq":
                parent = posixpath.dirname(name).rstrip("/") + "/"
                tree = {p: v for p, v in tree.items() if not p.startswith(parent)}
        for m, name in zip(members, names, strict=True):
            base = posixpath.basename(name)
            if name == "/" or base.startswith(".wh..wh."):
                continue
            if base.startswith(".wh."):
                gone = posixpath.join(posixpath.dirname(name), base[4:])
                tree = {p: v for p, v in tree.items() if p != gone and not p.startswith(gone + "/")}
                continue
            if m.isdir():
                entry = ("dir", 0, index)
            elif m.issym():
                entry = ("symlink", len(m.linkname.encode()), index)
            elif m.islnk():
                entry = ("hardlink", 0, index)
            else:
                entry = ("file", m.size, index)
            if entry[0] != "dir" and tree.get(name, ("",))[0] == "dir":  # replacing a directory hides its subtree
                tree = {p: v for p, v in tree.items() if not p.startswith(name + "/")}
            tree[name] = entry
    return tree


def top_level_with_bytes(tree: dict[str, tuple[str, int, int]], layer: int | None = None, under: str = "/") -> set[str]:
    """The entries right below ``under`` (``/usr``...) holding bytes, or bytes last written by ``layer``."""
    prefix = under.rstrip("/") + "/"
    return {
        prefix + path[len(prefix) :].split("/")[0]
        for path, (kind, size, writer) in tree.items()
        if path.startswith(prefix) and kind != "dir" and size > 0 and (layer is None or writer == layer)
    }


def load_stack(path: Path) -> stacking.Stack:
    return stacking.build(reference.load(str(path), LoadOptions()))


def flatten(node: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, node) of every node below the treemap root."""
    for child in node.get("c", []):
        path = f"{prefix}/{child['n']}"
        yield path, child
        yield from flatten(child, path)


# --------------------------------------------------------------------------- page parsing


class _Page(HTMLParser):
    """Every start tag with its attributes, and the text of each script and style element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.styles: list[str] = []
        self._open: tuple[str, dict[str, str | None]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "style"):
            self._open = (tag, dict(attrs))

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            tag, attrs = self._open
            if tag == "script":
                self.scripts.append((attrs, data))
            else:
                self.styles.append(data)
            self._open = None


def parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


def embedded(text: str) -> dict[str, Any]:
    """The JSON document a page carries (read with ``json``, as any tool could)."""
    page = parse(text)
    [data] = [body for attrs, body in page.scripts if attrs.get("id") == "imgscope-data"]
    document: dict[str, Any] = json.loads(data)
    return document


def csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# --------------------------------------------------------------------------- images


def hostile_image(tmp_path: Path) -> Path:
    """Three steps; one writes a file whose name tries to close the data block and run a script."""
    spec = ib.ImageSpec(
        (
            ib.copy("file:base", "/", ib.directory("/bin"), ib.file("/bin/tool", b"\x7fELF" + bytes(5000), mode=0o755)),
            ib.run(
                "echo",
                ib.directory("/srv"),
                ib.file(f"/srv/{HOSTILE_NAME}", "x" * 300),
                ib.file(f"/srv/{UNPRINTABLE_NAME}", "y" * 200),
            ),
            ib.run("write config", ib.directory("/etc"), ib.file("/etc/app.conf", "a=1\n" * 20)),
        )
    )
    path = tmp_path / "hostile.tar"
    ib.write_docker_archive(path, spec)
    return path


def many_files_image(tmp_path: Path, files: int = 20_000, layers: int = 8) -> Path:
    """An image with many small files over several layers (sizes spread over three magnitudes)."""
    steps: list[ib.BuildStep] = []
    per_layer = files // layers
    for layer in range(layers):
        entries: list[ib.TarEntry] = [ib.directory(f"/d{layer}")]
        for i in range(per_layer):
            sub = f"/d{layer}/s{i % 40}"
            if i < 40:
                entries.append(ib.directory(sub))
            entries.append(ib.file(f"{sub}/f{i}.bin", bytes((i * 7 + layer) % 251 for _ in range(1 + (i * 37) % 900))))
        steps.append(ib.run(f"step {layer}", *entries))
    path = tmp_path / "many.tar"
    ib.write_docker_archive(path, ib.ImageSpec(tuple(steps)))
    return path


def secret_image(tmp_path: Path) -> Path:
    spec = ib.ImageSpec(
        (
            ib.copy("file:base", "/", ib.directory("/app"), ib.file("/app/main.py", "print('hi')\n")),
            ib.run("write token", ib.file("/app/deploy.sh", f"export GITHUB_TOKEN={GITHUB_TOKEN}\n")),
        )
    )
    path = tmp_path / "secret.tar"
    ib.write_docker_archive(path, spec)
    return path


def write_pages(tmp_path: Path, image: Path = DEMO) -> dict[str, Path]:
    """The four pages of one image (diff: the image against the demo), written by the CLI."""
    pages = {kind: tmp_path / f"{kind}.html" for kind in ("inspect", "diff", "ci", "audit")}
    commands = {
        "inspect": ["inspect", str(image), "--html", str(pages["inspect"])],
        "diff": ["diff", str(DEMO), str(image), "--html", str(pages["diff"])],
        "ci": ["ci", str(image), *CI_RULES, "--html", str(pages["ci"])],
        "audit": ["audit", str(image), "--fail-on", "critical", "--html", str(pages["audit"])],
    }
    for kind, args in commands.items():
        result = runner.invoke(app, args)
        assert result.exit_code in (0, 1), (kind, result.output)
        assert pages[kind].is_file()
    return pages


# --------------------------------------------------------------------------- files


def test_embed_json_escapes_what_could_end_the_script_element() -> None:
    data = {"name": HOSTILE_NAME + "\u2029>", "raw": "caf\udce9", "n": 12}
    text = html_report.embed_json(data)
    for bad in ("<", ">", "&", "\u2028", "\u2029"):
        assert bad not in text
    assert text.isascii()
    assert json.loads(text) == data


def test_page_is_self_contained_with_a_strict_policy(tmp_path: Path) -> None:
    for kind, path in write_pages(tmp_path).items():
        text = path.read_text("utf-8")
        page = parse(text)
        [policy] = [
            a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"
        ]
        assert policy is not None
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        assert directives["default-src"] == "'none'"
        [code] = [body for attrs, body in page.scripts if attrs.get("id") != "imgscope-data"]
        [css] = page.styles
        # Only the page's own script and style run: by hash, no 'unsafe-inline', no host.
        assert directives["script-src"] == csp_hash(code), kind
        assert directives["style-src"] == csp_hash(css), kind
        # Nothing is loaded: no src, and the only href is the empty data: icon.
        refs = [(t, k, v) for t, a in page.tags for k, v in a.items() if k in ("src", "href", "action")]
        assert refs == [("link", "href", "data:,")], kind
        assert "http://" not in css and "https://" not in css and "url(" not in css
        assert "fetch(" not in code and "XMLHttpRequest" not in code
        document = embedded(text)
        assert document["kind"] == kind
        assert document["html_schema"] == html_report.HTML_SCHEMA_VERSION


def test_embedded_report_is_the_json_report_without_per_file_lists(tmp_path: Path) -> None:
    pages = write_pages(tmp_path)
    inspect_json = json.loads(runner.invoke(app, ["inspect", str(DEMO), "--json", "--top", "25"]).stdout)
    report = embedded(pages["inspect"].read_text("utf-8"))["report"]
    del inspect_json["files"]
    for layer in inspect_json["layers"]:
        del layer["changes"]
    # The page was written on a cold cache (DiffIDs hashed), the JSON run reads the warm one.
    report["image"].pop("diff_ids_verified")
    inspect_json["image"].pop("diff_ids_verified")
    assert {k: v for k, v in report.items() if k not in ("treemap", "top_per_layer")} == inspect_json
    other = hostile_image(tmp_path)
    diff_page = tmp_path / "diff-hostile.html"
    assert runner.invoke(app, ["diff", str(DEMO), str(other), "--html", str(diff_page)]).exit_code == 1
    diff_json = json.loads(runner.invoke(app, ["diff", str(DEMO), str(other), "--json"]).stdout)
    diff_json["files_total"] = len(diff_json["files"])
    diff_json["files"] = [{k: v for k, v in f.items() if k not in ("a", "b")} for f in diff_json["files"]]
    diff_report = embedded(diff_page.read_text("utf-8"))["report"]
    for side in ("a", "b"):
        diff_report[side].pop("diff_ids_verified")
        diff_json[side].pop("diff_ids_verified")
    assert diff_report == diff_json
    audit_json = json.loads(runner.invoke(app, ["audit", str(DEMO), "--fail-on", "critical", "--json"]).stdout)
    assert embedded(pages["audit"].read_text("utf-8"))["report"] == audit_json
    ci_json = json.loads(runner.invoke(app, ["ci", str(DEMO), *CI_RULES, "--json"]).stdout)
    assert embedded(pages["ci"].read_text("utf-8"))["report"] == ci_json


def test_html_option_changes_neither_stdout_nor_the_exit_code(tmp_path: Path) -> None:
    cases = [
        # --no-cache: a warm run would say its DiffIDs were not verified.
        ["inspect", str(DEMO), "--json", "--no-cache"],
        ["diff", str(DEMO), str(SAMPLES / "kaniko-demo.tar"), "--json", "--no-cache"],
        ["ci", str(DEMO), "--max-size", "40kB", "--json"],  # fails: exit 1
        ["audit", str(DEMO), "--json"],
    ]
    for args in cases:
        plain = runner.invoke(app, args)
        out = tmp_path / f"{args[0]}.html"
        with_html = runner.invoke(app, [*args, "--html", str(out)])
        assert (with_html.exit_code, with_html.stdout) == (plain.exit_code, plain.stdout), args
        assert out.stat().st_size > 0
    assert runner.invoke(app, cases[2]).exit_code == 1


def test_unwritable_html_path_is_one_line_and_exit_2(tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "report.html"
    result = runner.invoke(app, ["inspect", str(DEMO), "--html", str(target)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"imgscope: error: --html {target}: cannot write")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


def test_treemap_holds_every_byte_of_the_final_tree_with_its_last_writer(tmp_path: Path) -> None:
    for archive in (DEMO, hostile_image(tmp_path)):
        oracle = oracle_final(archive)
        tree = html_report.treemap_tree(load_stack(archive), share=0.0)  # nothing folded
        files = {path: node for path, node in flatten(tree) if "c" not in node}
        expected = {p: (size, layer) for p, (kind, size, layer) in oracle.items() if kind != "dir" and size > 0}
        assert {p: (n["s"], n["l"]) for p, n in files.items()} == expected
        assert tree["s"] == sum(size for size, _ in expected.values())
        for path, node in flatten(tree):  # a directory weighs what its children weigh
            if "c" in node:
                assert node["s"] == sum(c["s"] for c in node["c"]), path


def test_folding_keeps_the_totals_per_step(tmp_path: Path) -> None:
    archive = many_files_image(tmp_path, files=4_000, layers=4)
    oracle = oracle_final(archive)
    tree = html_report.treemap_tree(load_stack(archive), max_nodes=300)
    nodes = list(flatten(tree))
    folded = [node for _, node in nodes if "f" in node]
    assert folded
    assert len(nodes) - len(folded) + 1 <= 300  # the kept nodes (root included), and one fold per directory
    per_layer: dict[int, int] = {}
    count = 0
    for _, node in nodes:
        if "f" in node:
            count += node["f"]
            assert node["s"] == sum(node["b"].values())
            for layer, size in node["b"].items():
                per_layer[int(layer)] = per_layer.get(int(layer), 0) + size
        elif "c" not in node:
            count += 1
            per_layer[node["l"]] = per_layer.get(node["l"], 0) + node["s"]
    expected: dict[int, int] = {}
    for kind, size, layer in oracle.values():
        if kind != "dir" and size > 0:
            expected[layer] = expected.get(layer, 0) + size
    assert per_layer == expected
    assert count == sum(1 for kind, size, _ in oracle.values() if kind != "dir" and size > 0)


def test_pages_stay_small(tmp_path: Path) -> None:
    pages = write_pages(tmp_path)
    sizes = {kind: path.stat().st_size for kind, path in pages.items()}
    print("demo page sizes:", sizes)
    assert all(size < 100_000 for size in sizes.values()), sizes
    archive = many_files_image(tmp_path)
    out = tmp_path / "many.html"
    assert runner.invoke(app, ["inspect", str(archive), "--html", str(out)]).exit_code == 0
    report = embedded(out.read_text("utf-8"))["report"]
    kept = [node for _, node in flatten(report["treemap"]) if "f" not in node]
    assert len(kept) <= html_report.MAX_TREEMAP_NODES
    assert sum(node.get("f", 1) for _, node in flatten(report["treemap"]) if "c" not in node) == 20_000
    print("20,000-file page:", out.stat().st_size, "bytes")
    assert out.stat().st_size < 1_500_000


def test_diff_page_keeps_the_largest_differences(tmp_path: Path) -> None:
    a = many_files_image(tmp_path, files=400, layers=2)
    spec = ib.ImageSpec((ib.run("other", ib.directory("/x"), ib.file("/x/big", b"y" * 5000)),))
    b = tmp_path / "b.tar"
    ib.write_docker_archive(b, spec)
    from imgscope.analysis.diff import diff

    result = diff(load_stack(a), load_stack(b))
    data = html_report.diff_data(result, max_files=50)
    assert data["files_total"] == len(result.files) > 50
    assert len(data["files"]) == 50
    shown = sorted(abs(f["delta"]) for f in data["files"])
    left_out = sorted(abs(f.delta) for f in result.files)[: len(result.files) - 50]
    assert min(shown) >= max(left_out)
    assert all("a" not in f and "b" not in f for f in data["files"])


def test_audit_page_never_holds_the_secret(tmp_path: Path) -> None:
    archive = secret_image(tmp_path)
    out = tmp_path / "audit.html"
    result = runner.invoke(app, ["audit", str(archive), "--html", str(out)])
    assert result.exit_code == 1
    text = out.read_text("utf-8")
    report = embedded(text)["report"]
    assert any(f["path"] == "/app/deploy.sh" for f in report["findings"])
    assert GITHUB_TOKEN not in text and GITHUB_TOKEN[-12:] not in text


# --------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def browser() -> Iterator[chromium.Browser]:
    executable = chromium.find_browser()
    if executable is None:
        reason = "no chromium on PATH (apt-get install chromium)"
        if os.environ.get("IMGSCOPE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason} (IMGSCOPE_REQUIRE_BROWSER=1)", pytrace=False)
        pytest.skip(reason)
    with chromium.Browser(executable) as driver:
        yield driver


def open_page(driver: chromium.Browser, path: Path) -> None:
    driver.errors.clear()
    driver.open(path)
    assert driver.evaluate("document.body.getAttribute('data-ready')") == "true", driver.errors
    assert driver.errors == []


def artifact(tmp_path: Path, name: str) -> Path:
    """Where a screenshot goes: ``$IMGSCOPE_ARTIFACTS`` when set (for CI to keep), else the test's tmp dir."""
    folder = Path(os.environ.get("IMGSCOPE_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


TOP_RECTS = "Array.from(document.querySelectorAll('svg.treemap rect.tm-top')).map(r => r.getAttribute('data-path'))"


def test_inspect_page_in_chromium(browser: chromium.Browser, tmp_path: Path) -> None:
    page = write_pages(tmp_path)["inspect"]
    oracle = oracle_final(DEMO)
    open_page(browser, page)
    tops = browser.evaluate(TOP_RECTS)
    assert len(tops) == len(set(tops))
    assert set(tops) == top_level_with_bytes(oracle) == {"/bin", "/etc", "/var", "/app"}
    # Hovering a rectangle shows its path, size and layer.
    box = browser.evaluate(
        "(() => { const e = document.querySelector('svg.treemap rect.file'); e.scrollIntoView({block: 'center'});"
        " const r = e.getBoundingClientRect();"
        " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
    )
    browser.move(box[0], box[1])
    tip = browser.evaluate("document.getElementById('tooltip').innerText")
    assert browser.evaluate("getComputedStyle(document.getElementById('tooltip')).display") == "block"
    assert "/bin/busybox" in tip and "20,480 bytes" in tip and "layer 0" in tip
    # A click on a step leaves only the files it last wrote, everywhere on the page.
    for layer in (5, 3, 1):
        browser.click_selector(f'tr.step[data-layer="{layer}"]')
        assert browser.evaluate("document.querySelector('tr.step[aria-pressed=\"true\"]').dataset.layer") == str(layer)
        assert set(browser.evaluate(TOP_RECTS)) == top_level_with_bytes(oracle, layer)
        listed = browser.evaluate(
            "Array.from(document.querySelectorAll('#largest tbody tr')).map(r => r.dataset.layer)"
        )
        assert listed == [str(layer)] * len(listed)
        assert len(listed) == sum(1 for kind, _, w in oracle.values() if kind != "dir" and w == layer)
    assert browser.evaluate("document.querySelector('#treemap svg text.empty').textContent").startswith("Nothing")
    browser.click_selector("#show-all")
    assert set(browser.evaluate(TOP_RECTS)) == top_level_with_bytes(oracle)
    # A click in a directory zooms into it; the step filter still applies; the first crumb goes back.
    browser.click_selector('svg.treemap rect.tm-top[data-path="/etc"]')
    assert (
        set(browser.evaluate(TOP_RECTS))
        == top_level_with_bytes(oracle, under="/etc")
        == {"/etc/passwd", "/etc/app.conf"}
    )
    browser.click_selector('tr.step[data-layer="4"]')
    assert set(browser.evaluate(TOP_RECTS)) == top_level_with_bytes(oracle, 4, under="/etc") == {"/etc/passwd"}
    browser.click_selector('tr.step[data-layer="4"]')
    browser.click_selector('#crumbs button[data-path="/"]')
    assert set(browser.evaluate(TOP_RECTS)) == top_level_with_bytes(oracle)
    assert browser.evaluate("document.querySelectorAll('tr.step[aria-pressed=\"true\"]').length") == 0
    shot = artifact(tmp_path, "inspect-demo.png")
    browser.screenshot(shot)
    print(f"screenshot of the demo inspect page: {shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    assert browser.errors == []


def test_the_policy_blocks_and_reports_anything_added_to_a_page(browser: chromium.Browser, tmp_path: Path) -> None:
    """What a tampered page tries (inline script, inline style, a request) is blocked, and the tests would see it."""
    page = write_pages(tmp_path)["inspect"]
    tampered = tmp_path / "tampered.html"
    extra = '<script>document.body.dataset.owned = "yes"</script><p style="color:red">x</p><img src="https://example.com/x.png">'
    tampered.write_text(page.read_text("utf-8").replace('<main id="app"></main>', '<main id="app"></main>' + extra))
    browser.errors.clear()
    browser.open(tampered)
    assert browser.evaluate("document.body.dataset.owned") is None
    assert browser.evaluate("document.body.getAttribute('data-ready')") == "true"  # the report itself still runs
    blocked = " ".join(browser.errors)
    assert len(browser.errors) == 3, browser.errors
    assert "inline script" in blocked and "inline style" in blocked and "https://example.com/x.png" in blocked
    browser.errors.clear()


def test_hostile_names_stay_text_in_chromium(browser: chromium.Browser, tmp_path: Path) -> None:
    archive = hostile_image(tmp_path)
    out = tmp_path / "hostile.html"
    assert runner.invoke(app, ["inspect", str(archive), "--html", str(out)]).exit_code == 0
    open_page(browser, out)
    assert browser.evaluate("document.scripts.length") == 2
    assert browser.evaluate("document.title").startswith("imgscope inspect")
    cells = browser.evaluate("Array.from(document.querySelectorAll('#largest td.path')).map(c => c.textContent)")
    assert f"/srv/{HOSTILE_NAME}" in cells
    assert "/srv/caf\\xe9\\x1b[2J\\u202e.txt" in cells
    assert printable(f"/srv/{UNPRINTABLE_NAME}") in cells  # the console's spelling
    assert set(browser.evaluate(TOP_RECTS)) == top_level_with_bytes(oracle_final(archive)) == {"/bin", "/srv", "/etc"}


def test_diff_ci_and_audit_pages_in_chromium(browser: chromium.Browser, tmp_path: Path) -> None:
    other = hostile_image(tmp_path)
    pages = write_pages(tmp_path, other)
    diff_json = embedded(pages["diff"].read_text("utf-8"))["report"]
    open_page(browser, pages["diff"])
    assert browser.evaluate("document.querySelectorAll('#steps tbody tr').length") == len(diff_json["steps"])
    assert browser.evaluate("document.querySelectorAll('#files tbody tr').length") == len(diff_json["files"])
    browser.click_selector('#files button[data-kind="added"]')
    kinds = browser.evaluate("Array.from(document.querySelectorAll('#files tbody tr')).map(r => r.dataset.kind)")
    assert kinds == ["added"] * sum(1 for f in diff_json["files"] if f["kind"] == "added") and kinds

    ci_json = embedded(pages["ci"].read_text("utf-8"))["report"]
    open_page(browser, pages["ci"])
    statuses = browser.evaluate("Array.from(document.querySelectorAll('#rules tbody tr')).map(r => r.dataset.status)")
    assert sorted(statuses) == sorted(r["status"] for r in ci_json["rules"])
    assert "fail" in statuses
    assert browser.evaluate("document.getElementById('verdict').textContent").startswith("Failed")
    # The forbidden path is named with the layer that wrote it (the hostile image writes it in layer 2).
    assert "/etc/app.conf  (layer 2)" in browser.evaluate("document.getElementById('rules').textContent")

    secret = secret_image(tmp_path)
    audit_page = tmp_path / "secret-audit.html"
    runner.invoke(app, ["audit", str(secret), "--html", str(audit_page)])
    audit_json = embedded(audit_page.read_text("utf-8"))["report"]
    open_page(browser, audit_page)
    rows = browser.evaluate("Array.from(document.querySelectorAll('#findings tbody tr')).map(r => r.dataset.severity)")
    assert rows == [f["severity"] for f in audit_json["findings"]]
    assert GITHUB_TOKEN[-12:] not in browser.evaluate("document.body.innerText")
    assert browser.errors == []


def test_bench_app_screenshot(browser: chromium.Browser, tmp_path: Path) -> None:
    """With the benchmark image built (benchmarks/build_images.py), its page opens cleanly too."""
    cache = os.environ.get("IMGSCOPE_BENCH_CACHE") or Path(__file__).resolve().parent.parent / "benchmarks" / "cache"
    archive = Path(cache) / "bench-app.tar"
    if not archive.is_file():
        pytest.skip(f"{archive} not built (python benchmarks/build_images.py; or set IMGSCOPE_BENCH_CACHE)")
    out = tmp_path / "bench-app.html"
    assert runner.invoke(app, ["inspect", str(archive), "--html", str(out)]).exit_code == 0
    assert out.stat().st_size < 1_500_000
    open_page(browser, out)
    assert set(browser.evaluate(TOP_RECTS)) == top_level_with_bytes(oracle_final(archive))
    shot = artifact(tmp_path, "inspect-bench-app.png")
    browser.screenshot(shot)
    print(f"screenshot of the bench-app inspect page: {shot}")


def test_script_never_builds_markup_from_strings() -> None:
    """The report script never builds markup from strings: every node is created, text set with textContent."""
    code = (Path(html_report.__file__).parent / "assets" / "report.js").read_text("utf-8")
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function", code)


def test_a_very_deep_path_is_folded_not_a_crash(tmp_path: Path) -> None:
    """1,500 directory levels (one PAX path): the page keeps the treemap's levels and counts the file."""
    deep = "/" + "a/" * 1500 + "f"
    spec = ib.ImageSpec((ib.copy("file:deep", "/", ib.file(deep, "x" * 100)),))
    image = tmp_path / "deep.tar"
    ib.write_docker_archive(image, spec)
    page = tmp_path / "deep.html"
    result = runner.invoke(app, ["inspect", str(image), "--html", str(page)])
    assert result.exit_code == 0, result.output
    tree = embedded(page.read_text("utf-8"))["report"]["treemap"]
    depth, node = 0, tree
    while "c" in node:
        (node,) = node["c"]
        depth += 1
    assert depth <= html_report.MAX_TREEMAP_DEPTH + 1
    assert node == {"n": "(1 smaller files)", "s": 100, "f": 1, "b": {"0": 100}}
