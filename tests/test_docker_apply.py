"""Layers read as Docker applies them (issue 19): hostile tars built byte by byte, Docker as the oracle.

Each case is a layer tar written here with exact bytes (``tests.corpus``),
put in a ``docker save`` archive and checked three ways:

- imgscope's final tree (``reference.load`` + ``stack.build``) holds what
  Docker 20.10 puts in a container: the daemon tests ``docker load`` the
  archive, ``docker create`` a container and read ``docker export`` back
  (skipped without an engine, required when ``IMGSCOPE_REQUIRE_DOCKER=1``);
- without a daemon the same expectation is asserted from the rule Docker
  follows, cited per case (moby ``pkg/archive/diff.go`` ``UnpackLayer``,
  ``pkg/chrootarchive``, Go's ``archive/tar`` ``Reader.Next``);
- ``audit`` and ``ci --forbid-path`` see the private key Docker ships.

A hypothesis property then compares imgscope's final tree with a reference
applier written here from those rules, over random stacks of layers.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import posixpath
import random
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import xxhash
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from imgscope import stack as stacking
from imgscope.cli import app
from imgscope.errors import ImgscopeError
from imgscope.model import DIR, FILE, SYMLINK, Image
from imgscope.reference import load
from imgscope.sources.common import LoadOptions
from tests import corpus
from tests.corpus import END, header, layer, member, pad, pax

TAG = "imgscope-test19"


def fake_pem(seed: int = 1) -> bytes:
    body = base64.b64encode(random.Random(seed).randbytes(600)).decode()
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN RSA PRIVATE KEY-----\n{lines}\n-----END RSA PRIVATE KEY-----\n".encode()


KEY = fake_pem()
BENIGN = b"nothing to see\n"


def global_pax(records: dict[bytes, bytes]) -> bytes:
    """A PAX global header ('g'): Docker ignores it (createTarFile: TypeXGlobalHeader)."""
    return _retype(pax(records), b"g")


def _retype(block_and_data: bytes, typeflag: bytes) -> bytes:
    """Change the type of the first header of ``block_and_data`` and fix its checksum."""
    block = bytearray(block_and_data[:512])
    block[156:157] = typeflag
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block) + block_and_data[512:]


def signed_checksum(block: bytes) -> bytes:
    """``block`` with its checksum written as the signed-char sum (old tars; Go accepts it)."""
    raw = bytearray(block)
    raw[148:156] = b" " * 8
    total = sum(b - 256 if b >= 128 else b for b in raw)
    raw[148:156] = b"%06o\x00 " % total
    return bytes(raw)


@dataclass(frozen=True)
class ApplyCase:
    """Layers, what Docker's container holds (file path -> content, or None for 'Docker refuses')."""

    name: str
    layers: tuple[bytes, ...]
    files: dict[str, bytes] | None
    absent: tuple[str, ...] = ()
    rule: str = ""


CASES = [
    ApplyCase(
        # UnpackLayer joins filepath.Clean(name) to "/" inside a chroot: ".." stops at the root.
        "dotdot",
        (layer(member("../../root/.ssh/id_rsa", KEY), member("ok.txt", BENIGN)),),
        {"/root/.ssh/id_rsa": KEY, "/ok.txt": BENIGN},
        rule="Go archive/tar + chrootarchive: filepath.Join('/', Clean(name))",
    ),
    ApplyCase(
        # Go's Reader.Next: isHeaderOnlyType (dir, symlink, link, char, block, fifo) reads no data.
        "dir-with-size",
        (layer(header("d/", typeflag=b"5", size=1024, mode=0o755), member("root/.ssh/id_rsa", KEY)),),
        {"/root/.ssh/id_rsa": KEY},
        rule="archive/tar isHeaderOnlyType",
    ),
    ApplyCase(
        "symlink-with-size",
        (layer(header("l", typeflag=b"2", size=600, linkname="x"), member("root/.ssh/id_rsa", KEY)),),
        {"/root/.ssh/id_rsa": KEY},
        rule="archive/tar isHeaderOnlyType",
    ),
    ApplyCase(
        "fifo-with-size",
        (layer(header("p", typeflag=b"6", size=512), member("root/.ssh/id_rsa", KEY)),),
        {"/root/.ssh/id_rsa": KEY},
        rule="archive/tar isHeaderOnlyType",
    ),
    ApplyCase(
        # A 'g' header is returned as an entry of its own, which createTarFile ignores.
        "global-pax",
        (layer(global_pax({b"path": b"harmless.txt"}), member("root/.ssh/id_rsa", KEY), member("b", BENIGN)),),
        {"/root/.ssh/id_rsa": KEY, "/b": BENIGN},
        absent=("/harmless.txt",),
        rule="createTarFile: TypeXGlobalHeader ignored",
    ),
    ApplyCase(
        # Reader.Next returns io.EOF at two zero blocks: a whiteout behind them is never applied.
        "after-end-marker",
        (
            layer(member("root/.ssh/id_rsa", KEY)),
            layer(member("x", BENIGN)) + header("root/.ssh/.wh.id_rsa") + END,
        ),
        {"/root/.ssh/id_rsa": KEY, "/x": BENIGN},
        rule="archive/tar: end of archive at two zero blocks",
    ),
    ApplyCase(
        # UnpackLayer RemoveAll()s an existing path before writing: the last copy wins.  (docker load
        # refuses a name repeated after filepath.Clean, tar-split's ErrDuplicatePath; a leading "/"
        # is not cleaned away, so "/app/key.pem" loads after "app/key.pem".)
        "duplicate",
        (layer(member("app/key.pem", KEY), member("/app/key.pem", BENIGN)),),
        {"/app/key.pem": BENIGN},
        rule="UnpackLayer: RemoveAll then create",
    ),
    ApplyCase(
        # ...and a file replacing a directory removes what the layer had put below it.
        "file-replaces-dir-in-layer",
        (
            # No "d/" header: tar-split would call "d/" and "d" one name repeated.
            layer(member("d/id_rsa", KEY), member("d", BENIGN)),
        ),
        {"/d": BENIGN},
        absent=("/d/id_rsa",),
        rule="UnpackLayer: RemoveAll unless both are directories",
    ),
    ApplyCase(
        # Go's getFormat accepts the unsigned or the signed sum (computeChecksum).
        "signed-checksum",
        (layer(signed_checksum(header("caf\xe9.txt".encode("latin-1"), size=len(BENIGN))) + pad(BENIGN)),),
        {"/caf\udce9.txt": BENIGN},
        rule="archive/tar computeChecksum: signed sum",
    ),
    ApplyCase(
        # mergePAX: size, uid, gid and times must parse as Go parses them, or ErrHeader.
        "pax-negative-size",
        (layer(pax({b"size": b"-1536"}), member("a", BENIGN)),),
        None,
        rule="archive/tar mergePAX: ErrHeader",
    ),
    ApplyCase(
        "pax-huge-mtime",
        (layer(pax({b"mtime": b"1e400"}), member("a", BENIGN)),),
        None,
        rule="archive/tar parsePAXTime: ErrHeader",
    ),
    ApplyCase(
        # overlay2 unpacks a layer into its own directory: the whiteout becomes a 0/0 device at a,
        # which the directory written next RemoveAlls; the plain directory left merges with the
        # lower one, so a/a shows again.  (A file, then a directory, at a in one layer would be
        # two entries of one path, which Docker's tar-split refuses: "duplicates of file paths".)
        "whiteout-undone-in-its-layer",
        (
            layer(member("a/a", BENIGN)),
            layer(member(".wh.a"), header("a/", typeflag=b"5", mode=0o755)),
        ),
        {"/a/a": BENIGN},
        rule="pkg/archive UnpackLayer: RemoveAll before a write",
    ),
]
BY_NAME = {c.name: c for c in CASES}


def write_image(root: Path, case: ApplyCase) -> Path:
    path = root / f"{case.name}.tar"
    layers = list(case.layers)
    config = corpus.config_for(layers)
    names = [f"{i:02d}/layer.tar" for i in range(len(layers))]
    manifest = [
        {
            "Config": hashlib.sha256(config).hexdigest() + ".json",
            "RepoTags": [f"{TAG}/{case.name}:latest"],
            "Layers": names,
        }
    ]
    corpus.docker_archive(path, layers, config=config, manifest=manifest, layer_names=names)
    return path


def imgscope_tree(path: Path) -> dict[str, tuple[str, str]]:
    """Final tree as imgscope reads it: path -> (type, xxh3 digest or link target)."""
    image = load(str(path), corpus_options())
    final = stacking.build(image).final
    out: dict[str, tuple[str, str]] = {}
    for p, found in final.items():
        e = found.entry
        kind = e.type if e.type in (FILE, SYMLINK, DIR) else "other"
        out[p] = (kind, e.digest if e.type == FILE else e.link)
    return out


def corpus_options() -> LoadOptions:
    return LoadOptions(use_cache=False)


def expected_files(files: dict[str, bytes]) -> dict[str, tuple[str, str]]:
    return {p: (FILE, xxhash.xxh3_64_hexdigest(data)) for p, data in files.items()}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_imgscope_reads_what_docker_applies(tmp_path: Path, case: ApplyCase) -> None:
    path = write_image(tmp_path, case)
    if case.files is None:
        with pytest.raises(ImgscopeError) as info:
            imgscope_tree(path)
        assert "PAX" in str(info.value) and "\n" not in str(info.value)
        return
    tree = imgscope_tree(path)
    files = {p: v for p, v in tree.items() if v[0] == FILE}
    assert files == expected_files(case.files)
    for gone in case.absent:
        assert gone not in tree


# --------------------------------------------------------------------------- Docker itself


_RUNTIME = ("/.dockerenv", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/etc/mtab")


def docker_export_tree(archive: Path, tag: str) -> dict[str, tuple[str, str]] | None:
    """What ``docker load`` + ``docker create`` + ``docker export`` give; None when Docker refuses the image."""
    loaded = subprocess.run(["docker", "load", "-i", str(archive)], capture_output=True, check=False)
    if loaded.returncode != 0:
        return None
    try:
        cid = subprocess.run(["docker", "create", tag], capture_output=True, check=True, text=True).stdout.strip()
        try:
            exported = subprocess.run(["docker", "export", cid], capture_output=True, check=True).stdout
        finally:
            subprocess.run(["docker", "rm", cid], capture_output=True, check=False)
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)
    out: dict[str, tuple[str, str]] = {}
    with tarfile.open(fileobj=io.BytesIO(exported), encoding="utf-8", errors="surrogateescape") as tar:
        for info in tar:
            p = posixpath.normpath("/" + info.name)
            if p in _RUNTIME or p.startswith(("/dev/", "/proc/", "/sys/")) or p in ("/dev", "/proc", "/sys"):
                continue
            if info.isreg():
                data = tar.extractfile(info).read()  # type: ignore[union-attr]
                out[p] = (FILE, xxhash.xxh3_64_hexdigest(data))
            elif info.issym():
                out[p] = (SYMLINK, info.linkname)
            elif info.isdir():
                out[p] = (DIR, "")
            else:
                out[p] = ("other", "")
    return out


@pytest.mark.daemon
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_docker_agrees(tmp_path: Path, case: ApplyCase, docker_client: object) -> None:
    """The expectation above is what Docker 20.10 really ships (or refuses)."""
    path = write_image(tmp_path, case)
    docker = docker_export_tree(path, f"{TAG}/{case.name}:latest")
    if case.files is None:
        assert docker is None, "Docker loaded a layer Go's archive/tar should refuse"
        return
    assert docker is not None, "docker load refused the image"
    assert {p: v for p, v in docker.items() if v[0] == FILE} == expected_files(case.files)
    ours = imgscope_tree(path)
    assert {p: v for p, v in ours.items() if v[0] != DIR} == {p: v for p, v in docker.items() if v[0] != DIR}
    # Every directory imgscope lists exists in the container (Docker adds parents it lacks).
    assert {p for p, v in ours.items() if v[0] == DIR} <= {p for p, v in docker.items() if v[0] == DIR}


# --------------------------------------------------------------------------- the gates


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    "name",
    ["dotdot", "dir-with-size", "symlink-with-size", "fifo-with-size", "global-pax", "after-end-marker"],
)
def test_audit_and_ci_see_the_key_docker_ships(tmp_path: Path, name: str) -> None:
    path = write_image(tmp_path, BY_NAME[name])
    code, out, _ = cli("audit", str(path), "--json")
    assert code == 1
    report = json.loads(out)
    keys = [f for f in report["findings"] if f["rule"] == "private-key"]
    assert [(f["path"], f["visible"]) for f in keys] == [("/root/.ssh/id_rsa", True)]
    assert KEY.decode()[40:80] not in out
    code, out, _ = cli("ci", str(path), "--forbid-path", "/root/.ssh/**", "--json")
    assert code == 1, out


def test_dotdot_is_an_audit_finding(tmp_path: Path) -> None:
    code, out, _ = cli("audit", str(write_image(tmp_path, BY_NAME["dotdot"])), "--json")
    assert code == 1
    climbs = [f for f in json.loads(out)["findings"] if f["rule"] == "path-climbs-root"]
    assert [(f["path"], f["severity"], f["visible"]) for f in climbs] == [("/root/.ssh/id_rsa", "high", True)]


@pytest.mark.parametrize(("name", "path"), [("duplicate", "/app/key.pem"), ("file-replaces-dir-in-layer", "/d/id_rsa")])
def test_replaced_copies_in_a_layer_are_audited(tmp_path: Path, name: str, path: str) -> None:
    """The container has the last copy; the blob still ships the earlier one: audit says so."""
    code, out, _ = cli("audit", str(write_image(tmp_path, BY_NAME[name])), "--json")
    assert code == 1
    keys = [f for f in json.loads(out)["findings"] if f["rule"] == "private-key"]
    assert [(f["path"], f["visible"], f["layers"]) for f in keys] == [(path, False, [0])]


@pytest.mark.parametrize("name", ["pax-negative-size", "pax-huge-mtime"])
def test_bad_pax_numbers_are_one_line_exit_2_not_a_hang(tmp_path: Path, name: str) -> None:
    """Once an endless loop (size=-1536) and an OverflowError traceback with exit 1 (mtime=1e400)."""
    path = write_image(tmp_path, BY_NAME[name])
    for command in ("inspect", "audit", "ci"):
        run = subprocess.run(
            [sys.executable, "-m", "imgscope", command, str(path), "--no-cache"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == 2, (command, run.stderr)
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and "bad PAX" in lines[0], run.stderr


# --------------------------------------------------------------------------- the property


class Refused(Exception):
    """Docker refuses the layer (or applies it somewhere this model does not follow): not compared."""


def clean(name: str) -> str:
    """Docker's path for a tar name: Go's filepath.Join("/", filepath.Clean(name)), written out by hand."""
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def under(path: str, root: str) -> bool:
    return path.startswith(root.rstrip("/") + "/")


@dataclass(frozen=True)
class Op:
    """One tar entry of the model: ``kind`` file, dir, symlink, whiteout or opaque."""

    kind: str
    name: str
    data: bytes = b""
    bogus_size: int = 0  # a header-only type claiming data it does not have
    global_path: str = ""  # a PAX global header before it, with this path=


def mkdir_all(diff: dict[str, tuple[str, str]], directory: str) -> None:
    """Go's MkdirAll of a parent in the layer's own directory."""
    chain = []
    while directory != "/":
        chain.append(directory)
        directory = posixpath.dirname(directory)
    for p in reversed(chain):
        found = diff.get(p)
        if found is not None and found[0] != DIR:
            raise Refused("a parent is not a directory (or a symlink Docker follows)")
        if found is None:
            diff[p] = (DIR, "")


def reference_apply(layers: list[list[Op]]) -> dict[str, tuple[str, str]]:
    """Apply layers as Docker 20.10 with overlay2 does; path -> (type, xxh3 or target), dirs included.

    Each layer is unpacked alone into its own directory (overlay2's ApplyDiff):
    ``RemoveAll`` before a write, ``MkdirAll`` of the parents, a whiteout made a
    0/0 character device (``mknod``, which fails on an existing path), an
    opaque marker a flag on its directory.  The container is then the overlay
    of those directories, base first: a whiteout hides the lower path, a
    non-directory hides everything lower at and below its path, an opaque
    directory hides what is lower below it, directories merge.
    """
    merged: dict[str, tuple[str, str]] = {}
    for ops in layers:
        diff: dict[str, tuple[str, str]] = {}  # path -> (type, value); type "whiteout" for 0/0 devices
        opaque: set[str] = set()

        for op in ops:
            path = clean(op.name)
            if op.kind == "opaque":
                mkdir_all(diff, path)
                opaque.add(path)
                continue
            if path == "/":
                continue
            mkdir_all(diff, posixpath.dirname(path))
            if op.kind == "whiteout":
                if path in diff:
                    raise Refused("mknod over a path this layer made")
                diff[path] = ("whiteout", "")
                continue
            found = diff.get(path)
            if found is not None and not (found[0] == DIR and op.kind == "dir"):
                for p in [p for p in diff if p == path or under(p, path)]:
                    del diff[p]
            if op.kind == "file":
                diff[path] = (FILE, xxhash.xxh3_64_hexdigest(op.data))
            elif op.kind == "symlink":
                diff[path] = (SYMLINK, op.data.decode())
            else:
                diff[path] = (DIR, "")
        for path in sorted(diff, key=lambda p: p.count("/")):  # parents before children
            kind, value = diff[path]
            lower = merged.get(path)
            if kind != DIR or (lower is not None and lower[0] != DIR) or path in opaque:
                for p in [p for p in merged if under(p, path)]:
                    del merged[p]
            if kind == "whiteout":
                merged.pop(path, None)
            else:
                merged[path] = (kind, value)
    return merged


def encode(ops: list[Op]) -> bytes:
    parts: list[bytes] = []
    for op in ops:
        if op.global_path:
            parts.append(global_pax({b"path": op.global_path.encode()}))
        if op.kind == "file":
            parts.append(member(op.name, op.data))
        elif op.kind == "dir":
            parts.append(header(op.name, typeflag=b"5", size=op.bogus_size, mode=0o755))
        elif op.kind == "symlink":
            parts.append(header(op.name, typeflag=b"2", size=op.bogus_size, linkname=op.data.decode()))
        elif op.kind == "whiteout":
            head, _, base = op.name.rpartition("/")
            parts.append(member(f"{head}/.wh.{base}" if head else f".wh.{base}"))
        else:
            parts.append(member(f"{op.name.rstrip('/')}/.wh..wh..opq"))
    return layer(*parts)


_PART = st.sampled_from(["a", "b", "c"])
_PREFIX = st.sampled_from(["", "", "./", "/", "../", "../../", "a/../", "b/./"])


@st.composite
def ops(draw: st.DrawFn) -> Op:
    name = draw(_PREFIX) + "/".join(draw(st.lists(_PART, min_size=1, max_size=3)))
    kind = draw(st.sampled_from(["file", "file", "dir", "symlink", "whiteout", "opaque"]))
    if kind == "opaque":
        return Op(kind, name)
    if kind == "whiteout":
        return Op(kind, name)
    data = b""
    if kind == "file":
        data = draw(st.sampled_from([b"", b"one\n", b"two\n", KEY]))
    elif kind == "symlink":
        data = draw(st.sampled_from([b"a", b"../b", b"/c/a"]))
    bogus = draw(st.sampled_from([0, 0, 0, 512, 1000])) if kind in ("dir", "symlink") else 0
    glob = draw(st.sampled_from(["", "", "", "a/b", "zz"]))
    return Op(kind, name + ("/" if kind == "dir" and draw(st.booleans()) else ""), data, bogus, glob)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(ops(), min_size=1, max_size=8), min_size=1, max_size=3))
# Found by this test: a whiteout that later entries of its layer write over whites out nothing
# (Docker RemoveAlls the device), so /a/a shows through the directory written last.
@example([[Op("file", "a/a")], [Op("whiteout", "a"), Op("file", "a"), Op("dir", "a")]])
# The same below a replaced parent: the file at /a removes the device at /a/b with it.
@example([[Op("file", "a/b", b"one\n")], [Op("whiteout", "a/b"), Op("file", "a"), Op("dir", "a")]])
def test_final_tree_equals_an_independent_applier(layers: list[list[Op]]) -> None:
    # Opaque markers first in their layer (overlay hides lower children whatever their place).
    layers = [sorted(ops_, key=lambda o: o.kind != "opaque") for ops_ in layers]
    try:
        expected = reference_apply(layers)
    except Refused:
        return
    blobs = [encode(ops_) for ops_ in layers]
    image = load_bytes(blobs)
    ours = {}
    for p, found in stacking.build(image).final.items():
        e = found.entry
        ours[p] = (e.type, e.digest if e.type == FILE else e.link)
    assert {p: v for p, v in ours.items() if v[0] != DIR} == {p: v for p, v in expected.items() if v[0] != DIR}
    assert {p for p, v in ours.items() if v[0] == DIR} <= {p for p, v in expected.items() if v[0] == DIR}


def load_bytes(blobs: list[bytes]) -> Image:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image.tar"
        corpus.docker_archive(path, blobs)
        return load(str(path), corpus_options())


@pytest.mark.daemon
def test_the_reference_applier_agrees_with_docker(tmp_path: Path, docker_client: object) -> None:
    """The model above, checked on Docker itself for a few drawn stacks (each loads in about a second)."""
    compared = 0
    for seed in range(40):
        layers = [sorted(ops_, key=lambda o: o.kind != "opaque") for ops_ in _draw(seed)]
        try:
            expected = reference_apply(layers)
        except Refused:
            continue
        blobs = [encode(ops_) for ops_ in layers]
        config = corpus.config_for(blobs)
        names = [f"{i:02d}/layer.tar" for i in range(len(blobs))]
        tag = f"{TAG}/property-{seed}:latest"
        manifest = [{"Config": hashlib.sha256(config).hexdigest() + ".json", "RepoTags": [tag], "Layers": names}]
        path = tmp_path / f"{seed}.tar"
        corpus.docker_archive(path, blobs, config=config, manifest=manifest, layer_names=names)
        docker = docker_export_tree(path, tag)
        if docker is None:
            continue  # tar-split refuses a name repeated after filepath.Clean
        assert {p: v for p, v in docker.items() if v[0] != DIR} == {p: v for p, v in expected.items() if v[0] != DIR}, (
            layers
        )
        compared += 1
    assert compared >= 10


def _draw(seed: int) -> list[list[Op]]:
    """A stack of layers drawn with ``random`` from the same alphabet as the hypothesis strategy."""
    r = random.Random(seed)
    out: list[list[Op]] = []
    for _ in range(r.randint(1, 3)):
        ops_: list[Op] = []
        for _ in range(r.randint(1, 6)):
            name = r.choice(["", "", "./", "/", "../", "../../", "a/../", "b/./"])
            name += "/".join(r.choice("abc") for _ in range(r.randint(1, 3)))
            kind = r.choice(["file", "file", "dir", "symlink", "whiteout", "opaque"])
            data = {"file": r.choice([b"", b"one\n", b"two\n"]), "symlink": r.choice([b"a", b"../b", b"/c/a"])}
            bogus = r.choice([0, 0, 512, 1000]) if kind in ("dir", "symlink") else 0
            glob = r.choice(["", "", "a/b", "zz"]) if kind not in ("whiteout", "opaque") else ""
            ops_.append(Op(kind, name, data.get(kind, b""), bogus, glob))
        out.append(ops_)
    return out


# --------------------------------------------------------------------------- a cached benign DiffID


@pytest.mark.parametrize("form", ["archive", "oci-gzip"])
def test_a_cached_benign_diffid_does_not_let_another_layer_pass(tmp_path: Path, form: str) -> None:
    """The config of the second image claims the first image's DiffID; its layer holds a key.

    ``ci`` once took the scan cached under that DiffID and passed (exit 0);
    Docker would refuse the image (it checks DiffIDs), but a gate must judge
    the layer it reads, not the config's word.
    """
    benign = layer(member("root/.ssh/known_hosts", BENIGN))
    evil = layer(member("root/.ssh/id_rsa", KEY))
    config = corpus.config_for([benign])  # the benign DiffID, for both images
    good, bad = tmp_path / "good", tmp_path / "bad"
    if form == "archive":
        good, bad = tmp_path / "good.tar", tmp_path / "bad.tar"
        corpus.docker_archive(good, [benign], config=config)
        corpus.docker_archive(bad, [evil], config=config)
        refs = (str(good), str(bad))
    else:
        corpus.oci_layout(good, [(corpus.gz(benign), corpus.OCI_GZIP)], config=config)
        corpus.oci_layout(bad, [(corpus.gz(evil), corpus.OCI_GZIP)], config=config)
        refs = (f"oci:{good}", f"oci:{bad}")
    forbid = ("--forbid-path", "/root/.ssh/id_*")
    code, out, _ = cli("ci", refs[0], *forbid)
    assert code == 0, out  # and its scan is now cached under the benign DiffID
    code, out, _ = cli("ci", refs[1], *forbid, "--json")
    assert code == 1, out
    code, out, _ = cli("audit", refs[1], "--json")
    assert code == 1
    assert [f["path"] for f in json.loads(out)["findings"] if f["rule"] == "private-key"] == ["/root/.ssh/id_rsa"]
