"""Property-based fuzzing of the tar, manifest and index parsers (bounded, for CI).

The property is the issue's: whatever the bytes, reading an image ends in an
:class:`~imgscope.model.Image` (which then stacks) or in an
:class:`~imgscope.errors.ImgscopeError`, never another exception.  Where a
read succeeds, it is checked against what the bytes say independently of
imgscope: the DiffID is the SHA-256 of the layer bytes, every path is
absolute, normalised and inside the root.

Inputs are mutations of real images (``sample_images/``) and of the
synthetic images of :mod:`tests.corpus`: flipped and cut bytes, header
fields overwritten with the checksum fixed up (so the mutation reaches the
code behind the checksum test), random JSON in place of ``manifest.json``,
``index.json`` and manifests.  The example counts are small so the suite
stays quick; ``scripts/fuzz_atheris.py`` runs the same targets for hours.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imgscope import stack
from imgscope.errors import ImgscopeError
from imgscope.model import Image
from imgscope.reference import load
from imgscope.scan import scan_layer
from imgscope.schemas import load_schema
from imgscope.sources.common import LoadOptions, parse_config
from tests import corpus

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_images"
# CI: 60 examples per property, the same ones every run.  IMGSCOPE_FUZZ_EXAMPLES=5000 explores
# (random, different each run) for a maintainer who wants to look harder.
_EXAMPLES = int(os.environ.get("IMGSCOPE_FUZZ_EXAMPLES", "0") or 0)
FUZZ = settings(
    max_examples=_EXAMPLES or 60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=not _EXAMPLES,
    database=None,  # write nothing into the checkout
)
OPTIONS = LoadOptions(use_cache=False)
INSPECT_SCHEMA = load_schema("inspect")


# --------------------------------------------------------------------------- inputs


def _layers_of(archive: Path) -> list[bytes]:
    import tarfile

    with tarfile.open(archive) as tf:
        out = []
        for member in tf:
            if member.name.endswith("layer.tar") and member.isfile():
                fh = tf.extractfile(member)
                assert fh is not None
                out.append(fh.read())
        return out


def _seed_layers() -> list[bytes]:
    seeds = [*corpus.good_layers()]
    legacy = SAMPLES / "demo-legacy.tar"
    if legacy.exists():
        seeds += _layers_of(legacy)
    seeds.append(
        corpus.layer(
            corpus.pax({b"path": b"a/" * 60 + b"long", b"SCHILY.xattr.user.k": b"v"}),
            corpus.member("x", b"pax"),
            corpus.gnu_longname(b"g" * 300),
            corpus.member("y", b"gnu"),
            corpus.header("h", typeflag=b"1", linkname="y"),
            corpus.header("s", typeflag=b"2", linkname="../../etc"),
            corpus.member("d/.wh.gone", b""),
            corpus.member("d/.wh..wh..opq", b""),
            corpus.header("c", typeflag=b"3", devmajor=0, devminor=0),
        )
    )
    return seeds


SEED_LAYERS = _seed_layers()


def headers_of(data: bytes) -> list[int]:
    """Offsets of the tar headers of a well-formed layer (walked with the sizes they state)."""
    offsets, pos = [], 0
    while pos + corpus.BLOCK <= len(data):
        block = data[pos : pos + corpus.BLOCK]
        if not block.strip(b"\x00"):
            break
        offsets.append(pos)
        try:
            size = int(block[124:136].split(b"\x00")[0].strip() or b"0", 8)
        except ValueError:
            break
        pos += corpus.BLOCK + -(-size // corpus.BLOCK) * corpus.BLOCK
    return offsets


FIELDS = {"name": (0, 100), "mode": (100, 8), "size": (124, 12), "typeflag": (156, 1), "link": (157, 100)}
FIELDS |= {"magic": (257, 8), "prefix": (345, 155), "uid": (108, 8), "mtime": (136, 12), "dev": (329, 16)}


def fix_checksum(block: bytearray) -> None:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)


@st.composite
def mutated_layer(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEED_LAYERS)))
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["field", "field", "flip", "cut", "insert", "delete"]))
        offsets = headers_of(bytes(data))
        if how == "field" and offsets:
            at = draw(st.sampled_from(offsets))
            start, width = FIELDS[draw(st.sampled_from(sorted(FIELDS)))]
            value = draw(
                st.one_of(
                    st.binary(min_size=width, max_size=width),
                    st.sampled_from([b"../../", b"/", b".wh.", b"\x00", b"7777777", b"\x80" + b"\xff" * 11, b"x"]),
                    st.integers(0, 8**11 - 1).map(lambda n: b"%011o\x00" % n),
                )
            )
            value = (
                value[:width].ljust(width, b"\x00") if len(value) != 1 or width == 1 else value.ljust(width, b"\x00")
            )
            block = bytearray(data[at : at + corpus.BLOCK])
            block[start : start + width] = value[:width]
            fix_checksum(block)
            data[at : at + corpus.BLOCK] = block
        elif how == "flip" and data:
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= draw(st.integers(1, 255))
        elif how == "cut":
            del data[draw(st.integers(0, len(data))) :]
        elif how == "insert":
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(min_size=1, max_size=600))
        elif how == "delete" and data:
            at = draw(st.integers(0, len(data) - 1))
            del data[at : at + draw(st.integers(1, 600))]
    wrap = draw(st.sampled_from(["plain", "plain", "gzip", "zstd"]))
    if wrap == "gzip":
        return corpus.gz(bytes(data))
    if wrap == "zstd":
        return corpus.zst(bytes(data))
    return bytes(data)


def check_scan_paths(paths: list[str]) -> None:
    for path in paths:
        assert path.startswith("/"), path
        assert "\x00" not in path
        assert posixpath.normpath(path) == path or path == "/", path
        assert ".." not in path.split("/"), path


# --------------------------------------------------------------------------- the layer scanner


@FUZZ
@given(mutated_layer())
def test_scanner_on_mutated_layers(data: bytes) -> None:
    try:
        scan = scan_layer(io.BytesIO(data), "fuzzed layer")
    except ImgscopeError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("fuzzed layer")
        return
    if not data.startswith((b"\x1f\x8b", b"\x28\xb5\x2f\xfd")):
        assert scan.diff_id == corpus.sha256(data)
        assert scan.tar_bytes == len(data)
    check_scan_paths([e.path for e in scan.entries])
    check_scan_paths(list(scan.whiteouts) + list(scan.opaques))
    assert len({e.path for e in scan.entries}) == len(scan.entries)


@FUZZ
@given(st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=6), st.booleans())
def test_scanner_never_lets_a_name_escape(names: list[bytes], use_pax: bool) -> None:
    """Arbitrary name bytes, as a header field or a PAX path: kept inside the root or refused."""
    parts = []
    for i, name in enumerate(names):
        if use_pax:
            parts.append(corpus.pax({b"path": name}))
            parts.append(corpus.member(f"placeholder{i}", b"%d" % i))
        else:
            parts.append(corpus.member(name[:100], b"%d" % i))
            parts.append(corpus.header(b"link%d" % i, typeflag=b"1", linkname=name[:100]))
    data = corpus.layer(*parts)
    scan = scan_layer(io.BytesIO(data), "names")
    assert scan.diff_id == corpus.sha256(data)
    check_scan_paths([e.path for e in scan.entries] + [e.link for e in scan.entries if e.type == "hardlink"])
    check_scan_paths(list(scan.whiteouts) + list(scan.opaques))


# --------------------------------------------------------------------------- whole images


def load_or_error(ref: str, options: LoadOptions = OPTIONS) -> None:
    """The property: an Image that stacks and renders, or one ImgscopeError line."""
    try:
        image = load(ref, options)
    except ImgscopeError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    check_image(image)


def check_image(image: Image) -> None:
    """A loaded image stacks, and every view of it renders (the JSON one valid against its schema)."""
    from rich.console import Console

    from imgscope.render import console as view
    from imgscope.render.json_report import inspect_report

    stacked = stack.build(image)
    assert len(stacked.layers) == len(image.scans) == len(image.config.diff_ids)
    check_scan_paths(list(stacked.final))
    report = inspect_report(stacked, top=5)
    jsonschema.validate(json.loads(json.dumps(report)), INSPECT_SCHEMA)
    out = Console(file=io.StringIO(), width=100)
    out.print(view.summary(image))
    out.print(view.steps_table(stacked))
    for index in range(len(stacked.layers)):
        out.print(view.changes_table(stacked, index))
    out.print(view.tree_view(stacked.final))
    out.print(view.top_table(stacked.final.values(), 5))
    warnings = view.warnings_text([*image.warnings, *stacked.warnings])
    if warnings is not None:
        out.print(warnings)


@contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="imgscope-fuzz-") as d:
        yield Path(d)


ARCHIVES = [p for p in ("demo-legacy.tar", "demo-v25.tar", "kaniko-demo.tar", "demo-oci.tar") if (SAMPLES / p).exists()]


@pytest.mark.skipif(not ARCHIVES, reason="sample images not built")
@FUZZ
@given(
    st.sampled_from(ARCHIVES or ["none"]),
    st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), min_size=1, max_size=4),
    st.one_of(st.none(), st.floats(0, 1)),
    st.sampled_from(["plain", "plain", "gzip"]),
)
def test_archives_with_flipped_and_cut_bytes(
    name: str, flips: list[tuple[float, int]], cut: float | None, wrap: str
) -> None:
    data = bytearray((SAMPLES / name).read_bytes())
    for where, mask in flips:
        data[int(where * (len(data) - 1))] ^= mask
    if cut is not None:
        del data[int(cut * len(data)) :]
    blob = corpus.gz(bytes(data), level=1) if wrap == "gzip" else bytes(data)
    with scratch() as d:
        path = d / ("image.tar.gz" if wrap == "gzip" else "image.tar")
        path.write_bytes(blob)
        load_or_error(str(path))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def manifest_json(draw: st.DrawFn, config_name: str, layer_names: list[str]) -> Any:
    """Plausible docker-save manifests with some fields replaced by anything at all."""
    if draw(st.integers(0, 5)) == 0:
        return draw(JSON)
    names = st.sampled_from([*layer_names, "missing/layer.tar", "../../etc/passwd", "", config_name])
    entries = []
    for _ in range(draw(st.integers(0, 3))):
        entry: dict[str, Any] = {
            "Config": draw(st.one_of(st.just(config_name), st.sampled_from(["nope.json", ""]), JSON)),
            "Layers": draw(st.one_of(st.just(layer_names), st.lists(names, max_size=4), JSON)),
        }
        if draw(st.booleans()):
            entry["RepoTags"] = draw(st.one_of(st.just(["corpus/image:latest"]), st.lists(st.text(max_size=8)), JSON))
        if draw(st.booleans()):
            entry["LayerSources"] = draw(JSON)
        for key in draw(st.lists(st.sampled_from(sorted(entry)), max_size=2, unique=True)):
            del entry[key]
        entries.append(entry)
    return entries


@FUZZ
@given(st.data())
def test_docker_save_manifests(data: st.DataObject) -> None:
    layers = corpus.good_layers()
    config = corpus.config_for(layers)
    names = ["0/layer.tar", "1/layer.tar"]
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = data.draw(manifest_json(config_name, names))
    tag = data.draw(st.one_of(st.none(), st.sampled_from(["latest", "corpus/image:latest", "nope"])))
    platform = data.draw(st.one_of(st.none(), st.sampled_from(["linux/amd64", "linux/arm64", "windows/amd64"])))
    raw = json.dumps(manifest).encode()
    with scratch() as d:
        path = d / "image.tar"
        corpus.docker_archive(path, layers, config=config, manifest=raw, layer_names=names)
        ref = str(path) + (f":{tag}" if tag else "")
        load_or_error(ref, LoadOptions(use_cache=False, platform=platform))


@st.composite
def descriptor(draw: st.DrawFn, digests: list[str]) -> Any:
    if draw(st.integers(0, 6)) == 0:
        return draw(JSON)
    desc: dict[str, Any] = {
        "mediaType": draw(
            st.sampled_from(
                [
                    corpus.OCI_MANIFEST,
                    corpus.OCI_INDEX,
                    "application/vnd.docker.distribution.manifest.v2+json",
                    "application/octet-stream",
                ]
            )
            | JSON
        ),
        "digest": draw(
            st.sampled_from(digests) | st.sampled_from(["sha256:" + "0" * 64, "sha256:../../x", "nodigest"]) | JSON
        ),
        "size": draw(st.integers(-1, 10**6) | JSON),
    }
    if draw(st.booleans()):
        desc["platform"] = draw(
            st.fixed_dictionaries(
                {"os": st.sampled_from(["linux", "unknown", ""]) | JSON, "architecture": st.text(max_size=8) | JSON}
            )
        )
    if draw(st.booleans()):
        desc["annotations"] = draw(
            st.dictionaries(st.sampled_from(["org.opencontainers.image.ref.name", "vnd.docker.reference.type"]), JSON)
        )
    for key in draw(st.lists(st.sampled_from(sorted(desc)), max_size=2, unique=True)):
        del desc[key]
    return desc


@pytest.fixture(scope="module")
def layout_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("fuzz-layout")
    layers = corpus.good_layers()
    digests = corpus.oci_layout(
        root, [(corpus.gz(layers[0]), corpus.OCI_GZIP), (layers[1], corpus.OCI_TAR)], config=corpus.config_for(layers)
    )
    return root, digests


@FUZZ
@given(st.data())
def test_oci_indexes_and_manifests(layout_template: tuple[Path, dict[str, str]], data: st.DataObject) -> None:
    template, digests = layout_template
    known = sorted(digests.values())
    with scratch() as d:
        root = d / "layout"
        shutil.copytree(template, root)
        # A new index.json, and sometimes a manifest or a nested index written as a blob.
        index: Any = {"schemaVersion": 2, "manifests": data.draw(st.lists(descriptor(known), max_size=4))}
        if data.draw(st.integers(0, 4)) == 0:
            index = data.draw(JSON)
        if data.draw(st.booleans()):
            blob = {
                "schemaVersion": 2,
                "mediaType": data.draw(st.sampled_from([corpus.OCI_MANIFEST, corpus.OCI_INDEX])),
                "config": data.draw(descriptor(known)),
                "layers": data.draw(st.lists(descriptor(known), max_size=3) | JSON),
                "manifests": data.draw(st.lists(descriptor(known), max_size=3) | JSON),
            }
            raw = json.dumps(blob).encode()
            digest = corpus.sha256(raw)
            (root / "blobs" / "sha256" / digest.removeprefix("sha256:")).write_bytes(raw)
            if isinstance(index, dict) and isinstance(index.get("manifests"), list):
                index["manifests"].append({"mediaType": blob["mediaType"], "digest": digest, "size": len(raw)})
        (root / "index.json").write_text(json.dumps(index))
        platform = data.draw(st.one_of(st.none(), st.sampled_from(["linux/amd64", "linux/arm64/v8", "x/y"])))
        tag = data.draw(st.one_of(st.none(), st.just("latest")))
        ref = f"oci:{root}" + (f":{tag}" if tag else "")
        load_or_error(ref, LoadOptions(use_cache=False, platform=platform))


@FUZZ
@given(JSON)
def test_config_parser(value: Any) -> None:
    raw = json.dumps(value).encode()
    try:
        config = parse_config(raw, "fuzzed config")
    except ImgscopeError:
        return
    assert isinstance(config.diff_ids, tuple)


@FUZZ
@given(
    st.fixed_dictionaries(
        {
            "config": st.dictionaries(
                st.sampled_from(
                    ["Env", "Cmd", "Entrypoint", "Labels", "ExposedPorts", "Volumes", "Healthcheck", "User"]
                ),
                JSON,
            ),
            "history": JSON,
            "rootfs": st.fixed_dictionaries({"diff_ids": st.just([])}),
            "architecture": JSON,
            "os": JSON,
        }
    )
)
def test_config_fields_of_any_shape(value: dict[str, Any]) -> None:
    """A config that has DiffIDs but odd field types: parsed, and the image still stacks and renders."""
    try:
        config = parse_config(json.dumps(value).encode(), "fuzzed config")
    except ImgscopeError:
        return
    check_image(Image("fuzz", "test", "sha256:" + "0" * 64, config, (), ()))
