"""The waste ledger: known answers per cause, the dive figures, junk, advice, and an exactness property.

Oracles: images written here with a hand-known answer (sizes taken from the
specs, not from imgscope); ``sample_images/expected.json`` (build.py's own
stacking); the dive test image's Dockerfile and dive's own export for it; and,
for random layer stacks, a naive overlay model of the specs written here.
"""

from __future__ import annotations

import io
import json
import posixpath
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from imgscope import reference
from imgscope import stack as stacking
from imgscope.analysis import waste
from imgscope.cli import app
from imgscope.render import waste as waste_view
from imgscope.scan import scan_layer
from imgscope.schemas import load_schema
from imgscope.sources.common import LoadOptions
from imgscope.units import format_size
from tests.conftest import SAMPLES
from tests.imagebuild import (
    T0,
    ImageSpec,
    TarEntry,
    copy,
    directory,
    file,
    hardlink,
    image_of_scans,
    layer_tar,
    nop,
    opaque,
    run,
    symlink,
    whiteout,
    write_docker_archive,
)

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


#: Built once: checking the schema itself on every hypothesis example would dominate the run time.
WASTE_SCHEMA = jsonschema.Draft202012Validator(load_schema("waste"))


def load(path: Path) -> stacking.Stack:
    return stacking.build(reference.load(str(path), LoadOptions(use_cache=False)))


def analyse_spec(tmp_path: Path, spec: ImageSpec) -> tuple[stacking.Stack, waste.WasteReport]:
    archive = tmp_path / "image.tar"
    write_docker_archive(archive, spec)
    stacked = load(archive)
    return stacked, waste.analyse(stacked)


def in_memory(layers: Sequence[Sequence[TarEntry]]) -> stacking.Stack:
    """Scan layer tars from memory and stack them: no archive, no cache (fast enough for hypothesis)."""
    scans = tuple(scan_layer(io.BytesIO(layer_tar(entries)), f"layer {i}") for i, entries in enumerate(layers))
    return stacking.build(image_of_scans(scans))


def ledger_keys(report: waste.WasteReport) -> Counter[tuple[str, int, int, str]]:
    return Counter((c.path, c.stored_layer, c.hidden_layer, c.cause) for c in report.copies)


def base_layer(*extra: TarEntry) -> tuple[TarEntry, ...]:
    return (directory("/bin"), file("/bin/sh", b"\x7fELF" + b"s" * 996, mode=0o755), *extra)


def render_text(waste_dict: dict[str, Any]) -> str:
    console = Console(record=True, width=200, color_system=None)
    console.print(waste_view.render(waste_dict, False))
    return console.export_text()


# ---------------------------------------------------------------------------
# one cause at a time, sizes from the specs
# ---------------------------------------------------------------------------

OLD = b"o" * 1500
NEW = b"n" * 700


def _cause_case(name: str) -> tuple[ImageSpec, dict[str, int], str, str]:
    """An image whose only waste is ``OLD`` (stored by layer 1) hidden by layer 2 for one cause."""
    keep = file("/app/a", OLD)
    second = {
        waste.OVERWRITTEN: file("/app/a", NEW),
        waste.IDENTICAL: file("/app/a", OLD),
        waste.METADATA_RESHIP: file("/app/a", OLD, mode=0o755),
        waste.RESHIPPED_UNCHANGED: file("/app/a", OLD, mtime=T0 + 3600),
    }
    if name == waste.DELETED:
        steps = (run("rm /app/a", directory("/app"), whiteout("/app/a")),)
        detail = "whiteout"
    else:
        steps = (run("step two", directory("/app"), second[name]),)
        detail = {waste.METADATA_RESHIP: "mode", waste.RESHIPPED_UNCHANGED: "mtime"}.get(name, "")
    spec = ImageSpec(
        (copy("file:abc", "/", *base_layer()), nop('CMD ["sh"]'), copy("app", "/app", directory("/app"), keep), *steps)
    )
    expected = {c: 0 for c in waste.CAUSES}
    expected[name] = len(OLD)
    return spec, expected, detail, name


@pytest.mark.parametrize("cause", waste.CAUSES)
def test_each_cause_alone(tmp_path: Path, cause: str) -> None:
    spec, expected, detail, _ = _cause_case(cause)
    stacked, report = analyse_spec(tmp_path, spec)
    assert {t.cause: t.bytes for t in report.by_cause} == expected
    assert report.wasted_bytes == len(OLD)
    assert [(c.path, c.stored_layer, c.hidden_layer, c.cause, c.detail) for c in report.copies] == [
        ("/app/a", 1, 2, cause, detail)
    ]
    assert report.total_stored == sum(s.size for s in stacked.image.scans)
    assert report.visible == report.total_stored - len(OLD)
    assert report.efficiency == pytest.approx(1 - len(OLD) / report.total_stored)
    assert [(s.layer, s.wasted, s.hidden) for s in report.steps] == [(0, 0, 0), (1, len(OLD), 0), (2, 0, len(OLD))]
    assert report.top_paths == (waste.PathWaste("/app/a", 1 if cause == waste.DELETED else 2, len(OLD), (1, 2)),)
    # The waste is above the advice threshold (1/1000 of what is stored): one piece of advice, for layer 2.
    assert [a.layer for a in report.advice] == [2]
    assert report.advice[0].text.startswith("layer 2 `")
    assert "layer 1 `COPY app in /app`" in report.advice[0].text
    assert format_size(len(OLD)) in report.advice[0].text


def test_opaque_directory_and_type_change_are_deletions(tmp_path: Path) -> None:
    kept, gone, child = b"k" * 300, b"g" * 4000, b"c" * 250
    spec = ImageSpec(
        (
            copy("file:abc", "/", *base_layer()),
            run(
                "mkdir -p /data /srv/x && ...",
                directory("/data"),
                file("/data/old", gone),
                file("/data/keep", kept),
                directory("/srv"),
                directory("/srv/x"),
                file("/srv/x/child", child),
            ),
            # rm -rf /data && mkdir /data && write keep again: an opaque directory, keep re-added unchanged.
            run(
                "rm -rf /data && mkdir /data && cp keep /data/keep; rm -rf /srv/x && touch /srv/x",
                directory("/data"),
                opaque("/data"),
                file("/data/keep", kept),
                directory("/srv"),
                file("/srv/x", b""),
            ),
        )
    )
    _, report = analyse_spec(tmp_path, spec)
    assert sorted((c.path, c.cause, c.detail, c.bytes) for c in report.copies) == [
        ("/data/keep", waste.IDENTICAL, "", len(kept)),
        ("/data/old", waste.DELETED, "opaque", len(gone)),
        ("/srv/x/child", waste.DELETED, "replaced", len(child)),
    ]
    assert report.cause(waste.DELETED).bytes == len(gone) + len(child)
    assert report.visible + report.wasted_bytes == report.total_stored


def test_brief_example_advice(tmp_path: Path) -> None:
    """`COPY debs /tmp/debs` then `RUN rm -rf /tmp/debs`; `RUN chmod -R 755 /app` re-shipping the app."""
    debs = [file(f"/tmp/debs/p{i}.deb", bytes([65 + i]) * (200_000 + i)) for i in range(3)]
    app_files = [file(f"/app/lib/m{i}.py", bytes([97 + i]) * 150_000) for i in range(4)]
    spec = ImageSpec(
        (
            copy("file:abc", "/", *base_layer(directory("/tmp", mode=0o1777))),
            copy("debs", "/tmp/debs", directory("/tmp", mode=0o1777), directory("/tmp/debs"), *debs),
            run("rm -rf /tmp/debs", directory("/tmp", mode=0o1777), whiteout("/tmp/debs")),
            copy(".", "/app", directory("/app"), directory("/app/lib"), *app_files),
            run(
                "chmod -R 755 /app",
                directory("/app"),
                directory("/app/lib"),
                *[file(f.path, f.content, mode=0o755) for f in app_files],
            ),
        )
    )
    _, report = analyse_spec(tmp_path, spec)
    deb_bytes = sum(len(f.content) for f in debs)
    app_bytes = sum(len(f.content) for f in app_files)
    assert report.cause(waste.DELETED).bytes == deb_bytes
    assert report.cause(waste.METADATA_RESHIP).bytes == app_bytes
    texts = {a.layer: a.text for a in report.advice}
    assert texts[2].startswith(
        f"layer 2 `RUN rm -rf /tmp/debs` deletes {format_size(deb_bytes)} (3 files under /tmp/debs) "
        "added by layer 1 `COPY debs in /tmp/debs`"
    )
    assert "multi-stage" in texts[2]
    assert texts[4].startswith(
        f"layer 4 `RUN chmod -R 755 /app` re-ships {format_size(app_bytes)} (4 files under /app/lib) from layer 3"
    )
    assert "--chmod" in texts[4]
    # Largest first.
    assert [a.bytes for a in report.advice] == sorted((a.bytes for a in report.advice), reverse=True)


# ---------------------------------------------------------------------------
# junk
# ---------------------------------------------------------------------------


def test_junk_found_with_the_layer_that_left_it(tmp_path: Path) -> None:
    apt = [file("/var/lib/apt/lists/deb.debian.org_dists_Packages", b"p" * 5000), file("/var/lib/apt/lists/lock", b"")]
    deb = file("/var/cache/apt/archives/curl.deb", b"d" * 3000)
    pip = file("/root/.cache/pip/http/ab/cd", b"w" * 2000)
    npm = file("/root/.npm/_cacache/index-v5/x", b"n" * 700)
    yarn = file("/usr/local/share/.cache/yarn/v6/pkg/index.js", b"y" * 800)
    apk = file("/var/cache/apk/APKINDEX.tar.gz", b"a" * 900)
    dnf = file("/var/cache/dnf/repo.solv", b"s" * 600)
    git = [file("/src/.git/HEAD", b"ref: refs/heads/main\n"), file("/src/.git/objects/ab/cdef", b"g" * 1200)]
    core = file("/app/core", b"\x7fELF" + b"c" * 8000)
    not_core = file("/usr/lib/node/core", b"small script")
    tmp = [file("/tmp/build/a.o", b"t" * 400), file("/tmp/build/b.o", b"t" * 500), file("/var/tmp/x", b"v" * 30)]
    spec = ImageSpec(
        (
            copy("file:abc", "/", *base_layer()),
            run("apt-get update && apt-get install -y curl", *apt, deb),
            run("pip install flask", pip),
            run("npm ci && yarn && apk add x && dnf install y", npm, yarn, apk, dnf),
            copy(".", "/src", *git),
            run("make", core, not_core, *tmp),
        )
    )
    _, report = analyse_spec(tmp_path, spec)
    got = {(j.category, j.path, j.layer): (j.bytes, j.files) for j in report.junk}
    assert got == {
        ("apt-lists", "/var/lib/apt/lists", 1): (5000, 2),
        ("apt-cache", "/var/cache/apt", 1): (3000, 1),
        ("pip-cache", "/root/.cache/pip", 2): (2000, 1),
        ("npm-cache", "/root/.npm", 3): (700, 1),
        ("yarn-cache", "/usr/local/share/.cache/yarn", 3): (800, 1),
        ("apk-cache", "/var/cache/apk", 3): (900, 1),
        ("dnf-cache", "/var/cache/dnf", 3): (600, 1),
        ("git", "/src/.git", 4): (len(git[0].content) + 1200, 2),
        ("core-dump", "/app/core", 5): (len(core.content), 1),
        ("tmp", "/tmp/build", 5): (900, 2),
        ("tmp", "/var/tmp/x", 5): (30, 1),
    }
    assert report.junk_bytes == sum(b for b, _ in got.values())
    junk_advice = [a for a in report.advice if a.kind == "junk"]
    apt_advice = next(a for a in junk_advice if "apt package lists" in a.text)
    assert apt_advice.text.startswith("layer 1 `RUN apt-get update && apt-get install -y curl` leaves 5.0 kB")
    assert "rm -rf /var/lib/apt/lists/*" in apt_advice.text


# ---------------------------------------------------------------------------
# dive's figures, computed by hand
# ---------------------------------------------------------------------------


def test_dive_figures_by_hand() -> None:
    """Leaves only, whiteout of a directory weighs what was below it, opaque directories ignored.

    Layer 0: /a/x (100), /a/y (50), /b/z (10), symlink /l. Layer 1: /a/x again (100, new content),
    a directory /e with nothing in it. Layer 2: whiteout of /a (a directory below: 100 + 50) and of
    /l (a link: 0). Layer 3: /b made opaque with a new /b/w (20): dive sees only /b/w.
    Per path (cum, min): /a/x (200, 100), /a/y (50, 50), /b/z (10, 10), /l (0, 0), /e (0, 0),
    /a (150, 150), /b/w (20, 20). Score = 330 / 430. Wasted: cum of paths seen twice = /a/x 200 + /l 0.
    User bytes (dive's layer sizes but the first): 100 + 0 + 0 + 20.
    """
    stacked = in_memory(
        [
            [
                directory("/a"),
                file("/a/x", b"1" * 100),
                file("/a/y", b"2" * 50),
                directory("/b"),
                file("/b/z", b"3" * 10),
                symlink("/l", "/a/x"),
            ],
            [directory("/a"), file("/a/x", b"4" * 100), directory("/e")],
            [whiteout("/a"), whiteout("/l")],
            [directory("/b"), opaque("/b"), file("/b/w", b"5" * 20)],
        ]
    )
    dive = waste.dive_figures(stacked)
    assert dive.efficiency == 330 / 430
    assert dive.wasted_bytes == 200
    assert dive.user_bytes == 120
    assert dive.user_wasted_percent == 200 / 120
    # imgscope: /a/x of layer 0 (overwritten) and of layer 1, /a/y (whiteout of /a), the link /l
    # (Docker counts its target's length), /b/z (hidden by the opaque directory).
    report = waste.analyse(stacked)
    assert report.wasted_bytes == 100 + 100 + 50 + len("/a/x") + 10


def test_dive_visiting_order_for_names_below_the_whiteout_prefix() -> None:
    """dive grafts a layer's nodes sorted by name: ``-x`` sorts before ``.wh.-x``, so a layer that
    deletes ``/-x`` and writes ``/-x/g`` ends up, in dive's stacked tree, without ``/-x``.

    Layer 0: /-x/f (10). Layer 1: whiteout /-x (a directory below: 10) and /-x/g (20).
    Layer 2: whiteout /-x again: dive's tree no longer has it, so 0.
    (cum, min): /-x/f (10, 10), /-x/g (20, 20), /-x (10, 0). Score = 30 / 40.
    """
    stacked = in_memory(
        [
            [directory("/-x"), file("/-x/f", b"f" * 10)],
            [whiteout("/-x"), directory("/-x"), file("/-x/g", b"g" * 20)],
            [whiteout("/-x")],
        ]
    )
    assert waste.dive_figures(stacked).efficiency == 30 / 40


def test_dive_score_is_one_for_a_single_layer_and_empty_images() -> None:
    assert waste.dive_figures(in_memory([base_layer()])).efficiency == 1.0
    empty = waste.analyse(in_memory([[]]))
    assert (empty.dive_efficiency, empty.efficiency, empty.total_stored, empty.dive_user_wasted_percent) == (
        1.0,
        1.0,
        0,
        0.0,
    )


# ---------------------------------------------------------------------------
# the dive test image: Dockerfile by hand, and dive's own numbers
# ---------------------------------------------------------------------------


def test_dive_test_image(external: Path) -> None:
    """README.md (S bytes) is copied around (Dockerfile in ../shared/fixtures/README.md).

    Wasted copies by hand: layer 3's somefile1 (re-shipped by `chmod 444`, layer 4); layer 4's
    somefile1 and layer 5's somefile2 (deleted by `rm -rf /root/example/`, layer 9); layer 6's
    somefile3 (moved away by `mv`, layer 7: a whiteout); layer 7's saved.txt (`chmod +x`, layer 13).
    """
    stacked = load(external / "test-docker-image.tar")
    report = waste.analyse(stacked)
    s = stacked.final["/somefile.txt"].entry.size
    assert s == 6405
    assert sorted((c.stored_layer, c.hidden_layer, c.cause, c.path, c.bytes) for c in report.copies) == [
        (3, 4, waste.METADATA_RESHIP, "/root/example/somefile1.txt", s),
        (4, 9, waste.DELETED, "/root/example/somefile1.txt", s),
        (5, 9, waste.DELETED, "/root/example/somefile2.txt", s),
        (6, 7, waste.DELETED, "/root/example/somefile3.txt", s),
        (7, 13, waste.METADATA_RESHIP, "/root/saved.txt", s),
    ]
    assert report.wasted_bytes == 5 * s
    assert report.cause(waste.METADATA_RESHIP).bytes == 2 * s
    assert report.cause(waste.DELETED).bytes == 3 * s
    assert report.total_stored == stacked.image.size
    assert report.efficiency == 1 - 5 * s / stacked.image.size
    # dive's own export for this image.
    assert report.dive_efficiency == 0.9844212134184309
    assert report.dive_user_bytes == 66_237
    assert report.dive_user_wasted_percent == report.dive_wasted_bytes / 66_237
    # dive's wasted: paths seen twice or more: somefile1 (2 x S), somefile3 (S + whiteout 0), saved.txt (2 x S).
    assert report.dive_wasted_bytes == 5 * s
    # /tmp/saved.again1.txt is left in /tmp by layer 11.
    assert [(j.category, j.path, j.layer, j.bytes) for j in report.junk] == [("tmp", "/tmp/saved.again1.txt", 11, s)]
    assert {a.layer for a in report.advice} == {4, 7, 9, 11, 13}


# ---------------------------------------------------------------------------
# the sample image against build.py's own stacking
# ---------------------------------------------------------------------------

_SAMPLE_CAUSE = {"removed": "deleted", "modified": "overwritten", "metadata": "metadata", "reshipped": "re-shipped"}


def test_sample_demo_against_expected_json() -> None:
    archive = SAMPLES / "demo-legacy.tar"
    facts_file = SAMPLES / "expected.json"
    if not archive.exists() or not facts_file.exists():
        pytest.skip("sample_images/ not built")
    demo = json.loads(facts_file.read_text())["demo"]
    # Oracle: walk build.py's layer facts; a file change other than "added" hides the lower copy.
    sizes: dict[str, int] = {}
    expected: Counter[str] = Counter()
    for layer in demo["layers"]:
        for change in layer["changes"]:
            if change["type"] != "dir" and change["kind"] != "added":
                expected[_SAMPLE_CAUSE[change["kind"]]] += sizes.pop(change["path"])
        for entry in layer["entries"]:
            if entry["type"] in ("file", "hardlink", "symlink"):
                # Docker's sizes: content bytes, a symlink's target length, nothing for a hard link.
                link_size = len(entry.get("link", "").encode()) if entry["type"] == "symlink" else 0
                sizes[entry["path"]] = entry["size"] if entry["type"] == "file" else link_size
    report = waste.analyse(load(archive))
    got = {t.cause: t.bytes for t in report.by_cause}
    # build.py calls both same-bytes cases "reshipped"; imgscope tells identical (same mtime) from touched.
    got[waste.RESHIPPED_UNCHANGED] += got.pop(waste.IDENTICAL)
    assert got == {c: expected.get(c, 0) for c in got}
    assert report.wasted_bytes == sum(expected.values())
    assert report.total_stored == demo["docker_size"]
    assert any(a.layer == 2 and "layer 1" in a.text and a.kind == "delete" for a in report.advice)


# ---------------------------------------------------------------------------
# JSON, schema, console, CLI
# ---------------------------------------------------------------------------


def test_json_validates_and_console_shows_it(external: Path) -> None:
    result = CliRunner().invoke(app, ["inspect", str(external / "test-docker-image.tar"), "--json"])
    assert result.exit_code == 0, result.output
    section = json.loads(result.output)["waste"]
    jsonschema.validate(section, load_schema("waste"))
    expected = waste.to_dict(waste.analyse(load(external / "test-docker-image.tar")))
    assert section == expected
    assert all(isinstance(section[k], int) for k in ("total_stored", "visible", "wasted_bytes", "junk_bytes"))
    assert section["wasted_bytes"] == sum(c["bytes"] for c in section["copies"])
    text = render_text(section)
    headline = f"Efficiency {section['efficiency'] * 100:.1f}%: wasted {format_size(section['wasted_bytes'])}"
    assert headline + f" of {format_size(section['total_stored'])} stored" in text
    dive = f"dive would report efficiency {section['dive_efficiency'] * 100:.1f}%"
    assert dive + f", wasted {format_size(section['dive_wasted_bytes'])}" in text
    assert text.count("fficiency") == 2  # one headline, one labelled line for dive
    for item in section["by_cause"].values():
        assert (item["label"] in text) == bool(item["bytes"])
    for path in section["top_paths"]:
        assert path["path"] in text
    # Advice lines wrap; compare without line breaks.
    flat = " ".join(text.split())
    for advice in section["advice"]:
        assert " ".join(advice["text"].split()) in flat
    console = CliRunner().invoke(app, ["inspect", str(external / "test-docker-image.tar"), "--no-color"])
    assert console.exit_code == 0
    assert "Wasted" in console.output and "Advice" in console.output


def test_render_of_a_clean_image_is_just_the_headline() -> None:
    section = waste.to_dict(waste.analyse(in_memory([base_layer()])))
    jsonschema.validate(section, load_schema("waste"))
    text = render_text(section)
    assert "Efficiency 100.0%: wasted 0 B of 1.0 kB stored" in text
    assert "Advice" not in text and "Top wasting paths" not in text


# ---------------------------------------------------------------------------
# exactness, for random layer stacks, against a naive overlay model of the specs
# ---------------------------------------------------------------------------

NAMES = ("a", "b", "c")
# Mostly files where files usually are and directories where directories are, so rewrites of the
# same kind (metadata, touch, identical copies) are common; sometimes anything anywhere (type changes).
DIRS = ("/a", "/b", "/a/c")
LEAVES = ("/a/x", "/a/y", "/b/x", "/a/c/x", "/a/c/y")
ANY_PATH = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts))
CONTENTS = (b"", b"x" * 10, b"x" * 10, b"y" * 10, b"z" * 1000, b"z" * 1000)

FILE_OPS = st.tuples(
    st.sampled_from(("file",) * 6 + ("symlink", "hardlink")),
    st.one_of(*[st.sampled_from(LEAVES)] * 4, ANY_PATH),
    st.sampled_from(CONTENTS),
    st.sampled_from((0o644, 0o755)),
    st.sampled_from((0, 1)),
    st.sampled_from((T0, T0 + 60)),
)
DIR_OPS = st.tuples(
    st.sampled_from(("dir", "opaque")),
    st.one_of(*[st.sampled_from(DIRS)] * 4, ANY_PATH),
    st.just(b""),
    st.sampled_from((0o755, 0o700)),
    st.just(0),
    st.just(T0),
)
WHITEOUT_OPS = st.tuples(
    st.just("whiteout"), st.sampled_from(DIRS + LEAVES), st.just(b""), st.just(0), st.just(0), st.just(T0)
)
op_strategy = st.one_of(FILE_OPS, FILE_OPS, FILE_OPS, DIR_OPS, WHITEOUT_OPS)
stack_strategy = st.lists(st.lists(op_strategy, min_size=1, max_size=8), min_size=2, max_size=6)


def _ancestors(path: str) -> list[str]:
    out = []
    while (path := posixpath.dirname(path)) != "/":
        out.append(path)
    return out


def make_layer(ops: list[tuple[str, str, bytes, int, int, int]]) -> list[TarEntry]:
    """A well-formed layer from random operations: parents present as directories, as Docker writes them."""
    real: dict[str, TarEntry] = {}
    markers: dict[tuple[str, str], TarEntry] = {}
    for kind, path, content, mode, uid, mtime in ops:
        if kind == "whiteout":
            markers[("wh", path)] = whiteout(path)
        elif kind == "opaque":
            markers[("opq", path)] = opaque(path)
            real.setdefault(path, directory(path))
        elif kind == "dir":
            real[path] = directory(path, mode=mode, uid=uid, mtime=mtime)
        elif kind == "symlink":
            real[path] = symlink(path, "target-" + content[:3].decode(), mtime=mtime)
        elif kind == "hardlink":
            real[path] = hardlink(path, "/" + NAMES[len(content) % 3], mtime=mtime)
        else:
            real[path] = file(path, content, mode=mode, uid=uid, mtime=mtime)
    # Drop what a non-directory entry of this layer would have to contain.
    nondir = {p for p, e in real.items() if e.kind != "dir"}
    real = {p: e for p, e in real.items() if not any(a in nondir for a in _ancestors(p))}
    markers = {
        k: m
        for k, m in markers.items()
        if not any(a in nondir for a in _ancestors(m.path)) and not (k[0] == "opq" and m.path in nondir)
    }
    for path in [*real, *(m.path for m in markers.values())]:
        for parent in _ancestors(path):
            real.setdefault(parent, directory(parent))
    return [real[p] for p in sorted(real)] + list(markers.values())


def docker_size(entry: TarEntry) -> int:
    if entry.kind == "file":
        return len(entry.content)
    if entry.kind == "symlink":
        return len(entry.link.encode())
    return 0


def model_cause(old: tuple[TarEntry, bytes | None], new: tuple[TarEntry, bytes | None]) -> str:
    """DESIGN.md's change vocabulary, mapped to waste causes, from the specs alone."""
    (o, odig), (n, ndig) = old, new
    if o.kind != n.kind or (n.kind == "file" and o.content != n.content) or o.link.lstrip("/") != n.link.lstrip("/"):
        return waste.OVERWRITTEN
    if n.kind == "hardlink" and odig != ndig:
        return waste.OVERWRITTEN
    if (o.mode, o.uid, o.gid, o.xattrs) != (n.mode, n.uid, n.gid, n.xattrs):
        return waste.METADATA_RESHIP
    return waste.IDENTICAL if o.mtime == n.mtime else waste.RESHIPPED_UNCHANGED


def naive_model(layers: list[list[TarEntry]]) -> tuple[Counter[tuple[str, int, int, str]], int, int]:
    """Overlay semantics applied to the specs: (wasted copies, total stored, visible)."""
    tree: dict[str, tuple[int, TarEntry, bytes | None]] = {}
    copies: Counter[tuple[str, int, int, str]] = Counter()
    total = 0

    def pop_below(path: str, include_self: bool) -> dict[str, tuple[int, TarEntry, bytes | None]]:
        hit = [p for p in tree if p.startswith(path.rstrip("/") + "/") or (include_self and p == path)]
        return {p: tree.pop(p) for p in hit}

    for index, entries in enumerate(layers):
        hidden: dict[str, tuple[int, TarEntry, bytes | None]] = {}
        for e in entries:
            if e.kind == "opaque":
                hidden.update(pop_below(e.path, include_self=False))
        for e in entries:
            if e.kind == "whiteout":
                hidden.update(pop_below(e.path, include_self=True))
        digests: dict[str, bytes | None] = {}
        lost: list[tuple[str, int, TarEntry, bytes | None, str]] = []  # (path, layer, old entry, digest, cause)
        for e in entries:
            if e.kind in ("whiteout", "opaque"):
                continue
            total += docker_size(e)
            digest = e.content if e.kind == "file" else digests.get(e.link) if e.kind == "hardlink" else None
            digests[e.path] = digest
            before = tree.get(e.path) or hidden.pop(e.path, None)
            if before is not None and before[1].kind == "dir" and e.kind != "dir":
                hidden.update(pop_below(e.path, include_self=False))
            tree[e.path] = (index, e, digest)
            if before is not None and before[1].kind != "dir":
                lost.append((e.path, before[0], before[1], before[2], model_cause(before[1:], (e, digest))))
        for path, (layer, old, old_digest) in hidden.items():
            if old.kind != "dir":
                lost.append((path, layer, old, old_digest, waste.DELETED))
        for path, layer, old, old_digest, cause in lost:
            # A hard link of the same lower layer to a file that goes keeps its content (the inode).
            links = sorted(
                p
                for p, (at, e, _) in tree.items()
                if old.kind == "file" and at == layer < index and e.kind == "hardlink" and e.link == path
            )
            if not links:
                copies[(path, layer, index, cause)] += 1
                continue
            tree[links[0]] = (layer, replace(old, path=links[0]), old_digest)
            for other in links[1:]:
                at, e, dig = tree[other]
                tree[other] = (at, replace(e, link=links[0]), dig)
    visible = sum(docker_size(e) for _, e, _ in tree.values())
    return copies, total, visible


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stack_strategy)
def test_visible_plus_wasted_is_stored(raw: list[list[tuple[str, str, bytes, int, int, int]]]) -> None:
    layers = [make_layer(ops) for ops in raw]
    stacked = in_memory(layers)
    report = waste.analyse(stacked)
    # The identity, with each side computed its own way.
    assert report.total_stored == sum(s.size for s in stacked.image.scans)
    assert report.visible == sum(f.entry.size for f in stacked.final.values())
    assert report.visible + report.wasted_bytes == report.total_stored
    assert report.wasted_bytes == sum(c.bytes for c in report.copies)
    # The ledger is the naive model's: every hidden copy once, with who stored it, who hid it and why.
    copies, total, visible = naive_model(layers)
    assert (report.total_stored, report.visible) == (total, visible)
    assert ledger_keys(report) == copies
    # Every breakdown adds up to the same total.
    assert sum(t.bytes for t in report.by_cause) == report.wasted_bytes
    assert sum(f.bytes for f in report.flows) == report.wasted_bytes
    assert sum(s.wasted for s in report.steps) == sum(s.hidden for s in report.steps) == report.wasted_bytes
    assert 0.0 <= report.efficiency <= 1.0
    assert 0.0 <= report.dive_efficiency <= 1.0
    WASTE_SCHEMA.validate(waste.to_dict(report))
