"""Memory bounds against small hostile inputs (issue 19), at modest sizes.

The full-size cases (400 entries with 1 MiB of xattrs each, a million empty
members, ``--tree`` of a million entries) are measured by
``benchmarks/hostile_bounds.py``; here the same limits are checked on inputs
that build in a moment, and no time or memory is asserted.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from imgscope.cli import app
from imgscope.render import console
from imgscope.scan import MAX_XATTR_ENTRY, MAX_XATTR_LAYER, scan_layer
from imgscope.sources import store
from tests import corpus
from tests.corpus import header, layer, member, pax


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def xattr_layer(count: int, size: int) -> bytes:
    parts = []
    for i in range(count):
        parts.append(pax({b"SCHILY.xattr.user.big": b"v" * size}))
        parts.append(member(f"f{i}", b"x"))
    return layer(*parts)


def kept(scan: object) -> list[int]:
    return [sum(len(k) + len(v) for k, v in e.xattrs) for e in scan.entries]  # type: ignore[attr-defined]


def test_xattrs_over_the_entry_cap_are_dropped_with_a_warning() -> None:
    scan = scan_layer(io.BytesIO(xattr_layer(3, 1_000_000)), "t")
    assert len(scan.entries) == 3
    assert all(size < 100 for size in kept(scan))
    assert all(e.xattrs[0][0] == "(dropped)" for e in scan.entries)
    assert any("extended attributes" in w and "64 KiB" in w for w in scan.warnings)


def test_xattrs_are_bounded_per_layer() -> None:
    size = MAX_XATTR_ENTRY - 100
    count = MAX_XATTR_LAYER // size + 5
    scan = scan_layer(io.BytesIO(xattr_layer(count, size)), "t")
    assert sum(kept(scan)) <= MAX_XATTR_LAYER + count * 100
    assert sum(1 for e in scan.entries if e.xattrs[0][0] == "(dropped)") >= 5
    assert any("4 Mi characters for the layer" in w for w in scan.warnings)


def test_small_xattrs_are_kept_as_they_are() -> None:
    data = layer(pax({b"SCHILY.xattr.security.capability": b"\x01\x00\x00\x02"}), member("ping", b"x"))
    scan = scan_layer(io.BytesIO(data), "t")
    assert scan.entries[0].xattrs == (("security.capability", "\x01\x00\x00\x02"),)


@pytest.mark.parametrize("gzip", [False, True], ids=["tar", "gzip"])
def test_outer_archive_member_count_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gzip: bool) -> None:
    """Counted in members, not bytes: empty members cost tarfile memory and nothing on disk."""
    monkeypatch.setattr(store, "MAX_MEMBERS", 500)
    data = b"".join(header(f"empty/{i}") for i in range(501)) + corpus.END
    path = tmp_path / ("many.tar.gz" if gzip else "many.tar")
    path.write_bytes(corpus.gz(data) if gzip else data)
    code, _, err = cli("inspect", str(path))
    assert code == 2
    assert "more than 500 members" in err and len(err.strip().splitlines()) == 1


def test_outer_archive_under_the_bound_still_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "MAX_MEMBERS", 500)
    path = tmp_path / "image.tar"
    corpus.docker_archive(path, corpus.good_layers())
    code, _, err = cli("inspect", str(path), "--json")
    assert code == 0, err


def test_tree_is_capped_per_directory_and_in_total(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console, "MAX_TREE_CHILDREN", 50)
    monkeypatch.setattr(console, "MAX_TREE_NODES", 120)
    files = {f"big/f{i:04d}": b"x" for i in range(300)}
    files.update({f"d{j}/f{i}": b"y" for j in range(5) for i in range(10)})
    path = tmp_path / "image.tar"
    corpus.docker_archive(path, [corpus.plain_layer(files)])
    for extra in ((), ("--depth", "2"), ("--sort", "path")):
        code, out, err = cli("inspect", str(path), "--tree", "--no-color", *extra)
        assert code == 0, err
        names = [line for line in out.splitlines() if " f" in line and "L0" in line]
        assert len(names) <= 120
        assert "... 250 more" in out  # 300 in big/, 50 shown
        if extra == ("--sort", "path"):
            assert "f0000" in out and "f0049" in out and "f0050" not in out


def test_tree_lists_everything_under_the_caps(tmp_path: Path) -> None:
    files = {f"a/f{i}": b"x" for i in range(30)}
    path = tmp_path / "image.tar"
    corpus.docker_archive(path, [corpus.plain_layer(files)])
    code, out, _ = cli("inspect", str(path), "--tree", "--no-color")
    assert code == 0
    assert all(f"f{i} " in out for i in range(30)) and "more (narrow" not in out


def test_tree_directory_sizes_sum_their_files() -> None:
    from imgscope.model import DIR, FILE, Entry
    from imgscope.stack import FinalEntry

    sizes = {"/a/b/c/f": 5, "/a/b/g": 7, "/a/h": 11, "/x/y": 13}
    final = {p: FinalEntry(Entry(p, FILE, 0o644, 0, 0, n, n, 0), 0) for p, n in sizes.items()}
    final["/a/b"] = FinalEntry(Entry("/a/b", DIR, 0o755, 0, 0, 0, 0, 0), 0)
    out = Console(width=100, record=True, color_system=None)
    out.print(console.tree_view(final, sort="path"))
    text = out.export_text()
    for line, total in (("/ (36 B)", 36), ("a/  23 B", 23), ("b/  12 B", 12), ("c/  5 B", 5), ("x/  13 B", 13)):
        assert line in text, (line, total, text)
