#!/usr/bin/env python3
"""Write imgscope's sample container images, byte for byte reproducibly.

Why this exists: imgscope's tests need real-looking image archives in every
layout it reads (legacy ``docker save``, Docker 25+, Docker's containerd image
store, OCI layouts, kaniko tarballs), with the layer tricks that matter
(whiteouts, opaque directories, hard links, chmod-only and touch-only
re-shipping, empty layers). A Docker daemon is not available in CI and its
output changes with every release, so the archives are built here from a
description of the image, with every byte pinned: fixed mtimes, uid/gid 0, no
user or group names, deterministic entry order, gzip with ``mtime=0`` and no
file name, zstd at a fixed level, JSON with sorted keys and compact separators.

Usage::

    python sample_images/build.py            # (re)write the files next to this script
    python sample_images/build.py --out DIR  # write them somewhere else
    python sample_images/build.py --check    # rebuild in a temp dir, exit 1 on any difference

Only the standard library and ``zstandard`` are used. Tar headers are written
by hand (not with ``tarfile``) because Docker's layer tars carry the file type
bits in the mode field (``0o40755``, as moby's ``fillGo18FileTypeBits`` keeps
them), which ``tarfile`` masks away, and because a hand-written USTAR header
cannot change between Python releases.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote

import zstandard

# ---------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------

#: 2024-01-01T00:00:00Z: the mtime of every file of the base layer.
T0 = 1704067200
#: One hour: later layers stamp the files they write with ``T0 + i * HOUR``.
HOUR = 3600
#: Fixed zstd level: the output of a given libzstd at a given level is stable.
ZSTD_LEVEL = 3
#: Fixed gzip level (Docker and containerd use Go's default, 6 as well).
GZIP_LEVEL = 6

S_IFDIR = 0o040000
S_IFREG = 0o100000
S_IFLNK = 0o120000

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = OCI_LAYER + "+gzip"
OCI_LAYER_ZSTD = OCI_LAYER + "+zstd"
IN_TOTO = "application/vnd.in-toto+json"
BUILDKIT_COMMENT = "buildkit.dockerfile.v0"
EMPTY_TAR_DIFF_ID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: Where the committed sample images live: next to this script.
DEFAULT_OUT = Path(__file__).resolve().parent
#: Directories written as OCI layouts: ``--check`` also flags stray files in them.
OUTPUT_DIRS = ("demo-oci", "multiarch-oci")

Json = dict[str, object]
Kind = Literal["dir", "file", "symlink", "hardlink"]
Compression = Literal["none", "gzip", "zstd"]


# ---------------------------------------------------------------------------
# Small byte helpers
# ---------------------------------------------------------------------------


def sha256_hex(data: bytes) -> str:
    """Return the hex SHA-256 of ``data``: blob names, DiffIDs and v1 ids are all built on it."""
    return hashlib.sha256(data).hexdigest()


def digest(data: bytes) -> str:
    """Return the OCI digest string (``sha256:<hex>``) of ``data``."""
    return "sha256:" + sha256_hex(data)


def jdump(obj: object) -> bytes:
    """Serialise JSON canonically (sorted keys, compact) so that digests never drift."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def gzip_bytes(data: bytes) -> bytes:
    """Gzip ``data`` with a zero mtime and no file name, so the header carries no build state."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=GZIP_LEVEL) as gz:
        gz.write(data)
    return buf.getvalue()


def zstd_bytes(data: bytes, *, content_size: bool, frames: int = 1) -> bytes:
    """Zstd-compress ``data`` into ``frames`` concatenated frames.

    Why the knobs: containerd compresses layers as a stream, so its frames carry
    no content size (a reader must not rely on it); the ``zstd`` CLI does write
    it. Several frames imitate zstd:chunked, and readers must read across them.
    """
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True, write_content_size=content_size, threads=0)
    step = -(-len(data) // frames) if data else 1
    chunks = [data[i : i + step] for i in range(0, len(data), step)] or [b""]
    return b"".join(cctx.compress(chunk) for chunk in chunks)


def pseudo_binary(seed: str, size: int, magic: bytes) -> bytes:
    """Return ``size`` deterministic bytes that look a little like a binary.

    SHAKE-256 of the seed is stable across Python releases (unlike ``random``).
    The bytes are shaped in 64-byte chunks (zero padding, runs of symbol-like
    words, 4-bit noise) so that they compress to about a quarter: that keeps
    the seven compressed copies of the demo small while the uncompressed
    layers keep realistic sizes.
    """
    words = (b"main", b"libc.so.6", b"_start", b"printf", b"busybox", b"applet", b"GLIBC_2.2.5")
    out = bytearray(magic)
    counter = 0
    while len(out) < size:
        chunk = hashlib.shake_256(f"{seed}/{counter}".encode()).digest(64)
        counter += 1
        if chunk[0] < 100:
            out += bytes(64)
        elif chunk[0] < 180:
            out += b"\0".join(words[b % len(words)] for b in chunk[1:9])
        else:
            out += bytes(0x40 | (b & 0x0F) for b in chunk)
    return bytes(out[:size])


# ---------------------------------------------------------------------------
# Tar writing
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One tar member, with its header ``mode`` exactly as written (type bits included)."""

    path: str
    kind: Kind
    mode: int
    data: bytes = b""
    link: str = ""
    mtime: int = T0


def d(path: str, perm: int = 0o755, mtime: int = T0) -> Entry:
    """A directory as Docker writes it: trailing ``/`` and ``S_IFDIR`` in the mode."""
    return Entry(path.rstrip("/") + "/", "dir", S_IFDIR | perm, mtime=mtime)


def f(path: str, data: bytes, perm: int = 0o644, mtime: int = T0) -> Entry:
    """A regular file with ``S_IFREG`` in the mode."""
    return Entry(path, "file", S_IFREG | perm, data, mtime=mtime)


def sym(path: str, target: str, mtime: int = T0) -> Entry:
    """A symlink (mode ``0o120777``); Docker counts its target length as its size."""
    return Entry(path, "symlink", S_IFLNK | 0o777, link=target, mtime=mtime)


def hardlink(path: str, target: str, perm: int = 0o755, mtime: int = T0) -> Entry:
    """A hard link to ``target`` written earlier in the same tar: no bytes of its own."""
    return Entry(path, "hardlink", S_IFREG | perm, link=target, mtime=mtime)


def whiteout(path: str, mtime: int) -> Entry:
    """``dir/.wh.name`` as moby's overlay2 differ writes it: empty regular file, mode 0600."""
    head, _, name = path.rpartition("/")
    return Entry(f"{head}/.wh.{name}" if head else f".wh.{name}", "file", 0o600, mtime=mtime)


def opaque(directory: str, perm: int = 0o755) -> Entry:
    """``dir/.wh..wh..opq``: moby copies only the directory's permissions and sets no mtime."""
    return Entry(directory.rstrip("/") + "/.wh..wh..opq", "file", perm, mtime=0)


def _octal(value: int, width: int) -> bytes:
    """Format a USTAR numeric field: zero-padded octal and a NUL, as Go's archive/tar does."""
    digits = f"{value:o}"
    if len(digits) > width - 1:
        msg = f"{value} does not fit a {width}-byte tar field"
        raise ValueError(msg)
    return digits.rjust(width - 1, "0").encode() + b"\0"


def _field(text: str, width: int) -> bytes:
    """Format a USTAR string field, refusing values that would need PAX or GNU headers."""
    raw = text.encode()
    if len(raw) > width:
        msg = f"{text!r} is longer than {width} bytes"
        raise ValueError(msg)
    return raw.ljust(width, b"\0")


_TYPEFLAGS: dict[Kind, bytes] = {"file": b"0", "hardlink": b"1", "symlink": b"2", "dir": b"5"}


def tar_header(entry: Entry) -> bytes:
    """Return the 512-byte USTAR header of ``entry`` (uid/gid 0, empty user and group names)."""
    size = len(entry.data) if entry.kind == "file" else 0
    header = b"".join(
        (
            _field(entry.path, 100),
            _octal(entry.mode, 8),
            _octal(0, 8),
            _octal(0, 8),
            _octal(size, 12),
            _octal(entry.mtime, 12),
            b" " * 8,
            _TYPEFLAGS[entry.kind],
            _field(entry.link, 100),
            b"ustar\x0000",
            _field("", 32),
            _field("", 32),
            _octal(0, 8),
            _octal(0, 8),
            _field("", 155),
        )
    ).ljust(512, b"\0")
    checksum = f"{sum(header):06o}".encode() + b"\0 "
    return header[:148] + checksum + header[156:]


def walk_key(entry: Entry) -> tuple[str, ...]:
    """Sort key of Go's ``filepath.Walk``: depth first, names in byte order within a directory."""
    return tuple(entry.path.rstrip("/").split("/"))


def tar_bytes(entries: list[Entry], *, sort: bool = True) -> bytes:
    """Write a tar stream like Go's archive/tar: no record padding, two zero blocks at the end.

    With ``sort`` the entries come in ``filepath.Walk`` order, as moby and
    containerd write layers and archives; kaniko's tarball keeps its own order.
    """
    ordered = sorted(entries, key=walk_key) if sort else list(entries)
    seen: set[str] = set()
    out = bytearray()
    for entry in ordered:
        if entry.path in seen:
            msg = f"duplicate tar entry {entry.path}"
            raise ValueError(msg)
        if entry.kind == "hardlink" and entry.link not in seen:
            msg = f"hard link {entry.path} precedes its target {entry.link}"
            raise ValueError(msg)
        seen.add(entry.path)
        out += tar_header(entry)
        if entry.kind == "file":
            out += entry.data + bytes(-len(entry.data) % 512)
    return bytes(out + bytes(1024))


def plain(path: str, data: bytes, mtime: int = T0, perm: int = 0o644) -> Entry:
    """A file of an outer archive (manifest, config, blob) as Docker's ``archive.Tar`` writes it."""
    return f(path, data, perm, mtime)


# ---------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One history step.

    ``layer`` is None for an empty step (ENV, CMD...) and ``()`` for a real but
    empty layer (Go's empty tar), which BuildKit emits for a RUN that changes nothing.
    """

    created: str
    created_by: str
    layer: tuple[Entry, ...] | None
    buildkit: bool = False


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """What an image is made of, independent of the layout it is written in."""

    repo: str
    tag: str
    architecture: str
    variant: str | None
    config: Json
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class Image:
    """An image with its bytes computed: layer tars, DiffIDs and the config blob."""

    spec: ImageSpec
    tars: tuple[bytes, ...]
    diff_ids: tuple[str, ...]
    config: bytes

    @property
    def config_digest(self) -> str:
        """The image id: the digest of the config blob."""
        return digest(self.config)

    @property
    def ref(self) -> str:
        """``repo:tag``, as ``RepoTags`` spells it."""
        return f"{self.spec.repo}:{self.spec.tag}"

    @property
    def platform(self) -> Json:
        """The OCI platform object of this image."""
        plat: Json = {"architecture": self.spec.architecture, "os": "linux"}
        if self.spec.variant:
            plat["variant"] = self.spec.variant
        return plat


def platform_name(image: Image) -> str:
    """``os/arch[/variant]``, as ``--platform`` spells it."""
    keys = ("os", "architecture", "variant")
    return "/".join(str(image.platform[k]) for k in keys if k in image.platform)


def build_image(spec: ImageSpec) -> Image:
    """Write the layer tars and the config JSON as Docker would for ``spec``."""
    tars: list[bytes] = []
    history: list[Json] = []
    for step in spec.steps:
        item: Json = {"created": step.created, "created_by": step.created_by}
        if step.buildkit:
            item["comment"] = BUILDKIT_COMMENT
        if step.layer is None:
            item["empty_layer"] = True
        else:
            tars.append(tar_bytes(list(step.layer)))
        history.append(item)
    diff_ids = tuple(digest(tar) for tar in tars)
    config: Json = {
        "architecture": spec.architecture,
        "os": "linux",
        "created": spec.steps[-1].created,
        "config": spec.config,
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": history,
    }
    if spec.variant:
        config["variant"] = spec.variant
    return Image(spec, tuple(tars), diff_ids, jdump(config))


def demo_spec() -> ImageSpec:
    """The demo image: one layer per trick imgscope must report.

    A legacy-built base (ADD, COPY, rm) under BuildKit steps (chmod, overwrite
    plus touch, opaque directory, empty tar), with empty steps between layers.
    """
    busybox = pseudo_binary("imgscope/busybox", 20 * 1024, b"\x7fELF\x02\x01\x01\0")
    pkg1 = pseudo_binary("imgscope/pkg1.deb", 30 * 1024, b"!<arch>\ndebian-binary   ")
    pkg2 = pseudo_binary("imgscope/pkg2.deb", 10 * 1024, b"!<arch>\ndebian-binary   ")
    passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    new_passwd = b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/app:/bin/sh\n"
    app_conf = b"# imgscope demo\nlisten = 0.0.0.0:8080\nlog = /var/log/current\n"
    old_log = b"2023-12-31T23:59:59Z demo started\n"
    t1, t2, t4, t5 = (T0 + i * HOUR for i in (1, 2, 4, 5))

    base = (
        d("app"),
        d("app/data"),
        f("app/data/a.txt", b"a\n"),
        f("app/data/b.txt", b"b\n"),
        d("bin"),
        f("bin/busybox", busybox, 0o755),
        sym("bin/sh", "busybox"),
        d("etc"),
        f("etc/app.conf", app_conf),
        f("etc/passwd", passwd),
        d("tmp", 0o1777),
        d("usr"),
        d("usr/bin"),
        hardlink("usr/bin/env", "bin/busybox"),
        d("var"),
        d("var/log"),
        sym("var/log/current", "/dev/stdout"),
        f("var/log/old.log", old_log),
    )
    debs = (
        d("tmp", 0o1777, t1),
        d("tmp/debs", mtime=t1),
        f("tmp/debs/pkg1.deb", pkg1, mtime=t1),
        f("tmp/debs/pkg2.deb", pkg2, mtime=t1),
    )
    rm_debs = (d("tmp", 0o1777, t2), whiteout("tmp/debs", t2))
    chmod = (d("etc"), f("etc/app.conf", app_conf, 0o600))
    overwrite = (
        d("etc"),
        f("etc/passwd", new_passwd, mtime=t4),
        d("var"),
        d("var/log"),
        f("var/log/old.log", old_log, mtime=t4),
    )
    renew = (
        d("app", mtime=t5),
        d("app/data", mtime=t5),
        opaque("app/data"),
        f("app/data/c.txt", b"new\n", mtime=t5),
    )
    add_sha = sha256_hex(tar_bytes(list(base)))
    copy_sha = sha256_hex(pkg1 + pkg2)
    steps = (
        Step("2024-01-01T00:00:00.123456789Z", f"/bin/sh -c #(nop) ADD file:{add_sha} in / ", base),
        Step("2024-01-01T00:00:00.234567891Z", f"/bin/sh -c #(nop)  ENV {PATH_ENV}", None),
        Step("2024-01-01T00:00:00.345678912Z", "/bin/sh -c #(nop)  ARG VERSION=1.2", None),
        Step(
            "2024-01-01T01:00:00.456789123Z",
            f"/bin/sh -c #(nop) COPY dir:{copy_sha} in /tmp/debs ",
            debs,
        ),
        Step("2024-01-01T02:00:00.567891234Z", "|1 VERSION=1.2 /bin/sh -c rm -rf /tmp/debs", rm_debs),
        Step("2024-01-01T02:00:01.678912345Z", '/bin/sh -c #(nop)  CMD ["sh"]', None),
        Step("2024-01-01T03:00:00Z", "RUN /bin/sh -c chmod 600 /etc/app.conf # buildkit", chmod, True),
        Step(
            "2024-01-01T04:00:00Z",
            "RUN |1 VERSION=1.2 /bin/sh -c echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd"
            " && echo 'app:x:1000:1000:app:/app:/bin/sh' >> /etc/passwd"
            " && touch /var/log/old.log # buildkit",
            overwrite,
            True,
        ),
        Step("2024-01-01T04:00:00Z", "ENV APP_ENV=prod", None, True),
        Step("2024-01-01T04:00:00Z", "WORKDIR /app", None, True),
        Step(
            "2024-01-01T05:00:00Z",
            "RUN /bin/sh -c rm -rf /app/data && mkdir /app/data && echo new > /app/data/c.txt # buildkit",
            renew,
            True,
        ),
        Step("2024-01-01T06:00:00Z", "RUN /bin/sh -c true # buildkit", (), True),
        Step("2024-01-01T06:00:00Z", "USER app", None, True),
        Step("2024-01-01T06:00:00Z", "EXPOSE map[8080/tcp:{}]", None, True),
        Step("2024-01-01T06:00:00Z", "VOLUME [/data]", None, True),
        Step("2024-01-01T06:00:00Z", "LABEL org.opencontainers.image.title=imgscope demo", None, True),
        Step("2024-01-01T06:00:00Z", 'ENTRYPOINT ["/bin/busybox"]', None, True),
        Step("2024-01-01T06:00:00Z", 'CMD ["sh"]', None, True),
    )
    config: Json = {
        "Env": [PATH_ENV, "APP_ENV=prod"],
        "Entrypoint": ["/bin/busybox"],
        "Cmd": ["sh"],
        "WorkingDir": "/app",
        "User": "app",
        "ExposedPorts": {"8080/tcp": {}},
        "Volumes": {"/data": {}},
        "Labels": {"org.opencontainers.image.title": "imgscope demo"},
    }
    return ImageSpec("imgscope/demo", "latest", "amd64", None, config, steps)


def small_spec(demo: ImageSpec) -> ImageSpec:
    """A one-layer image whose only layer is the demo's base layer (same DiffID and ChainID).

    In a legacy archive its top-layer v1 id differs from the demo's base v1 id
    (the top one embeds the image config), so Docker writes its ``layer.tar``
    as a symlink to the demo's copy: exactly what ``bundle-legacy.tar`` needs.
    """
    first = demo.steps[0]
    steps = (
        first,
        Step("2024-01-01T00:00:01Z", '/bin/sh -c #(nop)  CMD ["sh"]', None),
    )
    config: Json = {
        "Env": [PATH_ENV],
        "Cmd": ["sh"],
        "Labels": {"org.opencontainers.image.title": "imgscope small"},
    }
    return ImageSpec("imgscope/small", "1.0", "amd64", None, config, steps)


def arm64_spec() -> ImageSpec:
    """A small, different linux/arm64/v8 image (two layers) for the multi-platform index."""
    busybox = pseudo_binary("imgscope/arm64/busybox", 4 * 1024, b"\x7fELF\x02\x01\x01\0")
    os_release = b'NAME="imgscope arm64"\nID=imgscope\nVERSION_ID=1.0\n'
    run_sh = b"#!/bin/sh\necho hello from arm64\n"
    readme = b"This app only exists on arm64.\n"
    layer0 = (
        d("bin"),
        f("bin/busybox", busybox, 0o755),
        sym("bin/sh", "busybox"),
        d("etc"),
        f("etc/os-release", os_release),
    )
    layer1 = (d("app", mtime=T0 + HOUR), f("app/README", readme), f("app/run.sh", run_sh, 0o755))
    add_sha = sha256_hex(tar_bytes(list(layer0)))
    steps = (
        Step("2024-01-01T00:00:00.123456789Z", f"/bin/sh -c #(nop) ADD file:{add_sha} in / ", layer0),
        Step("2024-01-01T00:00:00.234567891Z", '/bin/sh -c #(nop)  CMD ["sh"]', None),
        Step("2024-01-01T01:00:00Z", "COPY app /app # buildkit", layer1, True),
        Step("2024-01-01T01:00:00Z", "WORKDIR /app", None, True),
        Step("2024-01-01T01:00:00Z", 'CMD ["/app/run.sh"]', None, True),
    )
    config: Json = {"Env": [PATH_ENV], "Cmd": ["/app/run.sh"], "WorkingDir": "/app"}
    return ImageSpec("imgscope/demo", "latest", "arm64", "v8", config, steps)


# ---------------------------------------------------------------------------
# Descriptors, manifests, indexes
# ---------------------------------------------------------------------------


def descriptor(media_type: str, data: bytes, **extra: object) -> Json:
    """An OCI descriptor of ``data``."""
    return {"mediaType": media_type, "digest": digest(data), "size": len(data), **extra}


@dataclass(frozen=True, slots=True)
class Manifest:
    """A serialised image manifest plus the blobs it references (config and layers)."""

    data: bytes
    blobs: dict[str, bytes]
    layers: tuple[Json, ...]

    @property
    def digest(self) -> str:
        """The manifest digest."""
        return digest(self.data)


def compress(data: bytes, how: Compression, *, zstd_frames: int = 1) -> tuple[str, bytes]:
    """Return the OCI layer media type and bytes of a layer tar compressed ``how``."""
    if how == "gzip":
        return OCI_LAYER_GZIP, gzip_bytes(data)
    if how == "zstd":
        return OCI_LAYER_ZSTD, zstd_bytes(data, content_size=False, frames=zstd_frames)
    return OCI_LAYER, data


def image_manifest(
    image: Image,
    compressions: list[Compression],
    *,
    zstd_frames: int = 1,
    config_platform: bool = False,
) -> Manifest:
    """Build an OCI image manifest for ``image`` with each layer compressed as asked.

    ``config_platform`` copies Docker 25's quirk of a ``platform`` on the config
    descriptor.
    """
    blobs = {sha256_hex(image.config): image.config}
    layers: list[Json] = []
    for tar, how in zip(image.tars, compressions, strict=True):
        media_type, blob = compress(tar, how, zstd_frames=zstd_frames)
        blobs[sha256_hex(blob)] = blob
        layers.append(descriptor(media_type, blob))
    config_desc = descriptor(OCI_CONFIG, image.config)
    if config_platform:
        config_desc["platform"] = image.platform
    body: Json = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": layers,
    }
    return Manifest(jdump(body), blobs, tuple(layers))


def attestation(subject: Manifest, image: Image) -> tuple[Manifest, Json]:
    """A BuildKit provenance attestation manifest for ``subject`` and its index descriptor."""
    plat = platform_name(image)
    statement = jdump(
        {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://slsa.dev/provenance/v0.2",
            "subject": [
                {
                    "name": f"pkg:docker/{image.ref}?platform={quote(plat, safe='')}",
                    "digest": {"sha256": subject.digest.removeprefix("sha256:")},
                }
            ],
            "predicate": {
                "builder": {"id": ""},
                "buildType": "https://mobyproject.org/buildkit@v1",
                "metadata": {"buildFinishedOn": image.spec.steps[-1].created},
            },
        }
    )
    config = jdump(
        {
            "architecture": "unknown",
            "os": "unknown",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [digest(statement)]},
        }
    )
    layer = descriptor(
        IN_TOTO,
        statement,
        annotations={"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"},
    )
    body: Json = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [layer],
    }
    manifest = Manifest(jdump(body), {sha256_hex(config): config, sha256_hex(statement): statement}, (layer,))
    desc = descriptor(
        OCI_MANIFEST,
        manifest.data,
        annotations={
            "vnd.docker.reference.digest": subject.digest,
            "vnd.docker.reference.type": "attestation-manifest",
        },
        platform={"architecture": "unknown", "os": "unknown"},
    )
    return manifest, desc


def oci_index(manifests: list[Json], *, media_type: bool = True) -> bytes:
    """Serialise an OCI image index (skopeo leaves ``mediaType`` out of ``index.json``)."""
    body: Json = {"schemaVersion": 2, "manifests": manifests}
    if media_type:
        body["mediaType"] = OCI_INDEX
    return jdump(body)


OCI_LAYOUT_FILE = jdump({"imageLayoutVersion": "1.0.0"})


def layout_entries(index: bytes, blobs: dict[str, bytes], extra: dict[str, bytes] | None = None) -> list[Entry]:
    """The members of an OCI image layout (``blobs/``, ``index.json``, ``oci-layout``)."""
    entries = [d("blobs"), d("blobs/sha256")]
    entries += [plain(f"blobs/sha256/{hex_}", blob) for hex_, blob in sorted(blobs.items())]
    entries += [plain("index.json", index), plain("oci-layout", OCI_LAYOUT_FILE)]
    entries += [plain(name, data) for name, data in sorted((extra or {}).items())]
    return entries


# ---------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------

#: The empty container config moby writes into v1 ``json`` files.
V1_CONTAINER_CONFIG: Json = {
    "Hostname": "",
    "Domainname": "",
    "User": "",
    "AttachStdin": False,
    "AttachStdout": False,
    "AttachStderr": False,
    "Tty": False,
    "OpenStdin": False,
    "StdinOnce": False,
    "Env": None,
    "Cmd": None,
    "Image": "",
    "Volumes": None,
    "WorkingDir": "",
    "Entrypoint": None,
    "OnBuild": None,
    "Labels": None,
}


def chain_ids(diff_ids: tuple[str, ...]) -> list[str]:
    """ChainIDs of a layer stack (FORMATS.md section 3)."""
    chains: list[str] = []
    for diff_id in diff_ids:
        chains.append(diff_id if not chains else digest(f"{chains[-1]} {diff_id}".encode()))
    return chains


def v1_layers(image: Image) -> list[tuple[str, bytes]]:
    """The legacy v1 ids and ``json`` files of ``image``'s layers, as moby's ``v1.CreateID`` does.

    Lower layers get an empty v1 image, so two images that share a chain share
    its v1 id; the top layer embeds the image config, so its id is per image.
    """
    parsed = json.loads(image.config)
    out: list[tuple[str, bytes]] = []
    parent = ""
    chains = chain_ids(image.diff_ids)
    for i, chain in enumerate(chains):
        body: Json = {
            "created": "1970-01-01T00:00:00Z",
            "container_config": V1_CONTAINER_CONFIG,
            "os": "linux",
        }
        if i == len(chains) - 1:
            body.update(
                {
                    "architecture": parsed["architecture"],
                    "config": parsed["config"],
                    "created": parsed["created"],
                }
            )
        id_source: Json = {**body, "layer_id": chain}
        if parent:
            id_source["parent"] = "sha256:" + parent
        v1_id = sha256_hex(jdump(id_source))
        v1_json: Json = {**body, "id": v1_id}
        if parent:
            v1_json["parent"] = parent
        out.append((v1_id, jdump(v1_json)))
        parent = v1_id
    return out


def legacy_archive(images: list[Image]) -> tuple[bytes, list[Json]]:
    """A Docker <= 24 ``docker save`` of ``images`` and, per image, where its parts are.

    A layer already written under another v1 id becomes a symlink
    ``../<other>/layer.tar``, as moby's ``saveLayer`` does. Members come in
    ``filepath.Walk`` order, so ``manifest.json`` and ``repositories`` are last.
    """
    entries: list[Entry] = []
    written_ids: set[str] = set()
    diff_id_dirs: dict[str, str] = {}
    manifest: list[Json] = []
    repositories: dict[str, dict[str, str]] = {}
    facts: list[Json] = []
    for image in images:
        config_name = sha256_hex(image.config) + ".json"
        if all(e.path != config_name for e in entries):
            entries.append(plain(config_name, image.config))
        layer_paths: list[str] = []
        layer_facts: list[Json] = []
        for (v1_id, v1_json), tar, diff_id in zip(v1_layers(image), image.tars, image.diff_ids, strict=True):
            path = f"{v1_id}/layer.tar"
            layer_paths.append(path)
            layer_facts.append({"path": path, "digest": diff_id, "size": len(tar)})
            if v1_id in written_ids:
                continue
            written_ids.add(v1_id)
            entries += [
                d(v1_id),
                plain(f"{v1_id}/VERSION", b"1.0"),
                plain(f"{v1_id}/json", v1_json),
            ]
            if diff_id in diff_id_dirs:
                entries.append(sym(path, f"../{diff_id_dirs[diff_id]}/layer.tar"))
                layer_facts[-1]["symlink_to"] = f"{diff_id_dirs[diff_id]}/layer.tar"
            else:
                entries.append(plain(path, tar))
                diff_id_dirs[diff_id] = v1_id
        manifest.append({"Config": config_name, "RepoTags": [image.ref], "Layers": layer_paths})
        repositories.setdefault(image.spec.repo, {})[image.spec.tag] = layer_paths[-1].split("/")[0]
        facts.append(
            {
                "repo_tag": image.ref,
                "config_digest": image.config_digest,
                "config_path": config_name,
                "manifest_digest": None,
                "layers": layer_facts,
            }
        )
    entries += [plain("manifest.json", jdump(manifest)), plain("repositories", jdump(repositories))]
    return tar_bytes(entries), facts


def v25_archive(image: Image) -> tuple[bytes, Json]:
    """A Docker 25+ ``docker save`` (graphdriver store): OCI layout plus ``manifest.json``.

    Layers are uncompressed and named by DiffID, ``LayerSources`` is filled, and
    the v1 ``json`` files are kept as unreferenced blobs, as Docker does.
    """
    manifest = image_manifest(image, ["none"] * len(image.tars), config_platform=True)
    blobs = dict(manifest.blobs)
    for _, v1_json in v1_layers(image):
        blobs[sha256_hex(v1_json)] = v1_json
    blobs[sha256_hex(manifest.data)] = manifest.data
    index = oci_index(
        [
            descriptor(
                OCI_MANIFEST,
                manifest.data,
                annotations={
                    "io.containerd.image.name": f"docker.io/{image.ref}",
                    "org.opencontainers.image.ref.name": image.spec.tag,
                },
            )
        ]
    )
    layer_paths = [f"blobs/sha256/{diff_id.removeprefix('sha256:')}" for diff_id in image.diff_ids]
    docker_manifest = [
        {
            "Config": f"blobs/sha256/{sha256_hex(image.config)}",
            "RepoTags": [image.ref],
            "Layers": layer_paths,
            "LayerSources": {
                diff_id: {"mediaType": OCI_LAYER, "size": len(tar), "digest": diff_id}
                for diff_id, tar in zip(image.diff_ids, image.tars, strict=True)
            },
        }
    ]
    repositories = {image.spec.repo: {image.spec.tag: image.diff_ids[-1].removeprefix("sha256:")}}
    extra = {"manifest.json": jdump(docker_manifest), "repositories": jdump(repositories)}
    facts: Json = {
        "repo_tag": image.ref,
        "config_digest": image.config_digest,
        "config_path": docker_manifest[0]["Config"],
        "manifest_digest": manifest.digest,
        "layers": [
            {
                "path": p,
                "digest": lay["digest"],
                "media_type": lay["mediaType"],
                "size": lay["size"],
            }
            for p, lay in zip(layer_paths, manifest.layers, strict=True)
        ],
    }
    return tar_bytes(layout_entries(index, blobs, extra)), facts


def containerd_archive(demo: Image, arm64: Image, arm64_manifest: Manifest) -> tuple[bytes, Json]:
    """A ``docker save`` from Docker's containerd image store.

    Blobs stay compressed as pulled (gzip and zstd mixed), ``manifest.json``
    names the compressed blobs, ``index.json`` points at a multi-platform index
    with attestations, and the arm64 platform's blobs are absent (not pulled).
    """
    compressions: list[Compression] = ["gzip" if i % 2 == 0 else "zstd" for i in range(len(demo.tars))]
    amd64 = image_manifest(demo, compressions)
    att_amd64, att_amd64_desc = attestation(amd64, demo)
    att_arm64, att_arm64_desc = attestation(arm64_manifest, arm64)
    nested = oci_index(
        [
            descriptor(OCI_MANIFEST, amd64.data, platform=demo.platform),
            descriptor(OCI_MANIFEST, arm64_manifest.data, platform=arm64.platform),
            att_amd64_desc,
            att_arm64_desc,
        ]
    )
    blobs = {**amd64.blobs, **att_amd64.blobs}
    blobs[sha256_hex(amd64.data)] = amd64.data
    blobs[sha256_hex(att_amd64.data)] = att_amd64.data
    blobs[sha256_hex(nested)] = nested
    index = oci_index(
        [
            descriptor(
                OCI_INDEX,
                nested,
                annotations={
                    "io.containerd.image.name": f"docker.io/{demo.ref}",
                    "org.opencontainers.image.ref.name": demo.spec.tag,
                },
            )
        ]
    )
    layer_paths = [f"blobs/sha256/{str(lay['digest']).removeprefix('sha256:')}" for lay in amd64.layers]
    docker_manifest = [
        {
            "Config": f"blobs/sha256/{sha256_hex(demo.config)}",
            "RepoTags": [demo.ref],
            "Layers": layer_paths,
        }
    ]
    missing = sorted(
        {digest(arm64_manifest.data), *(digest(b) for b in arm64_manifest.blobs.values())}
        | {digest(att_arm64.data), *(digest(b) for b in att_arm64.blobs.values())}
    )
    facts: Json = {
        "repo_tag": demo.ref,
        "config_digest": demo.config_digest,
        "config_path": docker_manifest[0]["Config"],
        "index_digest": digest(nested),
        "manifest_digest": amd64.digest,
        "attestation_digests": {
            "linux/amd64": att_amd64.digest,
            "linux/arm64/v8": att_arm64.digest,
        },
        "arm64_manifest_digest": arm64_manifest.digest,
        "missing_blobs": missing,
        "layers": [
            {
                "path": p,
                "digest": lay["digest"],
                "media_type": lay["mediaType"],
                "size": lay["size"],
            }
            for p, lay in zip(layer_paths, amd64.layers, strict=True)
        ],
    }
    return tar_bytes(layout_entries(index, blobs, {"manifest.json": jdump(docker_manifest)})), facts


def oci_single(image: Image, manifest: Manifest) -> tuple[list[Entry], Json]:
    """An OCI layout (as skopeo writes it) holding one image tagged via ``ref.name``."""
    blobs = {**manifest.blobs, sha256_hex(manifest.data): manifest.data}
    index = oci_index(
        [
            descriptor(
                OCI_MANIFEST,
                manifest.data,
                annotations={"org.opencontainers.image.ref.name": image.spec.tag},
            )
        ],
        media_type=False,
    )
    facts: Json = {
        "repo_tag": image.ref,
        "tag": image.spec.tag,
        "config_digest": image.config_digest,
        "manifest_digest": manifest.digest,
        "layers": [
            {"digest": lay["digest"], "media_type": lay["mediaType"], "size": lay["size"]} for lay in manifest.layers
        ],
    }
    return layout_entries(index, blobs), facts


def oci_multiarch(demo: Image, amd64: Manifest, arm64: Image, arm64_manifest: Manifest) -> tuple[list[Entry], Json]:
    """An OCI layout whose ``index.json`` points at a two-platform index with attestations."""
    att_amd64, att_amd64_desc = attestation(amd64, demo)
    att_arm64, att_arm64_desc = attestation(arm64_manifest, arm64)
    nested = oci_index(
        [
            descriptor(OCI_MANIFEST, amd64.data, platform=demo.platform),
            descriptor(OCI_MANIFEST, arm64_manifest.data, platform=arm64.platform),
            att_amd64_desc,
            att_arm64_desc,
        ]
    )
    blobs: dict[str, bytes] = {}
    for manifest in (amd64, arm64_manifest, att_amd64, att_arm64):
        blobs.update(manifest.blobs)
        blobs[sha256_hex(manifest.data)] = manifest.data
    blobs[sha256_hex(nested)] = nested
    index = oci_index([descriptor(OCI_INDEX, nested, annotations={"org.opencontainers.image.ref.name": "multi"})])
    facts: Json = {
        "tag": "multi",
        "index_digest": digest(nested),
        "manifests": {
            "linux/amd64": {"config_digest": demo.config_digest, "manifest_digest": amd64.digest},
            "linux/arm64/v8": {
                "config_digest": arm64.config_digest,
                "manifest_digest": arm64_manifest.digest,
            },
        },
        "attestation_digests": {
            "linux/amd64": att_amd64.digest,
            "linux/arm64/v8": att_arm64.digest,
        },
    }
    return layout_entries(index, blobs), facts


def kaniko_archive(image: Image) -> tuple[bytes, Json]:
    """A kaniko ``--tar-path`` tarball (go-containerregistry ``tarball.Write``).

    Config named ``sha256:<hex>``, gzip layers named ``<hex of the gzip>.tar.gz``,
    members in write order (config, layers, manifest.json), mode 0644, mtime 0.
    """
    entries = [Entry(f"sha256:{sha256_hex(image.config)}", "file", 0o644, image.config, mtime=0)]
    names: list[str] = []
    layer_facts: list[Json] = []
    for tar, diff_id in zip(image.tars, image.diff_ids, strict=True):
        blob = gzip_bytes(tar)
        name = f"{sha256_hex(blob)}.tar.gz"
        names.append(name)
        layer_facts.append({"path": name, "digest": digest(blob), "diff_id": diff_id, "size": len(blob)})
        if all(e.path != name for e in entries):
            entries.append(Entry(name, "file", 0o644, blob, mtime=0))
    manifest = [{"Config": entries[0].path, "RepoTags": [image.ref], "Layers": names}]
    entries.append(Entry("manifest.json", "file", 0o644, jdump(manifest), mtime=0))
    facts: Json = {
        "repo_tag": image.ref,
        "config_digest": image.config_digest,
        "config_path": entries[0].path,
        "manifest_digest": None,
        "layers": layer_facts,
    }
    return tar_bytes(entries, sort=False), facts


# ---------------------------------------------------------------------------
# expected.json
# ---------------------------------------------------------------------------


def entry_type(entry: Entry) -> str:
    """The entry type named in expected.json (whiteouts and opaque markers apart)."""
    name = entry.path.rstrip("/").rsplit("/", 1)[-1]
    if name == ".wh..wh..opq":
        return "opaque"
    if name.startswith(".wh."):
        return "whiteout"
    return entry.kind


def docker_size(entry: Entry) -> int:
    """Bytes Docker (overlay2) counts for ``entry``: content, symlink target length, else 0."""
    kind = entry_type(entry)
    if kind == "file":
        return len(entry.data)
    if kind == "symlink":
        return len(entry.link.encode())
    return 0


def _classify(entry: Entry, lower: Entry | None) -> str:
    """Name a layer entry's change against the tree below it (DESIGN.md vocabulary)."""
    if lower is None:
        return "added"
    if lower.kind != entry.kind or lower.data != entry.data or lower.link != entry.link:
        return "modified"
    if lower.mode & 0o7777 != entry.mode & 0o7777:
        return "metadata"
    return "reshipped"


def _remove(tree: dict[str, tuple[Entry, int]], top: str, *, keep_top: bool) -> list[Json]:
    """Drop everything under ``top`` (and ``top`` itself unless ``keep_top``) from ``tree``."""
    bare = top.rstrip("/")
    removed: list[Json] = []
    for path in sorted(tree):
        itself = path in (bare, bare + "/")
        if (path.startswith(bare + "/") and not itself) or (itself and not keep_top):
            lower, _ = tree.pop(path)
            removed.append({"path": path, "kind": "removed", "type": lower.kind})
    return removed


def stack(image: Image) -> tuple[list[list[Json]], list[Json]]:
    """Apply ``image``'s layers like overlayfs: per-layer changes, then the final tree.

    Why here: tests need an oracle for what imgscope's stack must report. Opaque
    markers hide every lower child of their directory before the layer's own
    entries apply; a whiteout removes its target and its subtree. Removed paths
    are listed one by one (directories with a trailing ``/``).
    """
    tree: dict[str, tuple[Entry, int]] = {}
    all_changes: list[list[Json]] = []
    layers = [s.layer for s in image.spec.steps if s.layer is not None]
    for index, layer in enumerate(layers):
        entries = sorted(layer, key=walk_key)
        changes: list[Json] = []

        for entry in entries:
            if entry_type(entry) == "opaque":
                hidden = _remove(tree, entry.path.removesuffix(".wh..wh..opq"), keep_top=True)
                changes += hidden
        for entry in entries:
            if entry_type(entry) == "whiteout":
                head, _, name = entry.path.rpartition("/")
                target = f"{head}/{name.removeprefix('.wh.')}" if head else name[4:]
                changes += _remove(tree, target, keep_top=False)
        for entry in entries:
            if entry_type(entry) in ("whiteout", "opaque"):
                continue
            lower = tree.get(entry.path)
            kind = _classify(entry, lower[0] if lower else None)
            changes.append({"path": entry.path, "kind": kind, "type": entry.kind})
            tree[entry.path] = (entry, index)
        all_changes.append(sorted(changes, key=lambda c: (str(c["path"]), str(c["kind"]))))
    final: list[Json] = []
    for path, (entry, index) in sorted(tree.items(), key=lambda item: walk_key(item[1][0])):
        item: Json = {
            "path": path,
            "type": entry.kind,
            "size": len(entry.data) if entry.kind == "file" else 0,
            "mode": entry.mode & 0o7777,
            "layer": index,
        }
        if entry.link:
            item["link"] = entry.link
        final.append(item)
    return all_changes, final


def layer_facts(image: Image, changes: list[list[Json]]) -> list[Json]:
    """Per layer of ``image``: DiffID, tar length, entries, changes and Docker's size."""
    facts: list[Json] = []
    layer_steps = [s for s in image.spec.steps if s.layer is not None]
    for index, (step, tar, diff_id) in enumerate(zip(layer_steps, image.tars, image.diff_ids, strict=True)):
        entries = sorted(step.layer or (), key=walk_key)
        listed: list[Json] = []
        for entry in entries:
            item: Json = {
                "path": entry.path,
                "type": entry_type(entry),
                "size": len(entry.data) if entry.kind == "file" else 0,
                "mode": entry.mode & 0o7777,
            }
            if entry.link:
                item["link"] = entry.link
            listed.append(item)
        facts.append(
            {
                "index": index,
                "created_by": step.created_by,
                "diff_id": diff_id,
                "tar_size": len(tar),
                "docker_size": sum(docker_size(e) for e in entries),
                "entries": listed,
                "changes": changes[index],
            }
        )
    return facts


def image_facts(image: Image) -> Json:
    """Identity, history, layers and final tree of ``image`` for expected.json."""
    changes, final = stack(image)
    return {
        "repo_tag": image.ref,
        "platform": platform_name(image),
        "config_digest": image.config_digest,
        "diff_ids": list(image.diff_ids),
        "chain_ids": chain_ids(image.diff_ids),
        "history": [{"created_by": s.created_by, "empty_layer": s.layer is None} for s in image.spec.steps],
        "docker_size": sum(docker_size(e) for s in image.spec.steps for e in (s.layer or ())),
        "layers": layer_facts(image, changes),
        "final_tree": final,
    }


def pretty_json(obj: object, indent: int = 0) -> str:
    """JSON with sorted keys, one line per short flat object or list.

    Why not ``indent=1``: one line per key doubles the size of expected.json,
    and one line per entry keeps diffs of it readable.
    """
    flat = json.dumps(obj, sort_keys=True, ensure_ascii=False)
    values = list(obj.values()) if isinstance(obj, dict) else obj if isinstance(obj, list) else []
    nested = any(isinstance(v, dict | list) and v for v in values)
    if not isinstance(obj, dict | list) or not obj or (not nested and len(flat) <= 240):
        return flat
    pad = " " * (indent + 1)
    if isinstance(obj, dict):
        items = [f"{pad}{json.dumps(k)}: {pretty_json(obj[k], indent + 1)}" for k in sorted(obj)]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [pad + pretty_json(v, indent + 1) for v in obj]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------


def build_all() -> dict[str, bytes]:
    """Every output file, keyed by its path relative to the output directory."""
    demo = build_image(demo_spec())
    small = build_image(small_spec(demo.spec))
    arm64 = build_image(arm64_spec())
    if demo.diff_ids[6] != EMPTY_TAR_DIFF_ID:
        msg = "the empty layer is not Go's empty tar"
        raise AssertionError(msg)
    if small.diff_ids[0] != demo.diff_ids[0]:
        msg = "the small image must share the demo's base layer"
        raise AssertionError(msg)

    files: dict[str, bytes] = {}
    layouts: dict[str, Json] = {}

    legacy, legacy_facts = legacy_archive([demo])
    files["demo-legacy.tar"] = legacy
    files["demo-legacy.tar.gz"] = gzip_bytes(legacy)
    files["demo-legacy.tar.zst"] = zstd_bytes(legacy, content_size=True)
    layouts["demo-legacy.tar"] = {"format": "docker-legacy", **legacy_facts[0]}
    for suffix, how in ((".gz", "gzip"), (".zst", "zstd")):
        layouts["demo-legacy.tar" + suffix] = {
            "format": "docker-legacy",
            "outer_compression": how,
            "same_as": "demo-legacy.tar",
        }

    files["demo-v25.tar"], layouts["demo-v25.tar"] = v25_archive(demo)
    layouts["demo-v25.tar"] = {"format": "docker-v25", **layouts["demo-v25.tar"]}

    arm64_manifest = image_manifest(arm64, ["zstd", "zstd"], zstd_frames=2)
    files["demo-containerd.tar"], facts = containerd_archive(demo, arm64, arm64_manifest)
    layouts["demo-containerd.tar"] = {"format": "docker-containerd", **facts}

    demo_gzip = image_manifest(demo, ["gzip"] * len(demo.tars))
    oci_entries, facts = oci_single(demo, demo_gzip)
    for entry in oci_entries:
        if entry.kind == "file":
            files[f"demo-oci/{entry.path}"] = entry.data
    files["demo-oci.tar"] = tar_bytes(oci_entries)
    layouts["demo-oci"] = {"format": "oci-layout", **facts}
    layouts["demo-oci.tar"] = {"format": "oci-archive", "same_as": "demo-oci"}

    multi_entries, facts = oci_multiarch(demo, demo_gzip, arm64, arm64_manifest)
    for entry in multi_entries:
        if entry.kind == "file":
            files[f"multiarch-oci/{entry.path}"] = entry.data
    layouts["multiarch-oci"] = {"format": "oci-layout", **facts}

    bundle, bundle_facts = legacy_archive([demo, small])
    files["bundle-legacy.tar"] = bundle
    layouts["bundle-legacy.tar"] = {"format": "docker-legacy", "images": bundle_facts}

    files["kaniko-demo.tar"], facts = kaniko_archive(demo)
    layouts["kaniko-demo.tar"] = {"format": "kaniko", **facts}

    expected: Json = {
        "note": "Generated by build.py: facts about the sample images, for tests."
        " Paths are relative to the image root; sizes are bytes.",
        "demo": image_facts(demo),
        "other_images": {"imgscope/small:1.0": image_facts(small), "arm64": image_facts(arm64)},
        "layouts": layouts,
    }
    files["expected.json"] = pretty_json(expected).encode() + b"\n"
    return files


def write_all(out: Path) -> dict[str, bytes]:
    """Write every output into ``out``.

    The layout directories are replaced as a whole so that no stale blob survives.
    """
    files = build_all()
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_DIRS:
        if (out / name).is_dir():
            shutil.rmtree(out / name)
    for rel, data in sorted(files.items()):
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def check(out: Path) -> list[str]:
    """Rebuild in a temporary directory and list every way ``out`` differs from it."""
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="imgscope-samples-") as tmp:
        files = write_all(Path(tmp))
        for rel in sorted(files):
            fresh = (Path(tmp) / rel).read_bytes()
            committed = out / rel
            if not committed.is_file():
                problems.append(f"missing: {rel}")
            elif committed.read_bytes() != fresh:
                problems.append(f"differs: {rel}")
        for name in OUTPUT_DIRS:
            if (out / name).is_dir():
                for path in sorted((out / name).rglob("*")):
                    rel = path.relative_to(out).as_posix()
                    if path.is_file() and rel not in files:
                        problems.append(f"unexpected: {rel}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if the files in --out are not what this script builds",
    )
    args = parser.parse_args(argv)
    out: Path = args.out
    if args.check:
        problems = check(out)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            hint = "" if out == DEFAULT_OUT else f" --out {out}"
            print(f"sample images are stale: run python sample_images/build.py{hint}", file=sys.stderr)
            return 1
        print("sample images are up to date")
        return 0
    files = write_all(out)
    total = sum(len(data) for data in files.values())
    for rel, data in sorted(files.items()):
        if "/" not in rel:
            print(f"{len(data):>8}  {rel}")
    for name in OUTPUT_DIRS:
        size = sum(len(data) for rel, data in files.items() if rel.startswith(name + "/"))
        print(f"{size:>8}  {name}/")
    print(f"{total:>8}  total")
    return 0


if __name__ == "__main__":
    sys.exit(main())
