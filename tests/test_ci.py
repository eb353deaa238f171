"""``imgscope ci``: every rule passing and failing, config files, dive's CI semantics, baselines, outputs.

Expected figures come from outside the code under test: image sizes and
waste from the test's own image descriptions (content lengths written into
the tars), gzip sizes from Python's ``gzip`` module, dive's figures from
dive's own published numbers and test table (``runtime/ci/evaluator_test.go``
on ``test-docker-image.tar``) and from a small re-count of dive's definition
over the raw layer tars.
"""

from __future__ import annotations

import gzip
import io
import json
import posixpath
import tarfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from junitparser import Failure, JUnitXml, Skipped
from typer.testing import CliRunner

from imgscope.analysis import rules
from imgscope.analysis.rules import SnapshotLayer, match_steps, parse_dive_bytes, parse_dive_ratio
from imgscope.cli import app
from imgscope.errors import ImgscopeError
from imgscope.schemas import load_schema
from tests.conftest import SAMPLES
from tests.imagebuild import (
    BuildStep,
    ImageSpec,
    copy,
    directory,
    file,
    nop,
    run,
    whiteout,
    write_docker_archive,
    write_oci_layout,
)

# dive's efficiency for its own test image (dive's filetree efficiency test).
DIVE_EFFICIENCY = 0.9844212134184309

APP_V1 = 10_000
APP_V2 = 25_000
ENV_BYTES = b"SECRET=hunter2\n"
BIG = 7_000
LISTS = 2_000
TOOL = 5_000
CONF = 300


def base_spec() -> ImageSpec:
    return ImageSpec(
        steps=(
            BuildStep(
                "/bin/sh -c #(nop) ADD file:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef in / ",
                (
                    directory("bin"),
                    file("bin/tool", b"t" * TOOL, mode=0o755),
                    directory("etc"),
                    file("etc/conf", b"c" * CONF),
                ),
            ),
            nop('CMD ["sh"]'),
        )
    )


def app_spec(app_bytes: int, with_env: bool) -> ImageSpec:
    app_layer = [directory("app"), file("app/app.bin", b"a" * app_bytes)]
    if with_env:
        app_layer.append(file("app/.env", ENV_BYTES))
    return base_spec().extend(
        copy("app.bin", "/app", *app_layer),
        run(
            "apt-get update",
            directory("var"),
            directory("var/lib"),
            directory("var/lib/apt"),
            directory("var/lib/apt/lists"),
            file("var/lib/apt/lists/index", b"l" * LISTS),
        ),
        run("curl -o /opt/big.tar http://example", directory("opt"), file("opt/big.tar", b"b" * BIG)),
        run("rm /opt/big.tar", directory("opt"), whiteout("opt/big.tar")),
        nop("USER app"),
    )


def content_bytes(spec: ImageSpec) -> list[int]:
    """Per layer, the bytes of regular file content the description writes (Docker's size for files only)."""
    return [sum(len(e.content) for e in step.layer if e.kind == "file") for step in spec.steps if step.layer]


@pytest.fixture
def images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """v1 and v2 of a small app image (archives), v2 also as an OCI layout; the working dir is tmp_path."""
    monkeypatch.chdir(tmp_path)
    out = {"v1": tmp_path / "v1.tar", "v2": tmp_path / "v2.tar", "v2-oci": tmp_path / "v2-oci"}
    write_docker_archive(out["v1"], app_spec(APP_V1, False), tag="app:v1")
    write_docker_archive(out["v2"], app_spec(APP_V2, True), tag="app:v2")
    write_oci_layout(out["v2-oci"], app_spec(APP_V2, True))
    return out


@pytest.fixture(autouse=True)
def _no_step_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs under GitHub Actions must not append to the real job summary."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


def run_ci(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["ci", *args])
    return result.exit_code, result.stdout, result.stderr


def ci_json(*args: str) -> tuple[int, dict[str, Any]]:
    code, out, err = run_ci(*args, "--json")
    assert code in (0, 1), err
    data = json.loads(out)
    jsonschema.validate(data, load_schema("ci"))
    return code, data


def result_of(data: dict[str, Any], name: str) -> dict[str, Any]:
    found = [r for r in data["rules"] if r["name"] == name]
    assert len(found) == 1, [r["name"] for r in data["rules"]]
    return found[0]


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("imgscope: error: ")
    return lines[0]


# ---------------------------------------------------------------------------
# Each rule passing and failing
# ---------------------------------------------------------------------------


def v1_figures() -> dict[str, Any]:
    layers = content_bytes(app_spec(APP_V1, False))
    total = sum(layers)
    wasted = BIG  # written by one step, deleted by the next
    return {
        "size": total,
        "layers": len(layers),
        "largest": max(layers),
        "wasted": wasted,
        "efficiency": 1 - wasted / total,
        "wasted_fraction": wasted / total,
        "junk": LISTS,
    }


RULE_CASES = [
    # rule, figure, limit that passes (at the measure), limit that fails
    ("max-size", "size", lambda v: str(v), lambda v: str(v - 1)),
    ("max-layers", "layers", lambda v: str(v), lambda v: str(v - 1)),
    ("max-layer-size", "largest", lambda v: str(v), lambda v: str(v - 1)),
    ("max-wasted-bytes", "wasted", lambda v: str(v), lambda v: str(v - 1)),
    ("max-junk-bytes", "junk", lambda v: str(v), lambda v: str(v - 1)),
    ("min-efficiency", "efficiency", lambda v: repr(v), lambda v: repr(v + 0.001)),
    ("max-wasted-percent", "wasted_fraction", lambda v: repr(v), lambda v: repr(v - 0.001)),
]


@pytest.mark.parametrize(("rule_name", "figure", "passing", "failing"), RULE_CASES, ids=[c[0] for c in RULE_CASES])
def test_rule_passes_at_its_limit_and_fails_past_it(
    images: dict[str, Path], rule_name: str, figure: str, passing: Any, failing: Any
) -> None:
    value = v1_figures()[figure]
    code, data = ci_json(str(images["v1"]), f"--{rule_name}", passing(value))
    result = result_of(data, rule_name)
    assert result["status"] == "pass" and code == 0
    assert result["measured"] == pytest.approx(value)
    assert result["origin"] == f"--{rule_name}"
    code, data = ci_json(str(images["v1"]), f"--{rule_name}", failing(value))
    assert result_of(data, rule_name)["status"] == "fail" and code == 1
    # Only the rule given on the command line runs: defaults are off once an option is used.
    assert data["counts"] == {"pass": 0, "fail": 1, "skip": len(rules.RULES) - 1}


def test_units_in_options(images: dict[str, Path]) -> None:
    size = v1_figures()["size"]  # 24,300 bytes
    assert ci_json(str(images["v1"]), "--max-size", "24.3kB")[0] == 0
    assert ci_json(str(images["v1"]), "--max-size", "23KiB")[0] == 1  # 23,552 bytes
    assert ci_json(str(images["v1"]), "--max-wasted-percent", f"{100 * BIG / size + 0.01:.2f}%")[0] == 0
    assert ci_json(str(images["v1"]), "--min-efficiency", "71%")[0] == 0
    assert ci_json(str(images["v1"]), "--min-efficiency", "72%")[0] == 1
    assert ci_json(str(images["v1"]), "--min-efficiency", "72%", "--min-efficiency", "off")[0] == 0


def test_max_layer_size_names_the_layer(images: dict[str, Path]) -> None:
    code, data = ci_json(str(images["v1"]), "--max-layer-size", "6000")
    result = result_of(data, "max-layer-size")
    assert code == 1
    # Layer 1 (the COPY, 10,000 bytes) is over; layer 0 (5,300) and layer 3 (7,000) too? 7,000 > 6,000: yes.
    assert [(f["layer"], f["bytes"]) for f in result["findings"]] == [(1, APP_V1), (3, BIG)]


def test_forbid_path(images: dict[str, Path]) -> None:
    code, data = ci_json(str(images["v2"]), "--forbid-path", "**/.env", "--forbid-path", "**/id_rsa")
    result = result_of(data, "forbid-path")
    assert code == 1 and result["status"] == "fail"
    assert [(f["path"], f["layer"], f["note"]) for f in result["findings"]] == [("/app/.env", 1, "**/.env")]
    code, data = ci_json(str(images["v1"]), "--forbid-path", "**/.env", "--forbid-path", "**/id_rsa")
    assert code == 0 and result_of(data, "forbid-path")["measured"] == 0
    # A directory match is reported once, not with everything below it (``/dir/**`` matches the dir too).
    code, data = ci_json(str(images["v1"]), "--forbid-path", "/var/lib/apt/**")
    assert [f["path"] for f in result_of(data, "forbid-path")["findings"]] == ["/var/lib/apt"]
    code, data = ci_json(str(images["v1"]), "--forbid-path", "/var/lib/*/lists/*")
    assert [f["path"] for f in result_of(data, "forbid-path")["findings"]] == ["/var/lib/apt/lists/index"]


def gzip6(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=6, mtime=0))


def layer_tars(archive: Path) -> list[bytes]:
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        out = []
        for name in manifest["Layers"]:
            member = outer.getmember(name)
            if member.issym():
                member = outer.getmember(posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname)))
            out.append(outer.extractfile(member).read())  # type: ignore[union-attr]
        return out


def test_max_compressed_size_estimates_with_gzip_6(images: dict[str, Path]) -> None:
    expected = [gzip6(t) for t in layer_tars(images["v1"])]
    code, data = ci_json(str(images["v1"]), "--max-compressed-size", str(sum(expected)))
    result = result_of(data, "max-compressed-size")
    assert code == 0 and result["measured"] == sum(expected)
    assert data["push"] == {
        "total": sum(expected),
        "method": "gzip-6",
        "layers": expected,
        "estimated_layers": list(range(len(expected))),
    }
    assert "gzip -6 estimate" in result["reason"]
    code, data = ci_json(str(images["v1"]), "--max-compressed-size", str(sum(expected) - 1))
    assert code == 1 and result_of(data, "max-compressed-size")["status"] == "fail"


def test_max_compressed_size_uses_manifest_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    layout = SAMPLES / "demo-oci"
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((layout / "blobs" / "sha256" / manifest_digest).read_text())
    on_disk = [(layout / "blobs" / "sha256" / d["digest"].split(":")[1]).stat().st_size for d in manifest["layers"]]
    code, data = ci_json(str(layout), "--max-compressed-size", "1MB")
    assert code == 0
    assert data["push"]["method"] == "manifest" and data["push"]["layers"] == on_disk
    # The same layers, stored uncompressed, estimated here: sample_images gzips at level 6 too.
    code, legacy = ci_json(str(SAMPLES / "demo-legacy.tar"), "--max-compressed-size", "1MB")
    assert legacy["push"]["method"] == "gzip-6" and legacy["push"]["layers"] == on_disk


def test_docker_25_uncompressed_blobs_are_not_push_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, data = ci_json(str(SAMPLES / "demo-v25.tar"), "--max-compressed-size", "1MB")
    assert code == 0
    tars = layer_tars(SAMPLES / "demo-v25.tar")
    assert data["push"]["method"] == "gzip-6" and data["push"]["layers"] == [gzip6(t) for t in tars]


def test_push_size_is_not_computed_when_the_rule_is_off(
    images: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgscope.sources import layerbytes

    def refuse(*_args: object, **_kwargs: object) -> dict[str, int]:
        raise AssertionError("layers were read again although max-compressed-size is off")

    monkeypatch.setattr(layerbytes, "gzip_sizes", refuse)
    code, data = ci_json(str(images["v1"]), "--max-size", "1MB")
    assert code == 0 and data["push"] is None


# ---------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------


def growth_figures() -> tuple[int, int]:
    before = sum(content_bytes(app_spec(APP_V1, False)))
    after = sum(content_bytes(app_spec(APP_V2, True)))
    return before, after


@pytest.mark.parametrize("kind", ["json", "archive", "oci"])
def test_max_growth_against_a_baseline(images: dict[str, Path], tmp_path: Path, kind: str) -> None:
    before, after = growth_figures()
    delta = after - before  # 15,000 more app bytes and the .env file
    if kind == "json":
        result = CliRunner().invoke(app, ["inspect", str(images["v1"]), "--json"])
        assert result.exit_code == 0
        baseline = tmp_path / "baseline.json"
        baseline.write_text(result.stdout)
    else:
        baseline = images["v1"]
    current = images["v2"] if kind != "oci" else images["v2-oci"]
    code, data = ci_json(
        str(current),
        "--baseline",
        str(baseline),
        "--max-growth",
        str(delta),
        "--max-growth",
        f"{100 * delta / before + 0.01:.2f}%",
    )
    assert code == 0, data
    growth = data["growth"]
    assert (growth["before"], growth["after"], growth["delta"]) == (before, after, delta)
    assert growth["fraction"] == pytest.approx(delta / before)
    assert growth["baseline_kind"] == ("report" if kind == "json" else "image")
    # The COPY step grew; the other steps are the same.
    assert [(s["layer"], s["baseline_layer"], s["delta"]) for s in growth["steps"]] == [(1, 1, delta)]
    assert [(p["path"], p["before"], p["after"]) for p in growth["paths"]] == [
        ("/app/app.bin", APP_V1, APP_V2),
        ("/app/.env", None, len(ENV_BYTES)),
    ]
    assert (growth["grown_paths"], growth["new_paths"], growth["removed_paths"]) == (1, 1, 0)

    code, data = ci_json(str(current), "--baseline", str(baseline), "--max-growth", str(delta - 1))
    failed = result_of(data, f"max-growth {delta - 1}")
    assert code == 1 and failed["status"] == "fail"
    assert failed["findings"][0] == {"path": None, "layer": 1, "bytes": delta, "note": "COPY app.bin in /app"}
    code, data = ci_json(str(current), "--baseline", str(baseline), "--max-growth", "50%")
    assert code == 1 and result_of(data, "max-growth 50%")["measured"] == pytest.approx(delta / before)


def test_console_shows_what_grew_on_failure(images: dict[str, Path]) -> None:
    code, out, _ = run_ci(str(images["v2"]), "--baseline", str(images["v1"]), "--max-growth", "1kB", "--no-color")
    assert code == 1
    lines = out.splitlines()
    rule_line = next(line for line in lines if "max-growth 1kB" in line)
    assert rule_line.split()[0] == "FAIL" and "+15.0 kB" in rule_line and "<= 1.0 kB" in rule_line
    assert any("layer 1 COPY app.bin in /app" in line and "+15.0 kB" in line for line in lines)
    assert any("/app/app.bin" in line and "was 10.0 kB" in line for line in lines)
    # A growth failure is about growth: no waste paths or waste advice (no waste rule ran).
    assert not any("/opt/big.tar" in line or "advice:" in line for line in lines)
    assert lines[-1].startswith("FAIL: 1 failed, 0 passed")


def test_max_growth_without_baseline_is_skipped(images: dict[str, Path]) -> None:
    code, data = ci_json(str(images["v1"]), "--max-growth", "5%")
    result = result_of(data, "max-growth 5%")
    assert code == 0 and result["status"] == "skip" and "baseline" in result["reason"]


def test_step_matching_pairs_edited_steps() -> None:
    before = (
        SnapshotLayer(0, "ADD file:0123456789ab… in /", 100),
        SnapshotLayer(1, "RUN apt-get install a", 50),
        SnapshotLayer(2, "COPY . /app", 10),
    )
    after = (
        SnapshotLayer(0, "ADD file:ba9876543210… in /", 100),
        SnapshotLayer(1, "RUN apt-get install a b", 80),
        SnapshotLayer(2, "RUN make", 5),
        SnapshotLayer(3, "COPY . /app", 12),
    )
    pairs = [(s.baseline_layer, s.layer, s.delta) for s in match_steps(before, after)]
    assert pairs == [(0, 0, 0), (1, 1, 30), (None, 2, 5), (2, 3, 2)]


# ---------------------------------------------------------------------------
# Config files
# ---------------------------------------------------------------------------


def test_defaults_apply_only_without_config_and_options(images: dict[str, Path]) -> None:
    code, data = ci_json(str(images["v1"]))
    figures = v1_figures()
    assert data["config"]["source"] == "defaults"
    active = {r["rule"]: r for r in data["rules"] if r["status"] != "skip"}
    assert set(active) == {"min-efficiency", "max-wasted-percent"}
    assert active["min-efficiency"]["limit"] == 0.9 and active["max-wasted-percent"]["limit"] == 0.1
    # 7,000 of 24,300 bytes wasted: efficiency 71%, both defaults fail.
    assert active["min-efficiency"]["measured"] == pytest.approx(figures["efficiency"])
    assert code == 1 and data["counts"]["fail"] == 2


def test_yaml_config_and_option_override(images: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / ".imgscope.yaml").write_text(
        "# budgets\n"
        "rules:\n"
        "  max-size: 30kB\n"
        "  max-layers: 4\n"
        "  forbid-path:\n"
        "    - '**/.env'\n"
        "    - '**/id_rsa'\n"
        "  min-efficiency: off\n"
    )
    code, data = ci_json(str(images["v2"]))
    assert data["config"]["source"] == ".imgscope.yaml"
    statuses = {r["rule"]: r["status"] for r in data["rules"]}
    assert statuses["max-size"] == "fail"  # 39,340 bytes
    assert statuses["max-layers"] == "fail"  # 5 layers
    assert statuses["forbid-path"] == "fail"
    assert statuses["min-efficiency"] == "skip"
    assert statuses["max-wasted-percent"] == "skip"  # a config file turns the defaults off
    assert result_of(data, "max-size")["origin"] == ".imgscope.yaml line 3"
    assert result_of(data, "forbid-path")["limit_text"] == "**/.env, **/id_rsa"
    # Options override the file, rule by rule.
    code, data = ci_json(str(images["v2"]), "--max-size", "40kB", "--max-layers", "off", "--forbid-path", "**/id_rsa")
    statuses = {r["rule"]: r["status"] for r in data["rules"]}
    assert statuses["max-size"] == "pass" and statuses["max-layers"] == "skip" and statuses["forbid-path"] == "pass"
    assert code == 0
    assert data["config"]["source"] == ".imgscope.yaml and options"


def test_toml_config(images: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / ".imgscope.toml").write_text(
        '[rules]\nmax-size = "30kB"\nmax_layers = 5\nmin-efficiency = false\nforbid-path = ["**/.env"]\n'
    )
    code, data = ci_json(str(images["v1"]))
    statuses = {r["rule"]: r["status"] for r in data["rules"]}
    assert statuses == {
        **dict.fromkeys(statuses, "skip"),
        "max-size": "pass",
        "max-layers": "pass",
        "forbid-path": "pass",
    }
    assert result_of(data, "max-layers")["origin"] == ".imgscope.toml line 3"
    assert code == 0


def test_config_option_and_baseline_key(images: dict[str, Path], tmp_path: Path) -> None:
    conf = tmp_path / "ci" / "budget.yml"
    conf.parent.mkdir()
    (tmp_path / "ci" / "v1.tar").write_bytes(images["v1"].read_bytes())
    conf.write_text("baseline: v1.tar\nrules:\n  max-growth: [20kB, 100%]\n")
    code, data = ci_json(str(images["v2"]), "--config", str(conf))
    before, after = growth_figures()
    assert code == 0 and data["growth"]["delta"] == after - before
    assert [r["status"] for r in data["rules"] if r["rule"] == "max-growth"] == ["pass", "pass"]


CONFIG_ERRORS = [
    (".imgscope.yaml", "rules:\n  max-size: 300MB\n  max-sise: 1GB\n", "line 3", "did you mean max-size"),
    (".imgscope.yaml", "rules:\n\n  max-size: 300XB\n", "line 3", "unknown unit"),
    (".imgscope.yaml", "rules:\n  min-efficiency: 90\n", "line 2", "between 0 and 1"),
    (".imgscope.yaml", "rules:\n  max-size: [1GB, 2GB]\n", "line 2", "one value"),
    (".imgscope.yaml", "rules:\n  max-size: 1GB\n  max-size: 2GB\n", "line 3", "set twice"),
    (".imgscope.yaml", "rules:\n  max-size: 1GB\n   bad: [\n", "line ", "not valid YAML"),
    (".imgscope.toml", '[rules]\nmax-size = "1GB"\nmax-sizes = "2GB"\n', "line 3", "did you mean max-size"),
    (".imgscope.toml", "[rules\n", "line 1", "not valid TOML"),
    (".dive-ci", "rules:\n  lowestEfficiency: 0.9\n  highestWastedBytez: 20MB\n", "line 3", "unknown dive rule"),
    (".dive-ci", "rules:\n  highestUserWastedPercent: 10%\n", "line 2", "not a number"),
]


@pytest.mark.parametrize(("name", "text", "line", "message"), CONFIG_ERRORS)
def test_config_errors_name_the_file_and_line(
    images: dict[str, Path], tmp_path: Path, name: str, text: str, line: str, message: str
) -> None:
    (tmp_path / name).write_text(text)
    code, out, err = run_ci(str(images["v1"]))
    assert code == 2 and out == ""
    shown = error_line(err)
    assert f"{name} {line}" in shown and message in shown


INPUT_ERRORS = [
    (["--max-size", "3XB"], "imgscope: error: --max-size: unknown unit 'XB'"),  # its subject once
    (["--max-layers", "three"], "imgscope: error: --max-layers: 'three' is not a whole number"),
    (["--max-growth", "-5%"], "imgscope: error: --max-growth: '-5%' must be a percent"),
    (["--config", "missing.yaml"], "--config missing.yaml: no such file"),
    (["--baseline", "nothing-here.json"], "baseline nothing-here.json: no such file"),
]


@pytest.mark.parametrize(("args", "message"), INPUT_ERRORS)
def test_input_errors_exit_2(images: dict[str, Path], args: list[str], message: str) -> None:
    code, _out, err = run_ci(str(images["v1"]), *args)
    assert code == 2
    assert message in error_line(err)


def test_unreadable_baselines(images: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "schema_version": 1,\n  "image": {,\n}\n')
    code, _, err = run_ci(str(images["v1"]), "--baseline", str(bad))
    assert code == 2 and f"baseline {bad} line 3: not valid JSON" in error_line(err)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema_version": 1, "files": []}))
    code, _, err = run_ci(str(images["v1"]), "--baseline", str(other))
    assert code == 2 and "not an `imgscope inspect --json` report (no image object)" in error_line(err)
    future = tmp_path / "future.json"
    future.write_text(json.dumps({"schema_version": 99}))
    code, _, err = run_ci(str(images["v1"]), "--baseline", str(future))
    assert code == 2 and "schema_version 99" in error_line(err)


def test_both_yaml_and_toml_is_an_error(images: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / ".imgscope.yaml").write_text("rules: {}\n")
    (tmp_path / ".imgscope.toml").write_text("[rules]\n")
    code, _, err = run_ci(str(images["v1"]))
    assert code == 2 and "both .imgscope.yaml and .imgscope.toml exist" in error_line(err)


# ---------------------------------------------------------------------------
# dive compatibility
# ---------------------------------------------------------------------------


def dive_recount(archive: Path) -> tuple[int, int]:
    """dive's wasted bytes and user bytes by the issue's definition, straight from the layer tars.

    Per layer, dive visits the leaves of the layer's own tree (non-directories,
    whiteouts, directories with no children in that layer) and adds their tar
    sizes per path; wasted = the sum over paths visited twice or more; user
    bytes = tar sizes of every layer but the first.
    """
    cum: dict[str, int] = {}
    visits: dict[str, int] = {}
    sizes: list[int] = []
    for data in layer_tars(archive):
        with tarfile.open(fileobj=io.BytesIO(data)) as layer:
            members = [(posixpath.normpath("/" + m.name), m.isdir(), m.size) for m in layer]
        sizes.append(sum(size for _, _, size in members))
        parents = {posixpath.dirname(path) for path, _, _ in members}
        for path, is_dir, size in members:
            if is_dir and path in parents:
                continue
            name = posixpath.basename(path)
            if name.startswith(".wh."):
                path, size = posixpath.join(posixpath.dirname(path), name[4:]), 0
            cum[path] = cum.get(path, 0) + size
            visits[path] = visits.get(path, 0) + 1
    return sum(c for p, c in cum.items() if visits[p] > 1), sum(sizes[1:])


@pytest.fixture
def dive_image(external: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return external / "test-docker-image.tar"


def dive_ci(tmp_path: Path, image: Path, efficiency: str, wasted: str, percent: str) -> tuple[int, dict[str, Any]]:
    (tmp_path / ".dive-ci").write_text(
        "rules:\n"
        "  # If the efficiency is measured below X%, mark as failed.\n"
        f"  lowestEfficiency: {efficiency}\n"
        f"  highestWastedBytes: {wasted}\n"
        f"  highestUserWastedPercent: {percent}\n"
    )
    return ci_json(str(image))


# dive's own CI test table for this image (runtime/ci/evaluator_test.go).
DIVE_TABLE = [
    ("allFail", "0.99", "1B", "0.01", 1, ["fail", "fail", "fail"]),
    ("allPass", "0.9", "50kB", "0.5", 0, ["pass", "pass", "pass"]),
    ("allDisabled", "disabled", "disabled", "disabled", 0, ["skip", "skip", "skip"]),
]
DIVE_RULES = ["dive-lowest-efficiency", "dive-highest-wasted-bytes", "dive-highest-user-wasted-percent"]


@pytest.mark.parametrize(
    ("case", "eff", "wasted", "pct", "code", "statuses"), DIVE_TABLE, ids=[c[0] for c in DIVE_TABLE]
)
def test_dive_ci_table(
    dive_image: Path, tmp_path: Path, case: str, eff: str, wasted: str, pct: str, code: int, statuses: list[str]
) -> None:
    got_code, data = dive_ci(tmp_path, dive_image, eff, wasted, pct)
    assert got_code == code
    assert [result_of(data, name)["status"] for name in DIVE_RULES] == statuses
    # A .dive-ci file replaces imgscope's defaults: only the three dive rules can run.
    assert all(r["status"] == "skip" for r in data["rules"] if r["rule"] not in DIVE_RULES)
    assert data["config"]["source"] == ".dive-ci (dive format)"


@pytest.mark.parametrize(
    ("eff", "wasted", "pct"), [("1.1", "20MB", "0.1"), ("0.9", "1BB", "0.1"), ("0.9", "20MB", "10"), ("-9", "1MB", "0")]
)
def test_dive_misconfigured_values_exit_2(dive_image: Path, tmp_path: Path, eff: str, wasted: str, pct: str) -> None:
    (tmp_path / ".dive-ci").write_text(
        f"rules:\n  lowestEfficiency: {eff}\n  highestWastedBytes: {wasted}\n  highestUserWastedPercent: {pct}\n"
    )
    code, _, err = run_ci(str(dive_image))
    assert code == 2 and ".dive-ci line " in error_line(err)


def test_dive_figures_and_strict_limits(dive_image: Path, tmp_path: Path) -> None:
    wasted, user = dive_recount(dive_image)
    percent = wasted / user
    # At the limit, dive passes: it fails only strictly past it.
    code, data = dive_ci(tmp_path, dive_image, repr(DIVE_EFFICIENCY), str(wasted), repr(percent))
    assert code == 0
    assert result_of(data, "dive-lowest-efficiency")["measured"] == pytest.approx(DIVE_EFFICIENCY, abs=1e-12)
    assert result_of(data, "dive-highest-wasted-bytes")["measured"] == wasted
    assert result_of(data, "dive-highest-user-wasted-percent")["measured"] == pytest.approx(percent)
    assert data["waste"]["dive_user_bytes"] == user
    code, data = dive_ci(tmp_path, dive_image, repr(DIVE_EFFICIENCY + 1e-9), str(wasted - 1), repr(percent - 1e-9))
    assert code == 1
    assert [result_of(data, name)["status"] for name in DIVE_RULES] == ["fail", "fail", "fail"]


def test_dive_defaults_and_options_never_override(dive_image: Path, tmp_path: Path) -> None:
    (tmp_path / ".dive-ci").write_text("rules:\n  lowestEfficiency: 0.95\n")
    code, data = ci_json(str(dive_image), "--min-efficiency", "0.5", "--max-wasted-percent", "off")
    # dive's defaults for the keys left out: highestWastedBytes disabled, highestUserWastedPercent 0.1.
    assert result_of(data, "dive-highest-wasted-bytes")["status"] == "skip"
    user_pct = result_of(data, "dive-highest-user-wasted-percent")
    assert user_pct["limit"] == 0.1 and user_pct["origin"] == ".dive-ci (dive default)"
    assert user_pct["status"] == "fail"  # dive's figure for this image is 0.48
    assert result_of(data, "dive-lowest-efficiency")["status"] == "pass"
    # imgscope's own option adds its own rule and leaves the dive rules alone.
    assert result_of(data, "min-efficiency")["status"] == "pass"
    assert code == 1


def test_dive_keys_in_any_config_file(dive_image: Path, tmp_path: Path) -> None:
    conf = tmp_path / "dive.yaml"  # dive --ci-config takes any path; its keys make it a dive file
    conf.write_text("rules:\n  LowestEfficiency: off\n  highestwastedbytes: 1,000kB\n")
    code, data = ci_json(str(dive_image), "--config", str(conf))
    assert result_of(data, "dive-lowest-efficiency")["status"] == "skip"
    assert result_of(data, "dive-highest-wasted-bytes")["limit"] == 1_000_000
    assert result_of(data, "dive-highest-user-wasted-percent")["status"] == "fail"  # default 0.1
    assert code == 1


@pytest.mark.parametrize(
    ("text", "value"),
    [("20MB", 20_000_000), ("20MiB", 20 * 2**20), ("20 mb", 20_000_000), ("1,000kB", 1_000_000), ("42", 42)],
)
def test_dive_byte_sizes(text: str, value: int) -> None:
    assert parse_dive_bytes(text) == value


@pytest.mark.parametrize("text", ["1BB", "-1BB", "MB", "", "20%"])
def test_dive_byte_sizes_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_dive_bytes(text)


@pytest.mark.parametrize("text", ["1.1", "-0.1", "10", "nan", "5%", "0x1"])
def test_dive_ratios_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_dive_ratio(text)


def test_unknown_rule_suggests_a_name() -> None:
    with pytest.raises(ImgscopeError, match="did you mean max-wasted-bytes"):
        rules.rule("max-waste-bytes")


# ---------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------


def test_junit_report_parses(images: dict[str, Path], tmp_path: Path) -> None:
    report = tmp_path / "out" / "ci.xml"
    report.parent.mkdir()
    code, data = ci_json(
        str(images["v2"]),
        *("--max-size", "1kB", "--forbid-path", "**/.env", "--max-layers", "9", "--max-growth", "5%"),
        *("--junit", str(report)),
    )
    assert code == 1
    xml = JUnitXml.fromfile(str(report))
    suites = list(xml)
    assert len(suites) == 1
    suite = suites[0]
    cases = list(suite)
    # Only the rules asked for: the three that ran and max-growth, skipped for want of a baseline.
    asked = [r for r in data["rules"] if r["status"] != "skip" or r["reason"] not in ("not configured", "off")]
    assert (
        [c.name for c in cases]
        == [r["name"] for r in asked]
        == [
            "max-size",
            "max-layers",
            "max-growth 5%",
            "forbid-path",
        ]
    )
    assert suite.tests == len(cases)
    assert suite.failures == data["counts"]["fail"] == 2
    assert suite.skipped == 1
    assert suite.errors == 0
    by_name = {c.name: c for c in cases}
    failure = by_name["forbid-path"].result[0]
    assert isinstance(failure, Failure) and "/app/.env" in (failure.text or "")
    assert "1 path" in failure.message
    assert isinstance(by_name["max-growth 5%"].result[0], Skipped)
    assert by_name["max-layers"].is_passed
    assert all(c.classname == "imgscope.ci" for c in cases)


def test_markdown_file_and_step_summary(
    images: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    md = tmp_path / "ci.md"
    code, _, _ = run_ci(
        str(images["v2"]), "--baseline", str(images["v1"]), "--max-growth", "1kB", "--markdown", str(md)
    )
    assert code == 1
    text = md.read_text()
    assert text.startswith("### imgscope ci: ❌ 1 rule(s) failed")
    table = [line for line in text.splitlines() if line.startswith("| ❌ FAIL | max-growth 1kB |")]
    assert len(table) == 1 and "+15.0 kB" in table[0]
    assert "| +15.0 kB | /app/app.bin | 10.0 kB | 1 |" in text
    assert summary.read_text() == "earlier step\n" + text + "\n"


def test_markdown_escapes_paths() -> None:
    from imgscope.render.markdown import cell

    # A newline is shown as the escape ``\n`` (its backslash doubled for markdown), not as a space.
    assert cell("a|b`c<d>\ne") == "a\\|b\\`c&lt;d&gt;\\\\ne"


def test_json_validates_for_sample_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("demo-legacy.tar", "demo-oci", "demo-containerd.tar", "kaniko-demo.tar"):
        code, data = ci_json(str(SAMPLES / name), "--max-compressed-size", "1GB", "--forbid-path", "/etc/*")
        assert data["image"]["size"] == sum(data["image"]["layer_sizes"])
        assert result_of(data, "forbid-path")["status"] == "fail" and code == 1


def test_passing_console_output(images: dict[str, Path]) -> None:
    code, out, err = run_ci(str(images["v1"]), "--max-size", "1MB", "--no-color")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith(f"imgscope ci {images['v1']}")
    assert any(line.split()[:2] == ["PASS", "max-size"] and "<= 1.0 MB" in line for line in lines)
    assert "What to look at" not in out
    assert lines[-1].startswith("PASS: 0 failed, 1 passed")


# ---------------------------------------------------------------------------
# Daemon images (skipped without an engine)
# ---------------------------------------------------------------------------


def saved_layer_tars(client: Any, tag: str) -> list[bytes]:
    """The layer tars of ``docker save``, read with the SDK and tarfile (not imgscope)."""
    blob = b"".join(client.images.get(tag).save())
    with tarfile.open(fileobj=io.BytesIO(blob)) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        out = []
        for name in manifest["Layers"]:
            member = outer.getmember(name)
            if member.issym():
                member = outer.getmember(posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname)))
            out.append(outer.extractfile(member).read())  # type: ignore[union-attr]
        return out


@pytest.mark.daemon
def test_daemon_push_size_and_baseline(
    docker_client: Any, daemon_images: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    current, base = "imgscope-test/layers:latest", "imgscope-test/empty:latest"
    expected = [gzip6(t) for t in saved_layer_tars(docker_client, current)]
    code, data = ci_json(
        f"docker://{current}",
        "--no-cache",
        "--max-compressed-size",
        str(sum(expected)),
        "--baseline",
        f"docker://{base}",
        "--max-growth",
        "1GB",
    )
    assert code == 0
    assert data["push"]["method"] == "gzip-6" and data["push"]["layers"] == expected
    # Docker's own sizes (overlay2) are the oracle for the growth.
    sizes = {tag: docker_client.images.get(tag).attrs["Size"] for tag in (current, base)}
    growth = data["growth"]
    assert (growth["before"], growth["after"]) == (sizes[base], sizes[current])
    assert growth["baseline_kind"] == "image"


def test_baseline_alone_checks_growth_with_the_documented_default(images: dict[str, Path]) -> None:
    """``--baseline`` and nothing else: max-growth 10% (said in the output), not the waste defaults."""
    code, out, _ = run_ci(str(images["v1"]), "--baseline", str(images["v1"]), "--no-color")
    assert code == 0, out  # v1 wastes 29%: the waste defaults would fail it, growth does not
    assert "rules from the --baseline default: max-growth 10%" in out
    assert "PASS  max-growth 10%" in out
    code, data = ci_json(str(images["v2"]), "--baseline", str(images["v1"]))
    ran = {r["name"]: r for r in data["rules"] if r["status"] != "skip"}
    assert set(ran) == {"max-growth 10%"} and ran["max-growth 10%"]["limit"] == pytest.approx(0.1)
    assert code == 1 and data["config"]["source"] == "the --baseline default: max-growth 10%"
    code, out, _ = run_ci(str(images["v2"]), "--baseline", str(images["v1"]), "--no-color")
    assert code == 1
    assert "What to look at" in out and "steps that grew most" in out and "/app/app.bin" in out
    assert "advice:" not in out and "Top wasting paths" not in out
    # Any rule given (or a config file) replaces the default, as for the waste defaults.
    _code, data = ci_json(str(images["v1"]), "--baseline", str(images["v1"]), "--max-layers", "9")
    assert {r["rule"] for r in data["rules"] if r["status"] != "skip"} == {"max-layers"}
