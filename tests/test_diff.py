"""``imgscope diff``: step alignment, file and config differences, totals, formats and exit codes.

Oracles: an independent final-tree builder (``tarfile`` + ``sha256``, not
imgscope's scanner or stack) for the file differences and the per-directory
totals; GNU tar's listing for layer sizes and for the two external ggcr
images; the image descriptions themselves for what a step or a config field
was changed into.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import re
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from imgscope import reference
from imgscope import stack as stacking
from imgscope.analysis import diff as imgdiff
from imgscope.cli import app
from imgscope.schemas import load_schema
from imgscope.sources.common import LoadOptions
from tests import compare_images as ci
from tests import imagebuild as ib
from tests.gnutar import archive_layers, gnu_list

runner = CliRunner()


# --------------------------------------------------------------------------- independent oracle


@dataclass(frozen=True)
class OEntry:
    type: str
    size: int
    mode: int
    uid: int
    gid: int
    link: str
    sha: str
    mtime: int
    xattrs: tuple[tuple[str, str], ...]


def _otype(m: tarfile.TarInfo) -> str:
    if m.isdir():
        return "dir"
    if m.issym():
        return "symlink"
    if m.islnk():
        return "hardlink"
    return "file"


def oracle_final(archive: Path) -> dict[str, OEntry]:
    """The final tree of a ``docker save`` archive, with tarfile and sha256 only."""
    tree: dict[str, OEntry] = {}
    for blob in archive_layers(archive):
        with tarfile.open(fileobj=io.BytesIO(blob)) as tf:
            members = tf.getmembers()
            for m in members:  # opaque markers apply before the layer's own entries
                name = "/" + m.name.strip("/").removeprefix("./")
                base, parent = posixpath.basename(name), posixpath.dirname(name)
                if base == ".wh..wh..opq":
                    for p in [p for p in tree if p.startswith(parent.rstrip("/") + "/")]:
                        del tree[p]
            shas: dict[str, str] = {}
            for m in members:
                name = posixpath.normpath("/" + m.name.strip("/").removeprefix("./"))
                base, parent = posixpath.basename(name), posixpath.dirname(name)
                if name == "/" or base.startswith(".wh..wh."):
                    continue
                if base.startswith(".wh."):
                    gone = posixpath.join(parent, base[4:])
                    for p in [p for p in tree if p == gone or p.startswith(gone + "/")]:
                        del tree[p]
                    continue
                kind = _otype(m)
                sha = ""
                size = 0
                link = ""
                if kind == "file":
                    fh = tf.extractfile(m)
                    assert fh is not None
                    sha = hashlib.sha256(fh.read()).hexdigest()
                    size = m.size
                    shas[name] = sha
                elif kind == "symlink":
                    link = m.linkname
                    size = len(link.encode())
                elif kind == "hardlink":
                    link = "/" + m.linkname.lstrip("/")
                    sha = shas.get(link, "")
                old = tree.get(name)
                if old is not None and old.type == "dir" and kind != "dir":
                    for p in [p for p in tree if p.startswith(name + "/")]:
                        del tree[p]
                xattrs = tuple(
                    sorted((k[len("SCHILY.xattr.") :], v) for k, v in m.pax_headers.items() if k.startswith("SCHILY."))
                )
                tree[name] = OEntry(kind, size, m.mode & 0o7777, m.uid, m.gid, link, sha, int(m.mtime), xattrs)
    return tree


def oracle_kinds(a: dict[str, OEntry], b: dict[str, OEntry], mtime: bool = False) -> dict[str, str]:
    """Path -> change kind between two oracle trees, by DESIGN.md's definitions."""
    out: dict[str, str] = {}
    for path in a.keys() | b.keys():
        x, y = a.get(path), b.get(path)
        if x is None:
            out[path] = "added"
        elif y is None:
            out[path] = "removed"
        elif x.type != y.type or x.sha != y.sha or x.size != y.size or x.link != y.link:
            out[path] = "modified"
        elif (x.mode, x.uid, x.gid, x.xattrs) != (y.mode, y.uid, y.gid, y.xattrs) or (mtime and x.mtime != y.mtime):
            out[path] = "metadata"
    return out


def load_stack(path: Path | str) -> stacking.Stack:
    return stacking.build(reference.load(str(path), LoadOptions()))


def run_diff(a: Path | str, b: Path | str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["diff", str(a), str(b), *args], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return ci.write_set(tmp_path_factory.mktemp("compare"))


# --------------------------------------------------------------------------- steps


def test_rebuild_with_one_changed_step(images: dict[str, Path]) -> None:
    a, b = load_stack(images["app1"]), load_stack(images["app1_rebuilt"])
    d = imgdiff.diff(a, b)
    # The shared prefix is the base layer: the first layer of both has the same ChainID.
    assert d.shared_layers == 1
    assert a.layers[0].chain_id == b.layers[0].chain_id and a.layers[1].chain_id != b.layers[1].chain_id
    statuses = [(p.status, p.a.instruction if p.a else None) for p in d.steps]
    spec_steps = ci.app1_spec().steps
    assert len(d.steps) == len(spec_steps)  # nothing inserted or removed: every step paired
    changed = [p for p in d.steps if p.status == imgdiff.CHANGED]
    # The COPY changed; the RUN after it wrote the same bytes on a different base.
    assert [p.a.instruction.split()[0] for p in changed if p.a] == ["COPY", "RUN"]
    run_pair = changed[1]
    assert run_pair.same_content and run_pair.delta == 0
    assert not changed[0].same_content
    assert all(s == imgdiff.SAME for s, _ in statuses if s != imgdiff.CHANGED)
    # Step sizes are the layers' sizes as GNU tar lists them.
    sizes_a = [gnu_list(t).size for t in archive_layers(images["app1"])]
    sizes_b = [gnu_list(t).size for t in archive_layers(images["app1_rebuilt"])]
    for p in d.steps:
        if p.a is not None and p.a.layer is not None:
            assert p.size_a == sizes_a[p.a.layer]
        if p.b is not None and p.b.layer is not None:
            assert p.size_b == sizes_b[p.b.layer]
        assert p.delta == p.size_b - p.size_a
    # Only the app file differs, by the length difference of the two texts.
    assert [(f.path, f.kind) for f in d.files] == [("/app/main.py", "modified")]
    old_text, new_text = "print('hello')\n", "print('hello, world')\nprint('again')\n"
    assert d.files[0].delta == len(new_text) - len(old_text)
    assert not d.config


def test_inserted_and_removed_steps_are_shown_as_such(tmp_path: Path) -> None:
    base = ci.base_spec()
    a_spec = base.extend(
        ib.run("apk add curl", ib.file("usr-curl", "curl" * 10)),
        ib.run("apk add git", ib.file("usr-git", "git" * 10)),
        ib.nop("EXPOSE 80"),
    )
    b_spec = base.extend(
        ib.run("apk add curl", ib.file("usr-curl", "curl" * 10)),
        ib.copy("file:new", "/srv/", ib.file("srv-new", "x" * 99)),
        ib.run("apk add git tig", ib.file("usr-git", "git" * 12)),
        ib.nop("EXPOSE 80"),
    )
    ib.write_docker_archive(tmp_path / "a.tar", a_spec)
    ib.write_docker_archive(tmp_path / "b.tar", b_spec)
    d = imgdiff.diff(load_stack(tmp_path / "a.tar"), load_stack(tmp_path / "b.tar"))
    table = [(p.status, p.a.instruction if p.a else None, p.b.instruction if p.b else None) for p in d.steps]
    assert d.shared_layers == 2  # base and the identical curl layer
    assert table[-3:] == [
        (imgdiff.STEP_ADDED, None, "COPY file:new in /srv/"),
        (imgdiff.CHANGED, "RUN apk add git", "RUN apk add git tig"),
        (imgdiff.SAME, "EXPOSE 80", "EXPOSE 80"),
    ]
    # Reversed, the COPY is a removed step.
    d2 = imgdiff.diff(load_stack(tmp_path / "b.tar"), load_stack(tmp_path / "a.tar"))
    assert [p.status for p in d2.steps].count(imgdiff.STEP_REMOVED) == 1
    removed = next(p for p in d2.steps if p.status == imgdiff.STEP_REMOVED)
    assert removed.a is not None and removed.a.instruction.startswith("COPY")
    assert removed.delta == -removed.size_a == -99


def test_alignment_prefers_the_step_with_the_closest_arguments() -> None:
    def side(text: str, position: int) -> imgdiff.StepSide:
        return imgdiff.StepSide(position, position, text, text, 1)

    a = [side("RUN apt-get install gcc", 0), side("RUN pip install numpy", 1)]
    b = [side("RUN apt-get install gcc make", 0), side("RUN npm install", 1), side("RUN pip install numpy scipy", 2)]
    pairs = imgdiff.align(a, b)
    matched = {(x.instruction, y.instruction) for x, y in pairs if x is not None and y is not None}
    assert matched == {
        ("RUN apt-get install gcc", "RUN apt-get install gcc make"),
        ("RUN pip install numpy", "RUN pip install numpy scipy"),
    }
    assert [y.instruction for x, y in pairs if x is None and y is not None] == ["RUN npm install"]
    # Different verbs never pair.
    lone = imgdiff.align([side("COPY a /", 0)], [side("RUN a", 0)])
    assert all(x is None or y is None for x, y in lone) and len(lone) == 2


# --------------------------------------------------------------------------- files


def _kinds_spec(tmp_path: Path) -> tuple[Path, Path]:
    """Two images whose final trees differ in every way DESIGN.md names."""
    base = ib.ImageSpec(
        steps=(
            ib.copy(
                "file:x",
                "/",
                ib.directory("etc"),
                ib.file("etc/config", "a=1\n"),
                ib.file("etc/mode", "m\n", mode=0o644),
                ib.file("etc/owner", "o\n", uid=0),
                ib.file("etc/xattr", "x\n", xattrs={"security.capability": "v1"}),
                ib.file("etc/touched", "t\n", mtime=ib.T0),
                ib.file("etc/becomes-link", "data\n"),
                ib.symlink("etc/link", "config"),
                ib.directory("var"),
                ib.directory("var/log"),
                ib.file("var/log/old.log", "log" * 100),
                ib.file("gone.txt", "bye\n"),
                ib.directory("lib"),
                ib.file("lib/mod.pyc", b"\x01" * 50),
            ),
        )
    )
    new = base.extend(
        ib.run(
            "changes",
            ib.file("etc/config", "a=2 and more\n"),
            ib.file("etc/mode", "m\n", mode=0o755),
            ib.file("etc/owner", "o\n", uid=1000),
            ib.file("etc/xattr", "x\n", xattrs={"security.capability": "v2"}),
            ib.file("etc/touched", "t\n", mtime=ib.T0 + 3600),
            ib.whiteout("etc/becomes-link"),
            ib.symlink("etc/becomes-link", "config"),
            ib.symlink("etc/link", "mode"),
            ib.file("var/log/new.log", "new" * 500),
            ib.whiteout("gone.txt"),
            ib.directory("opt"),
            ib.file("opt/tool", b"\x7fELF" * 1000, mode=0o755),
            ib.file("lib/mod.pyc", b"\x02" * 70),
        )
    )
    ib.write_docker_archive(tmp_path / "a.tar", base)
    ib.write_docker_archive(tmp_path / "b.tar", new)
    return tmp_path / "a.tar", tmp_path / "b.tar"


@pytest.mark.parametrize("mtime", [False, True])
def test_file_kinds_match_an_independent_final_tree(tmp_path: Path, mtime: bool) -> None:
    pa, pb = _kinds_spec(tmp_path)
    d = imgdiff.diff(load_stack(pa), load_stack(pb), mtime=mtime)
    oa, ob = oracle_final(pa), oracle_final(pb)
    assert {f.path: f.kind for f in d.files} == oracle_kinds(oa, ob, mtime)
    for f in d.files:
        assert f.size_a == (oa[f.path].size if f.path in oa else 0)
        assert f.size_b == (ob[f.path].size if f.path in ob else 0)
    # Sorted by size impact, largest first.
    impacts = [abs(f.delta) for f in d.files]
    assert impacts == sorted(impacts, reverse=True)
    by_path = {f.path: f for f in d.files}
    assert ("/etc/touched" in by_path) is mtime  # mtime alone is no difference unless asked
    fields = {f.path: {c.name: (c.old, c.new) for c in f.fields} for f in d.files}
    assert fields["/etc/becomes-link"]["type"] == ("file", "symlink")
    assert fields["/etc/link"]["target"] == ("config", "mode")
    assert fields["/etc/mode"] == {"mode": ("0644", "0755")}
    assert fields["/etc/owner"] == {"uid": ("0", "1000")}
    assert fields["/etc/xattr"] == {"xattr security.capability": ("v1", "v2")}


def test_totals_per_top_level_directory(tmp_path: Path) -> None:
    pa, pb = _kinds_spec(tmp_path)
    d = imgdiff.diff(load_stack(pa), load_stack(pb))
    oa, ob = oracle_final(pa), oracle_final(pb)

    def sums(tree: dict[str, OEntry]) -> dict[str, int]:
        out: dict[str, int] = {}
        for path, e in tree.items():
            if e.type != "dir":
                parts = path.strip("/").split("/")
                top = "/" + parts[0] if len(parts) > 1 else "/"
                out[top] = out.get(top, 0) + e.size
        return out

    sa, sb = sums(oa), sums(ob)
    rows = {r.directory: r for r in d.directories}
    assert set(rows) == set(sa) | set(sb)
    for name, row in rows.items():
        assert (row.size_a, row.size_b) == (sa.get(name, 0), sb.get(name, 0))
    assert d.files_size_a == sum(sa.values()) and d.files_size_b == sum(sb.values())
    assert d.size_delta == sum(gnu_list(t).size for t in archive_layers(pb)) - sum(
        gnu_list(t).size for t in archive_layers(pa)
    )


def test_path_and_ignore_filters(tmp_path: Path) -> None:
    pa, pb = _kinds_spec(tmp_path)
    a, b = load_stack(pa), load_stack(pb)
    everything = {f.path for f in imgdiff.diff(a, b).files}
    no_pyc = {f.path for f in imgdiff.diff(a, b, ignores=["*.pyc"]).files}
    assert no_pyc == {p for p in everything if not p.endswith(".pyc")} and no_pyc != everything
    no_logs = {f.path for f in imgdiff.diff(a, b, ignores=["*.pyc", "/var/log/**"]).files}
    assert no_logs == {p for p in no_pyc if not p.startswith("/var/log")}
    only_etc = {f.path for f in imgdiff.diff(a, b, paths=["/etc"]).files}
    assert only_etc == {p for p in everything if p.startswith("/etc/")}
    glob_etc = {f.path for f in imgdiff.diff(a, b, paths=["/etc/*link*"]).files}
    assert glob_etc == {"/etc/becomes-link", "/etc/link"}
    # Filtering away every difference (and no config change) makes the images identical.
    assert imgdiff.diff(a, b, paths=["/nothing/here"]).identical


def test_config_differences(tmp_path: Path) -> None:
    base = ci.base_spec()
    a = base.extend(
        env=("PATH=/bin", "KEEP=1", "OLD=x"),
        labels={"version": "1", "team": "a"},
        exposed_ports=("80/tcp",),
        volumes=("/data",),
        user="",
        working_dir="/",
        entrypoint=None,
    )
    b = base.extend(
        env=("PATH=/bin:/usr/bin", "KEEP=1", "NEW=y"),
        labels={"version": "2", "team": "a", "extra": "z"},
        exposed_ports=("80/tcp", "443/tcp"),
        volumes=(),
        user="app",
        working_dir="/srv",
        entrypoint=("/bin/tini", "--"),
        cmd=("serve",),
        architecture="arm64",
    )
    ib.write_docker_archive(tmp_path / "a.tar", a)
    ib.write_docker_archive(tmp_path / "b.tar", b)
    d = imgdiff.diff(load_stack(tmp_path / "a.tar"), load_stack(tmp_path / "b.tar"))
    got = {(c.field, c.key): (c.old, c.new) for c in d.config}

    def env(spec: ib.ImageSpec) -> dict[str, str]:
        return dict(item.split("=", 1) for item in spec.env)

    expected: dict[tuple[str, str | None], tuple[Any, Any]] = {}
    ea, eb = env(a), env(b)
    for key in ea.keys() | eb.keys():
        if ea.get(key) != eb.get(key):
            expected[("env", key)] = (ea.get(key), eb.get(key))
    for key in a.labels.keys() | b.labels.keys():
        if a.labels.get(key) != b.labels.get(key):
            expected[("labels", key)] = (a.labels.get(key), b.labels.get(key))
    for field, sa, sb in (("exposed_ports", a.exposed_ports, b.exposed_ports), ("volumes", a.volumes, b.volumes)):
        for item in set(sa) ^ set(sb):
            expected[(field, item)] = (item if item in sa else None, item if item in sb else None)
    expected[("user", None)] = (a.user, b.user)
    expected[("working_dir", None)] = (a.working_dir, b.working_dir)
    expected[("entrypoint", None)] = (a.entrypoint, b.entrypoint)
    expected[("cmd", None)] = (a.cmd, b.cmd)
    expected[("platform", None)] = (f"{a.os}/{a.architecture}", f"{b.os}/{b.architecture}")
    assert got == expected
    assert not d.files and not d.identical  # same files, different config: still different


def test_same_image_from_two_sources_is_identical(tmp_path: Path) -> None:
    spec = ci.app1_spec()
    ib.write_docker_archive(tmp_path / "a.tar", spec)
    ib.write_oci_layout(tmp_path / "layout", spec)
    code, out = run_diff(tmp_path / "a.tar", f"oci:{tmp_path / 'layout'}", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["identical"] and not report["files"] and not report["config"]
    assert report["a"]["source"] != report["b"]["source"]
    assert all(s["status"] == "same" for s in report["steps"])
    assert report["summary"]["shared_layers"] == len(spec.steps) - sum(1 for s in spec.steps if s.layer is None)


# --------------------------------------------------------------------------- external fixtures


def test_ggcr_test_images(external: Path) -> None:
    a, b = external / "ggcr-test_image_1.tar", external / "ggcr-test_image_2.tar"
    if not (a.exists() and b.exists()):
        pytest.skip("ggcr test images not present")

    def listing(path: Path) -> dict[str, int]:
        """Path -> Docker-counted size of the final tree, from GNU tar's listing of each layer."""
        sizes: dict[str, int] = {}
        for blob in archive_layers(path):
            out = subprocess.run(
                ["tar", "-tv", "--numeric-owner", "-f", "-"], input=blob, capture_output=True, check=True
            ).stdout.decode()
            for line in out.splitlines():
                perms, _owner, size, _d, _t, name = line.split(None, 5)
                name = posixpath.normpath("/" + name.removeprefix("./"))
                if name != "/":
                    sizes[name] = int(size) if perms[0] == "-" else 0
        return sizes

    la, lb = listing(a), listing(b)
    code, out = run_diff(a, b, "--json")
    assert code == 1
    report = json.loads(out)
    jsonschema.validate(report, load_schema("diff"))
    kinds = {f["path"]: f["kind"] for f in report["files"]}
    expected = {p: "added" for p in lb.keys() - la.keys()} | {p: "removed" for p in la.keys() - lb.keys()}
    assert {p: k for p, k in kinds.items() if k in ("added", "removed")} == expected
    for f in report["files"]:
        assert f["size_a"] == la.get(f["path"], 0) and f["size_b"] == lb.get(f["path"], 0)
    assert report["summary"]["size_delta"] == sum(lb.values()) - sum(la.values())
    assert report["summary"]["shared_layers"] == 0
    # Same image on both sides: identical, exit 0.
    assert run_diff(a, a)[0] == 0


# --------------------------------------------------------------------------- CLI, formats, exit codes


def test_exit_codes(images: dict[str, Path], tmp_path: Path) -> None:
    assert run_diff(images["app1"], images["app1"])[0] == 0
    assert run_diff(images["app1"], images["app2"])[0] == 1
    assert run_diff(images["app1"], images["app2"], "--exit-zero")[0] == 0
    assert run_diff(images["app1"], images["app2"], "--format", "markdown")[0] == 1
    missing = runner.invoke(app, ["diff", str(images["app1"]), str(tmp_path / "nope.tar")])
    assert missing.exit_code == 2 and "imgscope: error:" in missing.stderr
    bad = runner.invoke(app, ["diff", str(images["app1"]), str(images["app2"]), "--format", "yaml"])
    assert bad.exit_code == 2
    # mtime-only differences: identical unless --mtime.
    spec = ci.base_spec()
    touched = ib.ImageSpec(
        steps=tuple(
            ib.BuildStep(s.created_by, tuple(ib.TarEntry(**{**e.__dict__, "mtime": e.mtime + 60}) for e in s.layer))
            if s.layer
            else s
            for s in spec.steps
        )
    )
    ib.write_docker_archive(tmp_path / "t.tar", touched)
    assert run_diff(images["base"], tmp_path / "t.tar")[0] == 0
    assert run_diff(images["base"], tmp_path / "t.tar", "--mtime")[0] == 1


def test_json_output_validates_for_every_pair(images: dict[str, Path]) -> None:
    schema = load_schema("diff")
    names = list(images)
    for left in names:
        for right in names:
            code, out = run_diff(images[left], images[right], "--json")
            report = json.loads(out)
            jsonschema.validate(report, schema)
            assert code == (0 if report["identical"] else 1)
            assert report["schema_version"] == 1
            assert report["summary"]["size_delta"] == report["b"]["size"] - report["a"]["size"]
            # Every file change's delta is what its two sizes say.
            assert all(f["delta"] == f["size_b"] - f["size_a"] for f in report["files"])


def _md_cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def test_markdown_output(tmp_path: Path) -> None:
    pa, pb = _kinds_spec(tmp_path)
    code, out = run_diff(pa, pb, "--format", "markdown")
    assert code == 1
    d = imgdiff.diff(load_stack(pa), load_stack(pb))
    # Every table row has as many cells as its header.
    width = 0
    for line in out.splitlines():
        if line.startswith("|"):
            cells = _md_cells(line)
            if re.fullmatch(r"[-:| ]+", line):
                assert len(cells) == width
            elif width == 0:
                width = len(cells)
            else:
                assert len(cells) == width, line
        else:
            width = 0
    # Each differing path is a row with its kind.
    rows = {
        _md_cells(line)[1].strip("`").rstrip("/"): _md_cells(line)[0]
        for line in out.splitlines()
        if line.startswith("| ") and len(_md_cells(line)) == 6 and _md_cells(line)[1].startswith("`/")
    }
    assert rows == oracle_kinds(oracle_final(pa), oracle_final(pb))
    assert len(d.files) == len(rows)
    assert "#### Steps" in out and "#### Files" in out and "**Different**" in out


def test_markdown_escapes_pipes(tmp_path: Path) -> None:
    base = ci.base_spec()
    ib.write_docker_archive(tmp_path / "a.tar", base)
    ib.write_docker_archive(tmp_path / "b.tar", base.extend(ib.run("echo a|b", ib.file("odd|name", "x"))))
    code, out = run_diff(tmp_path / "a.tar", tmp_path / "b.tar", "--format", "markdown")
    assert code == 1
    row = next(line for line in out.splitlines() if "odd" in line and line.startswith("| added"))
    assert _md_cells(row)[1] == "`/odd\\|name`"


def test_text_output_lists_steps_and_files(images: dict[str, Path]) -> None:
    code, out = run_diff(images["app1"], images["app1_rebuilt"], "--no-color")
    assert code == 1
    assert "/app/main.py" in out and "modified" in out
    assert "same content, other base" in out
    assert "different: 1 modified" in out


def test_top_limits_text_but_not_json(tmp_path: Path) -> None:
    base = ci.base_spec()
    many = base.extend(ib.run("make files", *[ib.file(f"f{i:03d}", "x" * (i + 1)) for i in range(30)]))
    ib.write_docker_archive(tmp_path / "a.tar", base)
    ib.write_docker_archive(tmp_path / "b.tar", many)
    _, text = run_diff(tmp_path / "a.tar", tmp_path / "b.tar", "--top", "5", "--no-color")
    assert "/f029" in text and "/f000" not in text and "25 more" in text
    _, out = run_diff(tmp_path / "a.tar", tmp_path / "b.tar", "--json", "--top", "5")
    assert len(json.loads(out)["files"]) == 30


# --------------------------------------------------------------------------- randomised


@st.composite
def _layer_entries(draw: st.DrawFn, names: tuple[str, ...]) -> tuple[ib.TarEntry, ...]:
    """A random layer over a small namespace: files, symlinks, directories, whiteouts, metadata."""
    out: dict[str, ib.TarEntry] = {}
    for name in draw(st.lists(st.sampled_from(names), max_size=8, unique=True)):
        kind = draw(st.sampled_from(["file", "file", "symlink", "whiteout", "dir"]))
        if kind == "file":
            out[name] = ib.file(
                name,
                draw(st.sampled_from(["a", "bb", "ccc" * 20])),
                mode=draw(st.sampled_from([0o644, 0o755])),
                uid=draw(st.sampled_from([0, 1000])),
                mtime=draw(st.sampled_from([ib.T0, ib.T0 + 1])),
            )
        elif kind == "symlink":
            out[name] = ib.symlink(name, draw(st.sampled_from(["x", "yy"])))
        elif kind == "dir":
            out[name] = ib.directory(name, mode=draw(st.sampled_from([0o755, 0o700])))
        else:
            out[name] = ib.whiteout(name)
    return tuple(out.values())


_NAMES = ("a", "b", "c", "d", "e/f", "e/g")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    base=_layer_entries(_NAMES),
    left=_layer_entries(_NAMES),
    right=_layer_entries(_NAMES),
    mtime=st.booleans(),
)
def test_random_trees_match_the_oracle(
    tmp_path: Path,
    base: tuple[ib.TarEntry, ...],
    left: tuple[ib.TarEntry, ...],
    right: tuple[ib.TarEntry, ...],
    mtime: bool,
) -> None:
    # The base has a directory "e" for e/f and e/g; the two top layers then do anything to any name.
    root = ib.copy("file:base", "/", ib.directory("e"), *[e for e in base if e.kind != "whiteout" and e.path != "e"])
    spec = ib.ImageSpec(steps=(root,))
    pa, pb = tmp_path / "ra.tar", tmp_path / "rb.tar"
    ib.write_docker_archive(pa, spec.extend(ib.run("left", *left)) if left else spec)
    ib.write_docker_archive(pb, spec.extend(ib.run("right", *right)) if right else spec)
    d = imgdiff.diff(load_stack(pa), load_stack(pb), mtime=mtime)
    assert {f.path: f.kind for f in d.files} == oracle_kinds(oracle_final(pa), oracle_final(pb), mtime)
