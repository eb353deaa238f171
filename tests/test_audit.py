"""``imgscope audit``: one image per rule (positive and negative), layer attribution, ignores, exit codes, outputs.

Oracles: images written here from a description whose answer is known by
construction (which step writes which secret, which mode, which later step
deletes it), and, for mode rules on a mixed image, an independent walk of
that description.  Secrets are made at run time from random characters in
the shape of each format (never a real credential, and no literal token in
this file for push protection to trip on); every test that renders output
also checks that none of them appears in it.
"""

from __future__ import annotations

import base64
import json
import random
import string
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from imgscope import reference
from imgscope import stack as stacking
from imgscope.analysis import audit as auditing
from imgscope.analysis import secrets
from imgscope.analysis.secrets import ContentScanner
from imgscope.cli import app
from imgscope.schemas import load_schema
from imgscope.sources.common import LoadOptions
from tests.conftest import EXTERNAL, SAMPLES
from tests.imagebuild import (
    BuildStep,
    ImageSpec,
    TarEntry,
    copy,
    device,
    directory,
    file,
    hardlink,
    nop,
    run,
    symlink,
    whiteout,
    write_docker_archive,
    write_oci_layout,
)

ALNUM = string.ascii_letters + string.digits
UPPER32 = string.ascii_uppercase + "234567"


def rand(alphabet: str, n: int, seed: int) -> str:
    r = random.Random(seed)
    return "".join(r.choice(alphabet) for _ in range(n))


def fake_pem(kind: str = "RSA ", seed: int = 1) -> str:
    body = base64.b64encode(random.Random(seed).randbytes(600)).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {kind}PRIVATE KEY-----\n" + "\n".join(lines) + f"\n-----END {kind}PRIVATE KEY-----\n"


# Tokens in the shape of each format; prefixes are split so no literal token sits in this file.
GITHUB = "gh" + "p_" + rand(ALNUM, 36, 2)
GITHUB_PAT = "github" + "_pat_" + rand(ALNUM + "_", 82, 3)
GITLAB = "gl" + "pat-" + rand(ALNUM, 20, 4)
SLACK = "xo" + "xb-" + rand(string.digits, 11, 5) + "-" + rand(string.digits, 12, 6) + "-" + rand(ALNUM, 24, 7)
STRIPE = "sk" + "_live_" + rand(ALNUM, 24, 8)
NPM = "np" + "m_" + rand(ALNUM, 36, 9)
GOOGLE = "AI" + "za" + rand(ALNUM + "_-", 35, 10)
SENDGRID = "S" + "G." + rand(ALNUM, 22, 11) + "." + rand(ALNUM, 43, 12)
AWS_ID = "AK" + "IA" + rand(UPPER32, 16, 13)
AWS_SECRET = rand(ALNUM + "/+", 40, 14)
DOCKERHUB = "dckr" + "_pat_" + rand(ALNUM, 27, 15)
HF = "h" + "f_" + rand(string.ascii_letters, 34, 16)
SLACK_HOOK = "https://hooks." + "slack.com/services/T" + rand(UPPER32, 8, 19) + "/B" + rand(UPPER32, 8, 20) + "/"
SLACK_HOOK += rand(ALNUM, 24, 21)
PYPI = "pypi-" + "AgEIcHlwaS5vcmc" + rand(ALNUM + "_-", 60, 22)
OPENAI = "sk-" + "proj-" + rand(ALNUM, 24, 23) + "T3Blbk" + "FJ" + rand(ALNUM, 24, 24)
ANTHROPIC = "sk-" + "ant-api03-" + rand(ALNUM + "_-", 93, 25)
KEY_DATA = base64.b64encode(random.Random(26).randbytes(120)).decode()
PASSWORD = "Zq7!" + rand(ALNUM, 12, 17)
BEARER = rand(ALNUM, 32, 18)

BASE_STEPS = (
    BuildStep(
        "/bin/sh -c #(nop) ADD file:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef in / ",
        (
            directory("/bin"),
            file("/bin/sh", b"\x7fELF\x02\x01\x01\x00" + bytes(200), mode=0o755),
            directory("/etc"),
            file("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"),
            directory("/tmp", mode=0o1777),
            directory("/dev"),
            device("/dev/null", "char", 1, 3),
            directory("/app"),
        ),
    ),
    nop('CMD ["sh"]'),
)


def spec(*steps: BuildStep, **config: Any) -> ImageSpec:
    """An image on the small base above; USER app and a HEALTHCHECK unless a test says otherwise."""
    config.setdefault("user", "app")
    config.setdefault("healthcheck", ("CMD", "true"))
    return ImageSpec(BASE_STEPS + steps, **config)


def write(tmp_path: Path, image: ImageSpec, name: str = "image.tar") -> Path:
    path = tmp_path / name
    write_docker_archive(path, image)
    return path


def audit_of(ref: str | Path, **kwargs: Any) -> auditing.AuditReport:
    """Load with the secret scanner as visitor (the real single pass), stack, audit."""
    scanner = ContentScanner(kwargs.pop("max_scan_bytes", secrets.DEFAULT_MAX_SCAN_BYTES))
    img = reference.load(str(ref), LoadOptions(visitor=scanner))
    base = kwargs.pop("base", None)
    base_img = reference.load(str(base), LoadOptions()) if base is not None else None
    return auditing.audit(
        stacking.build(img),
        scanner.results(),
        stats=scanner.stats(),
        max_scan_bytes=scanner.max_scan_bytes,
        base=base_img,
        **kwargs,
    )


def of_rule(report: auditing.AuditReport, rule: str) -> list[auditing.Finding]:
    return [f for f in report.findings if f.rule == rule]


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


ALL_SECRETS = (
    *(GITHUB, GITHUB_PAT, GITLAB, SLACK, STRIPE, NPM, GOOGLE, SENDGRID, AWS_ID, AWS_SECRET, DOCKERHUB, HF),
    *(SLACK_HOOK, PYPI, OPENAI, ANTHROPIC, KEY_DATA),
)


def assert_no_secret(text: str, extra: tuple[str, ...] = ()) -> None:
    for secret in (*ALL_SECRETS, PASSWORD, BEARER, *extra):
        assert secret not in text
        assert secret[-12:] not in text  # not even its tail


# ---------------------------------------------------------------------------
# The cases the issue names
# ---------------------------------------------------------------------------


def test_pem_deleted_by_a_later_step_is_found_only_in_its_layer(tmp_path: Path) -> None:
    pem = fake_pem()
    image = spec(
        run(
            "echo $KEY > /root/.ssh/id_rsa", directory("/root"), directory("/root/.ssh"), file("/root/.ssh/id_rsa", pem)
        ),
        run("ssh-keyscan > /dev/null && rm /root/.ssh/id_rsa", directory("/root/.ssh"), whiteout("/root/.ssh/id_rsa")),
    )
    report = audit_of(write(tmp_path, image))
    [finding] = of_rule(report, secrets.PRIVATE_KEY)
    # Layers: 0 base, 1 writes the key, 2 deletes it.
    assert finding.severity == auditing.CRITICAL
    assert finding.path == "/root/.ssh/id_rsa"
    assert finding.layers == (1,)
    assert not finding.visible
    assert finding.status == "only in layer 1"
    assert finding.hidden_by == 2
    assert finding.line == 1
    assert finding.instruction is not None and finding.instruction.startswith("RUN echo")
    assert "-----BEGIN RSA PRIVATE KEY-----" in finding.evidence
    assert pem.splitlines()[1][:20] not in finding.evidence


def test_dotenv_written_then_removed(tmp_path: Path) -> None:
    image = spec(
        run("cp .env /app/.env && make", file("/app/.env", f"DB_PASSWORD={PASSWORD}\n")),
        run("rm /app/.env", whiteout("/app/.env")),
    )
    report = audit_of(write(tmp_path, image))
    [finding] = of_rule(report, secrets.DOTENV_FILE)
    assert (finding.layers, finding.visible, finding.status, finding.hidden_by) == ((1,), False, "only in layer 1", 2)
    assert finding.severity == auditing.HIGH
    # The name rule covers the file; its content is not reported a second time as a generic secret.
    assert not of_rule(report, secrets.GENERIC_SECRET)


def test_dotenv_kept_is_visible_and_templates_are_not_reported(tmp_path: Path) -> None:
    image = spec(
        run(
            "cp env files",
            file("/app/.env", "A=1\n"),
            file("/app/.env.example", "DB_PASSWORD=changeme\n"),
            file("/app/.env.production", "X=1\n"),
            file("/app/empty/.env", ""),
        )
    )
    report = audit_of(write(tmp_path, image))
    found = {f.path: f for f in of_rule(report, secrets.DOTENV_FILE)}
    assert set(found) == {"/app/.env", "/app/.env.production"}
    assert found["/app/.env"].visible and found["/app/.env"].status == "visible"


def test_random_base64_blob_is_not_a_secret(tmp_path: Path) -> None:
    rng = random.Random(99)
    blob = base64.b64encode(rng.randbytes(48_000)).decode()
    wrapped = "\n".join(blob[i : i + 76] for i in range(0, len(blob), 76))
    hexes = "\n".join(rng.randbytes(32).hex() for _ in range(200))
    image = spec(
        run(
            "generate data",
            file("/app/data.b64", wrapped),
            file("/app/blob.txt", blob),
            file("/app/checksums.txt", hexes),
            file("/app/settings.ini", f"data = {blob[:64]}\nchecksum: {hexes[:64]}\n"),
        )
    )
    report = audit_of(write(tmp_path, image))
    assert [f for f in report.findings if f.where == auditing.IN_FILE] == []


# ---------------------------------------------------------------------------
# Content rules, positive and negative
# ---------------------------------------------------------------------------

CONTENT_CASES: list[tuple[str, str, str, str]] = [
    # rule, path, positive content, negative content
    (secrets.PRIVATE_KEY, "/app/key.pem", fake_pem("EC ", 3), "-----BEGIN PRIVATE KEY-----\n(redacted for the docs)\n"),
    (secrets.PRIVATE_KEY, "/app/id_ed25519", fake_pem("OPENSSH ", 4), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 me@host\n"),
    (secrets.AWS_ACCESS_KEY, "/app/deploy.sh", f"export KEY_ID={AWS_ID}\n", "export KEY_ID=AKIAIOSFODNN7EXAMPLE\n"),
    (
        secrets.AWS_SECRET_KEY,
        "/app/aws.cfg",
        f"aws_secret_access_key = {AWS_SECRET}\n",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
    ),
    (
        secrets.GCP_SERVICE_ACCOUNT,
        "/app/sa.json",
        json.dumps({"type": "service_account", "private_key": fake_pem("", 5), "client_email": "x@p.iam"}),
        json.dumps({"type": "service_account", "client_email": "x@p.iam"}),
    ),
    (secrets.GITHUB_TOKEN, "/app/ci.yml", f"token: {GITHUB}\n", f"token_name: {GITHUB[:-2]}\n"),
    (secrets.GITHUB_TOKEN, "/app/gh.txt", f"{GITHUB_PAT}\n", f"x{GITHUB[1:]}y\n"),
    (secrets.GITLAB_TOKEN, "/app/gl.txt", f"{GITLAB}\n", "glpat-short\n"),
    (secrets.SLACK_TOKEN, "/app/slack.txt", f"{SLACK}\n", "xoxb-not-a-token\n"),
    (secrets.STRIPE_KEY, "/app/pay.conf", f"key {STRIPE}\n", "key sk_test_" + rand(ALNUM, 24, 30) + "\n"),
    (secrets.NPM_TOKEN, "/app/npm.txt", f"{NPM}\n", "npm_install_packages_for_the_whole_repo\n"),
    (secrets.GOOGLE_API_KEY, "/app/maps.js", f'const k = "{GOOGLE}";\n', 'const k = "AIza-short";\n'),
    (secrets.SENDGRID_KEY, "/app/mail.txt", f"{SENDGRID}\n", "SG.short.key\n"),
    (secrets.DOCKERHUB_TOKEN, "/app/hub.txt", f"{DOCKERHUB}\n", "dckr_pat_\n"),
    (secrets.HUGGINGFACE_TOKEN, "/app/hf.txt", f"{HF}\n", "hf_hub_download_model_files\n"),
    (
        secrets.SLACK_WEBHOOK,
        "/app/notify.sh",
        f"curl -X POST {SLACK_HOOK}\n",
        "see https://api.slack.com/messaging/webhooks\n",
    ),
    (secrets.PYPI_TOKEN, "/app/upload.cfg", f"[upload]\nkey: {PYPI}\n", "[upload]\nkey: pypi-token-goes-here\n"),
    (secrets.OPENAI_KEY, "/app/llm.yaml", f"openai: {OPENAI}\n", "openai: sk-replace-me\n"),
    (secrets.ANTHROPIC_KEY, "/app/claude.yaml", f"anthropic: {ANTHROPIC}\n", "anthropic: sk-ant-...\n"),
    (
        secrets.KUBECONFIG,
        "/app/cluster.yaml",
        f"users:\n- user:\n    client-key-data: {KEY_DATA}\n",
        "users:\n- user:\n    client-certificate: /etc/k8s/client.crt\n",
    ),
    (
        secrets.GENERIC_SECRET,
        "/app/config.ini",
        f"[db]\npassword = {PASSWORD}\n",
        "[db]\npassword = changeme\n# password = Hunter2hunter2\npassword_file = /run/secrets/db\n",
    ),
    (
        secrets.GENERIC_SECRET,
        "/app/settings.py",
        f'API_KEY = "{PASSWORD}"\n',
        'API_KEY = os.environ["API_KEY"]\npassword = get_password()\ntoken = "empty_line"\n',
    ),
    (
        secrets.GENERIC_SECRET,
        "/app/call.sh",
        f'curl -H "Authorization: Bearer {BEARER}" https://api\n',
        'curl -H "Authorization: Bearer $TOKEN" https://api\n',
    ),
    (
        secrets.URL_CREDENTIALS,
        "/app/pip.conf",
        f"index-url = https://deploy:{PASSWORD}@pypi.internal/simple\n",
        "index-url = https://deploy:${PIP_PASSWORD}@pypi.internal/simple\n",
    ),
    (
        secrets.NPMRC_TOKEN,
        "/root/.npmrc",
        f"//registry.npmjs.org/:_authToken={PASSWORD}\n",
        "_authToken=${NPM_TOKEN}\n",
    ),
    (
        secrets.PYPIRC_PASSWORD,
        "/root/.pypirc",
        f"[pypi]\nusername = me\npassword = {PASSWORD}\n",
        "[pypi]\nusername = me\n",
    ),
    (
        secrets.DOCKER_AUTH,
        "/root/.docker/config.json",
        json.dumps({"auths": {"registry.example": {"auth": base64.b64encode(f"me:{PASSWORD}".encode()).decode()}}}),
        json.dumps({"auths": {"registry.example": {}}, "credsStore": "desktop"}),
    ),
    (
        secrets.KUBECONFIG,
        "/root/.kube/config",
        f"apiVersion: v1\nkind: Config\nusers:\n- name: ci\n  user:\n    token: {BEARER}\n",
        "apiVersion: v1\nkind: Config\nusers:\n- name: ci\n  user:\n    exec:\n      command: aws\n",
    ),
]


@pytest.mark.parametrize(("rule", "path", "positive", "negative"), CONTENT_CASES, ids=[c[0] for c in CONTENT_CASES])
def test_content_rule(tmp_path: Path, rule: str, path: str, positive: str, negative: str) -> None:
    parents = [directory(p) for p in ("/root", "/root/.docker", "/root/.kube") if path.startswith(p + "/")]
    pos = audit_of(write(tmp_path, spec(run("add", *parents, file(path, positive))), "pos.tar"))
    [finding] = of_rule(pos, rule)
    assert finding.path == path
    assert finding.layers == (1,) and finding.visible
    assert finding.severity == auditing.RULES[rule].severity
    assert secrets.MASK in finding.evidence
    assert_no_secret(finding.evidence + finding.message)
    neg = audit_of(write(tmp_path, spec(run("add", *parents, file(path, negative))), "neg.tar"))
    assert [f for f in neg.findings if f.where == auditing.IN_FILE] == []


def test_generic_secrets_are_not_searched_in_documentation_trees(tmp_path: Path) -> None:
    text = f"password = {PASSWORD}\n"
    image = spec(
        run(
            "docs",
            directory("/usr"),
            directory("/usr/share"),
            directory("/usr/share/doc"),
            file("/usr/share/doc/README", text),
            file("/app/README.md", text),
            file("/app/app.conf", text),
        )
    )
    report = audit_of(write(tmp_path, image))
    assert [f.path for f in of_rule(report, secrets.GENERIC_SECRET)] == ["/app/app.conf"]


def test_private_key_inside_a_binary_is_found(tmp_path: Path) -> None:
    program = b"\x7fELF\x02\x01\x01" + bytes(64) + fake_pem("", 6).encode() + bytes(64)
    report = audit_of(write(tmp_path, spec(run("build", file("/app/server", program, mode=0o755)))))
    assert [f.path for f in of_rule(report, secrets.PRIVATE_KEY)] == ["/app/server"]
    assert report.stats.binary_files >= 1


def test_hard_link_to_a_secret_is_reported_at_both_names(tmp_path: Path) -> None:
    image = spec(run("ln", file("/app/key.pem", fake_pem()), hardlink("/app/copy.pem", "/app/key.pem")))
    report = audit_of(write(tmp_path, image))
    assert sorted(f.path or "" for f in of_rule(report, secrets.PRIVATE_KEY)) == ["/app/copy.pem", "/app/key.pem"]


NAME_CASES = [
    (secrets.NETRC_FILE, "/root/.netrc"),
    (secrets.GIT_CREDENTIALS, "/root/.git-credentials"),
    (secrets.AWS_CREDENTIALS_FILE, "/root/.aws/credentials"),
    (secrets.PGPASS_FILE, "/root/.pgpass"),
    (secrets.SHELL_HISTORY, "/root/.bash_history"),
    (secrets.SHELL_HISTORY, "/home/app/.python_history"),
]


@pytest.mark.parametrize(("rule", "path"), NAME_CASES)
def test_credential_file_names(tmp_path: Path, rule: str, path: str) -> None:
    dirs = [directory(p) for p in ("/root", "/root/.aws", "/home", "/home/app") if path.startswith(p + "/")]
    pos = audit_of(write(tmp_path, spec(run("add", *dirs, file(path, "machine x login y\n"))), "pos.tar"))
    assert [(f.rule, f.path) for f in pos.findings if f.where == auditing.IN_FILE] == [(rule, path)]
    # An empty file holds nothing; the same content under another name is no finding either.
    empty = audit_of(write(tmp_path, spec(run("add", *dirs, file(path, ""))), "empty.tar"))
    other = audit_of(write(tmp_path, spec(run("add", *dirs, file(path + ".txt", "x\n"))), "other.tar"))
    assert [f for f in empty.findings + other.findings if f.where == auditing.IN_FILE] == []


# ---------------------------------------------------------------------------
# Modes, devices, hygiene
# ---------------------------------------------------------------------------


def test_mode_and_device_rules_match_an_independent_walk(tmp_path: Path) -> None:
    steps = (
        run(
            "install",
            directory("/usr"),
            directory("/usr/bin"),
            file("/usr/bin/su", b"su", mode=0o4755),
            file("/usr/bin/wall", b"wall", mode=0o2755),
            file("/usr/bin/ok", b"ok", mode=0o755),
            directory("/srv", mode=0o777),
            directory("/srv/shared", mode=0o1777),
            directory("/srv/group", mode=0o2775),
            file("/srv/open.log", b"log", mode=0o666),
            symlink("/srv/link", "/srv/open.log"),
            device("/app/console", "char", 5, 1, mode=0o600),
            device("/app/disk", "block", 8, 0, mode=0o600),
        ),
        run("chmod u-s /usr/bin/su", directory("/usr/bin"), file("/usr/bin/su", b"su", mode=0o755)),
    )
    report = audit_of(write(tmp_path, spec(*steps)))
    # The oracle: walk the description, layer by layer, with the rules as the docs state them.
    expected: dict[tuple[str, str], list[int]] = {}
    all_steps = BASE_STEPS + steps
    layer = -1
    for step in all_steps:
        if step.layer is None:
            continue
        layer += 1
        for e in step.layer:
            rules = _rules_by_hand(e)
            for rule in rules:
                expected.setdefault((rule, "/" + e.path.strip("/")), []).append(layer)
    got = {
        (f.rule, f.path or ""): list(f.layers)
        for f in report.findings
        if f.rule in (auditing.SETUID, auditing.SETGID, auditing.WORLD_WRITABLE, auditing.DEVICE)
    }
    assert got == expected
    su = next(f for f in report.findings if f.rule == auditing.SETUID)
    assert (su.visible, su.status, su.hidden_by) == (False, "only in layer 1", 2)


def _rules_by_hand(e: TarEntry) -> list[str]:
    out = []
    if e.kind in ("file", "hardlink") and e.mode & 0o4000:
        out.append(auditing.SETUID)
    if e.kind in ("file", "hardlink") and e.mode & 0o2000:
        out.append(auditing.SETGID)
    if e.kind in ("file", "dir") and e.mode & 0o002 and not (e.kind == "dir" and e.mode & 0o1000):
        out.append(auditing.WORLD_WRITABLE)
    if e.kind in ("char", "block") and not e.path.strip("/").startswith("dev/"):
        out.append(auditing.DEVICE)
    return out


def test_git_directory_and_package_caches_are_low(tmp_path: Path) -> None:
    image = spec(
        run(
            "apt-get update && apt-get install -y curl",
            directory("/var"),
            directory("/var/lib"),
            directory("/var/lib/apt"),
            directory("/var/lib/apt/lists"),
            file("/var/lib/apt/lists/deb.debian.org_dists_main", b"P" * 5000),
        ),
        run(
            "rm -rf /var/lib/apt/lists/*",
            directory("/var/lib/apt/lists"),
            whiteout("/var/lib/apt/lists/deb.debian.org_dists_main"),
        ),
        BuildStep(
            "COPY . /app # buildkit",
            (directory("/app/.git"), file("/app/.git/config", "[core]\n"), file("/app/main.py", "print(1)\n")),
        ),
    )
    report = audit_of(write(tmp_path, image))
    [cache] = of_rule(report, auditing.PACKAGE_CACHE)
    assert (cache.path, cache.severity, cache.layers, cache.visible, cache.hidden_by) == (
        "/var/lib/apt/lists",
        auditing.LOW,
        (1,),
        False,
        2,
    )
    assert (cache.files, cache.bytes) == (1, 5000)
    [git] = of_rule(report, auditing.GIT_DIRECTORY)
    assert (git.path, git.layers, git.visible) == ("/app/.git", (3,), True)


# ---------------------------------------------------------------------------
# Config and history
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "finding"),
    [("", "no USER"), ("root", "USER root"), ("0:0", "USER 0:0"), ("app", None), ("1000:1000", None)],
)
def test_root_user(tmp_path: Path, user: str, finding: str | None) -> None:
    report = audit_of(write(tmp_path, spec(user=user)))
    found = of_rule(report, auditing.ROOT_USER)
    if finding is None:
        assert found == []
    else:
        assert [f.message.split(": ")[0] for f in found] == [finding]
        assert found[0].severity == auditing.MEDIUM


@pytest.mark.parametrize(("health", "found"), [(None, True), (("NONE",), True), (("CMD", "true"), False)])
def test_healthcheck(tmp_path: Path, health: tuple[str, ...] | None, found: bool) -> None:
    image = ImageSpec(BASE_STEPS, user="app", healthcheck=health)
    report = audit_of(write(tmp_path, image))
    assert bool(of_rule(report, auditing.NO_HEALTHCHECK)) is found
    if found:
        assert of_rule(report, auditing.NO_HEALTHCHECK)[0].severity == auditing.INFO


def test_env_and_label_secrets(tmp_path: Path) -> None:
    image = spec(
        nop(f"ENV API_TOKEN={PASSWORD}"),
        env=(
            "PATH=/usr/bin:/bin",
            f"API_TOKEN={PASSWORD}",
            "POSTGRES_PASSWORD_FILE=/run/secrets/pg",
            "GPG_KEY=A035C8C19219BA821ECEA86B64E628F8D684696D",
            f"UPSTREAM={GITHUB}",
            "PWD=/app",
            "DB_PASSWORD=",
        ),
        labels={"maintainer": "team@example.com", "deploy.token": PASSWORD, "org.opencontainers.image.version": "1.2"},
    )
    report = audit_of(write(tmp_path, image))
    env = {f.subject: f for f in of_rule(report, auditing.ENV_SECRET)}
    assert set(env) == {"ENV API_TOKEN", "ENV UPSTREAM"}
    assert env["ENV API_TOKEN"].step == 2  # the ENV step that set it
    assert "GitHub token" in env["ENV UPSTREAM"].message
    assert [f.subject for f in of_rule(report, auditing.LABEL_SECRET)] == ["LABEL deploy.token"]
    # The ENV step's value is still in the config: reported there, not again from the history.
    assert of_rule(report, auditing.HISTORY_SECRET) == []
    for f in report.findings:
        assert_no_secret(f.evidence + f.message + (f.instruction or ""))


def test_build_args_and_history_tokens(tmp_path: Path) -> None:
    image = spec(
        BuildStep(f"|2 NPM_TOKEN={NPM} VERSION=1.2.3 /bin/sh -c npm ci", (file("/app/package.json", "{}"),)),
        BuildStep("|1 VERSION=1.2.3 /bin/sh -c make", (file("/app/Makefile", "all:\n"),)),
        BuildStep(
            f'RUN /bin/sh -c curl -H "Authorization: Bearer {BEARER}" https://x/get # buildkit', (file("/app/x", "1"),)
        ),
        nop(f"ENV SETUP_PASSWORD={PASSWORD}"),
        nop("ENV SETUP_PASSWORD="),
        BuildStep(f"RUN |1 GH={GITHUB} /bin/sh -c git clone # buildkit", (file("/app/y", "1"),)),
    )
    report = audit_of(write(tmp_path, image))
    args = {f.subject: f for f in of_rule(report, auditing.BUILD_ARG_SECRET)}
    assert set(args) == {"ARG NPM_TOKEN", "ARG GH"}
    assert args["ARG NPM_TOKEN"].layers == (1,) and args["ARG NPM_TOKEN"].step == 2
    history = of_rule(report, auditing.HISTORY_SECRET)
    assert sorted(f.subject or "" for f in history) == ["ENV SETUP_PASSWORD", "step 4"]
    curl = next(f for f in history if f.subject == "step 4")
    assert curl.layers == (3,)
    # The step is shown with its secret masked (the config was redacted when it was read).
    assert curl.instruction is not None and f"Bearer {secrets.MASK}" in curl.instruction
    for f in report.findings:
        assert_no_secret(f.evidence + f.message + (f.instruction or ""))


# ---------------------------------------------------------------------------
# Streaming: chunks, overlap, the size cap
# ---------------------------------------------------------------------------


def _feed(scanner: ContentScanner, path: str, data: bytes, cuts: list[int]) -> None:
    sink = scanner(path, len(data))
    assert sink is not None
    view = memoryview(data)
    start = 0
    for cut in [*cuts, len(data)]:
        sink(view[start:cut])
        start = cut


def test_a_secret_cut_by_a_chunk_boundary_is_found_once_on_the_right_line() -> None:
    prefix = ("filler line\n" * 300).encode()
    data = prefix + f"export T={GITHUB}\nend\n".encode()
    at = len(prefix) + len("export T=")
    for cut in range(at - 3, at + len(GITHUB) + 3):
        scanner = ContentScanner()
        _feed(scanner, "/app/env.sh", data, [cut])
        [(key, result)] = scanner.results().items()
        [match] = result.matches
        assert (match.rule, match.count, match.line) == (secrets.GITHUB_TOKEN, 1, 301), cut
        import xxhash

        assert key == ("/app/env.sh", xxhash.xxh3_64(data).hexdigest())


def test_many_small_chunks_find_a_pem_and_count_each_key_once() -> None:
    data = ("x\n" * 5000 + fake_pem("", 1) + "y\n" * 10 + fake_pem("", 2)).encode()
    scanner = ContentScanner()
    _feed(scanner, "/app/keys.pem", data, list(range(700, len(data), 700)))
    [result] = scanner.results().values()
    [match] = result.matches
    assert (match.rule, match.count, match.line) == (secrets.PRIVATE_KEY, 2, 5001)


def test_max_scan_bytes_caps_what_is_read_but_not_the_digest(tmp_path: Path) -> None:
    early = "A" * 100 + f"\n{GITHUB}\n"
    late = "B" * 5000 + f"\n{NPM}\n"
    image = spec(run("add", file("/app/early.txt", early), file("/app/late.txt", late)))
    path = write(tmp_path, image)
    capped = audit_of(path, max_scan_bytes=1000)
    assert [(f.rule, f.path) for f in capped.findings if f.where == auditing.IN_FILE] == [
        (secrets.GITHUB_TOKEN, "/app/early.txt")
    ]
    assert capped.stats.truncated_files == 1
    full = audit_of(path)
    assert {(f.rule, f.path) for f in full.findings if f.where == auditing.IN_FILE} == {
        (secrets.GITHUB_TOKEN, "/app/early.txt"),
        (secrets.NPM_TOKEN, "/app/late.txt"),
    }
    _, out, _ = cli("audit", str(path), "--max-scan-bytes", "1kB", "--json")
    assert json.loads(out)["scan"]["truncated_files"] == 1
    assert cli("audit", str(path), "--max-scan-bytes", "lots")[0] == 2


# ---------------------------------------------------------------------------
# Layer attribution
# ---------------------------------------------------------------------------


def _secret_image() -> ImageSpec:
    pem = fake_pem()
    return spec(
        run("write key", directory("/root"), file("/root/key.pem", pem)),
        run("other", file("/app/a.txt", "a")),
        run("rewrite the same key", directory("/root"), file("/root/key.pem", pem, mode=0o600)),
        run("a different key at the same path later", directory("/root"), file("/root/key.pem", fake_pem("", 9))),
        run("write key again", directory("/srv"), file("/srv/key.pem", pem)),
    )


@pytest.mark.parametrize("layout", ["docker-archive", "oci"])
def test_layers_are_attributed_by_content_whatever_the_source(tmp_path: Path, layout: str) -> None:
    image = _secret_image()
    if layout == "oci":
        ref = f"oci:{tmp_path / 'layout'}"
        write_oci_layout(tmp_path / "layout", image)
    else:
        ref = str(write(tmp_path, image))
    report = audit_of(ref)
    found = {f.path: f for f in of_rule(report, secrets.PRIVATE_KEY)}
    assert found["/root/key.pem"].layers == (1, 3, 4)
    assert found["/root/key.pem"].visible  # layer 4's key is still there
    assert found["/srv/key.pem"].layers == (5,)


def test_a_layer_repeated_in_an_image_is_attributed_to_both_positions(tmp_path: Path) -> None:
    same = (file("/app/id_rsa", fake_pem()),)
    image = spec(run("add key", *same), run("other", file("/app/x", "x")), run("add key", *same))
    report = audit_of(write(tmp_path, image))
    [finding] = of_rule(report, secrets.PRIVATE_KEY)
    assert finding.layers == (1, 3)


# ---------------------------------------------------------------------------
# --base
# ---------------------------------------------------------------------------


def test_base_findings_are_inherited_and_one_severity_lower(tmp_path: Path) -> None:
    base = spec(
        run("install su", directory("/usr"), directory("/usr/bin"), file("/usr/bin/su", b"su", mode=0o4755)),
        user="",
    )
    app_image = base.extend(
        run("add tool", directory("/usr/bin"), file("/usr/bin/tool", b"tool", mode=0o4755)),
        run("chown", directory("/usr/bin"), file("/usr/bin/su", b"su", mode=0o4755, uid=1)),
    )
    base_path = write(tmp_path, base, "base.tar")
    app_path = write(tmp_path, app_image, "app.tar")
    report = audit_of(app_path, base=base_path)
    assert report.base is not None and report.base.prefix and report.base.layers == 2
    setuid = {f.path: f for f in of_rule(report, auditing.SETUID)}
    assert setuid["/usr/bin/su"].inherited and setuid["/usr/bin/su"].severity == auditing.LOW
    assert not setuid["/usr/bin/tool"].inherited and setuid["/usr/bin/tool"].severity == auditing.MEDIUM
    [root] = of_rule(report, auditing.ROOT_USER)
    assert root.inherited and root.severity == auditing.LOW
    # Without --base nothing is inherited.
    plain = audit_of(app_path)
    assert not any(f.inherited for f in plain.findings)
    # A base that is not a prefix: a warning, nothing inherited.
    other = write(tmp_path, spec(run("x", file("/x", "x"))), "other.tar")
    unrelated = audit_of(app_path, base=other)
    assert unrelated.base is not None and not unrelated.base.prefix
    assert not any(f.inherited for f in unrelated.findings) and unrelated.warnings


def test_a_new_secret_at_a_base_path_is_not_inherited(tmp_path: Path) -> None:
    base = spec(run("key", directory("/root"), file("/root/key.pem", fake_pem("", 1))))
    app_image = base.extend(run("new key", directory("/root"), file("/root/key.pem", fake_pem("", 2))))
    report = audit_of(write(tmp_path, app_image, "app.tar"), base=write(tmp_path, base, "base.tar"))
    [finding] = of_rule(report, secrets.PRIVATE_KEY)
    assert not finding.inherited and finding.severity == auditing.CRITICAL


# ---------------------------------------------------------------------------
# CLI: exit codes, ignore file, JSON, SARIF, redaction
# ---------------------------------------------------------------------------


@pytest.fixture
def leaky(tmp_path: Path) -> Path:
    """An image with one finding per severity: critical key, high token, medium setuid, low cache, info."""
    return write(
        tmp_path,
        spec(
            run("key", directory("/root"), file("/root/id_rsa", fake_pem())),
            run("token", file("/app/ci.env.sh", f"export GH={GITHUB}\n")),
            run("tool", file("/app/tool", b"t", mode=0o4755)),
            run(
                "pip",
                directory("/root"),
                directory("/root/.cache"),
                directory("/root/.cache/pip"),
                file("/root/.cache/pip/x", "x"),
            ),
            healthcheck=None,
        ),
        "leaky.tar",
    )


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ((), 1),
        (("--fail-on", "critical"), 1),
        (("--fail-on", "high"), 1),
        (("--fail-on", "low"), 1),
        (("--fail-on", "bogus"), 2),
        (("--fail-on", "info"), 2),
    ],
)
def test_exit_codes(leaky: Path, args: tuple[str, ...], code: int) -> None:
    assert cli("audit", str(leaky), *args)[0] == code


def test_exit_zero_below_fail_on(tmp_path: Path) -> None:
    path = write(tmp_path, spec(run("tool", file("/app/tool", b"t", mode=0o4755))))
    assert cli("audit", str(path))[0] == 0
    assert cli("audit", str(path), "--fail-on", "medium")[0] == 1
    assert cli("audit", str(tmp_path / "missing.tar"))[0] == 2


def test_ignore_file_hides_with_reasons(leaky: Path, tmp_path: Path) -> None:
    ignore = tmp_path / "ignore"
    ignore.write_text(
        "# test fixture key, never deployed\n"
        "private-key /root/**\n"
        "github-token   # the CI token is revoked\n"
        "/app/tool\n"
        "package-cache /nowhere/**  # stale entry\n"
    )
    code, out, _ = cli("audit", str(leaky), "--ignore-file", str(ignore), "--json")
    report = json.loads(out)
    jsonschema.validate(report, load_schema("audit"))
    hidden = {i["rule"]: i["ignored_by"] for i in report["ignored"]}
    assert hidden["private-key"]["reason"] == "test fixture key, never deployed"
    assert hidden["github-token"]["reason"] == "the CI token is revoked"
    assert hidden["setuid-file"]["glob"] == "/app/tool" and hidden["setuid-file"]["rule"] is None
    assert [u["line"] for u in report["unused_ignores"]] == [5]
    assert {f["rule"] for f in report["findings"]} == {"package-cache", "no-healthcheck"}
    assert code == 0  # nothing at or above high is left
    text = cli("audit", str(leaky), "--ignore-file", str(ignore))[1]
    assert "test fixture key, never deployed" in text


def test_default_ignore_file_in_the_working_directory(
    leaky: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert cli("audit", str(leaky))[0] == 1
    (work / ".imgscopeignore").write_text("private-key\ngithub-token\n")
    assert cli("audit", str(leaky))[0] == 0


def test_bad_ignore_files_are_errors(leaky: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("no-such-rule /app/**\n")
    code, _, err = cli("audit", str(leaky), "--ignore-file", str(bad))
    assert code == 2 and "unknown rule id" in err and ":1:" in err
    bad.write_text("a b c\n")
    assert cli("audit", str(leaky), "--ignore-file", str(bad))[0] == 2
    assert cli("audit", str(leaky), "--ignore-file", str(tmp_path / "absent"))[0] == 2


def test_json_report(leaky: Path) -> None:
    code, out, _ = cli("audit", str(leaky), "--json")
    assert code == 1
    report = json.loads(out)
    jsonschema.validate(report, load_schema("audit"))
    assert report["failed"] and report["exit_code"] == 1
    severities = {f["rule"]: f["severity"] for f in report["findings"]}
    assert severities == {
        "private-key": "critical",
        "github-token": "high",
        "setuid-file": "medium",
        "package-cache": "low",
        "no-healthcheck": "info",
    }
    assert report["summary"]["failing"] == 2
    assert {r["id"] for r in report["rules"]} == set(auditing.RULES)
    assert_no_secret(out)


def test_console_report_is_redacted(leaky: Path) -> None:
    code, out, _ = cli("audit", str(leaky), "--no-color")
    assert code == 1
    for rule in ("private-key", "github-token", "setuid-file", "package-cache", "no-healthcheck"):
        assert rule in out
    assert "FAIL: 2 findings at or above high" in " ".join(out.split())
    assert_no_secret(out)


def test_sarif_structure(leaky: Path, tmp_path: Path) -> None:
    ignore = tmp_path / "ignore"
    ignore.write_text("setuid-file  # reviewed\n")
    sarif_path = tmp_path / "out.sarif"
    code, _, _ = cli("audit", str(leaky), "--sarif", str(sarif_path), "--ignore-file", str(ignore))
    assert code == 1
    text = sarif_path.read_text()
    assert_no_secret(text)
    log = json.loads(text)
    assert log["version"] == "2.1.0"
    assert log["$schema"].startswith("https://") and "sarif" in log["$schema"] and "2.1.0" in log["$schema"]
    [run_] = log["runs"]
    driver = run_["tool"]["driver"]
    assert driver["name"] == "imgscope"
    rule_ids = [r["id"] for r in driver["rules"]]
    assert len(rule_ids) == len(set(rule_ids)) == len(auditing.RULES)
    for rule in driver["rules"]:
        assert rule["shortDescription"]["text"] and rule["defaultConfiguration"]["level"] in (
            "error",
            "warning",
            "note",
        )
        float(rule["properties"]["security-severity"])
    results = run_["results"]
    assert {r["ruleId"] for r in results} == {
        "private-key",
        "github-token",
        "setuid-file",
        "package-cache",
        "no-healthcheck",
    }
    levels = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
    for result in results:
        assert rule_ids[result["ruleIndex"]] == result["ruleId"]
        assert result["level"] == levels[result["properties"]["severity"]]
        assert result["message"]["text"]
        [location] = result["locations"]
        uri = location["physicalLocation"]["artifactLocation"]["uri"]
        assert not uri.startswith("/") and ":" not in uri
        if result["properties"]["where"] == "file":
            layer = result["properties"]["layer"]
            assert {"name": f"layer {layer}", "fullyQualifiedName": f"layer/{layer}", "kind": "module"} in location[
                "logicalLocations"
            ]
    by_rule = {r["ruleId"]: r for r in results}
    key = by_rule["private-key"]
    assert key["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "root/id_rsa"
    assert key["locations"][0]["physicalLocation"]["region"] == {"startLine": 1}
    assert by_rule["setuid-file"]["suppressions"] == [{"kind": "external", "justification": "reviewed"}]
    assert "suppressions" not in key


def test_sarif_write_error_is_exit_2(leaky: Path, tmp_path: Path) -> None:
    assert cli("audit", str(leaky), "--sarif", str(tmp_path / "no" / "such" / "dir.sarif"))[0] == 2


# ---------------------------------------------------------------------------
# Real inputs
# ---------------------------------------------------------------------------

SAMPLE_REFS = ["demo-legacy.tar", "demo-oci.tar", "demo-legacy.tar.zst", "kaniko-demo.tar"]


@pytest.mark.parametrize("name", SAMPLE_REFS)
def test_sample_images_audit_and_validate(name: str) -> None:
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"{path} not built")
    code, out, _ = cli("audit", str(path), "--json", "--fail-on", "critical")
    assert code in (0, 1), out
    report = json.loads(out)
    jsonschema.validate(report, load_schema("audit"))
    assert report["exit_code"] == code


@pytest.mark.parametrize("name", ["test-docker-image.tar", "test-kaniko-image.tar", "ggcr-hello-world-v25.tar"])
def test_external_images_audit_and_validate(external: Path, name: str) -> None:
    if not (external / name).exists():
        pytest.skip(f"{name} not in {EXTERNAL}")
    code, out, _ = cli("audit", str(external / name), "--json")
    assert code in (0, 1)
    jsonschema.validate(json.loads(out), load_schema("audit"))


def test_vendor_trees_are_searched_for_tokens_only(tmp_path: Path) -> None:
    example = f"X-Amz-Credential={AWS_ID}%2F20190814%2Fus-west-2\n"
    selftest = b"\x7fELF\x02\x01\x01" + bytes(64) + fake_pem("", 7).encode() + bytes(64)
    image = spec(
        run(
            "apt-get install libgnutls30 awscli python3-test",
            directory("/usr"),
            directory("/usr/lib"),
            file("/usr/lib/libgnutls.so.30", selftest),
            directory("/usr/local"),
            directory("/usr/local/lib"),
            file("/usr/local/lib/awscli/examples/get-url.rst", example),
            file("/usr/local/lib/python3/test/keycert.pem", fake_pem()),
            file("/usr/local/lib/python3/site-packages/internal/conf.py", f'TOKEN = "{GITHUB}"\n'),
            directory("/etc/ssl"),
            directory("/etc/ssl/private"),
            file("/etc/ssl/private/ssl-cert-snakeoil.key", fake_pem("", 8)),
            file("/etc/ssl/openssl.cnf", "[cmp]\nsecret = pass:insta # demo server of the docs\n"),
            file("/app/run.sh", example),
        )
    )
    report = audit_of(write(tmp_path, image))
    assert {(f.rule, f.path) for f in report.findings if f.where == auditing.IN_FILE} == {
        (secrets.GITHUB_TOKEN, "/usr/local/lib/python3/site-packages/internal/conf.py"),
        (secrets.PRIVATE_KEY, "/etc/ssl/private/ssl-cert-snakeoil.key"),
        (secrets.AWS_ACCESS_KEY, "/app/run.sh"),
    }


def test_code_names_are_not_secrets(tmp_path: Path) -> None:
    code = "using arrival_token = uint64_t;\nauto password = cfg.password2;\nif (token == expected_token1) {}\n"
    report = audit_of(write(tmp_path, spec(run("build", file("/app/src/barrier.h", code)))))
    assert [f for f in report.findings if f.where == auditing.IN_FILE] == []
    literal = f'static const char *api_key = "{PASSWORD}";\n'
    report = audit_of(write(tmp_path, spec(run("build", file("/app/src/keys.h", literal))), "lit.tar"))
    assert [f.rule for f in report.findings if f.where == auditing.IN_FILE] == [secrets.GENERIC_SECRET]


def test_docs_list_every_rule_with_its_severity() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "audit.md").read_text()
    for rule in auditing.RULES.values():
        assert f"| `{rule.id}` | {rule.severity} |" in text, rule.id


def test_hostile_names_are_escaped_on_the_console(tmp_path: Path) -> None:
    image = spec(run("add", file("/app/\x1b[2J/.env", "A=1\n")))
    code, out, _ = cli("audit", str(write(tmp_path, image)), "--no-color")
    assert code == 1
    assert "\x1b" not in out and "\\x1b[2J" in out


def test_every_rule_has_a_positive_case_here() -> None:
    covered = {c[0] for c in CONTENT_CASES} | {c[0] for c in NAME_CASES}
    covered |= {secrets.DOTENV_FILE, auditing.SETUID, auditing.SETGID, auditing.WORLD_WRITABLE, auditing.DEVICE}
    covered |= {auditing.GIT_DIRECTORY, auditing.PACKAGE_CACHE, auditing.ROOT_USER, auditing.NO_HEALTHCHECK}
    covered |= {auditing.BASE_IMAGE_FILES}  # tests/test_redaction.py
    covered |= {auditing.ENV_SECRET, auditing.LABEL_SECRET, auditing.BUILD_ARG_SECRET, auditing.HISTORY_SECRET}
    covered |= {auditing.PATH_CLIMBS_ROOT}  # tests/test_docker_apply.py (a raw tar name is needed)
    assert covered == set(auditing.RULES)


def test_a_one_layer_image_has_no_base_to_group_under(tmp_path: Path) -> None:
    """FROM scratch + one COPY: the setuid file is the user's own step's, a medium finding of its own."""
    path = write(
        tmp_path,
        ImageSpec((copy("file:app", "/", directory("/app"), file("/app/tool", b"t", mode=0o4755)),), user="app"),
    )
    rules = {f.rule: f for f in audit_of(path).findings}
    assert auditing.BASE_IMAGE_FILES not in rules
    assert rules["setuid-file"].severity == "medium" and rules["setuid-file"].path == "/app/tool"
