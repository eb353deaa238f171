"""The scanner's C fast path (``imgscope/_tarscan.c``) gives what the Python loop gives, on every input.

The Python loop is the oracle: the rest of the suite checks it against GNU
tar, Docker and hand-written expectations.  The C loop only takes entries
whose rules are simple and leaves every other one to the Python loop, so each
input here is scanned twice, with the fast path and without it
(``scan._fast`` set to None, as ``IMGSCOPE_PURE_SCAN=1`` does), and the two
must agree: the same scan (every entry, field by field, in the same order),
the same warnings, or the same error line.

Inputs: every test corpus (good layers, the hostile corpus's layers, the
fuzz seeds, the mapped-scan layers, the sample images), hand-made headers at
each edge the C loop decides on, and property-based layers whose headers are
varied field by field (names, prefixes, numeric field forms, types,
checksums, duplicates, whiteouts), read whole and in chunks that cut entries.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from imgscope import scan as scanning
from imgscope.errors import ImgscopeError
from imgscope.model import LayerScan
from imgscope.sources import store
from tests import corpus
from tests.conftest import SAMPLES
from tests.test_fuzz import SEED_LAYERS
from tests.test_mapped_scan import LAYERS as MAPPED_LAYERS

FUZZ = settings(
    max_examples=int(os.environ.get("IMGSCOPE_FUZZ_EXAMPLES", "0") or 0) or 150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=not os.environ.get("IMGSCOPE_FUZZ_EXAMPLES"),
    database=None,
)


class _Dribble(io.RawIOBase):
    """A stream that hands out at most ``step`` bytes per read: chunk ends fall inside entries."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._step = step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._step, len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


def _scan(data: bytes, step: int | None, trusted: str | None) -> LayerScan | str:
    raw = io.BytesIO(data) if step is None else _Dribble(data, step)
    try:
        return scanning.scan_layer(raw, "layer", diff_id=trusted)
    except ImgscopeError as exc:
        return f"error: {exc}"


def _both(monkeypatch: pytest.MonkeyPatch, data: bytes, step: int | None = None, trusted: str | None = None) -> None:
    assert scanning._fast is not None, "the C fast path is not built (imgscope/_tarscan.c): pip install -e ."
    fast = _scan(data, step, trusted)
    with monkeypatch.context() as m:
        m.setattr(scanning, "_fast", None)
        pure = _scan(data, step, trusted)
    assert fast == pure


def _layers_of(archive: Path) -> list[bytes]:
    with tarfile.open(archive) as tf:
        out = []
        for member in tf:
            if member.isfile() and (member.name.endswith("layer.tar") or member.name.startswith("blobs/")):
                fh = tf.extractfile(member)
                assert fh is not None
                out.append(fh.read())
        return out


def _corpus() -> dict[str, bytes]:
    layers: dict[str, bytes] = {}
    for i, data in enumerate(corpus.good_layers()):
        layers[f"good-{i}"] = data
    for i, data in enumerate(SEED_LAYERS):
        layers[f"fuzz-seed-{i}"] = data
    for name, data in MAPPED_LAYERS.items():
        layers[f"mapped-{name}"] = data
    for archive in sorted(SAMPLES.glob("*.tar")):
        for i, data in enumerate(_layers_of(archive)):
            layers[f"{archive.stem}-{i}"] = data
    return layers


CORPUS = _corpus()


def test_the_fast_path_is_built_and_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    """CI builds the extension (a C compiler is there): a silent fallback would hide a broken build."""
    assert scanning._fast is not None
    calls: list[int] = []
    real = scanning._fast

    def counting(*args: object) -> int:
        at = real(*args)  # type: ignore[arg-type]
        calls.append(at - args[1])  # type: ignore[operator]
        return at

    monkeypatch.setattr(scanning, "_fast", counting)
    data = corpus.plain_layer({f"dir/file{i}": b"x" * i for i in range(50)})
    scan = scanning.scan_layer(io.BytesIO(data), "layer")
    assert len(scan.entries) == 51  # the directory and 50 files
    # The first header is read (and taken) by the Python loop, which fills the buffer; one call
    # then took every other entry, stopping only at the end-of-archive marker.
    assert calls == [len(data) - len(corpus.END) - 512]


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_every_corpus_layer_scans_the_same(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    _both(monkeypatch, CORPUS[name])
    _both(monkeypatch, CORPUS[name], trusted="sha256:" + "0" * 64)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_every_corpus_layer_scans_the_same_in_cut_chunks(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    data = CORPUS[name]
    if len(data) > 1 << 16:
        data = data[: 1 << 16]  # a cut archive: both must fail the same way, and quickly
    _both(monkeypatch, data, step=700)


def test_mapped_layers_scan_the_same(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """In a mapped file the view is the whole file and only ``end`` grows: the C loop must stop at ``end``."""
    for name, data in MAPPED_LAYERS.items():
        path = tmp_path / f"{name}.tar"
        path.write_bytes(b"\x00" * 1000 + data)
        for limit in (None, 3000, scanning.CHUNK + 1):
            job = (str(path), 1000, len(data), "layer", limit, None)
            try:
                fast: LayerScan | str = store._scan_window(job)
            except ImgscopeError as exc:
                fast = str(exc)
            with monkeypatch.context() as m:
                m.setattr(scanning, "_fast", None)
                try:
                    pure: LayerScan | str = store._scan_window(job)
                except ImgscopeError as exc:
                    pure = str(exc)
            assert fast == pure, name


# --------------------------------------------------------------------------- edges of the C loop


def _raw_header(
    name: bytes,
    *,
    typeflag: bytes = b"0",
    size: int = 0,
    prefix: bytes = b"",
    magic: bytes = b"ustar\x0000",
    fields: dict[int, bytes] | None = None,
    checksum: bytes | None = None,
    linkname: bytes = b"",
) -> bytes:
    """A header with ``fields`` (offset -> bytes) written over the usual ones, then its checksum."""
    block = bytearray(corpus.header(b"", typeflag=typeflag, size=size, linkname=linkname))
    block[0:100] = name[:100].ljust(100, b"\x00")
    block[257:265] = magic
    block[345:500] = prefix[:155].ljust(155, b"\x00")
    for at, value in (fields or {}).items():
        block[at : at + len(value)] = value
    block[148:156] = b" " * 8
    block[148:156] = checksum if checksum is not None else b"%06o\x00 " % sum(block)
    return bytes(block)


EDGES: dict[str, bytes] = {
    "name-100-chars": _raw_header(b"n" * 100),
    "name-with-prefix": _raw_header(b"file", prefix=b"usr/lib/" + b"p" * 140),
    "prefix-ending-in-slash": _raw_header(b"file", prefix=b"usr/lib/"),
    "prefix-gnu-magic": _raw_header(b"file", prefix=b"ignored", magic=b"ustar  \x00"),
    "dot-slash": _raw_header(b"./usr/bin/x"),
    "dot-slash-slash": _raw_header(b".//usr/bin/x"),
    "dot-slash-alone": _raw_header(b"./", typeflag=b"5"),
    "dot-dot-slash": _raw_header(b"../etc/passwd"),
    "dot-slash-dot": _raw_header(b"././x"),
    "inner-dot": _raw_header(b"a/./b"),
    "inner-dot-dot": _raw_header(b"a/../../b"),
    "double-slash": _raw_header(b"a//b"),
    "trailing-slashes": _raw_header(b"a/b///", typeflag=b"5"),
    "leading-slashes": _raw_header(b"///abs/path"),
    "dots-in-a-name": _raw_header(b"a..b/c.d"),
    "hidden-file": _raw_header(b"root/.profile"),
    "whiteout": _raw_header(b"etc/.wh.gone"),
    "opaque": _raw_header(b"etc/.wh..wh..opq"),
    "stargz-name": _raw_header(b"stargz.index.json"),
    "non-ascii-name": _raw_header("caf\u00e9".encode()),
    "invalid-utf8-name": _raw_header(b"caf\xe9"),
    "mode-with-a-space": _raw_header(b"m", fields={100: b" 000644\x00"}),
    "mode-8-digits": _raw_header(b"m", fields={100: b"00000644"}),
    "mode-high-bits": _raw_header(b"m", fields={100: b"0104755\x00"}),
    "uid-large": _raw_header(b"u", fields={108: b"7777777\x00", 116: b"0001750\x00"}),
    "uid-base256": _raw_header(b"u", fields={108: b"\x80\x00\x00\x00\x00\x00\x01\x00"}),
    "size-base256": _raw_header(b"s", fields={124: b"\x80" + b"\x00" * 10 + b"\x05"}),
    "size-no-terminator": _raw_header(b"s", fields={124: b"000000000005"}),
    "mtime-space": _raw_header(b"t", fields={136: b"14544223667 "}),
    "checksum-wrong": _raw_header(b"c", checksum=b"000000\x00 "),
    "checksum-7-digits": _raw_header(b"c", checksum=b"0000000\x00"),
    "checksum-signed": _raw_header(b"c", fields={300: b"\xff"}),
    "symlink-100": _raw_header(b"l", typeflag=b"2", linkname=b"t" * 100),
    "symlink-non-ascii": _raw_header(b"l", typeflag=b"2", linkname="\u00e9".encode()),
    "symlink-with-size": _raw_header(b"l", typeflag=b"2", size=700),
    "dir-with-size": _raw_header(b"d", typeflag=b"5", size=700),
    "contiguous-file": _raw_header(b"c7", typeflag=b"7"),
    "nul-typeflag": _raw_header(b"c0", typeflag=b"\x00"),
    "hardlink": _raw_header(b"h", typeflag=b"1", linkname=b"m"),
    "fifo": _raw_header(b"f", typeflag=b"6"),
}


def _layer_with(*headers: bytes, data: bytes = b"") -> bytes:
    """A plain start, the headers (each with ``data`` when it is a file), a plain file after, the end."""
    parts = [corpus.member("before", b"first")]
    for h in headers:
        size = int(h[124:136].rstrip(b"\x00 ") or b"0", 8) if h[124] < 0x80 else 0
        parts.append(h + corpus.pad(b"d" * size))
    parts.append(corpus.member("after", b"last"))
    return corpus.layer(*parts)


@pytest.mark.parametrize("name", sorted(EDGES))
def test_each_edge_of_the_fast_path_scans_the_same(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    _both(monkeypatch, _layer_with(EDGES[name]))


def test_a_path_written_twice_goes_to_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """The second copy shadows the first (kept for audit), the directory replaced by a file takes its children."""
    data = corpus.layer(
        corpus.header("d", typeflag=b"5"),
        corpus.member("d/a", b"1"),
        corpus.member("x", b"one"),
        corpus.member("x", b"two"),
        corpus.member("d", b"now a file"),
        corpus.member("e/f", b"after the index exists"),
        corpus.member("e/g", b"and more"),
    )
    _both(monkeypatch, data)
    scan = scanning.scan_layer(io.BytesIO(data), "layer")
    assert [e.path for e in scan.shadowed] == ["/x", "/d", "/d/a"]


def test_writes_after_a_whiteout_are_told_to_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A whiteout a later plain entry writes over is undone, whichever loop took that entry."""
    data = corpus.layer(
        corpus.member("keep", b"k"),
        corpus.member(".wh.a", b""),
        corpus.header("a", typeflag=b"5"),
        corpus.member("a/f", b"f"),
        corpus.member("sub/.wh.b", b""),
        corpus.member("sub/b", b"file over the whiteout"),
    )
    _both(monkeypatch, data)
    scan = scanning.scan_layer(io.BytesIO(data), "layer")
    assert scan.undone == ("/a", "/sub/b")


def test_the_fast_path_stops_at_end_of_what_was_read() -> None:
    """``end`` bounds the C loop: a header or data past it is left to the Python loop (which reads on)."""
    assert scanning._fast is not None
    data = corpus.member("a", b"x" * 600) + corpus.member("b", b"y")
    view = memoryview(data)
    for end, taken in ((511, 0), (512 + 1023, 0), (512 + 1024, 1536), (1536 + 511, 1536), (len(data), len(data))):
        entries: dict[str, object] = {}
        at = scanning._fast(view, 0, end, entries, {}, None, None)
        assert at == taken, end
    with pytest.raises(ValueError):
        scanning._fast(view, 0, len(data) + 1, {}, {}, None, None)


@st.composite
def _header_parts(draw: st.DrawFn) -> bytes:
    """One entry whose header fields are each drawn from plain and odd forms."""
    part = st.sampled_from([b"a", b"b", b".", b"..", b"", b".wh.a", b".wh..wh..opq", b"dir", b"\xc3\xa9", b"x" * 60])
    name = b"/".join(draw(st.lists(part, min_size=1, max_size=4)))
    lead = draw(st.sampled_from([b"", b"/", b"./", b"//"]))
    tail = draw(st.sampled_from([b"", b"/", b"//"]))
    typeflag = draw(st.sampled_from([b"0", b"0", b"5", b"2", b"1", b"\x00", b"7", b"3", b"6", b"x", b"L"]))
    size = draw(st.sampled_from([0, 1, 511, 512, 513, 2000]))
    fields: dict[int, bytes] = {}
    if draw(st.booleans()):
        at = draw(st.sampled_from([100, 108, 116, 124, 136]))
        fields[at] = draw(st.sampled_from([b" ", b"8", b"\x00", b"\x80", b"7777777\x00", b"+", b"0_1"]))
    prefix = draw(st.sampled_from([b"", b"", b"pre", b"pre/", b"./pre", b"p" * 155]))
    magic = draw(st.sampled_from([b"ustar\x0000", b"ustar  \x00"]))
    linkname = draw(st.sampled_from([b"", b"target", b"a", b"../up", b"\xff"]))
    checksum = None if draw(st.integers(0, 9)) else b"0000000\x00"
    head = _raw_header(
        lead + name + tail,
        typeflag=typeflag,
        size=size,
        prefix=prefix,
        magic=magic,
        fields=fields,
        checksum=checksum,
        linkname=linkname,
    )
    return head + corpus.pad(b"c" * size)


@FUZZ
@given(st.lists(_header_parts(), min_size=1, max_size=12), st.sampled_from([None, 512, 700, 4096]))
@example([_raw_header(b"./", typeflag=b"5"), _raw_header(b"./a")], None)
def test_varied_headers_scan_the_same(parts: list[bytes], step: int | None) -> None:
    data = corpus.layer(*parts)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _both(monkeypatch, data, step=step)
        _both(monkeypatch, gzip.compress(data, mtime=0), step=step)
