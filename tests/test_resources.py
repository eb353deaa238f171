"""Resource bounds on hostile input, measured in child processes under ``RLIMIT_AS``.

Why child processes with an address-space limit: a scanner that held a
decompression bomb in memory, or grew by more than a kilobyte per entry,
would otherwise take the test machine down with it.  Each child imports what
it will use, measures its base, then lowers its own ``RLIMIT_AS`` to that
base plus a budget: a regression raises ``MemoryError`` (the child fails, so
the test fails) instead of swapping.  The figures (RSS growth, time) are
printed by the child as JSON and checked here.

- a gzip bomb layer (a few MiB on disk, gigabytes of zeros inside): scanned
  whole in a fixed memory budget, in time proportional to its size, and
  stopped early by ``--max-layer-bytes``;
- a layer of a million entries, generated as it is read
  (:class:`tests.corpus.ManyEntries`): at most 1 KiB per entry above the base;
- an image of thousands of layers: no recursion per layer (it runs under a
  low recursion limit) and ChainIDs as FORMATS.md computes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests import corpus

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20
GiB = 1 << 30

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or not Path("/proc/self/statm").exists(), reason="needs Linux /proc and RLIMIT_AS"
)

CHILD = r"""
import atexit, gc, io, json, os, resource, sys, time

def pages(field):
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[field]) * os.sysconf("SC_PAGE_SIZE")

def peak():
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child forked from a
    # big pytest process would report the parent's size as its own peak.
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")

# What the run will use is imported first, so that code is part of the base.
import imgscope.cli, imgscope.scan, imgscope.stack, imgscope.sources.archive, imgscope.sources.oci
import imgscope.render.console, imgscope.render.json_report, imgscope.cache, rich.console, xxhash, zstandard
try:
    import imgscope.analysis.waste
except ImportError:
    pass
from tests.corpus import ManyEntries

mode, budget = sys.argv[1], int(sys.argv[2])
measure = {}
atexit.register(lambda: open(os.environ["MEASURE"], "w").write(json.dumps(measure)))
gc.collect()
measure["base"] = pages(1)
_, hard = resource.getrlimit(resource.RLIMIT_AS)
resource.setrlimit(resource.RLIMIT_AS, (pages(0) + budget, hard))
started = time.monotonic()

if mode == "entries":
    from imgscope.model import Image, ImageConfig, LayerInfo
    from imgscope.scan import scan_layer
    from imgscope import stack

    scan = scan_layer(io.BufferedReader(ManyEntries(int(sys.argv[3])), 1 << 20), "generated layer")
    measure["scan_seconds"] = time.monotonic() - started
    gc.collect()
    measure["after_scan"] = pages(1)
    measure["entries"] = len(scan.entries)
    measure["diff_id"] = scan.diff_id
    image = Image("generated", "test", "sha256:" + "0" * 64, ImageConfig(diff_ids=(scan.diff_id,)),
                  (LayerInfo(0, scan.diff_id),), (scan,))
    stacked = stack.build(image)
    measure["final"] = len(stacked.final)
    measure["stack_seconds"] = time.monotonic() - started - measure["scan_seconds"]
    gc.collect()
    measure["after_stack"] = pages(1)
    measure["peak"] = peak()
else:
    sys.argv = ["imgscope", *sys.argv[3:]]
    atexit.register(lambda: measure.update(peak=peak(), seconds=time.monotonic() - started))
    from imgscope.cli import main
    main()
"""


def run_child(
    tmp_path: Path, mode: str, budget: int, *args: str, timeout: float = 300
) -> tuple[int, str, dict[str, Any]]:
    """Run CHILD; return its exit code, stderr and measurements (a crash before measuring fails the test)."""
    out = tmp_path / f"measure-{mode}-{len(list(tmp_path.glob('measure-*')))}.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT), MEASURE=str(out), IMGSCOPE_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(budget), *args],
        capture_output=True,
        env=env,
        cwd=tmp_path,
        timeout=timeout,
        check=False,
    )
    stderr = proc.stderr.decode("utf-8", "replace")
    assert "MemoryError" not in stderr, f"the child ran out of its memory budget:\n{stderr[-2000:]}"
    assert "Traceback" not in stderr, stderr[-2000:]
    assert out.exists(), f"the child died before measuring (exit {proc.returncode}):\n{stderr[-2000:]}"
    return proc.returncode, stderr, json.loads(out.read_text())


def report(figures: dict[str, object]) -> None:
    """Figures go to the test log (``pytest -s`` or -rA shows them); the assertions are below each."""
    sys.stdout.write("\n" + json.dumps(figures, sort_keys=True) + "\n")


# --------------------------------------------------------------------------- decompression bomb


def write_bomb(root: Path, size: int) -> tuple[Path, str]:
    """An OCI layout whose one layer is a gzip bomb; returns the layout and the layer's true DiffID."""
    blob = corpus.bomb_gzip(size)
    digest = hashlib.sha256(corpus.header("bomb.bin", size=size))
    zeros = b"\x00" * (16 * MiB)
    left = size
    while left:
        digest.update(zeros[: min(left, len(zeros))])
        left -= min(left, len(zeros))
    digest.update(b"\x00" * (-size % corpus.BLOCK) + corpus.END)
    diff_id = "sha256:" + digest.hexdigest()
    corpus.oci_layout(root, [(blob, corpus.OCI_GZIP)], config=corpus.config_for([], [diff_id]))
    return root, diff_id


BOMB_BUDGET = 256 * MiB  # fixed: it does not grow with the layer's size


def test_gzip_bomb_is_streamed_in_bounded_memory(tmp_path: Path) -> None:
    small_size, big_size = 256 * MiB, 2 * GiB
    small, small_diff = write_bomb(tmp_path / "small", small_size)
    big, big_diff = write_bomb(tmp_path / "big", big_size)
    assert sum(p.stat().st_size for p in (big / "blobs" / "sha256").iterdir()) < 8 * MiB  # a small file...

    code_s, err_s, small_run = run_child(tmp_path, "cli", BOMB_BUDGET, "inspect", f"oci:{small}", "--json")
    # With the cache on (the default) the DiffID is computed from the 2 GiB and compared with the config's.
    code_b, err_b, big_run = run_child(tmp_path, "cli", BOMB_BUDGET, "inspect", f"oci:{big}", "--json")
    assert code_s == 0 and code_b == 0, err_s + err_b
    assert not err_b.strip()  # the right DiffID: not even a warning
    grown = big_run["peak"] - big_run["base"]
    report(
        {
            "bomb_bytes": big_size,
            "bomb_peak_rss_growth_MiB": round(grown / MiB, 1),
            "bomb_seconds": round(big_run["seconds"], 2),
            "small_bomb_seconds": round(small_run["seconds"], 2),
        }
    )
    assert grown < 128 * MiB, "memory grew with the size of the layer"
    # The times are reported, not asserted: a bound on seconds fails on a busy machine.
    assert big_diff != small_diff


def test_max_layer_bytes_stops_a_bomb_early(tmp_path: Path) -> None:
    layout, _ = write_bomb(tmp_path / "bomb", 2 * GiB)
    code, err, run = run_child(tmp_path, "cli", BOMB_BUDGET, "inspect", f"oci:{layout}", "--max-layer-bytes", "50MB")
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("imgscope: error: ")
    assert "--max-layer-bytes" in lines[0] and "blobs/sha256/" in lines[0]
    assert run["peak"] - run["base"] < 128 * MiB
    report({"max_layer_bytes_stop_seconds": round(run["seconds"], 2)})
    assert run["seconds"] < 30  # it stopped at 50 MB instead of reading 2 GiB


def test_zstd_bomb_is_streamed_in_bounded_memory(tmp_path: Path) -> None:
    """zstd's ratio is far higher than gzip's: 1 GiB of zeros in a few KiB."""
    import zstandard

    size = 1 * GiB
    head = corpus.header("bomb.bin", size=size)
    packer = zstandard.ZstdCompressor(level=3)
    writer = packer.compressobj()
    digest = hashlib.sha256(head)
    parts = [writer.compress(head)]
    zeros = b"\x00" * (16 * MiB)
    for _ in range(size // len(zeros)):
        parts.append(writer.compress(zeros))
        digest.update(zeros)
    tail = b"\x00" * (-size % corpus.BLOCK) + corpus.END
    digest.update(tail)
    parts.append(writer.compress(tail) + writer.flush())
    blob = b"".join(parts)
    diff_id = "sha256:" + digest.hexdigest()
    layout = tmp_path / "layout"
    corpus.oci_layout(layout, [(blob, corpus.OCI_ZSTD)], config=corpus.config_for([], [diff_id]))
    code, err, run = run_child(tmp_path, "cli", BOMB_BUDGET, "inspect", f"oci:{layout}", "--json")
    assert code == 0 and not err.strip(), err  # not even a DiffID warning: every byte was read
    report(
        {"zstd_bomb_compressed_bytes": len(blob), "zstd_bomb_peak_rss_growth_MiB": (run["peak"] - run["base"]) >> 20}
    )
    assert run["peak"] - run["base"] < 128 * MiB


# --------------------------------------------------------------------------- a million entries

ENTRIES = 1_000_000
PER_ENTRY = 1024
FIXED = 160 * MiB  # buffers, a hashing thread's stack and malloc arena, the interpreter's own growth


def test_million_entries_within_a_kibibyte_each(tmp_path: Path) -> None:
    code, err, m = run_child(tmp_path, "entries", FIXED + PER_ENTRY * ENTRIES, str(ENTRIES), timeout=600)
    assert code == 0, err
    dirs = ENTRIES // corpus.ManyEntries.PER_DIR
    assert m["entries"] == ENTRIES + dirs
    assert m["final"] == ENTRIES + dirs
    # The DiffID of the generated stream, computed independently of the scanner.
    digest = hashlib.sha256()
    stream = corpus.ManyEntries(ENTRIES)
    buf = bytearray(1 << 20)
    while n := stream.readinto(buf):
        digest.update(memoryview(buf)[:n])
    assert m["diff_id"] == "sha256:" + digest.hexdigest()
    per_scan = (m["after_scan"] - m["base"]) / m["entries"]
    per_stack = (m["after_stack"] - m["base"]) / m["entries"]
    per_peak = (m["peak"] - m["base"]) / m["entries"]
    report(
        {
            "entries": m["entries"],
            "bytes_per_entry_after_scan": round(per_scan),
            "bytes_per_entry_after_stack": round(per_stack),
            "bytes_per_entry_peak": round(per_peak),
            "scan_seconds": round(m["scan_seconds"], 1),
            "stack_seconds": round(m["stack_seconds"], 1),
        }
    )
    assert per_peak <= PER_ENTRY


# --------------------------------------------------------------------------- thousands of layers

LAYERS = 2000
RECURSION_LIMIT = 150  # what the CLI itself needs (typer, rich) with a little room; not one frame per layer


def test_thousands_of_layers_without_recursion(tmp_path: Path) -> None:
    layers = [corpus.layer(corpus.member(f"l{i:04d}/f", b"%d" % i)) for i in range(LAYERS)]
    path = tmp_path / "many.tar"
    corpus.docker_archive(path, layers, layer_names=[f"{i:05d}/layer.tar" for i in range(LAYERS)])
    code = (
        f"import sys; sys.setrecursionlimit({RECURSION_LIMIT}); "
        f"sys.argv = ['imgscope', 'inspect', {str(path)!r}, '--json']; "
        "from imgscope.cli import main; main()"
    )
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT), IMGSCOPE_CACHE_DIR=str(tmp_path / "cache")),
        timeout=300,
        check=False,
    )
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    result = json.loads(proc.stdout)
    assert len(result["layers"]) == LAYERS
    # ChainIDs as FORMATS.md section 3 defines them, computed here from the layer bytes.
    chain = ""
    for data, layer in zip(layers, result["layers"], strict=True):
        diff_id = corpus.sha256(data)
        chain = diff_id if not chain else "sha256:" + hashlib.sha256(f"{chain} {diff_id}".encode()).hexdigest()
        assert (layer["diff_id"], layer["chain_id"]) == (diff_id, chain)
    assert {f["path"] for f in result["files"] if f["type"] == "file"} == {f"/l{i:04d}/f" for i in range(LAYERS)}
    report({"layers": LAYERS, "inspect_json_seconds": round(seconds, 1)})  # reported, never asserted
