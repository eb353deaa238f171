"""OCI image layouts (directory or tar) and the OCI part of Docker 25+ archives.

Walks ``index.json`` down through nested indexes and Docker manifest lists to
image manifests, skipping attestations and artifacts, and picks one image by
tag and platform (FORMATS.md section 2).
"""

from __future__ import annotations

import platform as _platform
from dataclasses import dataclass
from typing import Any

from imgscope.errors import ImgscopeError
from imgscope.sources.common import ImagePlan, LayerRef, load_json
from imgscope.sources.store import Store

INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
MANIFEST_TYPES = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}
ARTIFACT_CONFIG = "application/vnd.oci.empty.v1+json"
IMAGE_CONFIG_TYPES = {
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
}
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
MAX_DEPTH = 16
MAX_DESCRIPTORS = 10_000

_HEX_WIDTH = {"sha256": 64, "sha512": 128}
_ARCH_ALIASES = {"x86_64": "amd64", "aarch64": "arm64", "armhf": "arm", "armv7l": "arm", "i386": "386"}


def normalize_platform(text: str) -> tuple[str, str, str]:
    """``os/arch[/variant]`` with the usual aliases folded (x86_64 -> amd64, ...)."""
    parts = [p.strip().lower() for p in text.split("/")]
    if len(parts) < 2 or not all(parts[:2]):
        raise ImgscopeError(f"--platform {text!r}: expected OS/ARCH[/VARIANT], e.g. linux/amd64")
    os_name, arch = parts[0], parts[1]
    variant = parts[2] if len(parts) > 2 else ""
    if arch in ("armhf", "armv7l") and not variant:
        variant = "v7"
    arch = _ARCH_ALIASES.get(arch, arch)
    if arch == "arm64" and variant == "v8":
        variant = ""
    return os_name, arch, variant


def host_platform() -> tuple[str, str, str]:
    """The platform of this machine, as an image would name it."""
    return normalize_platform(f"linux/{_platform.machine() or 'amd64'}")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One image manifest reachable from the index, with what the path to it said."""

    manifest: dict[str, Any]
    digest: str
    platform: tuple[str, str, str] | None
    tags: tuple[str, ...]
    # The top-level descriptor of index.json it was reached from: one image (maybe multi-platform).
    root: str = ""


def blob_name(digest: str, prefix: str = "") -> str:
    """Path of a blob in a layout: ``blobs/<alg>/<hex>``."""
    alg, sep, hexpart = digest.partition(":")
    if not sep or not alg or not hexpart or "/" in digest or ".." in digest or "\x00" in digest:
        raise ImgscopeError(f"invalid digest {digest!r}")
    # The OCI image spec's registered algorithms are lowercase hex of a fixed length: an
    # uppercase digest is not a blob that is missing but a digest that is wrong.
    width = _HEX_WIDTH.get(alg)
    if width is not None and (len(hexpart) != width or hexpart.strip("0123456789abcdef")):
        raise ImgscopeError(f"invalid digest {digest[:100]!r}: {alg} wants {width} lowercase hex digits")
    return f"{prefix}blobs/{alg}/{hexpart}"


def _desc_platform(desc: dict[str, Any]) -> tuple[str, str, str] | None:
    plat = desc.get("platform")
    if not isinstance(plat, dict) or not plat.get("os") or not plat.get("architecture"):
        return None
    text = f"{plat['os']}/{plat['architecture']}"
    if plat.get("variant"):
        text += f"/{plat['variant']}"
    return _platform_of(text)


def _platform_of(text: str) -> tuple[str, str, str] | None:
    """A platform an image names, or None when it is malformed (that is the image's fault, not --platform's)."""
    try:
        return normalize_platform(text)
    except ImgscopeError:
        return None


def _media(obj: dict[str, Any]) -> str | None:
    media = obj.get("mediaType")
    return media if isinstance(media, str) else None


def _tags(desc: dict[str, Any]) -> tuple[str, ...]:
    ann = desc.get("annotations") or {}
    out = []
    for key in (REF_NAME, CONTAINERD_NAME):
        value = ann.get(key) if isinstance(ann, dict) else None
        if isinstance(value, str) and value:
            out.append(value)
    return tuple(out)


def _is_attestation(desc: dict[str, Any]) -> bool:
    ann = desc.get("annotations") or {}
    if isinstance(ann, dict) and ann.get("vnd.docker.reference.type") == "attestation-manifest":
        return True
    plat = desc.get("platform") or {}
    return isinstance(plat, dict) and plat.get("os") == "unknown" and plat.get("architecture") == "unknown"


@dataclass(frozen=True, slots=True)
class Note:
    """Something the index walk skipped, said in one line.

    ``missing`` marks a blob the layout lacks, and ``platform`` is the
    platform its descriptor named: callers match that platform against
    ``--platform`` as platforms (``platform_matches``), never by the text.
    """

    text: str
    missing: bool = False
    platform: tuple[str, str, str] | None = None

    def __str__(self) -> str:
        return self.text


def walk_index(store: Store, index: dict[str, Any], prefix: str = "") -> tuple[list[Candidate], list[Note]]:
    """Every image manifest under ``index``, in order; plus notes on what was skipped."""
    out: list[Candidate] = []
    notes: list[Note] = []
    visits = [0]
    artifacts = [0]
    walking: list[str] = []  # digests of the indexes on the way down, to catch cycles

    def visit(desc: dict[str, Any], inherited_tags: tuple[str, ...], depth: int, root: str) -> None:
        if depth > MAX_DEPTH:
            raise ImgscopeError(f"{store.label}: indexes nested more than {MAX_DEPTH} deep")
        visits[0] += 1
        if visits[0] > MAX_DESCRIPTORS:
            # Nested indexes that repeat their children multiply: 50 children 16 levels
            # deep is 50**16 walks.  No real layout comes near this many.
            raise ImgscopeError(f"{store.label}: the index reaches more than {MAX_DESCRIPTORS} descriptors")
        digest = desc.get("digest")
        if not isinstance(digest, str):
            notes.append(Note("a descriptor without a digest was skipped"))
            return
        if digest in walking:
            raise ImgscopeError(f"{store.label}: index {digest} contains itself")
        if _is_attestation(desc):
            return
        own = _tags(desc)
        tags = own + tuple(t for t in inherited_tags if t not in own)
        name = blob_name(digest, prefix)
        media = _media(desc)
        if not store.exists(name):
            plat = _desc_platform(desc)
            where = f" ({'/'.join(p for p in plat if p)})" if plat else ""
            if media in INDEX_TYPES or media in MANIFEST_TYPES or media is None:
                notes.append(Note(f"blob {digest}{where} is missing from the layout", True, plat))
            else:
                # Might have been an image behind a media type we do not know: name the blob.
                text = f"blob {digest}{where} (media type {media}) is missing from the layout"
                notes.append(Note(text, True, plat))
            return
        blob = load_json(store.read(name), f"{store.label}: {name}")
        if not isinstance(blob, dict):
            notes.append(Note(f"blob {digest} is not a JSON object; skipped"))
            return
        if media not in INDEX_TYPES and media not in MANIFEST_TYPES:
            media = _media(blob)
            if media not in INDEX_TYPES and media not in MANIFEST_TYPES:
                if "manifests" in blob:
                    media = "application/vnd.oci.image.index.v1+json"
                elif "config" in blob and "layers" in blob:
                    media = "application/vnd.oci.image.manifest.v1+json"
                else:
                    return
        if media in INDEX_TYPES:
            children = blob.get("manifests") or []
            walking.append(digest)
            for child in children if isinstance(children, list) else []:
                if isinstance(child, dict):
                    visit(child, tags, depth + 1, root)
            walking.pop()
            return
        if is_artifact(blob):
            artifacts[0] += 1
            return
        out.append(Candidate(manifest=blob, digest=digest, platform=_desc_platform(desc), tags=tags, root=root))

    top = index.get("manifests") or []
    for desc in top if isinstance(top, list) else []:
        if isinstance(desc, dict):
            root = desc.get("digest")
            visit(desc, (), 0, root if isinstance(root, str) else "")
    if artifacts[0]:
        # One line for all of them: a signed image with SBOMs holds dozens.
        count = artifacts[0]
        notes.append(Note(f"{count} artifact{'s' if count > 1 else ''} (signatures, SBOMs...) skipped: not images"))
    return out, notes


def is_artifact(manifest: dict[str, Any]) -> bool:
    """Whether a manifest is an artifact (cosign signature, SBOM, Helm chart...) rather than an image.

    FORMATS.md: an empty config or an ``artifactType``.  Older artifacts (cosign,
    ORAS before artifactType) use an image manifest with a config or layers of
    their own media types: an image's layers are tars, its config an image config.
    """
    config = manifest.get("config")
    if not isinstance(config, dict) or manifest.get("artifactType"):
        return True
    config_type = config.get("mediaType")
    if config_type == ARTIFACT_CONFIG or (isinstance(config_type, str) and config_type not in IMAGE_CONFIG_TYPES):
        return True
    layers = manifest.get("layers")
    for layer in layers if isinstance(layers, list) else []:
        media = layer.get("mediaType") if isinstance(layer, dict) else None
        if isinstance(media, str) and "tar" not in media:
            return True
    return False


def config_platform(store: Store, name: str) -> tuple[str, str, str] | None:
    """The platform an image config blob names (``os/architecture[/variant]``), or None."""
    if not store.exists(name):
        return None
    raw = load_json(store.read(name), f"{store.label}: {name}")
    if not isinstance(raw, dict) or not raw.get("os") or not raw.get("architecture"):
        return None
    text = f"{raw['os']}/{raw['architecture']}" + (f"/{raw['variant']}" if raw.get("variant") else "")
    return _platform_of(text)


def platform_matches(plat: tuple[str, str, str] | None, wanted: tuple[str, str, str]) -> bool:
    """Does an image's platform satisfy ``--platform`` (a variant left out matches any)?"""
    return plat is not None and plat[:2] == wanted[:2] and (not wanted[2] or plat[2] == wanted[2])


def _config_platform(store: Store, cand: Candidate, prefix: str) -> tuple[str, str, str] | None:
    if cand.platform is not None:
        return cand.platform
    config = cand.manifest.get("config") or {}
    digest = config.get("digest")
    if not isinstance(digest, str):
        return None
    return config_platform(store, blob_name(digest, prefix))


def _tag_matches(tag: str, wanted: str) -> bool:
    return tag == wanted or tag.endswith(":" + wanted) or tag.rsplit("/", 1)[-1] == wanted


def fmt_platform(plat: tuple[str, str, str] | None) -> str:
    """``os/arch[/variant]`` of a platform, or ``unknown platform``."""
    return "/".join(p for p in plat if p) if plat else "unknown platform"


def _images(candidates: list[Candidate]) -> list[list[Candidate]]:
    """Candidates grouped into distinct images: what one top-level descriptor reaches.

    Two descriptors that reach the same manifests (one image under several tags)
    are one image; so are the platforms of one multi-platform index.
    """
    by_root: dict[str, list[Candidate]] = {}
    for cand in candidates:
        by_root.setdefault(cand.root, []).append(cand)
    groups: dict[frozenset[str], list[Candidate]] = {}
    for members in by_root.values():
        groups.setdefault(frozenset(c.digest for c in members), []).extend(members)
    return list(groups.values())


def short_digest(digest: str) -> str:
    """A digest shortened for a listing: ``sha256:`` and 12 hex digits."""
    return digest[: len("sha256:") + 12]


def missing_note(notes: list[Note], wanted: tuple[str, str, str] | None) -> Note | None:
    """The note of a missing blob: for the wanted platform when one names it, else the first."""
    missing = [n for n in notes if n.missing]
    if wanted is not None:
        named = [n for n in missing if platform_matches(n.platform, wanted)]
        if named:
            return named[0]
        # Another platform's missing blob says nothing of the wanted one.
        return next((n for n in missing if n.platform is None), None)
    return missing[0] if missing else None


def choose(
    store: Store, candidates: list[Candidate], tag: str | None, platform: str | None, prefix: str = ""
) -> Candidate:
    """Pick one image: by tag or digest, then by ``--platform``, else the host's, else the only one.

    Several different images (not the platforms of one) are never picked from
    silently: the user chooses with ``--image``.
    """
    if tag and tag.startswith("sha256:"):
        chosen = [
            c
            for c in candidates
            if c.digest.startswith(tag)
            or c.root.startswith(tag)
            or str((c.manifest.get("config") or {}).get("digest", "")).startswith(tag)
        ]
        if not chosen:
            raise ImgscopeError(f"{store.label}: no image with digest {tag}")
        candidates = chosen
    elif tag:
        tagged = [c for c in candidates if any(_tag_matches(t, tag) for t in c.tags)]
        if not tagged:
            known = sorted({t for c in candidates for t in c.tags})
            raise ImgscopeError(
                f"{store.label}: no image tagged {tag!r}" + (f"; tags here: {', '.join(known)}" if known else "")
            )
        candidates = tagged
    if not candidates:
        raise ImgscopeError(f"{store.label}: no image manifest found in the layout")
    plats = [_config_platform(store, c, prefix) for c in candidates]
    if platform:
        # The platform narrows first (as for a docker archive): single-platform images under
        # different tags are told apart by it; only several matching images need --image.
        wanted = normalize_platform(platform)
        matching = [(c, p) for c, p in zip(candidates, plats, strict=True) if platform_matches(p, wanted)]
        if not matching:
            raise ImgscopeError(
                f"{store.label}: no image for {fmt_platform(wanted)}; platforms here: "
                + ", ".join(sorted({fmt_platform(p) for p in plats}))
            )
        candidates = [c for c, _ in matching]
        plats = [p for _, p in matching]
    images = _images(candidates)
    if len(images) > 1:
        platform_of = {id(c): p for c, p in zip(candidates, plats, strict=True)}
        listing = "; ".join(
            (",".join(sorted({t for c in group for t in c.tags})) or "untagged")
            + " ("
            + ", ".join(sorted({fmt_platform(platform_of[id(c)]) for c in group}))
            + f", {short_digest(group[0].root or group[0].digest)})"
            for group in images
        )
        what = (
            f"{len(images)} images tagged {tag!r}" if tag and not tag.startswith("sha256:") else f"{len(images)} images"
        )
        raise ImgscopeError(
            f"{store.label}: holds {what}, pick one with --image TAG or --image sha256:DIGEST: {listing}"
        )
    if platform:
        return candidates[0]
    if len(candidates) == 1:
        return candidates[0]
    host = host_platform()
    for cand, plat in zip(candidates, plats, strict=True):
        if plat is not None and plat[:2] == host[:2]:
            return cand
    if len({c.digest for c in candidates}) == 1:
        return candidates[0]
    listing = ", ".join(
        f"{fmt_platform(p)}" + (f" [{', '.join(c.tags)}]" if c.tags else "")
        for c, p in zip(candidates, plats, strict=True)
    )
    raise ImgscopeError(f"{store.label}: several images here, pick one with --platform or a tag: {listing}")


def plan_from_manifest(cand: Candidate, prefix: str = "") -> ImagePlan:
    """Turn a chosen manifest into the blobs to read."""
    manifest = cand.manifest
    config = manifest.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("digest"), str):
        raise ImgscopeError(f"manifest {cand.digest} has no config descriptor")
    layers = []
    descs = manifest.get("layers") or []
    if not isinstance(descs, list):
        raise ImgscopeError(f"manifest {cand.digest}: layers is not a list")
    for desc in descs:
        if not isinstance(desc, dict) or not isinstance(desc.get("digest"), str):
            raise ImgscopeError(f"manifest {cand.digest} has a layer without a digest")
        size = desc.get("size")
        layers.append(
            LayerRef(
                name=blob_name(desc["digest"], prefix),
                digest=desc["digest"],
                media_type=desc.get("mediaType"),
                compressed_size=size if isinstance(size, int) else None,
            )
        )
    return ImagePlan(
        config_name=blob_name(config["digest"], prefix),
        layers=tuple(layers),
        tags=cand.tags,
        manifest_digest=cand.digest,
        config_digest=config["digest"],
    )


def plan_layout(store: Store, tag: str | None, platform: str | None) -> ImagePlan:
    """Plan for an OCI layout held by ``store``."""
    if not store.exists("index.json"):
        raise ImgscopeError(f"{store.label}: not an OCI layout (no index.json)")
    index = load_json(store.read("index.json"), f"{store.label}: index.json")
    if not isinstance(index, dict):
        raise ImgscopeError(f"{store.label}: index.json is not a JSON object")
    candidates, notes = walk_index(store, index)
    wanted = normalize_platform(platform) if platform else None
    if not candidates and notes:
        what = f" for {fmt_platform(wanted)}" if wanted is not None else ""
        raise ImgscopeError(f"{store.label}: no readable image{what}: {missing_note(notes, wanted) or notes[0]}")
    try:
        chosen = choose(store, candidates, tag, platform)
    except ImgscopeError as exc:
        note = missing_note(notes, wanted) if wanted is not None else None
        if note is None or "no image for" not in str(exc):
            raise
        raise ImgscopeError(f"{exc} ({note}: that platform was not pulled)") from exc
    plan = plan_from_manifest(chosen)
    for ref in plan.layers:
        if not store.exists(ref.name):
            raise ImgscopeError(f"{store.label}: layer blob {ref.digest} is missing from the layout")
    if not store.exists(plan.config_name):
        raise ImgscopeError(f"{store.label}: config blob {plan.config_digest} is missing from the layout")
    return ImagePlan(
        config_name=plan.config_name,
        layers=plan.layers,
        tags=plan.tags,
        manifest_digest=plan.manifest_digest,
        config_digest=plan.config_digest,
        warnings=tuple(n.text for n in notes if not n.missing),
    )
