"""The pre-push audit: what must not ship, in which layer and step, and whether it is still visible.

Why every layer and not the final filesystem: a file deleted by a later step
is still inside the pushed image (its layer is immutable) and anyone can
extract it.  So each finding lists the layers that store it, says whether it
is still visible or "only in layer N", and names the step that put it there.

Inputs are the stacked image and what :class:`~imgscope.analysis.secrets.ContentScanner`
found while the layers were scanned (files with secrets, keyed by path and
content digest).  Content findings are tied to layers here, after stacking,
by matching (path, digest) against each layer's entries: that holds however
the source ordered, de-duplicated or streamed its layers.  Everything else
(file names, modes, devices, the config and the history) is read from the
stack.  Nothing here prints; renderers turn :class:`AuditReport` into text,
JSON or SARIF.

With a base image (``--base``) whose layers are a ChainID prefix of this
image, findings the base already has are marked inherited and reported one
severity lower: the team can still see them, but they are not what this
build added.
"""

from __future__ import annotations

import itertools
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from imgscope import globs, redact
from imgscope.analysis import secrets, waste
from imgscope.analysis.secrets import ContentResult, ScanStats
from imgscope.errors import ImgscopeError
from imgscope.model import BLOCK, CHAR, DIR, FILE, HARDLINK, Entry, Image, ImageConfig
from imgscope.stack import Stack, Step, chain_ids
from imgscope.stack import instruction as instruction_of

INFO = "info"
LOW = "low"
MEDIUM = "medium"
HIGH = "high"
CRITICAL = "critical"
SEVERITIES = (INFO, LOW, MEDIUM, HIGH, CRITICAL)
FAIL_ON_CHOICES = (LOW, MEDIUM, HIGH, CRITICAL)

# Where a finding was made.
IN_FILE = "file"
IN_CONFIG = "config"
IN_HISTORY = "history"

# Rule ids made here (the content ones are in secrets).
ENV_SECRET = "env-secret"
LABEL_SECRET = "label-secret"
BUILD_ARG_SECRET = "build-arg-secret"
HISTORY_SECRET = "history-secret"
SETUID = "setuid-file"
SETGID = "setgid-file"
WORLD_WRITABLE = "world-writable"
DEVICE = "device-file"
ROOT_USER = "root-user"
PATH_CLIMBS_ROOT = "path-climbs-root"
NO_HEALTHCHECK = "no-healthcheck"
GIT_DIRECTORY = "git-directory"
PACKAGE_CACHE = "package-cache"
BASE_IMAGE_FILES = "base-image-files"

DEFAULT_IGNORE_FILE = ".imgscopeignore"


@dataclass(frozen=True, slots=True)
class Rule:
    """One audit rule: a stable id users can ignore, its severity and what it means."""

    id: str
    severity: str
    category: str
    title: str
    description: str


def _rules(*rows: tuple[str, str, str, str, str]) -> dict[str, Rule]:
    return {row[0]: Rule(*row) for row in rows}


_KEY = "secret"
_CRED = "credential-file"
_CFG = "config"
_FS = "filesystem"
_HYG = "hygiene"

#: Every rule, in the order docs and SARIF list them.  Ids are stable: ignore files name them.
RULES: dict[str, Rule] = _rules(
    (secrets.PRIVATE_KEY, CRITICAL, _KEY, "Private key", "A PEM, OpenSSH, PGP or PuTTY private key."),
    (secrets.AWS_ACCESS_KEY, CRITICAL, _KEY, "AWS access key", "An AWS access key id (AKIA..., ASIA...)."),
    (secrets.AWS_SECRET_KEY, CRITICAL, _KEY, "AWS secret access key", "aws_secret_access_key with its value."),
    (secrets.GCP_SERVICE_ACCOUNT, CRITICAL, _KEY, "GCP service-account key", "A service-account JSON key file."),
    (secrets.GITHUB_TOKEN, HIGH, _KEY, "GitHub token", "ghp_, gho_, ghu_, ghs_, ghr_ or github_pat_ token."),
    (secrets.GITLAB_TOKEN, HIGH, _KEY, "GitLab token", "glpat-, gldt-, glrt-, glptt- or glsoat- token."),
    (secrets.SLACK_TOKEN, HIGH, _KEY, "Slack token", "xoxb-, xoxp-, xoxa-... token."),
    (secrets.SLACK_WEBHOOK, HIGH, _KEY, "Slack webhook", "An incoming-webhook URL (hooks.slack.com)."),
    (secrets.STRIPE_KEY, HIGH, _KEY, "Stripe live key", "sk_live_ or rk_live_ key."),
    (secrets.NPM_TOKEN, HIGH, _KEY, "npm token", "npm_ access token."),
    (secrets.PYPI_TOKEN, HIGH, _KEY, "PyPI token", "pypi- upload token."),
    (secrets.GOOGLE_API_KEY, HIGH, _KEY, "Google API key", "AIza... API key."),
    (secrets.OPENAI_KEY, HIGH, _KEY, "OpenAI API key", "sk-...T3BlbkFJ... key."),
    (secrets.ANTHROPIC_KEY, HIGH, _KEY, "Anthropic API key", "sk-ant-... key."),
    (secrets.SENDGRID_KEY, HIGH, _KEY, "SendGrid API key", "SG.xxx.yyy key."),
    (secrets.DOCKERHUB_TOKEN, HIGH, _KEY, "Docker Hub token", "dckr_pat_ personal access token."),
    (secrets.HUGGINGFACE_TOKEN, HIGH, _KEY, "Hugging Face token", "hf_ access token."),
    (
        secrets.GENERIC_SECRET,
        HIGH,
        _KEY,
        "Secret with key context",
        "A literal assigned to a secret-named key (password=, api_key:, token:) or an Authorization header; "
        "not searched in library and documentation trees.",
    ),
    (secrets.URL_CREDENTIALS, HIGH, _KEY, "Credentials in a URL", "scheme://user:password@host."),
    (secrets.KUBECONFIG, HIGH, _CRED, "Kubeconfig with credentials", "client-key-data, token or password."),
    (secrets.NPMRC_TOKEN, HIGH, _CRED, ".npmrc with a token", "_authToken, _auth or _password in .npmrc."),
    (secrets.PYPIRC_PASSWORD, HIGH, _CRED, ".pypirc with a password", "password in .pypirc."),
    (secrets.DOCKER_AUTH, HIGH, _CRED, "Docker config with auths", "auth or identitytoken in .docker/config.json."),
    (secrets.DOTENV_FILE, HIGH, _CRED, ".env file", "A .env or .env.* file (templates such as .env.example excepted)."),
    (secrets.NETRC_FILE, HIGH, _CRED, ".netrc file", "A .netrc or _netrc file."),
    (secrets.GIT_CREDENTIALS, HIGH, _CRED, "Git credentials file", "A .git-credentials file."),
    (secrets.AWS_CREDENTIALS_FILE, HIGH, _CRED, "AWS credentials file", "A .aws/credentials file."),
    (secrets.PGPASS_FILE, HIGH, _CRED, "PostgreSQL password file", "A .pgpass file."),
    (secrets.SHELL_HISTORY, HIGH, _CRED, "Shell history file", "A non-empty shell or REPL history file."),
    (ENV_SECRET, HIGH, _CFG, "Secret in ENV", "An ENV variable with a secret name or a secret value."),
    (LABEL_SECRET, HIGH, _CFG, "Secret in LABEL", "A label with a secret name or a secret value."),
    (BUILD_ARG_SECRET, HIGH, _CFG, "Secret build argument", "A build argument a step recorded in its created_by."),
    (
        HISTORY_SECRET,
        HIGH,
        _CFG,
        "Secret in history",
        "A token, a secret-named assignment (DB_PASSWORD=...), a --password option or URL credentials "
        "in a step's command line.",
    ),
    (
        BASE_IMAGE_FILES,
        LOW,
        _FS,
        "Base image files with risky modes",
        "The setuid, setgid, world-writable and device files of the base image's layers (--base, else layer 0), "
        "in one finding: the base ships them, your steps did not add them.",
    ),
    (SETUID, MEDIUM, _FS, "setuid file", "A file with the setuid bit."),
    (SETGID, MEDIUM, _FS, "setgid file", "A file with the setgid bit."),
    (WORLD_WRITABLE, MEDIUM, _FS, "World-writable path", "A file, or a directory without the sticky bit."),
    (DEVICE, MEDIUM, _FS, "Device file outside /dev", "A character or block device outside /dev."),
    (
        PATH_CLIMBS_ROOT,
        HIGH,
        _FS,
        "Name climbs above the root",
        "A layer entry whose tar name climbs above the root with '..' (../../root/.ssh/id_rsa): "
        "Docker clamps it at the root and ships it there; a crafted layer, or a broken build tool.",
    ),
    (ROOT_USER, MEDIUM, _CFG, "Runs as root", "No USER, or USER root or 0."),
    (GIT_DIRECTORY, LOW, _HYG, ".git directory", "A .git directory (history, remotes, maybe credentials)."),
    (PACKAGE_CACHE, LOW, _HYG, "Package manager cache", "apt, apk, yum, dnf, pip, npm or yarn caches."),
    (NO_HEALTHCHECK, INFO, _CFG, "No HEALTHCHECK", "The config has no HEALTHCHECK (or HEALTHCHECK NONE)."),
)


def severity_rank(severity: str) -> int:
    """Position in :data:`SEVERITIES` (info = 0 ... critical = 4)."""
    return SEVERITIES.index(severity)


def lower_severity(severity: str) -> str:
    """One step down (an inherited finding); info stays info."""
    return SEVERITIES[max(0, severity_rank(severity) - 1)]


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing that must not ship: a rule, where it is, which layers store it, and its state."""

    rule: str
    severity: str
    message: str
    where: str
    path: str | None = None
    subject: str | None = None
    layers: tuple[int, ...] = ()
    step: int | None = None
    instruction: str | None = None
    visible: bool = True
    hidden_by: int | None = None
    evidence: str = ""
    line: int | None = None
    count: int = 1
    files: int = 0
    bytes: int = 0
    inherited: bool = False
    deleted: bool = False
    paths: tuple[str, ...] = ()

    @property
    def status_words(self) -> str:
        """The status as people read it: a file deleted later still ships, in the layer named here."""
        if self.where != IN_FILE or self.visible:
            return self.status
        where = ("layers " if len(self.layers) > 1 else "layer ") + ", ".join(str(n) for n in self.layers)
        if self.hidden_by is None:
            return f"not in the final image, still readable by anyone who pulls the image: {where}"
        verb = "deleted" if self.deleted else "replaced"
        return f"{verb} in layer {self.hidden_by}, still readable by anyone who pulls the image: {where}"

    @property
    def rule_severity(self) -> str:
        """The rule's own severity (before lowering an inherited finding)."""
        return RULES[self.rule].severity

    @property
    def title(self) -> str:
        return RULES[self.rule].title

    @property
    def layer(self) -> int | None:
        """The first layer that stores it (None for config findings and empty steps)."""
        return self.layers[0] if self.layers else None

    @property
    def status(self) -> str:
        """``visible``, ``only in layer N`` (deleted or replaced later), ``in config`` or ``in history``."""
        if self.where == IN_CONFIG:
            return "in config"
        if self.where == IN_HISTORY:
            return "in history"
        if self.visible:
            return "visible"
        if len(self.layers) == 1:
            return f"only in layer {self.layers[0]}"
        return "only in layers " + ", ".join(str(n) for n in self.layers)


@dataclass(frozen=True, slots=True)
class IgnoreEntry:
    """One line of an ignore file: a rule id, a path glob, or both; the comment is the reason."""

    line: int
    text: str
    rule: str | None
    glob: str | None
    reason: str

    def matches(self, finding: Finding) -> bool:
        if self.rule is not None and self.rule != finding.rule:
            return False
        if self.glob is None:
            return True
        return finding.path is not None and globs.match(self.glob, finding.path)


@dataclass(frozen=True, slots=True)
class IgnoredFinding:
    """A finding an ignore-file entry hides, and that entry (its reason is shown)."""

    finding: Finding
    entry: IgnoreEntry


@dataclass(frozen=True, slots=True)
class BaseInfo:
    """The ``--base`` image and whether it is this image's ChainID prefix."""

    reference: str
    layers: int
    prefix: bool


@dataclass(frozen=True, slots=True)
class AuditReport:
    """Findings (most severe first), what the ignore file hid, and how the scan went."""

    stack: Stack
    findings: tuple[Finding, ...]
    ignored: tuple[IgnoredFinding, ...]
    unused_ignores: tuple[IgnoreEntry, ...]
    fail_on: str
    stats: ScanStats
    max_scan_bytes: int
    base: BaseInfo | None = None
    ignore_file: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def failing(self) -> tuple[Finding, ...]:
        """Findings at or above ``fail_on``."""
        rank = severity_rank(self.fail_on)
        return tuple(f for f in self.findings if severity_rank(f.severity) >= rank)

    @property
    def exit_code(self) -> int:
        """0 when nothing reaches ``fail_on``, 1 otherwise."""
        return 1 if self.failing else 0

    def counts(self) -> dict[str, int]:
        """Findings per severity, every severity present."""
        out = dict.fromkeys(SEVERITIES, 0)
        for f in self.findings:
            out[f.severity] += 1
        return out


# ---------------------------------------------------------------------------
# Ignore file
# ---------------------------------------------------------------------------


def parse_ignore(text: str, name: str = DEFAULT_IGNORE_FILE) -> tuple[IgnoreEntry, ...]:
    """Parse an ignore file: ``RULE_ID``, ``PATH_GLOB`` or ``RULE_ID PATH_GLOB`` per line.

    ``#`` starts a comment; the comment on an entry's line, or else the comment
    lines just above it, is the reason shown for what the entry hides.  A
    single word is a rule id when it names a rule, a path glob otherwise.
    """
    entries: list[IgnoreEntry] = []
    pending: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        body, _, comment = raw.partition("#")
        body, comment = body.strip(), comment.strip()
        if not body:
            if comment:
                pending.append(comment)
            else:
                pending = []
            continue
        words = body.split()
        rule: str | None
        glob: str | None
        if len(words) == 1:
            rule, glob = (words[0], None) if words[0] in RULES else (None, words[0])
        elif len(words) == 2:
            rule, glob = words
            if rule not in RULES:
                raise ImgscopeError(f"{name}:{number}: unknown rule id {rule!r} (see `docs/audit.md` for the list)")
        else:
            raise ImgscopeError(f"{name}:{number}: expected RULE_ID, PATH_GLOB or RULE_ID PATH_GLOB, got {body!r}")
        reason = comment or " ".join(pending)
        entries.append(IgnoreEntry(number, body, rule, glob, reason))
        pending = []
    return tuple(entries)


def load_ignore(path: Path) -> tuple[IgnoreEntry, ...]:
    """Read and parse an ignore file; a missing or unreadable file is the user's error."""
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ImgscopeError(f"{path}: cannot read the ignore file ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise ImgscopeError(f"{path}: the ignore file is not UTF-8 text") from exc
    return parse_ignore(text, str(path))


# ---------------------------------------------------------------------------
# Findings in files
# ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Acc:
    """A file finding while layers are walked: every layer that stores a matching copy."""

    rule: str
    path: str
    evidence: str = ""
    line: int | None = None
    count: int = 0
    layers: list[int] = field(default_factory=list)
    idents: list[tuple[int, str]] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    detail: str = ""

    def add(self, layer: int, ident: str) -> None:
        if not self.layers or self.layers[-1] != layer:
            self.layers.append(layer)
        self.idents.append((layer, ident))


_HYGIENE_CATEGORIES = {
    "apt-lists": PACKAGE_CACHE,
    "apt-cache": PACKAGE_CACHE,
    "apk-cache": PACKAGE_CACHE,
    "yum-cache": PACKAGE_CACHE,
    "dnf-cache": PACKAGE_CACHE,
    "pip-cache": PACKAGE_CACHE,
    "npm-cache": PACKAGE_CACHE,
    "yarn-cache": PACKAGE_CACHE,
    "git": GIT_DIRECTORY,
}


def _hygiene(path: str, entry: Entry) -> tuple[str, str, str] | None:
    """(rule, root, description) for caches and ``.git`` directories, reusing the waste junk detector."""
    hit = waste.junk_root(path, entry)
    if hit is None or hit[0] not in _HYGIENE_CATEGORIES:
        return None
    category, root = hit
    return _HYGIENE_CATEGORIES[category], root, waste.JUNK_KINDS[category][0]


def _fs_rules(entry: Entry) -> list[str]:
    """Mode and type rules an entry breaks."""
    out: list[str] = []
    mode = entry.mode
    if entry.type in (FILE, HARDLINK):
        if mode & 0o4000:
            out.append(SETUID)
        if mode & 0o2000:
            out.append(SETGID)
    if entry.type in (FILE, HARDLINK, DIR) and mode & 0o002 and not (entry.type == DIR and mode & 0o1000):
        out.append(WORLD_WRITABLE)
    if entry.type in (CHAR, BLOCK) and not (entry.path == "/dev" or entry.path.startswith("/dev/")):
        out.append(DEVICE)
    return out


def _fs_message(rule: str, entry: Entry) -> str:
    mode = f"{entry.mode:04o}"
    if rule == SETUID:
        return f"setuid file {entry.path} (mode {mode}, owner uid {entry.uid})"
    if rule == SETGID:
        return f"setgid file {entry.path} (mode {mode}, group gid {entry.gid})"
    if rule == WORLD_WRITABLE:
        what = "directory without the sticky bit" if entry.type == DIR else "file"
        return f"world-writable {what} {entry.path} (mode {mode})"
    kind = "character" if entry.type == CHAR else "block"
    return f"{kind} device {entry.path} ({entry.devmajor}:{entry.devminor}) outside /dev"


def _file_findings(stack: Stack, content: dict[tuple[str, str], ContentResult]) -> tuple[list[_Acc], dict[str, str]]:
    """Walk every stored entry of every layer once; return accumulated findings and their messages."""
    by_digest: dict[str, ContentResult] = {}
    for found in content.values():
        by_digest.setdefault(found.digest, found)
    accs: dict[tuple[str, str], _Acc] = {}
    messages: dict[str, str] = {}

    def acc(rule: str, path: str) -> _Acc:
        key = (rule, path)
        found = accs.get(key)
        if found is None:
            found = accs[key] = _Acc(rule, path)
        return found

    def stored(entry: Entry, layer: int) -> None:
        """Content and name rules of one stored copy of a file."""
        path = entry.path
        hit = content.get((path, entry.digest)) if entry.type == FILE else by_digest.get(entry.digest)
        if hit is not None:
            for match in hit.matches:
                if entry.type == HARDLINK and match.rule not in _CONTENT_ONLY:
                    continue  # a name-bound rule does not follow a hard link to another name
                a = acc(match.rule, path)
                if not a.evidence:
                    a.evidence, a.line, a.count = match.evidence, match.line, match.count
                a.add(layer, entry.digest)
        if entry.size > 0:
            rule = secrets.name_rule(path)
            if rule is not None:
                acc(rule, path).add(layer, entry.digest)

    for result in stack.layers:
        layer = result.index
        scan = stack.image.scans[layer]
        for path in scan.climbed:
            acc(PATH_CLIMBS_ROOT, path).add(layer, "")
            messages[f"{PATH_CLIMBS_ROOT}\0{path}"] = (
                f"a tar name climbs above the root with '..'; Docker ships it at {path}"
            )
        for copy in scan.shadowed:
            # Copies a later entry of the same layer replaced: not in the container, in the blob.
            if copy.type in (FILE, HARDLINK):
                stored(copy, layer)
        for change in result.changes:
            entry = change.entry
            if entry is None:
                continue
            path = entry.path
            if entry.type in (FILE, HARDLINK):
                stored(entry, layer)
            for rule in _fs_rules(entry):
                a = acc(rule, path)
                a.add(layer, f"{entry.type}:{entry.mode:o}:{entry.digest}")
                messages[f"{rule}\0{path}"] = _fs_message(rule, entry)
            if entry.type != DIR:
                hygiene = _hygiene(path, entry)
                if hygiene is not None:
                    rule, root, description = hygiene
                    a = acc(rule, root)
                    a.detail = description
                    a.add(layer, "")
                    a.files += 1
                    a.bytes += entry.size
    return list(accs.values()), messages


_CONTENT_ONLY = frozenset(
    {
        secrets.PRIVATE_KEY,
        secrets.AWS_ACCESS_KEY,
        secrets.AWS_SECRET_KEY,
        secrets.GCP_SERVICE_ACCOUNT,
        secrets.GITHUB_TOKEN,
        secrets.GITLAB_TOKEN,
        secrets.SLACK_TOKEN,
        secrets.SLACK_WEBHOOK,
        secrets.STRIPE_KEY,
        secrets.NPM_TOKEN,
        secrets.PYPI_TOKEN,
        secrets.GOOGLE_API_KEY,
        secrets.OPENAI_KEY,
        secrets.ANTHROPIC_KEY,
        secrets.SENDGRID_KEY,
        secrets.DOCKERHUB_TOKEN,
        secrets.HUGGINGFACE_TOKEN,
        secrets.KUBECONFIG,
    }
)


def _still_visible(stack: Stack, a: _Acc) -> bool:
    """Does the final filesystem still show a copy this finding recorded (same content, or same flaw)?"""
    final = stack.final.get(a.path)
    if final is None:
        return False
    if a.rule == PATH_CLIMBS_ROOT:
        return True
    if a.rule in _FS_RULES:
        return a.rule in _fs_rules(final.entry)
    return final.entry.type in (FILE, HARDLINK) and any(ident == final.entry.digest for _, ident in a.idents)


_FS_RULES = frozenset({SETUID, SETGID, WORLD_WRITABLE, DEVICE})


def _visible_roots(stack: Stack) -> set[tuple[str, str]]:
    """(rule, root) of caches and ``.git`` directories with at least one file in the final tree."""
    out: set[tuple[str, str]] = set()
    for path, found in stack.final.items():
        if found.entry.type == DIR:
            continue
        hit = _hygiene(path, found.entry)
        if hit is not None:
            out.add((hit[0], hit[1]))
    return out


def _hidden_by(stack: Stack, paths: set[str]) -> dict[tuple[str, int], tuple[int, bool]]:
    """For each path and layer storing it, the first later layer that changed or removed that path.

    The flag says whether that layer deleted the path (rather than replaced it):
    the report then says "deleted in layer N", which is what users look for.
    """
    touched: dict[str, list[tuple[int, bool]]] = {}
    for result in stack.layers:
        for change in result.changes:
            if change.path in paths:
                layers = touched.setdefault(change.path, [])
                if not layers or layers[-1][0] != result.index:
                    layers.append((result.index, change.entry is None))
    out: dict[tuple[str, int], tuple[int, bool]] = {}
    for path, layers in touched.items():
        for before, after in itertools.pairwise(layers):
            out[(path, before[0])] = after
    return out


def _removal_under(stack: Stack, root: str, after: int) -> int | None:
    """The first layer after ``after`` that removed something under ``root`` (for caches, .git)."""
    prefix = root.rstrip("/") + "/"
    for result in stack.layers[after + 1 :]:
        for change in result.changes:
            if change.entry is None and (change.path == root or change.path.startswith(prefix)):
                return result.index
    return None


# ---------------------------------------------------------------------------
# Findings in the config and the history
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _StringSecret:
    evidence: str
    kind: str


def safe_instruction(instruction: str) -> str:
    """An instruction fit to print: one that holds a secret is replaced by its verb and a note.

    Findings name the step that made them, and that step's command line may
    itself hold a token (``RUN curl -H "Authorization: Bearer ..."``): no
    output of the audit may show it.
    """
    if not instruction or not secrets.scan_text(instruction):
        return instruction
    verb = instruction.split(" ", 1)[0]
    return f"{verb} [redacted: this step's command holds a secret]"


def string_secret(name: str, value: str) -> _StringSecret | None:
    """Is ``name=value`` (an ENV, a LABEL, a build argument) a secret?  Redacted evidence, or None.

    A value of a known format (a token, a key, credentials in a URL) is a
    secret whatever its name; any other value is one when its name says so
    (``DB_PASSWORD``, ``API_KEY``) and it is not empty, a placeholder or a
    reference to another variable or a file.
    """
    matches = secrets.scan_text(value)
    if matches:
        first = matches[0]
        return _StringSecret(f"{name}={first.evidence}", RULES[first.rule].title)
    if secrets.secret_name(name) and redact.secret_value(value):
        return _StringSecret(f"{name}={secrets.MASK}", "secret-named value")
    return None


def _last_step(steps: Iterable[Step], verb: str, key: str | None = None) -> Step | None:
    """The last step whose instruction is ``verb`` (and mentions ``key``)."""
    found = None
    for step in steps:
        text = step.instruction
        if not text.upper().startswith(verb + " "):
            continue
        if key is not None and f"{key}=" not in text and f"{verb} {key} " not in text and f'"{key}"=' not in text:
            continue
        found = step
    return found


def _pairs(text: str) -> list[tuple[str, str]]:
    """``K=V`` pairs of an ENV or LABEL instruction (``ENV K V``, the legacy form, too)."""
    try:
        words = shlex.split(text, posix=True)
    except ValueError:
        words = text.split()
    if words and "=" not in words[0] and len(words) >= 2:
        return [(words[0], " ".join(words[1:]))]
    out = []
    for word in words:
        key, sep, value = word.partition("=")
        if sep:
            out.append((key, value))
    return out


def _config_findings(config: ImageConfig, steps: tuple[Step, ...]) -> list[Finding]:
    """ENV and LABEL secrets, the user, the healthcheck."""
    out: list[Finding] = []
    pairs = [("ENV", ENV_SECRET, *item.partition("=")[::2]) for item in config.env]
    pairs += [("LABEL", LABEL_SECRET, key, value) for key, value in config.labels]
    for verb, rule, name, value in pairs:
        hit = string_secret(name, value)
        if hit is None:
            continue
        step = _last_step(steps, verb, name)
        out.append(
            Finding(
                rule,
                HIGH,
                f"{verb} {name} holds a secret ({hit.kind})",
                IN_CONFIG,
                subject=f"{verb} {name}",
                step=step.position if step else None,
                instruction=safe_instruction(step.instruction) if step else None,
                evidence=hit.evidence,
            )
        )
    user = config.user.strip()
    name = user.split(":", 1)[0]
    if not user or name in ("root", "0"):
        step = _last_step(steps, "USER")
        message = "no USER: the container runs as root" if not user else f"USER {user}: the container runs as root"
        out.append(
            Finding(
                ROOT_USER,
                MEDIUM,
                message,
                IN_CONFIG,
                subject="USER",
                step=step.position if step else None,
                instruction=safe_instruction(step.instruction) if step else None,
                evidence=user,
            )
        )
    health = config.healthcheck
    if not health or health[0].upper() == "NONE":
        what = "HEALTHCHECK NONE" if health else "no HEALTHCHECK"
        out.append(Finding(NO_HEALTHCHECK, INFO, f"{what}: nothing tells the runtime the app is healthy", IN_CONFIG))
    return out


def build_args(created_by: str) -> tuple[list[tuple[str, str]], str]:
    """The ``|N K=V ...`` build arguments a step recorded, and the command after them."""
    text = created_by.strip()
    lead = ""
    if text.startswith("RUN "):
        lead, text = "RUN ", text[4:].lstrip()
    if not text.startswith("|"):
        return [], created_by
    head, _, rest = text[1:].partition(" ")
    if not head.isdigit():
        return [], created_by
    words = rest.split(" ")
    count = int(head)
    args = []
    for word in words[:count]:
        key, _, value = word.partition("=")
        args.append((key, value))
    return args, lead + " ".join(words[count:])


def _created_by(stack: Stack, step: Step) -> str:
    """A step's command as the image wrote it: steps carry the redacted text, detectors need the secret."""
    history = stack.image.config.original.history
    if step.history_missing or step.position >= len(history):
        return step.created_by
    return history[step.position].created_by


def _history_findings(stack: Stack) -> list[Finding]:
    """Build arguments and secrets in ``created_by``; ENV/LABEL steps whose values the config no longer has."""
    config = stack.image.config.original
    final_pairs = {tuple(e.partition("=")[::2]) for e in config.env} | set(config.labels)
    out: list[Finding] = []
    for step in stack.steps:
        created_by = _created_by(stack, step)
        if not created_by:
            continue
        layers = (step.layer,) if step.layer is not None else ()
        args, command = build_args(created_by)
        for key, value in args:
            hit = string_secret(key, value)
            if hit is not None:
                out.append(
                    Finding(
                        BUILD_ARG_SECRET,
                        HIGH,
                        f"build argument {key} of step {step.position} holds a secret ({hit.kind})",
                        IN_HISTORY,
                        subject=f"ARG {key}",
                        layers=layers,
                        step=step.position,
                        instruction=safe_instruction(step.instruction),
                        evidence=hit.evidence,
                    )
                )
        text = instruction_of(created_by) if not step.history_missing else step.instruction
        verb = text.split(" ", 1)[0].upper()
        if verb in ("ENV", "LABEL"):
            for key, value in _pairs(text[len(verb) :].strip()):
                if (key, value) in final_pairs:
                    continue  # reported from the config, where it still is
                hit = string_secret(key, value)
                if hit is not None:
                    out.append(
                        Finding(
                            HISTORY_SECRET,
                            HIGH,
                            f"{verb} {key} in step {step.position} held a secret ({hit.kind}); "
                            "the config dropped it, the history keeps it",
                            IN_HISTORY,
                            subject=f"{verb} {key}",
                            layers=layers,
                            step=step.position,
                            instruction=safe_instruction(step.instruction),
                            evidence=hit.evidence,
                        )
                    )
            continue
        seen: set[str] = set()
        for secret in redact.find(command):
            if secret.evidence in seen:
                continue
            seen.add(secret.evidence)
            what = f"{secret.name} holds a secret" if secret.name else RULES[secret.rule].title
            where = f"layer {step.layer}" if step.layer is not None else "no layer"
            out.append(
                Finding(
                    HISTORY_SECRET,
                    HIGH,
                    f"{what} on the {verb or 'command'} line of step {step.position} ({where}); "
                    "the history ships with the image",
                    IN_HISTORY,
                    subject=f"step {step.position}",
                    layers=layers,
                    step=step.position,
                    instruction=safe_instruction(step.instruction),
                    evidence=secret.evidence,
                )
            )
    return out


# ---------------------------------------------------------------------------
# The audit
# ---------------------------------------------------------------------------


def _base_info(image: Image, base: Image) -> BaseInfo:
    mine = chain_ids(list(image.config.diff_ids) or [s.diff_id for s in image.scans])
    theirs = chain_ids(list(base.config.diff_ids) or [s.diff_id for s in base.scans])
    prefix = len(theirs) <= len(mine) and mine[: len(theirs)] == theirs
    return BaseInfo(base.reference, len(theirs), prefix)


def _finding_key(f: Finding) -> tuple[str, str | None, str]:
    return (f.rule, f.subject, f.evidence)


def _inherit(findings: list[Finding], accs: dict[tuple[str, str], _Acc], stack: Stack, base: Image) -> list[Finding]:
    """Mark what the base already has and lower it one severity."""
    count = len(base.config.diff_ids)
    base_config = {_finding_key(f) for f in _config_findings(base.config.original, ())}
    base_history = base.config.original.history
    out = []
    for f in findings:
        inherited = False
        if f.where == IN_FILE and f.path is not None:
            a = accs[(f.rule, f.path)]
            in_base = {ident for layer, ident in a.idents if layer < count}
            inherited = bool(in_base) and all(ident in in_base for layer, ident in a.idents if layer >= count)
        elif f.where == IN_CONFIG:
            inherited = _finding_key(f) in base_config
        elif f.where == IN_HISTORY and f.step is not None and f.step < len(base_history):
            inherited = base_history[f.step].created_by == _created_by(stack, stack.steps[f.step])
        if inherited:
            f = replace(f, inherited=True, severity=lower_severity(f.severity))
        out.append(f)
    return out


def _sort_key(f: Finding) -> tuple[int, int, str, str, str]:
    where = {IN_FILE: 0, IN_HISTORY: 1, IN_CONFIG: 2}[f.where]
    return (-severity_rank(f.severity), where, f.path or f.subject or "", f.rule, f.evidence)


def audit(
    stack: Stack,
    content: dict[tuple[str, str], ContentResult],
    *,
    stats: ScanStats | None = None,
    max_scan_bytes: int = secrets.DEFAULT_MAX_SCAN_BYTES,
    fail_on: str = HIGH,
    base: Image | None = None,
    ignore: tuple[IgnoreEntry, ...] = (),
    ignore_file: str | None = None,
) -> AuditReport:
    """Every finding of a stacked image, with ignores applied and inheritance from ``base`` marked."""
    if fail_on not in FAIL_ON_CHOICES:
        raise ImgscopeError(f"--fail-on {fail_on!r}: use one of {', '.join(FAIL_ON_CHOICES)}")
    accs, messages = _file_findings(stack, content)
    steps_by_layer = {s.layer: s for s in stack.steps if s.layer is not None}
    visible_roots = _visible_roots(stack)
    hidden = _hidden_by(stack, {a.path for a in accs})
    findings: list[Finding] = []
    for a in accs:
        first = a.layers[0]
        step = steps_by_layer.get(first)
        if a.rule in (GIT_DIRECTORY, PACKAGE_CACHE):
            visible = (a.rule, a.path) in visible_roots
            hidden_by = None if visible else _removal_under(stack, a.path, a.layers[-1])
            deleted = hidden_by is not None
        else:
            visible = _still_visible(stack, a)
            later = None if visible else hidden.get((a.path, a.layers[-1]))
            hidden_by, deleted = later if later is not None else (None, False)
        findings.append(
            Finding(
                a.rule,
                RULES[a.rule].severity,
                _file_message(a, messages),
                IN_FILE,
                path=a.path,
                layers=tuple(a.layers),
                step=step.position if step else None,
                instruction=safe_instruction(step.instruction) if step else None,
                visible=visible,
                hidden_by=hidden_by,
                deleted=deleted,
                evidence=a.evidence,
                line=a.line,
                count=max(a.count, 1),
                files=a.files,
                bytes=a.bytes,
            )
        )
    findings += _config_findings(stack.image.config.original, stack.steps)
    findings += _history_findings(stack)
    # What loading the image found (a DiffID that does not match the config...): a gate must show it.
    warnings: list[str] = list(stack.image.warnings)
    base_info = None
    if base is not None:
        base_info = _base_info(stack.image, base)
        if base_info.prefix:
            findings = _inherit(findings, {(a.rule, a.path): a for a in accs}, stack, base)
        else:
            warnings.append(
                f"--base {base.reference}: its layers are not a ChainID prefix of this image; "
                "no finding is marked inherited"
            )
    # Without --base, the first layer is the base, unless it is the only one: then every file is
    # the user's own (FROM scratch + COPY) and nothing is grouped away as "not from your steps".
    base_layers = base_info.layers if base_info is not None and base_info.prefix else int(len(stack.layers) > 1)
    ignored: list[IgnoredFinding] = []
    used: set[int] = set()

    def unignored(todo: list[Finding], only: str | None = None) -> list[Finding]:
        out: list[Finding] = []
        for f in todo:
            entry = next((e for e in ignore if e.matches(f)), None) if only in (None, f.rule) else None
            if entry is None:
                out.append(f)
            else:
                ignored.append(IgnoredFinding(f, entry))
                used.add(entry.line)
        return out

    # Ignores apply to single findings first (``setuid-file /usr/bin/su`` keeps working), then to
    # the group made of what is left (``base-image-files`` hides it whole).
    kept = unignored(findings)
    kept = unignored(_group_base_files(kept, base_layers, base_info), only=BASE_IMAGE_FILES)
    kept.sort(key=_sort_key)
    ignored.sort(key=lambda i: _sort_key(i.finding))
    return AuditReport(
        stack=stack,
        findings=tuple(kept),
        ignored=tuple(ignored),
        unused_ignores=tuple(e for e in ignore if e.line not in used),
        fail_on=fail_on,
        stats=stats or ScanStats(),
        max_scan_bytes=max_scan_bytes,
        base=base_info,
        ignore_file=ignore_file,
        warnings=tuple(warnings),
    )


def _group_base_files(findings: list[Finding], base_layers: int, base: BaseInfo | None) -> list[Finding]:
    """One low finding for the risky modes the base image's layers ship, the rest unchanged.

    A stock Debian base alone has a dozen setuid and setgid programs (su,
    passwd, mount...): listed one by one at medium they bury what the user's
    own steps added.  A file counts as the base's when every layer that stores
    it is a base layer (those of ``--base``, else layer 0); a file a later step
    stored again (or chmod-ed) stays a finding of its own at its severity.
    """
    mine = [
        f
        for f in findings
        if f.where == IN_FILE and f.rule in _FS_RULES and f.layers and max(f.layers) < base_layers and f.path
    ]
    if not mine:
        return findings
    grouped = {id(f) for f in mine}
    kinds: dict[str, int] = {}
    for f in mine:
        kinds[RULES[f.rule].title] = kinds.get(RULES[f.rule].title, 0) + 1
    counted = ", ".join(f"{n} {title}{'s' if n != 1 else ''}" for title, n in kinds.items())
    which = (
        f"--base {base.reference} (layers 0-{base_layers - 1})"
        if base is not None and base.prefix and base_layers > 1
        else f"--base {base.reference} (layer 0)"
        if base is not None and base.prefix
        else "the base image (layer 0)"
    )
    paths = tuple(sorted({f.path for f in mine if f.path}))
    group = Finding(
        BASE_IMAGE_FILES,
        LOW,
        f"{counted} from {which}, not from your steps: " + ", ".join(paths),
        IN_FILE,
        layers=tuple(sorted({layer for f in mine for layer in f.layers})),
        step=mine[0].step,
        instruction=mine[0].instruction,
        visible=any(f.visible for f in mine),
        inherited=any(f.inherited for f in mine),
        count=len(mine),
        files=len(paths),
        paths=paths,
    )
    return [f for f in findings if id(f) not in grouped] + [group]


def _file_message(a: _Acc, messages: dict[str, str]) -> str:
    rule = RULES[a.rule]
    fs = messages.get(f"{a.rule}\0{a.path}")
    if fs is not None:
        return fs
    if a.rule in (GIT_DIRECTORY, PACKAGE_CACHE):
        return f"{a.detail or rule.title} {a.path} ({a.files} file{'s' if a.files != 1 else ''})"
    if a.evidence:
        where = f"{a.path}, line {a.line}" if a.line is not None else a.path
        more = f" ({a.count} matches)" if a.count > 1 else ""
        return f"{rule.title} in {where}{more}"
    return f"{rule.title}: {a.path}"
