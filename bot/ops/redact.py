"""A structlog processor that keeps secrets out of every log line.

It replaces, wherever they appear in an event dict (values, nested dicts and lists, the
formatted exception, the reprs of other objects):

- the configured secret values: every SecretStr setting (and a database URL's password,
  and each long line of a multi-line secret such as a PEM key);
- credentials in URLs: `https://user:token@host` → `https://***@host`;
- Authorization headers (`Authorization: Bearer …`, `{'Authorization': '…'}`), Bearer and
  Basic credentials, and tokens of well-known shapes (GitHub, GitLab, Slack, click-deploy);
- the values of keys that only ever hold secrets (authorization, cookie, password, …).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, MutableMapping
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

from pipeline.settings import Settings

MASK = "***"
# Shorter configured values are not masked: they would mangle ordinary words.
MIN_SECRET_LENGTH = 6

SENSITIVE_KEYS = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "set_cookie",
        "password",
        "passwd",
        "secret",
        "private_key",
        "api_key",
        "access_token",
        "refresh_token",
        "client_secret",
        "x-hub-signature-256",
        "x-gitlab-token",
    }
)

_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/@'\"<>]+@")
_AUTH_HEADER = re.compile(
    r"(?i)(['\"]?(?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?)[^'\"\r\n,}]+"
)
_SCHEME_CREDENTIALS = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}")
_KNOWN_TOKENS = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_\-]{20,}"
    r"|xox[abposre]-[A-Za-z0-9\-]{10,}|cdt_[A-Za-z0-9_\-]{16,})"
)


def configured_secrets(settings: Settings) -> list[str]:
    """Every secret value the settings hold, longest first (a secret containing another is
    masked whole)."""
    found: set[str] = set()
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if not isinstance(value, SecretStr):
            continue
        text = value.get_secret_value()
        found.add(text)
        if "://" in text:  # a URL: its password alone may show up too
            password = urlsplit(text).password
            if password:
                found.update({password, unquote(password)})
        if "\n" in text:  # a PEM key: any of its lines
            found.update(line.strip() for line in text.splitlines() if len(line.strip()) >= 16)
    return sorted((s for s in found if len(s) >= MIN_SECRET_LENGTH), key=len, reverse=True)


class RedactSecrets:
    """The processor; put it after format_exc_info and before the renderer."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted(
            {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> RedactSecrets:
        return cls(configured_secrets(settings))

    def text(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        if "://" in text:
            text = _URL_USERINFO.sub(rf"\1{MASK}@", text)
        text = _AUTH_HEADER.sub(rf"\1{MASK}", text)
        text = _SCHEME_CREDENTIALS.sub(rf"\1 {MASK}", text)
        return _KNOWN_TOKENS.sub(MASK, text)

    def value(self, key: str, value: Any) -> Any:
        if value is None or isinstance(value, bool | int | float):
            return value
        if key.lower() in SENSITIVE_KEYS:
            return MASK
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value("", item) for item in value]
        # Another object (an exception, a URL, a model): rendered by its repr later.
        shown = repr(value)
        redacted = self.text(shown)
        return value if redacted == shown else redacted

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in event_dict.items():
            event_dict[key] = self.value(key, value)
        return event_dict
