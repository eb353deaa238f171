"""No command and no format shows a secret from an image; the audit finds it and names step and layer.

Oracle: two images written here (tests/imagebuild.py, not the code under
test) with a secret known by construction, as issue 14 tried them: a step
``echo 'SECRET_KEY=abc123' > /app/.env`` that also leaves the file, and a
``DB_PASSWORD=Xk9fQ2mZ7pL4wR8t`` on a RUN line (also in ENV and as a CMD
``--password`` argument).  Every command runs in every output format, and
neither the secret nor its first 8 characters may appear anywhere: stdout,
stderr and every file written (SARIF, JUnit, markdown).  A new format is one
more line in ``OUTPUTS``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from imgscope import redact
from imgscope import stack as stacking
from imgscope.analysis import audit as auditing
from imgscope.analysis.secrets import ContentScanner
from imgscope.cli import app
from imgscope.cli.common import SourceOptions, load_image
from imgscope.schemas import load_schema
from tests.imagebuild import (
    BuildStep,
    ImageSpec,
    directory,
    file,
    nop,
    run,
    whiteout,
    write_docker_archive,
    write_oci_layout,
)

DOTENV_SECRET = "abc123"
RUN_SECRET = "Xk9fQ2mZ7pL4wR8t"

BASE = (
    BuildStep(
        "/bin/sh -c #(nop) ADD file:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef in / ",
        (
            directory("/bin"),
            file("/bin/sh", b"\x7fELF" + bytes(64), mode=0o755),
            file("/bin/su", b"\x7fELF su" + bytes(64), mode=0o4755),
            file("/bin/passwd", b"\x7fELF passwd" + bytes(64), mode=0o4755),
            file("/bin/chage", b"\x7fELF chage" + bytes(64), mode=0o2755),
            directory("/tmp", mode=0o1777),
        ),
    ),
    nop('CMD ["sh"]'),
)


def dotenv_image() -> ImageSpec:
    """The step writes the secret to /app/.env (history and file); a later step deletes the file."""
    return ImageSpec(
        (
            *BASE,
            run(
                f"echo 'SECRET_KEY={DOTENV_SECRET}' > /app/.env",
                directory("/app"),
                file("/app/.env", f"SECRET_KEY={DOTENV_SECRET}\n"),
            ),
            run(
                "mkdir -p /app/bin && cp /bin/su /app/bin/",
                directory("/app/bin"),
                file("/app/bin/su", b"x", mode=0o4755),
            ),
            run("rm /app/.env", directory("/app"), whiteout("/app/.env")),
            nop('CMD ["python3", "/app/app.py"]'),
        ),
        cmd=("python3", "/app/app.py"),
    )


def run_line_image() -> ImageSpec:
    """The secret on a RUN line, in an ENV and as a CMD ``--password`` argument."""
    return ImageSpec(
        (
            *BASE,
            run(
                f"DB_PASSWORD={RUN_SECRET} ./migrate.sh --host db",
                directory("/app"),
                file("/app/migrated", "ok\n"),
            ),
            nop(f"ENV DB_PASSWORD={RUN_SECRET}"),
            nop(f'CMD ["app", "--password", "{RUN_SECRET}"]'),
        ),
        env=("PATH=/usr/bin:/bin", f"DB_PASSWORD={RUN_SECRET}"),
        cmd=("app", "--password", RUN_SECRET),
        labels={"org.example.db-url": f"postgres://app:{RUN_SECRET}@db/app"},
    )


SECRETS = {"dotenv": DOTENV_SECRET, "run-line": RUN_SECRET}
SPECS: dict[str, Callable[[], ImageSpec]] = {"dotenv": dotenv_image, "run-line": run_line_image}


def assert_clean(text: str, secret: str, what: str) -> None:
    assert secret not in text, f"{what} shows the secret"
    assert secret[:8] not in text, f"{what} shows the secret's first 8 characters"


@dataclass(frozen=True)
class Output:
    """One way to run a command: its arguments (``{ref}``, ``{other}``, ``{out}`` filled in) and files it writes."""

    name: str
    args: tuple[str, ...]
    files: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


LAYERS = ("0", "1", "{last}")
#: Every command in every format.  A new format (say ``audit --html {out}/a.html``) is one more line.
OUTPUTS = (
    Output("inspect", ("inspect", "{ref}")),
    Output("inspect narrow", ("inspect", "{ref}"), env=(("COLUMNS", "80"),)),
    Output("inspect --json", ("inspect", "{ref}", "--json")),
    Output("inspect --tree", ("inspect", "{ref}", "--tree")),
    *(Output(f"inspect --layer {n}", ("inspect", "{ref}", "--layer", n)) for n in ("0", "1", "{last}")),
    *(
        Output(f"inspect --layer {n} --json", ("inspect", "{ref}", "--layer", n, "--json"))
        for n in ("0", "1", "{last}")
    ),
    Output("diff", ("diff", "{other}", "{ref}")),
    Output("diff --json", ("diff", "{other}", "{ref}", "--json")),
    Output("diff markdown", ("diff", "{ref}", "{other}", "--format", "markdown")),
    Output(
        "ci",
        ("ci", "{ref}", "--forbid-path", "**/.env", "--junit", "{out}/ci.xml", "--markdown", "{out}/ci.md"),
        files=("ci.xml", "ci.md"),
    ),
    Output("ci --json", ("ci", "{ref}", "--forbid-path", "**/.env", "--json")),
    Output("audit", ("audit", "{ref}", "--sarif", "{out}/audit.sarif"), files=("audit.sarif",)),
    Output("audit narrow", ("audit", "{ref}"), env=(("COLUMNS", "80"),)),
    Output("audit wide", ("audit", "{ref}"), env=(("COLUMNS", "200"),)),
    Output("audit --json", ("audit", "{ref}", "--json")),
    Output("shared", ("shared", "{ref}", "{other}")),
    Output("shared --json", ("shared", "{ref}", "{other}", "--json")),
    Output("inspect --html", ("inspect", "{ref}", "--html", "{out}/inspect.html"), files=("inspect.html",)),
    Output("diff --html", ("diff", "{other}", "{ref}", "--html", "{out}/diff.html"), files=("diff.html",)),
    Output("ci --html", ("ci", "{ref}", "--forbid-path", "**/.env", "--html", "{out}/ci.html"), files=("ci.html",)),
    Output("audit --html", ("audit", "{ref}", "--html", "{out}/audit.html"), files=("audit.html",)),
)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("redaction")
    out = {}
    for name, spec in SPECS.items():
        out[name] = root / f"{name}.tar"
        write_docker_archive(out[name], spec())
        write_oci_layout(root / f"{name}-oci", spec())
    return out


@pytest.mark.parametrize("output", OUTPUTS, ids=lambda o: o.name)
@pytest.mark.parametrize("image", list(SPECS))
def test_no_output_shows_the_secret(
    images: dict[str, Path], image: str, output: Output, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = str(images[image])
    other = str(images["run-line" if image == "dotenv" else "dotenv"])
    for key, value in output.env:
        monkeypatch.setenv(key, value)
    last = str(sum(1 for step in SPECS[image]().steps if step.layer is not None) - 1)
    args = [a.format(ref=ref, other=other, out=tmp_path, last=last) for a in output.args]
    result = CliRunner().invoke(app, args)
    assert result.exit_code in (0, 1), (args, result.output, result.stderr)
    assert result.stdout.strip(), f"{output.name} wrote nothing"
    texts = {"stdout": result.stdout, "stderr": result.stderr}
    for name in output.files:
        texts[name] = (tmp_path / name).read_text("utf-8")
    for what, text in texts.items():
        for secret in SECRETS.values():
            assert_clean(text, secret, f"{output.name} ({what})")


@pytest.mark.parametrize("image", list(SPECS))
def test_an_oci_layout_is_redacted_too(images: dict[str, Path], image: str) -> None:
    layout = images[image].with_name(f"{image}-oci")
    result = CliRunner().invoke(app, ["inspect", str(layout), "--json"])
    assert result.exit_code == 0, result.output
    assert_clean(result.stdout, SECRETS[image], "inspect --json of the OCI layout")
    assert redact.MASK in result.stdout


def test_redacted_text_keeps_the_key_and_masks_the_value(images: dict[str, Path]) -> None:
    report = json.loads(CliRunner().invoke(app, ["inspect", str(images["run-line"]), "--json"]).stdout)
    config = report["image"]["config"]
    assert f"DB_PASSWORD={redact.MASK}" in config["env"]
    assert config["cmd"] == ["app", "--password", redact.MASK]
    assert config["labels"]["org.example.db-url"] == f"postgres://{redact.MASK}@db/app"
    created = [s["created_by"] for s in report["history"] if "migrate" in (s["created_by"] or "")]
    assert created and all(f"DB_PASSWORD={redact.MASK} ./migrate.sh --host db" in c for c in created)


# --------------------------------------------------------------------------- the audit's findings


def audit_report(path: Path, **kwargs: Any) -> auditing.AuditReport:
    scanner = ContentScanner()
    img = load_image(str(path), SourceOptions(no_cache=True), visitor=scanner, quiet=True)
    return auditing.audit(stacking.build(img), scanner.results(), stats=scanner.stats(), **kwargs)


@pytest.mark.parametrize(
    ("image", "step", "layer", "key"), [("dotenv", 2, 1, "SECRET_KEY"), ("run-line", 2, 1, "DB_PASSWORD")]
)
def test_the_run_line_secret_is_a_high_finding_naming_step_and_layer(
    images: dict[str, Path], image: str, step: int, layer: int, key: str
) -> None:
    report = audit_report(images[image])
    found = [f for f in report.findings if f.rule == auditing.HISTORY_SECRET and f.step == step]
    assert len(found) == 1, report.findings
    f = found[0]
    assert (f.severity, f.layers, f.evidence) == (auditing.HIGH, (layer,), f"{key}={redact.MASK}")
    assert f"step {step}" in f.message and f"layer {layer}" in f.message
    assert f.instruction is not None and f"{key}={redact.MASK}" in f.instruction


def test_env_cmd_and_label_secrets_are_findings(images: dict[str, Path]) -> None:
    report = audit_report(images["run-line"])
    rules = {(f.rule, f.subject) for f in report.findings}
    assert (auditing.ENV_SECRET, "ENV DB_PASSWORD") in rules
    assert (auditing.LABEL_SECRET, "LABEL org.example.db-url") in rules


def test_base_layer_modes_are_one_low_finding_and_the_users_own_stay_medium(images: dict[str, Path]) -> None:
    report = audit_report(images["dotenv"])
    grouped = [f for f in report.findings if f.rule == auditing.BASE_IMAGE_FILES]
    assert len(grouped) == 1
    group = grouped[0]
    # By construction: the base layer's setuid su and passwd and setgid chage.
    assert group.paths == ("/bin/chage", "/bin/passwd", "/bin/su")
    assert (group.severity, group.layers, group.count) == (auditing.LOW, (0,), 3)
    singles = [f for f in report.findings if f.rule in (auditing.SETUID, auditing.SETGID)]
    assert [(f.path, f.severity, f.layers) for f in singles] == [("/app/bin/su", auditing.MEDIUM, (2,))]


def test_base_grouping_follows_the_base_image(tmp_path: Path) -> None:
    """With --base, the base's layers are the base; a file re-shipped by the user's step is the user's."""
    base = ImageSpec((*BASE, run("chmod u+s /bin/mount", directory("/bin"), file("/bin/mount", b"m", mode=0o4755))))
    app_spec = base.extend(run("chmod u+s /bin/su again", directory("/bin"), file("/bin/su", b"su2", mode=0o4755)))
    base_path, app_path = tmp_path / "base.tar", tmp_path / "app.tar"
    write_docker_archive(base_path, base)
    write_docker_archive(app_path, app_spec)
    base_img = load_image(str(base_path), SourceOptions(no_cache=True), quiet=True)
    report = audit_report(app_path, base=base_img)
    group = next(f for f in report.findings if f.rule == auditing.BASE_IMAGE_FILES)
    assert group.paths == ("/bin/chage", "/bin/mount", "/bin/passwd") and group.layers == (0, 1)
    assert [f.path for f in report.findings if f.rule == auditing.SETUID] == ["/bin/su"]
    # Without --base only layer 0 is the base.
    plain = audit_report(app_path)
    group = next(f for f in plain.findings if f.rule == auditing.BASE_IMAGE_FILES)
    assert group.paths == ("/bin/chage", "/bin/passwd")


def test_ignores_match_single_base_files_and_the_group(images: dict[str, Path]) -> None:
    one = audit_report(images["dotenv"], ignore=auditing.parse_ignore("setuid-file /bin/su  # reviewed\n"))
    group = next(f for f in one.findings if f.rule == auditing.BASE_IMAGE_FILES)
    assert group.paths == ("/bin/chage", "/bin/passwd")
    assert [(i.finding.path, i.entry.reason) for i in one.ignored] == [("/bin/su", "reviewed")]
    assert not one.unused_ignores
    whole = audit_report(images["dotenv"], ignore=auditing.parse_ignore("base-image-files\n"))
    assert not [f for f in whole.findings if f.rule == auditing.BASE_IMAGE_FILES]
    assert [i.finding.rule for i in whole.ignored] == [auditing.BASE_IMAGE_FILES] and not whole.unused_ignores
    # The user's own setuid file is not in the group and not hidden by it.
    assert [f.path for f in whole.findings if f.rule == auditing.SETUID] == ["/app/bin/su"]


def test_status_says_deleted_and_where_it_still_ships(images: dict[str, Path]) -> None:
    report = audit_report(images["dotenv"])
    dotenv = next(f for f in report.findings if f.path == "/app/.env")
    assert (dotenv.visible, dotenv.hidden_by, dotenv.deleted) == (False, 3, True)
    assert dotenv.status_words == "deleted in layer 3, still readable by anyone who pulls the image: layer 1"
    narrow = CliRunner().invoke(app, ["audit", str(images["dotenv"])], env={"COLUMNS": "80"}).stdout
    assert "deleted in layer 3," in narrow and "still readable by anyone who pulls the image: layer 1" in narrow
    wide = CliRunner().invoke(app, ["audit", str(images["dotenv"])], env={"COLUMNS": "200"}).stdout
    assert "deleted in layer 3" in wide


def test_audit_outputs_validate_and_name_the_group(images: dict[str, Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["audit", str(images["dotenv"]), "--json"])
    report = json.loads(result.stdout)
    jsonschema.validate(report, load_schema("audit"))
    group = next(f for f in report["findings"] if f["rule"] == auditing.BASE_IMAGE_FILES)
    assert group["paths"] == ["/bin/chage", "/bin/passwd", "/bin/su"] and group["severity"] == "low"


def test_narrow_audit_lines_fit_80_columns(images: dict[str, Path]) -> None:
    for image in images.values():
        out = CliRunner().invoke(app, ["audit", str(image)], env={"COLUMNS": "80"}).stdout
        too_long = [line for line in out.splitlines() if len(line) > 80]
        assert not too_long, too_long
        # The list layout pads nothing: piped output has no trailing blanks (the summary lines neither).
        assert [line for line in out.splitlines() if line != line.rstrip()] == []


# --------------------------------------------------------------------------- explore


def _screen_text(app_: Any) -> str:
    return "\n".join(strip.text for strip in app_.screen._compositor.render_strips())


async def _explore_screens(path: Path) -> list[str]:
    """What the headless explorer draws for every step, then the .env file's content view (when there is one)."""
    from imgscope.explore.app import BrowserScreen, ContentScreen, ExploreApp
    from imgscope.explore.content import read_file
    from imgscope.explore.model import ExploreModel

    stack = stacking.build(load_image(str(path), SourceOptions(), quiet=True))
    app_ = ExploreApp(model=ExploreModel.build(stack))
    screens: list[str] = []
    async with app_.run_test(size=(160, 50)) as pilot:
        for _ in range(200):
            if any(isinstance(s, BrowserScreen) for s in app_.screen_stack):
                break
            await pilot.pause(0.05)
        browser = next(s for s in app_.screen_stack if isinstance(s, BrowserScreen))
        for index in range(len(browser.model.steps)):
            browser.select_step(index)
            await pilot.pause()
            screens.append(_screen_text(app_))
        stored = [(layer.index, c.entry) for layer in stack.layers for c in layer.changes if c.path == "/app/.env"]
        if stored and stored[0][1] is not None:
            content = read_file(str(path), SourceOptions(), "/app/.env", stored[0][0], stored[0][1])
            screens.append(content.text())
            app_.push_screen(ContentScreen(content, iec=False))
            await pilot.pause()
            screens.append(_screen_text(app_))
    return screens


@pytest.mark.parametrize("image", list(SPECS))
def test_explore_shows_no_secret(images: dict[str, Path], image: str) -> None:
    """The headless explorer: every step's screen, and the content view of the .env file."""
    screens = asyncio.run(_explore_screens(images[image]))
    assert len(screens) >= 3
    for text in screens:
        assert_clean(text, SECRETS[image], f"explore of {image}")
    if image == "dotenv":
        assert f"SECRET_KEY={redact.MASK}" in screens[-2]


# --------------------------------------------------------------------------- the redaction function


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("echo 'SECRET_KEY=abc123' > /app/.env", f"echo 'SECRET_KEY={redact.MASK}' > /app/.env"),
        ("DB_PASSWORD=Xk9fQ2mZ7pL4wR8t ./x", f"DB_PASSWORD={redact.MASK} ./x"),
        ("mysql --password Zq81xkW0 -h db", f"mysql --password {redact.MASK} -h db"),
        ('CMD ["app", "--password", "Zq81xkW0"]', f'CMD ["app", "--password", "{redact.MASK}"]'),
        ('CMD ["app" "--password" "Zq81xkW0"]', f'CMD ["app" "--password" "{redact.MASK}"]'),
        ("login --token=Zq81xkW0", f"login --token={redact.MASK}"),
        # A non-secret option or key must not hide the secret one after it (found by hypothesis).
        ("--A0 --password=22222234", f"--A0 --password={redact.MASK}"),
        ("X=PASSWORD=Zq81xkW0", f"X=PASSWORD={redact.MASK}"),
        ('{"api_key": "Zq81xkW0aa"}', f'{{"api_key": "{redact.MASK}"}}'),
        ("git clone https://me:Zq81xkW0@git.example/x", f"git clone https://{redact.MASK}@git.example/x"),
        # A quoted value runs to its closing quote, spaces included.
        ('MYSQL_ROOT_PASSWORD="my secret pw" x', f'MYSQL_ROOT_PASSWORD="{redact.MASK}" x'),
        ('app --password="p@ss w0rd" x', f'app --password="{redact.MASK}" x'),
        # A private key is masked to its END line, not only its first line.
        (
            "K=-----BEGIN RSA PRIVATE KEY-----\n"
            + "MIIEowIBAAKCAQEAx7vQ9Rm2abcdefghijkLMNOPQRstuvwx\n" * 3
            + "-----END RSA PRIVATE KEY----- after",
            f"K=-----BEGIN RSA PRIVATE KEY----- {redact.MASK} after",
        ),
        (
            '{"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n'
            'BKcwggSjAgEAAoIBAQC7\\n-----END PRIVATE KEY-----", "x": 1}',
            f'{{"private_key": "-----BEGIN PRIVATE KEY----- {redact.MASK}", "x": 1}}',
        ),
        # Placeholders, references, documentation values and non-secret names stay.
        ("PASSWORD=changeme", None),
        ("TOKEN=$TOKEN", None),
        ("API_KEY=${API_KEY}", None),
        ("PASSWORD=<your password>", None),
        ("PASSWORD=xxxxxxxx", None),
        ("PASSWORD=ab", None),
        ("PASSWORD_FILE=/run/secrets/db", None),
        ("GPG_KEY=A035C8C19219BA821ECEA86B64E628F8D684696D", None),
        ("PATH=/usr/local/bin:/usr/bin", None),
        ("postgres://app@db/app", None),
    ],
)
def test_redact(text: str, expected: str | None) -> None:
    assert redact.redact(text) == (text if expected is None else expected)
    # Idempotent: redacting again changes nothing.
    assert redact.redact(redact.redact(text)) == redact.redact(text)


SECRET_CHARS = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


@settings(max_examples=300, deadline=None)
@given(
    before=st.text(max_size=40),
    after=st.text(max_size=40),
    key=st.sampled_from(["DB_PASSWORD", "SECRET_KEY", "api_token", "--password", "client_secret"]),
    value=st.text(alphabet=SECRET_CHARS, min_size=8, max_size=40),
)
def test_a_planted_secret_never_survives(before: str, after: str, key: str, value: str) -> None:
    """Any text around ``KEY=value`` (surrogates and odd Unicode included): the value goes, nothing raises."""
    assume(redact.secret_value(value))  # not a placeholder (the filter the docs state)
    out = redact.redact(f"{before} {key}={value} {after}")
    assert value[:8] not in out or value[:8] in before + after


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_redact_never_raises_and_settles(text: str) -> None:
    once = redact.redact(text)
    assert redact.redact(once) == once


def test_json_escapes_for_lone_surrogates_do_not_break_parsing() -> None:
    from imgscope.sources.common import parse_config

    raw = {"rootfs": {"diff_ids": []}, "history": [{"created_by": "\ud800 DB_PASSWORD=Zq81xkW0pp \udcff"}]}
    config = parse_config(json.dumps(raw).encode(), "config")
    assert config.history[0].created_by == f"\ud800 DB_PASSWORD={redact.MASK} \udcff"


def test_clean_configs_carry_no_second_copy(images: dict[str, Path]) -> None:
    img = load_image(str(images["dotenv"]), SourceOptions(), quiet=True)
    assert img.config.unredacted is not None
    assert DOTENV_SECRET in img.config.original.history[2].created_by
    assert DOTENV_SECRET not in img.config.history[2].created_by


# --------------------------------------------------------------------------- the pre-push hook


HOOK = Path(__file__).resolve().parent.parent / "hooks" / "pre-push"


def _git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_pre_push_hook_blocks_a_push_on_a_finding(images: dict[str, Path], tmp_path: Path) -> None:
    """A real ``git push`` to a local bare repository, with hooks/pre-push installed as users install it."""
    remote, work = tmp_path / "remote.git", tmp_path / "work"
    assert _git(tmp_path, "init", "-q", "--bare", str(remote)).returncode == 0
    assert _git(tmp_path, "init", "-q", str(work)).returncode == 0
    shutil.copy(HOOK, work / ".git" / "hooks" / "pre-push")
    os.chmod(work / ".git" / "hooks" / "pre-push", 0o755)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
        # The imgscope of this interpreter's environment, as an installed one would be.
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
        "COLUMNS": "100",
    }
    env.pop("IMGSCOPE_IMAGE", None)
    (work / "Dockerfile").write_text("FROM scratch\n")
    assert _git(work, "add", "Dockerfile", env=env).returncode == 0
    assert _git(work, "commit", "-qm", "one", env=env).returncode == 0
    assert _git(work, "remote", "add", "origin", str(remote)).returncode == 0

    def pushed() -> str:
        return _git(remote, "rev-parse", "--verify", "-q", "refs/heads/main").stdout.strip()

    # No image configured: blocked with a line saying what to set.
    blocked = _git(work, "push", "-q", "origin", "HEAD:main", env=env)
    assert blocked.returncode != 0 and "IMGSCOPE_IMAGE" in blocked.stderr and not pushed()
    # The leaky image (a high finding): blocked, the report is shown, the secret is not.
    blocked = _git(work, "push", "-q", "origin", "HEAD:main", env={**env, "IMGSCOPE_IMAGE": str(images["dotenv"])})
    assert blocked.returncode != 0 and not pushed()
    assert "push blocked" in blocked.stderr and "history-secret" in blocked.stdout + blocked.stderr
    assert_clean(blocked.stdout + blocked.stderr, DOTENV_SECRET, "the hook's output")
    # The same image with --fail-on critical from git config: passes, the ref moves.
    assert _git(work, "config", "imgscope.image", str(images["dotenv"])).returncode == 0
    assert _git(work, "config", "imgscope.failOn", "critical").returncode == 0
    ok = _git(work, "push", "-q", "origin", "HEAD:main", env=env)
    assert ok.returncode == 0, ok.stderr
    assert pushed() == _git(work, "rev-parse", "HEAD").stdout.strip()
    # An unreadable image: blocked (exit 2 of imgscope), said so.
    (work / "README").write_text("x\n")
    _git(work, "add", "README", env=env)
    _git(work, "commit", "-qm", "two", env=env)
    blocked = _git(work, "push", "-q", "origin", "HEAD:main", env={**env, "IMGSCOPE_IMAGE": str(tmp_path / "nope.tar")})
    assert blocked.returncode != 0 and "could not be audited (exit 2)" in blocked.stderr
    assert pushed() != _git(work, "rev-parse", "HEAD").stdout.strip()


def test_pre_commit_hooks_file_declares_pre_push_stages() -> None:
    yaml = pytest.importorskip("yaml")
    hooks = yaml.safe_load((HOOK.parent.parent / ".pre-commit-hooks.yaml").read_text())
    by_id = {h["id"]: h for h in hooks}
    assert set(by_id) == {"imgscope-audit", "imgscope-audit-hook"}
    for hook in hooks:
        assert hook["stages"] == ["pre-push"] and hook["pass_filenames"] is False
    assert by_id["imgscope-audit"]["entry"] == "imgscope audit" and by_id["imgscope-audit"]["language"] == "python"
    script = by_id["imgscope-audit-hook"]
    assert script["language"] == "script" and (HOOK.parent.parent / script["entry"]).resolve() == HOOK
    assert os.access(HOOK, os.X_OK)


# --------------------------------------------------------------------------- a daemon image (legacy builder)

LEAKY = "imgscope-test/leaky:latest"
DAEMON_SECRETS = (DOTENV_SECRET, RUN_SECRET, "Zq81xkW0pp9Lm")
DAEMON_KEYS = ("SECRET_KEY", "DB_PASSWORD")


@pytest.mark.daemon
@pytest.mark.parametrize("output", [o for o in OUTPUTS if not o.files], ids=lambda o: o.name)
def test_no_output_shows_a_daemon_images_secret(
    daemon_images: dict[str, str], output: Output, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same on an image the engine built: its history comes from ``docker history``, not a file."""
    assert LEAKY in daemon_images
    for key, value in output.env:
        monkeypatch.setenv(key, value)
    args = [a.format(ref=LEAKY, other="imgscope-test/layers:latest", out=tmp_path, last="2") for a in output.args]
    result = CliRunner().invoke(app, args)
    assert result.exit_code in (0, 1), (args, result.output)
    for secret in DAEMON_SECRETS:
        assert_clean(result.stdout + result.stderr, secret, f"{output.name} of {LEAKY}")


@pytest.mark.daemon
def test_a_daemon_images_run_line_secrets_are_findings(docker_client: Any, daemon_images: dict[str, str]) -> None:
    """Step numbers against ``docker history`` (the oracle): the step whose command holds each secret."""
    history = list(reversed(docker_client.api.history(LEAKY)))  # oldest first, as step positions count
    step_of = {key: next(i for i, h in enumerate(history) if f"{key}=" in h["CreatedBy"]) for key in DAEMON_KEYS}
    report = audit_report(Path(LEAKY))
    found = {f.evidence: f for f in report.findings if f.rule == auditing.HISTORY_SECRET}
    assert set(found) == {f"SECRET_KEY={redact.MASK}", f"DB_PASSWORD={redact.MASK}", f"--password {redact.MASK}"}
    for key in DAEMON_KEYS:
        f = found[f"{key}={redact.MASK}"]
        assert f.severity == auditing.HIGH and f.step == step_of[key]
        # This image has no empty step before these: layer N is step N.
        assert f.layers == (step_of[key],) and f"layer {step_of[key]}" in f.message
    dotenv = next(f for f in report.findings if f.path == "/app/.env")
    removed = next(i for i, h in enumerate(history) if "rm /app/.env" in h["CreatedBy"])
    assert dotenv.status_words == (
        f"deleted in layer {removed}, still readable by anyone who pulls the image: layer {step_of['SECRET_KEY']}"
    )


def test_the_explorers_hex_view_masks_secrets_too() -> None:
    """A file that is not UTF-8 is shown as a hex dump: its secrets are masked byte for byte."""
    from imgscope.explore.app import _hexdump
    from imgscope.explore.content import FileContent

    data = b"\xe9t\xe9\nSECRET_KEY=s3cr3tv4lu3abcdef\nDB_PASSWORD=hunter2hunter2\n" + b"\x00" * 4096
    content = FileContent("/app/blob", 1, len(data), "x", data, False)
    assert not content.is_text
    masked = content.masked_bytes(4096)
    assert len(masked) == 4096
    dump = _hexdump(masked)
    for secret in (b"s3cr3tv4lu3abcdef", b"hunter2hunter2"):
        assert secret not in masked
        assert secret[:8].hex(" ") not in dump  # the hex columns
        assert secret[:8].decode() not in dump.replace("\n", "")
    assert b"SECRET_KEY=" in masked  # the key stays readable
