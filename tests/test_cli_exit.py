"""The console script's quick exit (``imgscope.cli.run``) ends a run as the interpreter's own exit would.

Oracles: the in-process CLI (``CliRunner``) for the output, and the
interpreter's usual exit for the status and the exit handlers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from imgscope.cli import app
from tests.conftest import ROOT, SAMPLES

RUN = (
    "import atexit, sys\n"
    "atexit.register(lambda: sys.stderr.write('exit handler ran\\n'))\n"
    "sys.argv = ['imgscope', *sys.argv[1:]]\n"
    "from imgscope.cli import run\n"
    "run()\n"
    "print('not reached')\n"
)


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), IMGSCOPE_CACHE_DIR=str(tmp_path / "cache"))
    return subprocess.run(
        [sys.executable, "-c", RUN, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )


def test_a_report_is_whole_and_the_exit_handlers_run(tmp_path: Path) -> None:
    args = ["inspect", str(SAMPLES / "demo-legacy.tar"), "--json", "--no-cache"]
    done = _run(tmp_path, *args)
    expected = CliRunner().invoke(app, args)
    assert done.returncode == expected.exit_code == 0
    assert done.stdout == expected.stdout
    assert done.stderr == "exit handler ran\n"


def test_a_user_error_keeps_its_status_and_its_line(tmp_path: Path) -> None:
    done = _run(tmp_path, "inspect", str(tmp_path / "missing.tar"))
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[0].startswith("imgscope: error: ") and "missing.tar" in lines[0]
    assert lines[1:] == ["exit handler ran"]
    assert not done.stdout


def test_help_and_usage_errors(tmp_path: Path) -> None:
    done = _run(tmp_path, "--help")
    assert done.returncode == 0 and "inspect" in done.stdout and "not reached" not in done.stdout
    done = _run(tmp_path, "inspect", "--no-such-option")
    assert done.returncode == 2 and "No such option" in done.stderr


def test_python_m_imgscope_runs_the_same(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), IMGSCOPE_CACHE_DIR=str(tmp_path / "cache"))
    args = ["inspect", str(SAMPLES / "demo-legacy.tar"), "--json", "--no-cache"]
    done = subprocess.run([sys.executable, "-m", "imgscope", *args], capture_output=True, text=True, env=env)
    assert done.returncode == 0
    assert done.stdout == CliRunner().invoke(app, args).stdout
