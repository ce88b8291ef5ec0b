"""The pure part of the webhook core: raw headers and bytes in, a `Delivery` or a typed
`Refusal` out, for GitHub's and GitLab's authentication (no server, no database)."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, cast
from urllib.parse import urlencode

from pydantic import SecretStr

from bot.forge.delivery import ID_MAX, Delivery, Refusal, read_delivery
from bot.github.webhook import GitHubWebhook
from bot.gitlab.webhook import GitLabWebhook
from bot.runtime import Runtime
from pipeline.settings import Settings

SECRET = "forge-secret"


class Settled:
    """A runtime as the readers use it: only its settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings


def github(settings: Settings, secret: str | None = SECRET) -> GitHubWebhook:
    changed = settings.model_copy(
        update={"github_webhook_secret": SecretStr(secret) if secret is not None else None}
    )
    return GitHubWebhook(cast(Runtime, Settled(changed)), cast(Any, None), None)


def gitlab(settings: Settings) -> GitLabWebhook:
    changed = settings.model_copy(update={"gitlab_webhook_secret": SecretStr(SECRET)})
    return GitLabWebhook(cast(Runtime, Settled(changed)), None)


def signed(body: bytes, **headers: str) -> dict[str, str]:
    mac = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": "d-1",
        "x-hub-signature-256": f"sha256={mac}",
        **headers,
    }


def test_a_signed_github_delivery_is_read_and_anything_else_refused(settings: Settings) -> None:
    forge = github(settings)
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    assert read_delivery(forge, signed(body), body) == Delivery(
        "push", "d-1", {"ref": "refs/heads/main"}
    )
    assert read_delivery(forge, signed(body), body + b" ") == Refusal(
        401, "signature does not match"
    )
    unsigned = {k: v for k, v in signed(body).items() if k != "x-hub-signature-256"}
    assert read_delivery(forge, unsigned, body) == Refusal(
        401, "signature missing (X-Hub-Signature-256)"
    )
    no_secret = read_delivery(github(settings, ""), signed(body), body)
    assert isinstance(no_secret, Refusal) and "GITHUB_WEBHOOK_SECRET" in no_secret.message
    wrong_type = read_delivery(forge, signed(body, **{"content-type": "text/plain"}), body)
    assert wrong_type == Refusal(415, "expected Content-Type application/json")
    nameless = {k: v for k, v in signed(body).items() if k != "x-github-delivery"}
    assert read_delivery(forge, nameless, body) == Refusal(
        400, "X-GitHub-Event and X-GitHub-Delivery are required"
    )
    long_id = read_delivery(forge, signed(body, **{"x-github-delivery": "x" * (ID_MAX + 1)}), body)
    assert isinstance(long_id, Refusal) and "X-GitHub-Delivery is not an id" in long_id.message
    for bad in (b"{", b"[1, 2]", b"\xff\xfe"):
        refused = read_delivery(forge, signed(bad), bad)
        assert isinstance(refused, Refusal) and refused.status == 400


def test_a_form_encoded_github_delivery_carries_its_json_in_payload(settings: Settings) -> None:
    forge = github(settings)
    body = urlencode({"payload": json.dumps({"zen": "Keep it logically awesome."})}).encode()
    headers = signed(body, **{"content-type": "application/x-www-form-urlencoded"})
    delivery = read_delivery(forge, headers, body)
    assert isinstance(delivery, Delivery) and delivery.data == {"zen": "Keep it logically awesome."}


def test_a_gitlab_delivery_needs_its_token_and_is_named_by_its_body_without_a_uuid(
    settings: Settings,
) -> None:
    forge = gitlab(settings)
    body = b'{"object_kind": "push"}'
    headers = {
        "content-type": "application/json",
        "x-gitlab-event": "Push Hook",
        "x-gitlab-token": SECRET,
    }
    delivery = read_delivery(forge, headers, body)
    assert isinstance(delivery, Delivery)
    assert delivery.delivery_id == "sha256:" + hashlib.sha256(body).hexdigest()
    with_uuid = read_delivery(forge, {**headers, "x-gitlab-event-uuid": "u-1"}, body)
    assert isinstance(with_uuid, Delivery) and with_uuid.delivery_id == "u-1"
    assert read_delivery(forge, {**headers, "x-gitlab-token": "nope"}, body) == Refusal(
        401, "token does not match"
    )
    eventless = {k: v for k, v in headers.items() if k != "x-gitlab-event"}
    assert read_delivery(forge, eventless, body) == Refusal(400, "X-Gitlab-Event is required")
    assert read_delivery(forge, headers, b'"a string"') == Refusal(
        400, "the body is not a JSON object"
    )
