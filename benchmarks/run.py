#!/usr/bin/env python3
"""Side-by-side timings of imgscope against the cost of reading the same bytes once.

Every comparison runs its two commands alternately (the order swapped each
round, so that neither always gets the warmer cache or the quieter moment),
``--runs`` times, and reports medians and the ratio of medians.  Each
imgscope run goes through ``/usr/bin/time`` (peak RSS of the largest
process, CPU time), while a sampler adds up the RSS of every process of the
run (the parent and its scan workers) every few milliseconds.

What is compared (targets from issue 18; issue 8's were 1.5x and 0.15x):

1. ``imgscope inspect APP.tar --json --no-cache`` against the GNU tar floor,
   ``tar -xOf APP.tar --wildcards '*/layer.tar' | tar -tvf - --ignore-zeros``;
2. ``imgscope inspect bench-app:latest --json --no-cache`` against ``docker save``;
3. warm cache: after ``imgscope cache clear``, the daemon command twice; the
   second run must not request ``docker save`` (checked with ``docker events``);
4. peak RSS of each imgscope run;
5. the synthetic stress images (``stress.py``): time and peak RSS at several
   entry counts, and the growth per entry (least-squares slope);
6. start-up: ``imgscope --help`` against ``python3 -c "import typer"``, and
   the modules ``--help`` imports.

Usage: ``python benchmarks/run.py [--runs 5] [--only archive,daemon,warm,stress,startup]``.
Needs the images of ``build_images.py`` (and an engine for the daemon parts).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache"
APP_TAR = CACHE / "bench-app.tar"
APP_IMAGE = "bench-app:latest"
STRESS_SIZES = (25_000, 50_000, 100_000, 200_000)
PARTS = ("archive", "daemon", "warm", "stress", "startup")
TARGETS = {
    "archive_ratio": 1.0,
    "daemon_ratio": 1.15,
    "warm_ratio": 0.1,
    "rss_largest_mib": 150,
    "rss_total_mib": 300,
    "growth_bytes_per_entry": 1024,
    "startup_ratio": 2.0,
}


@dataclass
class Run:
    """One measured command."""

    wall: float
    cpu: float = 0.0
    rss_max_kib: int = 0  # the largest process, as /usr/bin/time reports it
    rss_total_kib: int = 0  # all processes of the run together, sampled


@dataclass
class Series:
    name: str
    runs: list[Run] = field(default_factory=list)

    def median(self, attr: str = "wall") -> float:
        return float(statistics.median(getattr(r, attr) for r in self.runs))

    def peak(self, attr: str) -> int:
        return max(int(getattr(r, attr)) for r in self.runs)


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out.extend(int(p) for p in fh.read().split())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return out


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


class TreeSampler(threading.Thread):
    """Peak of the summed RSS of a process's descendants (not the process itself: /usr/bin/time)."""

    def __init__(self, root: int, interval: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.interval = interval
        self.peak = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            todo = _children(self.root)
            total = 0
            while todo:
                pid = todo.pop()
                total += _rss_kib(pid)
                todo.extend(_children(pid))
            self.peak = max(self.peak, total)
            time.sleep(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _children_cpu() -> float:
    """User + system CPU of every finished child so far (a shell pipeline counts all its processes)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def timed(cmd: list[str], env: dict[str, str] | None = None, shell: bool = False) -> Run:
    """Run a command with stdout to /dev/null; wall time and CPU, and for imgscope runs RSS."""
    if shell:
        cpu = _children_cpu()
        start = time.perf_counter()
        subprocess.run(cmd[0], shell=True, check=True, stdout=subprocess.DEVNULL, executable="/bin/bash")
        return Run(wall=time.perf_counter() - start, cpu=_children_cpu() - cpu)
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        full = ["/usr/bin/time", "-o", out.name, "-f", "%M %U %S", *cmd]
        start = time.perf_counter()
        proc = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        _, err = proc.communicate()
        wall = time.perf_counter() - start
        sampler.stop()
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err[-2000:]}")
        rss, user, system = out.read().split()[-3:]
    return Run(wall=wall, cpu=float(user) + float(system), rss_max_kib=int(rss), rss_total_kib=sampler.peak)


def alternate(
    a: tuple[str, list[str], bool], b: tuple[str, list[str], bool], runs: int, env: dict[str, str]
) -> tuple[Series, Series]:
    """Run two commands ``runs`` times each, alternating and swapping the order every round."""
    sa, sb = Series(a[0]), Series(b[0])
    timed(a[1], env, a[2])  # one untimed round each: page cache, .pyc files
    timed(b[1], env, b[2])
    for i in range(runs):
        pairs = [(sa, a), (sb, b)] if i % 2 == 0 else [(sb, b), (sa, a)]
        for series, (_, cmd, shell) in pairs:
            series.runs.append(timed(cmd, env, shell))
    return sa, sb


def imgscope_cmd(*args: str) -> list[str]:
    """The ``imgscope`` script installed beside this Python (what users run), else ``python -m imgscope``.

    Not the first one on PATH: that may be a version manager's shell shim (pyenv's
    costs tens of milliseconds), which would be timed along.
    """
    exe = Path(sys.executable).parent / "imgscope"
    return [str(exe), *args] if exe.exists() else [sys.executable, "-m", "imgscope", *args]


def docker_saves(since: float, until: float) -> int:
    """How many ``docker save`` (image ``save`` events) the engine saw between two instants."""
    out = subprocess.run(
        [
            "docker",
            "events",
            "--since",
            f"{since:.3f}",
            "--until",
            f"{until:.3f}",
            "--filter",
            "type=image",
            "--filter",
            "event=save",
            "--format",
            "{{.Action}}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return len(out.split())


def fmt_runs(series: Series) -> str:
    return " ".join(f"{r.wall:.2f}" for r in series.runs)


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.data: dict[str, object] = {}

    def say(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def verdict(self, key: str, value: float, target: float, lower_is_better: bool = True) -> str:
        ok = value <= target if lower_is_better else value >= target
        self.data[key] = value
        return f"{'met' if ok else 'MISSED'} (target <= {target})"


def machine() -> dict[str, object]:
    model = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as fh:
        mem_kib = int(fh.readline().split()[1])
    docker = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}} {{.Server.Os}}"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "docker": docker or "none",
        "load_average_at_start": os.getloadavg()[0],
    }


def part_archive(rep: Report, runs: int, env: dict[str, str]) -> None:
    if not APP_TAR.exists():
        rep.say("archive: benchmarks/cache/bench-app.tar is missing: run benchmarks/build_images.py")
        return
    floor = f"tar -xOf {APP_TAR} --wildcards '*/layer.tar' | tar -tvf - --ignore-zeros > /dev/null"
    load = os.getloadavg()[0]
    ours, base = alternate(
        ("imgscope archive", imgscope_cmd("inspect", str(APP_TAR), "--json", "--no-cache"), False),
        ("GNU tar floor", [floor], True),
        runs,
        env,
    )
    ratio = ours.median() / base.median()
    rep.say(
        f"archive  imgscope {ours.median():.2f} s  floor {base.median():.2f} s  ratio {ratio:.2f}  "
        f"{rep.verdict('archive_ratio', ratio, TARGETS['archive_ratio'])}"
    )
    rep.say(
        f"         runs: imgscope [{fmt_runs(ours)}]  floor [{fmt_runs(base)}]  "
        f"load average {load:.2f} -> {os.getloadavg()[0]:.2f}"
    )
    # CPU (user + system, every process of the pipeline) is what a busy machine disturbs least.
    rep.say(
        f"         CPU median: imgscope {ours.median('cpu'):.2f} s  floor {base.median('cpu'):.2f} s  "
        f"ratio {ours.median('cpu') / base.median('cpu'):.2f}"
    )
    rep.data["archive_cpu_ratio"] = ours.median("cpu") / base.median("cpu")
    memory(rep, "archive", ours)
    rep.data["archive"] = {"imgscope": [asdict(r) for r in ours.runs], "floor": [asdict(r) for r in base.runs]}


def memory(rep: Report, label: str, series: Series) -> None:
    largest = series.peak("rss_max_kib") / 1024
    total = series.peak("rss_total_kib") / 1024
    rep.say(
        f"         peak RSS largest process {largest:.0f} MiB "
        f"{rep.verdict(label + '_rss_largest_mib', largest, TARGETS['rss_largest_mib'])}; "
        f"all processes {total:.0f} MiB {rep.verdict(label + '_rss_total_mib', total, TARGETS['rss_total_mib'])}"
    )


def engine_ok() -> bool:
    return subprocess.run(["docker", "image", "inspect", APP_IMAGE], capture_output=True).returncode == 0


def part_daemon(rep: Report, runs: int, env: dict[str, str]) -> None:
    if not engine_ok():
        rep.say(f"daemon: {APP_IMAGE} is not in the engine: run benchmarks/build_images.py")
        return
    load = os.getloadavg()[0]
    ours, base = alternate(
        ("imgscope daemon", imgscope_cmd("inspect", APP_IMAGE, "--json", "--no-cache"), False),
        ("docker save", [f"docker save {APP_IMAGE} > /dev/null"], True),
        runs,
        env,
    )
    ratio = ours.median() / base.median()
    rep.say(
        f"daemon   imgscope {ours.median():.2f} s  docker save {base.median():.2f} s  ratio {ratio:.2f}  "
        f"{rep.verdict('daemon_ratio', ratio, TARGETS['daemon_ratio'])}"
    )
    rep.say(
        f"         runs: imgscope [{fmt_runs(ours)}]  save [{fmt_runs(base)}]  "
        f"imgscope CPU median {ours.median('cpu'):.2f} s (the engine's CPU is not counted); "
        f"load average {load:.2f} -> {os.getloadavg()[0]:.2f}"
    )
    memory(rep, "daemon", ours)
    rep.data["daemon"] = {"imgscope": [asdict(r) for r in ours.runs], "save": [asdict(r) for r in base.runs]}


def part_warm(rep: Report, runs: int, env: dict[str, str]) -> None:
    if not engine_ok():
        rep.say(f"warm: {APP_IMAGE} is not in the engine")
        return
    cold, warm = Series("cold"), Series("warm")
    saves = []
    cmd = imgscope_cmd("inspect", APP_IMAGE, "--json")
    for _ in range(runs):
        subprocess.run(imgscope_cmd("cache", "clear"), env=env, check=True, stdout=subprocess.DEVNULL)
        cold.runs.append(timed(cmd, env))
        since = time.time()
        warm.runs.append(timed(cmd, env))
        time.sleep(1.1)  # docker events has a one-second resolution at the edges
        saves.append(docker_saves(since - 0.01, time.time()))
    ratio = warm.median() / cold.median()
    rep.say(
        f"warm     cold {cold.median():.2f} s  warm {warm.median():.2f} s  ratio {ratio:.3f}  "
        f"{rep.verdict('warm_ratio', ratio, TARGETS['warm_ratio'])}; "
        f"docker save requested by warm runs: {sum(saves)} {'met' if not sum(saves) else 'MISSED'}"
    )
    rep.say(f"         runs: cold [{fmt_runs(cold)}]  warm [{fmt_runs(warm)}]")
    memory(rep, "warm", warm)
    rep.data["warm"] = {"cold": [asdict(r) for r in cold.runs], "warm": [asdict(r) for r in warm.runs], "saves": saves}


def part_stress(rep: Report, runs: int, env: dict[str, str]) -> None:
    sys.path.insert(0, str(HERE))
    import stress

    points = []
    for n in STRESS_SIZES:
        path = stress.build(f"files-{n}")
        series = Series(f"files-{n}")
        timed(imgscope_cmd("inspect", str(path), "--json", "--no-cache"), env)
        for _ in range(max(1, runs // 2)):
            series.runs.append(timed(imgscope_cmd("inspect", str(path), "--json", "--no-cache"), env))
        entries = _entry_count(path)
        points.append((entries, series.peak("rss_total_kib") * 1024, series.median()))
        rep.say(
            f"stress   files-{n}: {entries} entries  {series.median():.2f} s  "
            f"({series.median() / entries * 1e6:.1f} us/entry)  peak RSS all processes "
            f"{series.peak('rss_total_kib') / 1024:.0f} MiB, largest {series.peak('rss_max_kib') / 1024:.0f} MiB"
        )
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    slope = statistics.linear_regression(xs, ys).slope
    intercept = statistics.linear_regression(xs, ys).intercept
    rep.say(
        f"stress   growth {slope:.0f} bytes/entry above a base of {intercept / 2**20:.0f} MiB  "
        f"{rep.verdict('growth_bytes_per_entry', slope, TARGETS['growth_bytes_per_entry'])}"
    )
    path = stress.build("layers-150")
    series = Series("layers-150")
    for _ in range(max(1, runs // 2)):
        series.runs.append(timed(imgscope_cmd("inspect", str(path), "--json", "--no-cache"), env))
    entries = _entry_count(path)
    rep.say(
        f"stress   layers-150: {entries} entries  {series.median():.2f} s  peak RSS all processes "
        f"{series.peak('rss_total_kib') / 1024:.0f} MiB"
    )
    rep.data["stress"] = {"points": points, "slope": slope, "layers150": [asdict(r) for r in series.runs]}


def _entry_count(path: Path) -> int:
    """Entries of every layer, counted by GNU tar (whiteouts included), independent of imgscope."""
    script = f"tar -xOf {path} --wildcards '*/layer.tar' | tar -tf - --ignore-zeros | wc -l"
    return int(subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout)


def part_startup(rep: Report, runs: int, env: dict[str, str]) -> None:
    ours, base = alternate(
        ("imgscope --help", imgscope_cmd("--help"), False),
        ("import typer", [sys.executable, "-c", "import typer"], False),
        max(runs, 7),
        env,
    )
    ratio = ours.median() / base.median()
    rep.say(
        f"startup  --help {ours.median():.3f} s  import typer {base.median():.3f} s  ratio {ratio:.2f}  "
        f"{rep.verdict('startup_ratio', ratio, TARGETS['startup_ratio'])}"
    )
    trace = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "imgscope", "--help"], capture_output=True, text=True, env=env
    ).stderr
    modules = {line.rsplit("|", 1)[-1].strip() for line in trace.splitlines() if line.startswith("import time:")}
    bad = sorted(m for m in modules if m.split(".")[0] in ("docker", "textual") or m.startswith("imgscope.analysis"))
    rep.say(
        f"         --help imports {len(modules)} modules; Docker SDK, textual or analysis modules: "
        f"{', '.join(bad) if bad else 'none'} {'MISSED' if bad else 'met'}"
    )
    rep.data["startup"] = {"help": ours.median(), "typer": base.median(), "forbidden": bad}


def compile_bytecode(env: dict[str, str]) -> None:
    """Write imgscope's ``.pyc`` files before timing: a user's install has them.

    Without them (``PYTHONDONTWRITEBYTECODE`` set, an editable install never
    run) every run compiles imgscope's sources again, about 0.06 s of CPU
    that no installed imgscope pays.
    """
    code = "import imgscope, pathlib; print(pathlib.Path(imgscope.__file__).parent)"
    package = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    subprocess.run([sys.executable, "-m", "compileall", "-q", package.stdout.strip()], check=True, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each command (default 5)")
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts: " + ", ".join(PARTS))
    args = parser.parse_args()
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    env = {**os.environ}
    work = Path(tempfile.mkdtemp(prefix="imgscope-bench-"))
    env["IMGSCOPE_CACHE_DIR"] = str(work / "cache")
    compile_bytecode(env)
    rep = Report()
    facts = machine()
    rep.data["machine"] = facts
    rep.say(
        f"machine: {facts['cpu']}, {facts['cores']} cores, {facts['memory_gib']} GiB, Python {facts['python']}, "
        f"Linux {facts['kernel']}, Docker {facts['docker']}; load average {facts['load_average_at_start']:.2f}"
    )
    rep.say(f"{args.runs} runs per command, alternating; medians")
    for part in parts:
        {
            "archive": part_archive,
            "daemon": part_daemon,
            "warm": part_warm,
            "stress": part_stress,
            "startup": part_startup,
        }[part](rep, args.runs, env)
    rep.say(f"load average at the end: {os.getloadavg()[0]:.2f}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    CACHE.mkdir(exist_ok=True)
    (CACHE / f"results-{stamp}.json").write_text(json.dumps(rep.data, indent=2, default=str) + "\n")
    (CACHE / f"results-{stamp}.txt").write_text("\n".join(rep.lines) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
