"""The layer scanner against tars written by Python's tarfile (an independent writer)."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import random
import tarfile

import pytest
import xxhash
import zstandard

from imgscope.errors import ImgscopeError
from imgscope.model import DIR, FILE, HARDLINK, SYMLINK
from imgscope.scan import climbs, normalize, scan_layer


def make_tar(members: list[tuple[tarfile.TarInfo, bytes | None]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return buf.getvalue()


def info(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, **kw: object) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.mtime = 1700000000
    for key, value in kw.items():
        setattr(ti, key, value)
    return ti


def scan(data: bytes, name: str = "layer") -> object:
    return scan_layer(io.BytesIO(data), name)


def test_entries_sizes_and_hashes() -> None:
    content = b"hello world\n" * 100
    data = make_tar(
        [
            (info("etc/", tarfile.DIRTYPE, 0o755), None),
            (info("etc/app.conf", mode=0o600, uid=10, gid=20), content),
            (info("etc/link", tarfile.SYMTYPE, linkname="app.conf"), None),
            (info("etc/hard", tarfile.LNKTYPE, linkname="etc/app.conf"), None),
        ]
    )
    result = scan_layer(io.BytesIO(data), "t")
    assert result.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert result.tar_bytes == len(data)
    by_path = {e.path: e for e in result.entries}
    assert set(by_path) == {"/etc", "/etc/app.conf", "/etc/link", "/etc/hard"}
    conf = by_path["/etc/app.conf"]
    assert (conf.type, conf.mode, conf.uid, conf.gid, conf.size) == (FILE, 0o600, 10, 20, len(content))
    assert conf.digest == xxhash.xxh3_64(content).hexdigest()
    assert by_path["/etc"].type == DIR and by_path["/etc"].size == 0
    assert by_path["/etc/link"].type == SYMLINK and by_path["/etc/link"].size == len("app.conf")
    hard = by_path["/etc/hard"]
    assert hard.type == HARDLINK and hard.size == 0 and hard.link == "/etc/app.conf" and hard.digest == conf.digest
    assert result.size == len(content) + len("app.conf")


def test_whiteouts_and_opaque_are_normalised() -> None:
    data = make_tar(
        [
            (info("tmp/.wh.debs"), b""),
            (info("app/data/.wh..wh..opq"), b""),
            (info("app/data/c.txt"), b"new\n"),
            (info("x/.wh..wh.plnk"), b""),
        ]
    )
    result = scan_layer(io.BytesIO(data), "t")
    assert result.whiteouts == ("/tmp/debs",)
    assert result.opaques == ("/app/data",)
    assert [e.path for e in result.entries] == ["/app/data/c.txt"]


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_long_names_in_every_format(fmt: int) -> None:
    long_dir = "d" * 90 + "/" + "e" * 90
    name = long_dir + "/file.txt"
    data = make_tar([(info(name), b"x")], fmt=fmt)
    result = scan_layer(io.BytesIO(data), "t")
    assert [e.path for e in result.entries] == ["/" + name]


def test_pax_xattrs_and_non_utf8_names() -> None:
    ti = info("bin/ping", mode=0o4755)
    ti.pax_headers = {"SCHILY.xattr.security.capability": "\x01\x00\x00\x02"}
    raw_name = "caf\udce9"  # invalid UTF-8 byte 0xe9 kept as a surrogate escape
    data = make_tar([(ti, b"ping"), (info(raw_name), b"x")], fmt=tarfile.PAX_FORMAT)
    result = scan_layer(io.BytesIO(data), "t")
    ping = next(e for e in result.entries if e.path == "/bin/ping")
    assert ping.mode == 0o4755
    assert ping.xattrs == (("security.capability", "\x01\x00\x00\x02"),)
    assert any(e.path.startswith("/caf") for e in result.entries)


def test_dot_dot_escapes_are_clamped_as_docker_does_and_prefixes_stripped() -> None:
    data = make_tar([(info("../../etc/evil"), b"x"), (info("./ok"), b"y"), (info("/abs"), b"z")])
    result = scan_layer(io.BytesIO(data), "t")
    assert sorted(e.path for e in result.entries) == ["/abs", "/etc/evil", "/ok"]
    assert result.climbed == ("/etc/evil",)
    assert any("climbs above the root" in w for w in result.warnings)


def test_climbing_whiteout_records_its_target_and_root_is_not_recorded() -> None:
    """``../.wh.etc`` deletes /etc (it ships no /.wh.etc); ``a/../..`` is the root, which ships nothing."""
    data = make_tar(
        [
            (info("../.wh.etc"), b""),
            (info("a/../..", tarfile.DIRTYPE, 0o755), None),
            (info("../x"), b"x"),
        ]
    )
    result = scan_layer(io.BytesIO(data), "t")
    assert [e.path for e in result.entries] == ["/x"]
    assert result.whiteouts == ("/etc",)
    assert result.climbed == ("/etc", "/x")
    # The warning says what Docker does with each: a whiteout is applied, a file is put.
    assert "entry '../.wh.etc' climbs above the root; Docker applies the whiteout at '/.wh.etc'" in result.warnings
    assert "entry '../x' climbs above the root; Docker puts it at '/x'" in result.warnings


def test_normalize() -> None:
    assert normalize("./a/b/../c") == "/a/c"
    assert normalize("a/../../b") == "/b"
    assert normalize("//../x/./y//") == "/x/y"
    assert normalize("/") == "/"
    assert climbs("a/../../b") and climbs("../x") and not climbs("a/b/../c") and not climbs("..a/b")


def test_char_device_zero_zero_is_a_whiteout() -> None:
    dev = info("etc/gone", tarfile.CHRTYPE, devmajor=0, devminor=0)
    result = scan_layer(io.BytesIO(make_tar([(dev, None)])), "t")
    assert result.whiteouts == ("/etc/gone",)
    assert result.entries == ()


def test_duplicate_entry_last_wins() -> None:
    data = make_tar([(info("a"), b"first"), (info("a"), b"second!")])
    result = scan_layer(io.BytesIO(data), "t")
    assert len(result.entries) == 1 and result.entries[0].size == len(b"second!")


def test_go_mode_bits_are_masked() -> None:
    data = bytearray(make_tar([(info("d/", tarfile.DIRTYPE, 0o755), None)], fmt=tarfile.USTAR_FORMAT))
    data[100:108] = b"0040755\x00"  # Go writes type bits into mode
    chk = sum(data[:148]) + 8 * 32 + sum(data[156:512])
    data[148:156] = f"{chk:06o}\x00 ".encode()
    result = scan_layer(io.BytesIO(bytes(data)), "t")
    assert result.entries[0].mode == 0o755


def _compressors() -> list[tuple[str, object]]:
    return [
        ("gzip", lambda b: gzip.compress(b, mtime=0)),
        ("gzip-multi", lambda b: gzip.compress(b[:1024], mtime=0) + gzip.compress(b[1024:], mtime=0)),
        ("zstd", lambda b: zstandard.ZstdCompressor().compress(b)),
        (
            "zstd-multi",
            lambda b: zstandard.ZstdCompressor().compress(b[:700]) + zstandard.ZstdCompressor().compress(b[700:]),
        ),
        ("xz", lzma.compress),
        ("bzip2", bz2.compress),
    ]


@pytest.mark.parametrize("name,compress", _compressors(), ids=[c[0] for c in _compressors()])
def test_compression_is_sniffed(name: str, compress: object) -> None:
    data = make_tar([(info("f"), b"content" * 300), (info("g"), b"more")])
    packed = compress(data)  # type: ignore[operator]
    result = scan_layer(io.BytesIO(packed), name)
    assert result.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert sorted(e.path for e in result.entries) == ["/f", "/g"]


def test_empty_layers() -> None:
    go_empty = b"\x00" * 1024
    result = scan_layer(io.BytesIO(go_empty), "t")
    assert result.diff_id == "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
    assert result.entries == () and result.size == 0
    zero = scan_layer(io.BytesIO(b""), "t")
    assert zero.entries == ()


def test_truncated_and_garbage_layers_fail_with_one_line() -> None:
    data = make_tar([(info("f"), b"x" * 5000)])
    with pytest.raises(ImgscopeError, match="truncated"):
        scan_layer(io.BytesIO(data[:2048]), "layer-a")
    with pytest.raises(ImgscopeError, match="not a tar"):
        scan_layer(io.BytesIO(b"this is not a tar archive at all" * 40), "layer-b")
    with pytest.raises(ImgscopeError, match="does not decompress"):
        noisy = make_tar([(info("r"), random.Random(1).randbytes(20000))])
        scan_layer(io.BytesIO(gzip.compress(noisy)[:5000]), "layer-c")
    with pytest.raises(ImgscopeError) as err:
        scan_layer(io.BytesIO(b"\x1f\x8b\x08" + b"\xff" * 50), "layer-d")
    assert "layer-d" in str(err.value) and "\n" not in str(err.value)


def test_max_bytes_stops_a_bomb() -> None:
    data = make_tar([(info("big"), b"\x00" * (4 << 20))])
    packed = gzip.compress(data)
    assert len(packed) < 64 << 10
    with pytest.raises(ImgscopeError, match="max-layer-bytes"):
        scan_layer(io.BytesIO(packed), "bomb", max_bytes=1 << 20)


def test_visitor_receives_every_regular_file() -> None:
    seen: dict[str, bytearray] = {}

    def visitor(path: str, size: int) -> object:
        buf = seen.setdefault(path, bytearray())
        return buf.extend

    data = make_tar([(info("a"), b"A" * 3000), (info("b", tarfile.SYMTYPE, linkname="a"), None), (info("c"), b"")])
    scan_layer(io.BytesIO(data), "t", visitor=visitor)  # type: ignore[arg-type]
    assert {k: bytes(v) for k, v in seen.items()} == {"/a": b"A" * 3000, "/c": b""}


def test_a_whiteout_a_later_entry_writes_over_is_kept_but_marked_undone() -> None:
    """``.wh.a`` then ``a/``: Docker's directory replaces the whiteout device (the lower /a shows through
    it), while dive, reading the markers, still deletes /a: the scan keeps both facts."""
    data = make_tar(
        [
            (info(".wh.a"), b""),
            (info("a", tarfile.DIRTYPE, 0o755), None),
            (info(".wh.b"), b""),
            (info("c/.wh.d"), b""),  # below c, which a file then replaces: undone with it
            (info("c"), b"x"),
        ]
    )
    result = scan_layer(io.BytesIO(data), "t")
    assert result.whiteouts == ("/a", "/b", "/c/d")
    assert result.undone == ("/a", "/c/d")
