#!/usr/bin/env python3
"""How much of a daemon load is the engine's, and how much any Python reader of the stream pays.

``run.py`` compares ``imgscope inspect IMAGE --json --no-cache`` with ``docker
save IMAGE > /dev/null``.  This script adds the floors between them: a Python
process that asks the Docker SDK for the same ``save`` stream and only reads it
(no tar parsing, no hashing), and ``docker save`` read by a Python process
through a pipe; it times the four alternately, ``--runs`` times each, and gives
each one's ratio to ``docker save > /dev/null``.  For the Python readers it
also prints when the stream's first and last bytes arrived, and for all the
engine's own CPU time over the run (``/proc/PID/stat`` of ``dockerd``, when
readable).

Usage: ``python benchmarks/daemon_floor.py [--image bench-app:latest] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

DRAIN = r"""
import json, sys, time
t0 = time.perf_counter()
import docker
api = docker.from_env().api
response = api._get(api._url("/images/{0}/get", sys.argv[1]), stream=True)
api._raise_for_status(response)
first = None
for chunk in response.iter_content(1 << 20, False):
    if first is None:
        first = time.perf_counter() - t0
last = time.perf_counter() - t0
print(json.dumps({"first": first, "last": last}))
"""

SAVE = r"""
import json, subprocess, sys, time
t0 = time.perf_counter()
proc = subprocess.Popen(["docker", "save", sys.argv[1]], stdout=subprocess.PIPE, bufsize=0)
first = None
buf = bytearray(1 << 20)
while proc.stdout.readinto(buf):
    if first is None:
        first = time.perf_counter() - t0
last = time.perf_counter() - t0
proc.wait()
print(json.dumps({"first": first, "last": last}))
"""


def _engine_cpu() -> float | None:
    """CPU seconds dockerd has used so far, or None when its process cannot be read."""
    try:
        pid = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True, check=True).stdout.split()[0]
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, subprocess.CalledProcessError, IndexError, ValueError):
        return None


def _timed(cmd: list[str], marks: bool) -> dict[str, float]:
    before = _engine_cpu()
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out: dict[str, float] = {"wall": time.perf_counter() - start}
    after = _engine_cpu()
    if before is not None and after is not None:
        out["engine_cpu"] = after - before
    if marks:
        out.update(json.loads(done.stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", default="bench-app:latest")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    imgscope = Path(sys.executable).parent / "imgscope"
    commands = {
        "docker save": (["bash", "-c", f"docker save {args.image} > /dev/null"], False),
        "save | python": ([sys.executable, "-c", SAVE, args.image], True),
        "SDK read only": ([sys.executable, "-c", DRAIN, args.image], True),
        "imgscope": ([str(imgscope), "inspect", args.image, "--json", "--no-cache"], False),
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in commands}
    load = os.getloadavg()[0]
    for i in range(args.runs):
        order = list(commands) if i % 2 == 0 else list(reversed(commands))
        for name in order:
            cmd, marks = commands[name]
            runs[name].append(_timed(cmd, marks))
    save = statistics.median(r["wall"] for r in runs["docker save"])
    print(f"{args.image}: {args.runs} runs each, alternating; load average {load:.2f} -> {os.getloadavg()[0]:.2f}")
    for name, results in runs.items():
        line = f"  {name:14} wall {statistics.median(r['wall'] for r in results):5.2f} s"
        line += f"  ratio to docker save {statistics.median(r['wall'] for r in results) / save:4.2f}"
        if "first" in results[0]:
            line += f"  first byte {statistics.median(r['first'] for r in results):5.2f} s"
            line += f"  last byte {statistics.median(r['last'] for r in results):5.2f} s"
        if "engine_cpu" in results[0]:
            line += f"  engine CPU {statistics.median(r['engine_cpu'] for r in results):4.2f} s"
        line += "  runs " + " ".join(f"{r['wall']:.2f}" for r in results)
        print(line)


if __name__ == "__main__":
    main()
