"""The one-call header check decides as the careful one does, or stands aside.

``scan._plain_header`` verifies a header's checksum with one ``adler32`` of
the block and parses its numeric fields in one go.  The oracle is the
careful path it short-cuts: ``_checksum_ok`` (which sums the bytes both as
unsigned and as signed chars, as Go's archive/tar does) and
``_octal_fields``.  Whenever the short cut answers, they must agree with it;
on the headers real tars write, it must answer.
"""

from __future__ import annotations

import tarfile

from hypothesis import given, settings
from hypothesis import strategies as st

from imgscope import scan


def _header(name: str = "usr/lib/x.py", fmt: int = tarfile.GNU_FORMAT, **fields: object) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = 12345
    info.mtime = 1_700_000_000
    info.mode = 0o644
    for key, value in fields.items():
        setattr(info, key, value)
    return info.tobuf(fmt, "utf-8", "surrogateescape")[-512:]


def _with_checksum(block: bytearray) -> bytes:
    """The block with its checksum field made right for its bytes (unsigned sum)."""
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


def _agrees(header: bytes) -> bool:
    """The short cut's answer is the careful path's, or it gave none."""
    fast = scan._plain_header(header)
    return fast is None or (scan._checksum_ok(header) and fast == scan._octal_fields(header))


def test_the_headers_tars_write_take_the_short_cut() -> None:
    headers = [
        _header(),
        _header(fmt=tarfile.USTAR_FORMAT),
        _header(fmt=tarfile.PAX_FORMAT),
        _header("bin/", type=tarfile.DIRTYPE, size=0, mode=0o755),
        _header("bin/sh", type=tarfile.SYMTYPE, linkname="busybox", size=0),
        _header(uid=1000, gid=1000, mtime=0o77777777777),
    ]
    for header in headers:
        assert scan._plain_header(header) == scan._octal_fields(header) is not None
        assert scan._checksum_ok(header)


def test_other_headers_go_the_careful_way() -> None:
    non_ascii = _header("usr/share/ünïcödé")  # a UTF-8 name: the byte sum may pass Adler-32's modulus
    base256 = _header(uid=1 << 40)  # GNU base-256 number: not octal, not ASCII
    wrong = bytearray(_header())
    wrong[0] ^= 1  # a checksum that no longer matches
    spaces = bytearray(_header())
    spaces[148:156] = b" %06o\x00" % (sum(spaces[:148]) + sum(spaces[156:]) + 256)  # checksum not "0..."
    for header in (non_ascii, base256, bytes(wrong), bytes(spaces)):
        assert scan._plain_header(header) is None
    assert scan._checksum_ok(non_ascii) and scan._checksum_ok(bytes(spaces))
    assert not scan._checksum_ok(bytes(wrong))


@settings(max_examples=400, deadline=None)
@given(
    base=st.sampled_from([_header(), _header(fmt=tarfile.USTAR_FORMAT), _header("a/" + "b" * 90)]),
    edits=st.lists(st.tuples(st.integers(0, 511), st.integers(0, 255)), min_size=1, max_size=6),
    fix=st.booleans(),
)
def test_any_edit_of_a_header_is_judged_alike(base: bytes, edits: list[tuple[int, int]], fix: bool) -> None:
    block = bytearray(base)
    for at, value in edits:
        block[at] = value
    header = _with_checksum(block) if fix and not any(148 <= at < 156 for at, _ in edits) else bytes(block)
    assert _agrees(header)


@settings(max_examples=300, deadline=None)
@given(fields=st.binary(min_size=56, max_size=56))
def test_any_numeric_fields_are_judged_alike(fields: bytes) -> None:
    """Random bytes over mode..checksum (offsets 100-155), with and without a fixed-up checksum."""
    block = bytearray(_header())
    block[100:156] = fields
    assert _agrees(bytes(block))
    assert _agrees(_with_checksum(block))
