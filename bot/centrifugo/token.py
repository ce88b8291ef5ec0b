"""Subscription tokens: what a browser shows Centrifugo to subscribe to one deployment's
channel. An HS256 JWT with `sub` (the user of the browser's Centrifugo connection),
`channel` and `exp`, signed with the HMAC secret Centrifugo checks tokens with."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from bot.configured import secret
from pipeline.settings import Settings


def channel_of(settings: Settings, deployment_id: int) -> str:
    return f"{settings.centrifugo_channel_prefix}{deployment_id}"


def tokens_enabled(settings: Settings) -> bool:
    return secret(settings.centrifugo_token_hmac_secret) is not None


@dataclass(frozen=True)
class SubscriptionToken:
    token: str
    channel: str
    expires_at: int  # unix seconds, the token's `exp`


def subscription_token(
    settings: Settings, deployment_id: int, user: str, now: float | None = None
) -> SubscriptionToken:
    """A token for `user` to subscribe to the deployment's channel (tokens_enabled first)."""
    key = secret(settings.centrifugo_token_hmac_secret)
    if key is None:
        raise ValueError("CENTRIFUGO_TOKEN_HMAC_SECRET is not set")
    issued = int(now if now is not None else time.time())
    expires = issued + settings.centrifugo_token_ttl_seconds
    channel = channel_of(settings, deployment_id)
    claims = {"sub": user, "channel": channel, "iat": issued, "exp": expires}
    return SubscriptionToken(jwt.encode(claims, key, algorithm="HS256"), channel, expires)
