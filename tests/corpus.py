"""A corpus of hostile and broken inputs (issue 9), each written on demand into a directory.

Why a generator rather than committed files: every bad input here is a small,
precise mutation of a good image (a cut, a flipped byte, a renamed member, a
hand-made tar header), and writing it from code keeps the intent readable and
the repository free of binary blobs.  Each builder writes one input into the
directory it is given and returns a :class:`Case`: the command-line arguments
to try, and what a user must see (exit code, a fragment of the one error
line, the file or blob it must name; or, for inputs that deserve a warning
and a partial report, the warning and which paths the report must or must
not hold).

Tar headers of hostile layers are written by hand (:func:`header`), not with
``tarfile``, because ``tarfile`` refuses or silently repairs exactly the
names we want to send (NUL bytes, invalid UTF-8, ``..``).  The expected
results are written from the input's description, never from imgscope's
output.

Run ``python -m tests.corpus DIR`` to write the whole corpus into DIR (for
manual poking or a fuzzer's seed corpus).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: 2024-01-01T00:00:00Z.
T0 = 1704067200
BLOCK = 512
END = b"\x00" * 1024

OCI_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


@dataclass(frozen=True)
class Case:
    """One bad input and what imgscope must answer.

    ``args`` follow ``imgscope inspect`` (the REF first).  For ``exit_code``
    2, ``message`` is a fragment of the single ``imgscope: error:`` line and
    ``names`` the file or blob that line must name.  For ``exit_code`` 0,
    ``warning`` is a fragment of one warning of the JSON report (top level
    or a layer's), and ``present``/``absent`` are final paths the report
    must or must not hold.
    """

    name: str
    args: tuple[str, ...]
    exit_code: int
    message: str = ""
    names: str = ""
    warning: str = ""
    present: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    usage_error: bool = False  # typer's own "Usage: ..." error instead of an imgscope line


# --------------------------------------------------------------------------- tar writing


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\x00" % (width - 1, value)


def header(
    name: bytes | str,
    *,
    typeflag: bytes = b"0",
    size: int = 0,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    mtime: int = T0,
    linkname: bytes | str = b"",
    devmajor: int = 0,
    devminor: int = 0,
) -> bytes:
    """One USTAR header block with exactly the bytes given (names are not checked or encoded)."""
    raw_name = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else name
    raw_link = linkname.encode("utf-8", "surrogateescape") if isinstance(linkname, str) else linkname
    block = bytearray(BLOCK)
    block[0:100] = raw_name[:100].ljust(100, b"\x00")
    block[100:108] = _octal(mode, 8)
    block[108:116] = _octal(uid, 8)
    block[116:124] = _octal(gid, 8)
    block[124:136] = _octal(size, 12)
    block[136:148] = _octal(mtime, 12)
    block[148:156] = b" " * 8
    block[156:157] = typeflag
    block[157:257] = raw_link[:100].ljust(100, b"\x00")
    block[257:263] = b"ustar\x00"
    block[263:265] = b"00"
    block[329:337] = _octal(devmajor, 8)
    block[337:345] = _octal(devminor, 8)
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


def pad(data: bytes) -> bytes:
    """``data`` padded to a whole number of blocks."""
    return data + b"\x00" * (-len(data) % BLOCK)


def member(name: bytes | str, data: bytes = b"", **fields: Any) -> bytes:
    """A header and its padded data (a regular file unless ``typeflag`` says otherwise)."""
    return header(name, size=len(data), **fields) + pad(data)


def pax(records: dict[bytes, bytes]) -> bytes:
    """A PAX extended header ('x') that applies to the next member."""
    body = b""
    for key, value in records.items():
        line = b" " + key + b"=" + value + b"\n"
        length = len(line) + 1  # the record's length counts its own decimal digits
        while len(str(length)) + len(line) != length:
            length = len(str(length)) + len(line)
        body += str(length).encode() + line
    return member(b"././@PaxHeader", body, typeflag=b"x")


def gnu_longname(name: bytes) -> bytes:
    """A GNU long-name record ('L') that names the next member."""
    return member(b"././@LongLink", name + b"\x00", typeflag=b"L")


def layer(*parts: bytes) -> bytes:
    """A layer tar: the given members, then the end-of-archive blocks."""
    return b"".join(parts) + END


def plain_layer(files: dict[str, bytes]) -> bytes:
    """A well-formed layer of directories and files (parents created as needed)."""
    parts: list[bytes] = []
    dirs: set[str] = set()
    for path in sorted(files):
        bits = path.split("/")[:-1]
        for i in range(1, len(bits) + 1):
            d = "/".join(bits[:i])
            if d not in dirs:
                dirs.add(d)
                parts.append(header(d + "/", typeflag=b"5", mode=0o755))
        parts.append(member(path, files[path]))
    return layer(*parts)


def sha256(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def jdump(obj: Any) -> bytes:
    """Canonical JSON."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def config_for(layers: Iterable[bytes], diff_ids: list[str] | None = None) -> bytes:
    """An image config whose DiffIDs are those of ``layers`` (unless given)."""
    ids = diff_ids if diff_ids is not None else [sha256(data) for data in layers]
    history = [{"created": "2024-01-01T00:00:00Z", "created_by": f"/bin/sh -c step {i}"} for i in range(len(ids))]
    return jdump(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["sh"]},
            "history": history,
            "rootfs": {"type": "layers", "diff_ids": ids},
        }
    )


def write_tar(path: Path, members: list[tuple[str, bytes | None, str]]) -> None:
    """An outer archive: (name, data, symlink target); data None means a symlink."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, target in members:
            info = tarfile.TarInfo(name)
            info.mtime = T0
            info.mode = 0o644
            if data is None:
                info.type = tarfile.SYMTYPE
                info.linkname = target
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def docker_archive(
    path: Path,
    layers: list[bytes],
    *,
    config: bytes | None = None,
    manifest: Any = None,
    layer_names: list[str] | None = None,
    extra: list[tuple[str, bytes | None, str]] | None = None,
) -> list[str]:
    """A legacy ``docker save`` archive (manifest last); returns the layer names it lists."""
    config = config if config is not None else config_for(layers)
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    names = layer_names or [f"{hashlib.sha256(b'%d' % i).hexdigest()}/layer.tar" for i in range(len(layers))]
    members: list[tuple[str, bytes | None, str]] = [(config_name, config, "")]
    written: set[str] = set()
    for name, data in zip(names, layers, strict=True):
        if name not in written:
            written.add(name)
            members.append((name, data, ""))
    members.extend(extra or [])
    if manifest is None:
        manifest = [{"Config": config_name, "RepoTags": ["corpus/image:latest"], "Layers": names}]
    members.append(("manifest.json", manifest if isinstance(manifest, bytes) else jdump(manifest), ""))
    write_tar(path, members)
    return names


def oci_layout(
    root: Path,
    blobs: list[tuple[bytes, str]],
    *,
    config: bytes,
    drop: Iterable[str] = (),
    replace: dict[str, bytes] | None = None,
) -> dict[str, str]:
    """An OCI layout with the given layer blobs; ``drop`` digests are not written, ``replace`` swaps bytes.

    Returns the digests by role: ``manifest``, ``config``, ``layer0``...
    """
    digests: dict[str, str] = {}
    store = root / "blobs" / "sha256"
    store.mkdir(parents=True, exist_ok=True)
    to_write: dict[str, bytes] = {}

    def put(role: str, data: bytes) -> str:
        digest = sha256(data)
        digests[role] = digest
        to_write[digest] = data
        return digest

    layer_descs = [
        {"mediaType": media, "digest": put(f"layer{i}", data), "size": len(data)}
        for i, (data, media) in enumerate(blobs)
    ]
    manifest = jdump(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": put("config", config), "size": len(config)},
            "layers": layer_descs,
        }
    )
    put("manifest", manifest)
    for digest, data in to_write.items():
        if digest in drop:
            continue
        (store / digest.removeprefix("sha256:")).write_bytes((replace or {}).get(digest, data))
    (root / "oci-layout").write_bytes(jdump({"imageLayoutVersion": "1.0.0"}))
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": digests["manifest"],
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": "latest"},
            }
        ],
    }
    (root / "index.json").write_bytes(jdump(index))
    return digests


def gz(data: bytes, level: int = 6) -> bytes:
    """Deterministic gzip (no name, mtime 0)."""
    return gzip.compress(data, compresslevel=level, mtime=0)


def zst(data: bytes) -> bytes:
    """zstd, one frame with the content size."""
    import zstandard

    return zstandard.ZstdCompressor(level=3).compress(data)


def flip(data: bytes, at: int) -> bytes:
    """``data`` with the byte at ``at`` inverted."""
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def noise(size: int, seed: bytes = b"corpus") -> bytes:
    """Deterministic incompressible bytes."""
    return hashlib.shake_256(seed).digest(size)


BASE_FILES = {
    "etc/os-release": b"NAME=corpus\n",
    "bin/tool": noise(3000, b"tool"),
    "usr/share/doc/readme": b"read me\n" * 20,
}
TOP_FILES = {"app/main.py": b"print('hi')\n" * 50, "app/data.bin": noise(5000, b"data")}


def good_layers() -> list[bytes]:
    """Two plain layers of a small, valid image."""
    return [plain_layer(BASE_FILES), plain_layer(TOP_FILES)]


# --------------------------------------------------------------------------- the cases

Builder = Callable[[Path], Case]
CASES: dict[str, Builder] = {}


def case(fn: Builder) -> Builder:
    """Register a builder under its name (``case_truncated_archive`` -> ``truncated-archive``)."""
    CASES[fn.__name__.removeprefix("case_").replace("_", "-")] = fn
    return fn


def _err(name: str, ref: str | Path, message: str, names: str | Path, *extra: str) -> Case:
    return Case(name, (str(ref), *extra), 2, message=message, names=str(names))


def _ok(
    name: str, ref: str | Path, *, warning: str = "", present: Iterable[str] = (), absent: Iterable[str] = ()
) -> Case:
    return Case(name, (str(ref),), 0, warning=warning, present=tuple(present), absent=tuple(absent))


# ---- the outer file


@case
def case_empty_file(root: Path) -> Case:
    path = root / "empty.tar"
    path.write_bytes(b"")
    return _err("empty-file", path, "empty", path)


@case
def case_not_an_archive(root: Path) -> Case:
    path = root / "notes.tar"
    path.write_bytes(b"this is a text file, not an image\n" * 40)
    return _err("not-an-archive", path, "unknown format", path)


@case
def case_directory_not_layout(root: Path) -> Case:
    path = root / "somedir"
    path.mkdir()
    (path / "README").write_bytes(b"not an image\n")
    return _err("directory-not-layout", path, "unknown format", path)


@case
def case_oci_transport_not_layout(root: Path) -> Case:
    path = root / "emptydir"
    path.mkdir()
    return _err("oci-transport-not-layout", f"oci:{path}", "index.json", path)


@case
def case_truncated_archive(root: Path) -> Case:
    good = root / "good.tar"
    docker_archive(good, good_layers())
    data = good.read_bytes()
    path = root / "cut.tar"
    path.write_bytes(data[: len(data) // 2 + 100])  # inside a member's data
    good.unlink()
    return _err("truncated-archive", path, "truncated", path)


@case
def case_truncated_archive_at_member(root: Path) -> Case:
    good = root / "good.tar"
    docker_archive(good, good_layers())
    with tarfile.open(good) as tf:
        last = tf.getmember("manifest.json")
    data = good.read_bytes()
    path = root / "cut.tar"
    path.write_bytes(data[: last.offset])  # exactly at the header of manifest.json (PAX headers included)
    good.unlink()
    return _err("truncated-archive-at-member", path, "truncated", path)


@case
def case_truncated_archive_gzip(root: Path) -> Case:
    good = root / "good.tar"
    docker_archive(good, good_layers())
    packed = gz(good.read_bytes())
    good.unlink()
    path = root / "cut.tar.gz"
    path.write_bytes(packed[: len(packed) * 2 // 3])
    return _err("truncated-archive-gzip", path, "truncated", path)


@case
def case_truncated_archive_zstd(root: Path) -> Case:
    good = root / "good.tar"
    docker_archive(good, good_layers())
    packed = zst(good.read_bytes())
    good.unlink()
    path = root / "cut.tar.zst"
    path.write_bytes(packed[: len(packed) * 2 // 3])
    return _err("truncated-archive-zstd", path, "truncated", path)


@case
def case_corrupt_archive_gzip(root: Path) -> Case:
    good = root / "good.tar"
    docker_archive(good, good_layers())
    packed = gz(good.read_bytes())
    good.unlink()
    path = root / "corrupt.tar.gz"
    path.write_bytes(flip(packed, len(packed) // 2))
    return _err("corrupt-archive-gzip", path, "decompress", path)


# ---- one layer


@case
def case_truncated_layer(root: Path) -> Case:
    layers = good_layers()
    cut = layers[0][: len(layers[0]) - 1024 - 700]  # the end blocks and part of the last file's data
    path = root / "image.tar"
    names = docker_archive(path, [cut, layers[1]])
    return _err("truncated-layer", path, "truncated", names[0])


@case
def case_layer_not_tar(root: Path) -> Case:
    junk = noise(4096, b"junk")
    path = root / "image.tar"
    names = docker_archive(path, [junk, good_layers()[1]])
    return _err("layer-not-tar", path, "not a tar", names[0])


@case
def case_layer_json_not_tar(root: Path) -> Case:
    text = b'{"this": "is json, not a tar"}' + b" " * 600
    path = root / "image.tar"
    names = docker_archive(path, [good_layers()[0], text])
    return _err("layer-json-not-tar", path, "not a tar", names[1])


@case
def case_layer_corrupt_gzip(root: Path) -> Case:
    layers = good_layers()
    blob = gz(layers[0])
    bad = flip(blob, len(blob) // 2)
    path = root / "layout"
    d = oci_layout(
        path, [(blob, OCI_GZIP), (layers[1], OCI_TAR)], config=config_for(layers), replace={sha256(blob): bad}
    )
    return _err("layer-corrupt-gzip", f"oci:{path}", "does not decompress", d["layer0"].removeprefix("sha256:"))


@case
def case_layer_truncated_gzip(root: Path) -> Case:
    layers = good_layers()
    blob = gz(layers[0])
    path = root / "layout"
    d = oci_layout(
        path,
        [(blob, OCI_GZIP), (layers[1], OCI_TAR)],
        config=config_for(layers),
        replace={sha256(blob): blob[: len(blob) // 2]},
    )
    return _err("layer-truncated-gzip", f"oci:{path}", "decompress", d["layer0"].removeprefix("sha256:"))


@case
def case_layer_corrupt_zstd(root: Path) -> Case:
    layers = good_layers()
    blob = zst(layers[0])
    bad = blob[:6] + noise(len(blob) - 6, b"zstd")  # a valid frame start, then garbage
    path = root / "layout"
    d = oci_layout(
        path, [(blob, OCI_ZSTD), (layers[1], OCI_TAR)], config=config_for(layers), replace={sha256(blob): bad}
    )
    return _err("layer-corrupt-zstd", f"oci:{path}", "does not decompress", d["layer0"].removeprefix("sha256:"))


@case
def case_layer_truncated_zstd(root: Path) -> Case:
    layers = good_layers()
    blob = zst(layers[0])
    path = root / "layout"
    d = oci_layout(
        path,
        [(blob, OCI_ZSTD), (layers[1], OCI_TAR)],
        config=config_for(layers),
        replace={sha256(blob): blob[: len(blob) // 2]},
    )
    return _err("layer-truncated-zstd", f"oci:{path}", "decompress", d["layer0"].removeprefix("sha256:"))


@case
def case_layer_oversized_pax(root: Path) -> Case:
    # A PAX record that claims 64 MiB: Docker's Go reader refuses records over 1 MiB; so do we,
    # instead of holding it in memory.
    big = header(b"././@PaxHeader", typeflag=b"x", size=64 << 20)
    blob = gz(big) + gz(b"\x00" * (16 << 20), level=9) * 4 + gz(member("a", b"x") + END)
    path = root / "layout"
    d = oci_layout(path, [(blob, OCI_GZIP)], config=config_for([], [sha256(b"unknown")]))
    return _err("layer-oversized-pax", f"oci:{path}", "PAX", d["layer0"].removeprefix("sha256:"))


# ---- manifest.json


def _manifest_case(root: Path, name: str, manifest: Any, message: str) -> Case:
    path = root / "image.tar"
    docker_archive(path, good_layers(), manifest=manifest)
    return _err(name, path, message, "manifest.json" if "manifest" in message else path)


@case
def case_manifest_not_json(root: Path) -> Case:
    return _manifest_case(root, "manifest-not-json", b"[{'Config': oops", "manifest.json is not valid JSON")


@case
def case_manifest_null(root: Path) -> Case:
    return _manifest_case(root, "manifest-null", b"null", "manifest.json is null")


@case
def case_manifest_empty_list(root: Path) -> Case:
    return _manifest_case(root, "manifest-empty-list", b"[]", "manifest.json lists no image")


@case
def case_manifest_object(root: Path) -> Case:
    return _manifest_case(root, "manifest-object", b'{"Config": "x"}', "manifest.json is not a list")


@case
def case_manifest_deeply_nested(root: Path) -> Case:
    return _manifest_case(root, "manifest-deeply-nested", b"[" * 200_000 + b"]" * 200_000, "manifest.json")


@case
def case_manifest_absent_config(root: Path) -> Case:
    layers = good_layers()
    path = root / "image.tar"
    names = [f"{i}/layer.tar" for i in range(2)]
    manifest = [{"Config": "feedface.json", "RepoTags": None, "Layers": names}]
    docker_archive(path, layers, manifest=manifest, layer_names=names)
    return _err("manifest-absent-config", path, "missing", "feedface.json")


@case
def case_manifest_absent_layer(root: Path) -> Case:
    layers = good_layers()
    config = config_for(layers)
    names = ["0/layer.tar", "1/layer.tar"]
    manifest = [{"Config": hashlib.sha256(config).hexdigest() + ".json", "Layers": [*names[:1], "gone/layer.tar"]}]
    path = root / "image.tar"
    docker_archive(path, layers, config=config, manifest=manifest, layer_names=names)
    return _err("manifest-absent-layer", path, "missing", "gone/layer.tar")


@case
def case_manifest_layer_twice_config_disagrees(root: Path) -> Case:
    # The manifest lists layer 0 twice, the config says the second is another layer:
    # one blob cannot have two DiffIDs.
    layers = good_layers()
    config = config_for(layers)
    names = ["0/layer.tar", "1/layer.tar"]
    manifest = [{"Config": hashlib.sha256(config).hexdigest() + ".json", "Layers": ["0/layer.tar", "0/layer.tar"]}]
    path = root / "image.tar"
    docker_archive(path, layers, config=config, manifest=manifest, layer_names=names)
    return _err("manifest-layer-twice-config-disagrees", path, "twice", "0/layer.tar")


@case
def case_manifest_layer_twice_config_agrees(root: Path) -> Case:
    # Legal: diff_ids may repeat (FORMATS.md section 3); the same tar applied twice.
    base, top = good_layers()
    layers = [base, top, base]
    names = ["0/layer.tar", "1/layer.tar", "0/layer.tar"]
    path = root / "image.tar"
    docker_archive(path, layers, layer_names=names)
    return _ok(
        "manifest-layer-twice-config-agrees", path, present=["/etc/os-release", "/app/main.py", "/bin/tool"], absent=()
    )


@case
def case_manifest_layer_count_differs(root: Path) -> Case:
    layers = good_layers()
    config = config_for(layers[:1])
    path = root / "image.tar"
    docker_archive(path, layers, config=config)
    return _err("manifest-layer-count-differs", path, "DiffIDs", path)


@case
def case_manifest_layer_path_escapes(root: Path) -> Case:
    layers = good_layers()
    config = config_for(layers)
    manifest = [
        {"Config": hashlib.sha256(config).hexdigest() + ".json", "Layers": ["0/layer.tar", "../../../etc/passwd"]}
    ]
    path = root / "image.tar"
    docker_archive(path, layers, config=config, manifest=manifest, layer_names=["0/layer.tar", "1/layer.tar"])
    return _err("manifest-layer-path-escapes", path, "missing", "../../../etc/passwd")


# ---- outer symlinks


@case
def case_layer_symlink_outside(root: Path) -> Case:
    layers = good_layers()
    names = ["0/layer.tar", "1/layer.tar"]
    path = root / "image.tar"
    docker_archive(path, [layers[0], b""], layer_names=names)
    # Replace 1/layer.tar by a symlink that climbs out of the archive.
    _rewrite_as_symlink(path, "1/layer.tar", "../../../../etc/passwd")
    return _err("layer-symlink-outside", path, "outside the archive", "1/layer.tar")


@case
def case_layer_symlink_absolute(root: Path) -> Case:
    layers = good_layers()
    names = ["0/layer.tar", "1/layer.tar"]
    path = root / "image.tar"
    docker_archive(path, [layers[0], b""], layer_names=names)
    _rewrite_as_symlink(path, "1/layer.tar", "/etc/passwd")
    return _err("layer-symlink-absolute", path, "1/layer.tar", "1/layer.tar")


@case
def case_layer_symlink_self(root: Path) -> Case:
    layers = good_layers()
    names = ["0/layer.tar", "1/layer.tar"]
    path = root / "image.tar"
    docker_archive(path, [layers[0], b""], layer_names=names)
    _rewrite_as_symlink(path, "1/layer.tar", "layer.tar")
    return _err("layer-symlink-self", path, "itself", "1/layer.tar")


@case
def case_layer_symlink_chain(root: Path) -> Case:
    layers = good_layers()
    names = ["0/layer.tar", "1/layer.tar", "2/layer.tar"]
    path = root / "image.tar"
    docker_archive(path, [layers[0], b"", b""], layer_names=names, config=config_for([layers[0]] * 3))
    _rewrite_as_symlink(path, "1/layer.tar", "../2/layer.tar")
    _rewrite_as_symlink(path, "2/layer.tar", "../1/layer.tar")
    return _err("layer-symlink-chain", path, "link", "1/layer.tar")


def _rewrite_as_symlink(path: Path, name: str, target: str) -> None:
    """Rewrite an archive with member ``name`` turned into a symlink to ``target``."""
    members: list[tuple[str, bytes | None, str]] = []
    with tarfile.open(path) as tf:
        for info in tf:
            if info.name == name:
                members.append((name, None, target))
            elif info.issym():
                members.append((info.name, None, info.linkname))
            else:
                fh = tf.extractfile(info)
                members.append((info.name, fh.read() if fh else b"", ""))
    write_tar(path, members)


# ---- OCI index


@case
def case_index_missing_manifest_blob(root: Path) -> Case:
    layers = good_layers()
    path = root / "layout"
    probe = root / "probe"
    d = oci_layout(probe, [(data, OCI_TAR) for data in layers], config=config_for(layers))
    _remove_tree(probe)
    oci_layout(path, [(data, OCI_TAR) for data in layers], config=config_for(layers), drop=[d["manifest"]])
    return _err("index-missing-manifest-blob", f"oci:{path}", "missing", d["manifest"])


@case
def case_index_missing_layer_blob(root: Path) -> Case:
    layers = good_layers()
    path = root / "layout"
    drop = sha256(layers[1])
    oci_layout(path, [(data, OCI_TAR) for data in layers], config=config_for(layers), drop=[drop])
    return _err("index-missing-layer-blob", f"oci:{path}", "missing", drop)


@case
def case_index_missing_config_blob(root: Path) -> Case:
    layers = good_layers()
    config = config_for(layers)
    path = root / "layout"
    oci_layout(path, [(data, OCI_TAR) for data in layers], config=config, drop=[sha256(config)])
    return _err("index-missing-config-blob", f"oci:{path}", "missing", sha256(config))


@case
def case_index_not_json(root: Path) -> Case:
    layers = good_layers()
    path = root / "layout"
    oci_layout(path, [(data, OCI_TAR) for data in layers], config=config_for(layers))
    (path / "index.json").write_bytes(b"\x00\x01 not json")
    return _err("index-not-json", f"oci:{path}", "index.json is not valid JSON", "index.json")


@case
def case_index_null(root: Path) -> Case:
    layers = good_layers()
    path = root / "layout"
    oci_layout(path, [(data, OCI_TAR) for data in layers], config=config_for(layers))
    (path / "index.json").write_bytes(b"null")
    return _err("index-null", f"oci:{path}", "index.json", "index.json")


@case
def case_index_self_reference(root: Path) -> Case:
    # An index whose child is an index that lists itself many times: must not walk forever.
    path = root / "layout"
    store = path / "blobs" / "sha256"
    store.mkdir(parents=True)
    # A blob cannot contain its own digest, so two blobs point at each other through a nested index.
    inner_digest = "sha256:" + "0" * 64
    outer = jdump(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_INDEX, "digest": inner_digest, "size": 1}] * 50,
        }
    )
    outer_digest = sha256(outer)
    inner = jdump(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_INDEX, "digest": outer_digest, "size": len(outer)}] * 50,
        }
    )
    (store / outer_digest.removeprefix("sha256:")).write_bytes(outer)
    (store / ("0" * 64)).write_bytes(inner)  # stored under a name that is not its digest
    (path / "oci-layout").write_bytes(jdump({"imageLayoutVersion": "1.0.0"}))
    index = {"schemaVersion": 2, "manifests": [{"mediaType": OCI_INDEX, "digest": outer_digest, "size": len(outer)}]}
    (path / "index.json").write_bytes(jdump(index))
    return _err("index-self-reference", f"oci:{path}", "index", path)


@case
def case_blob_symlink_outside(root: Path) -> Case:
    layers = good_layers()
    path = root / "layout"
    oci_layout(path, [(data, OCI_TAR) for data in layers], config=config_for(layers))
    secret = root / "secret.tar"
    secret.write_bytes(layers[1])
    blob = path / "blobs" / "sha256" / sha256(layers[1]).removeprefix("sha256:")
    blob.unlink()
    blob.symlink_to(secret)
    return _err("blob-symlink-outside", f"oci:{path}", "outside", sha256(layers[1]).removeprefix("sha256:"))


def _remove_tree(path: Path) -> None:
    for dirpath, dirs, files in os.walk(path, topdown=False):
        for f in files:
            os.unlink(os.path.join(dirpath, f))
        for d in dirs:
            os.rmdir(os.path.join(dirpath, d))
    path.rmdir()


# ---- --verify


@case
def case_verify_blob_digest(root: Path) -> Case:
    # Same uncompressed tar, other gzip bytes: the DiffID holds, the blob digest does not.
    layers = good_layers()
    blob = gz(layers[0], level=6)
    other = gz(layers[0], level=1)
    assert other != blob
    path = root / "layout"
    d = oci_layout(
        path, [(blob, OCI_GZIP), (layers[1], OCI_TAR)], config=config_for(layers), replace={sha256(blob): other}
    )
    return _err("verify-blob-digest", f"oci:{path}", "digest", d["layer0"].removeprefix("sha256:"), "--verify")


@case
def case_verify_blob_digest_unverified(root: Path) -> Case:
    # The same input without --verify: digests are not checked, the report is whole.
    layers = good_layers()
    blob = gz(layers[0], level=6)
    other = gz(layers[0], level=1)
    path = root / "layout"
    oci_layout(path, [(blob, OCI_GZIP), (layers[1], OCI_TAR)], config=config_for(layers), replace={sha256(blob): other})
    return _ok("verify-blob-digest-unverified", f"oci:{path}", present=["/etc/os-release", "/app/main.py"])


@case
def case_verify_diff_id(root: Path) -> Case:
    layers = good_layers()
    config = config_for(layers, [sha256(layers[0]), sha256(b"another layer")])
    path = root / "image.tar"
    names = docker_archive(path, layers, config=config)
    return _err("verify-diff-id", path, "DiffID", names[1], "--verify")


@case
def case_diff_id_mismatch_warns(root: Path) -> Case:
    layers = good_layers()
    config = config_for(layers, [sha256(layers[0]), sha256(b"another layer")])
    path = root / "image.tar"
    docker_archive(path, layers, config=config)
    return _ok("diff-id-mismatch-warns", path, warning="DiffID", present=["/app/main.py"])


@case
def case_malformed_diff_id_no_cache(root: Path) -> Case:
    # Without the cache, well-formed DiffIDs are taken on trust; a malformed one is computed instead.
    layers = good_layers()
    config = config_for(layers, [sha256(layers[0]), "sha256:not-a-digest"])
    path = root / "image.tar"
    docker_archive(path, layers, config=config)
    return Case(
        "malformed-diff-id-no-cache", (str(path), "--no-cache"), 0, warning="not-a-digest", present=("/app/main.py",)
    )


@case
def case_verify_config_digest(root: Path) -> Case:
    layers = good_layers()
    config = config_for(layers)
    path = root / "layout"
    d = oci_layout(
        path,
        [(data, OCI_TAR) for data in layers],
        config=config,
        replace={sha256(config): config.replace(b'"Cmd":["sh"]', b'"Cmd":["evil"]')},
    )
    return _err("verify-config-digest", f"oci:{path}", "digest", d["config"].removeprefix("sha256:"), "--verify")


# ---- hostile entries inside a layer (a warning and a correct partial report)


def _one_layer_image(root: Path, data: bytes) -> Path:
    path = root / "image.tar"
    docker_archive(path, [data])
    return path


@case
def case_entry_dotdot(root: Path) -> Case:
    data = layer(
        member("../../../etc/evil", b"x"),
        member("ok/../../escape", b"x"),
        member("safe/../fine.txt", b"fine"),
        member("kept.txt", b"kept"),
    )
    return _ok(
        "entry-dotdot",
        _one_layer_image(root, data),
        # Docker clamps ``..`` at the root (scan.normalize): the files ship there.
        warning="climbs above the root",
        present=["/fine.txt", "/kept.txt", "/etc/evil", "/escape"],
    )


@case
def case_entry_absolute(root: Path) -> Case:
    data = layer(member("/etc/absolute.conf", b"abs"), member("./rel.txt", b"rel"))
    return _ok("entry-absolute", _one_layer_image(root, data), present=["/etc/absolute.conf", "/rel.txt"])


@case
def case_entry_nul(root: Path) -> Case:
    data = layer(
        pax({b"path": b"bad\x00name"}),
        member("placeholder", b"x"),
        member(b"cut\x00hidden", b"y"),  # in a header field a NUL ends the name: "cut"
        member("kept.txt", b"kept"),
    )
    return _ok(
        "entry-nul",
        _one_layer_image(root, data),
        warning="a NUL byte in its name",
        present=["/cut", "/kept.txt"],
        absent=["/placeholder", "/bad"],
    )


@case
def case_entry_invalid_utf8(root: Path) -> Case:
    data = layer(member(b"caf\xe9.txt", b"latin-1 name"), member(b"\xff\xfe/x", b"z"), member("kept.txt", b"kept"))
    return _ok(
        "entry-invalid-utf8",
        _one_layer_image(root, data),
        present=["/caf\udce9.txt", "/\udcff\udcfe/x", "/kept.txt"],
    )


@case
def case_entry_control_chars(root: Path) -> Case:
    data = layer(member("esc\x1b[2Jcape", b"ansi"), member("new\nline", b"nl"), member("kept.txt", b"kept"))
    return _ok(
        "entry-control-chars", _one_layer_image(root, data), present=["/esc\x1b[2Jcape", "/new\nline", "/kept.txt"]
    )


LONG_NAME = "d/" * 2500 + "f" * 5000  # 10,000 characters, 2,501 levels deep


@case
def case_entry_long_name(root: Path) -> Case:
    data = layer(
        pax({b"path": LONG_NAME.encode()}),
        member("placeholder", b"pax"),
        gnu_longname(("g" * 10_000).encode()),
        member("placeholder2", b"gnu"),
    )
    return _ok("entry-long-name", _one_layer_image(root, data), present=["/" + LONG_NAME, "/" + "g" * 10_000])


@case
def case_hardlink_missing_target(root: Path) -> Case:
    data = layer(member("real.txt", b"real"), header("link.txt", typeflag=b"1", linkname="nowhere.txt"))
    return _ok(
        "hardlink-missing-target",
        _one_layer_image(root, data),
        warning="which this layer does not hold",
        present=["/link.txt", "/real.txt"],
    )


@case
def case_hardlink_escapes(root: Path) -> Case:
    data = layer(member("real.txt", b"real"), header("link.txt", typeflag=b"1", linkname="../../etc/shadow"))
    return _ok(
        "hardlink-escapes",
        _one_layer_image(root, data),
        # The target is clamped at the root as Docker clamps it: a link to /etc/shadow.
        warning="hardlink to /etc/shadow, which this layer does not hold",
        present=["/real.txt", "/link.txt"],
    )


@case
def case_symlink_entry_outside(root: Path) -> Case:
    # A symlink is data: it is reported with its target and never followed.
    data = layer(header("passwd", typeflag=b"2", linkname="../../../../etc/passwd"), member("kept.txt", b"k"))
    return _ok("symlink-entry-outside", _one_layer_image(root, data), present=["/passwd", "/kept.txt"])


@case
def case_whiteout_nonexistent(root: Path) -> Case:
    base = plain_layer(BASE_FILES)
    top = layer(member("etc/.wh.no-such-file", b""), member("etc/new.conf", b"new"))
    path = root / "image.tar"
    docker_archive(path, [base, top])
    return _ok(
        "whiteout-nonexistent",
        path,
        warning="whiteout for /etc/no-such-file",
        present=["/etc/os-release", "/etc/new.conf"],
    )


@case
def case_whiteout_bare(root: Path) -> Case:
    base = plain_layer(BASE_FILES)
    top = layer(member("etc/.wh.", b""), member("etc/new.conf", b"new"))
    path = root / "image.tar"
    docker_archive(path, [base, top])
    return _ok(
        "whiteout-bare",
        path,
        warning="invalid whiteout",
        present=["/etc/os-release", "/etc/new.conf", "/bin/tool"],
        absent=["/etc/.wh."],
    )


@case
def case_entry_named_like_compression(root: Path) -> Case:
    # A plain tar whose first name starts with bzip2's magic is still a plain tar.
    data = layer(member("BZh91AY&SY", b"not bzip2"), member("\x1f\x8b\x08gz", b"not gzip"))
    return _ok("entry-named-like-compression", _one_layer_image(root, data), present=["/BZh91AY&SY", "/\x1f\x8b\x08gz"])


@case
def case_duplicate_entries(root: Path) -> Case:
    data = layer(member("twice.txt", b"first"), member("twice.txt", b"second and last"))
    return _ok("duplicate-entries", _one_layer_image(root, data), present=["/twice.txt"])


# ---- resources (small here; tests/test_resources.py runs the big ones)


@case
def case_bomb_max_layer_bytes(root: Path) -> Case:
    blob = bomb_gzip(64 << 20)
    path = root / "layout"
    d = oci_layout(path, [(blob, OCI_GZIP)], config=config_for([], [sha256(b"bomb")]))
    return _err(
        "bomb-max-layer-bytes",
        f"oci:{path}",
        "--max-layer-bytes",
        d["layer0"].removeprefix("sha256:"),
        "--max-layer-bytes",
        "10MB",
    )


def bomb_gzip(size: int, piece: int = 16 << 20) -> bytes:
    """A gzip'd layer holding one file of ``size`` zero bytes, built without holding it.

    The file's data is many gzip members of zeros (concatenated members are one
    stream), so a gigabyte costs a few hundred KiB and a fraction of a second.
    """
    zeros = gz(b"\x00" * piece, level=9)
    whole, rest = divmod(size, piece)
    out = [gz(header("bomb.bin", size=size), level=9), zeros * whole]
    if rest:
        out.append(gz(b"\x00" * rest, level=9))
    out.append(gz(b"\x00" * (-size % BLOCK) + END, level=9))
    return b"".join(out)


# ---- the command line


@case
def case_cli_unknown_option(root: Path) -> Case:
    path = root / "image.tar"
    docker_archive(path, good_layers())
    return Case("cli-unknown-option", (str(path), "--no-such-option"), 2, message="No such option", usage_error=True)


@case
def case_cli_bad_int(root: Path) -> Case:
    path = root / "image.tar"
    docker_archive(path, good_layers())
    return Case("cli-bad-int", (str(path), "--layer", "two"), 2, message="Invalid value", usage_error=True)


@case
def case_cli_bad_depth(root: Path) -> Case:
    path = root / "image.tar"
    docker_archive(path, good_layers())
    return Case("cli-bad-depth", (str(path), "--tree", "--depth", "0"), 2, message="Invalid value", usage_error=True)


@case
def case_cli_bad_size(root: Path) -> Case:
    path = root / "image.tar"
    docker_archive(path, good_layers())
    return _err("cli-bad-size", path, "--max-layer-bytes", "--max-layer-bytes", "--max-layer-bytes", "12 parsecs")


@case
def case_cli_bad_platform(root: Path) -> Case:
    path = root / "image.tar"
    docker_archive(path, good_layers())
    return _err("cli-bad-platform", path, "--platform", "--platform", "--platform", "amd64")


@case
def case_cli_bad_layer_number(root: Path) -> Case:
    path = root / "image.tar"
    docker_archive(path, good_layers())
    return _err("cli-bad-layer-number", path, "--layer 7", "--layer", "--layer", "7")


@case
def case_cli_missing_ref(root: Path) -> Case:
    return Case("cli-missing-ref", (), 2, message="Missing argument", usage_error=True)


@case
def case_cli_missing_file(root: Path) -> Case:
    path = root / "no-such.tar"
    return _err("cli-missing-file", path, "no such file", path)


def write_all(root: Path) -> dict[str, Case]:
    """Write every case into its own subdirectory of ``root``."""
    out: dict[str, Case] = {}
    for name, build in CASES.items():
        sub = root / name
        sub.mkdir(parents=True, exist_ok=True)
        out[name] = build(sub)
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile-corpus")
    for name, c in write_all(target).items():
        print(f"{name}: imgscope inspect {' '.join(c.args)}  -> exit {c.exit_code}")


# --------------------------------------------------------------------------- big inputs, made on the fly


class ManyEntries(io.RawIOBase):
    """A layer tar of ``count`` empty files (1,000 per directory), produced as it is read.

    Nothing is materialised: a block of one directory and its 1,000 file
    headers is built once, and each further directory is that block with
    the directory's name swapped in by one ``bytes.replace``.  Directory names
    are ``dNNNNMMMM`` with MMMM = 9999 - NNNN, so the digits always add up to
    36 and every header checksum of the template stays valid.
    """

    PER_DIR = 1000

    def __init__(self, count: int) -> None:
        self.count = count
        self._dir = 0
        self._pending = memoryview(b"")
        self._done = False
        parts = [header(b"d00009999/", typeflag=b"5", mode=0o755)]
        parts += [header(b"d00009999/f%04d" % i) for i in range(self.PER_DIR)]
        self._template = b"".join(parts)

    def readable(self) -> bool:
        return True

    def _next_block(self) -> bytes:
        left = self.count - self._dir * self.PER_DIR
        if left <= 0:
            self._done = True
            return END
        name = b"d%04d%04d/" % (self._dir, 9999 - self._dir)
        block = self._template.replace(b"d00009999/", name)
        if left < self.PER_DIR:
            block = block[: BLOCK * (left + 1)]
        self._dir += 1
        return block

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            if self._done:
                return 0
            self._pending = memoryview(self._next_block())
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n
