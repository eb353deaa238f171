"""Shared test fixtures: an isolated scan cache, paths to sample images and external fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from imgscope.sources.scanproc import ScanWorker

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
    """The external fixtures folder, or a skip when this checkout has none beside it.

    CI sets ``IMGSCOPE_REQUIRE_FIXTURES=1``: there a missing folder fails the
    conformance tests instead of skipping them silently.
    """
    if not EXTERNAL.is_dir():
        reason = f"external fixtures not present at {EXTERNAL}"
        if os.environ.get("IMGSCOPE_REQUIRE_FIXTURES") == "1":
            pytest.fail(f"{reason} (IMGSCOPE_REQUIRE_FIXTURES=1)", pytrace=False)
        pytest.skip(reason)
    return EXTERNAL


# --------------------------------------------------------------------------- daemon fixtures
# Tests that need a Docker engine take ``docker_client`` (or ``daemon_images``).  With no
# engine answering they are skipped with the reason, unless IMGSCOPE_REQUIRE_DOCKER=1
# (set by .ci/run): then a missing engine fails the run instead of hiding every test.


@pytest.fixture(scope="session")
def docker_client() -> Iterator[object]:
    """A Docker SDK client for the engine imgscope itself would use."""
    import os

    from imgscope.errors import ImgscopeError

    try:
        from imgscope.sources.daemon import connect

        engine = connect()
    except (ImgscopeError, ImportError) as exc:
        reason = f"no Docker engine answers: {exc}"
        if os.environ.get("IMGSCOPE_REQUIRE_DOCKER") == "1":
            pytest.fail(f"{reason} (IMGSCOPE_REQUIRE_DOCKER=1)", pytrace=False)
        pytest.skip(reason)
    yield engine.client
    engine.close()


@pytest.fixture(scope="session")
def daemon_images(docker_client: object) -> Iterator[dict[str, str]]:
    """The images of tests/daemon/*.Dockerfile, built when absent: tag -> image id.

    Images built here are removed at the end of the session; ones that were there before
    (built by .ci/run or a developer) are kept.
    """
    from tests.daemon.images import ensure_images, remove_images

    images, built = ensure_images(docker_client)
    yield images
    remove_images(docker_client, built)


@pytest.fixture
def started_helpers(monkeypatch: pytest.MonkeyPatch) -> list[ScanWorker]:
    """Every scan helper process (``scanproc.ScanWorker``) started during the test, in order."""
    from imgscope.sources.scanproc import ScanWorker

    started: list[ScanWorker] = []
    original = ScanWorker.__init__

    def spy(self: ScanWorker) -> None:
        original(self)
        started.append(self)

    monkeypatch.setattr(ScanWorker, "__init__", spy)
    return started
