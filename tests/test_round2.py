"""Core correctness, round 2 (issue 15): each case found on real images, one test each.

Every image here is written by ``tests/imagebuild.py`` or by hand (raw tar
blocks, GNU tar itself), never by imgscope; expected figures are a hand
computation or GNU tar's own listing.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import jsonschema
import pytest
import xxhash
from typer.testing import CliRunner

from imgscope import reference, stack
from imgscope.analysis import diff as diff_analysis
from imgscope.analysis import waste
from imgscope.cli import app
from imgscope.model import DIR, FILE
from imgscope.scan import scan_layer
from imgscope.schemas import load_schema
from imgscope.sources.common import LoadOptions
from tests import imagebuild as ib
from tests.gnutar import gnu_list

GNU_TAR = shutil.which("tar")


def _load(path: Path | str, **options: object) -> stack.Stack:
    image = reference.load(str(path), LoadOptions(use_cache=False, **options))  # type: ignore[arg-type]
    return stack.build(image)


# --------------------------------------------------------------------------- 1. hard links


def test_hardlink_keeps_content_when_target_deleted(tmp_path: Path) -> None:
    """Layer 0: /a (100 B) and /h linked to it; layer 1 deletes /a.  /h keeps the 100 bytes."""
    content = b"x" * 100
    base = ib.ImageSpec(steps=(ib.run("make a", ib.file("a", content), ib.hardlink("h", "a")),))
    spec = base.extend(ib.run("rm a", ib.whiteout("a")))
    ib.write_docker_archive(tmp_path / "b.tar", spec)
    ib.write_docker_archive(tmp_path / "a.tar", base)
    built = _load(tmp_path / "b.tar")

    kept = built.final["/h"].entry
    assert "/a" not in built.final
    assert kept.type == FILE
    assert kept.size == 100
    assert kept.digest == xxhash.xxh3_64_hexdigest(content)
    removal = [c for c in built.layers[1].changes if c.path == "/a"]
    assert len(removal) == 1 and removal[0].kept_by == "/h"
    assert built.layers[1].total("removed") == stack.KindTotals(1, 0)  # nothing left the view

    # Hand computation: 100 bytes stored once, all of them still visible.
    report = waste.analyse(built)
    assert report.total_stored == 100
    assert report.visible == 100
    assert report.wasted_bytes == 0
    assert report.efficiency == 1.0

    # Diff base -> image: /a removed, /h now holds the 100 bytes itself.
    result = diff_analysis.diff(_load(tmp_path / "a.tar"), built)
    assert result.files_size_a == 100 and result.files_size_b == 100
    h = next(f for f in result.files if f.path == "/h")
    assert h.size_b == 100

    # JSON names the link that kept the content, and stays valid against the published schema.
    report_json = json.loads(CliRunner().invoke(app, ["inspect", str(tmp_path / "b.tar"), "--json"]).output)
    jsonschema.validate(report_json, load_schema("inspect"))
    changes = report_json["layers"][1]["changes"]
    assert [c.get("kept_by") for c in changes if c["path"] == "/a"] == ["/h"]


def test_hardlink_keeps_content_when_target_overwritten(tmp_path: Path) -> None:
    """Overwriting /a breaks the link (copy-up): /h keeps the old 100 bytes, nothing is wasted."""
    spec = ib.ImageSpec(
        steps=(
            ib.run("make a", ib.file("a", b"o" * 100), ib.hardlink("h1", "a"), ib.hardlink("h2", "a")),
            ib.run("rewrite a", ib.file("a", b"n" * 30)),
        )
    )
    ib.write_docker_archive(tmp_path / "i.tar", spec)
    built = _load(tmp_path / "i.tar")
    assert built.final["/a"].entry.size == 30
    assert built.final["/h1"].entry.size == 100
    assert built.final["/h1"].entry.digest == xxhash.xxh3_64_hexdigest(b"o" * 100)
    # The second link still shares the inode with the first: it counts no bytes of its own.
    assert built.final["/h2"].entry.size == 0 and built.final["/h2"].entry.link == "/h1"
    report = waste.analyse(built)
    assert (report.total_stored, report.visible, report.wasted_bytes) == (130, 130, 0)


# --------------------------------------------------------------------------- 2. unlisted directories


def test_file_replaces_unlisted_directory(tmp_path: Path) -> None:
    """Layer 0 ships only d/a (no d/ entry); layer 1 a file d: /d/a is gone."""
    spec = ib.ImageSpec(
        steps=(
            ib.run("mk", ib.file("d/a", b"12345"), ib.file("keep", b"k")),
            ib.run("replace", ib.file("d", b"file")),
        )
    )
    ib.write_docker_archive(tmp_path / "i.tar", spec)
    built = _load(tmp_path / "i.tar")
    assert sorted(built.final) == ["/d", "/keep"]
    assert built.final["/d"].entry.type == FILE
    removed = {c.path: c for c in built.layers[1].changes if c.kind == "removed"}
    assert "/d/a" in removed and removed["/d/a"].old is not None and removed["/d/a"].old.size == 5
    assert waste.analyse(built).wasted_bytes == 5


def test_symlink_replaces_directory_within_one_layer(tmp_path: Path) -> None:
    """One layer: directory d, d/a, then a symlink d: the layer's own d/a is replaced too."""
    spec = ib.ImageSpec(steps=(ib.run("mk", ib.directory("d"), ib.file("d/a", b"123"), ib.symlink("d", "elsewhere")),))
    ib.write_docker_archive(tmp_path / "i.tar", spec)
    built = _load(tmp_path / "i.tar")
    assert sorted(built.final) == ["/d"]
    assert built.final["/d"].entry.type == "symlink"


def test_replacement_after_a_repeated_name_still_cuts_deep_entries() -> None:
    """Once a repeated name built the child index, a later deep entry is indexed under every ancestor.

    Layer entries q, q, x/y/z, file x, directory x: the file x replaced the implied directory x,
    so /x/y/z is gone, exactly as without the repeated q.
    """
    tail = [ib.file("x/y/z", b"zzz"), ib.file("x", b"file"), ib.directory("x")]
    plain = scan_layer(io.BytesIO(ib.layer_tar(tail)), "plain")
    assert [e.path for e in plain.entries] == ["/x"]
    repeated = scan_layer(io.BytesIO(ib.layer_tar([ib.file("q", b"1"), ib.file("q", b"2"), *tail])), "repeated")
    assert sorted(e.path for e in repeated.entries) == ["/q", "/x"]
    assert "/x/y/z" in [e.path for e in repeated.shadowed]


# --------------------------------------------------------------------------- 3. GNU headers


def _gnu_incremental_layer(tmp_path: Path) -> bytes:
    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "x").write_bytes(b"#!/bin/sh\necho x\n")
    return subprocess.run(
        ["tar", "-G", "--numeric-owner", "-cf", "-", "-C", str(root), "usr"],
        capture_output=True,
        check=True,
    ).stdout


@pytest.mark.skipif(GNU_TAR is None, reason="GNU tar is not installed")
def test_gnu_incremental_layer_matches_gnu_tar(tmp_path: Path) -> None:
    """``tar -G``: GNU headers (atime in the ustar prefix field) and 'D' dumpdir entries."""
    data = _gnu_incremental_layer(tmp_path)
    assert data[257:265] == b"ustar  \x00"  # the GNU magic, not POSIX ustar
    assert b"D" in {data[i + 156 : i + 157] for i in range(0, len(data), 512)}  # GNU tar wrote dumpdirs
    scan = scan_layer(io.BytesIO(data), "gnu")
    listing = gnu_list(data)
    assert {e.path for e in scan.entries} == listing.paths == {"/usr", "/usr/bin", "/usr/bin/x"}
    assert scan.size == listing.size == len(b"#!/bin/sh\necho x\n")
    kinds = {e.path: e.type for e in scan.entries}
    assert kinds["/usr"] == DIR and kinds["/usr/bin"] == DIR


# --------------------------------------------------------------------------- 4. end of archive

_END = b"\x00" * 1024


def _raw_tar(entries: list[ib.TarEntry]) -> bytes:
    """Tar members without their end-of-archive marker (tarfile pads and ends; cut it back)."""
    data = ib.layer_tar(entries)
    body = data
    while body.endswith(b"\x00" * 512):
        body = body[:-512]
    # Content is padded to whole blocks, so a file ending in zeros cannot be cut: entries here end in text.
    return body


def test_estargz_toc_after_end_marker_is_not_a_file() -> None:
    """eStargz's TOC follows the end marker: GNU tar (without --ignore-zeros) and Docker stop before it."""
    body = _raw_tar([ib.file("bin/app", b"app\n")])
    toc = _raw_tar([ib.file("stargz.index.json", json.dumps({"version": 1, "entries": []}) + "\n")])
    data = body + _END + toc + _END
    listed = subprocess.run(["tar", "-t", "-f", "-"], input=data, capture_output=True, check=True).stdout
    assert listed.split() == [b"bin/app"]
    scan = scan_layer(io.BytesIO(data), "estargz")
    assert [e.path for e in scan.entries] == ["/bin/app"]
    assert scan.estargz
    assert not scan.warnings
    assert scan.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()


def test_bytes_after_end_marker_are_ignored_with_one_warning() -> None:
    body = _raw_tar([ib.file("a", b"a\n")])
    trailer = _raw_tar([ib.file("b", b"b\n")]) + b"junk" + b"\x00" * 508
    data = body + _END + trailer
    scan = scan_layer(io.BytesIO(data), "trailing")
    assert [e.path for e in scan.entries] == ["/a"]
    assert not scan.estargz
    assert len(scan.warnings) == 1
    assert f"{len(trailer)} bytes" in scan.warnings[0]


def test_zero_padding_after_end_marker_is_silent() -> None:
    data = ib.layer_tar([ib.file("a", b"a\n")]) + b"\x00" * 10240
    scan = scan_layer(io.BytesIO(data), "padded")
    assert [e.path for e in scan.entries] == ["/a"] and not scan.warnings


# --------------------------------------------------------------------------- 7. messages


def test_short_non_tar_blob_says_not_a_tar() -> None:
    from imgscope.errors import ImgscopeError

    with pytest.raises(ImgscopeError, match="not a tar archive"):
        scan_layer(io.BytesIO(b"hello, I am not a tar\n"), "short")


def test_index_json_directory_says_so(tmp_path: Path) -> None:
    (tmp_path / "index.json").mkdir()
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    result = CliRunner().invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code == 2
    assert "index.json is a directory" in result.output


def test_unknown_media_type_with_missing_blob_names_it(tmp_path: Path) -> None:
    ib.write_oci_layout(tmp_path, ib.ImageSpec(steps=(ib.run("x", ib.file("a", "a")),)))
    index = json.loads((tmp_path / "index.json").read_text())
    missing = "sha256:" + "ab" * 32
    index["manifests"] = [{"mediaType": "application/x-unknown", "digest": missing, "size": 10}]
    (tmp_path / "index.json").write_text(json.dumps(index))
    result = CliRunner().invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code == 2
    assert missing in result.output


# --------------------------------------------------------------------------- 8. cache version


def test_cache_version_follows_scan_shape() -> None:
    """A change to LayerScan's or Entry's fields must come with a SCANNER_VERSION bump.

    When this fails: bump ``cache.SCANNER_VERSION`` and add the new shape below.
    """
    from dataclasses import fields

    from imgscope import cache
    from imgscope.model import Entry, LayerScan

    shape = ";".join(f"{f.name}:{f.type}" for cls in (LayerScan, Entry) for f in fields(cls))
    digest = hashlib.sha256(shape.encode()).hexdigest()[:16]
    known = {2: "208f1bd1a8ec6d5d", 3: "1b6a92739adc2dd4", 4: "1b6a92739adc2dd4", 5: "316d42110b08497f"}
    assert cache.SCANNER_VERSION in known, f"no shape recorded for SCANNER_VERSION {cache.SCANNER_VERSION}"
    assert known[cache.SCANNER_VERSION] == digest, f"scan shape {digest} changed: bump cache.SCANNER_VERSION"


# --------------------------------------------------------------------------- 6. choosing an image


def _two_image_layout(
    path: Path, tag_a: str = "a", tag_b: str = "b", arch_a: str = "amd64", arch_b: str = "amd64"
) -> tuple[str, str]:
    """One OCI layout holding two different images; their manifest digests."""
    spec_a = ib.ImageSpec(steps=(ib.run("a", ib.file("a", "a")),), architecture=arch_a)
    spec_b = ib.ImageSpec(steps=(ib.run("b", ib.file("b", "bb")),), architecture=arch_b)
    ib.write_oci_layout(path / "one", spec_a, tag=tag_a)
    ib.write_oci_layout(path, spec_b, tag=tag_b)
    for blob in (path / "one" / "blobs" / "sha256").iterdir():
        shutil.copy(blob, path / "blobs" / "sha256" / blob.name)
    first = json.loads((path / "one" / "index.json").read_text())["manifests"]
    index = json.loads((path / "index.json").read_text())
    shutil.rmtree(path / "one")
    index["manifests"] = first + index["manifests"]
    (path / "index.json").write_text(json.dumps(index))
    return first[0]["digest"], index["manifests"][1]["digest"]


def test_layout_with_two_images_is_not_read_silently(tmp_path: Path) -> None:
    digest_a, digest_b = _two_image_layout(tmp_path)
    result = CliRunner().invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert "2 images" in lines[0] and "--image" in lines[0]
    assert "a (linux/amd64" in lines[0] and "b (linux/amd64" in lines[0]
    assert digest_a[:19] in lines[0] and digest_b[:19] in lines[0]


def test_image_by_digest_prefix(tmp_path: Path) -> None:
    _digest_a, digest_b = _two_image_layout(tmp_path)
    chosen = _load(tmp_path, image=digest_b[:19])
    assert chosen.image.manifest_digest == digest_b
    assert sorted(chosen.final) == ["/b"]


def test_platform_picks_among_single_platform_images(tmp_path: Path) -> None:
    """Two single-platform images under different tags: --platform chooses, as for a docker archive."""
    _digest_a, digest_b = _two_image_layout(tmp_path, arch_a="amd64", arch_b="arm64")
    chosen = _load(tmp_path, platform="linux/arm64")
    assert chosen.image.manifest_digest == digest_b
    assert sorted(chosen.final) == ["/b"]
    result = CliRunner().invoke(app, ["inspect", str(tmp_path), "--platform", "linux/s390x"])
    assert result.exit_code == 2
    assert "no image for linux/s390x" in result.output


def test_same_tag_on_two_images_is_ambiguous(tmp_path: Path) -> None:
    _two_image_layout(tmp_path, "same", "same")
    result = CliRunner().invoke(app, ["inspect", str(tmp_path), "--image", "same"])
    assert result.exit_code == 2
    assert "2 images tagged 'same'" in result.output


def test_same_tag_on_two_images_in_a_docker_archive(tmp_path: Path) -> None:
    """Two manifest.json entries with one tag: ambiguous, and --image sha256: picks by image ID."""
    spec_a = ib.ImageSpec(steps=(ib.run("a", ib.file("a", "a")),))
    spec_b = ib.ImageSpec(steps=(ib.run("b", ib.file("b", "bb")),))
    ib.write_docker_archive(tmp_path / "a.tar", spec_a, tag="x:1")
    built_b = ib.write_docker_archive(tmp_path / "b.tar", spec_b, tag="x:1")
    merged = tmp_path / "both.tar"
    manifests = []
    with tarfile.open(merged, "w") as out:
        for part in ("a.tar", "b.tar"):
            with tarfile.open(tmp_path / part) as src:
                for member in src.getmembers():
                    if member.name == "manifest.json":
                        manifests += json.loads(src.extractfile(member).read())  # type: ignore[union-attr]
                        continue
                    out.addfile(member, src.extractfile(member) if member.isfile() else None)
        data = json.dumps(manifests).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        out.addfile(info, io.BytesIO(data))
    result = CliRunner().invoke(app, ["inspect", str(merged), "--image", "x:1"])
    assert result.exit_code == 2 and "2 images tagged 'x:1'" in result.output
    chosen = _load(merged, image=built_b.image_id[:20])
    assert chosen.image.image_id == built_b.image_id


@pytest.mark.parametrize(
    ("wanted", "named", "other"),
    [
        ("linux/amd64", "cd", "arm64"),
        # A variant left out of --platform matches any: the blob of linux/arm/v7 is the one meant.
        ("linux/arm", "ef", "arm64"),
    ],
)
def test_platform_with_missing_blobs_names_that_platform(tmp_path: Path, wanted: str, named: str, other: str) -> None:
    """An index of platforms whose manifests were not pulled: --platform names the one asked for."""
    ib.write_oci_layout(tmp_path, ib.ImageSpec(steps=(ib.run("a", ib.file("a", "a")),)))
    index = json.loads((tmp_path / "index.json").read_text())
    plats = [("arm64", "", "ab"), ("amd64", "", "cd"), ("arm", "v7", "ef")]
    child = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": "sha256:" + hexa * 32,
                "size": 100,
                "platform": {"os": "linux", "architecture": arch, **({"variant": variant} if variant else {})},
            }
            for arch, variant, hexa in plats
        ],
    }
    data = ib.jdump(child)
    (tmp_path / "blobs" / "sha256" / ib.sha256(data).removeprefix("sha256:")).write_bytes(data)
    index["manifests"] = [
        {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": ib.sha256(data), "size": len(data)}
    ]
    (tmp_path / "index.json").write_text(json.dumps(index))
    result = CliRunner().invoke(app, ["inspect", str(tmp_path), "--platform", wanted])
    assert result.exit_code == 2
    assert wanted in result.output and "sha256:" + named * 32 in result.output
    assert other not in result.output


def test_artifacts_give_one_summary_warning(tmp_path: Path) -> None:
    """An image with 18 attached artifacts (cosign-style signatures, SBOMs): one warning, not 18."""
    ib.write_oci_layout(tmp_path, ib.ImageSpec(steps=(ib.run("a", ib.file("a", "a")),)), tag="app")
    index = json.loads((tmp_path / "index.json").read_text())
    for i in range(18):
        payload = ib.jdump({"n": i})
        config = b"{}"
        layer_type = "application/vnd.dev.cosign.simplesigning.v1+json" if i % 2 else "text/spdx+json"
        manifest = ib.jdump(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": ib.sha256(config),
                    "size": 2,
                },
                "layers": [{"mediaType": layer_type, "digest": ib.sha256(payload), "size": len(payload)}],
            }
        )
        for blob in (payload, config, manifest):
            (tmp_path / "blobs" / "sha256" / ib.sha256(blob).removeprefix("sha256:")).write_bytes(blob)
        index["manifests"].append(
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": ib.sha256(manifest),
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": f"sha256-{i:064x}.sig"},
            }
        )
    (tmp_path / "index.json").write_text(json.dumps(index))
    image = reference.load(str(tmp_path), LoadOptions(use_cache=False))
    assert image.tags == ("app",)
    notes = [w for w in image.warnings if "artifact" in w]
    assert notes == ["18 artifacts (signatures, SBOMs...) skipped: not images"]


# --------------------------------------------------------------------------- 5. DiffIDs


def _flipped_archive(tmp_path: Path) -> tuple[Path, str]:
    """A docker-save archive whose one layer has a flipped content byte: the config's DiffID no longer matches."""
    spec = ib.ImageSpec(steps=(ib.run("w", ib.file("etc/motd", b"hello world\n" * 10)),))
    good = tmp_path / "good.tar"
    built = ib.write_docker_archive(good, spec)
    layer = built.layers[0]
    at = layer.index(b"hello world")
    flipped = layer[:at] + b"j" + layer[at + 1 :]
    bad = tmp_path / "bad.tar"
    with tarfile.open(good) as src, tarfile.open(bad, "w") as out:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name.endswith("layer.tar"):
                data = flipped
            out.addfile(member, io.BytesIO(data) if data is not None else None)
    return bad, built.diff_ids[0]


def test_audit_always_checks_diff_ids(tmp_path: Path) -> None:
    bad, expected = _flipped_archive(tmp_path)
    for extra in ([], ["--no-cache"]):
        result = CliRunner().invoke(app, ["audit", str(bad), "--json", *extra])
        report = json.loads(result.output)
        jsonschema.validate(report, load_schema("audit"))
        assert any("DiffID" in w and expected in w for w in report["warnings"]), extra
        assert report["image"]["diff_ids_verified"] is False


def test_ci_always_checks_diff_ids_even_with_a_warm_cache(tmp_path: Path) -> None:
    bad, expected = _flipped_archive(tmp_path)
    good = tmp_path / "good.tar"
    # Warm the cache with the good layer: its DiffID is the one the bad archive's config names.
    assert CliRunner().invoke(app, ["inspect", str(good), "--json"]).exit_code == 0
    result = CliRunner().invoke(app, ["ci", str(bad), "--json"])
    report = json.loads(result.output)
    jsonschema.validate(report, load_schema("ci"))
    assert any("DiffID" in w and expected in w for w in report["image"]["warnings"])
    assert report["image"]["diff_ids_verified"] is False
    clean = json.loads(CliRunner().invoke(app, ["ci", str(good), "--json"]).output)
    assert clean["image"]["diff_ids_verified"] is True and clean["image"]["warnings"] == []


def test_inspect_says_whether_diff_ids_were_verified(tmp_path: Path) -> None:
    _bad, _expected = _flipped_archive(tmp_path)
    good = str(tmp_path / "good.tar")

    def verified(*args: str) -> bool:
        result = CliRunner().invoke(app, ["inspect", good, "--json", *args])
        assert result.exit_code == 0, result.output
        return bool(json.loads(result.output)["image"]["diff_ids_verified"])

    assert verified("--no-cache") is False  # the config's DiffIDs were taken on trust
    assert verified() is True  # cold cache: every layer hashed
    assert verified() is False  # warm cache: these bytes were not read
    assert verified("--verify") is True


def test_warm_daemon_path_never_aligns_history_by_a_guess() -> None:
    """The history API's step sizes must equal the cached layers' sizes, else the image is read."""
    from imgscope.sources import daemon

    created = ["/bin/sh -c #(nop) COPY file:abc in / ", '/bin/sh -c #(nop)  CMD ["sh"]']
    assert daemon.align_history([100, 0], created, [100]) == [False, True]
    assert daemon.align_history([100, 0], created, [90]) is None
