"""Shared test fixtures: an isolated scan cache, paths to sample images and external fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_images"
EXTERNAL = ROOT.parent / "shared" / "fixtures" / "external"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test gets its own scan cache, so no test sees another's cached scans."""
    monkeypatch.setenv("IMGSCOPE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    yield


@pytest.fixture
def external() -> Path:
    """The external fixtures folder, or a skip when this checkout has none beside it."""
    if not EXTERNAL.is_dir():
        pytest.skip(f"external fixtures not present at {EXTERNAL}")
    return EXTERNAL
