"""``imgscope inspect`` end to end: output, JSON schema, and every input error ending in exit 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from imgscope.cli import app
from imgscope.schemas import load_schema


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("imgscope: error: ")
    assert "Traceback" not in output
    return lines[0]


EXTERNAL_REFS = [
    "test-docker-image.tar",
    "test-kaniko-image.tar",
    "test-oci-zstd-image.tar",
    "test-oci-estargz-image.tar",
    "ggcr-hello-world-v25.tar",
]


@pytest.mark.parametrize("name", EXTERNAL_REFS)
def test_json_report_validates(external: Path, name: str) -> None:
    code, out = run("inspect", str(external / name), "--json")
    assert code == 0, out
    report = json.loads(out)
    jsonschema.validate(report, load_schema("inspect"))
    assert report["image"]["size"] == sum(layer["size"] for layer in report["layers"])
    visible = {f["path"] for f in report["files"]}
    assert all(path.startswith("/") for path in visible)


def test_json_layer_changes_of_dive_image(external: Path) -> None:
    code, out = run("inspect", str(external / "test-docker-image.tar"), "--json")
    assert code == 0
    report = json.loads(out)
    layers = report["layers"]
    # RUN chmod 444 /root/example/somefile1.txt: same content, new mode: metadata.
    chmod = [c for c in layers[4]["changes"] if c["kind"] != "added"]
    assert [(c["path"], c["kind"], c["old_mode"], c["mode"]) for c in chmod] == [
        ("/root/example/somefile1.txt", "metadata", "0644", "0444")
    ]
    # RUN rm -rf /root/example/: a whiteout removes the directory and everything below it.
    removed = {c["path"] for c in layers[9]["changes"] if c["kind"] == "removed"}
    assert removed == {
        "/root/example",
        "/root/example/really",
        "/root/example/really/nested",
        "/root/example/somefile1.txt",
        "/root/example/somefile2.txt",
    }
    assert layers[9]["totals"]["removed"] == {"count": 5, "bytes": 2 * 6405}
    final = {f["path"]: f for f in report["files"]}
    assert final["/root/saved.txt"]["mode"] == "0755" and final["/root/saved.txt"]["layer"] == 13
    assert "/root/example" not in final
    # Empty steps are kept in history with no layer.
    assert [h["instruction"] for h in report["history"] if h["empty"]] == ['CMD ["sh"]']


def test_layer_tree_and_filter_views(external: Path) -> None:
    path = str(external / "test-docker-image.tar")
    code, out = run("inspect", path, "--layer", "9", "--no-color")
    assert code == 0 and "/root/example/somefile2.txt" in out and "removed" in out
    code, out = run("inspect", path, "--tree", "--depth", "2", "--no-color", "--filter", "/root/**")
    assert code == 0 and "saved.txt" in out and "getconf" not in out
    code, out = run("inspect", path, "--layer", "99")
    assert code == 2 and "layers 0 to 13" in one_error_line(out)


def test_layer_shows_one_header_line_then_that_layers_changes() -> None:
    """``--layer N`` is about the layer: one line of context, its changes, not the whole summary again."""
    demo = str(Path(__file__).resolve().parent.parent / "sample_images" / "demo-legacy.tar")
    code, out = run("inspect", demo, "--layer", "4", "--no-color")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"{demo}  layer 4 of 7 (0-6)  97 B")
    assert lines[1].startswith("Layer 4: RUN echo")
    for absent in ("Entrypoint", "Steps", "Efficiency", "Top 10 largest files"):
        assert absent not in out
    _code, raw = run("inspect", demo, "--json")
    changes = next(item for item in json.loads(raw)["layers"] if item["index"] == 4)["changes"]
    rows = [line for line in lines if line.startswith("│")]
    assert len(rows) == len(changes)
    for change in changes:
        assert any(change["path"] in row and change["kind"] in row for row in rows)


def test_missing_file(tmp_path: Path) -> None:
    code, out = run("inspect", str(tmp_path / "nope.tar"))
    assert code == 2 and "nope.tar" in one_error_line(out)


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.tar"
    empty.write_bytes(b"")
    code, out = run("inspect", str(empty))
    assert code == 2 and "empty" in one_error_line(out)


def test_unknown_format(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x89PNG not an image archive" * 100)
    code, out = run("inspect", str(junk))
    assert code == 2 and "unknown format" in one_error_line(out)


def test_directory_that_is_not_a_layout(tmp_path: Path) -> None:
    code, out = run("inspect", f"oci:{tmp_path}")
    assert code == 2 and "index.json" in one_error_line(out)


def test_truncated_archive(external: Path, tmp_path: Path) -> None:
    data = (external / "test-docker-image.tar").read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: len(data) // 2])
    code, out = run("inspect", str(cut))
    assert code == 2 and "cut.tar" in one_error_line(out)


def test_missing_blob_in_layout(external: Path, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    shutil.copytree(external / "ggcr-layout-test_index", layout)
    for blob in (layout / "blobs/sha256").iterdir():
        blob.chmod(0o644)
    (layout / "blobs/sha256/dc52c6e48a1d51a96047b059f16889bc889c4b4c28f3b36b3f93187f62fc0b2b").unlink()
    code, out = run("inspect", f"oci:{layout}:1")
    line = one_error_line(out)
    assert code == 2 and "dc52c6e48a1d51a96047b059f16889bc889c4b4c28f3b36b3f93187f62fc0b2b" in line


def test_layer_that_does_not_decompress(external: Path, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    with tarfile.open(external / "test-oci-gzip-image.tar") as tf:
        tf.extractall(layout, filter="data")
    blob = layout / "blobs/sha256/9aef42427209c9a180c61bb36b0b09681cbe3d3ff6409408bde0eb17ec1ba0cc"
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[40:400] = b"\xff" * 360
    blob.write_bytes(bytes(data))
    code, out = run("inspect", f"oci:{layout}")
    line = one_error_line(out)
    assert code == 2 and "9aef42427209" in line


def test_verify_detects_a_wrong_digest(external: Path, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    with tarfile.open(external / "test-oci-uncompressed-image.tar") as tf:
        tf.extractall(layout, filter="data")
    blob = layout / "blobs/sha256/356d5e7f4012d87cb1078ac1f480e90528eec4940ce45c50380321436db38758"
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[600] ^= 0x01  # one byte of README.md's content
    blob.write_bytes(bytes(data))
    code, out = run("inspect", f"oci:{layout}", "--json")
    assert code == 0 and "DiffID" in json.loads(out)["warnings"][0]
    code, out = run("inspect", f"oci:{layout}", "--verify")
    assert code == 2 and "DiffID" in one_error_line(out)


def test_version_and_module_entry_point() -> None:
    proc = subprocess.run([sys.executable, "-m", "imgscope", "--version"], capture_output=True, text=True, check=True)
    assert proc.stdout.startswith("imgscope ")


def test_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys; from imgscope.cli import app; "
        "heavy = [m for m in ('docker', 'textual', 'imgscope.stack', 'imgscope.analysis.waste', 'requests') "
        "if m in sys.modules]; print(heavy)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_console_escapes_control_characters_from_images() -> None:
    """Any renderer's text (not only the ones that call printable()) reaches the terminal escaped."""
    import io

    from rich.table import Table
    from rich.text import Text

    from imgscope.cli.common import make_console

    console = make_console(False)
    console.file = io.StringIO()
    table = Table()
    table.add_column("path")
    table.add_row(Text("/evil\x1b[2J\x07name"))
    console.print(table)
    console.print("[bold]fine[/bold]\nsecond line")
    out = console.file.getvalue()
    assert "\x1b" not in out and "\x07" not in out
    assert "/evil\\x1b[2J" in out and "fine\nsecond line" in out


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_closed_pipe_exits_141_quietly(extra: list[str]) -> None:
    """`imgscope inspect ... | head`: no traceback, and not 1, which would read as a failed check."""
    from tests.conftest import SAMPLES

    cmd = [sys.executable, "-m", "imgscope", "inspect", str(SAMPLES / "demo-legacy.tar"), "--no-color", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the interpreter has even started: the first write meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err
