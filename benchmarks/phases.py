#!/usr/bin/env python3
"""CPU time of each phase of ``imgscope inspect REF --json --no-cache``, in one process.

``run.py`` times whole commands against their floors; this says where the
time of one command goes, so that a change can be aimed and checked:

* ``imports``: the CLI and everything ``inspect --json`` imports (run in a
  fresh interpreter, ``python -X importtime`` style, by timing the imports);
* ``load``: reading the image and scanning every layer (``reference.load``),
  worker processes included (their CPU is counted from ``os.times``);
* ``stack``: applying the layers (``stack.build``);
* ``waste``: the waste analysis and its JSON form;
* ``json``: building and writing the report (to ``/dev/null``).

CPU is user + system time, which a busy machine disturbs far less than wall
time; the load average is printed next to the figures.  Each figure is the
median of ``--runs`` runs, each in a fresh process.

Usage: ``python benchmarks/phases.py [REF] [--runs 5] [--workers N]``
(REF defaults to ``benchmarks/cache/bench-app.tar``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PHASES = ("imports", "load", "stack", "waste", "json", "total")


def _cpu() -> float:
    """User + system CPU of this process and of its finished children (scan workers), in microseconds."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(ref: str) -> dict[str, float]:
    """One run of every phase, in this (fresh) process; CPU seconds per phase."""
    out: dict[str, float] = {}
    start = mark = _cpu()
    import imgscope.cli
    import imgscope.cli.common as common
    from imgscope import stack as stacking
    from imgscope.analysis import waste
    from imgscope.render.json_report import inspect_report

    del imgscope.cli
    now = _cpu()
    out["imports"], mark = now - mark, now
    img = common.load_image(ref, common.SourceOptions(no_cache=True), quiet=True)
    now = _cpu()
    out["load"], mark = now - mark, now
    stacked = stacking.build(img)
    now = _cpu()
    out["stack"], mark = now - mark, now
    extra = {"waste": waste.to_dict(waste.analyse(stacked))}
    now = _cpu()
    out["waste"], mark = now - mark, now
    stdout = sys.stdout
    with open(os.devnull, "w") as sink:
        sys.stdout = sink
        try:
            common.print_json(inspect_report(stacked, extra=extra, lazy=True))
        finally:
            sys.stdout = stdout
    now = _cpu()
    out["json"] = now - mark
    out["total"] = now - start
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ref", nargs="?", default=str(HERE / "cache" / "bench-app.tar"))
    parser.add_argument("--runs", type=int, default=5, help="fresh processes to run (default 5)")
    parser.add_argument("--workers", help="IMGSCOPE_WORKERS for the scan (default: imgscope decides)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child run
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.ref)))
        return
    env = dict(os.environ)
    if args.workers:
        env["IMGSCOPE_WORKERS"] = args.workers
    runs: list[dict[str, float]] = []
    load_before = os.getloadavg()[0]
    for _ in range(args.runs):
        done = subprocess.run(
            [sys.executable, __file__, args.ref, "--one"], env=env, capture_output=True, text=True, check=True
        )
        runs.append(json.loads(done.stdout))
    print(f"{args.ref}: {args.runs} runs, load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}")
    for phase in PHASES:
        values = [r[phase] for r in runs]
        print(
            f"  {phase:8} CPU median {statistics.median(values):.3f} s  (min {min(values):.3f}, max {max(values):.3f})"
        )


if __name__ == "__main__":
    main()
