"""A Centrifugo subscription token for one deployment's channel (bot/centrifugo/token.py),
so a browser of a team's own front end subscribes to exactly that channel."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from pydantic import BaseModel, Field

from bot.api.errors import ApiError
from bot.api.operations import operation, path_id
from bot.api.queries import Query
from bot.api.routes import query, reply, runtime_of
from bot.api.tokens import Scope
from bot.centrifugo.token import subscription_token, tokens_enabled


class SubscriptionQuery(Query):
    user: str = Field(
        default="",
        max_length=255,
        description="the user of the browser's Centrifugo connection (its connection "
        "token's `sub`); empty for an anonymous connection",
    )


class SubscriptionOut(BaseModel):
    token: str = Field(description="HS256 JWT with sub, channel and exp, for Centrifugo")
    channel: str = Field(description="the deployment's channel: subscribe to this one")
    expires_at: datetime = Field(description="when the token stops being accepted")


@operation(
    "GET", "/deployments/{id}/logs/subscription",
    "A Centrifugo subscription token for the deployment's live log channel", Scope.READ,
    query=SubscriptionQuery, responses={200: SubscriptionOut}, errors=(404, 422),
)  # fmt: skip
async def deployment_logs_subscription(request: web.Request) -> web.Response:
    deployment_id = path_id(request)
    wanted = query(request, SubscriptionQuery)
    runtime = runtime_of(request)
    if not tokens_enabled(runtime.settings):
        raise ApiError(
            404,
            "live logs through Centrifugo are not set up here "
            "(CENTRIFUGO_TOKEN_HMAC_SECRET is not set)",
            "centrifugo_not_configured",
        )
    await runtime.store.get_deployment(deployment_id)
    issued = subscription_token(runtime.settings, deployment_id, wanted.user)
    expires = datetime.fromtimestamp(issued.expires_at, UTC)
    out = SubscriptionOut(token=issued.token, channel=issued.channel, expires_at=expires)
    return reply(out, headers={"Cache-Control": "no-store"})
