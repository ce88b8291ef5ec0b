"""Registry authentication, pure: challenges, scopes, token responses, a token cache.

A registry answers 401 with `WWW-Authenticate: Basic realm=…` (htpasswd) or
`Bearer realm=…,service=…,scope=…` (token auth: Harbor, distribution's `auth.token`,
Docker Hub). For Bearer the client asks the realm for a token for that service and scope,
and caches it until shortly before `expires_in` runs out.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from cachetools import TLRUCache

from pipeline.registry.errors import action_of

DEFAULT_EXPIRES_IN = 60.0
"""Seconds a token lives when the token server does not say (the token spec's default)."""

EXPIRY_MARGIN = 10.0
"""Seconds before its expiry a cached token is dropped (clock skew, request time)."""

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_TOKEN_RE = re.compile(_TOKEN)
# Values should be tokens or quoted; registries send unquoted URLs too, so take anything
# up to a comma or a space.
_PARAM_RE = re.compile(rf"({_TOKEN})[ \t]*=[ \t]*({_QUOTED}|[^\s,\"]+)")
_TOKEN68_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*(?=[ \t]*(?:,|$))")
_SPACE_RE = re.compile(r"[ \t,]*")


@dataclass(frozen=True)
class Challenge:
    """One challenge of a `WWW-Authenticate` header; scheme lowercased, param keys too."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scope(self) -> str | None:
        return self.params.get("scope")

    @property
    def error(self) -> str | None:
        return self.params.get("error")


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_www_authenticate(headers: str | Iterable[str]) -> list[Challenge]:
    """Every challenge in one or more `WWW-Authenticate` values (RFC 9110 §11.6.1).

    Lenient: what cannot be parsed ends the header, and the challenges read so far stand.
    """
    values = [headers] if isinstance(headers, str) else list(headers)
    challenges: list[Challenge] = []
    for value in values:
        position = 0
        current: Challenge | None = None
        while True:
            start = position
            position = _SPACE_RE.match(value, position).end()  # type: ignore[union-attr]
            if position >= len(value):
                break
            if current is not None:
                # A token68 follows its scheme after spaces only (a comma ends a challenge).
                right_after_scheme = not current.params and "," not in value[start:position]
                token68 = _TOKEN68_RE.match(value, position) if right_after_scheme else None
                if token68:
                    current.params["token68"] = token68.group(0)
                    position = token68.end()
                    continue
                param = _PARAM_RE.match(value, position)
                if param:
                    current.params[param.group(1).lower()] = _unquote(param.group(2))
                    position = param.end()
                    continue
            scheme = _TOKEN_RE.match(value, position)
            if not scheme:
                break
            current = Challenge(scheme.group(0).lower())
            challenges.append(current)
            position = scheme.end()
    return challenges


def pick_challenge(challenges: Sequence[Challenge]) -> Challenge | None:
    """The challenge to answer: Bearer (with a realm) before Basic; None if neither."""
    for challenge in challenges:
        if challenge.scheme == "bearer" and challenge.realm:
            return challenge
    for challenge in challenges:
        if challenge.scheme == "basic":
            return challenge
    return None


def basic_authorization(username: str, password: str) -> str:
    """The `Authorization` value for Basic credentials (UTF-8, as Docker's Go client)."""
    pair = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def repository_scope(repository: str, actions: str) -> str:
    """`repository:click-deploy/web:pull,push`."""
    return f"repository:{repository}:{actions}"


def scopes_for(method: str, repository: str, mount_from: str | None = None) -> tuple[str, ...]:
    """The scopes a request needs, as distribution asks for them: GET/HEAD pull;
    POST/PUT/PATCH pull and push; DELETE delete; a cross-repository mount also pull on the
    source repository."""
    action = action_of(method)
    actions = "pull,push" if action == "push" else action
    scopes = [repository_scope(repository, actions)]
    if mount_from and mount_from != repository:
        scopes.append(repository_scope(mount_from, "pull"))
    return tuple(scopes)


def split_scope(scope: str | None) -> tuple[str, ...]:
    """A challenge's `scope` may list several scopes separated by spaces."""
    return tuple(part for part in (scope or "").split(" ") if part)


class TokenResponseError(ValueError):
    """A token server answer with no usable token."""


@dataclass(frozen=True)
class Token:
    """A bearer token; its value is left out of repr so it never lands in a log."""

    value: str = field(repr=False)
    expires_in: float = DEFAULT_EXPIRES_IN

    @property
    def lifetime(self) -> float:
        """How long to keep it: expires_in less a margin, but at least half of it."""
        return max(self.expires_in - EXPIRY_MARGIN, self.expires_in / 2)


def parse_token_response(body: bytes) -> Token:
    """Decode a token server's JSON answer.

    `token` wins; `access_token` (OAuth2 style) is used when `token` is empty or missing.
    Harbor sends both, with an empty `access_token`. `expires_in` defaults to 60 s.
    """
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise TokenResponseError("the token server did not answer JSON") from None
    if not isinstance(document, dict):
        raise TokenResponseError("the token server did not answer a JSON object")
    value = document.get("token")
    if not isinstance(value, str) or not value:
        value = document.get("access_token")
    if not isinstance(value, str) or not value:
        raise TokenResponseError("the token server answered without a token")
    expires_in = document.get("expires_in")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
        expires_in = DEFAULT_EXPIRES_IN
    return Token(value, float(expires_in))


TokenKey = tuple[str, str, str, str]
"""(realm, service, scopes joined by spaces, username or "")."""


def normalize_scope(scope: str) -> str:
    """`repository:a/b:push,pull` → `repository:a/b:pull,push` (one cache entry for both)."""
    head, colon, actions = scope.rpartition(":")
    if not colon or not head.count(":"):
        return scope
    return f"{head}:{','.join(sorted(set(actions.split(','))))}"


def token_key(
    realm: str, service: str | None, scopes: Iterable[str], username: str | None
) -> TokenKey:
    normalized = sorted({normalize_scope(scope) for scope in scopes})
    return (realm, service or "", " ".join(normalized), username or "")


class TokenCache:
    """Tokens by (realm, service, scope, user), each dropped after its own lifetime.

    Can be shared by several clients of one event loop; the username is part of the key.
    """

    def __init__(self, maxsize: int = 256, timer: Callable[[], float] = time.monotonic) -> None:
        self._cache: TLRUCache[TokenKey, Token] = TLRUCache(
            maxsize=maxsize, ttu=self._expiry, timer=timer
        )

    @staticmethod
    def _expiry(_key: TokenKey, token: Token, now: float) -> float:
        return now + token.lifetime

    def get(self, key: TokenKey) -> Token | None:
        return self._cache.get(key)

    def put(self, key: TokenKey, token: Token) -> None:
        self._cache[key] = token

    def discard(self, key: TokenKey) -> None:
        self._cache.pop(key, None)

    def __len__(self) -> int:
        self._cache.expire()
        return len(self._cache)
