#!/usr/bin/env python3
"""registry:// against ``skopeo copy``: the cost of fetching and reading an image from a registry.

Starts Debian's ``docker-registry`` on loopback (``tests/registryserver.py``),
pushes ``bench-app.tar`` with ``skopeo copy`` (gzip layers, as any registry
holds them), then alternates, ``--runs`` times:

- ``imgscope inspect registry://HOST/bench/app:1 --json --no-cache`` (fetch,
  verify every blob digest, decompress, scan, report), against
- ``skopeo copy docker://HOST/bench/app:1 dir:TMP`` (fetch, verify, write):
  the floor of merely downloading the same blobs.

It reports medians of wall and CPU time (the CPU of the process and its
children, from ``wait4``) and their ratio (target: wall <= 1.2), then a cold
run with the scan cache (DiffIDs computed and stored) and a warm run, and
counts the warm run's requests from the registry's access log: it must fetch
the manifest and the config, and no layer blob.

Usage: ``python benchmarks/registry.py [--runs 5] [--image benchmarks/cache/bench-app.tar]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.registryserver import Registry, missing_tools  # noqa: E402

TARGET_RATIO = 1.2


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and its children)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--image", type=Path, default=HERE / "cache" / "bench-app.tar")
    args = parser.parse_args()
    missing = missing_tools()
    if missing:
        raise SystemExit(f"needs {', '.join(missing)}")
    if not args.image.exists():
        raise SystemExit(f"{args.image}: missing (python benchmarks/build_images.py)")
    work = Path(tempfile.mkdtemp(prefix="imgscope-bench-registry-"))
    reg = Registry(work / "registry").start()
    try:
        started = time.perf_counter()
        ref = reg.push(f"docker-archive:{args.image}", "bench/app:1")
        print(f"pushed {args.image.name} to {reg.host} in {time.perf_counter() - started:.1f}s")
        env = {**os.environ, "IMGSCOPE_CACHE_DIR": str(work / "cache"), "COLUMNS": "120"}
        imgscope = [sys.executable, "-m", "imgscope", "inspect", ref, "--json"]
        copy_dir = work / "copy"
        skopeo = ["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{reg.host}/bench/app:1"]
        skopeo.append(f"dir:{copy_dir}")
        results: dict[str, list[tuple[float, float]]] = {"imgscope": [], "skopeo": []}
        for i in range(args.runs + 1):
            order = ["imgscope", "skopeo"] if i % 2 == 0 else ["skopeo", "imgscope"]
            for name in order:
                shutil.rmtree(copy_dir, ignore_errors=True)
                run = timed([*imgscope, "--no-cache"] if name == "imgscope" else skopeo, env)
                if i > 0:  # the first round warms the page cache and the registry
                    results[name].append(run)
        shutil.rmtree(copy_dir, ignore_errors=True)
        med = {
            name: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
            for name, runs in results.items()
        }
        ratio = med["imgscope"][0] / med["skopeo"][0]
        for name, (wall, cpu) in med.items():
            print(
                f"{name:9} median wall {wall:6.2f}s  cpu {cpu:6.2f}s  ({args.runs} runs: "
                + ", ".join(f"{w:.2f}" for w, _ in results[name])
                + ")"
            )
        print(
            f"ratio imgscope/skopeo (wall): {ratio:.2f} (target <= {TARGET_RATIO}) "
            f"{'ok' if ratio <= TARGET_RATIO else 'MISSED'}"
        )

        before = len(reg.requests())
        cold = timed(imgscope, env)
        cold_blobs = [p for m, p in reg.requests()[before:] if m == "GET" and "/blobs/" in p]
        middle = len(reg.requests())
        warm = timed(imgscope, env)
        warm_requests = reg.requests()[middle:]
        warm_blobs = [p for m, p in warm_requests if m == "GET" and "/blobs/" in p]
        print(f"cold, cache on: wall {cold[0]:.2f}s cpu {cold[1]:.2f}s, {len(cold_blobs)} blob GETs")
        print(
            f"warm, cache on: wall {warm[0]:.2f}s cpu {warm[1]:.2f}s, {len(warm_requests)} requests "
            f"({len(warm_blobs)} blob GET: the config; layer blobs fetched: {max(0, len(warm_blobs) - 1)})"
        )
        for method, path in warm_requests:
            print(f"  {method} {path}")
    finally:
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
