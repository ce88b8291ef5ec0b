"""Who is asking: a bearer token (`Authorization: Bearer cdt_…`), a page cookie holding
one, or (for a deployment's live log, when pages are public by link) a signed link."""

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
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="click-deploy"'}


def presented_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ApiError(
                401, "use the header `Authorization: Bearer <token>`", headers=_CHALLENGE
            )
        return value.strip()
    return request.cookies.get(COOKIE)


async def authenticate(request: web.Request) -> ApiToken | None:
    token = presented_token(request)
    if token is None:
        return None
    found = await request.app[TOKENS_KEY].verify(token)
    if found is None:
        raise ApiError(401, "the token is unknown or revoked", headers=_CHALLENGE)
    return found


async def require(request: web.Request, scope: Scope) -> ApiToken:
    """The caller's token if its scope reaches `scope`; else 401 or 403."""
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
