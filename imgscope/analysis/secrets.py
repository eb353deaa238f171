"""What a secret looks like: content patterns, file-name rules and the streaming content scanner.

Why a separate module: the audit's other rules read the stacked image, but
secrets must be found in the bytes of every file of every layer, and those
bytes pass only once, inside the layer scan.  :class:`ContentScanner` is the
``visitor`` the scanner calls for each regular file; it hands back a sink that
looks at the file's content chunk by chunk (a small overlap is kept so that a
secret cut by a chunk boundary is still found), never holds more than one
chunk and never writes anything.

Precision over recall, because a secret scanner that cries wolf is switched
off: specific token formats and private keys are searched everywhere text
lives; a few of the gravest (private keys, AWS keys, GitHub tokens) are also
searched in binary files; secrets without a known format are reported only
with key context (``password=``, ``api_key:``, ``Authorization: Bearer``,
``scheme://user:pass@``), never as bare high-entropy strings, and not in
library or documentation trees where examples abound.  Every match is
redacted here, at the source, so no renderer can leak it.

Each pattern starts with a literal, because CPython's ``re`` only searches
fast (memchr-like) for a pattern with a literal prefix; one alternation of
every pattern runs an order of magnitude slower.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass

import xxhash

# Rule ids produced here; their severities and titles live in audit.RULES.
PRIVATE_KEY = "private-key"
AWS_ACCESS_KEY = "aws-access-key"
AWS_SECRET_KEY = "aws-secret-key"
GCP_SERVICE_ACCOUNT = "gcp-service-account"
GITHUB_TOKEN = "github-token"
GITLAB_TOKEN = "gitlab-token"
SLACK_TOKEN = "slack-token"
SLACK_WEBHOOK = "slack-webhook"
STRIPE_KEY = "stripe-key"
NPM_TOKEN = "npm-token"
PYPI_TOKEN = "pypi-token"
GOOGLE_API_KEY = "google-api-key"
OPENAI_KEY = "openai-key"
ANTHROPIC_KEY = "anthropic-key"
SENDGRID_KEY = "sendgrid-key"
DOCKERHUB_TOKEN = "dockerhub-token"
HUGGINGFACE_TOKEN = "huggingface-token"
GENERIC_SECRET = "generic-secret"
URL_CREDENTIALS = "url-credentials"
KUBECONFIG = "kubeconfig"
NPMRC_TOKEN = "npmrc-token"
PYPIRC_PASSWORD = "pypirc-password"
DOCKER_AUTH = "docker-config-auth"
# File-name rules (no content needed: evaluated on the stacked image).
DOTENV_FILE = "dotenv-file"
NETRC_FILE = "netrc-file"
GIT_CREDENTIALS = "git-credentials"
AWS_CREDENTIALS_FILE = "aws-credentials-file"
PGPASS_FILE = "pgpass-file"
SHELL_HISTORY = "shell-history"

MASK = "********"
DEFAULT_MAX_SCAN_BYTES = 10_000_000
# Bytes kept from the previous chunk: longer than any match we must see whole.
OVERLAP = 2048
# How far into a file we look for a NUL byte to call it binary (as git and grep do).
BINARY_SNIFF = 8192
# Matches counted per rule and file, after which we stop counting.
MAX_COUNT = 1000


@dataclass(frozen=True, slots=True)
class Match:
    """One kind of secret found in one file (or one config string), redacted."""

    rule: str
    evidence: str
    line: int | None = None
    count: int = 1


@dataclass(frozen=True, slots=True)
class ContentResult:
    """The secrets one file's content holds, with the xxh3 of that content.

    ``digest`` is computed exactly as :class:`~imgscope.model.Entry` computes
    it, so the audit can find which layers store this very content at this
    path without knowing in which layer the scanner was when it saw it.
    """

    path: str
    digest: str
    size: int
    matches: tuple[Match, ...]
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class ScanStats:
    """How much content the audit read, for the report."""

    files: int = 0
    bytes_scanned: int = 0
    binary_files: int = 0
    truncated_files: int = 0


# ---------------------------------------------------------------------------
# Redaction and value checks
# ---------------------------------------------------------------------------

_PLACEHOLDERS = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "token",
        "changeme",
        "change_me",
        "changeit",
        "example",
        "none",
        "null",
        "nil",
        "true",
        "false",
        "undefined",
        "required",
        "optional",
        "string",
        "redacted",
        "hidden",
        "dummy",
        "test",
        "testing",
        "sample",
        "default",
        "empty",
        "value",
        "secretvalue",
        "mysecret",
        "mypassword",
        "yourpassword",
        "yoursecret",
        "yourtoken",
        "placeholder",
    }
)
_PLACEHOLDER_PARTS = ("xxxx", "****", "....", "example", "placeholder", "your_", "your-", "<", ">", "${", "{{", "%(")
# In program source an unquoted name (``x = uint64_t``, ``key = self.key``) is code, not a literal.
_CODE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")


def is_placeholder(value: str) -> bool:
    """Values people write in examples and templates, and references to other variables."""
    v = value.strip().strip("\"'").lower()
    if not v or v in _PLACEHOLDERS or len(set(v)) <= 2:
        return True
    if v.startswith(("$", "%", "/", "./", "~/", "file:", "env:", "os.", "process.env", "self.", "this.")):
        return True
    return any(part in v for part in _PLACEHOLDER_PARTS)


_SYMBOLS_OK = frozenset("_-.")


def looks_secret(value: str) -> bool:
    """Could this literal be a password or key rather than a word or an identifier?

    Values made only of letters (and ``_-.``) are names far more often than
    secrets (``token: "empty_line"``, ``pass => external``), so a value needs a
    digit, a symbol, or length with mixed case.
    """
    if any(c.isdigit() or (not c.isalnum() and c not in _SYMBOLS_OK) for c in value):
        return True
    return len(value) >= 20 and any(c.isupper() for c in value) and any(c.islower() for c in value)


def mask(prefix: str) -> str:
    """``prefix`` (a part known not to be secret) followed by a fixed mask: never the length."""
    return prefix + MASK


_SECRET_WORDS = frozenset({"PASSWORD", "PASSWD", "PASS", "SECRET", "SECRETS", "TOKEN", "APIKEY", "CREDENTIALS"})
_SECRET_PAIRS = frozenset(
    {
        ("API", "KEY"),
        ("ACCESS", "KEY"),
        ("SECRET", "KEY"),
        ("PRIVATE", "KEY"),
        ("ENCRYPTION", "KEY"),
        ("SIGNING", "KEY"),
        ("MASTER", "KEY"),
        ("CLIENT", "SECRET"),
        ("AUTH", "KEY"),
    }
)
# A name ending like this holds where a secret is, or a fact about it, not the secret.
_NOT_SECRET_SUFFIXES = frozenset(
    {
        "FILE",
        "PATH",
        "DIR",
        "URL",
        "URI",
        "ENDPOINT",
        "HOST",
        "PORT",
        "USER",
        "USERNAME",
        "NAME",
        "ID",
        "LENGTH",
        "LEN",
        "TTL",
        "EXPIRY",
        "EXPIRES",
        "TIMEOUT",
        "TYPE",
        "POLICY",
        "ENABLED",
        "HEADER",
        "FORMAT",
        "ALGORITHM",
        "PROMPT",
        "FIELD",
        "HASH",
        "REGEX",
        "PATTERN",
        "MIN",
        "MAX",
        "COUNT",
        "SIZE",
        "VERSION",
        "MODE",
        "METHOD",
        "PROVIDER",
        "REF",
        "LABEL",
    }
)
_NAME_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")


def secret_name(name: str) -> bool:
    """Does a variable, label or argument name say that its value is a secret?

    Names are split on punctuation and camelCase: ``DB_PASSWORD``,
    ``stripeApiKey``, ``client.secret`` qualify; ``PWD``, ``GPG_KEY``,
    ``PASSWORD_FILE`` and ``TOKEN_URL`` do not.
    """
    parts = [p.upper() for p in _NAME_SPLIT.split(name) if p]
    if not parts or parts[-1] in _NOT_SECRET_SUFFIXES:
        return False
    if any(p in _SECRET_WORDS for p in parts):
        return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(parts))


# ---------------------------------------------------------------------------
# Content patterns
# ---------------------------------------------------------------------------


# An evidence function gets the match and the original window (the match may be on the
# lower-cased copy: offsets are the same) and returns the redacted evidence, or None to
# reject the match.
Evidence = Callable[[re.Match[bytes], bytes], str | None]


@dataclass(frozen=True, slots=True)
class _Pattern:
    """One compiled pattern: which rule it serves and how to redact (or reject) a match."""

    rule: str
    regex: re.Pattern[bytes]
    evidence: Evidence
    lowered: bool = False  # run on the lower-cased text (key words in any case)
    # A long literal every match contains: an ``in`` test (which skips ahead, unlike ``re``'s
    # prefix search) lets most windows skip the pattern at a fraction of a regex pass.
    needle: bytes = b""
    # Patterns that merge several formats: (named group, rule, evidence) of each branch.
    groups: tuple[tuple[str, str, Evidence], ...] = ()


def _text(m: re.Match[bytes], group: int = 0) -> str:
    return m.group(group).decode("utf-8", "replace")


def _original(m: re.Match[bytes], original: bytes, group: int = 0) -> str:
    """A group's text from the original window (the match may be on the lower-cased copy)."""
    start, end = m.span(group)
    return original[start:end].decode("utf-8", "replace")


def _boundary(m: re.Match[bytes]) -> bool:
    """The match is not the middle of a longer word.

    Checked here rather than with a look-behind in the pattern: a leading
    look-behind would cost the pattern its fast literal search.
    """
    data = m.string
    start, end = m.span()
    before = data[start - 1 : start] if start else b""
    after = data[end : end + 1]
    return not (before.isalnum() or before == b"_") and not (after.isalnum() or after == b"_")


def _keep(n: int, bounded: bool = True) -> Evidence:
    """Show the first ``n`` characters (the format's fixed prefix), mask the rest."""

    def show(m: re.Match[bytes], original: bytes) -> str | None:
        if bounded and not _boundary(m):
            return None
        return mask(_text(m)[:n])

    return show


def _github(m: re.Match[bytes], original: bytes) -> str | None:
    if not _boundary(m):
        return None
    return mask("github_pat_" if m.group(0).startswith(b"github_pat_") else _text(m)[:4])


def _stripe(m: re.Match[bytes], original: bytes) -> str | None:
    """``sk_live_`` / ``rk_live_``: the pattern starts at ``_live_`` to keep a literal prefix."""
    start = m.start()
    kind = original[start - 2 : start]
    if kind not in (b"sk", b"rk") or (start > 2 and original[start - 3 : start - 2].isalnum()):
        return None
    return mask(kind.decode() + "_live_") if _boundary_after(m) else None


def _boundary_after(m: re.Match[bytes]) -> bool:
    after = m.string[m.end() : m.end() + 1]
    return not (after.isalnum() or after == b"_")


def _pem(m: re.Match[bytes], original: bytes) -> str | None:
    return mask(f"-----BEGIN {_text(m, 1)}----- ")


def _aws_id(m: re.Match[bytes], original: bytes) -> str | None:
    if not _boundary(m) or b"EXAMPLE" in m.group(0):
        return None
    return mask(_text(m)[:4])


def _aws_secret(m: re.Match[bytes], original: bytes) -> str | None:
    value = _original(m, original, 2)
    if "EXAMPLE" in value.upper() or len(set(value)) < 10:
        return None
    return mask(_original(m, original, 1) + "=")


def _json_key(m: re.Match[bytes], original: bytes) -> str | None:
    return mask(f'"private_key": "-----BEGIN {_text(m, 1)}----- ')


def _marker(m: re.Match[bytes], original: bytes) -> str | None:
    return ""


def _slack_webhook(m: re.Match[bytes], original: bytes) -> str | None:
    return mask("https://hooks.slack.com/")


def _kube(m: re.Match[bytes], original: bytes) -> str | None:
    return mask(_text(m, 1) + ": ")


def _kube_creds(m: re.Match[bytes], original: bytes) -> str | None:
    return None if is_placeholder(_text(m, 2)) else _kube(m, original)


_COMMENT_STARTS = (b"#", b";", b"//", b"*", b"--", b"rem ", b"::", b"<!--")


def _in_comment(data: bytes, start: int) -> bool:
    """Is ``start`` on a line that is a comment?  Documentation in comments is full of examples."""
    begin = data.rfind(b"\n", max(0, start - 400), start) + 1
    return data[begin:start].lstrip().lower().startswith(_COMMENT_STARTS)


_KEY_CHARS = re.compile(rb"[A-Za-z0-9_.\-]{0,60}\Z")
_VALUE_ENDS = (b"", b"\n", b"\r", b" ", b"\t", b",", b";")


def _assignment(strict: bool) -> Evidence:
    """``<key with a secret word> = <literal>``; the key is read back from the text before the match.

    ``strict`` (program source): a bare identifier is a variable, not a secret.
    """

    def show(m: re.Match[bytes], original: bytes) -> str | None:
        start = m.start()
        head = _KEY_CHARS.search(original, max(0, start - 60), start)
        key_start = head.start() if head else start
        key = original[key_start : m.end(1)].decode("utf-8", "replace")
        if not secret_name(key) or _in_comment(original, key_start):
            return None
        quote = m.group(2)
        value = _original(m, original, 3)
        after = original[m.end(3) : m.end(3) + 1]
        if quote:
            if after != quote:
                return None  # the literal goes on past what a secret looks like (spaces, code)
        elif after not in _VALUE_ENDS or (strict and _CODE_NAME.match(value)):
            return None
        if is_placeholder(value) or not looks_secret(value):
            return None
        operator = original[m.end(1) : m.start(3)].decode("utf-8", "replace")
        return mask(key + operator)

    return show


def _auth_header(m: re.Match[bytes], original: bytes) -> str | None:
    if _in_comment(original, m.start()) or is_placeholder(_original(m, original, 2)):
        return None
    return mask("Authorization: " + _text(m, 1).capitalize() + " ")


_SCHEME = re.compile(rb"[A-Za-z][A-Za-z0-9+.\-]{0,20}\Z")


def _url_credentials(m: re.Match[bytes], original: bytes) -> str | None:
    user, password = _text(m, 1), _text(m, 2)
    if is_placeholder(password) or any(c in password + user for c in "${}%<>()[]*"):
        return None
    scheme = _SCHEME.search(original, max(0, m.start() - 21), m.start())
    if scheme is None:
        return None
    return mask(scheme.group(0).decode("latin-1") + "://") + "@" + _text(m, 3)


def _named_value(prefix: str) -> Evidence:
    def show(m: re.Match[bytes], original: bytes) -> str | None:
        return None if is_placeholder(_original(m, original, 2)) else mask(prefix.format(_text(m, 1)))

    return show


_B64 = rb"[A-Za-z0-9+/=]"
_VALUE = rb"([^\s\"'`,;(){}\[\]<>$%\\|]{8,200})"
# ``==`` compares and ``::`` is a path (C++, Rust): neither assigns.
_ASSIGN = rb"[a-z0-9_.\-]{0,40}?)[\"']?[ \t]*(?:=>|:=|=(?!=)|:(?!:))[ \t]*([\"']?)" + _VALUE
_JSON_KEY = "_json-private-key"
_SA_MARKER = "_service-account"

# Specific formats: searched in every text file.
_SPECIFIC = (
    _Pattern(
        PRIVATE_KEY,
        re.compile(
            rb"-----BEGIN ((?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?)-----[ \t]*\r?\n"
            rb"(?:[A-Za-z][A-Za-z0-9-]*:[^\n]{0,200}\r?\n){0,6}(?:\r?\n)?" + _B64 + rb"{40}"
        ),
        _pem,
    ),
    _Pattern(
        PRIVATE_KEY,
        re.compile(rb"PuTTY-User-Key-File-[23]: [A-Za-z0-9-]+\r?\nEncryption: "),
        lambda m, original: mask("PuTTY-User-Key-File "),
    ),
    _Pattern(_JSON_KEY, re.compile(rb'"private_key"\s*:\s*"-----BEGIN ([A-Z ]*PRIVATE KEY)-----'), _json_key),
    # Formats that share a first literal share one pass (an alternation of different first
    # characters would lose the literal search); the named group that matched picks the rule.
    _Pattern(
        "",
        re.compile(rb"A(?:(?P<aws>(?:KIA|SIA)[A-Z2-7]{16})|(?P<google>Iza[0-9A-Za-z_\-]{35}))"),
        _aws_id,
        groups=(("aws", AWS_ACCESS_KEY, _aws_id), ("google", GOOGLE_API_KEY, _keep(4))),
    ),
    _Pattern(
        "",
        re.compile(
            rb"g(?:(?P<github>h[pousr]_[A-Za-z0-9]{36}|ithub_pat_[A-Za-z0-9_]{82})"
            rb"|(?P<gitlab>l(?:pat|dt|rt|ptt|soat)-[A-Za-z0-9_\-]{20,64}))"
        ),
        _keep(4),
        groups=(("github", GITHUB_TOKEN, _github), ("gitlab", GITLAB_TOKEN, _keep(6))),
    ),
    _Pattern(
        "",
        re.compile(
            rb"sk-(?:(?P<anthropic>ant-[a-z]{3,6}[0-9]{2}-[A-Za-z0-9_\-]{80,})"
            rb"|(?P<openai>(?:(?:proj|svcacct|admin)-)?[A-Za-z0-9_\-]{20,}T3BlbkFJ[A-Za-z0-9_\-]{20,}))"
        ),
        _keep(3),
        groups=(("anthropic", ANTHROPIC_KEY, _keep(7, bounded=False)), ("openai", OPENAI_KEY, _keep(3, bounded=False))),
    ),
    _Pattern(
        "",
        re.compile(
            rb"h(?:(?P<webhook>ooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9+/_\-]{20,})|(?P<hf>f_[A-Za-z]{34}))"
        ),
        _keep(3),
        groups=(("webhook", SLACK_WEBHOOK, _slack_webhook), ("hf", HUGGINGFACE_TOKEN, _keep(3))),
    ),
    _Pattern(SLACK_TOKEN, re.compile(rb"xox[abposre]-[0-9]{6,}-[0-9A-Za-z\-]{8,}"), _keep(5)),
    _Pattern(STRIPE_KEY, re.compile(rb"_live_[0-9A-Za-z]{24,}"), _stripe),
    _Pattern(NPM_TOKEN, re.compile(rb"npm_[A-Za-z0-9]{36}"), _keep(4)),
    _Pattern(PYPI_TOKEN, re.compile(rb"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,}"), _keep(5, bounded=False)),
    _Pattern(SENDGRID_KEY, re.compile(rb"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}"), _keep(3)),
    _Pattern(DOCKERHUB_TOKEN, re.compile(rb"dckr_pat_[A-Za-z0-9_\-]{27,}"), _keep(9, bounded=False)),
    _Pattern(KUBECONFIG, re.compile(rb"(client-key-data):[ \t]*[A-Za-z0-9+/=]{20,}"), _kube),
)
# Library and documentation trees hold what packages ship, not what a team wrote: their private
# keys are test and self-test keys (Python's test suite, GnuTLS's FIPS self-tests compiled into
# libgnutls, moto's proxy CA), their AWS key ids are in documented presigned URLs, and Google API
# keys are meant to be embedded in clients.  There only token formats are searched, in text.
_VENDOR_RULES = frozenset({PRIVATE_KEY, _JSON_KEY, AWS_ACCESS_KEY})
_SPECIFIC_VENDOR = tuple(
    p for p in _SPECIFIC if p.rule not in _VENDOR_RULES and not any(g[1] in _VENDOR_RULES for g in p.groups)
)
# Looked for only in a file where a JSON-embedded key was found: is it a service-account file?
_SA_PATTERN = _Pattern(_SA_MARKER, re.compile(rb'"type"\s*:\s*"service_account"'), _marker)
# Private keys are looked for in binary files as well (a key embedded in a program), behind a
# long-needle ``in`` test that runs at memory speed; other formats are searched in text only.
_BINARY = (_SPECIFIC[0],)
_BINARY_NEEDLE = b"PRIVATE KEY"


def _generic(strict: bool) -> tuple[_Pattern, ...]:
    """Key-context patterns: run on the lower-cased text, only where examples are rare."""
    assign = _assignment(strict)
    return (
        *(
            _Pattern(GENERIC_SECRET, re.compile(b"(" + word + _ASSIGN), assign, lowered=True)
            for word in (rb"pass", rb"secret", rb"token", rb"api[_\-]?key", rb"credential")
        ),
        _Pattern(
            AWS_SECRET_KEY,
            re.compile(rb"(aws_?secret_?access_?key)[\"']?[ \t]*[:=][ \t]*[\"']?([a-z0-9/+]{40})(?![a-z0-9/+])"),
            _aws_secret,
            lowered=True,
            needle=b"secret",
        ),
        _Pattern(
            GENERIC_SECRET,
            re.compile(rb"authorization[\"']?[ \t]*[:=][ \t]*[\"']?(bearer|basic|token)[ \t]+([a-z0-9._~+/=\-]{16,})"),
            _auth_header,
            lowered=True,
            needle=b"authorization",
        ),
        _Pattern(
            URL_CREDENTIALS,
            re.compile(rb"://([^\s:/@\"'<>`]{1,100}):([^\s/@\"'<>`]{6,200})@([A-Za-z0-9][A-Za-z0-9.\-]{0,200})"),
            _url_credentials,
        ),
    )


_GENERIC_CONFIG = _generic(strict=False)
_GENERIC_CODE = _generic(strict=True)
# Program source: ``password = other_name`` assigns a variable.
_CODE_SUFFIXES = (
    ".py",
    ".js",
    ".mjs",
    ".cjs",
    ".ts",
    ".tsx",
    ".jsx",
    ".go",
    ".rb",
    ".java",
    ".php",
    ".c",
    ".h",
    ".cc",
    ".cpp",
    ".hpp",
    ".cs",
    ".kt",
    ".scala",
    ".rs",
    ".swift",
    ".lua",
    ".pl",
    ".pm",
    ".r",
    ".dart",
    ".groovy",
    ".ex",
    ".exs",
    ".erl",
    ".hs",
    ".ml",
    ".clj",
    ".vue",
    ".svelte",
)

# Patterns that only count in files of a given name.
_NPMRC = _Pattern(NPMRC_TOKEN, re.compile(rb"_(authToken|auth|password)[ \t]*=[ \t]*([^\s]+)"), _named_value("_{}="))
_PYPIRC = _Pattern(
    PYPIRC_PASSWORD, re.compile(rb"(password)[ \t]*[:=][ \t]*([^\s]+)"), _named_value("{} = "), lowered=True
)
_DOCKER_AUTH = _Pattern(
    DOCKER_AUTH,
    re.compile(rb"\"(auth|identitytoken|registrytoken)\"[ \t]*:[ \t]*\"([^\"]{4,})\""),
    _named_value('"{}": "'),
)
_KUBE_CREDS = _Pattern(KUBECONFIG, re.compile(rb"(token|password|client-key-data):[ \t]*([^\s]{8,})"), _kube_creds)

# Library and documentation trees (what packages ship): key-context patterns, private keys and
# binaries are not searched there (see _SPECIFIC_VENDOR).
_GENERIC_SKIP_PREFIXES = (
    "/usr/share/",
    "/usr/lib/",
    "/usr/lib32/",
    "/usr/lib64/",
    "/lib/",
    "/lib32/",
    "/lib64/",
    "/usr/include/",
    "/usr/local/lib/",
    "/usr/local/include/",
    "/usr/local/share/",
    "/usr/src/",
    "/var/lib/dpkg/",
    "/var/lib/apt/",
    "/var/cache/",
    "/proc/",
    "/sys/",
)
_GENERIC_SKIP_PARTS = frozenset(
    {"node_modules", "site-packages", "dist-packages", "vendor", ".git", "test", "tests", "testdata", "__pycache__"}
)
_GENERIC_SKIP_DIRS = re.compile("/(?:" + "|".join(re.escape(p) for p in sorted(_GENERIC_SKIP_PARTS)) + ")/")
_GENERIC_SKIP_SUFFIXES = (".md", ".rst", ".html", ".htm", ".adoc", ".txt.gz", ".map", ".min.js", ".svg", ".pyc")


# Package-manager databases, translations, licences and manuals: many megabytes of text (apt's
# package lists alone are 50 MB in a Debian image) that hold no secret; not read at all.
# (``/var/cache/debconf`` is read: preseeded passwords live there.)
NOT_SEARCHED_PREFIXES = (
    "/var/lib/apt/lists/",
    "/var/cache/apt/",
    "/var/lib/dpkg/",
    "/var/cache/apk/",
    "/var/cache/yum/",
    "/var/cache/dnf/",
    "/var/lib/rpm/",
    "/var/lib/yum/",
    "/usr/share/locale/",
    "/usr/share/i18n/",
    "/usr/share/zoneinfo/",
    "/usr/share/doc/",
    "/usr/share/man/",
    "/usr/share/info/",
    "/usr/share/common-licenses/",
)
# Distribution config with documented demo values (``secret = pass:insta`` in Debian's
# openssl.cnf): no key-context search there; its private keys (``/etc/ssl/private``) still count.
_KEY_CONTEXT_SKIP_PREFIXES = ("/etc/ssl/",)


def vendor_tree(path: str) -> bool:
    """Is this file in a library or documentation tree (or a documentation file)?"""
    if path.startswith(_GENERIC_SKIP_PREFIXES) or path.endswith(_GENERIC_SKIP_SUFFIXES):
        return True
    return _GENERIC_SKIP_DIRS.search(path) is not None


# ---------------------------------------------------------------------------
# File-name rules
# ---------------------------------------------------------------------------

_DOTENV_TEMPLATES = frozenset({"example", "sample", "template", "dist", "defaults", "default", "schema", "tpl"})
_HISTORY_FILES = frozenset(
    {
        ".bash_history",
        ".zsh_history",
        ".sh_history",
        ".ash_history",
        ".history",
        ".python_history",
        ".mysql_history",
        ".psql_history",
        ".node_repl_history",
        ".rediscli_history",
        ".sqlite_history",
        ".irb_history",
        ".lesshst",
    }
)


def _names(path: str) -> tuple[str, str]:
    """(base name, parent directory's name): string splits, not posixpath, on this per-file path."""
    head, _, base = path.rpartition("/")
    return base, head.rpartition("/")[2]


def name_rule(path: str) -> str | None:
    """The file-name rule a regular file falls under, whatever its content (None for most)."""
    base, parent = _names(path)
    if not base.startswith((".", "_", "c")):
        return None  # the common case, decided at once
    if base == ".env" or (base.startswith(".env.") and base[5:].lower() not in _DOTENV_TEMPLATES):
        return DOTENV_FILE
    if base in (".netrc", "_netrc"):
        return NETRC_FILE
    if base == ".git-credentials":
        return GIT_CREDENTIALS
    if base == ".pgpass":
        return PGPASS_FILE
    if base == "credentials" and parent == ".aws":
        return AWS_CREDENTIALS_FILE
    if base in _HISTORY_FILES and base != ".lesshst":
        return SHELL_HISTORY
    return None


def _content_name_patterns(path: str) -> tuple[_Pattern, ...]:
    """Patterns that make a file of this name a finding only when its content has them."""
    base, parent = _names(path)
    if base == ".npmrc":
        return (_NPMRC,)
    if base == ".pypirc":
        return (_PYPIRC,)
    if base == "config.json" and parent == ".docker":
        return (_DOCKER_AUTH,)
    if (
        (base == "config" and parent == ".kube")
        or base == "kubeconfig"
        or base.endswith(".kubeconfig")
        or (parent == "kubernetes" and base.endswith(".conf") and path.startswith("/etc/"))
    ):
        return (_KUBE_CREDS,)
    return ()


# ---------------------------------------------------------------------------
# Scanning
# ---------------------------------------------------------------------------


class _Found:
    """Matches of one file (or string) as they are found: first evidence, line and a count per rule."""

    __slots__ = ("first", "seen")

    def __init__(self) -> None:
        self.first: dict[str, tuple[str, int | None, int]] = {}
        self.seen: set[tuple[str, int]] = set()

    def add(self, rule: str, offset: int, evidence: str, line: int | None) -> None:
        known = self.first.get(rule)
        if known is not None and known[2] >= MAX_COUNT:
            return
        if (rule, offset) in self.seen:
            return  # found again in the overlap of the next chunk
        self.seen.add((rule, offset))
        if known is not None:
            self.first[rule] = (known[0], known[1], known[2] + 1)
        else:
            self.first[rule] = (evidence, line, 1)

    def matches(self) -> tuple[Match, ...]:
        if not self.first:
            return ()
        out = {rule: Match(rule, ev, ln, n) for rule, (ev, ln, n) in self.first.items()}
        json_key = out.pop(_JSON_KEY, None)
        marker = out.pop(_SA_MARKER, None)
        if json_key is not None:
            # A key inside JSON: a service-account file when the file says so, else a private key.
            rule = GCP_SERVICE_ACCOUNT if marker is not None else PRIVATE_KEY
            if rule not in out:
                out[rule] = Match(rule, json_key.evidence, json_key.line, json_key.count)
        return tuple(out[r] for r in sorted(out))


def _search_specific(
    patterns: tuple[_Pattern, ...], window: bytes, base: int, lines_before: int | None, found: _Found
) -> None:
    """The format patterns, then the service-account marker where a JSON-embedded key was found."""
    _search(patterns, window, None, base, lines_before, found)
    if _JSON_KEY in found.first and _SA_MARKER not in found.first:
        _search((_SA_PATTERN,), window, None, base, None, found)


def _matched_rule(pattern: _Pattern, m: re.Match[bytes]) -> tuple[str, Evidence]:
    """The rule and evidence function of a match: a pattern's first matched group may name its own."""
    for group, group_rule, group_show in pattern.groups:
        if m.start(group) >= 0:
            return group_rule, group_show
    return pattern.rule, pattern.evidence


def _search(
    patterns: tuple[_Pattern, ...],
    window: bytes,
    lowered: bytes | None,
    base: int,
    lines_before: int | None,
    found: _Found,
) -> None:
    """Run ``patterns`` over one window; ``base`` is the window's offset in the file."""
    for pattern in patterns:
        data = lowered if pattern.lowered and lowered is not None else window
        if pattern.needle and pattern.needle not in data:
            continue
        for m in pattern.regex.finditer(data):
            rule, show = _matched_rule(pattern, m)
            evidence = show(m, window)
            if evidence is None:
                continue
            line = None if lines_before is None else lines_before + window.count(b"\n", 0, m.start()) + 1
            found.add(rule, base + m.start(), evidence, line)


def _is_code(path: str) -> bool:
    return path.lower().endswith(_CODE_SUFFIXES)


def scan_text(text: str, *, generic: bool = True) -> tuple[Match, ...]:
    """Secrets in a string (an ENV value, a history command): every content pattern.

    Config strings are small, so all patterns run; key context still applies.
    """
    data = text.encode("utf-8", "surrogatepass")
    found = _Found()
    _search_specific(_SPECIFIC, data, 0, None, found)
    if generic:
        _search(_GENERIC_CONFIG, data, data.lower(), 0, None, found)
    return found.matches()


def _replaced_from(text: str, start: int, evidence: str) -> int:
    """Where the text that ``evidence`` stands for begins: at or before the match.

    Evidence keeps the known part of a secret (``postgres://``, ``DB_PASSWORD=``,
    ``sk_live_``), which may begin before the match itself (patterns start at a
    literal); replacing from there avoids printing that part twice.
    """
    shown = evidence.split(MASK, 1)[0].lower()
    for at in range(max(0, start - len(shown)), start):
        if text[at : at + len(shown)].lower() == shown:
            return at
    return start


# Where a private key's text ends: PEM's END line, or PuTTY's closing MAC line.
_KEY_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|Private-MAC: *[0-9A-Fa-f]*")


def token_spans(text: str) -> list[tuple[int, int, str, str]]:
    """``(start, end, rule, evidence)`` of every secret the content patterns find in ``text``.

    What :func:`scan_text` reports, with where: for redacting a config string in
    place (``imgscope.redact``).  Offsets are of ``text`` (non-ASCII is mapped
    back from UTF-8 byte offsets; lone surrogates from JSON escapes are kept).
    """
    # surrogatepass: a config is untrusted JSON, whose "\ud800" escapes decode to lone surrogates.
    data = text.encode("utf-8", "surrogatepass")
    lowered = data.lower()
    to_char = _char_offsets(text, data)
    out: list[tuple[int, int, str, str]] = []
    for pattern in (*_SPECIFIC, *_GENERIC_CONFIG):
        source = lowered if pattern.lowered else data
        if pattern.needle and pattern.needle not in source:
            continue  # as in _search: no literal, no match
        for m in pattern.regex.finditer(source):
            rule, show = _matched_rule(pattern, m)
            evidence = show(m, data)
            if not evidence or rule == _SA_MARKER:
                continue
            start, end = to_char(m.start()), to_char(m.end())
            if rule in (PRIVATE_KEY, _JSON_KEY):
                # The pattern recognises a key by its first line; the body runs on to the end
                # marker, and every byte of it is secret (the text's end if the marker is missing).
                close = _KEY_END.search(text, end)
                rest = text[end:].lstrip()
                if close is not None:
                    end = close.end()
                elif rest.startswith(MASK):  # masked already (redacting twice): the mask is the body
                    end = len(text) - len(rest) + len(MASK)
                else:
                    end = len(text)
                rule = PRIVATE_KEY
            out.append((_replaced_from(text, start, evidence), end, rule, evidence))
    return out


def _char_offsets(text: str, data: bytes) -> Callable[[int], int]:
    """Byte offset in ``data`` (``text`` as UTF-8) -> character offset in ``text``.

    A match may end inside a multi-byte character (byte classes, a length
    cap): the offset then moves past that character, so a replaced span
    never leaves part of one behind.
    """
    if len(data) == len(text):
        return lambda offset: offset
    starts = [i for i, byte in enumerate(data) if byte & 0xC0 != 0x80]
    return lambda offset: bisect.bisect_left(starts, offset)


class _FileSink:
    """Receives one file's content chunk by chunk; bounded memory (one chunk plus an overlap)."""

    __slots__ = (
        "binary",
        "binary_patterns",
        "extra",
        "found",
        "generic",
        "hasher",
        "idle",
        "limit",
        "lines",
        "offset",
        "path",
        "pending",
        "pending_end",
        "scanned",
        "size",
        "specific",
        "tail",
    )

    def __init__(
        self,
        path: str,
        size: int,
        limit: int,
        specific: tuple[_Pattern, ...],
        generic: tuple[_Pattern, ...],
        binary: tuple[_Pattern, ...],
        extra: tuple[_Pattern, ...],
    ) -> None:
        self.path = path
        self.specific = specific
        self.binary_patterns = binary
        self.size = size
        self.limit = limit
        self.generic = generic
        self.extra = extra
        self.hasher = xxhash.xxh3_64()
        self.found = _Found()
        self.tail = b""
        self.offset = 0  # offset in the file of the first byte of ``tail``
        self.scanned = 0
        self.lines = 0  # newlines before ``tail`` (once ``pending`` is counted)
        self.pending = b""  # the last window, whose first ``pending_end`` bytes precede ``tail``
        self.pending_end = 0
        self.binary: bool | None = None
        self.idle = False

    def __call__(self, view: memoryview) -> None:
        if self.idle:
            return
        if self.binary is None:
            self.binary = b"\x00" in bytes(view[:BINARY_SNIFF])
            if self.binary and not self.binary_patterns:
                # Nothing can be found in it: no copy, no hash (the digest only serves findings).
                self.idle = True
                return
        self.hasher.update(view)
        room = self.limit - self.scanned
        if room <= 0:
            return
        chunk = bytes(view[:room]) if len(view) > room else bytes(view)
        self.scanned += len(chunk)
        if self.pending_end:
            # Lines of the previous window are counted only now that a next one comes: most
            # files fit in one window and never pay for the count.
            self.lines += self.pending.count(b"\n", 0, self.pending_end)
            self.pending, self.pending_end = b"", 0
        window = self.tail + chunk if self.tail else chunk
        if self.binary:
            if self.binary_patterns and _BINARY_NEEDLE in window:
                _search(self.binary_patterns, window, None, self.offset, None, self.found)
        else:
            _search_specific(self.specific, window, self.offset, self.lines, self.found)
            if self.generic or self.extra:
                lowered = window.lower()
                _search(self.generic, window, lowered, self.offset, self.lines, self.found)
                _search(self.extra, window, lowered, self.offset, self.lines, self.found)
        keep = min(OVERLAP, len(window))
        if not self.binary:
            self.pending, self.pending_end = window, len(window) - keep
        self.offset += len(window) - keep
        self.tail = window[len(window) - keep :]

    def result(self) -> ContentResult | None:
        matches = self.found.matches()
        if not matches:
            return None
        return ContentResult(
            path=self.path,
            digest=self.hasher.hexdigest(),
            size=self.size,
            matches=matches,
            truncated=self.size > self.limit,
        )


class ContentScanner:
    """The layer-scan visitor that looks for secrets in every regular file of every layer.

    The scanner calls it once per regular file, in order, and feeds the sink it
    returns before asking for the next one, so a sink is complete when the next
    file starts (or when :meth:`results` is read).  Only files with a finding
    are kept, keyed by (path, content digest): the audit matches them to the
    layers that store that content at that path after stacking, which stays
    right however the source ordered or de-duplicated its layers.
    """

    def __init__(self, max_scan_bytes: int = DEFAULT_MAX_SCAN_BYTES) -> None:
        self.max_scan_bytes = max_scan_bytes
        self._current: _FileSink | None = None
        self._results: dict[tuple[str, str], ContentResult] = {}
        self._files = 0
        self._bytes = 0
        self._binary = 0
        self._truncated = 0

    def __call__(self, path: str, size: int) -> Callable[[memoryview], None] | None:
        self._finish()
        if size == 0 or self.max_scan_bytes <= 0 or path.startswith(NOT_SEARCHED_PREFIXES):
            return None
        generic: tuple[_Pattern, ...] = ()
        binary: tuple[_Pattern, ...] = ()
        if vendor_tree(path):
            specific = _SPECIFIC_VENDOR
        else:
            specific, binary = _SPECIFIC, _BINARY
            if name_rule(path) is None and not path.startswith(_KEY_CONTEXT_SKIP_PREFIXES):
                generic = _GENERIC_CODE if _is_code(path) else _GENERIC_CONFIG
        patterns = (specific, generic, binary, _content_name_patterns(path))
        sink = _FileSink(path, size, self.max_scan_bytes, *patterns)
        self._current = sink
        return sink

    def _finish(self) -> None:
        sink, self._current = self._current, None
        if sink is None:
            return
        self._files += 1
        self._bytes += sink.scanned
        self._binary += 1 if sink.binary else 0
        self._truncated += 1 if sink.size > sink.limit else 0
        result = sink.result()
        if result is not None:
            self._results[(result.path, result.digest)] = result

    def results(self) -> dict[tuple[str, str], ContentResult]:
        """Files with findings, by (path, xxh3 of the whole content)."""
        self._finish()
        return dict(self._results)

    def stats(self) -> ScanStats:
        """Counts of what was read."""
        self._finish()
        return ScanStats(self._files, self._bytes, self._binary, self._truncated)
