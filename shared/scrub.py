"""The one scrubber: every text that is stored (an event, an agent log message, a log record)
passes through `scrub`, which removes the values of this process's secret-looking environment
variables and the common shapes of tokens and passwords.

The environment is read at each call (a cached pattern per set of secret values), so a secret
set after start-up is covered too. What is removed becomes `[REDACTED]`, which contains no
character JSON escapes: scrubbing an encoded JSON document keeps it valid JSON.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from typing import Mapping
from urllib.parse import unquote, urlsplit

from shared.config import process_env

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 6  # shorter values ("1", "true", "dev") are settings, and would redact everything

_SECRET_NAME = re.compile(
    r"(^|_)(API_?KEY|KEY|TOKEN|SECRET|PASSWORD|PASSWD|PASS|PAT|CREDENTIALS?|PRIVATE_KEY|AUTH)$|_PWD$"
    r"|^(PGPASSWORD|GITHUB_PAT|ANTHROPIC_API_KEY|ANTHROPIC_AUTH_TOKEN|AWS_SECRET_ACCESS_KEY|AWS_SESSION_TOKEN)$",
    re.IGNORECASE,
)
_URL_NAME = re.compile(r"(^|_)(URL|URI|DSN)$", re.IGNORECASE)

# Common token shapes, found wherever they are, whoever's they are; each with the literals one of
# which any match contains (a substring test is ~100x cheaper than a regex scan of every event).
_SHAPES = [
    (re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}"), ("sk-ant-",)),                       # Anthropic
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{20,}"), ("sk-",)),                            # OpenAI and look-alikes
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), ("gh",)),                         # GitHub tokens
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"), ("github_pat_",)),              # GitHub fine-grained tokens
    (re.compile(r"\bglpat-[A-Za-z0-9_\-]{20,}"), ("glpat-",)),                      # GitLab
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), ("AKIA", "ASIA")),               # AWS access key ids
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"), ("xox",)),                    # Slack
    (re.compile(r"\beyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}"), ("eyJ",)),  # JWTs
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"),
     ("-----BEGIN ",)),
]
_ALL_HINTS = tuple(h for _, hints in _SHAPES for h in hints)


def _has_hint(text: str) -> bool:
    for hint in _ALL_HINTS:  # a loop, not any() over a generator: half the cost on a short event
        if hint in text:
            return True
    return False


# "Bearer <token>" (an Authorization header echoed by a tool): keep the word, drop the token.
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)([A-Za-z0-9\-._~+/]{12,}=*)")
# scheme://user:password@host: keep the user, drop the password.
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@\"'\\]*:)([^@\s/\"'\\]+)(@)")
# NAME=value / "name": "value" for secret-looking names (an env dump, a config echo).
_ASSIGNMENT = re.compile(
    r"(?i)\b([A-Z0-9_]*(?:API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|PGPASSWORD|_PAT|PRIVATE_KEY))"
    r"(\\?[\"']?\s*[:=]\s*\\?[\"']?)([^\s\"'\\,;&]{%d,})" % MIN_SECRET_LENGTH
)
# Every _ASSIGNMENT match has a name ending in one of these (its alternatives, folded), then what
# follows it there: found with substring searches, so only a text that has one pays for _ASSIGNMENT's
# backtracking over every word. Not a bare "key": every expertise document and JSON object with a
# `"key": "..."` field paid that scan (12 ms for a 100 kB event) and none of them could match.
_ASSIGNMENT_ENDS = ("apikey", "api_key", "private_key", "token", "secret", "password", "passwd", "_pat")
_ASSIGNMENT_AFTER = re.compile(r"\\?[\"']?\s*[:=]\s*\\?[\"']?[^\s\"'\\,;&]{%d,}" % MIN_SECRET_LENGTH)


_AFTER_FIRST = frozenset("\\\"':=")  # what _ASSIGNMENT_AFTER can start with, besides whitespace


def _may_assign(folded: str) -> bool:
    for end in _ASSIGNMENT_ENDS:
        at = folded.find(end)
        while at != -1:
            after = at + len(end)
            # the next character first: "input_tokens" and the like end most finds, without the regex
            nxt = folded[after:after + 1]
            if (nxt in _AFTER_FIRST or nxt.isspace()) and _ASSIGNMENT_AFTER.match(folded, after):
                return True
            at = folded.find(end, at + 1)
    return False


def is_secret_name(name: str) -> bool:
    """Whether an environment variable's name says it holds a secret."""
    return bool(_SECRET_NAME.search(name))


def secret_values(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """The secret values in an environment: secret-looking variables, and passwords inside URLs."""
    environ = process_env() if environ is None else environ
    found: set[str] = set()
    for name, value in environ.items():
        if not value:
            continue
        if is_secret_name(name) and len(value) >= MIN_SECRET_LENGTH:
            found.add(value)
        if _URL_NAME.search(name) or "://" in value:
            for server in value.split(","):
                password = _url_password(server.strip())
                if password and len(password) >= MIN_SECRET_LENGTH:
                    found.update({password, unquote(password)})
    return frozenset(found)


def _url_password(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if "@" not in parts.netloc or ":" not in parts.netloc.rsplit("@", 1)[0]:
        return ""
    return parts.netloc.rsplit("@", 1)[0].split(":", 1)[1]


@functools.lru_cache(maxsize=16)
def _values_pattern(values: frozenset[str]) -> tuple[re.Pattern[str] | None, tuple[str, ...]]:
    forms: set[str] = set()
    for v in values:
        forms.add(v)
        forms.add(json.dumps(v)[1:-1])  # as it appears inside an encoded JSON string
    if not forms:
        return None, ()
    # Longest first, so a secret containing another is removed whole.
    ordered = sorted(forms, key=len, reverse=True)
    return re.compile("|".join(re.escape(f) for f in ordered)), tuple(ordered)


_process_secrets_cache: tuple[dict, frozenset[str]] = ({}, frozenset())


def _process_secrets() -> frozenset[str]:
    """secret_values() of this process's environment, computed again only when the environment
    changed: its raw mapping is compared with a copy of it (a dict comparison, under a microsecond)
    instead of decoding and matching every variable on every call (the cost of scrubbing an event
    was mostly this)."""
    global _process_secrets_cache
    raw = getattr(process_env(), "_data", None)  # the undecoded mapping behind it
    if not isinstance(raw, dict):
        return secret_values()
    cached, values = _process_secrets_cache
    if raw != cached:
        values = secret_values()
        _process_secrets_cache = (dict(raw), values)
    return values


def scrub(text: str, environ: Mapping[str, str] | None = None) -> str:
    """`text` without any secret value of the environment nor any token-shaped string."""
    if not text:
        return text
    pattern, forms = _values_pattern(secret_values(environ) if environ is not None else _process_secrets())
    if pattern is not None and any(f in text for f in forms):
        text = pattern.sub(REDACTED, text)
    if _has_hint(text):  # one pass for the common text that has none
        for shape, hints in _SHAPES:
            if any(h in text for h in hints):
                text = shape.sub(REDACTED, text)
    folded = text.casefold()  # what (?i) matches, folded as it folds
    if "bearer" in folded:
        text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    if "://" in text and "@" in text:
        text = _USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}{m.group(3)}", text)
    if _may_assign(folded):
        text = _ASSIGNMENT.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return text


def scrub_bytes(data: bytes) -> bytes:
    text = data.decode("utf-8", "surrogateescape")
    clean = scrub(text)
    return data if clean == text else clean.encode("utf-8", "surrogateescape")


class ScrubFilter(logging.Filter):
    """Scrubs a log record's message, arguments and traceback before any handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let logging report it as it would
            return True
        record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def install_log_scrubber(logger: logging.Logger | None = None) -> None:
    """Put the scrubber on every handler of `logger` (the root logger by default), once."""
    logger = logger or logging.getLogger()
    for handler in logger.handlers:
        if not any(isinstance(f, ScrubFilter) for f in handler.filters):
            handler.addFilter(ScrubFilter())
