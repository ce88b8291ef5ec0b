"""Target `webhook`: a signed POST for platforms with deploy hooks (Coolify, Dokploy,
Portainer, Render).

The body is JSON (service, environment, image, digest, deployment URL); the header
`X-Click-Deploy-Signature: sha256=<hex>` is the HMAC-SHA256 of the exact body bytes with
RELEASE_WEBHOOK_SECRET, as GitHub signs its webhooks, so a receiver checks it the same way.
A 2xx answer is success; anything else (or no answer) is tried again after a doubling
wait, and after the last try the release fails with one line.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from urllib.parse import urlsplit

import aiohttp
from pydantic import SecretStr

from pipeline.release.base import Released, ReleaseFailed, ReleaseLog, ReleaseRequest
from pipeline.settings import Settings

SIGNATURE_HEADER = "X-Click-Deploy-Signature"
EVENT_HEADER = "X-Click-Deploy-Event"
DELIVERY_HEADER = "X-Click-Deploy-Delivery"


def webhook_body(request: ReleaseRequest) -> bytes:
    return json.dumps(
        {
            "event": "release",
            "service": request.service,
            "environment": request.environment,
            "image": request.image,
            "digest": request.digest,
            "image_by_digest": request.by_digest,
            "commit": request.commit,
            "deployment_id": request.deployment_id,
            "deployment_url": request.deployment_url,
        },
        separators=(",", ":"),
    ).encode()


def signature(secret: SecretStr, body: bytes) -> str:
    """The header value a receiver compares (in constant time) with its own."""
    mac = hmac.new(secret.get_secret_value().encode(), body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def shown_url(url: str) -> str:
    """A hook URL for logs and messages: without its query or user info, where deploy
    hooks carry their tokens."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


async def release_webhook(request: ReleaseRequest, settings: Settings, log: ReleaseLog) -> Released:
    url = request.config.webhook_url
    assert url is not None  # the config model requires it for this target
    secret = settings.release_webhook_secret
    if secret is None or not secret.get_secret_value():
        raise ReleaseFailed(
            "RELEASE_WEBHOOK_SECRET is not set: click-deploy signs every release webhook; "
            "set it on the bot and give the receiver the same key"
        )
    body = webhook_body(request)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "click-deploy",
        EVENT_HEADER: "release",
        DELIVERY_HEADER: str(uuid.uuid4()),  # the same on every try: receivers can dedupe
        SIGNATURE_HEADER: signature(secret, body),
    }
    where = shown_url(url)
    attempts = settings.release_webhook_attempts
    timeout = aiohttp.ClientTimeout(total=settings.release_webhook_timeout_seconds)
    outcome = ""
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for attempt in range(1, attempts + 1):
            try:
                async with session.post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as answer:
                    await answer.read()
                    if 200 <= answer.status < 300:
                        log(f"release webhook {where} answered {answer.status}")
                        return Released(url=None, runs_as=where)
                    outcome = f"answered {answer.status} {answer.reason or ''}".rstrip()
            except (aiohttp.ClientError, TimeoutError) as error:
                outcome = _unreachable(error)
            if attempt < attempts:
                wait = settings.release_webhook_backoff_seconds * 2 ** (attempt - 1)
                log(f"release webhook {where} {outcome}; trying again in {wait:g} s")
                await asyncio.sleep(wait)
    raise ReleaseFailed(
        f"the release webhook {where} {outcome} (tried {attempts} "
        f"time{'s' if attempts != 1 else ''})"
    )


def _unreachable(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "did not answer in time"
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"could not be reached ({error.os_error.strerror or 'connection failed'})"
    return f"could not be reached ({type(error).__name__})"
