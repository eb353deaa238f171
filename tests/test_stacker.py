"""Stacking while the scans come in (``stack.Stacker``) gives what stacking after them gives.

``stack.build`` is the oracle (the rest of the suite checks it against Docker,
dive and hand-written expectations).  The sources tell each layer's scan as
soon as it is known (``LoadOptions.on_layer``): in whatever order the scan
workers finish, from the cache, once per index for a layer listed twice.
Whatever the order, :meth:`Stacker.finish` must give the same stack as
``build`` on the loaded image, and must not trust scans that are not that
image's.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from imgscope import cache, reference
from imgscope import stack as stacking
from imgscope.model import Image, LayerScan
from imgscope.sources import store
from imgscope.sources.common import LoadOptions
from tests import corpus
from tests.conftest import SAMPLES

REFS = sorted(
    str(p)
    for p in [*SAMPLES.glob("*.tar"), *SAMPLES.glob("*.tar.gz"), *SAMPLES.glob("*.tar.zst"), SAMPLES / "demo-oci"]
    if p.exists() and p.name != "bundle-legacy.tar"  # two images: a REF alone names neither
)


def _load(ref: str, **options: object) -> tuple[Image, list[tuple[int, LayerScan]]]:
    told: list[tuple[int, LayerScan]] = []
    image = reference.load(ref, LoadOptions(on_layer=lambda i, s: told.append((i, s)), **options))  # type: ignore[arg-type]
    return image, told


def _same(a: stacking.Stack, b: stacking.Stack) -> None:
    assert a.image is b.image
    assert a.steps == b.steps
    assert a.layers == b.layers
    assert a.final == b.final
    assert list(a.final) == list(b.final)  # the same order too: renderers walk it
    assert a.warnings == b.warnings


@pytest.mark.parametrize("ref", REFS, ids=[Path(r).name for r in REFS])
def test_every_layer_is_told_once_per_index_with_the_image_scan(ref: str) -> None:
    image, told = _load(ref, use_cache=False)
    assert sorted(i for i, _ in told) == list(range(len(image.scans)))
    for index, scan in told:
        assert scan is image.scans[index]


@pytest.mark.parametrize("ref", REFS, ids=[Path(r).name for r in REFS])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_any_arrival_order_stacks_as_build(ref: str, seed: int) -> None:
    image, told = _load(ref, use_cache=False)
    random.Random(seed).shuffle(told)
    stacker = stacking.Stacker()
    for index, scan in told[: len(told) // 2 + seed % 2]:  # some told, the rest left for finish
        stacker.add(index, scan)
    _same(stacker.finish(image), stacking.build(image))


def test_the_stacker_fed_by_a_load_stacks_as_build_with_workers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Two scan processes: layers are told as each process finishes one, out of order."""
    files = {f"d{i}/f{j}": corpus.noise(5000 + j, f"{i}-{j}".encode()) for i in range(3) for j in range(40)}
    layers = [corpus.plain_layer({k: v for k, v in files.items() if k.startswith(f"d{i}/")}) for i in range(3)]
    layers.append(corpus.layer(corpus.member("d0/.wh.f3", b""), corpus.member("d1/f1", b"changed")))
    path = tmp_path / "image.tar"
    corpus.docker_archive(path, layers)
    monkeypatch.setenv("IMGSCOPE_WORKERS", "2")
    stacker = stacking.Stacker()
    image = reference.load(str(path), LoadOptions(use_cache=False, on_layer=stacker.add))
    _same(stacker.finish(image), stacking.build(image))


def test_a_layer_listed_twice_and_cached_layers_are_told_for_every_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMGSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    base = corpus.plain_layer({"etc/a": b"a"})
    top = corpus.plain_layer({"etc/b": b"b"})
    path = tmp_path / "twice.tar"
    corpus.docker_archive(path, [base, top, base], layer_names=["a/layer.tar", "b/layer.tar", "a/layer.tar"])
    for _ in range(2):  # the second load takes every scan from the cache
        image, told = _load(str(path))
        assert sorted(i for i, _ in told) == [0, 1, 2]
        assert all(scan is image.scans[i] for i, scan in told)
    assert cache.open_cache().get(image.scans[0].diff_id) is not None


def test_scans_of_another_image_are_not_trusted() -> None:
    _, told = _load(REFS[0], use_cache=False)
    second, _ = _load(REFS[0], use_cache=False)  # equal scans, other objects
    stacker = stacking.Stacker()
    for index, scan in told:
        stacker.add(index, scan)
    _same(stacker.finish(second), stacking.build(second))


def test_a_layer_told_again_with_another_scan_is_stacked_anew() -> None:
    image, told = _load(REFS[0], use_cache=False)
    stacker = stacking.Stacker()
    for index, scan in sorted(told, key=lambda t: t[0]):
        stacker.add(index, scan)
    stacker.add(0, dataclasses.replace(image.scans[0], entries=()))  # told late, and different
    _same(stacker.finish(image), stacking.build(image))


def test_the_parallel_scan_tells_positions_of_the_names_asked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``on_scan``'s position is the layer's among the names asked for, whoever scanned it."""
    sizes = [3000, 200_000, 50, 90_000]
    layers = [corpus.plain_layer({f"l{i}/f": corpus.noise(n, str(i).encode())}) for i, n in enumerate(sizes)]
    path = tmp_path / "image.tar"
    corpus.docker_archive(path, layers)
    monkeypatch.setenv("IMGSCOPE_WORKERS", "2")
    tar = store.TarStore(path)
    names = [n for n in tar.names() if n.endswith("layer.tar")]
    told: dict[int, LayerScan] = {}
    scans = tar.scan_many(names, max_bytes=None, visitor=None, on_scan=told.__setitem__)
    assert sorted(told) == list(range(len(names)))
    assert all(told[i] is scans[i] for i in told)
