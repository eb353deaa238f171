"""Hostile text from an image (issue 19): every renderer escapes it, every error stays one line.

A file name may hold a newline (to fake a row), U+200F or U+061C (to turn a
name around: ``rtl\\u200fgnp.exe``), U+2028/U+2029 (a line break to some
terminals and editors), or lone surrogates (bytes that are not UTF-8, or a
``"\\ud800"`` in the config's JSON).  Each output format is checked for the
raw characters: console, markdown, JUnit, SARIF, and ``container``'s table.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from imgscope.analysis.container import ContainerReport, ContainerTotals, PathChange
from imgscope.cli import app
from imgscope.errors import ImgscopeError
from imgscope.model import FILE, Entry
from imgscope.render.console import printable
from imgscope.render.container import changes_table
from tests import corpus
from tests.corpus import header, layer, member

HOSTILE = ("evil\nFAKE ROW.txt", "rtl\u200fgnp.exe", "sep\u2028x", "par\u2029y", "al\u061cm", "lrm\u200ez")
RAW = ("\u200f", "\u2028", "\u2029", "\u061c", "\u200e")


def image(tmp_path: Path) -> Path:
    files = [member(f"app/{name}", b"PASSWORD=hunter2hunter2\n") for name in HOSTILE]
    files.append(member("app/.env\nFAKE", b"A=1\n"))
    data = layer(header("app/", typeflag=b"5", mode=0o777), *files)
    path = tmp_path / "image.tar"
    corpus.docker_archive(path, [data])
    return path


def assert_escaped(text: str) -> None:
    for char in RAW:
        assert char not in text, repr(char)
    assert not any(line.lstrip(" │|-").startswith("FAKE") for line in text.splitlines()), text


def make_layout(root: Path) -> None:
    data = layer(member("a", b"a"))
    corpus.oci_layout(root, [(data, corpus.OCI_TAR)], config=corpus.config_for([data]))


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_printable_escapes_bidi_separators_and_every_lone_surrogate() -> None:
    assert printable("a\u200fb\u2028c\u2029d\u061ce\u200ef\ng") == "a\\u200fb\\u2028c\\u2029d\\u061ce\\u200ef\\ng"
    assert printable("caf\udce9 \ud800") == "caf\\xe9 \\ud800"


@pytest.mark.parametrize(
    "args",
    [
        ("inspect",),
        ("inspect", "--tree"),
        ("inspect", "--layer", "0"),
        ("inspect", "--sort", "path", "--top", "20"),
        ("audit",),
        ("ci", "--forbid-path", "/app/rtl*"),
    ],
    ids=lambda a: " ".join(a),
)
def test_console_renderers(tmp_path: Path, args: tuple[str, ...]) -> None:
    code, out, err = cli(args[0], str(image(tmp_path)), *args[1:], "--no-color")
    assert code in (0, 1), err
    assert_escaped(out)
    assert "\\u200f" in out or args == ("inspect",)


def test_diff_renderers(tmp_path: Path) -> None:
    a = tmp_path / "a"
    a.mkdir()
    other = tmp_path / "b.tar"
    corpus.docker_archive(other, [layer(member("kept", b"k"))])
    for fmt in ("text", "markdown"):
        code, out, err = cli("diff", str(other), str(image(a)), "--format", fmt, "--no-color")
        assert code in (0, 1), err
        assert_escaped(out)


def test_ci_markdown_and_junit(tmp_path: Path) -> None:
    md, xml = tmp_path / "ci.md", tmp_path / "ci.xml"
    code, _, err = cli(
        "ci", str(image(tmp_path)), "--forbid-path", "/app/rtl*", "--markdown", str(md), "--junit", str(xml)
    )
    assert code == 1, err
    assert_escaped(md.read_text())
    text = xml.read_text()
    assert_escaped(text)
    ET.fromstring(text.encode())  # still well-formed XML (a raw control character is not)
    assert "\\u200f" in text


def test_audit_sarif(tmp_path: Path) -> None:
    sarif = tmp_path / "audit.sarif"
    code, _, err = cli("audit", str(image(tmp_path)), "--sarif", str(sarif))
    assert code == 1, err
    data = json.loads(sarif.read_text())
    messages = [r["message"]["text"] for run in data["runs"] for r in run["results"]]
    messages += [loc["message"]["text"] for run in data["runs"] for r in run["results"] for loc in r["locations"]]
    assert messages
    for text in messages:
        assert_escaped(text)
        assert "\n" not in text
    uris = [
        loc["physicalLocation"]["artifactLocation"]["uri"] for r in data["runs"][0]["results"] for loc in r["locations"]
    ]
    assert "app/evil%0AFAKE%20ROW.txt" in uris


def test_audit_sarif_with_a_name_that_is_not_utf8(tmp_path: Path) -> None:
    """Once a UnicodeEncodeError: the artifact URI percent-encodes the original byte."""
    path = tmp_path / "image.tar"
    corpus.docker_archive(path, [layer(member(b"app/caf\xe9/.env", b"PASSWORD=hunter2hunter2\n"))])
    sarif = tmp_path / "audit.sarif"
    code, _, err = cli("audit", str(path), "--sarif", str(sarif))
    assert code == 1, err
    uris = [
        loc["physicalLocation"]["artifactLocation"]["uri"]
        for r in json.loads(sarif.read_text())["runs"][0]["results"]
        for loc in r["locations"]
    ]
    assert "app/caf%E9/.env" in uris


def test_container_table() -> None:
    entry = Entry("/x", FILE, 0o644, 0, 0, 1, 1, 0)
    changes = tuple(PathChange(f"/app/{name}", "added", "A", 1, entry, None) for name in HOSTILE)
    report = ContainerReport("c", "n", "running", "local", "img", "sha256:" + "0" * 64, changes, ContainerTotals((), 0))
    console = Console(width=80, record=True, color_system=None)
    console.print(changes_table(report))
    out = console.export_text()
    assert_escaped(out)
    assert "evil\\nFAKE" in out


def test_lone_surrogate_in_the_config_is_shown_escaped(tmp_path: Path) -> None:
    """Once a UnicodeEncodeError from rich and exit 1: the model keeps the text (redaction needs it
    as it is, tests/test_redaction.py), the console shows the escape."""
    layers = [layer(member("a", b"a"))]
    config = json.loads(corpus.config_for(layers))
    config["config"]["Labels"] = {"note": "a\ud800b"}
    raw = json.dumps(config).encode()  # ensure_ascii: the JSON text holds the escape "\ud800"
    assert b"\\ud800" in raw
    path = tmp_path / "image.tar"
    corpus.docker_archive(path, layers, config=raw)
    code, out, err = cli("inspect", str(path), "--no-color")
    assert code == 0, err
    assert "a\\ud800b" in out


def test_an_error_naming_a_file_with_a_newline_keeps_its_reason(tmp_path: Path) -> None:
    missing = tmp_path / "no\nsuch.tar"
    code, _, err = cli("inspect", str(missing))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "no\\nsuch.tar" in lines[0], err
    assert ImgscopeError("bad entry a\nb (the reason)").message == "bad entry a\\nb (the reason)"
    assert ImgscopeError("x\u2028y: why").message == "x\\u2028y: why"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_blob_is_one_line_and_exit_2(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    make_layout(layout)
    blobs = sorted((layout / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    for blob in blobs:
        blob.chmod(0)
    code, _, err = cli("inspect", f"oci:{layout}", "--no-cache")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Permission denied" in err


def test_an_unreadable_blob_as_root_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As root chmod does not stop a read: the PermissionError is raised where a blob is opened."""
    import builtins

    layout = tmp_path / "layout"
    make_layout(layout)
    real_open = builtins.open

    def deny(file: object, *args: object, **kwargs: object) -> object:
        if "blobs" in str(file):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", deny)
    code, _, err = cli("inspect", f"oci:{layout}", "--no-cache")
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Permission denied" in err


def test_an_uppercase_digest_is_invalid_not_missing(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    make_layout(layout)
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0]["digest"] = index["manifests"][0]["digest"].upper().replace("SHA256:", "sha256:")
    (layout / "index.json").write_text(json.dumps(index))
    code, _, err = cli("inspect", f"oci:{layout}")
    assert code == 2
    assert "invalid digest" in err and "lowercase" in err, err
