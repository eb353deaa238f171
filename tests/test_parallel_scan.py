"""Layers scanned by several processes, each taking the next layer left, give the serial scans.

The oracle is the scan in one process (``IMGSCOPE_WORKERS=1``).  To make sure
a worker process really takes layers (on demand, the parent could take them
all first when they are small), the parent is slowed down in these tests:
a nudge to the order of events, not a timing that is asserted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from imgscope.errors import ImgscopeError
from imgscope.sources import store
from imgscope.sources.archive import load_path
from imgscope.sources.common import LoadOptions
from tests import corpus


def _layers() -> list[bytes]:
    """Layers of different sizes and entry counts, so that the largest-first order is not the image's."""
    sizes = [3, 40, 1, 200, 12, 7]
    return [
        corpus.plain_layer({f"l{n}/f{i:03}": corpus.noise(100 + 37 * i, b"%d-%d" % (n, i)) for i in range(count)})
        for n, count in enumerate(sizes)
    ]


def _load(path: Path, workers: str, monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setenv("IMGSCOPE_WORKERS", workers)
    return load_path(path, str(path), None, LoadOptions(use_cache=False, verify=True))


def _slow_parent(monkeypatch: pytest.MonkeyPatch, log: Path) -> None:
    """Slow down this process's own scans (forked workers inherit the patch, not the pid) and log who scans what."""
    parent = os.getpid()
    real = store._scan_window

    def logged(job: store._Job) -> object:
        if os.getpid() == parent:
            time.sleep(0.3)
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()} {job[3].rsplit(' ', 1)[-1]}\n")
        return real(job)

    monkeypatch.setattr(store, "_scan_window", logged)


def test_layers_taken_on_demand_land_in_their_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "image.tar"
    layers = _layers()
    corpus.docker_archive(path, layers)
    serial = _load(path, "1", monkeypatch)
    log = tmp_path / "who"
    _slow_parent(monkeypatch, log)
    parallel = _load(path, "2", monkeypatch)
    assert parallel == serial
    assert [s.diff_id for s in parallel.scans] == [corpus.sha256(layer) for layer in layers]  # type: ignore[attr-defined]
    lines = [line.split() for line in log.read_text().splitlines()]
    assert len({pid for pid, _ in lines}) == 2, "both processes scanned layers"
    assert len(lines) == len({name for _, name in lines}) == len(layers), "each layer scanned once"


def test_a_bad_layer_a_worker_took_fails_as_in_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "image.tar"
    layers = _layers()
    layers[1] = layers[1][: len(layers[1]) // 2]  # the second largest, cut: taken while the parent sleeps
    names = corpus.docker_archive(path, layers)
    with pytest.raises(ImgscopeError) as serial:
        _load(path, "1", monkeypatch)
    log = tmp_path / "who"
    _slow_parent(monkeypatch, log)
    monkeypatch.setattr(store, "PARALLEL_MIN_BYTES", 0)
    with pytest.raises(ImgscopeError) as parallel:
        _load(path, "2", monkeypatch)
    assert str(parallel.value) == str(serial.value)
    assert "truncated" in str(serial.value)
    who = dict(reversed(line.split()) for line in log.read_text().splitlines())
    assert who[names[1]] != str(os.getpid()), "the bad layer was a worker's"


@pytest.mark.parametrize(
    ("loadavg", "busy"),
    [
        (b"1.42 1.30 1.10 1/113 4242\n", 0.0),  # the average still counts a run that has ended: idle now
        (b"0.20 0.30 0.10 3/113 4242\n", 0.2),  # two tasks passing by: the average says they are brief
        (b"1.95 1.80 1.70 3/113 4242\n", 1.95),  # busy by both counts
        (b"0.00 0.00 0.00 0/1 1\n", 0.0),
    ],
)
def test_how_busy_the_machine_is(loadavg: bytes, busy: float) -> None:
    assert store._busy_of(loadavg) == busy


def test_an_unreadable_load_falls_back_to_the_load_average(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_proc(*_args: object, **_kw: object) -> object:
        raise OSError("no /proc")

    monkeypatch.setattr(store, "open", no_proc, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.5, 0.4, 0.3))
    assert store._busy() == 0.5
