"""GitHub's part of `POST /webhooks/github` (the rest is bot/forge/webhook.py): the
X-Hub-Signature-256 HMAC, made while the body is read; X-GitHub-Event and
X-GitHub-Delivery; JSON or a form's `payload` field; the handlers by event; and GitHub's
errors: 422 when GitHub does not know what the payload names (a pull request, an
installation), 502 when GitHub could not be asked."""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import gidgethub
from aiohttp import web

from bot import configured
from bot.forge.delivery import Delivery, Refusal
from bot.forge.intent import DeliveryIntent
from bot.forge.webhook import EventHandler, WebhookState
from bot.github.auth import AppAuth, GitHubAppError
from bot.github.check_runs import on_check_run
from bot.github.comments import on_issue_comment
from bot.github.context import Context
from bot.github.events import on_installation, on_pull_request, on_push
from bot.github.models import installation_id
from bot.payload import loads
from bot.runtime import Runtime

SOURCE: Final = "github"
HANDLERS: dict[str, Callable[[Any, Context], Awaitable[DeliveryIntent]]] = {
    "push": on_push,
    "pull_request": on_pull_request,
    "issue_comment": on_issue_comment,
    "check_run": on_check_run,
    "installation": on_installation,
}
# What asking GitHub can raise: the delivery is not stored, and GitHub may send it again.
ASKING_GITHUB_FAILS = (GitHubAppError, gidgethub.GitHubException, aiohttp.ClientError, TimeoutError)
JSON_TYPES = ("application/json", "application/x-www-form-urlencoded")

GITHUB_WEBHOOK = web.AppKey("github_webhook", WebhookState)


def unknown_to_github(error: gidgethub.BadRequest) -> bool:
    """GitHub's 404 or 422: what we asked about (from the delivery) does not exist."""
    return int(error.status_code) in (404, 422)


def signature_matches(signature: str, mac: hmac.HMAC) -> bool:
    """`X-Hub-Signature-256` against the body's HMAC-SHA256, in constant time. Only
    "sha256=" counts (never SHA-1); any header text compares, as bytes, without raising."""
    expected = "sha256=" + mac.hexdigest()
    return hmac.compare_digest(signature.encode("utf-8", "surrogateescape"), expected.encode())


@dataclass
class SignatureCheck:
    """The HMAC-SHA256 GitHub signs a body with, fed chunk by chunk while it is read."""

    signature: str
    mac: hmac.HMAC

    def update(self, chunk: bytes, /) -> None:
        self.mac.update(chunk)

    def refusal(self) -> Refusal | None:
        if not signature_matches(self.signature, self.mac):
            return Refusal(401, "signature does not match")
        return None


@dataclass
class GitHubWebhook:
    """The GitHub forge of the webhook core."""

    runtime: Runtime
    session: aiohttp.ClientSession
    auth: AppAuth | None
    source: str = SOURCE
    media_types: tuple[str, ...] = JSON_TYPES
    id_header: str = "X-GitHub-Delivery"
    answers: Mapping[str, str] = field(default_factory=lambda: {"ping": "pong"})
    handlers: Mapping[str, EventHandler] = field(default_factory=lambda: HANDLERS)
    # A comment's handler asks GitHub (the commenter's permission) before it is stored.
    asks_forge: frozenset[str] = frozenset({"issue_comment"})

    def secret(self) -> str | None:
        return configured.secret(self.runtime.settings.github_webhook_secret)

    def refuse_headers(self, headers: Mapping[str, str]) -> Refusal | None:
        if not self.secret():  # unset or empty: an HMAC with an empty key anyone can make
            return Refusal(401, "webhook secret not configured (GITHUB_WEBHOOK_SECRET)")
        if "x-hub-signature-256" not in headers:
            return Refusal(401, "signature missing (X-Hub-Signature-256)")
        return None

    def body_check(self, headers: Mapping[str, str]) -> SignatureCheck:
        mac = hmac.new((self.secret() or "").encode(), digestmod=hashlib.sha256)
        return SignatureCheck(headers.get("x-hub-signature-256", ""), mac)

    def identify(self, headers: Mapping[str, str], body: bytes) -> tuple[str, str] | Refusal:
        event, delivery = headers.get("x-github-event"), headers.get("x-github-delivery")
        if not event or not delivery:
            return Refusal(400, "X-GitHub-Event and X-GitHub-Delivery are required")
        return event, delivery

    def decode(self, content_type: str, body: bytes) -> Any:
        """GitHub sends UTF-8; a form's `payload` field holds the JSON."""
        text = body.decode("utf-8")
        if content_type == "application/x-www-form-urlencoded":
            payload = urllib.parse.parse_qs(text).get("payload")
            if not payload:
                raise ValueError("no payload field")
            text = payload[0]
        return loads(text)

    def context(self, delivery: Delivery) -> Context:
        return Context.of(
            self.runtime,
            delivery.delivery_id,
            session=self.session,
            auth=self.auth,
            installation_id=installation_id(delivery.data),
        )

    def forge_error(self, error: Exception) -> Refusal | None:
        if isinstance(error, gidgethub.BadRequest) and unknown_to_github(error):
            # No such pull request, installation or user on GitHub: sending the delivery
            # again will not help, and nothing is wrong on our side either.
            return Refusal(
                422, f"GitHub does not know what the delivery names ({error.status_code})"
            )
        if isinstance(
            error, GitHubAppError | gidgethub.GitHubException | aiohttp.ClientError | TimeoutError
        ):
            status = getattr(error, "status_code", None)
            answered = f" ({int(status)})" if status is not None else ""
            return Refusal(502, f"could not ask GitHub: {type(error).__name__}{answered}")
        return None
