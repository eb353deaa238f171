"""JSON text of the lists that grow with an image (files, changes), written without a dict per item.

A report of a large image is mostly two lists: every file of the final tree
and every change of every layer, one JSON object per line.  Building a dict
per item and handing it to the JSON encoder cost more than everything else
after the scan (about 3.5 us an item: the dict, the check that it is flat,
the encoder call).  Here each line is formatted straight from the entry, in
one f-string, with the C string escaper of :mod:`json` for every text that
comes from the image.

The text is exactly what ``print_json`` writes for the dicts of
:func:`~imgscope.render.json_report.entry_dict` and
:func:`~imgscope.render.json_report.change_dict` (same keys, same order, the
same ``json.dumps`` spacing): the JSON output does not change by a byte, and
``tests/test_speed.py`` checks so against the dict path.  Any new key there
must be added here too; that test fails until it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from json.encoder import encode_basestring
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imgscope.stack import Change, FinalEntry

# Lines handed to the writer at once: few writes, a bounded amount of text in memory.
BATCH = 2048


class EncodedList:
    """A JSON list whose items are already JSON text (one object each), made on demand.

    ``print_json`` writes the items one per line, exactly where it would have
    written the encoded dicts, and consumes them in batches of
    :data:`BATCH`: a report never holds the whole list's text.
    """

    __slots__ = ("_lines",)

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)

    def batches(self) -> Iterator[list[str]]:
        """The lines, a batch at a time."""
        lines = self._lines
        while batch := list(islice(lines, BATCH)):
            yield batch


class _Quoted(dict[str, str]):
    """JSON text of the few strings that recur on every line (types, kinds, causes), made once each."""

    def __missing__(self, key: str) -> str:
        text = self[key] = encode_basestring(key)
        return text


class _Owners(dict[tuple[int, int, int], str]):
    """JSON text of a (mode, uid, gid), keys included, made once each: an image has a few dozen."""

    def __missing__(self, key: tuple[int, int, int]) -> str:
        mode, uid, gid = key
        text = self[key] = f'"mode": "{mode:04o}", "uid": {uid:d}, "gid": {gid:d}'
        return text


def _text(value: str | None) -> str:
    """A JSON string, or ``null`` for None (and for "", as the dicts write ``x or None``)."""
    return encode_basestring(value) if value else "null"


def _number(value: int | None) -> str:
    return "null" if value is None else str(int(value))


def file_lines(files: Iterable[FinalEntry]) -> Iterator[str]:
    """One line per final entry, as ``entry_dict(f.entry, f.layer)`` encodes.

    Numbers are ints (the scanner's), whose f-string text is what ``json`` writes.
    """
    enc = encode_basestring
    quoted = _Quoted()
    owners = _Owners()
    for found in files:
        e = found.entry
        digest = e.digest
        link = e.link
        yield (
            f'{{"path": {enc(e.path)}, "type": {quoted[e.type]}, "size": {e.size}, {owners[e.mode, e.uid, e.gid]}, '
            f'"hash": {enc(digest) if digest else "null"}, "link": {enc(link) if link else "null"}, '
            f'"layer": {found.layer}}}'
        )


def change_lines(changes: Iterable[Change]) -> Iterator[str]:
    """One line per change, as ``change_dict(change)`` encodes."""
    enc = encode_basestring
    quoted = _Quoted()
    owners = _Owners()
    for change in changes:
        new, old = change.entry, change.old
        if old is None:  # the bulk: a path added
            assert new is not None
            size = delta = new.size
            shown = new
        else:
            shown = new if new is not None else old
            size = new.size if new is not None else 0
            delta = size - old.size
        digest = shown.digest
        line = (
            f'{{"path": {enc(change.path)}, "kind": {quoted[change.kind]}, "type": {quoted[shown.type]}, '
            f'"size": {size}, "delta": {delta}, {owners[shown.mode, shown.uid, shown.gid]}, '
            f'"hash": {enc(digest) if digest else "null"}'
        )
        if old is not None:
            line += f', "old_layer": {_number(change.old_layer)}, "old_size": {old.size:d}'
            if new is not None:
                if old.mode != new.mode:
                    line += f', "old_mode": "{old.mode:04o}"'
                if old.uid != new.uid:
                    line += f', "old_uid": {old.uid:d}'
                if old.gid != new.gid:
                    line += f', "old_gid": {old.gid:d}'
                if old.type != new.type:
                    line += f', "old_type": {enc(old.type)}'
                if old.link != new.link:
                    line += f', "old_link": {_text(old.link)}'
        if shown.link:
            line += f', "link": {enc(shown.link)}'
        if change.cause:
            line += f', "cause": {enc(change.cause)}'
        if change.kept_by:
            line += f', "kept_by": {enc(change.kept_by)}'
        yield line + "}"
