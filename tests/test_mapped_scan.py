"""Layers scanned in place in a mapped file give what reading them gives, errors included.

The oracle is the reading path itself (``_Window.readinto`` into the
scanner's buffers), which the rest of the suite checks against GNU tar,
Docker and hand-written expectations: with mapping turned off
(``_MappedWindow.of`` returning None) every input must give the same scan, the
same report and the same error line, byte for byte.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgscope import scan as scanning
from imgscope.cli import app
from imgscope.errors import ImgscopeError
from imgscope.model import LayerScan
from imgscope.sources import store
from tests import corpus
from tests.conftest import SAMPLES
from tests.corpus import CASES

CHUNK = scanning.CHUNK
# An offset that is not a multiple of the page size: the mapping starts below it.
OFFSET = 4096 * 3 + 1000


def _no_mapping(*_args: object) -> None:
    return None


def _scan_file(path: Path, offset: int, length: int, limit: int | None, trusted: str | None) -> LayerScan | str:
    """The scan of one window, or the error it raised."""
    try:
        return store._scan_window((str(path), offset, length, "layer", limit, trusted))
    except ImgscopeError as exc:
        return f"error: {exc}"


def _both_ways(
    monkeypatch: pytest.MonkeyPatch, path: Path, offset: int, length: int, limit: int | None, trusted: str | None
) -> tuple[LayerScan | str, LayerScan | str]:
    mapped = _scan_file(path, offset, length, limit, trusted)
    with monkeypatch.context() as m:
        m.setattr(store._MappedWindow, "of", _no_mapping)
        read = _scan_file(path, offset, length, limit, trusted)
    return mapped, read


def _big_layer() -> bytes:
    """A layer crossing several chunk boundaries: large files, small files, a PAX record across a boundary."""
    files = {f"small/{i:04}": corpus.noise(700 + i, str(i).encode()) for i in range(300)}
    files["big/one"] = corpus.noise(CHUNK + CHUNK // 2, b"one")
    files["big/two"] = corpus.noise(2 * CHUNK + 12345, b"two")
    files.update({f"tail/{i:03}": b"t" * i for i in range(200)})
    body = corpus.plain_layer(files)
    # A PAX record and its entry straddling a chunk boundary, then the usual end.
    at = (3 * CHUNK - len(body) % CHUNK) % CHUNK
    filler = corpus.member("filler", corpus.noise(max(at - 3 * 512, 0), b"f"))
    long = corpus.pax({b"path": b"pax/" + b"n" * 300}) + corpus.member("short", b"pax content")
    return body[: -len(corpus.END)] + filler + long + corpus.END


def _layers() -> dict[str, bytes]:
    good, top = corpus.good_layers()
    big = _big_layer()
    return {
        "good": good,
        "top": top,
        "big": big,
        "big-cut-in-a-file": big[: CHUNK + 5000],
        "big-cut-at-a-chunk": big[: 2 * CHUNK],
        "big-cut-in-a-header": big[: len(big) - 3 * 512 - 100],
        "no-end-marker": good[: -len(corpus.END)],
        "garbage-after-end": good + corpus.noise(3000, b"garbage"),
        "corrupt-header": corpus.flip(big, CHUNK * 2 + 512 * 7 + 150),
        "not-a-tar": corpus.noise(5000, b"not a tar"),
        "zeros": b"\x00" * (CHUNK + 512),
        "gzip": gzip.compress(big, mtime=0),
    }


LAYERS = _layers()


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("limit", [None, 512, 3000, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK - 1])
def test_a_mapped_window_scans_as_a_read_one(
    name: str, limit: int | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = LAYERS[name]
    path = tmp_path / "archive"
    path.write_bytes(corpus.noise(OFFSET, b"before") + data + corpus.noise(777, b"after"))
    for trusted in ("sha256:" + "ab" * 32, None):
        mapped, read = _both_ways(monkeypatch, path, OFFSET, len(data), limit, trusted)
        assert mapped == read
    if isinstance(read, LayerScan):
        assert read.tar_bytes == len(gzip.decompress(data) if name == "gzip" else data)
        assert read.diff_id == corpus.sha256(data if name != "gzip" else gzip.decompress(data))


def test_the_mapped_path_is_the_one_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparisons above compare two paths, not one path twice."""
    made: list[bool] = []
    real = scanning._Stream

    class Spy(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: object, **kw: object) -> None:
            super().__init__(*args, **kw)
            made.append(self._mapped is not None)

    monkeypatch.setattr(scanning, "_Stream", Spy)
    path = tmp_path / "archive"
    path.write_bytes(b"x" * OFFSET + LAYERS["big"] + LAYERS["gzip"])
    _scan_file(path, OFFSET, len(LAYERS["big"]), None, None)
    _scan_file(path, OFFSET + len(LAYERS["big"]), len(LAYERS["gzip"]), None, None)  # compressed: read
    monkeypatch.setattr(store._MappedWindow, "of", _no_mapping)
    _scan_file(path, OFFSET, len(LAYERS["big"]), None, None)
    assert made == [True, False, False]


def test_a_file_shorter_than_its_window_is_read_and_reported_cut(tmp_path: Path) -> None:
    """No mapping past the end of a file (touching it would kill the process): read, and say it is cut."""
    data = LAYERS["big"]
    path = tmp_path / "archive"
    path.write_bytes(data[: CHUNK + 5000])
    with open(path, "rb") as fh:
        assert store._MappedWindow.of(fh, 0, len(data)) is None
    result = _scan_file(path, 0, len(data), None, None)
    assert result == "error: layer: layer tar is truncated (a file's data is cut)"


def _cli(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def _cli_both_ways(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    monkeypatch.setenv("IMGSCOPE_WORKERS", "1")  # in this process, where the patch applies
    mapped = _cli(args)
    with monkeypatch.context() as m:
        m.setattr(store._MappedWindow, "of", _no_mapping)
        read = _cli(args)
    assert mapped == read


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_inputs_answer_the_same_mapped_or_read(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    case = CASES[name](tmp_path)
    for extra in (["--no-cache"], ["--no-cache", "--verify"]):
        _cli_both_ways(monkeypatch, ["inspect", *case.args, "--json", *extra])


@pytest.mark.parametrize(
    "name", sorted(p.name for p in SAMPLES.iterdir() if p.name.endswith(".tar") or (p / "oci-layout").exists())
)
def test_sample_images_answer_the_same_mapped_or_read(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for extra in (["--no-cache"], ["--no-cache", "--verify"]):
        _cli_both_ways(monkeypatch, ["inspect", str(SAMPLES / name), "--json", *extra])


def test_external_images_answer_the_same_mapped_or_read(external: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = sorted(p for p in external.iterdir() if p.suffix == ".tar" or (p / "oci-layout").exists())
    assert images
    for path in images:
        _cli_both_ways(monkeypatch, ["inspect", str(path), "--json", "--no-cache", "--verify"])


def test_a_mapped_layer_is_let_go_of_as_it_is_scanned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scanned pages are released chunk by chunk (else a 300 MB layer stays resident), never ahead of the scan."""
    data = LAYERS["big"]
    path = tmp_path / "archive"
    path.write_bytes(b"x" * OFFSET + data)
    released: list[int] = []
    real = store._MappedWindow.release

    def spy(self: store._MappedWindow, upto: int) -> None:
        released.append(upto)
        real(self, upto)

    monkeypatch.setattr(store._MappedWindow, "release", spy)
    expected = _both_ways(monkeypatch, path, OFFSET, len(data), None, None)[1]
    released.clear()
    assert _scan_file(path, OFFSET, len(data), None, None) == expected
    assert released == sorted(released)
    # Each release lags a chunk behind what was handed out, which is at most the whole layer.
    assert len(data) - 2 * CHUNK <= released[-1] <= len(data) - CHUNK
