#!/usr/bin/env python3
"""Synthetic stress images, generated (not built): many entries, many layers.

Real images cannot isolate what costs per entry or per layer; these can.
``files-N`` spreads N small files over 20 layers (later layers modify,
re-ship and white out earlier files, as package upgrades do), so peak memory
measured at several N gives the growth per entry.  ``layers-150`` has 150
thin layers, for per-layer costs.  Both are written as legacy ``docker save``
archives (``<id>/layer.tar`` + ``manifest.json``), byte for byte the same on
every run (fixed seed, fixed mtimes), and cached under ``benchmarks/cache/``.

Usage: ``python benchmarks/stress.py [files-200000] [layers-150] ...`` writes
the named images (default: both) and prints their paths.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import sys
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache"
MTIME = 1_700_000_000
BLOCK = 512

# (path, content or None for a directory); a path starting with "-" is a whiteout of that path.
Member = tuple[str, bytes | None]


def _header(name: str, size: int, kind: bytes) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = MTIME
    info.uname = info.gname = "root"
    return info.tobuf(tarfile.GNU_FORMAT)


def write_layer(members: Iterable[Member], out: io.BufferedWriter) -> str:
    """Write one layer tar; return its DiffID (the sha256 of what was written)."""
    sha = hashlib.sha256()

    def put(data: bytes) -> None:
        sha.update(data)
        out.write(data)

    for path, content in members:
        if path.startswith("-"):
            parent, _, base = path[1:].rpartition("/")
            put(_header(f"{parent}/.wh.{base}".lstrip("/"), 0, tarfile.REGTYPE))
        elif content is None:
            put(_header(path.lstrip("/") + "/", 0, tarfile.DIRTYPE))
        else:
            put(_header(path.lstrip("/"), len(content), tarfile.REGTYPE))
            put(content)
            pad = -len(content) % BLOCK
            if pad:
                put(b"\x00" * pad)
    put(b"\x00" * (2 * BLOCK))
    return "sha256:" + sha.hexdigest()


def write_image(path: Path, layers: list[Iterator[Member]], tag: str) -> Path:
    """A legacy ``docker save`` archive holding ``layers``, base first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = path.with_suffix(".parts")
    tmp_dir.mkdir(exist_ok=True)
    diff_ids = []
    for i, members in enumerate(layers):
        with open(tmp_dir / f"{i}.tar", "wb") as fh:
            diff_ids.append(write_layer(members, fh))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": f"/bin/sh -c #(nop) stress layer {i}"} for i in range(len(diff_ids))],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    names = [f"{d.split(':')[1]}/layer.tar" for d in diff_ids]
    manifest = [{"Config": config_name, "RepoTags": [tag], "Layers": names}]
    part = path.with_suffix(".tmp")
    with tarfile.open(part, "w", format=tarfile.GNU_FORMAT) as tf:

        def add(name: str, data: bytes | None = None, file: Path | None = None) -> None:
            info = tarfile.TarInfo(name)
            info.mtime = MTIME
            if file is not None:
                info.size = file.stat().st_size
                with open(file, "rb") as fh:
                    tf.addfile(info, fh)
            else:
                assert data is not None
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))

        for i, name in enumerate(names):
            add(name, file=tmp_dir / f"{i}.tar")
            (tmp_dir / f"{i}.tar").unlink()
        add(config_name, config_bytes)
        add("manifest.json", json.dumps(manifest).encode())
    tmp_dir.rmdir()
    part.replace(path)
    return path


def _content(rng: random.Random, tag: int) -> bytes:
    """A small file: 0 to ~2 kB, a few of them duplicates (identical content across layers)."""
    size = rng.choice((0, 40, 200, 700, 1500, 2100))
    return (f"{tag}\n".encode() + rng.randbytes(size))[:size] if size else b""


def files_image(total: int, layer_count: int = 20) -> list[Iterator[Member]]:
    """``total`` regular files over ``layer_count`` layers, with upgrades and removals."""
    per_layer = total // layer_count

    def layer(i: int) -> Iterator[Member]:
        rng = random.Random(i)
        yield (f"/stress/l{i:02d}", None)
        dirs = max(1, per_layer // 200)
        # Most files are new; from layer 1 on, some rewrite files of the layer before.
        fresh = per_layer - (per_layer // 10 if i else 0)
        for d in range(dirs):
            yield (f"/stress/l{i:02d}/d{d:04d}", None)
        for n in range(fresh):
            yield (f"/stress/l{i:02d}/d{n % dirs:04d}/f{n:06d}.txt", _content(rng, n))
        if i:
            prev_dirs = max(1, per_layer // 200)
            for n in range(per_layer // 10):
                path = f"/stress/l{i - 1:02d}/d{n % prev_dirs:04d}/f{n:06d}.txt"
                yield ("-" + path if n % 5 == 0 else path, None if n % 5 == 0 else _content(rng, n + 7))

    return [layer(i) for i in range(layer_count)]


def layers_image(layer_count: int = 150, files_per_layer: int = 100) -> list[Iterator[Member]]:
    """``layer_count`` thin layers: each adds files, rewrites a shared file set and removes one file."""

    def layer(i: int) -> Iterator[Member]:
        rng = random.Random(10_000 + i)
        if i == 0:
            yield ("/shared", None)
        yield (f"/l{i:03d}", None)
        for n in range(files_per_layer):
            yield (f"/l{i:03d}/f{n:04d}", _content(rng, n))
        for n in range(20):
            yield (f"/shared/s{n:02d}", _content(rng, i))
        if i:
            yield (f"-/l{i - 1:03d}/f0000", None)

    return [layer(i) for i in range(layer_count)]


def build(name: str, force: bool = False) -> Path:
    """The cached stress image called ``name`` (``files-N`` or ``layers-N``), written when missing."""
    path = CACHE / f"stress-{name}.tar"
    if path.exists() and not force:
        return path
    kind, _, count = name.partition("-")
    if kind == "files":
        layers = files_image(int(count))
    elif kind == "layers":
        layers = layers_image(int(count))
    else:
        raise SystemExit(f"unknown stress image {name!r}: use files-N or layers-N")
    return write_image(path, layers, f"stress-{name}:latest")


def main() -> None:
    names = [a for a in sys.argv[1:] if not a.startswith("-")] or ["files-200000", "layers-150"]
    for name in names:
        print(build(name, force="--force" in sys.argv))


if __name__ == "__main__":
    main()
