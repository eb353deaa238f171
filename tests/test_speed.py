"""The fast paths of issue 8 give the same answers as the slow ones.

Oracles: ``tarfile`` (an independent tar reader) for what a layer holds,
``hashlib``/``xxhash`` over the raw bytes for DiffIDs and file digests,
``json.dumps``/``json.loads`` for the streamed JSON, and the serial scan
for the parallel one.  Everything is small: the heavy measurements live in
``benchmarks/``, never in pytest.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import xxhash

from imgscope import cache, scan
from imgscope.cli.common import print_json
from imgscope.sources import store
from imgscope.sources.archive import load_path
from imgscope.sources.common import LoadOptions
from tests import imagebuild as ib


def _layer_with_big_files() -> tuple[bytes, dict[str, bytes]]:
    """A ~5 MiB layer whose files straddle the scanner's 1 MiB reads, with a PAX name among them."""
    files: dict[str, bytes] = {}
    entries = [ib.directory("/data")]
    for i, size in enumerate([0, 1, 511, 512, 513, (1 << 20) - 700, 1 << 20, (1 << 20) + 1, 3 * (1 << 20) + 5, 77]):
        content = hashlib.sha256(str(i).encode()).digest() * (size // 32 + 1)
        path = f"/data/f{i:02d}" + ("-" + "long" * 40 if i == 8 else "")
        files[path] = content[:size]
        entries.append(ib.file(path, content[:size], mtime=ib.T0 + i, mode=0o600 + i))
    return ib.layer_tar(entries), files


def test_scan_across_chunk_boundaries_matches_tarfile_and_hashlib() -> None:
    data, files = _layer_with_big_files()
    result = scan.scan_layer(io.BytesIO(data), "layer")
    assert result.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()  # threaded SHA-256, in order
    assert result.tar_bytes == len(data)
    by_path = {e.path: e for e in result.entries}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for member in tf:
            entry = by_path["/" + member.name.rstrip("/")]
            assert (entry.mode, entry.mtime, entry.uid, entry.gid) == (member.mode, member.mtime, 0, 0)
            if member.isfile():
                assert entry.size == member.size
                assert entry.digest == xxhash.xxh3_64_hexdigest(files["/" + member.name])


def test_trusted_diff_id_skips_the_sha_but_not_the_content() -> None:
    data, _ = _layer_with_big_files()
    trusted = scan.scan_layer(io.BytesIO(data), "layer", diff_id="sha256:" + "ab" * 32)
    computed = scan.scan_layer(io.BytesIO(data), "layer")
    assert trusted.diff_id == "sha256:" + "ab" * 32
    assert trusted.entries == computed.entries


def test_visitor_sees_each_file_once_even_from_a_reused_buffer() -> None:
    data, files = _layer_with_big_files()
    seen: dict[str, bytearray] = {}

    def visitor(path: str, size: int) -> Any:
        buf = seen.setdefault(path, bytearray())
        return buf.extend  # copies: the view is only valid during the call

    scan.scan_layer(io.BytesIO(data), "layer", visitor=visitor)
    assert {p: bytes(b) for p, b in seen.items()} == files


@pytest.mark.parametrize(
    "field",
    [
        b"00000644 ",  # 8 digits and no NUL: the fast path must not cut a digit
        b"     644\x00",  # leading blanks
        b"0000644\x00",  # the common form
    ],
)
def test_odd_numeric_fields_read_like_tarfile(field: bytes) -> None:
    info = tarfile.TarInfo("odd")
    info.size = 3
    info.mtime = ib.T0
    header = bytearray(info.tobuf(tarfile.USTAR_FORMAT))
    header[100 : 100 + len(field[:8])] = field[:8]
    header[148:156] = b"        "
    header[148:155] = f"{sum(header):06o}\x00".encode()
    data = bytes(header) + b"abc".ljust(512, b"\x00") + b"\x00" * 1024
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        expected = tf.getmembers()[0].mode
    (entry,) = scan.scan_layer(io.BytesIO(data), "layer").entries
    assert entry.mode == expected & 0o7777


def _three_layer_archive(tmp_path: Path) -> tuple[Path, ib.Built]:
    spec = ib.ImageSpec(
        steps=(
            ib.run("base", *(ib.file(f"/base/{i}", f"base {i}" * i) for i in range(50))),
            ib.run("app", ib.file("/app/main.py", "print(1)"), ib.whiteout("/base/3")),
            ib.run("more", *(ib.file(f"/more/{i}", os.urandom(0) + bytes([i]) * 3000) for i in range(20))),
        )
    )
    path = tmp_path / "image.tar"
    return path, ib.write_docker_archive(path, spec)


def test_parallel_scan_equals_serial_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, built = _three_layer_archive(tmp_path)
    serial = load_path(path, str(path), None, LoadOptions(use_cache=False, verify=True))
    monkeypatch.setattr(store, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(store, "_cores", lambda: (2, 2.0))
    parallel = load_path(path, str(path), None, LoadOptions(use_cache=False, verify=True))
    assert parallel.scans == serial.scans
    assert [s.diff_id for s in parallel.scans] == built.diff_ids


def test_no_cache_trusts_the_config_but_the_cache_never_does(tmp_path: Path) -> None:
    """A lying config may name the DiffID of someone else's layer: that must never key a cached scan."""
    path, built = _three_layer_archive(tmp_path)
    config = json.loads(built.config)
    lie = "sha256:" + "0" * 64
    config["rootfs"]["diff_ids"][1] = lie
    liar = tmp_path / "liar.tar"
    with tarfile.open(path) as src, tarfile.open(liar, "w") as dst:
        manifest = json.loads(src.extractfile("manifest.json").read())  # type: ignore[union-attr]
        new_config = ib.jdump(config)
        name = hashlib.sha256(new_config).hexdigest() + ".json"
        manifest[0]["Config"] = name
        for member in src:
            if member.name in ("manifest.json", manifest[0]["Config"]) or member.name.endswith(".json"):
                continue
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        for member_name, blob in ((name, new_config), ("manifest.json", ib.jdump(manifest))):
            info = tarfile.TarInfo(member_name)
            info.size = len(blob)
            dst.addfile(info, io.BytesIO(blob))
    trusted = load_path(liar, str(liar), None, LoadOptions(use_cache=False))
    assert trusted.scans[1].diff_id == lie and not trusted.warnings
    cached = load_path(liar, str(liar), None, LoadOptions())
    truth = hashlib.sha256(built.layers[1]).hexdigest()
    assert cached.scans[1].diff_id == "sha256:" + truth
    assert any("DiffID" in w for w in cached.warnings)
    db = cache.open_cache()
    assert db.get(lie) is None and db.get("sha256:" + truth) is not None


def test_pack_unpack_round_trip(tmp_path: Path) -> None:
    path, _ = _three_layer_archive(tmp_path)
    image = load_path(path, str(path), None, LoadOptions(use_cache=False))
    for layer in image.scans:
        assert cache.unpack(cache.pack(layer)) == layer


def _printed(data: Any, capsys: pytest.CaptureFixture[str]) -> str:
    print_json(data)
    return capsys.readouterr().out


def test_streamed_json_parses_to_the_same_value(capsys: pytest.CaptureFixture[str]) -> None:
    data = {
        "schema_version": 1,
        "empty": {},
        "nested": {"a": [1, 2, {"b": None}], "c": [], "d": [{"x": 1.5, "y": "é"}, [1, [2]]]},
        "files": [{"path": f"/f{i}", "size": i, "hash": None} for i in range(5)],
        "surrogate": "caf\udce9.txt",
    }
    out = _printed(data, capsys)
    out.encode("utf-8")  # valid UTF-8: the lone surrogate is written as a JSON escape...
    assert '"caf\\udce9.txt"' in out
    assert json.loads(out) == data  # ... which reads back as the same string
    assert out.count("\n") > 5  # indented, one file per line
    assert '{"path": "/f3", "size": 3, "hash": null}' in out


def test_streamed_json_takes_generators(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"path": f"/f{i}", "n": i} for i in range(3)]
    out = _printed({"lazy": (r for r in rows), "none": (r for r in []), "deep": iter([{"a": [1, {"b": 2}]}])}, capsys)
    assert json.loads(out) == {"lazy": rows, "none": [], "deep": [{"a": [1, {"b": 2}]}]}


def test_inspect_json_is_the_same_lazy_or_not(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from imgscope import stack
    from imgscope.render.json_report import inspect_report

    path, _ = _three_layer_archive(tmp_path)
    stacked = stack.build(load_path(path, str(path), None, LoadOptions(use_cache=False)))
    eager = inspect_report(stacked)
    assert json.loads(_printed(inspect_report(stacked, lazy=True), capsys)) == json.loads(json.dumps(eager))


def test_paused_gc_restores_the_collector() -> None:
    import gc

    assert gc.isenabled()
    with scan.paused_gc():
        assert not gc.isenabled()
        with scan.paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_help_imports_nothing_heavy() -> None:
    import subprocess

    trace = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "imgscope", "--help"], capture_output=True, text=True, check=True
    ).stderr
    modules = {line.rsplit("|", 1)[-1].strip() for line in trace.splitlines() if line.startswith("import time:")}
    assert "imgscope.cli" in modules  # the trace is real
    heavy = {m for m in modules if m.split(".")[0] in ("docker", "textual", "concurrent") or "analysis" in m}
    heavy |= {m for m in modules if m in ("imgscope.stack", "imgscope.sources.store", "multiprocessing")}
    assert not heavy


class _Chunks:
    """A source that hands out numbered chunks, then fails or ends."""

    def __init__(self, count: int, fail: bool = False) -> None:
        self.left = count
        self.fail = fail
        self.n = 0

    def read(self, size: int = -1) -> bytes:
        if self.left == 0:
            if self.fail:
                raise store.ImgscopeError("the source broke")
            return b""
        self.left -= 1
        self.n += 1
        return bytes([self.n]) * 1000


def test_prefetch_keeps_every_byte_in_order_across_stop() -> None:
    expected = b"".join(bytes([i]) * 1000 for i in range(1, 41))
    reader = store._Prefetch(_Chunks(40))
    first = reader.read(2500)
    reader.stop()  # the helper has read ahead: nothing may be lost or reordered
    rest = b""
    while chunk := reader.read(4096):
        rest += chunk
    assert first + rest == expected


def test_prefetch_raises_the_source_failure_where_the_reader_reads() -> None:
    reader = store._Prefetch(_Chunks(3, fail=True))
    assert reader.read(3000) == b"\x01" * 1000  # a raw read may be short
    with pytest.raises(store.ImgscopeError, match="the source broke"):
        while reader.read(4096):
            pass
    reader.stop()


def test_stream_read_without_hashing_takes_the_config_diff_ids_and_is_never_cached(tmp_path: Path) -> None:
    from imgscope.sources.archive import plan_store
    from imgscope.sources.common import load_plan

    path, built = _three_layer_archive(tmp_path)
    unhashed = store.StreamStore(io.BytesIO(path.read_bytes()), "stream", diff_ids=False)
    plan, fmt = plan_store(unhashed, None, None)
    image = load_plan(unhashed, plan, "stream", fmt, LoadOptions())
    assert [s.diff_id for s in image.scans] == built.diff_ids
    assert all(cache.open_cache().get(d) is None for d in built.diff_ids)
    hashed = store.StreamStore(io.BytesIO(path.read_bytes()), "stream")
    assert [s.entries for s in load_plan(hashed, plan, "stream", fmt, LoadOptions()).scans] == [
        s.entries for s in image.scans
    ]
    assert all(cache.open_cache().get(d) is not None for d in built.diff_ids)
