"""Conformance on real images written by other tools (../shared/fixtures/external).

Each image must parse; its layer count and every layer's size must equal an
independent computation from GNU tar's listing; every entry GNU tar lists is
accounted for (as an entry, a whiteout or an opaque marker).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgscope import reference
from imgscope.cli import app
from imgscope.model import Image
from imgscope.sources.common import LoadOptions
from tests.gnutar import archive_layers, gnu_list

ARCHIVES = [
    ("test-docker-image.tar", None, 0, 14),
    ("test-kaniko-image.tar", None, 0, 14),
    ("test-oci-uncompressed-image.tar", None, 0, 1),
    ("test-oci-gzip-image.tar", None, 0, 1),
    ("test-oci-zstd-image.tar", None, 0, 1),
    ("test-oci-estargz-image.tar", None, 0, 1),
    ("ggcr-hello-world-v25.tar", None, 0, 1),
    ("ggcr-test_image_1.tar", None, 0, 1),
    ("ggcr-test_image_2.tar", None, 0, 1),
    ("ggcr-test_bundle.tar", "test_image_2", 0, 1),
    ("ggcr-test_bundle.tar", "test_image_1", 1, 1),
    ("ggcr-test_link.tar", "bazel/v1/tarball:test_image_1", 0, 1),
    ("ggcr-test_link.tar", "bazel/v1/tarball:test_image_3", 1, 2),
]


def check_against_gnu_tar(image: Image, layers: list[bytes]) -> None:
    assert len(image.scans) == len(layers)
    for scan, blob in zip(image.scans, layers, strict=True):
        listing = gnu_list(blob)
        assert scan.size == listing.size, scan.diff_id
        assert {e.path for e in scan.entries} == listing.paths
        assert set(scan.whiteouts) == listing.whiteouts
        assert set(scan.opaques) == listing.opaques


@pytest.mark.parametrize("name,tag,index,count", ARCHIVES, ids=[f"{a[0]}:{a[1]}" for a in ARCHIVES])
def test_archive_matches_gnu_tar(external: Path, name: str, tag: str | None, index: int, count: int) -> None:
    path = external / name
    image = reference.load(str(path), LoadOptions(image=tag, use_cache=False))
    assert len(image.scans) == count
    assert not [w for w in image.warnings if "DiffID" in w]
    check_against_gnu_tar(image, archive_layers(path, index))
    assert image.size == sum(gnu_list(b).size for b in archive_layers(path, index))


def test_docker_image_sizes_per_step(external: Path) -> None:
    """The dive test image: sizes from its Dockerfile (README.md of 6405 bytes copied around)."""
    image = reference.load(str(external / "test-docker-image.tar"), LoadOptions(use_cache=False))
    sizes = [s.size for s in image.scans]
    assert sizes[1:] == [6405, 0, 6405, 6405, 6405, 6405, 6405, 6405, 0, 2187, 6405, 6405, 6405]


@pytest.mark.parametrize("tag", ["1", "2", "3", "4"])
def test_layout_index_tags(external: Path, tag: str) -> None:
    layout = external / "ggcr-layout-test_index"
    image = reference.load(f"oci:{layout}:{tag}", LoadOptions(use_cache=False))
    assert len(image.scans) == 1
    index = json.loads((layout / "index.json").read_text())
    assert tag in image.tags or any(
        d["annotations"]["org.opencontainers.image.ref.name"] == tag for d in index["manifests"]
    )
    blob = (layout / "blobs/sha256" / image.layers[0].digest.split(":")[1]).read_bytes()  # type: ignore[union-attr]
    from tests.gnutar import decompress

    assert image.scans[0].size == gnu_list(decompress(blob)).size


def test_estargz_metadata_is_reported(external: Path) -> None:
    image = reference.load(str(external / "test-oci-estargz-image.tar"), LoadOptions(use_cache=False))
    assert image.scans[0].estargz
    # The TOC follows the end-of-archive marker: Docker does not show it, nor does imgscope.
    assert "/stargz.index.json" not in {e.path for e in image.scans[0].entries}
    assert not image.scans[0].warnings


@pytest.mark.parametrize(
    "name,message",
    [
        ("ggcr-no_manifest.tar", "no manifest.json"),
        ("ggcr-null_manifest.tar", "manifest.json is null"),
    ],
)
def test_unreadable_archives_exit_2(external: Path, name: str, message: str) -> None:
    result = CliRunner().invoke(app, ["inspect", str(external / name)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and name in lines[0]


def test_bundle_without_choice_lists_tags(external: Path) -> None:
    result = CliRunner().invoke(app, ["inspect", str(external / "ggcr-test_bundle.tar")])
    assert result.exit_code == 2
    assert "test_image_1" in result.output and "test_image_2" in result.output and "--image" in result.output


@pytest.mark.parametrize("name", ["test-docker-image.tar", "ggcr-hello-world-v25.tar", "test-oci-zstd-image.tar"])
def test_inspect_console_runs(external: Path, name: str) -> None:
    result = CliRunner().invoke(app, ["inspect", str(external / name), "--no-color"])
    assert result.exit_code == 0, result.output
    assert "Steps" in result.output
