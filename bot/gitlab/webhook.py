"""GitLab's part of `POST /webhooks/gitlab` (the rest is bot/forge/webhook.py): the
X-Gitlab-Token compared in constant time (all in the headers), X-Gitlab-Event and
X-Gitlab-Event-UUID, the handlers by event, and 502 when GitLab could not be asked."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot import configured
from bot.forge.delivery import Delivery, Refusal, decode_json
from bot.forge.intent import DeliveryIntent
from bot.forge.webhook import EventHandler, WebhookState
from bot.gitlab.api import GitLabApi, GitLabError
from bot.gitlab.context import SOURCE, GitLabContext
from bot.gitlab.events import on_merge_request, on_push
from bot.gitlab.notes import on_note
from bot.runtime import Runtime

HANDLERS: dict[str, Callable[[Any, GitLabContext], Awaitable[DeliveryIntent]]] = {
    "Push Hook": on_push,
    "Merge Request Hook": on_merge_request,
    "Note Hook": on_note,
}

GITLAB_WEBHOOK = web.AppKey("gitlab_webhook", WebhookState)


class TokenChecked:
    """The token is all in the headers: nothing is left to check in the body."""

    def update(self, chunk: bytes, /) -> None:
        pass

    def refusal(self) -> Refusal | None:
        return None


@dataclass
class GitLabWebhook:
    """The GitLab forge of the webhook core."""

    runtime: Runtime
    api: GitLabApi | None
    source: str = SOURCE
    media_types: tuple[str, ...] = ("application/json",)
    id_header: str = "X-Gitlab-Event-UUID"
    answers: Mapping[str, str] = field(default_factory=dict)
    handlers: Mapping[str, EventHandler] = field(default_factory=lambda: HANDLERS)
    # A note's handler asks GitLab (the author's role) before it is stored.
    asks_forge: frozenset[str] = frozenset({"Note Hook"})

    def refuse_headers(self, headers: Mapping[str, str]) -> Refusal | None:
        secret = configured.secret(self.runtime.settings.gitlab_webhook_secret)
        if not secret:  # unset or empty: an empty token header would match
            return Refusal(401, "webhook secret not configured (GITLAB_WEBHOOK_SECRET)")
        token = headers.get("x-gitlab-token")
        if token is None:
            return Refusal(401, "token missing (X-Gitlab-Token)")
        # Any header text compares (as bytes): a header that is not UTF-8 is just wrong.
        if not hmac.compare_digest(token.encode("utf-8", "surrogateescape"), secret.encode()):
            return Refusal(401, "token does not match")
        return None

    def body_check(self, headers: Mapping[str, str]) -> TokenChecked:
        return TokenChecked()

    def identify(self, headers: Mapping[str, str], body: bytes) -> tuple[str, str] | Refusal:
        event = headers.get("x-gitlab-event")
        if not event:
            return Refusal(400, "X-Gitlab-Event is required")
        # Older GitLab sends no X-Gitlab-Event-UUID: the body itself identifies a redelivery.
        delivery = (
            headers.get("x-gitlab-event-uuid") or "sha256:" + hashlib.sha256(body).hexdigest()
        )
        return event, delivery

    def decode(self, content_type: str, body: bytes) -> Any:
        return decode_json(body)

    def context(self, delivery: Delivery) -> GitLabContext:
        return GitLabContext.of(self.runtime, delivery.delivery_id, gitlab=self.api)

    def forge_error(self, error: Exception) -> Refusal | None:
        if isinstance(error, GitLabError):
            return Refusal(502, "could not ask GitLab")
        return None
