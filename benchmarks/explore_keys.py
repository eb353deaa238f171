"""Time every kind of explorer keypress on a 25,000-file image (was a pytest assertion; timings live here).

Why not in pytest: a wall- or CPU-time bound fails on a loaded machine for
reasons that have nothing to do with imgscope.  The suite asserts the
deterministic part (a key draws at most a screenful of rows,
``test_keypresses_draw_only_what_is_on_screen_on_25000_files``); this script
prints what a key costs here, wall and CPU time, from the key to the end of a
forced full redraw (Pilot's own settling included, so a no-op key is timed too
to show that floor).  The target the issue set is 100 ms of CPU per key.

    python benchmarks/explore_keys.py [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from imgscope import reference  # noqa: E402
from imgscope import stack as stacking  # noqa: E402
from imgscope.explore.app import ExploreApp  # noqa: E402
from imgscope.explore.model import ExploreModel  # noqa: E402
from imgscope.sources.common import LoadOptions  # noqa: E402
from tests import imagebuild as ib  # noqa: E402
from tests.test_explore import stress_spec  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="how many times each toggle key is pressed twice")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stress.tar"
        ib.write_docker_archive(path, stress_spec())
        model = ExploreModel.build(stacking.build(reference.load(str(path), LoadOptions(use_cache=False))))
    app = ExploreApp(model=model, freeze_gc=True)  # as the command runs it
    timings: dict[str, list[tuple[float, float]]] = {}

    async def timed(pilot: Any, label: str, key: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        await pilot.press(key)
        app.screen._compositor.render_update(full=True)
        timings.setdefault(label, []).append(((time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000))

    async def scenario() -> None:
        async with app.run_test(size=(160, 50)) as pilot:
            while True:
                try:
                    app.browser  # noqa: B018 - wait until the browser is shown
                    break
                except LookupError:
                    await pilot.pause(0.05)
            await pilot.pause()
            for _ in range(3):
                await timed(pilot, "no-op key (floor)", "x")
            for _ in range(len(model.steps) - 1):
                await timed(pilot, "next step (steps pane)", "down")
            await pilot.press("tab", "tab")
            for _ in range(20):
                await timed(pilot, "cursor down (tree)", "j")
            await timed(pilot, "page down", "pagedown")
            await timed(pilot, "end", "end")
            for _ in range(4):
                await timed(pilot, "previous step ([)", "left_square_bracket")
            for _ in range(args.rounds):
                await timed(pilot, "toggle view (v)", "v")
                await timed(pilot, "hide unchanged (U)", "U")
                await timed(pilot, "sort (s)", "s")
                await timed(pilot, "fold all (e)", "e")
                await timed(pilot, "fold one (space)", "space")
            await pilot.press("slash", *"*.so")
            await timed(pilot, "apply filter (enter)", "enter")
            await timed(pilot, "clear filter (escape)", "escape")

    try:
        asyncio.run(scenario())
    finally:
        gc.unfreeze()
    print(f"explore keypress timings on {model.summary.file_count:,} files, ms (wall max/mean | cpu max/mean):")
    for label, values in timings.items():
        walls = [w for w, _c in values]
        cpus = [c for _w, c in values]
        wall_mean = sum(walls) / len(walls)
        cpu_mean = sum(cpus) / len(cpus)
        print(f"  {label:<26} {max(walls):7.1f} {wall_mean:7.1f} | {max(cpus):7.1f} {cpu_mean:7.1f}")
    if hasattr(os, "getloadavg"):
        print(f"  load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
