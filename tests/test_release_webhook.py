"""Release target `webhook`: a signed POST to a real local receiver, retried with backoff,
and one clear line when it never succeeds; the release is recorded."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web
from pydantic import SecretStr

from pipeline.queue.queue import Queue
from pipeline.release import ReleaseFailed, ReleaseRequest, ReleaseStore, release
from pipeline.release.config import ReleaseConfig, release_reference
from pipeline.release.webhook import SIGNATURE_HEADER
from pipeline.settings import Settings
from pipeline.store import NewService, Store

SECRET = "release-hook-key-9f2"
DIGEST = "sha256:" + "ab" * 32


@dataclass
class Receiver:
    """A deploy hook: checks the signature as a receiver would, answers from a script."""

    url: str
    answers: list[int] = field(default_factory=list)  # statuses to give, then 200
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    signature_ok: list[bool] = field(default_factory=list)


@pytest.fixture
async def receiver(unused_tcp_port: int) -> AsyncIterator[Receiver]:
    hook = Receiver(url=f"http://127.0.0.1:{unused_tcp_port}/hooks/deploy?token=hidden-token")

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        hook.received.append((dict(request.headers), body))
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        hook.signature_ok.append(
            hmac.compare_digest(request.headers.get(SIGNATURE_HEADER, ""), expected)
        )
        status = hook.answers.pop(0) if hook.answers else 200
        return web.Response(status=status, text="ok" if status < 300 else "no")

    app = web.Application()
    app.router.add_post("/hooks/deploy", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    yield hook
    await runner.cleanup()


def hook_settings(settings: Settings, **changes: object) -> Settings:
    return settings.model_copy(
        update={
            "release_webhook_secret": SecretStr(SECRET),
            "release_webhook_attempts": 3,
            "release_webhook_backoff_seconds": 0.05,
            **changes,
        }
    )


async def request_for(store: Store, queue: Queue, url: str) -> ReleaseRequest:
    """A release of a real (queued) deployment of a service with target webhook."""
    service = await store.create_service(
        NewService(
            "hooked",
            "acme/hooked",
            "github",
            config={"release": {"target": "webhook", "webhook_url": url}},
        )
    )
    deployment = await queue.enqueue(service.id, commit_sha="1a2b3c4d5e6f" * 3)
    return ReleaseRequest(
        service_id=service.id,
        service=service.name,
        environment="production",
        deployment_id=deployment.id,
        commit="1a2b3c4d5e6f" * 3,
        image="registry.example.com/acme/hooked:1a2b3c4d5e6f",
        digest=DIGEST,
        config=service.options.release,
        deployment_url="https://deploy.example.com/api/v1/deployments/7",
    )


def lines_of(log: list[str]) -> str:
    return "\n".join(log)


async def test_a_signed_post_with_the_release_is_sent_and_recorded(
    receiver: Receiver, settings: Settings, store: Store, queue: Queue, pool: asyncpg.Pool
) -> None:
    request = await request_for(store, queue, receiver.url)
    log: list[str] = []
    released = await release(request, hook_settings(settings), ReleaseStore(pool), log.append)
    assert released is not None and released.url is None
    assert len(receiver.received) == 1 and receiver.signature_ok == [True]
    headers, body = receiver.received[0]
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Click-Deploy-Event"] == "release"
    assert json.loads(body) == {
        "event": "release",
        "service": "hooked",
        "environment": "production",
        "image": "registry.example.com/acme/hooked:1a2b3c4d5e6f",
        "digest": DIGEST,
        "image_by_digest": f"registry.example.com/acme/hooked@{DIGEST}",
        "commit": "1a2b3c4d5e6f" * 3,
        "deployment_id": request.deployment_id,
        "deployment_url": "https://deploy.example.com/api/v1/deployments/7",
    }
    live = await ReleaseStore(pool).live(request.service_id, "production")
    assert live is not None and live.target == "webhook" and live.digest == DIGEST
    # The hook's token (in its query) is nowhere a person reads.
    assert "hidden-token" not in lines_of(log) and "hidden-token" not in live.runs_as


async def test_failures_are_retried_with_the_same_delivery_until_2xx(
    receiver: Receiver, settings: Settings, store: Store, queue: Queue, pool: asyncpg.Pool
) -> None:
    receiver.answers = [500, 503]
    log: list[str] = []
    request = await request_for(store, queue, receiver.url)
    await release(request, hook_settings(settings), ReleaseStore(pool), log.append)
    assert len(receiver.received) == 3 and all(receiver.signature_ok)
    deliveries = {headers["X-Click-Deploy-Delivery"] for headers, _ in receiver.received}
    assert len(deliveries) == 1
    assert "answered 500" in lines_of(log) and "trying again" in lines_of(log)


async def test_a_hook_that_never_succeeds_fails_with_one_line(
    receiver: Receiver, settings: Settings, store: Store, queue: Queue, pool: asyncpg.Pool
) -> None:
    receiver.answers = [500, 500, 404]
    request = await request_for(store, queue, receiver.url)
    with pytest.raises(ReleaseFailed) as failed:
        await release(request, hook_settings(settings), ReleaseStore(pool), lambda _: None)
    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith("the release webhook http://127.0.0.1:")
    assert "/hooks/deploy answered 404" in message and "tried 3 times" in message
    assert "hidden-token" not in message
    assert await ReleaseStore(pool).live(request.service_id, "production") is None


async def test_a_hook_nobody_answers_fails_after_the_attempts(
    settings: Settings, store: Store, queue: Queue, pool: asyncpg.Pool, unused_tcp_port: int
) -> None:
    request = await request_for(store, queue, f"http://127.0.0.1:{unused_tcp_port}/hook")
    with pytest.raises(ReleaseFailed, match=r"could not be reached .*tried 3 times"):
        await release(request, hook_settings(settings), ReleaseStore(pool), lambda _: None)


async def test_without_the_signing_key_nothing_is_sent(
    receiver: Receiver, settings: Settings, store: Store, queue: Queue, pool: asyncpg.Pool
) -> None:
    request = await request_for(store, queue, receiver.url)
    with pytest.raises(ReleaseFailed, match="RELEASE_WEBHOOK_SECRET is not set"):
        await release(
            request,
            hook_settings(settings, release_webhook_secret=None),
            ReleaseStore(pool),
            lambda _: None,
        )
    assert receiver.received == []


def test_the_config_needs_the_url_for_a_webhook() -> None:
    with pytest.raises(ValueError, match=r"target webhook needs `release.webhook_url`"):
        ReleaseConfig.model_validate({"target": "webhook"})


def test_the_release_page_has_the_keys_table_made_from_the_model() -> None:
    page = (Path(__file__).parents[1] / "docs" / "release.md").read_text()
    assert release_reference() in page
