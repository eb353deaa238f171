"""Which layers a set of images shares, and what that sharing saves.

Docker stores a layer once per **ChainID** (the layer and everything under
it), and ``docker system df`` counts an image's shared size as the sum of its
layers whose ChainID at least one other image of the set also uses.  The same
definition is used here, so the figures can be checked against the daemon.
A layer whose content (DiffID) recurs on another base has another ChainID:
it is stored again, and is reported as "same content, different base", the
one case where people expect sharing and get none.

Images are grouped by their base layer (ChainIDs are prefix-closed: two
images that share any layer share layer 0), and each group's common base is
the longest chain every image of the group has.  Pure data, no printing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from imgscope.model import Image
from imgscope.stack import chain_ids, instruction


@dataclass(frozen=True, slots=True)
class Member:
    """One image of the set: its layers' ChainIDs and its shared and unique bytes (Docker's definitions)."""

    name: str
    image: Image
    chain_ids: tuple[str, ...]
    size: int
    shared: int
    shared_layers: int
    group: int
    aliases: tuple[str, ...] = ()

    @property
    def unique(self) -> int:
        """Bytes no other image of the set uses (``docker system df -v``'s UNIQUE SIZE)."""
        return self.size - self.shared


@dataclass(frozen=True, slots=True)
class LayerUse:
    """One distinct layer (ChainID) of the set, and which images use it."""

    chain_id: str
    diff_id: str
    index: int
    size: int
    instruction: str
    images: tuple[int, ...]

    @property
    def shared(self) -> bool:
        return len(self.images) > 1


@dataclass(frozen=True, slots=True)
class Group:
    """Images on the same base layer, their longest common chain and what sharing saves them."""

    number: int
    images: tuple[int, ...]
    base_layers: int
    base_chain_id: str | None
    base_size: int
    base_instruction: str
    total: int
    stored: int

    @property
    def savings(self) -> int:
        """Bytes stored once instead of once per image."""
        return self.total - self.stored


@dataclass(frozen=True, slots=True)
class Occurrence:
    """Where a layer's content appears: image, layer index and the ChainID it has there."""

    image: int
    layer: int
    chain_id: str


@dataclass(frozen=True, slots=True)
class SameContent:
    """A DiffID that appears under several ChainIDs: identical bytes, stored once per base."""

    diff_id: str
    size: int
    instruction: str
    occurrences: tuple[Occurrence, ...]

    @property
    def chains(self) -> int:
        return len({o.chain_id for o in self.occurrences})

    @property
    def extra_bytes(self) -> int:
        """Bytes stored again because the bases differ."""
        return self.size * (self.chains - 1)


@dataclass(frozen=True, slots=True)
class SharedReport:
    """Everything ``imgscope shared`` reports."""

    members: tuple[Member, ...]
    layers: tuple[LayerUse, ...]
    matrix: tuple[tuple[int, ...], ...]
    groups: tuple[Group, ...]
    same_content: tuple[SameContent, ...]
    warnings: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        """Bytes if every image stored its own layers."""
        return sum(m.size for m in self.members)

    @property
    def stored(self) -> int:
        """Bytes actually stored: each ChainID once."""
        return sum(layer.size for layer in self.layers)

    @property
    def savings(self) -> int:
        return self.total - self.stored

    @property
    def shared_layer_count(self) -> int:
        return sum(1 for layer in self.layers if layer.shared)


def layer_instructions(image: Image) -> list[str]:
    """The instruction that made each layer, pairing history with layers as moby does."""
    out: list[str] = []
    for item in image.config.history:
        if not item.empty_layer and len(out) < len(image.scans):
            out.append(instruction(item.created_by) or "(no instruction)")
    missing = "(missing)" if image.config.history else "(no history)"
    out.extend(missing for _ in range(len(image.scans) - len(out)))
    return out


def _merge(images: Sequence[tuple[str, Image]]) -> tuple[list[tuple[str, Image, tuple[str, ...]]], list[str]]:
    """One member per image ID: the same image named twice is one image, as Docker counts it."""
    order: list[str] = []
    by_id: dict[str, tuple[str, Image, list[str]]] = {}
    warnings: list[str] = []
    for name, image in images:
        key = image.image_id
        if key in by_id:
            first = by_id[key]
            first[2].append(name)
            warnings.append(f"{name} is the same image as {first[0]} ({key[:19]}): counted once")
            continue
        by_id[key] = (name, image, [])
        order.append(key)
    return [(by_id[k][0], by_id[k][1], tuple(by_id[k][2])) for k in order], warnings


def analyse(images: Sequence[tuple[str, Image]]) -> SharedReport:
    """Share accounting of a set of (name, image) pairs, by ChainID, as Docker counts it."""
    merged, warnings = _merge(images)
    chains = [chain_ids([s.diff_id for s in image.scans]) for _, image, _ in merged]
    users: dict[str, list[int]] = {}
    first_seen: dict[str, tuple[int, int]] = {}
    for i, ids in enumerate(chains):
        for layer, chain in enumerate(ids):
            users.setdefault(chain, []).append(i)
            first_seen.setdefault(chain, (i, layer))
    instructions = [layer_instructions(image) for _, image, _ in merged]
    layers: list[LayerUse] = []
    for chain, (i, layer) in first_seen.items():
        scan = merged[i][1].scans[layer]
        layers.append(LayerUse(chain, scan.diff_id, layer, scan.size, instructions[i][layer], tuple(users[chain])))
    size_of = {layer.chain_id: layer.size for layer in layers}

    # Groups: images on the same base layer (ChainID of layer 0 = its DiffID).
    group_of: dict[str, int] = {}
    group_members: list[list[int]] = []
    member_group: list[int] = []
    for i, ids in enumerate(chains):
        key = ids[0] if ids else f"(no layers {i})"
        if key not in group_of:
            group_of[key] = len(group_members)
            group_members.append([])
        group_members[group_of[key]].append(i)
        member_group.append(group_of[key])

    members: list[Member] = []
    for i, (name, image, aliases) in enumerate(merged):
        shared_chains = [c for c in chains[i] if len(users[c]) > 1]
        members.append(
            Member(
                name=name,
                image=image,
                chain_ids=tuple(chains[i]),
                size=sum(size_of[c] for c in chains[i]),
                shared=sum(size_of[c] for c in shared_chains),
                shared_layers=len(shared_chains),
                group=member_group[i],
                aliases=aliases,
            )
        )

    sets = [set(ids) for ids in chains]
    matrix = tuple(
        tuple(sum(size_of[c] for c in sets[i] & sets[j]) for j in range(len(merged))) for i in range(len(merged))
    )

    groups: list[Group] = []
    for number, indexes in enumerate(group_members):
        base = 0
        if len(indexes) > 1:
            shortest = min(len(chains[i]) for i in indexes)
            while base < shortest and len({chains[i][base] for i in indexes}) == 1:
                base += 1
        first = indexes[0]
        base_chain = chains[first][base - 1] if base else None
        distinct = {c for i in indexes for c in chains[i]}
        groups.append(
            Group(
                number=number,
                images=tuple(indexes),
                base_layers=base,
                base_chain_id=base_chain,
                base_size=sum(size_of[c] for c in chains[first][:base]),
                base_instruction=instructions[first][base - 1] if base else "",
                total=sum(members[i].size for i in indexes),
                stored=sum(size_of[c] for c in distinct),
            )
        )

    same: list[SameContent] = []
    by_diff: dict[str, list[Occurrence]] = {}
    for i, (_, image, _) in enumerate(merged):
        for layer, scan in enumerate(image.scans):
            if scan.entries:  # an empty layer recurs everywhere and stores nothing
                by_diff.setdefault(scan.diff_id, []).append(Occurrence(i, layer, chains[i][layer]))
    for diff_id, occurrences in by_diff.items():
        if len({o.chain_id for o in occurrences}) > 1:
            o = occurrences[0]
            scan = merged[o.image][1].scans[o.layer]
            same.append(SameContent(diff_id, scan.size, instructions[o.image][o.layer], tuple(occurrences)))
    same.sort(key=lambda s: (-s.extra_bytes, s.diff_id))
    return SharedReport(
        members=tuple(members),
        layers=tuple(layers),
        matrix=matrix,
        groups=tuple(groups),
        same_content=tuple(same),
        warnings=tuple(warnings),
    )
