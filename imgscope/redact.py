"""One redaction for every text that comes from an image: history, ENV, LABEL, CMD, file views.

Why one function applied once: a secret written on a ``RUN`` line, in an
``ENV`` or in a label reaches users through every command (``inspect`` lists
the history, ``diff`` compares it, ``explore`` shows it, ``audit`` names the
step).  Redacting in each renderer means one forgotten format leaks it, so the
config is redacted where it is parsed (:func:`redact_config`, called by
``sources.common.parse_config``) and every command and format only ever sees
``SECRET_KEY=********``.  The original text stays on the config
(``ImageConfig.unredacted``) for the audit's detectors alone, which report
redacted evidence.

What is masked: values of the token formats :mod:`imgscope.analysis.secrets`
knows (kept prefix such as ``ghp_``), and values with key context: an
assignment to a secret-named key (``DB_PASSWORD=...``, ``"api_key": "..."``),
a secret-named option (``--password x``, ``--token=x``) and credentials in a
URL (``scheme://user:pass@host``).  References (``$VAR``, ``${VAR}``), template
placeholders (``<...>``, ``{{...}}``, ``xxx``) and documentation values
(``changeme``, ``example``) are left alone, as are values too short or too
uniform to be secret.  Masks never show the value's length.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass

from imgscope.analysis import secrets
from imgscope.model import ImageConfig

MASK = secrets.MASK
#: The rule id key-context hits are reported under (the audit's title: "Secret with key context").
KEY_CONTEXT = secrets.GENERIC_SECRET
#: Shortest value taken for a secret with key context: ``abc1`` is a password some people use.
MIN_VALUE = 4


@dataclass(frozen=True, slots=True)
class Hit:
    """One secret in a text: the span to replace, its replacement and the rule that found it.

    ``name`` is the key the value was assigned to (``DB_PASSWORD``, ``--password``),
    empty for a bare token.  ``evidence`` is what a finding shows (the known
    part and a mask); ``replacement`` what takes the span's place in the text
    (the same but for the quoting of an exec-form ``"--password", "..."``).
    """

    start: int
    end: int
    rule: str
    evidence: str
    name: str = ""
    replacement: str = ""

    @property
    def text(self) -> str:
        """What the span becomes in redacted text."""
        return self.replacement or self.evidence


# ``KEY=value``, ``KEY: value``, ``"key": "value"``: the key is read whole so that its name decides.
_ASSIGNMENT = re.compile(
    r"(?<![A-Za-z0-9_.\-])(?P<key>[A-Za-z_][A-Za-z0-9_.\-]{0,80})(?P<op>[\"']?[ \t]*(?:=|:(?!//))[ \t]*(?P<q>[\"']?))"
    r"(?P<value>[^\s\"'`;&|<>(){}\[\],\\]+)"
)
# ``--password value``, ``--password=value``, ``"--password", "value"`` (exec form; the legacy builder's
# history drops the comma): a secret-named option.
_OPTION = re.compile(
    r"(?<![A-Za-z0-9_])(?P<key>--?[A-Za-z][A-Za-z0-9_\-]{1,60})(?P<op>(?:=|[\"'],?[ \t]*|[ \t]+)(?P<q>[\"']?))"
    r"(?P<value>[^\s\"'`;&|<>(){}\[\],\\]+)"
)
# ``scheme://user:password@host``.
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]{0,20}://)(?P<cred>[^\s:/@\"'`<>]{0,100}:[^\s/@\"'`<>]{1,200})@")


def _uniform(value: str) -> bool:
    """Too few distinct characters to be a secret (``aaaa``, ``1212``, ``abab``)."""
    return len(set(value)) < 3


def secret_value(value: str) -> bool:
    """Is ``value`` (assigned to a secret-named key) worth masking and reporting?

    Not a reference, placeholder or documentation value, and not too short or
    too uniform: the filter that keeps ``PASSWORD=changeme`` docs and
    ``TOKEN=$TOKEN`` quiet.
    """
    v = value.strip().strip("\"'")
    if len(v) < MIN_VALUE or _uniform(v) or secrets.is_placeholder(v):
        return False
    return MASK not in v


def _overlapping(regex: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
    """Matches of ``regex``, the next one searched from after each key and operator, not after the value.

    A match whose key is not secret-named may have swallowed a secret as its
    value (``--verbose --password=x``, ``X=PASSWORD=x``): ``finditer`` would
    never look there again.
    """
    pos = 0
    while (m := regex.search(text, pos)) is not None:
        yield m
        pos = m.end("op")


def _key_context(text: str) -> list[Hit]:
    out: list[Hit] = []
    for regex in (_ASSIGNMENT, _OPTION):
        for m in _overlapping(regex, text):
            key, value, end = m.group("key"), m.group("value"), m.end()
            if m.group("q"):
                # A quoted value runs to its closing quote, spaces and all ("my secret pw").
                close = text.find(m.group("q"), m.start("value"))
                if close != -1:
                    value, end = text[m.start("value") : close], close
            if not secrets.secret_name(key.lstrip("-")) or not secret_value(value):
                continue
            replacement = key + m.group("op") + MASK
            evidence = replacement if regex is _ASSIGNMENT or "=" in m.group("op") else f"{key} {MASK}"
            out.append(Hit(m.start(), end, KEY_CONTEXT, evidence, key, replacement))
    for m in _URL.finditer(text):
        cred = m.group("cred")
        password = cred.partition(":")[2]
        if secrets.is_placeholder(password) or any(c in cred for c in "${}%<>()[]*"):
            continue
        out.append(Hit(m.start(), m.end(), secrets.URL_CREDENTIALS, m.group("scheme") + MASK + "@"))
    return out


def _merge(hits: list[Hit]) -> list[Hit]:
    """Non-overlapping hits in text order; an overlap grows the first hit so no byte of either leaks."""
    out: list[Hit] = []
    for hit in sorted(hits, key=lambda h: (h.start, -h.end)):
        if out and hit.start < out[-1].end:
            last = out[-1]
            out[-1] = dataclasses.replace(last, end=max(last.end, hit.end), name=last.name or hit.name)
            continue
        out.append(hit)
    return out


def find(text: str) -> list[Hit]:
    """Every secret in ``text``, in order, without overlaps (token formats first, then key context)."""
    if not text:
        return []
    hits = [Hit(start, end, rule, evidence) for start, end, rule, evidence in secrets.token_spans(text)]
    return _merge(hits + _key_context(text))


def redact(text: str) -> str:
    """``text`` with every secret :func:`find` sees replaced by its redacted evidence."""
    hits = find(text)
    if not hits:
        return text
    parts: list[str] = []
    at = 0
    for hit in hits:
        parts.append(text[at : hit.start])
        parts.append(hit.text)
        at = hit.end
    parts.append(text[at:])
    return "".join(parts)


def redact_pair(name: str, value: str) -> str:
    """A label or ENV value: masked whole when its name says secret, else redacted as text."""
    if secrets.secret_name(name) and secret_value(value):
        return MASK
    return redact(value)


def _env(item: str) -> str:
    name, sep, value = item.partition("=")
    return name + sep + redact_pair(name, value) if sep else redact(item)


def _words(words: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """CMD/ENTRYPOINT words: each redacted, and a secret option's value (``--password``, ``x``) too."""
    if words is None:
        return None
    out = [redact(word) for word in words]
    for i in range(len(out) - 1):
        if out[i].startswith("-") and secrets.secret_name(out[i].lstrip("-")) and secret_value(out[i + 1]):
            out[i + 1] = MASK
    return tuple(out)


def redact_config(config: ImageConfig) -> ImageConfig:
    """The config with every image-supplied text redacted; the original is kept as ``unredacted``.

    Returns ``config`` itself when nothing needed masking, so clean images
    carry no second copy.
    """
    history = tuple(
        dataclasses.replace(h, created_by=redact(h.created_by), comment=redact(h.comment) if h.comment else h.comment)
        for h in config.history
    )
    clean = dataclasses.replace(
        config,
        entrypoint=_words(config.entrypoint),
        cmd=_words(config.cmd),
        env=tuple(_env(item) for item in config.env),
        labels=tuple((key, redact_pair(key, value)) for key, value in config.labels),
        healthcheck=_words(config.healthcheck),
        history=history,
        user=redact(config.user),
        working_dir=redact(config.working_dir),
    )
    if clean == config:
        return config
    return dataclasses.replace(clean, unredacted=config)
