"""Layers scanned by several processes, each taking the next layer left, give the serial scans.

The oracle is the scan in one process (``IMGSCOPE_WORKERS=1``).  To make sure
a worker process really takes layers (on demand, the parent could take them
all first when they are small), the order of the first claims is fixed in
these tests: the worker's two, then the parent's one.  Events, not timings.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

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


def _parent_claims_late(monkeypatch: pytest.MonkeyPatch, log: Path, taken: int) -> None:
    """The workers take the ``taken`` largest layers, then this process one, then anyone; log who scans what.

    Forked workers inherit the patches, not the pid.  The wait is on an event
    (the shared counter), not a time: a slow worker start only delays it.
    """
    parent = os.getpid()
    real_claim, real_scan = store._claim, store._scan_window

    def claim(counter: Any, count: int) -> int | None:
        # The workers take the first ``taken`` layers, this process the next, then anyone.
        wait_for = min(taken, count) if os.getpid() == parent else (taken + 1 if counter.value >= taken else 0)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and counter.value < min(wait_for, count):
            time.sleep(0.01)
        return real_claim(counter, count)

    def logged(job: store._Job) -> object:
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()} {job[3].rsplit(' ', 1)[-1]}\n")
        return real_scan(job)

    monkeypatch.setattr(store, "_claim", claim)
    monkeypatch.setattr(store, "_scan_window", logged)


def test_layers_taken_on_demand_land_in_their_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "image.tar"
    layers = _layers()
    corpus.docker_archive(path, layers)
    serial = _load(path, "1", monkeypatch)
    log = tmp_path / "who"
    _parent_claims_late(monkeypatch, log, 2)
    parallel = _load(path, "2", monkeypatch)
    assert parallel == serial
    assert [s.diff_id for s in parallel.scans] == [corpus.sha256(layer) for layer in layers]  # type: ignore[attr-defined]
    lines = [line.split() for line in log.read_text().splitlines()]
    assert len({pid for pid, _ in lines}) == 2, "both processes scanned layers"
    assert len(lines) == len({name for _, name in lines}) == len(layers), "each layer scanned once"


def test_a_bad_layer_a_worker_took_fails_as_in_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "image.tar"
    layers = _layers()
    layers[1] = layers[1][: len(layers[1]) // 2]  # the second largest, cut: the first a worker takes
    names = corpus.docker_archive(path, layers)
    with pytest.raises(ImgscopeError) as serial:
        _load(path, "1", monkeypatch)
    log = tmp_path / "who"
    _parent_claims_late(monkeypatch, log, 2)  # the worker takes the two largest, one after the other
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


def test_scans_cross_back_from_a_worker_whole() -> None:
    """``cache.unpack`` fills entries in without ``Entry.__init__``: every field must come back, of every kind."""
    import dataclasses

    from imgscope import cache
    from imgscope.model import BLOCK, DIR, FILE, HARDLINK, SYMLINK, Entry, LayerScan

    assert [f.name for f in dataclasses.fields(Entry)] == [s.__self__.__name__ for s in cache._SETTERS]  # type: ignore[attr-defined]
    assert not hasattr(Entry, "__post_init__")
    entries = (
        Entry("/etc", DIR, 0o755, 0, 0, 0, 0, 1_700_000_000),
        Entry("/etc/f", FILE, 0o4755, 1000, 1001, 5, 7, -1, "", "ab" * 8, (("user.a", "1"), ("user.b", "")), 0, 0),
        Entry("/etc/l", SYMLINK, 0o777, 70000, 70000, 1, 0, 2**40, "f", ""),
        Entry("/etc/h", HARDLINK, 0o644, 0, 0, 0, 0, 0, "/etc/f", "ab" * 8),
        Entry("/dev/sda", BLOCK, 0o660, 0, 6, 0, 0, 0, "", "", (), 8, 1),
    )
    scan = LayerScan("sha256:" + "1" * 64, 10240, entries, ("/gone",), ("/opaque",), ("w",), True, entries[1:2], ())
    back = cache.unpack(cache.pack(scan))
    assert back == scan
    assert [dataclasses.astuple(e) for e in back.entries] == [dataclasses.astuple(e) for e in entries]
