"""Every console report reads at 80, 120 and 200 columns: numbers whole, headers whole, lines within the width.

Oracle: the JSON report of the same command (its sizes, formatted as the
console formats them, must appear whole in the text) and the width itself
(no line longer than ``COLUMNS``).  The reports are produced by the real CLI
in a child process with ``COLUMNS`` set, as in a pipe or a CI log.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from imgscope.units import format_size
from tests import imagebuild as ib
from tests.test_explore import audited_spec

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "sample_images" / "demo-legacy.tar"
WIDTHS = [80, 120, 200]
LONG_RUN = "RUN " + " && ".join(f"echo step{i} > /srv/out{i}.txt" for i in range(12))


def run(width: int, *args: str) -> tuple[int, str]:
    env = dict(os.environ, COLUMNS=str(width), NO_COLOR="1")
    env.pop("LINES", None)
    done = subprocess.run(
        [sys.executable, "-m", "imgscope", *args], capture_output=True, text=True, env=env, cwd=ROOT, check=False
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout


def cells(line: str) -> list[str]:
    """The cells of one table row (``│ a │ b │``) or header (``┃ a ┃ b ┃``)."""
    return [c.strip() for c in re.split("[│┃]", line)[1:-1]]


def check_readable(text: str, width: int) -> None:
    """No table line wider than the terminal, no header cut, no number cut.

    Free text (a long path in a heading) is printed whole and left to the terminal to wrap.
    """
    for line in text.splitlines():
        if line[:1] in "┏┃┡│└":
            assert len(line.rstrip()) <= width, f"{len(line.rstrip())} > {width}: {line!r}"
        if line.startswith("┃"):
            assert not any(c.endswith("…") for c in cells(line)), line
            assert all(c or line.count("┃") > 2 for c in cells(line)), line
        if line.startswith("│"):
            for cell in cells(line):
                # A cut number: digits (and units) then the ellipsis, or a bare "(1…".
                assert not re.search(r"(^|[\s(+-])[\d.,]+\s?[kMGT]?i?B?…$", cell), (cell, line)


def sized_specs() -> tuple[ib.ImageSpec, ib.ImageSpec]:
    """Two images that differ by a long RUN step and a big file, for diff and ci."""
    base = ib.ImageSpec(
        (
            ib.BuildStep("/bin/sh -c #(nop) ADD file:base in / ", (ib.directory("srv"), ib.file("srv/a", b"a" * 5000))),
            ib.run("rm /srv/a", ib.directory("srv"), ib.whiteout("srv/a")),
        )
    )
    grown = base.extend(ib.run(LONG_RUN, ib.directory("srv"), ib.file("srv/big.bin", b"b" * 123_456)))
    return base, grown


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("widths")
    base, grown = sized_specs()
    paths = {"base": root / "base.tar", "grown": root / "grown.tar", "audited": root / "audited.tar"}
    ib.write_docker_archive(paths["base"], base)
    ib.write_docker_archive(paths["grown"], grown)
    ib.write_docker_archive(paths["audited"], audited_spec())
    return paths


@pytest.mark.parametrize("width", WIDTHS)
def test_inspect_keeps_every_size_whole(width: int) -> None:
    code, text = run(width, "inspect", str(DEMO))
    assert code == 0
    check_readable(text, width)
    _code, raw = run(width, "inspect", str(DEMO), "--json")
    report = json.loads(raw)
    steps = text[text.index("Steps") :]
    for layer in report["layers"]:
        assert re.search(rf"│\s+{layer['index']} │\s+{re.escape(format_size(layer['size']))} │", steps), layer["index"]
    waste = report["waste"]
    assert f"Efficiency {waste['efficiency'] * 100:.1f}%: wasted {format_size(waste['wasted_bytes'])}" in text
    per_step = text[text.index("Waste per step") :]
    for step in waste["steps"]:
        if step["wasted"]:
            share = f"{step['wasted'] / step['stored'] * 100:.1f}%"
            assert f"{format_size(step['wasted'])} ({share})" in per_step
    for header in ("Layer", "Stored", "Wasted", "Hides"):
        assert header in per_step.splitlines()[2]


@pytest.mark.parametrize("width", WIDTHS)
def test_inspect_layer_keeps_sizes_whole(width: int) -> None:
    code, text = run(width, "inspect", str(DEMO), "--layer", "4")
    assert code == 0
    check_readable(text, width)
    assert "63 B" in text and "-19 B" in text


@pytest.mark.parametrize("width", WIDTHS)
def test_audit_is_a_list_when_narrow_and_a_table_when_wide(width: int, images: dict[str, Path]) -> None:
    code, text = run(width, "audit", str(images["audited"]), "--fail-on", "critical")
    assert code in (0, 1)
    check_readable(text, width)
    _code, raw = run(width, "audit", str(images["audited"]), "--json", "--fail-on", "critical")
    findings = json.loads(raw)["findings"]
    assert findings
    if width < 110:
        assert "┏" not in text  # a list, not a table of wrapped cells
        flat = " ".join(text.split())
        for f in findings:
            assert any(line.startswith(f["severity"]) for line in text.splitlines())
            assert f["rule"] in text.split()  # the rule id whole
            assert " ".join(f["message"].split()) in flat  # the message whole (wrapped at spaces)
    else:
        assert "┃ Severity" in text
        for f in findings:
            assert f["rule"] in text


@pytest.mark.parametrize("width", WIDTHS)
def test_diff_and_ci_keep_numbers_whole(width: int, images: dict[str, Path]) -> None:
    code, text = run(width, "diff", str(images["base"]), str(images["grown"]))
    assert code == 1
    check_readable(text, width)
    assert "+123.5 kB" in text
    code, text = run(width, "ci", str(images["grown"]), "--baseline", str(images["base"]))
    check_readable(text, width)
