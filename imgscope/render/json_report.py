"""The ``inspect --json`` report: plain dicts with integers for every byte count.

The final file list is complete (path, type, size, mode, uid, gid, hash and
the layer that wrote it) so that a saved report can serve as a CI baseline
later without the image.  The shape is published as
``imgscope/schema/inspect.schema.json``; bump ``SCHEMA_VERSION`` on any
incompatible change.
"""

from __future__ import annotations

import heapq
from typing import Any

from imgscope.model import CHANGE_KINDS, DIR, Entry, Image
from imgscope.stack import Change, LayerResult, Stack

SCHEMA_VERSION = 1


def image_dict(image: Image) -> dict[str, Any]:
    """Summary and config of one image."""
    cfg = image.config
    return {
        "reference": image.reference,
        "source": image.source,
        "id": image.image_id,
        "manifest_digest": image.manifest_digest,
        "diff_ids_verified": image.diff_ids_verified,
        "tags": list(image.tags),
        "os": cfg.os,
        "architecture": cfg.architecture,
        "variant": cfg.variant,
        "platform": cfg.platform,
        "created": cfg.created,
        "size": image.size,
        "compressed_size": image.compressed_size,
        "layer_count": len(image.scans),
        "config": {
            "entrypoint": list(cfg.entrypoint) if cfg.entrypoint is not None else None,
            "cmd": list(cfg.cmd) if cfg.cmd is not None else None,
            "env": list(cfg.env),
            "user": cfg.user,
            "working_dir": cfg.working_dir,
            "exposed_ports": list(cfg.exposed_ports),
            "volumes": list(cfg.volumes),
            "labels": dict(cfg.labels),
            "healthcheck": list(cfg.healthcheck) if cfg.healthcheck is not None else None,
        },
    }


def entry_dict(entry: Entry, layer: int | None = None) -> dict[str, Any]:
    """One file of a tree."""
    out: dict[str, Any] = {
        "path": entry.path,
        "type": entry.type,
        "size": entry.size,
        "mode": f"{entry.mode:04o}",
        "uid": entry.uid,
        "gid": entry.gid,
        "hash": entry.digest or None,
        "link": entry.link or None,
    }
    if layer is not None:
        out["layer"] = layer
    return out


def change_dict(change: Change) -> dict[str, Any]:
    """One change of a layer, with the old values where they differ."""
    new, old = change.entry, change.old
    shown = new or old
    assert shown is not None
    out: dict[str, Any] = {
        "path": change.path,
        "kind": change.kind,
        "type": shown.type,
        "size": change.size,
        "delta": change.delta,
        "mode": f"{shown.mode:04o}",
        "uid": shown.uid,
        "gid": shown.gid,
        "hash": shown.digest or None,
    }
    if old is not None:
        out["old_layer"] = change.old_layer
        out["old_size"] = old.size
        if new is not None:
            if old.mode != new.mode:
                out["old_mode"] = f"{old.mode:04o}"
            if old.uid != new.uid:
                out["old_uid"] = old.uid
            if old.gid != new.gid:
                out["old_gid"] = old.gid
            if old.type != new.type:
                out["old_type"] = old.type
            if old.link != new.link:
                out["old_link"] = old.link or None
    if shown.link:
        out["link"] = shown.link
    if change.cause:
        out["cause"] = change.cause
    if change.kept_by:
        out["kept_by"] = change.kept_by
    return out


def _files(stack: Stack, lazy: bool) -> Any:
    """Every final entry in path order: dicts, or their JSON text made on demand when ``lazy``."""
    if lazy:
        from imgscope.render.encoded import EncodedList, file_lines

        return EncodedList(file_lines(stack.files()))
    return [entry_dict(f.entry, f.layer) for f in stack.files()]


def layer_dict(stack: Stack, result: LayerResult, with_changes: bool = True, lazy: bool = False) -> dict[str, Any]:
    """One layer: manifest facts, sizes, totals per kind and (optionally) its changes."""
    info = stack.image.layers[result.index]
    scan = stack.image.scans[result.index]
    step = next((s for s in stack.steps if s.layer == result.index), None)
    out: dict[str, Any] = {
        "index": result.index,
        "diff_id": result.diff_id,
        "chain_id": result.chain_id,
        "digest": info.digest,
        "media_type": info.media_type,
        "compressed_size": info.compressed_size,
        "size": result.size,
        "tar_bytes": scan.tar_bytes,
        "entries": len(scan.entries),
        "estargz": scan.estargz,
        "instruction": step.instruction if step else None,
        "created_by": step.created_by if step else None,
        "totals": {
            kind: {"count": result.total(kind).count, "bytes": result.total(kind).bytes} for kind in CHANGE_KINDS
        },
        "warnings": list(result.warnings),
    }
    if with_changes:
        if lazy:
            from imgscope.render.encoded import EncodedList, change_lines

            out["changes"] = EncodedList(change_lines(result.changes))
        else:
            out["changes"] = [change_dict(c) for c in result.changes]
    return out


def history_list(stack: Stack) -> list[dict[str, Any]]:
    """Every history step, empty ones included, with the layer it made (or null)."""
    return [
        {
            "position": s.position,
            "layer": s.layer,
            "instruction": s.instruction,
            "created_by": s.created_by,
            "created": s.created,
            "comment": s.comment,
            "empty": s.empty,
            "history_missing": s.history_missing,
        }
        for s in stack.steps
    ]


def top_files(stack: Stack, count: int) -> list[dict[str, Any]]:
    """The largest non-directory entries of the final tree."""
    if count <= 0:
        return []
    # A heap of ``count``, not a sort of every file: sorting all of them for ten cost more than
    # the rest of this report but the file list.  Paths are unique, so ties by size go by path.
    files = heapq.nsmallest(
        count,
        (f for f in stack.final.values() if f.entry.type != DIR),
        key=lambda f: (-f.entry.size, f.entry.path),
    )
    return [entry_dict(f.entry, f.layer) for f in files]


def inspect_report(
    stack: Stack, top: int = 10, extra: dict[str, Any] | None = None, lazy: bool = False
) -> dict[str, Any]:
    """The whole ``inspect --json`` document.

    ``lazy`` makes the two lists that grow with the image (each layer's
    changes, the final files) :class:`~imgscope.render.encoded.EncodedList`
    objects, JSON text made on demand that only ``print_json`` reads: printing
    never holds a dict (or a line) per file of the image, and skips building
    the dicts at all (the same bytes, several times faster).
    """
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "tool": "imgscope",
        "image": image_dict(stack.image),
        "history": history_list(stack),
        "layers": [layer_dict(stack, r, lazy=lazy) for r in stack.layers],
        "top_files": top_files(stack, top),
        "files": _files(stack, lazy),
        "warnings": list(stack.image.warnings) + list(stack.warnings),
    }
    if extra:
        report.update(extra)
    return report
