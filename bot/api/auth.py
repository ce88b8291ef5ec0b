"""Who is asking: a bearer token (`Authorization: Bearer cdt_…`), a page cookie holding
one, or (for a deployment's live log, when pages are public by link) a signed link.

The cookie is what a browser sends by itself, so it only reads: it is accepted on GET and
HEAD, for what a read token may do, and never on a request that changes something."""

from __future__ import annotations

from aiohttp import web

from bot.api.errors import ApiError
from bot.api.tokens import ApiToken, Scope, TokenStore
from bot.web import signing
from pipeline.settings import Settings

TOKENS_KEY = web.AppKey("api_tokens", TokenStore)
SETTINGS_KEY = web.AppKey("api_settings", Settings)
COOKIE = "click_deploy_token"
TOKEN = "api_token"  # request key: the caller's ApiToken, once checked
READ_METHODS = frozenset({"GET", "HEAD"})
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="click-deploy"'}


def header_token(request: web.Request) -> str | None:
    """The token of `Authorization: Bearer …` (401 for another scheme or none)."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise ApiError(401, "use the header `Authorization: Bearer <token>`", headers=_CHALLENGE)
    return value.strip()


def cookie_token(request: web.Request) -> str | None:
    """The page cookie's token, on reading requests only."""
    if request.method not in READ_METHODS:
        return None
    return request.cookies.get(COOKIE) or None


def presented_token(request: web.Request) -> str | None:
    token = header_token(request)
    return token if token is not None else cookie_token(request)


async def authenticate(request: web.Request) -> ApiToken | None:
    token = presented_token(request)
    if token is None:
        return None
    found = await request.app[TOKENS_KEY].verify(token)
    if found is None:
        raise ApiError(401, "the token is unknown or revoked", headers=_CHALLENGE)
    return found


async def require(request: web.Request, scope: Scope) -> ApiToken:
    """The caller's token if its scope reaches `scope`; else 401 or 403. A page cookie
    counts for reads only (GET and HEAD, read scope)."""
    if scope > Scope.READ and header_token(request) is None:
        needs = "an API token in `Authorization: Bearer <token>` is needed"
        if request.cookies.get(COOKIE):
            needs += " (the page cookie only reads)"
        raise ApiError(401, needs, headers=_CHALLENGE)
    found = await authenticate(request)
    if found is None:
        raise ApiError(
            401, "an API token is needed (click-deploy token create)", headers=_CHALLENGE
        )
    if found.scope < scope:
        raise ApiError(403, f"token {found.name!r} has scope {found.scope}; this needs {scope}")
    return found


def signed(request: web.Request, kind: str, object_id: int) -> bool:
    settings = request.app[SETTINGS_KEY]
    return settings.pages_access == "link" and signing.verify(
        settings, kind, object_id, request.query.get(signing.SIGNATURE_PARAM)
    )


async def may_read(request: web.Request, kind: str, object_id: int) -> None:
    """A read token, or a valid signed link to this very object."""
    if signed(request, kind, object_id):
        return
    await require(request, Scope.READ)
