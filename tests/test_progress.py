"""The progress line on a terminal's stderr: rewritten in place, and gone when the work is done.

It is driven through a real pseudo-terminal, as a user at a desk sees it: the
bytes written are replayed with a terminal's carriage-return rule (a "\\r"
moves back to the start of the line, later text overwrites).
"""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from imgscope.cli.common import ProgressLine

SAMPLE = Path(__file__).resolve().parent.parent / "sample_images" / "demo-legacy.tar"


def screen_line(written: str) -> str:
    """What one terminal line shows after ``written`` (no newlines) is printed on it."""
    cells: list[str] = []
    col = 0
    for ch in written:
        if ch == "\r":
            col = 0
            continue
        if col < len(cells):
            cells[col] = ch
        else:
            cells.append(ch)
        col += 1
    return "".join(cells).rstrip()


def test_the_line_is_rewritten_only_when_it_changes_and_cleared_at_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    out = io.StringIO()
    line = ProgressLine(out)
    line("reading from the daemon (MB)", 9, 815)
    shown = out.getvalue()
    line("reading from the daemon (MB)", 9, 815)  # a second report of the same figure writes nothing
    assert out.getvalue() == shown
    line("reading from the daemon (MB)", 10, 815)
    assert screen_line(out.getvalue()) == "reading from the daemon (MB): 10/815"
    line("stack", 1, 3)  # shorter: the rest of the longer line is blanked
    assert screen_line(out.getvalue()) == "stack: 1/3"
    line("stack", 3, 3)
    assert screen_line(out.getvalue()) == ""
    line("stack", 2, 3)
    line.clear()  # as when the load fails: the error line starts on a blank line
    assert screen_line(out.getvalue()) == ""
    written = out.getvalue()
    line.clear()
    assert out.getvalue() == written
    assert "\n" not in out.getvalue()


def test_a_line_wider_than_the_terminal_is_cut_so_it_never_wraps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "20")
    out = io.StringIO()
    ProgressLine(out)("reading from the daemon (MB)", 10, 815)
    assert screen_line(out.getvalue()) == "reading from the dae"[:19]


def test_inspect_on_a_terminal_leaves_no_progress_behind() -> None:
    """stderr a pty, stdout a pipe (``inspect > report.txt``): the report is clean, the line blank at the end.

    (``--json`` prints no progress at all.)
    """
    main, sub = pty.openpty()
    env = {**os.environ, "COLUMNS": "80"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgscope", "inspect", str(SAMPLE), "--no-cache"],
        stdout=subprocess.PIPE,
        stderr=sub,
        env=env,
    )
    os.close(sub)
    written = b""
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not data:
            break
        written += data
    stdout, _ = proc.communicate(timeout=60)
    os.close(main)
    assert proc.returncode == 0
    assert b"demo-legacy.tar" in stdout and b"\r" not in stdout
    text = written.decode()
    assert "scanning layers: " in text  # progress was shown while the layers were scanned ...
    assert "\n" not in text.strip("\r\n ")
    assert screen_line(text.replace("\n", "")) == ""  # ... and nothing of it is left on the line
