"""The shared data of imgscope: what a source yields and what the stack computes.

Everything here is a frozen dataclass so that scans can be cached, shared
between images and handed to analyses without anyone mutating them.  Sources,
the scanner, the stack and every analysis speak these types and nothing else,
so an analysis never needs to know where an image came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

# Entry types, as short strings so they serialise to JSON unchanged.
FILE = "file"
DIR = "dir"
SYMLINK = "symlink"
HARDLINK = "hardlink"
CHAR = "char"
BLOCK = "block"
FIFO = "fifo"

# Change kinds: the one vocabulary of every command (DESIGN.md).
ADDED = "added"
MODIFIED = "modified"
METADATA = "metadata"
RESHIPPED = "re-shipped"
REMOVED = "removed"
CHANGE_KINDS = (ADDED, MODIFIED, METADATA, RESHIPPED, REMOVED)

# An entry's size, read in C: sizes are summed per layer several times a command.
_SIZE = attrgetter("size")


@dataclass(frozen=True, slots=True)
class Entry:
    """One path of one layer, after whiteouts were taken out and names normalised.

    ``size`` is counted as Docker counts it with overlay2 (FORMATS.md section 5):
    content bytes for a regular file, the UTF-8 length of the target for a
    symlink, 0 for everything else (a hardlink shares its target's bytes).
    ``tar_size`` is the size in the tar header, which is what dive counts.
    ``digest`` is an xxh3-64 hex of a regular file's content ("" otherwise;
    a hardlink carries its target's digest when the target is in the layer).
    """

    path: str
    type: str
    mode: int
    uid: int
    gid: int
    size: int
    tar_size: int
    mtime: int
    link: str = ""
    digest: str = ""
    xattrs: tuple[tuple[str, str], ...] = ()
    devmajor: int = 0
    devminor: int = 0


#: Entry's fields in their order: the order the scan cache packs them in and the scanner's C
#: loop fills them in (both set an Entry's slots directly, without ``__init__``).
ENTRY_FIELDS = (
    "path",
    "type",
    "mode",
    "uid",
    "gid",
    "size",
    "tar_size",
    "mtime",
    "link",
    "digest",
    "xattrs",
    "devmajor",
    "devminor",
)


@dataclass(frozen=True, slots=True)
class LayerScan:
    """Everything imgscope needs to know of one layer tar: a pure function of its bytes.

    ``whiteouts`` are absolute paths a ``.wh.`` marker deletes from lower layers;
    ``opaques`` are directories whose lower children are all hidden.  Entries are
    kept in tar order; paths are absolute (``/usr/bin/su``).
    ``shadowed`` are entries a later entry of the same layer replaced (a
    duplicate name, or a directory a file replaced with its children): not in
    the container, yet their bytes ship in the blob, so audit reads them.
    ``climbed`` are paths whose tar name climbed above the root with ``..``
    (Docker clamps them there: the entry ships at that path).
    ``undone`` are whiteouts of ``whiteouts`` that a later entry of the same
    layer wrote over (at their path, or a non-directory over a parent): Docker
    removes the whiteout device first, so they delete nothing; dive, which
    reads the markers themselves, still applies them.
    """

    diff_id: str
    tar_bytes: int
    entries: tuple[Entry, ...]
    whiteouts: tuple[str, ...] = ()
    opaques: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    estargz: bool = False
    shadowed: tuple[Entry, ...] = ()
    climbed: tuple[str, ...] = ()
    undone: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        """The layer's size as ``docker history`` shows it."""
        return sum(map(_SIZE, self.entries))


@dataclass(frozen=True, slots=True)
class LayerInfo:
    """What a manifest says of one layer, next to what scanning found."""

    index: int
    diff_id: str
    digest: str | None = None
    media_type: str | None = None
    compressed_size: int | None = None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One entry of the config's ``history``, raw."""

    created_by: str = ""
    created: str | None = None
    comment: str | None = None
    empty_layer: bool = False
    author: str | None = None


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The parts of an image config users look for, plus the raw JSON.

    Sources build it through ``parse_config``, which redacts every secret in
    these texts: what commands show is already safe to print.
    """

    architecture: str = ""
    os: str = ""
    variant: str = ""
    created: str | None = None
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    user: str = ""
    working_dir: str = ""
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    healthcheck: tuple[str, ...] | None = None
    diff_ids: tuple[str, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # The config as the image wrote it, before ``imgscope.redact`` masked its secrets (None when
    # nothing was masked).  Only the audit's detectors read it; nothing may render it, nor ``raw``.
    unredacted: ImageConfig | None = field(default=None, compare=False, hash=False, repr=False)

    @property
    def original(self) -> ImageConfig:
        """The unredacted config, for detectors that must see a secret to report it (redacted)."""
        return self.unredacted if self.unredacted is not None else self

    @property
    def platform(self) -> str:
        """``os/arch[/variant]`` as users write it in ``--platform``."""
        parts = [self.os or "unknown", self.architecture or "unknown"]
        if self.variant:
            parts.append(self.variant)
        return "/".join(parts)


@dataclass(frozen=True, slots=True)
class Image:
    """A loaded image: config, manifest facts and one scan per DiffID, base first."""

    reference: str
    source: str
    image_id: str
    config: ImageConfig
    layers: tuple[LayerInfo, ...]
    scans: tuple[LayerScan, ...]
    manifest_digest: str | None = None
    tags: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    # Whether every layer's DiffID was computed from the bytes read in this run and matched
    # the config (False for layers from the scan cache or taken on trust).
    diff_ids_verified: bool = False

    @property
    def size(self) -> int:
        """Total size as ``docker image ls`` shows it: the sum of the layers' sizes."""
        return sum(s.size for s in self.scans)

    @property
    def compressed_size(self) -> int | None:
        """What a push transfers, when the manifest names every layer's blob size."""
        sizes = [info.compressed_size for info in self.layers]
        if not sizes or any(s is None for s in sizes):
            return None
        return sum(s for s in sizes if s is not None)
