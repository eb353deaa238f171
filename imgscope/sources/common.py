"""What every source shares: options, config parsing, and turning a plan into an Image.

A format parser (``docker save`` manifest, OCI index) produces an
:class:`ImagePlan`: which config, which layer blobs, which tags.  This module
then scans the layers through the store (with the cache when allowed),
checks them against the config's DiffIDs and returns the immutable
:class:`~imgscope.model.Image` every analysis works on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from imgscope.errors import ImgscopeError
from imgscope.model import HistoryEntry, Image, ImageConfig, LayerInfo, LayerScan
from imgscope.redact import redact_config
from imgscope.scan import ContentVisitor, paused_gc
from imgscope.sources.store import UNKNOWN_DIFF_ID, Store


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """Options every command that takes a REF accepts (DESIGN.md)."""

    platform: str | None = None
    image: str | None = None
    pull: bool = False
    verify: bool = False
    # Hash every layer read and compare with the config (no trusted DiffID, no cache read),
    # even without --verify: a mismatch is then a warning.  audit and ci always do.
    check_diff_ids: bool = False
    use_cache: bool = True
    max_layer_bytes: int | None = None
    insecure: bool = False
    visitor: ContentVisitor | None = field(default=None, compare=False)
    progress: Callable[[str, int, int], None] | None = field(default=None, compare=False)
    # Told (layer index, scan) for every layer as soon as its scan is known, in any order (a layer
    # listed twice once per index), with the DiffID the Image will hold: stacking can go on while
    # later layers are still being read (``stack.Stacker``).
    on_layer: Callable[[int, LayerScan], None] | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class LayerRef:
    """One layer as a manifest names it: where its blob is and what is said of it."""

    name: str
    digest: str | None = None
    media_type: str | None = None
    compressed_size: int | None = None


@dataclass(frozen=True, slots=True)
class ImagePlan:
    """What a format parser found: the config blob and the layers to scan."""

    config_name: str
    layers: tuple[LayerRef, ...]
    tags: tuple[str, ...] = ()
    manifest_digest: str | None = None
    config_digest: str | None = None
    warnings: tuple[str, ...] = ()


UNSUPPORTED_LAYER_TYPES = ("+encrypted", "erofs")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def load_json(data: bytes, what: str) -> Any:
    """Parse JSON or fail with a line naming the file."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImgscopeError(f"{what} is not valid JSON ({exc})") from exc
    except RecursionError as exc:  # "[[[[...": the parser recurses once per level
        raise ImgscopeError(f"{what} is not usable JSON (nested too deeply)") from exc


def _strings(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return None


def _text(value: Any) -> str | None:
    """An optional text field: a string, or None for anything else (a config is untrusted input)."""
    return value if isinstance(value, str) else None


def _names(value: Any) -> tuple[str, ...]:
    """The keys of ``ExposedPorts``/``Volumes`` (objects; tolerate a list), as sorted text."""
    if isinstance(value, dict | list):
        return tuple(sorted(str(v) for v in value))
    return ()


def parse_config(data: bytes, what: str) -> ImageConfig:
    """Read an image config (OCI or Docker); tolerate missing or odd fields.

    Every text the image supplies is redacted here, once (``imgscope.redact``):
    this is where image text enters the model, so no command or format can
    show a secret from the history, ENV, LABEL or CMD.
    """
    raw = load_json(data, what)
    if not isinstance(raw, dict):
        raise ImgscopeError(f"{what} is not an image config (not a JSON object)")
    cfg = raw.get("config") or raw.get("container_config") or {}
    if not isinstance(cfg, dict):
        cfg = {}
    rootfs = raw.get("rootfs") or {}
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list):
        raise ImgscopeError(f"{what} has no rootfs.diff_ids: not an image config")
    history: list[HistoryEntry] = []
    items = raw.get("history") or []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict):
            history.append(
                HistoryEntry(
                    created_by=str(item.get("created_by") or ""),
                    created=_text(item.get("created")),
                    comment=_text(item.get("comment")),
                    empty_layer=bool(item.get("empty_layer")),
                    author=_text(item.get("author")),
                )
            )
    labels = cfg.get("Labels") or {}
    health = cfg.get("Healthcheck") or None
    return redact_config(
        ImageConfig(
            architecture=str(raw.get("architecture") or ""),
            os=str(raw.get("os") or ""),
            variant=str(raw.get("variant") or ""),
            created=_text(raw.get("created")),
            entrypoint=_strings(cfg.get("Entrypoint")),
            cmd=_strings(cfg.get("Cmd")),
            env=_strings(cfg.get("Env")) or (),
            user=str(cfg.get("User") or ""),
            working_dir=str(cfg.get("WorkingDir") or ""),
            exposed_ports=_names(cfg.get("ExposedPorts")),
            volumes=_names(cfg.get("Volumes")),
            labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())) if isinstance(labels, dict) else (),
            healthcheck=_strings(health.get("Test")) if isinstance(health, dict) else None,
            diff_ids=tuple(str(d) for d in diff_ids),
            history=tuple(history),
            raw=raw,
        )
    )


def _check_media_type(ref: LayerRef, label: str) -> None:
    media = ref.media_type or ""
    for bad in UNSUPPORTED_LAYER_TYPES:
        if bad in media:
            raise ImgscopeError(f"{label}: layer {ref.name} has media type {media}, which imgscope cannot read")


def _check_repeats(refs: tuple[LayerRef, ...], diff_ids: tuple[str, ...], label: str) -> None:
    """A blob listed twice is legal when the config repeats its DiffID too; else the two contradict.

    DiffIDs may repeat (FORMATS.md section 3), and a manifest then names the
    same blob at both places.  But one blob cannot have two DiffIDs: when the
    config disagrees, one of the two layers the image needs is not there.
    """
    first: dict[str, int] = {}
    for i, (ref, diff_id) in enumerate(zip(refs, diff_ids, strict=True)):
        j = first.setdefault(ref.name, i)
        if diff_ids[j] != diff_id:
            raise ImgscopeError(
                f"{label}: the manifest lists {ref.name} twice (layers {j} and {i}) but the config gives "
                f"them different DiffIDs: one layer is missing"
            )


def load_plan(store: Store, plan: ImagePlan, reference: str, source: str, options: LoadOptions) -> Image:
    """Scan the plan's layers and assemble the Image, checking DiffIDs on the way."""
    config_bytes = store.read(plan.config_name)
    image_id = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    warnings = list(plan.warnings)
    if plan.config_digest and plan.config_digest != image_id:
        message = f"{store.label}: config {plan.config_name} does not match its digest {plan.config_digest}"
        if options.verify:
            raise ImgscopeError(message)
        warnings.append(message)
    config = parse_config(config_bytes, f"{store.label}: {plan.config_name}")
    if len(config.diff_ids) != len(plan.layers):
        raise ImgscopeError(
            f"{store.label}: the manifest lists {len(plan.layers)} layers but the config has "
            f"{len(config.diff_ids)} DiffIDs"
        )
    for ref in plan.layers:
        _check_media_type(ref, store.label)
    _check_repeats(plan.layers, config.diff_ids, store.label)
    with paused_gc():
        scans, verified = scan_layers(store, plan.layers, config.diff_ids, options)
    for i, (scan, expected) in enumerate(zip(scans, config.diff_ids, strict=True)):
        if scan.diff_id != expected:
            message = (
                f"{store.label}: layer {i} ({plan.layers[i].name}) has DiffID {scan.diff_id}, "
                f"the config says {expected}"
            )
            if options.verify:
                raise ImgscopeError(message)
            warnings.append(message)
    if options.verify:
        for ref in plan.layers:
            if ref.digest and ref.digest.startswith("sha256:"):
                actual = store.digest_of(ref.name)
                if actual != ref.digest:
                    raise ImgscopeError(f"{store.label}: blob {ref.name} has digest {actual}, expected {ref.digest}")
    layers = tuple(
        LayerInfo(
            index=i,
            diff_id=config.diff_ids[i],
            digest=ref.digest,
            media_type=ref.media_type,
            compressed_size=ref.compressed_size,
        )
        for i, ref in enumerate(plan.layers)
    )
    return Image(
        reference=reference,
        source=source,
        image_id=image_id,
        config=config,
        layers=layers,
        scans=tuple(scans),
        manifest_digest=plan.manifest_digest,
        tags=plan.tags,
        warnings=tuple(warnings),
        diff_ids_verified=verified and all(s.diff_id == d for s, d in zip(scans, config.diff_ids, strict=True)),
    )


def scan_layers(
    store: Store, refs: tuple[LayerRef, ...], diff_ids: tuple[str, ...], options: LoadOptions
) -> tuple[list[LayerScan], bool]:
    """Scan every layer once (a blob repeated in the image is scanned once), using the cache.

    Also says whether every DiffID was computed from the bytes read in this run
    (not taken from the cache or on trust from the config).  A store may vouch
    for a layer's DiffID without reading it (``vouched_diff_id``: a registry blob
    whose digest was seen to hold it): such a layer counts as checked, and its
    cached scan is used even by the commands that check DiffIDs; not by --verify.
    """
    from imgscope import cache

    results: dict[str, LayerScan] = {}
    indices: dict[str, list[int]] = {}
    for i, ref in enumerate(refs):
        indices.setdefault(ref.name, []).append(i)

    def tell(name: str, scan: LayerScan) -> None:
        if options.on_layer is not None:
            for index in indices[name]:
                options.on_layer(index, scan)

    checking = options.verify or options.check_diff_ids
    verified = True
    db = cache.open_cache() if options.use_cache and options.visitor is None else None
    vouch = getattr(store, "vouched_diff_id", None) if db is not None and not options.verify else None
    todo: list[str] = []
    for ref, diff_id in zip(refs, diff_ids, strict=True):
        if ref.name in results or ref.name in todo:
            continue
        vouched = vouch is not None and vouch(ref.name) == diff_id
        hit = db.get(diff_id) if db is not None and (not checking or vouched) else None
        if hit is not None:
            results[ref.name] = hit
            tell(ref.name, hit)
            if not vouched:
                verified = False  # scanned from other bytes with this DiffID: these were not read
        else:
            todo.append(ref.name)
    if todo:
        total = len(todo)
        done = [0]
        by_name = dict(zip((ref.name for ref in refs), diff_ids, strict=True))
        ready: dict[str, LayerScan] = {}

        def tick(position: int, scan: LayerScan) -> None:
            done[0] += 1
            if options.progress:
                options.progress("scanning layers", done[0], total)
            name = todo[position]
            if scan.diff_id == UNKNOWN_DIFF_ID:
                # A stream read without hashing (StreamStore(diff_ids=False)) takes the config's
                # DiffID too; such a scan never keys the cache.
                scan = dataclasses.replace(scan, diff_id=by_name[name])
            ready[name] = scan
            tell(name, scan)

        # A DiffID is recomputed (the SHA-256 of every byte, the costliest part of a scan) only when
        # something rests on it: --verify, or a scan that will key the cache.  Otherwise (--no-cache,
        # content visitors) the config's DiffID is taken as the scan's, as --verify's help promises.
        trusted: list[str | None] | None = None
        if db is None and not checking:
            # Only a well-formed DiffID is taken on trust: a damaged config's is computed instead,
            # so the report holds a real digest and the mismatch is reported below.
            trusted = [by_name[name] if _DIGEST.fullmatch(by_name[name]) else None for name in todo]
        scanned = store.scan_many(
            todo, max_bytes=options.max_layer_bytes, visitor=options.visitor, on_scan=tick, trusted=trusted
        )
        for i, (name, scan) in enumerate(zip(todo, scanned, strict=True)):
            if name not in ready:  # a store that did not tell it (each of ours does)
                tick(i, scan)
            if scan.diff_id == UNKNOWN_DIFF_ID:
                results[name] = ready[name]
                verified = False
                continue
            results[name] = scan
            if trusted is not None and trusted[i] is not None:
                verified = False  # the config's DiffID was taken, not computed
            if db is not None:
                db.put(scan)
    return [results[ref.name] for ref in refs], verified
