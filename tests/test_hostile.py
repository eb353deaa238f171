"""Hostile and broken input (issue 9): one clear line and exit 2, or a warning and a correct partial report.

Every case of ``tests/corpus.py`` is run through the real command line
(in-process, with ``CliRunner``) in a sandbox: the input is written into its
own directory, the working directory and ``$HOME`` are empty directories, the
cache has its own.  After the run the input directory must be byte for byte
what it was, the working directory and home still empty, and the cache
directory hold nothing but the cache database: nothing was extracted or
written anywhere else.

A few cases also run in a real subprocess, where stdout is a pipe with a
strict UTF-8 encoder and Ctrl-C is a real SIGINT.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from imgscope.cli import app
from imgscope.schemas import load_schema
from tests import corpus
from tests.corpus import CASES, Case

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Sandbox:
    """Where one case runs: its input, an empty cwd and home, a private cache."""

    inputs: Path
    cwd: Path
    home: Path
    cache: Path


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    box = Sandbox(tmp_path / "inputs", tmp_path / "cwd", tmp_path / "home", tmp_path / "cache")
    for d in (box.inputs, box.cwd, box.home):
        d.mkdir()
    monkeypatch.chdir(box.cwd)
    monkeypatch.setenv("HOME", str(box.home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(box.home / ".cache"))
    monkeypatch.setenv("IMGSCOPE_CACHE_DIR", str(box.cache))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")  # a REF must never reach a daemon
    return box


def snapshot(root: Path) -> dict[str, tuple[str, int, str]]:
    """Every path under ``root`` with its type, mode and content hash (or link target)."""
    out: dict[str, tuple[str, int, str]] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", st.st_mode, os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir", st.st_mode, "")
            else:
                out[rel] = ("file", st.st_mode, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def error_line(stderr: str) -> str:
    """The single ``imgscope: error:`` line the user sees (and nothing else on stderr)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("imgscope: error: "), stderr
    return lines[0]


def all_warnings(report: dict[str, object]) -> list[str]:
    layers = report["layers"]
    assert isinstance(layers, list)
    top = report["warnings"]
    assert isinstance(top, list)
    return [*top, *(w for layer in layers for w in layer["warnings"])]


def check_outcome(case: Case, code: int, stdout: str, stderr: str) -> None:
    """What the user sees matches what the case says they must see."""
    assert "Traceback" not in stdout + stderr
    assert code == case.exit_code, stdout + stderr
    if case.usage_error:
        assert "Usage:" in stderr and case.message in stderr
        assert not stdout
    elif case.exit_code == 2:
        line = error_line(stderr)
        assert case.message in line
        assert case.names in line, f"{line!r} does not name {case.names!r}"
        assert not stdout
    else:
        report = json.loads(stdout)
        jsonschema.validate(report, load_schema("inspect"))
        warnings = all_warnings(report)
        if case.warning:
            assert any(case.warning in w for w in warnings), warnings
        else:
            assert not warnings
        final = {f["path"] for f in report["files"]}
        assert set(case.present) <= final, set(case.present) - final
        assert not set(case.absent) & final


@pytest.mark.parametrize("name", sorted(CASES))
def test_case(name: str, sandbox: Sandbox) -> None:
    case = CASES[name](sandbox.inputs)
    before = snapshot(sandbox.inputs)
    args = ["inspect", *case.args]
    if case.exit_code == 0:
        args.append("--json")
    result = CliRunner().invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    check_outcome(case, result.exit_code, result.stdout, result.stderr)
    # Nothing extracted, written or moved anywhere but the cache.
    assert snapshot(sandbox.inputs) == before
    assert not any(sandbox.cwd.iterdir())
    assert not any(sandbox.home.iterdir())
    if sandbox.cache.exists():
        assert all(p.name.startswith("scans.sqlite") for p in sandbox.cache.iterdir())


def test_corpus_covers_the_issue() -> None:
    """Every kind of input the issue lists has at least one case (guards against a silently shrunk corpus)."""
    wanted = [
        "truncated-archive",
        "truncated-layer",
        "layer-corrupt-gzip",
        "layer-corrupt-zstd",
        "layer-not-tar",
        "empty-file",
        "directory-not-layout",
        "manifest-not-json",
        "manifest-null",
        "manifest-empty-list",
        "manifest-absent-config",
        "manifest-absent-layer",
        "manifest-layer-twice-config-agrees",
        "manifest-layer-twice-config-disagrees",
        "index-missing-manifest-blob",
        "verify-blob-digest",
        "entry-dotdot",
        "entry-absolute",
        "entry-nul",
        "entry-invalid-utf8",
        "entry-long-name",
        "layer-symlink-outside",
        "layer-symlink-self",
        "hardlink-missing-target",
        "whiteout-nonexistent",
        "whiteout-bare",
        "bomb-max-layer-bytes",
        "cli-unknown-option",
        "cli-bad-int",
    ]
    assert not [w for w in wanted if w not in CASES]


def test_repeated_run_uses_the_cache_and_says_the_same(sandbox: Sandbox) -> None:
    """A warning case run twice (the second time from the scan cache) gives the same report."""
    case = CASES["entry-dotdot"](sandbox.inputs)
    first = CliRunner().invoke(app, ["inspect", *case.args, "--json"])
    second = CliRunner().invoke(app, ["inspect", *case.args, "--json"])
    assert first.exit_code == second.exit_code == 0
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    # Only this differs: the second run did not read (so did not check) the layers' bytes.
    assert (one["image"].pop("diff_ids_verified"), two["image"].pop("diff_ids_verified")) == (True, False)
    assert one == two


def test_error_line_never_drives_the_terminal(sandbox: Sandbox) -> None:
    """A name from the archive with an escape sequence is shown escaped in the error line."""
    layers = corpus.good_layers()
    config = corpus.config_for(layers)
    name = "evil\x1b]0;owned\x07\x1b[2J/layer.tar"
    manifest = [{"Config": hashlib.sha256(config).hexdigest() + ".json", "Layers": ["0/layer.tar", name]}]
    path = sandbox.inputs / "image.tar"
    corpus.docker_archive(path, layers, config=config, manifest=manifest, layer_names=["0/layer.tar", "1/layer.tar"])
    result = CliRunner().invoke(app, ["inspect", str(path)])
    line = error_line(result.stderr)
    assert result.exit_code == 2
    assert "\x1b" not in line and "\x07" not in line
    assert "evil\\x1b]0;owned\\x07\\x1b[2J/layer.tar" in line


def test_socket_absent(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent")
    result = CliRunner().invoke(app, ["inspect", "docker://imgscope-test/never:latest"])
    assert result.exit_code == 2
    line = error_line(result.stderr)
    assert "/nonexistent" in line
    assert not any(sandbox.cwd.iterdir())


# --------------------------------------------------------------------------- real processes


def run_cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "imgscope", *args], capture_output=True, env=env, cwd=cwd, timeout=timeout, check=False
    )


def child_env(box: Sandbox) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HOME=str(box.home),
        XDG_CACHE_HOME=str(box.home / ".cache"),
        IMGSCOPE_CACHE_DIR=str(box.cache),
        PYTHONIOENCODING="utf-8:strict",  # a name that is not UTF-8 must not crash the writer
        PYTHONPATH=str(ROOT),
    )
    env.pop("COLUMNS", None)
    return env


@pytest.mark.parametrize("name", ["entry-invalid-utf8", "entry-control-chars", "entry-long-name"])
@pytest.mark.parametrize("view", [[], ["--tree"], ["--layer", "0"], ["--json"]])
def test_hostile_names_in_a_real_terminal_pipe(name: str, view: list[str], sandbox: Sandbox) -> None:
    case = CASES[name](sandbox.inputs)
    proc = run_cli("inspect", *case.args, "--no-color", *view, env=child_env(sandbox), cwd=sandbox.cwd)
    assert proc.returncode == 0, proc.stderr
    assert b"Traceback" not in proc.stderr
    out = proc.stdout.decode("utf-8")  # strict: the output is valid UTF-8
    if view == ["--json"]:
        final = {f["path"] for f in json.loads(out)["files"]}
        assert set(case.present) <= final
        return
    # No control character reaches the terminal but the line ends rich writes itself.
    assert not [c for c in out if (ord(c) < 32 and c != "\n") or 0x7F <= ord(c) < 0xA0]
    if name == "entry-control-chars" and view == ["--layer", "0"]:
        assert "/esc\\x1b[2Jcape" in out and "/new\\nline" in out
    if name == "entry-invalid-utf8" and view == ["--layer", "0"]:
        assert "/caf\\xe9.txt" in out


def _fifo_reader_started(fifo: Path) -> io.BufferedWriter:
    """Open the FIFO for writing: returns once the child has opened it, i.e. is past start-up."""
    return open(fifo, "wb")


def _interruptible() -> None:
    """Give the child Ctrl-C as a terminal does.

    A shell starts background jobs with SIGINT ignored and children inherit that
    (Python then installs no KeyboardInterrupt handler), so a suite run with ``&``
    would otherwise test a process that cannot be interrupted at all.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_exits_130_without_traceback(sandbox: Sandbox) -> None:
    """SIGINT while imgscope waits on an endless input (a FIFO fed a gzip stream that never ends)."""
    import zlib

    fifo = sandbox.inputs / "endless.tar.gz"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgscope", "inspect", str(fifo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(sandbox),
        cwd=sandbox.cwd,
        preexec_fn=_interruptible,
    )
    try:
        writer = _fifo_reader_started(fifo)
        packer = zlib.compressobj(6, zlib.DEFLATED, 31)
        head = corpus.header("endless.bin", size=1 << 40)
        writer.write(packer.compress(head) + packer.flush(zlib.Z_SYNC_FLUSH))
        writer.flush()
        for _ in range(20):  # keep it busy: some data, never the end
            writer.write(packer.compress(b"\x00" * 65536) + packer.flush(zlib.Z_SYNC_FLUSH))
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        with contextlib.suppress(BrokenPipeError, UnboundLocalError):
            writer.close()
    assert proc.returncode == 130
    assert b"Traceback" not in err
    assert err.decode().strip() == "imgscope: interrupted"
    assert not out
    assert not any(sandbox.cwd.iterdir())


PARALLEL_DRIVER = """
import os, sys, time
import imgscope.sources.store as store

store.PARALLEL_MIN_BYTES = 0           # tiny layers, still scanned by worker processes
MAIN = os.getpid()
slow_in_main = sys.argv[2] == "main"
real = store.scan_layer
def slow(*args, **kwargs):
    if (os.getpid() == MAIN) == slow_in_main:
        time.sleep(120)                # this side takes "forever": Ctrl-C comes first
    elif os.getpid() == MAIN:
        time.sleep(1)                  # layers are taken on demand: leave some to the worker
    return real(*args, **kwargs)
store.scan_layer = slow
sys.argv = ["imgscope", "inspect", sys.argv[1], "--no-cache"]
from imgscope.cli import main
main()
"""


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc to find worker processes")
@pytest.mark.parametrize("slow_side", ["main", "worker"])
def test_ctrl_c_during_parallel_scan_stops_workers_quietly(slow_side: str, sandbox: Sandbox) -> None:
    """Ctrl-C in a terminal reaches the whole process group: workers must not print tracebacks or linger.

    ``main``: the workers are done and idle when Ctrl-C comes (an idle worker
    that takes the signal prints its own traceback).  ``worker``: a worker is
    busy with a long layer (it must be stopped, not waited for).
    """
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: layers are never scanned in worker processes")
    path = sandbox.inputs / "image.tar"
    layers = [corpus.plain_layer({f"f{i}": corpus.noise(1000, b"%d" % i)}) for i in range(6)]
    corpus.docker_archive(path, layers)
    proc = subprocess.Popen(
        [sys.executable, "-c", PARALLEL_DRIVER, str(path), slow_side],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(sandbox),
        cwd=sandbox.cwd,
        start_new_session=True,  # its own process group, as a shell gives it
        preexec_fn=_interruptible,
    )
    try:
        deadline = time.monotonic() + 30
        while not _children(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = _children(proc.pid)
        assert workers, "no worker process started"
        time.sleep(0.3)  # let the workers reach their (slow) scan
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        # A worker's slow layer takes far longer than this: waiting for it would time out here.
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert err.decode().strip() == "imgscope: interrupted"
    assert not out
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{w}").exists() for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = [w for w in workers if Path(f"/proc/{w}").exists() and "Z" not in _state(w)]
    assert not alive, "worker processes outlived imgscope"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "gone"
