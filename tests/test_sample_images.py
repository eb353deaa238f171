"""Every sample image, in every layout, against the facts build.py recorded in expected.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from imgscope import reference, stack
from imgscope.errors import ImgscopeError
from imgscope.model import DIR
from imgscope.sources.common import LoadOptions
from tests.conftest import SAMPLES

EXPECTED: dict[str, Any] = json.loads((SAMPLES / "expected.json").read_text())
DEMO = EXPECTED["demo"]
DEMO_REFS = [
    "demo-legacy.tar",
    "demo-legacy.tar.gz",
    "demo-legacy.tar.zst",
    "demo-v25.tar",
    "demo-containerd.tar",
    "demo-oci.tar",
    "oci:demo-oci",
    "kaniko-demo.tar",
    "bundle-legacy.tar:imgscope/demo:latest",
    "oci:multiarch-oci:multi",
]


def load(ref: str, **kw: Any) -> Any:
    ref = "oci:" + str(SAMPLES / ref[4:]) if ref.startswith("oci:") else str(SAMPLES / ref)
    return reference.load(ref, LoadOptions(use_cache=False, **kw))


@pytest.mark.parametrize("ref", DEMO_REFS)
def test_demo_in_every_layout(ref: str) -> None:
    image = load(ref, platform="linux/amd64")
    assert image.image_id == DEMO["config_digest"]
    assert [s.diff_id for s in image.scans] == DEMO["diff_ids"]
    assert [s.size for s in image.scans] == [layer["docker_size"] for layer in DEMO["layers"]]
    assert [s.tar_bytes for s in image.scans] == [layer["tar_size"] for layer in DEMO["layers"]]
    assert image.size == DEMO["docker_size"]
    assert not image.warnings
    stacked = stack.build(image)
    assert [layer.chain_id for layer in stacked.layers] == DEMO["chain_ids"]
    # expected.json records tar header sizes (0 for a symlink); Docker counts a symlink's target length,
    # which the per-layer docker_size check above covers.
    final = {
        p.lstrip("/") + ("/" if f.entry.type == DIR else ""): (f.entry.type, f.entry.tar_size, f.entry.mode, f.layer)
        for p, f in stacked.final.items()
    }
    expected_final = {e["path"]: (e["type"], e["size"], e["mode"], e["layer"]) for e in DEMO["final_tree"]}
    assert final == expected_final


@pytest.mark.parametrize("name", ["demo-v25.tar", "demo-containerd.tar", "demo-oci.tar", "kaniko-demo.tar"])
def test_manifest_facts(name: str) -> None:
    image = load(name, platform="linux/amd64")
    facts = EXPECTED["layouts"][name]
    if "manifest_digest" in facts:
        assert image.manifest_digest == facts["manifest_digest"]
    if "layers" in facts:
        assert [info.compressed_size for info in image.layers] == [layer["size"] for layer in facts["layers"]]
        assert image.compressed_size == sum(layer["size"] for layer in facts["layers"])


def test_demo_changes_per_layer() -> None:
    """Each step's change kinds, in DESIGN.md's vocabulary, as build.py planned them."""
    stacked = stack.build(load("demo-legacy.tar"))
    for layer, expected in zip(stacked.layers, DEMO["layers"], strict=True):
        got = {(c.path.lstrip("/"), c.kind) for c in layer.changes if (c.entry or c.old).type != DIR}  # type: ignore[union-attr]
        want = {
            (c["path"], c["kind"].replace("reshipped", "re-shipped")) for c in expected["changes"] if c["type"] != "dir"
        }
        assert got == want, layer.index


def test_demo_steps_and_instructions() -> None:
    stacked = stack.build(load("demo-legacy.tar"))
    assert len(stacked.steps) == len(DEMO["history"])
    assert [s.layer for s in stacked.steps if s.layer is not None] == list(range(7))
    by_layer = {s.layer: s.instruction for s in stacked.steps if s.layer is not None}
    assert by_layer[2] == "RUN rm -rf /tmp/debs"
    assert by_layer[3] == "RUN chmod 600 /etc/app.conf"
    assert by_layer[6] == "RUN true"
    assert by_layer[4].startswith("RUN echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd")


def test_multiarch_platform_choice() -> None:
    arm = load("oci:multiarch-oci", platform="linux/arm64")
    assert arm.config.architecture == "arm64"
    assert [s.diff_id for s in arm.scans] == EXPECTED["other_images"]["arm64"]["diff_ids"]
    amd = load("oci:multiarch-oci", platform="linux/amd64")
    assert amd.image_id == DEMO["config_digest"]
    with pytest.raises(ImgscopeError, match="platforms here"):
        load("oci:multiarch-oci", platform="linux/s390x")


def test_missing_platform_of_containerd_store_is_explained() -> None:
    with pytest.raises(ImgscopeError, match="not pulled"):
        load("demo-containerd.tar", platform="linux/arm64")


def test_bundle_needs_a_choice_and_shares_the_symlinked_layer() -> None:
    with pytest.raises(ImgscopeError, match="--image"):
        load("bundle-legacy.tar")
    small = load("bundle-legacy.tar", image="imgscope/small:1.0")
    demo = load("bundle-legacy.tar", image="imgscope/demo:latest")
    assert small.scans[0].diff_id == demo.scans[0].diff_id


def test_sample_images_are_reproducible() -> None:
    proc = subprocess.run(
        [sys.executable, str(SAMPLES / "build.py"), "--check"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cache_round_trip_gives_identical_scans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSCOPE_CACHE_DIR", str(tmp_path))
    cold = reference.load(str(SAMPLES / "demo-legacy.tar"), LoadOptions())
    warm = reference.load(str(SAMPLES / "demo-legacy.tar"), LoadOptions())
    assert warm.scans == cold.scans
    from imgscope.cache import open_cache

    assert open_cache().info().layers == 7


@pytest.mark.parametrize("name", ["demo-legacy.tar", "demo-v25.tar", "demo-containerd.tar", "demo-oci.tar"])
def test_every_tar_entry_is_accounted_for(name: str) -> None:
    """GNU tar's listing of each layer equals the scan's entries, whiteouts and opaque markers."""
    from tests.gnutar import archive_layers, gnu_list

    image = load(name, platform="linux/amd64")
    for scan, blob in zip(image.scans, archive_layers(SAMPLES / name), strict=True):
        listing = gnu_list(blob)
        assert ({e.path for e in scan.entries}, set(scan.whiteouts), set(scan.opaques)) == (
            set(listing.paths),
            set(listing.whiteouts),
            set(listing.opaques),
        )
        assert scan.size == listing.size
