"""Layers of a stream scanned by a helper process (``sources/scanproc.py``) read exactly as scanned here.

The helper is used only when ``IMGSCOPE_WORKERS`` is above 1: by default a
stream is scanned where it is read, which costs less since the scanner's C
loop.  Every case of the hostile corpus whose input is an archive is
compressed (``docker save | gzip``) and loaded both ways: the scans, warnings
and the one error line must be the same.
"""

from __future__ import annotations

import gzip
import io
import os
import signal
import tarfile
import time
from pathlib import Path

import pytest

from imgscope import reference
from imgscope.errors import ImgscopeError
from imgscope.model import Image
from imgscope.sources import scanproc, store
from imgscope.sources.common import LoadOptions
from tests.corpus import CASES, docker_archive, good_layers, plain_layer

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "sample_images" / "demo-legacy.tar"


def _load(ref: str, workers: int, monkeypatch: pytest.MonkeyPatch) -> Image | str:
    """The image, or the error line, with ``workers`` scanning processes."""
    with monkeypatch.context() as mp:
        mp.setenv("IMGSCOPE_WORKERS", str(workers))
        try:
            return reference.load(ref, LoadOptions(use_cache=False))
        except ImgscopeError as exc:
            return str(exc)


def _gzipped(path: Path, out: Path) -> Path:
    out.write_bytes(gzip.compress(path.read_bytes(), 1))
    return out


def test_the_demo_reads_the_same_through_the_helper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started_helpers: list[scanproc.ScanWorker]
) -> None:
    started = started_helpers
    archive = _gzipped(DEMO, tmp_path / "demo.tar.gz")
    monkeypatch.delenv("IMGSCOPE_WORKERS", raising=False)
    assert isinstance(reference.load(str(archive), LoadOptions(use_cache=False)), Image)
    assert not started  # none unless asked for
    here = _load(str(archive), 1, monkeypatch)
    assert not started
    helped = _load(str(archive), 2, monkeypatch)
    assert len(started) == 1 and started[0]._proc.poll() is not None  # used, and ended
    assert isinstance(here, Image) and isinstance(helped, Image)
    assert helped.scans == here.scans
    assert [s.diff_id for s in helped.scans] == [s.diff_id for s in reference.load(str(DEMO), LoadOptions()).scans]
    assert helped.warnings == here.warnings


def test_digests_are_computed_by_the_helper_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--verify: every layer's DiffID is hashed (by the helper) and checked against the config."""
    archive = _gzipped(DEMO, tmp_path / "demo.tar.gz")
    monkeypatch.setenv("IMGSCOPE_WORKERS", "2")
    image = reference.load(str(archive), LoadOptions(use_cache=False, verify=True))
    assert [s.diff_id for s in image.scans] == list(image.config.diff_ids)


def test_every_corpus_archive_answers_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[str] = []
    differ: list[tuple[str, object, object]] = []
    for name, build in sorted(CASES.items()):
        root = tmp_path / name
        root.mkdir()
        case = build(root)
        source = Path(case.args[0]) if case.args else root
        if not source.is_file() or source.read_bytes()[257:262] != b"ustar":
            continue  # a layout, a compressed or broken outer file: nothing to compress
        archive = _gzipped(source, root / "case.tar.gz")
        here = _load(str(archive), 1, monkeypatch)
        helped = _load(str(archive), 2, monkeypatch)
        compared.append(name)
        if isinstance(here, str) or isinstance(helped, str):
            same = here == helped
        else:
            same = helped.scans == here.scans and helped.warnings == here.warnings
        if not same:
            differ.append((name, here, helped))
    assert len(compared) >= 40, compared
    assert not differ


def test_a_broken_layer_before_a_cut_is_the_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first failure in stream order wins, as when scanning here: a corrupt layer, then a cut archive."""
    layer = plain_layer({"a": b"x" * 100, "b": b"y" * 100})
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        second = tar.getmembers()[1].offset
    broken = layer[:second] + b"\xff" + layer[second + 1 :]  # the second header's checksum no longer holds
    whole = tmp_path / "whole.tar"
    docker_archive(whole, [broken, good_layers()[1]])
    data = whole.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(gzip.compress(data[: len(data) - 2048], 1))
    here = _load(str(cut), 1, monkeypatch)
    helped = _load(str(cut), 2, monkeypatch)
    assert isinstance(here, str) and "corrupt tar header" in here
    assert helped == here


def test_a_failure_stops_the_helper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started_helpers: list[scanproc.ScanWorker]
) -> None:
    started = started_helpers
    layers = good_layers()
    path = tmp_path / "image.tar"
    docker_archive(path, [b"\x00" * 100 + b"not a tar" * 100, layers[1]])
    message = _load(str(_gzipped(path, tmp_path / "image.tar.gz")), 2, monkeypatch)
    assert isinstance(message, str) and "not a tar archive" in message
    assert started and all(w._proc.poll() is not None for w in started)


def test_a_helper_that_dies_is_an_internal_error_not_a_hang() -> None:
    worker = scanproc.ScanWorker()
    worker._proc.kill()
    worker._proc.wait()
    layer = plain_layer({"a": b"x" * 100})
    with pytest.raises(RuntimeError, match="scan helper process ended early"):
        worker.scan("l", "layer", layer[:512], io.BytesIO(layer[512:]), None, None)
        worker.results()


def test_interrupted_reading_stops_the_helper(
    monkeypatch: pytest.MonkeyPatch, started_helpers: list[scanproc.ScanWorker]
) -> None:
    """Ctrl-C while the stream is read: the helper is gone when the interrupt reaches the caller."""
    started = started_helpers
    monkeypatch.setenv("IMGSCOPE_WORKERS", "2")
    layer = plain_layer({f"f{i}": os.urandom(1000) for i in range(2000)})  # 3 MiB: the helper is busy
    buf = io.BytesIO()
    path_members = [("a/layer.tar", layer, ""), ("b/layer.tar", layer, "")]
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data, _ in path_members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    whole = buf.getvalue()

    class Interrupting(io.RawIOBase):
        def __init__(self) -> None:
            self.pos = 0

        def readable(self) -> bool:
            return True

        def readinto(self, b: memoryview) -> int:  # type: ignore[override]
            if self.pos > len(whole) * 3 // 4:  # within the second layer
                raise KeyboardInterrupt
            n = min(len(b), 4096, len(whole) - self.pos)
            b[:n] = whole[self.pos : self.pos + n]
            self.pos += n
            return n

    with pytest.raises(KeyboardInterrupt):
        store.StreamStore(io.BufferedReader(Interrupting()), "stream")
    assert started and all(w._proc.poll() is not None for w in started)


def test_the_helper_ignores_ctrl_c_its_parent_handles() -> None:
    """The helper shares the terminal's process group: only the parent acts on SIGINT."""
    worker = scanproc.ScanWorker()
    layer = plain_layer({"a": b"x" * 100})
    worker.scan("first", "first", b"", io.BytesIO(layer), None, None)
    deadline = time.monotonic() + 60
    while not worker._ready and time.monotonic() < deadline:  # a result: its loop runs, its handler is set
        time.sleep(0.01)
    worker._proc.send_signal(signal.SIGINT)
    worker.scan("second", "second", b"", io.BytesIO(layer), None, None)
    scans = worker.results()
    assert list(scans) == ["first", "second"] and scans["first"] == scans["second"]
    assert worker._proc.returncode == 0
