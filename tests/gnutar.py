"""An independent oracle: what GNU tar lists in a layer, and the sizes Docker would count.

Layer blobs are found with plain ``json`` and ``tarfile`` (not imgscope's
parsers), decompressed with the standard libraries, and listed by the
``tar`` program; sizes are summed as FORMATS.md section 5 says.
"""

from __future__ import annotations

import gzip
import io
import json
import posixpath
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import zstandard


@dataclass(frozen=True)
class Listing:
    """What GNU tar said of one layer."""

    size: int
    paths: frozenset[str]
    whiteouts: frozenset[str]
    opaques: frozenset[str]


def decompress(blob: bytes) -> bytes:
    if blob[:3] == b"\x1f\x8b\x08":
        return gzip.decompress(blob)
    if blob[:4] == b"\x28\xb5\x2f\xfd":
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob), read_across_frames=True).read()
    return blob


def gnu_list(layer_tar: bytes) -> Listing:
    """List a layer with GNU tar, which stops at the end-of-archive marker as Docker does.

    (eStargz's TOC entry follows that marker: neither lists it.)
    """
    out = subprocess.run(
        ["tar", "-tv", "--numeric-owner", "-f", "-"],
        input=layer_tar,
        capture_output=True,
        check=True,
    ).stdout.decode("utf-8", "surrogateescape")
    entries: dict[str, int] = {}
    whiteouts: set[str] = set()
    opaques: set[str] = set()
    for line in out.splitlines():
        perms, _owner, size_text, _date, _time, rest = line.split(None, 5)
        kind = perms[0]
        target = ""
        if kind == "l":
            rest, target = rest.split(" -> ", 1)
        elif kind == "h":
            rest, target = rest.split(" link to ", 1)
        name = posixpath.normpath("/" + rest.lstrip("/").removeprefix("./"))
        if name == "/":
            continue
        base = posixpath.basename(name)
        parent = posixpath.dirname(name)
        if base == ".wh..wh..opq":
            opaques.add(parent)
            continue
        if base.startswith(".wh..wh."):
            continue
        if base.startswith(".wh."):
            whiteouts.add(posixpath.join(parent, base[4:]))
            continue
        if kind == "-":
            entries[name] = int(size_text)
        elif kind == "l":
            entries[name] = len(target.encode("utf-8", "surrogateescape"))
        else:
            entries[name] = 0
    return Listing(sum(entries.values()), frozenset(entries), frozenset(whiteouts), frozenset(opaques))


def _oci_layers(read: dict[str, bytes], index_name: str = "index.json") -> list[str]:
    index = json.loads(read[index_name])
    manifest_digest = index["manifests"][0]["digest"]
    manifest = json.loads(read["blobs/sha256/" + manifest_digest.split(":", 1)[1]])
    return ["blobs/sha256/" + layer["digest"].split(":", 1)[1] for layer in manifest["layers"]]


def archive_layers(path: Path, image_index: int = 0) -> list[bytes]:
    """The uncompressed layer tars of one image of an archive, base first."""
    with tarfile.open(path) as tf:
        files: dict[str, bytes] = {}
        for member in tf.getmembers():
            if member.isfile() or member.issym():
                fh = tf.extractfile(member)
                if fh is not None:
                    files[posixpath.normpath(member.name)] = fh.read()
    if "manifest.json" in files:
        names = json.loads(files["manifest.json"])[image_index]["Layers"]
    else:
        names = _oci_layers(files)
    return [decompress(files[posixpath.normpath(n)]) for n in names]
