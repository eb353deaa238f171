"""Small, deterministic image writers for tests that need images made for the purpose.

Why this exists: ``sample_images/`` holds the project's reference images, but
some tests need their own variations (a base and apps built on it, a rebuild
with one changed step, an identical layer on a different base...).  These
helpers write such images into a test's ``tmp_path`` as ``docker save``
archives (legacy layout) or OCI layouts, from a list of steps: every byte is
pinned (fixed mtimes, uid/gid from the description, PAX tars, sorted JSON), so
the same description always gives the same DiffIDs.

Tars are written with ``tarfile`` in PAX format; the scanner under test
reads its own headers, so these files are an independent way to describe a
layer.  Extend additively: other tests import these names.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgscope.model import Image, ImageConfig, LayerInfo, LayerScan

#: 2024-01-01T00:00:00Z: the default mtime of every entry.
T0 = 1704067200


@dataclass(frozen=True)
class TarEntry:
    """One member of a layer tar, as a test describes it."""

    path: str
    kind: str  # file, dir, symlink, hardlink, whiteout, opaque
    content: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = T0
    link: str = ""
    xattrs: tuple[tuple[str, str], ...] = ()
    devmajor: int = 0
    devminor: int = 0


def file(
    path: str,
    content: bytes | str,
    *,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    mtime: int = T0,
    xattrs: dict[str, str] | None = None,
) -> TarEntry:
    """A regular file."""
    data = content.encode() if isinstance(content, str) else content
    return TarEntry(path, "file", data, mode, uid, gid, mtime, xattrs=tuple(sorted((xattrs or {}).items())))


def directory(path: str, *, mode: int = 0o755, uid: int = 0, gid: int = 0, mtime: int = T0) -> TarEntry:
    """A directory."""
    return TarEntry(path, "dir", b"", mode, uid, gid, mtime)


def symlink(path: str, target: str, *, uid: int = 0, gid: int = 0, mtime: int = T0) -> TarEntry:
    """A symbolic link."""
    return TarEntry(path, "symlink", b"", 0o777, uid, gid, mtime, link=target)


def hardlink(path: str, target: str, *, mtime: int = T0) -> TarEntry:
    """A hard link to ``target`` (a path of the same layer)."""
    return TarEntry(path, "hardlink", b"", 0o644, 0, 0, mtime, link=target)


def device(path: str, kind: str = "char", major: int = 1, minor: int = 3, *, mode: int = 0o666) -> TarEntry:
    """A character (``kind="char"``) or block (``"block"``) device node."""
    return TarEntry(path, kind, b"", mode, devmajor=major, devminor=minor)


def whiteout(path: str) -> TarEntry:
    """A ``.wh.`` marker that deletes ``path`` from lower layers."""
    return TarEntry(path, "whiteout", mode=0o644)


def opaque(directory_path: str) -> TarEntry:
    """A ``.wh..wh..opq`` marker that hides every lower child of a directory."""
    return TarEntry(directory_path, "opaque", mode=0o644)


def _member_name(entry: TarEntry) -> str:
    path = entry.path.strip("/")
    if entry.kind == "whiteout":
        head, _, name = path.rpartition("/")
        return (head + "/" if head else "") + ".wh." + name
    if entry.kind == "opaque":
        return (path + "/" if path else "") + ".wh..wh..opq"
    return path


def layer_tar(entries: Iterable[TarEntry]) -> bytes:
    """The bytes of one uncompressed layer tar (its sha256 is the DiffID)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(_member_name(entry))
            info.mode = entry.mode
            info.uid, info.gid = entry.uid, entry.gid
            info.uname = info.gname = ""
            info.mtime = entry.mtime
            if entry.xattrs:
                info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in entry.xattrs}
            data: bytes | None = None
            if entry.kind == "dir":
                info.type = tarfile.DIRTYPE
            elif entry.kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = entry.link
            elif entry.kind == "hardlink":
                info.type = tarfile.LNKTYPE
                info.linkname = entry.link.lstrip("/")
            elif entry.kind in ("char", "block"):
                info.type = tarfile.CHRTYPE if entry.kind == "char" else tarfile.BLKTYPE
                info.devmajor, info.devminor = entry.devmajor, entry.devminor
            else:
                info.type = tarfile.REGTYPE
                data = entry.content
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def sha256(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def jdump(obj: Any) -> bytes:
    """Canonical JSON, so that config digests never drift."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class BuildStep:
    """One Dockerfile step: ``created_by`` as a builder records it, and its layer (None = empty step)."""

    created_by: str
    layer: tuple[TarEntry, ...] | None = None


def run(command: str, *entries: TarEntry) -> BuildStep:
    """A legacy-builder RUN step with the layer it wrote."""
    return BuildStep(f"/bin/sh -c {command}", tuple(entries))


def copy(source: str, dest: str, *entries: TarEntry) -> BuildStep:
    """A legacy-builder COPY step with the layer it wrote."""
    return BuildStep(f"/bin/sh -c #(nop) COPY {source} in {dest} ", tuple(entries))


def nop(instruction: str) -> BuildStep:
    """An empty legacy-builder step (``ENV``, ``CMD``, ``WORKDIR``...)."""
    return BuildStep(f"/bin/sh -c #(nop)  {instruction}")


@dataclass(frozen=True)
class ImageSpec:
    """A whole image: its steps (base first) and the config fields tests care about."""

    steps: tuple[BuildStep, ...]
    env: tuple[str, ...] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    cmd: tuple[str, ...] | None = ("sh",)
    entrypoint: tuple[str, ...] | None = None
    user: str = ""
    working_dir: str = ""
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    architecture: str = "amd64"
    os: str = "linux"
    healthcheck: tuple[str, ...] | None = None

    def extend(self, *steps: BuildStep, **changes: Any) -> ImageSpec:
        """An image built FROM this one: its steps followed by ``steps``, config fields replaced."""
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        values.update(changes)
        values["steps"] = self.steps + steps
        return ImageSpec(**values)


@dataclass(frozen=True)
class Built:
    """What a writer produced: the layer tars (base first) and the config bytes."""

    layers: tuple[bytes, ...]
    config: bytes

    @property
    def diff_ids(self) -> list[str]:
        return [sha256(b) for b in self.layers]

    @property
    def image_id(self) -> str:
        return sha256(self.config)


def build(spec: ImageSpec) -> Built:
    """Layer tars and config JSON of an image description."""
    layers: list[bytes] = []
    history: list[dict[str, Any]] = []
    for i, step in enumerate(spec.steps):
        item: dict[str, Any] = {"created": f"2024-01-01T{i // 60:02d}:{i % 60:02d}:00Z", "created_by": step.created_by}
        if step.layer is None:
            item["empty_layer"] = True
        else:
            layers.append(layer_tar(step.layer))
        history.append(item)
    container_config: dict[str, Any] = {"Env": list(spec.env), "Cmd": list(spec.cmd) if spec.cmd is not None else None}
    if spec.entrypoint is not None:
        container_config["Entrypoint"] = list(spec.entrypoint)
    if spec.user:
        container_config["User"] = spec.user
    if spec.working_dir:
        container_config["WorkingDir"] = spec.working_dir
    if spec.exposed_ports:
        container_config["ExposedPorts"] = {p: {} for p in spec.exposed_ports}
    if spec.volumes:
        container_config["Volumes"] = {v: {} for v in spec.volumes}
    if spec.labels:
        container_config["Labels"] = dict(spec.labels)
    if spec.healthcheck is not None:
        container_config["Healthcheck"] = {"Test": list(spec.healthcheck)}
    config = {
        "architecture": spec.architecture,
        "os": spec.os,
        "created": history[-1]["created"] if history else "2024-01-01T00:00:00Z",
        "config": container_config,
        "history": history,
        "rootfs": {"type": "layers", "diff_ids": [sha256(b) for b in layers]},
    }
    return Built(tuple(layers), jdump(config))


def write_docker_archive(path: Path, spec: ImageSpec, tag: str | None = "imgscope-test/image:latest") -> Built:
    """Write ``spec`` as a legacy ``docker save`` archive at ``path``."""
    built = build(spec)
    config_name = built.image_id.removeprefix("sha256:") + ".json"
    members: list[tuple[str, bytes]] = [(config_name, built.config)]
    layer_names: list[str] = []
    parent = ""
    seen: dict[str, str] = {}
    for data in built.layers:
        v1 = hashlib.sha256(f"{parent} {sha256(data)}".encode()).hexdigest()
        parent = v1
        name = f"{v1}/layer.tar"
        layer_names.append(name)
        members.append((f"{v1}/VERSION", b"1.0"))
        members.append((f"{v1}/json", jdump({"id": v1})))
        if sha256(data) in seen:
            members.append((name, b""))  # placeholder replaced by a symlink below
        else:
            seen[sha256(data)] = v1
            members.append((name, data))
    manifest = [{"Config": config_name, "RepoTags": [tag] if tag else None, "Layers": layer_names}]
    members.append(("manifest.json", jdump(manifest)))
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.mtime = T0
            info.mode = 0o644
            if name in layer_names and not data:
                # A layer repeated in one archive is written once; later copies link to it.
                first = seen[sha256(built.layers[layer_names.index(name)])]
                info.type = tarfile.SYMTYPE
                info.linkname = f"../{first}/layer.tar"
                tar.addfile(info)
                continue
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return built


def write_oci_layout(directory_path: Path, spec: ImageSpec, tag: str | None = "latest") -> Built:
    """Write ``spec`` as an OCI image layout directory (uncompressed layers)."""
    built = build(spec)
    blobs = directory_path / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        digest = sha256(data)
        (blobs / digest.removeprefix("sha256:")).write_bytes(data)
        return digest

    layers = [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": put(b), "size": len(b)} for b in built.layers
    ]
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": put(built.config),
            "size": len(built.config),
        },
        "layers": layers,
    }
    manifest_bytes = jdump(manifest)
    descriptor: dict[str, Any] = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": put(manifest_bytes),
        "size": len(manifest_bytes),
    }
    if tag:
        descriptor["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (directory_path / "oci-layout").write_bytes(jdump({"imageLayoutVersion": "1.0.0"}))
    (directory_path / "index.json").write_bytes(jdump({"schemaVersion": 2, "manifests": [descriptor]}))
    return built


def entries_of(steps: Sequence[BuildStep]) -> list[TarEntry]:
    """Every tar entry of a list of steps, in order (for tests that compute expectations)."""
    return [e for s in steps if s.layer is not None for e in s.layer]


def image_of_scans(scans: Sequence[LayerScan]) -> Image:
    """An in-memory image of layer scans, base first: no archive, no config but the DiffIDs."""
    return Image(
        reference="memory",
        source="test",
        image_id="sha256:" + "0" * 64,
        config=ImageConfig(diff_ids=tuple(s.diff_id for s in scans)),
        layers=tuple(LayerInfo(i, s.diff_id) for i, s in enumerate(scans)),
        scans=tuple(scans),
    )
