"""A computation handed to a forked child (``imgscope.background.Forked``) gives what computing it here gives.

Oracles: the function called directly in this process, and the in-process
CLI's report (``CliRunner``), which never forks (the test process is not
allowed to, or the work is below the threshold).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgscope import background
from imgscope.background import Forked
from imgscope.cli import app
from tests.conftest import ROOT, SAMPLES

PARENT = os.getpid()


def _where(tag: str) -> dict[str, object]:
    return {"tag": tag, "pid": os.getpid(), "list": [1, 2.5, None, True], "nested": {"a": ["b"]}}


def _fails_in_a_child(tag: str) -> dict[str, object]:
    if os.getpid() != PARENT:
        raise RuntimeError("only in the child")
    return _where(tag)


@pytest.fixture
def may_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(background, "_can_fork", lambda: True)


def test_a_child_computes_the_value(may_fork: None) -> None:
    with Forked(_where, "x", work=background.MIN_WORK) as forked:
        value = forked.result()
        assert forked.result() is value  # asked twice: computed once
    assert value["pid"] != PARENT
    assert {**value, "pid": PARENT} == _where("x")


def test_a_failing_child_is_replaced_by_the_computation_here(may_fork: None) -> None:
    with Forked(_fails_in_a_child, "y", work=background.MIN_WORK) as forked:
        assert forked.result() == _where("y")


def test_an_error_of_the_computation_itself_is_raised_here(may_fork: None) -> None:
    def broken() -> None:
        raise ValueError("broken everywhere")

    with Forked(broken, work=background.MIN_WORK) as forked, pytest.raises(ValueError, match="broken everywhere"):
        forked.result()


def test_a_result_never_asked_for_leaves_no_child(may_fork: None) -> None:
    with Forked(_where, "z", work=background.MIN_WORK) as forked:
        pid = forked._pid
        assert pid
    assert forked._pid == 0
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped already


def test_small_work_or_other_threads_compute_here(monkeypatch: pytest.MonkeyPatch) -> None:
    with Forked(_where, "small", work=background.MIN_WORK - 1) as forked:
        assert forked._pid == 0
        assert forked.result()["pid"] == PARENT
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not background._can_fork()
    finally:
        stop.set()
        other.join()


DRIVER = (
    "import sys, imgscope.background as b\n"
    "b.MIN_WORK = 0\n"
    "b._can_fork = lambda: True\n"
    "real = b.Forked._start\n"
    "def start(self):\n"
    "    sys.stderr.write('forked\\n')\n"
    "    real(self)\n"
    "b.Forked._start = start\n"
    "sys.argv = ['imgscope', *sys.argv[1:]]\n"
    "from imgscope.cli import main\n"
    "main()\n"
)


@pytest.mark.parametrize("name", ["demo-legacy.tar", "demo-oci.tar"])
def test_the_report_is_the_same_with_its_waste_section_forked(name: str, tmp_path: Path) -> None:
    args = ["inspect", str(SAMPLES / name), "--json", "--no-cache"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), IMGSCOPE_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", DRIVER, *args], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "forked\n"
    assert done.stdout == CliRunner().invoke(app, args).stdout
