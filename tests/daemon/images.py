"""Build the daemon test images from ``tests/daemon/*.Dockerfile``.

Each ``NAME.Dockerfile`` becomes ``imgscope-test/NAME:latest``, built with
the legacy builder (what ``DOCKER_BUILDKIT=0 docker build`` uses) from a
temporary context holding only a static busybox, so the images need no
registry and no network.  ``.ci/run`` builds them with the docker CLI before
the tests; the session fixture calls :func:`ensure_images` so a developer
running pytest against their own daemon gets the same images.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PREFIX = "imgscope-test/"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


def dockerfiles() -> dict[str, Path]:
    """Image tag -> Dockerfile."""
    return {f"{PREFIX}{p.name[: -len('.Dockerfile')]}:latest": p for p in sorted(HERE.glob("*.Dockerfile"))}


def busybox() -> Path | None:
    """A static busybox to copy into the build context, or None."""
    for candidate in BUSYBOX_CANDIDATES:
        path = Path(candidate)
        if path.is_file():
            return path
    return None


def build(client: Any, tag: str, dockerfile: Path) -> str:
    """Build one image with the legacy builder; return its id."""
    bb = busybox()
    if bb is None:
        raise RuntimeError("no busybox found (install busybox-static) to build the daemon test images")
    with tempfile.TemporaryDirectory(prefix="imgscope-build-") as tmp:
        context = Path(tmp)
        shutil.copy2(bb, context / "busybox")
        shutil.copy2(dockerfile, context / "Dockerfile")
        image, _logs = client.images.build(path=str(context), tag=tag, rm=True, forcerm=True, network_mode="none")
    return str(image.id)


def ensure_images(client: Any, rebuild: bool = False) -> tuple[dict[str, str], list[str]]:
    """Every test image present (built when absent): tag -> image id, and the tags built now.

    The caller removes what it built once done, so a test run leaves the engine as it found it
    (images that ``.ci/run`` or an earlier step built are kept).
    """
    from docker.errors import ImageNotFound

    out: dict[str, str] = {}
    built: list[str] = []
    for tag, dockerfile in dockerfiles().items():
        if not rebuild:
            try:
                out[tag] = str(client.images.get(tag).id)
                continue
            except ImageNotFound:
                pass
        out[tag] = build(client, tag, dockerfile)
        built.append(tag)
    return out, built


def remove_images(client: Any, tags: list[str]) -> None:
    """Remove test images by tag; one still in use or already gone is left alone."""
    from docker.errors import APIError

    for tag in tags:
        with contextlib.suppress(APIError):
            client.images.remove(tag, noprune=False)
