"""``imgscope shared``: layer sharing by ChainID, with Docker's definitions.

Oracles: ChainIDs recomputed here with ``hashlib`` from the DiffIDs of the
archives' configs (read with plain ``json``/``tarfile``), layer sizes from
GNU tar's listing; on a live engine, ``docker system df -v``'s SHARED SIZE
(the SDK's ``df()``) for every image of ``--all``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from imgscope import reference
from imgscope.analysis import shared as sharing
from imgscope.cli import app
from imgscope.schemas import load_schema
from imgscope.sources.common import LoadOptions
from tests import compare_images as ci
from tests.gnutar import archive_layers, gnu_list

runner = CliRunner()


def oracle_layers(archive: Path) -> list[tuple[str, str, int]]:
    """(ChainID, DiffID, size) per layer, base first, without imgscope."""
    with tarfile.open(archive) as tf:
        manifest_fh = tf.extractfile("manifest.json")
        assert manifest_fh is not None
        manifest = json.loads(manifest_fh.read())[0]
        config_fh = tf.extractfile(manifest["Config"])
        assert config_fh is not None
        diff_ids = json.loads(config_fh.read())["rootfs"]["diff_ids"]
    sizes = [gnu_list(blob).size for blob in archive_layers(archive)]
    out: list[tuple[str, str, int]] = []
    chain = ""
    for diff_id, size in zip(diff_ids, sizes, strict=True):
        chain = diff_id if not chain else "sha256:" + hashlib.sha256(f"{chain} {diff_id}".encode()).hexdigest()
        out.append((chain, diff_id, size))
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return ci.write_set(tmp_path_factory.mktemp("shared"))


def run_shared(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["shared", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def test_shared_and_unique_sizes_match_docker_definition(images: dict[str, Path]) -> None:
    names = list(images)
    code, out, _ = run_shared(*(str(images[n]) for n in names), "--json")
    assert code == 0
    report = json.loads(out)
    jsonschema.validate(report, load_schema("shared"))
    layers = {n: oracle_layers(images[n]) for n in names}
    users: dict[str, int] = {}
    for rows in layers.values():
        for chain, _, _ in rows:
            users[chain] = users.get(chain, 0) + 1
    for i, name in enumerate(names):
        item = report["images"][i]
        assert item["name"] == str(images[name])
        expected_size = sum(size for _, _, size in layers[name])
        expected_shared = sum(size for chain, _, size in layers[name] if users[chain] > 1)
        assert (item["size"], item["shared_size"], item["unique_size"]) == (
            expected_size,
            expected_shared,
            expected_size - expected_shared,
        )
        assert item["chain_ids"] == [c for c, _, _ in layers[name]]
    distinct = {chain: size for rows in layers.values() for chain, _, size in rows}
    totals = report["totals"]
    assert totals["stored"] == sum(distinct.values())
    assert totals["total"] == sum(size for rows in layers.values() for _, _, size in rows)
    assert totals["savings"] == totals["total"] - totals["stored"] > 0
    # The matrix: bytes each pair shares.
    for i, left in enumerate(names):
        for j, right in enumerate(names):
            common = {c for c, _, _ in layers[left]} & {c for c, _, _ in layers[right]}
            assert report["matrix"][i][j] == sum(distinct[c] for c in common)


def test_groups_and_common_base(images: dict[str, Path]) -> None:
    names = list(images)
    report = sharing.analyse([(n, reference.load(str(images[n]), LoadOptions())) for n in names])
    by_name = {m.name: m for m in report.members}
    on_base = {"base", "app1", "app2", "app1_rebuilt"}
    assert len({by_name[n].group for n in on_base}) == 1
    assert by_name["other"].group != by_name["base"].group
    group = report.groups[by_name["base"].group]
    assert {names[i] for i in group.images} == on_base
    base_layers = oracle_layers(images["base"])
    # Longest chain every image of the group has: the base image itself.
    assert group.base_layers == len(base_layers)
    assert group.base_chain_id == base_layers[-1][0]
    assert group.base_size == sum(s for _, _, s in base_layers)
    assert group.base_instruction.startswith("COPY file:base")
    # app1 and its rebuild share only the base; the rebuilt RUN layer has the same content elsewhere.
    i, j = names.index("app1"), names.index("app1_rebuilt")
    assert report.matrix[i][j] == group.base_size
    lone = report.groups[by_name["other"].group]
    assert lone.base_layers == 0 and lone.savings == 0


def test_same_content_different_base_is_not_shared(images: dict[str, Path]) -> None:
    names = ["app2", "other"]
    report = sharing.analyse([(n, reference.load(str(images[n]), LoadOptions())) for n in names])
    app2, other = oracle_layers(images["app2"]), oracle_layers(images["other"])
    assert app2[-1][1] == other[-1][1] and app2[-1][0] != other[-1][0]  # same DiffID, different ChainID
    assert all(m.shared == 0 for m in report.members)
    assert report.savings == 0
    found = [s for s in report.same_content if s.diff_id == app2[-1][1]]
    assert len(found) == 1
    assert found[0].extra_bytes == app2[-1][2] and found[0].chains == 2
    assert {(o.image, o.layer) for o in found[0].occurrences} == {(0, len(app2) - 1), (1, len(other) - 1)}
    code, out, _ = run_shared(str(images["app2"]), str(images["other"]), "--no-color")
    assert code == 0
    assert "Same content, different base" in out


def test_rebuilt_run_layer_is_reported_as_same_content(images: dict[str, Path]) -> None:
    names = ["app1", "app1_rebuilt"]
    report = sharing.analyse([(n, reference.load(str(images[n]), LoadOptions())) for n in names])
    a, b = oracle_layers(images["app1"]), oracle_layers(images["app1_rebuilt"])
    expected = {d for _, d, _ in a} & {d for _, d, _ in b}
    expected -= {d for (c1, d, _) in a for (c2, d2, _) in b if d == d2 and c1 == c2}
    assert {s.diff_id for s in report.same_content} == expected and expected


def test_the_same_image_twice_counts_once(images: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "copy.tar"
    shutil.copy(images["app1"], copy)
    code, out, _ = run_shared(str(images["app1"]), str(copy), "--json")
    assert code == 0
    report = json.loads(out)
    assert len(report["images"]) == 1 and report["images"][0]["aliases"] == [str(copy)]
    assert report["images"][0]["shared_size"] == 0
    assert any("same image" in w for w in report["warnings"])


def test_text_output_and_usage_errors(images: dict[str, Path]) -> None:
    code, out, _ = run_shared(str(images["base"]), str(images["app1"]), str(images["app2"]), "--no-color")
    assert code == 0
    assert "Shared bytes, image by image" in out and "Groups" in out and "saved by sharing" in out
    assert run_shared()[0] == 2
    assert run_shared("--all", str(images["base"]))[0] == 2
    assert run_shared(str(images["base"]) + ".missing")[0] == 2


def test_all_without_a_daemon_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["shared", "--all"], env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    assert result.exit_code == 2
    assert result.stderr.startswith("imgscope: error: cannot reach the docker daemon")
    assert len(result.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------- the daemon


# Unique per run: several test runs may share one engine, and each removes its own tags at the end.
SHARED_PREFIX = f"imgscope-test/shared-{uuid.uuid4().hex[:8]}-"

# Dockerfiles of the daemon set: a base, two apps on it, a rebuild with one changed
# step, and an image on another base whose top layer is identical to app2's.
DOCKERFILES = {
    "base": (
        'FROM scratch\nCOPY busybox /bin/busybox\nCOPY marker /etc/imgscope-shared-marker\nCMD ["/bin/busybox", "sh"]\n'
    ),
    "app1": "FROM {base}\nCOPY app1.txt /app1.txt\nCOPY lib.txt /lib.txt\n",
    "app1-rebuilt": "FROM {base}\nCOPY app1-v2.txt /app1.txt\nCOPY lib.txt /lib.txt\n",
    "app2": "FROM {base}\nCOPY app2.txt /app2.txt\n",
    "other": "FROM scratch\nCOPY busybox /bin/bb\nCOPY app2.txt /app2.txt\n",
}


def _build_set(client: Any, context: Path) -> dict[str, str]:
    from tests.daemon.images import busybox

    bb = busybox()
    if bb is None:
        pytest.skip("no busybox to build the daemon images with")
    shutil.copy2(bb, context / "busybox")
    files = {
        "marker": "imgscope shared test base\n",
        "app1.txt": "app one\n" * 100,
        "app1-v2.txt": "app one, second version\n" * 100,
        "app2.txt": "app two\n" * 300,
        "lib.txt": "library\n" * 200,
    }
    for name, text in files.items():
        (context / name).write_text(text)
        # Fixed mtimes: the layer of a COPY carries them, and identical layers need identical bytes.
        os.utime(context / name, (1704067200, 1704067200))
    ids: dict[str, str] = {}
    for name, text in DOCKERFILES.items():
        (context / "Dockerfile").write_text(text.format(base=f"{SHARED_PREFIX}base"))
        image, _ = client.images.build(
            path=str(context), tag=f"{SHARED_PREFIX}{name}", rm=True, forcerm=True, network_mode="none"
        )
        ids[name] = str(image.id)
    return ids


@pytest.mark.daemon
def test_all_agrees_with_docker_system_df(docker_client: Any) -> None:
    with tempfile.TemporaryDirectory(prefix="imgscope-shared-") as tmp:
        try:
            ids = _build_set(docker_client, Path(tmp))
            _compare_with_df(docker_client, ids)
            _diff_from_the_daemon(docker_client, ids, Path(tmp))
        finally:
            for name in reversed(list(DOCKERFILES)):
                with contextlib.suppress(Exception):  # already gone: nothing to clean
                    docker_client.images.remove(f"{SHARED_PREFIX}{name}", force=True)


def _listed(client: Any) -> set[str]:
    return {str(i["Id"]) for i in client.api.images()}


def _compare_with_df(client: Any, ids: dict[str, str]) -> None:
    # Other tests may build or remove images meanwhile: retry until one listing holds throughout.
    for _attempt in range(5):
        before = _listed(client)
        code, out, err = run_shared("--all", "--json")
        assert code == 0, err
        df = client.df()
        after = _listed(client)
        df_images = {str(i["Id"]): i for i in df["Images"]}
        report = json.loads(out)
        ours = {item["id"]: item for item in report["images"]}
        if before == after == set(ours) == set(df_images):
            break
        time.sleep(1)
    else:
        pytest.fail("the daemon's image list kept changing during the comparison")
    jsonschema.validate(report, load_schema("shared"))
    missing = {name: image_id for name, image_id in ids.items() if image_id not in ours}
    assert not missing, f"built but not listed by --all (removed by someone else?): {missing}"
    for image_id, item in ours.items():
        oracle = df_images[image_id]
        assert item["shared_size"] == oracle["SharedSize"], (item["name"], item["shared_size"], oracle["SharedSize"])
        assert item["size"] == oracle["Size"], item["name"]
    # The set was built to share: the apps share the base, "other" shares nothing with them.
    mine = {name: ours[image_id] for name, image_id in ids.items()}
    assert mine["app1"]["shared_size"] > 0 and mine["app2"]["shared_size"] > 0
    app2_top = mine["app2"]["chain_ids"][-1]
    other_top = mine["other"]["chain_ids"][-1]
    assert app2_top != other_top
    same = [s for s in report["same_content"] if {o["chain_id"] for o in s["occurrences"]} >= {app2_top, other_top}]
    assert len(same) == 1


def _diff_from_the_daemon(client: Any, ids: dict[str, str], context: Path) -> None:
    """``diff`` of two daemon images (mixed transports): step sizes are ``docker history``'s."""
    result = runner.invoke(
        app, ["diff", f"docker://{SHARED_PREFIX}app1", f"{SHARED_PREFIX}app1-rebuilt", "--json"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 1, result.stderr
    report = json.loads(result.stdout)
    jsonschema.validate(report, load_schema("diff"))
    for side, name in (("a", "app1"), ("b", "app1-rebuilt")):
        sizes = [
            p[side]["size"] for p in sorted((p for p in report["steps"] if p[side]), key=lambda p: p[side]["position"])
        ]
        history = [int(h["Size"]) for h in reversed(client.api.history(ids[name]))]
        assert sizes == history, name
    old, new = (context / "app1.txt").stat().st_size, (context / "app1-v2.txt").stat().st_size
    assert [(f["path"], f["kind"], f["size_a"], f["size_b"]) for f in report["files"]] == [
        ("/app1.txt", "modified", old, new)
    ]
    assert report["summary"]["shared_layers"] == len(client.api.inspect_image(ids["base"])["RootFS"]["Layers"])
    # The unchanged COPY of lib.txt after the changed step: same bytes, another base.
    lib = [p for p in report["steps"] if p["a"] and p["b"] and "lib.txt" in p["a"]["instruction"]]
    assert len(lib) == 1 and lib[0]["status"] == "changed" and lib[0]["same_content"]
