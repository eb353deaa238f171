"""The fast paths of issue 18 write and compute exactly what the plain ones do.

Oracles: the dict path of ``inspect_report`` (``lazy=False``) printed by the
generic JSON writer, which ``render.encoded`` must match byte for byte;
``json.loads`` for validity; and straightforward per-path versions of the
waste computations, written here, for the per-directory ones.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from imgscope import stack
from imgscope.cli.common import print_json
from imgscope.model import ADDED, DIR, FILE, Entry, Image, LayerScan
from imgscope.render.encoded import BATCH, EncodedList
from imgscope.render.json_report import inspect_report
from imgscope.sources.archive import load_path
from imgscope.sources.common import LoadOptions
from tests import imagebuild as ib

ODD_NAMES = (
    '/odd/quote"and\\backslash',
    "/odd/tab\there",
    "/odd/new\nline",
    "/odd/ünïcödé-名前",
    "/odd/caf\udce9.bin",  # not UTF-8: a lone surrogate, written as a JSON escape
    "/odd/\u2028separator",
)


def _every_kind_of_change() -> ib.ImageSpec:
    """Layers with every change kind and every optional key of a change line."""
    base = ib.run(
        "base",
        ib.directory("/etc"),
        ib.file("/etc/conf", "one", mode=0o644),
        ib.file("/etc/owned", "x", uid=1000, gid=1000),
        ib.file("/etc/group-only", "g", gid=5),
        ib.file("/etc/same", "same"),
        ib.file("/etc/touched", "t"),
        ib.symlink("/etc/link", "conf"),
        ib.file("/etc/becomes-link", "data"),
        ib.directory("/gone"),
        ib.file("/gone/a", "a" * 100),
        ib.directory("/opaque"),
        ib.file("/opaque/old", "o" * 50),
        ib.file("/bin/tool", "tool", mode=0o755),
        ib.hardlink("/bin/tool-again", "/bin/tool"),
        ib.device("/dev/null", "char", 1, 3),
        ib.device("/dev/sda", "block", 8, 0),
        *(ib.file(name, name.encode("utf-8", "surrogateescape")) for name in ODD_NAMES),
        ib.symlink("/odd/link-to-odd", ODD_NAMES[0]),
    )
    change = ib.run(
        "change",
        ib.file("/etc/conf", "two", mode=0o600),  # modified, mode differs
        ib.file("/etc/owned", "x", uid=0, gid=0),  # metadata: owner
        ib.file("/etc/group-only", "g", gid=6),  # metadata: group only
        ib.file("/etc/same", "same"),  # re-shipped identical
        ib.file("/etc/touched", "t", mtime=ib.T0 + 5),  # re-shipped, new mtime
        ib.symlink("/etc/link", "other"),  # modified link target
        ib.symlink("/etc/becomes-link", "conf"),  # type change file -> symlink
        ib.whiteout("/gone"),
        ib.opaque("/opaque"),
        ib.file("/opaque/new", "n"),
        ib.device("/dev/sda", "block", 8, 1),
        ib.file("/odd/new\nline", "changed"),
        ib.file("/var/lib/apt/lists/pkg", "l" * 5000),
        ib.file("/root/.cache/pip/wheel", "w" * 3000),
        ib.file("/srv/repo/.git/objects/ab", "g" * 700),
        ib.file("/tmp/build/out.o", "o" * 900),
        ib.file("/var/tmp/x", "x" * 10),
        ib.file("/core", "c" * 5000),
        ib.whiteout("/bin/tool"),  # its hard link keeps the content: kept_by
    )
    back = ib.run(
        "back",
        ib.file("/etc/becomes-link", "a file again"),  # symlink -> file: old_link to null
        ib.whiteout("/etc/link"),
    )
    return ib.ImageSpec(steps=(base, ib.nop('ENV A="b"'), change, back))


def _printed(data: Any, capsys: pytest.CaptureFixture[str]) -> str:
    print_json(data)
    return capsys.readouterr().out


def _stacked(tmp_path: Path, spec: ib.ImageSpec) -> stack.Stack:
    path = tmp_path / "image.tar"
    ib.write_docker_archive(path, spec)
    image: Image = load_path(path, str(path), None, LoadOptions(use_cache=False))
    return stack.build(image)


def test_encoded_lines_are_the_dict_path_byte_for_byte(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stacked = _stacked(tmp_path, _every_kind_of_change())
    eager = _printed(inspect_report(stacked, top=5), capsys)
    lazy = _printed(inspect_report(stacked, top=5, lazy=True), capsys)
    assert lazy == eager
    data = json.loads(lazy)
    changes = [c for layer in data["layers"] for c in layer["changes"]]
    keys = {k for c in changes for k in c}
    # The image exercises every optional key of a change line.
    optional = {"old_layer", "old_size", "old_mode", "old_uid", "old_gid", "old_type", "old_link", "link", "cause"}
    assert optional | {"kept_by"} <= keys
    assert {c["kind"] for c in changes} == {"added", "modified", "metadata", "re-shipped", "removed"}
    paths = {f["path"] for f in data["files"]}
    assert set(ODD_NAMES) - {"/odd/caf\udce9.bin"} <= paths
    assert '"/odd/caf\\udce9.bin"' in lazy  # the surrogate as an escape: the output is valid UTF-8
    lazy.encode("utf-8")


def test_changes_and_final_entries_built_through_slots_equal_the_dataclass_ones() -> None:
    a = Entry("/d", DIR, 0o755, 0, 0, 0, 0, 1)
    b = Entry("/d/f", FILE, 0o644, 0, 0, 3, 3, 1, digest="ab")
    stacked = stack.build(ib.image_of_scans([LayerScan("sha256:" + "1" * 64, 0, (a, b))]))
    changes = stacked.layers[0].changes
    assert changes == (stack.Change("/d", ADDED, a), stack.Change("/d/f", ADDED, b))
    assert hash(changes[1]) == hash(stack.Change("/d/f", ADDED, b))
    assert stacked.final == {"/d": stack.FinalEntry(a, 0), "/d/f": stack.FinalEntry(b, 0)}


def test_a_scan_listing_the_root_itself_stacks_and_whiteouts_still_end() -> None:
    # The scanner drops the root; a scan built by hand may list it, and the root is no one's child.
    root = Entry("/", DIR, 0o755, 0, 0, 0, 0, 1)
    d = Entry("/d", DIR, 0o755, 0, 0, 0, 0, 1)
    f = Entry("/d/f", FILE, 0o644, 0, 0, 3, 3, 1, digest="ab")
    lower = LayerScan("sha256:" + "1" * 64, 0, (root, d, f))
    upper = LayerScan("sha256:" + "2" * 64, 0, (root,), whiteouts=("/d",))
    again = LayerScan("sha256:" + "3" * 64, 0, (Entry("/d", FILE, 0o644, 0, 0, 5, 5, 1, digest="cd"),))
    stacked = stack.build(ib.image_of_scans([lower, upper, again]))
    assert sorted(stacked.final) == ["/", "/d"]
    assert [(c.path, c.kind) for c in stacked.layers[1].changes] == [("/d", "removed"), ("/d/f", "removed")]
    from imgscope.analysis import waste

    # dive's visits: /d/f 3; /d the whiteout (weighing the 0 + 3 below it) then the file, 3 + 5;
    # the root 0 twice.  cum 3 + 8 + 0, min 3 + 3 + 0; /d and the root are visited twice.
    dive = waste.dive_figures(stacked)
    assert (dive.efficiency, dive.wasted_bytes) == (6 / 11, 8)


def test_encoded_list_crosses_batches(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"path": f"/f{i}", "size": i} for i in range(2 * BATCH + 3)]
    eager = _printed({"rows": rows, "empty": []}, capsys)
    lazy = _printed(
        {
            "rows": EncodedList(json.dumps(r, ensure_ascii=False) for r in rows),
            "empty": EncodedList(iter([])),
        },
        capsys,
    )
    assert lazy == eager
    assert json.loads(lazy)["rows"] == rows


def _junk_root_per_path(path: str, entry: Any) -> tuple[str, str] | None:
    """The junk rules as written before issue 18, path by path: the oracle of the per-directory version."""
    import posixpath
    import re

    if "/.git/" in path:
        return "git", path[: path.index("/.git/") + len("/.git")]
    if entry.type == "file" and entry.size >= 4096 and re.match(r"^core(\.\d+)?$", posixpath.basename(path)):
        return "core-dump", path
    for prefix, category in (
        ("/var/lib/apt/lists/", "apt-lists"),
        ("/var/cache/apt/", "apt-cache"),
        ("/var/cache/apk/", "apk-cache"),
        ("/etc/apk/cache/", "apk-cache"),
        ("/var/cache/yum/", "yum-cache"),
        ("/var/cache/dnf/", "dnf-cache"),
        ("/var/cache/libdnf5/", "dnf-cache"),
    ):
        if path.startswith(prefix):
            return category, prefix.rstrip("/")
    for marker, category in (("/.cache/pip/", "pip-cache"), ("/.npm/", "npm-cache"), ("/.cache/yarn/", "yarn-cache")):
        at = path.find(marker)
        if at >= 0:
            return category, path[: at + len(marker) - 1]
    for tmp in ("/tmp/", "/var/tmp/"):
        if path.startswith(tmp):
            return "tmp", tmp + path[len(tmp) :].split("/", 1)[0]
    return None


JUNK_PATHS = (
    "/var/lib/apt/lists/a",
    "/var/lib/apt/lists/partial/b",
    "/var/lib/apt/lists/core",  # a core dump wins over the apt lists
    "/var/cache/apt/archives/x.deb",
    "/root/.cache/pip/http/1",
    "/home/u/.npm/_cacache/y",
    "/home/u/.cache/yarn/v6/z",
    "/srv/.git/HEAD",
    "/srv/app/.git/objects/pack/p",
    "/tmp/.git/x",  # git wins over tmp
    "/tmp/file",  # right in /tmp: its own root
    "/tmp/core.12",
    "/tmp/dir/sub/f",
    "/var/tmp/v",
    "/var/tmp/d/w",
    "/core",
    "/usr/lib/core.py",
    "/usr/bin/core",  # too small to be a core dump
    "/etc/hostname",
)


def test_junk_per_directory_matches_the_per_path_rules(tmp_path: Path) -> None:
    from imgscope.analysis import waste

    entries = [ib.file(p, "x" * (5000 if "core" in p and p != "/usr/bin/core" else 10)) for p in JUNK_PATHS]
    stacked = _stacked(tmp_path, ib.ImageSpec(steps=(ib.run("junk", *entries), ib.run("more", ib.file("/tmp/2", "y")))))
    expected: dict[tuple[str, str, int], list[int]] = {}
    for path, found in stacked.final.items():
        hit = None if found.entry.type == "dir" else _junk_root_per_path(path, found.entry)
        assert waste.junk_root(path, found.entry) == hit
        if hit is not None:
            acc = expected.setdefault((hit[0], hit[1], found.layer), [0, 0])
            acc[0] += found.entry.size
            acc[1] += 1
    got = {(j.category, j.path, j.layer): [j.bytes, j.files] for j in waste.junk(stacked, {})}
    assert got == expected
    assert ("tmp", "/tmp/file", 0) in got and ("core-dump", "/var/lib/apt/lists/core", 0) in got
    assert ("git", "/tmp/.git", 0) in got and ("tmp", "/tmp/2", 1) in got


def test_a_command_imports_no_pydantic() -> None:
    """typer 0.29 validates options with pydantic (0.1 s of CPU a command): the pin in pyproject keeps it out."""
    import subprocess
    import sys

    sample = Path(__file__).resolve().parents[1] / "sample_images" / "demo-legacy.tar"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "imgscope", "inspect", str(sample), "--json", "--no-cache"],
        capture_output=True,
        text=True,
        check=True,
    )
    modules = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "imgscope.render.encoded" in modules  # the trace is real
    assert not {m for m in modules if m.split(".")[0] in ("pydantic", "pydantic_core")}
    assert json.loads(done.stdout)["files"]


class _Trickle(io.RawIOBase):
    """A source that hands out at most ``step`` bytes a read, as a socket does."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = memoryview(data)
        self._step = step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._step, len(self._data))
        buffer[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


@pytest.mark.parametrize("step", [1 << 20, 70_001, 512])
def test_streamed_members_read_past_tarfile_are_the_same_scans(
    tmp_path: Path, step: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save stream read with the direct member reader gives the scans of the seekable archive."""
    from imgscope.sources import store
    from imgscope.sources.archive import plan_store
    from imgscope.sources.common import load_plan

    spec = _every_kind_of_change()
    spec = spec.extend(ib.run("big", *(ib.file(f"/big/{i}", bytes([i]) * (300_000 + i)) for i in range(12))))
    path = tmp_path / "image.tar"
    built = ib.write_docker_archive(path, spec)
    seekable = load_path(path, str(path), None, LoadOptions(use_cache=False, verify=True))

    used: list[int] = []
    real_of = store._StreamMember.of

    def counting_of(*args: Any) -> Any:
        reader = real_of(*args)
        used.append(reader is not None)
        return reader

    monkeypatch.setattr(store._StreamMember, "of", counting_of)
    source = io.BufferedReader(_Trickle(path.read_bytes(), step), 1 << 16)
    streamed = store.StreamStore(source, "stream")
    plan, fmt = plan_store(streamed, None, None)
    image = load_plan(streamed, plan, "stream", fmt, LoadOptions(use_cache=False, verify=True))
    assert image.scans == seekable.scans
    assert [s.diff_id for s in image.scans] == built.diff_ids
    assert used and all(used)  # every member went the direct way
    assert json.loads(streamed.read("manifest.json"))[0]["Layers"]


def test_stream_member_reader_stands_aside_for_a_compressed_stream(tmp_path: Path) -> None:
    import tarfile

    from imgscope.sources import store

    path = tmp_path / "one.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo("a")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"abc"))
    counted = store._Counted(io.BytesIO(path.read_bytes()))
    with tarfile.open(fileobj=counted, mode="r|gz") as tf:  # type: ignore[call-overload]
        member = tf.next()
        assert member is not None
        assert store._StreamMember.of(tf, member, counted) is None


def test_counted_readinto_keeps_the_tail_that_block_at_reads_back() -> None:
    """Reads straight into the caller's buffer, of any size, still leave the last 64 KiB readable by offset."""
    from imgscope.sources import store

    payload = bytes(range(256)) * 2048  # 512 KiB, every offset's byte known
    for sizes in ([512] * 300, [200_000, 7, 100_000], [store._Counted.KEEP, 1, store._Counted.KEEP + 3]):
        counted = store._Counted(io.BytesIO(payload))
        got = bytearray()
        for size in sizes:
            buffer = bytearray(size)
            n = counted.readinto(memoryview(buffer))
            got += buffer[:n]
        assert bytes(got) == payload[: counted.total]
        at = counted.total - store._Counted.KEEP
        assert counted.block_at(at, 1024) == payload[at : at + 1024]
        # reading on past what was read, and asking for what was dropped
        assert counted.block_at(counted.total + 10, 5) == payload[counted.total + 10 : counted.total + 15]
        if at > 4096:
            assert counted.block_at(0, 16) is None


def test_a_sparse_member_of_a_compressed_archive_is_read_by_tarfile(tmp_path: Path) -> None:
    """A GNU sparse member stores fewer bytes than its size: the direct reader must not read past them."""
    import gzip
    import shutil
    import subprocess

    spec = _every_kind_of_change()
    plain = tmp_path / "image.tar"
    built = ib.write_docker_archive(plain, spec)
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-xf", str(plain), "-C", str(unpacked)], check=True)
    with open(unpacked / "hole", "wb") as fh:
        fh.truncate(10 << 20)  # all hole: GNU tar -S stores no data block for it
    names = sorted(p.name for p in unpacked.iterdir())
    sparse = tmp_path / "sparse.tar"
    subprocess.run(["tar", "--format=gnu", "-S", "-cf", str(sparse), "-C", str(unpacked), *names], check=True)
    packed = tmp_path / "sparse.tar.gz"
    with open(sparse, "rb") as src, gzip.open(packed, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert sparse.stat().st_size < 10 << 20  # the member really is stored sparse

    image = load_path(packed, str(packed), None, LoadOptions(use_cache=False, verify=True))
    assert [s.diff_id for s in image.scans] == built.diff_ids
