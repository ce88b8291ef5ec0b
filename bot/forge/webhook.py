"""The webhook core every forge plugs into: read within limits → authenticate → parse
into a `Delivery` or a `Refusal` (bot/forge/delivery.py) → the forge's handler says what
the delivery asks for (a `DeliveryIntent`) → the delivery and its deployments are stored
in one statement → the answer → the after-actions, in the background.

A redelivery (the same delivery id from the same forge) changes nothing: it is caught
when the delivery is stored, or looked up first for the events whose handler asks the
forge before anything is stored (so a redelivery of those costs no API calls).

Statuses: 401 not authenticated, 413 body over WEBHOOK_MAX_BYTES, 415 not JSON (these
three before the body is read when the headers tell), 400 bad JSON or a payload without
what its event needs, what the forge maps its own errors to (422, 502), 202 an event no
handler takes, 200 otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from aiohttp import web

from bot.forge.delivery import Delivery, ForgeAuth, Refusal, read_delivery
from bot.forge.intent import After, DeliveryIntent
from bot.payload import PayloadError
from bot.request_body import BodyRefused, answer_expect, check_before_reading, read_capped, unread
from bot.runtime import Runtime
from pipeline.db.queries import q

log = structlog.get_logger(__name__)

EventHandler = Callable[[Any, Any], Awaitable[DeliveryIntent]]
DRAIN_SECONDS = 10  # after-actions still running at shutdown get this long


class Forge(ForgeAuth, Protocol):
    """A forge's webhook: its authentication (ForgeAuth), its handlers, its errors."""

    # Events answered at once, not stored (GitHub's ping).
    answers: Mapping[str, str]
    # Events whose handler may ask the forge before the delivery is stored.
    asks_forge: frozenset[str]

    @property
    def handlers(self) -> Mapping[str, EventHandler]:
        """The handler of each event handled: payload and the forge's context in."""

    def context(self, delivery: Delivery) -> Any:
        """What the forge's handlers use (passed in, never globals)."""

    def forge_error(self, error: Exception) -> Refusal | None:
        """The refusal for an error of asking the forge (the delivery is not stored, so
        it can be sent again); None for any other error."""


@dataclass
class WebhookState:
    runtime: Runtime
    forge: Forge
    background: set[asyncio.Task[None]] = field(default_factory=set)

    async def drain(self) -> None:
        """Wait (up to DRAIN_SECONDS) for the after-actions still running: at shutdown."""
        if self.background:
            await asyncio.wait(self.background, timeout=DRAIN_SECONDS)


def _answer(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"message": message, **extra}, status=status)


def _refused(refusal: Refusal) -> web.Response:
    return _answer(refusal.status, refusal.message)


def _headers(request: web.Request) -> dict[str, str]:
    return {key.lower(): value for key, value in request.headers.items()}


def refuse_early(state: WebhookState, request: web.Request) -> Refusal | None:
    """What the headers alone refuse: 401, 415, 413 by Content-Length."""
    forge = state.forge
    refused = forge.refuse_headers(_headers(request))
    if refused is not None:
        return refused
    limit = state.runtime.settings.webhook_max_bytes
    try:
        check_before_reading(request, limit, forge.media_types, forge.media_types[0])
    except BodyRefused as error:
        return Refusal(error.status, error.message)
    return None


async def receive(state: WebhookState, request: web.Request) -> web.Response:
    forge, runtime = state.forge, state.runtime
    headers = _headers(request)
    refused = refuse_early(state, request)
    if refused is not None:
        return unread(_refused(refused))
    check = forge.body_check(headers)
    try:
        body = await read_capped(request, runtime.settings.webhook_max_bytes, check.update)
    except BodyRefused as error:
        return unread(_answer(error.status, error.message))
    delivery = read_delivery(forge, headers, body, check)
    if isinstance(delivery, Refusal):
        return _refused(delivery)
    if delivery.event in forge.answers:
        return _answer(200, forge.answers[delivery.event])
    handler = forge.handlers.get(delivery.event)
    if handler is None:
        return _answer(202, f"event {delivery.event[:100]!r} is not handled")
    if delivery.event in forge.asks_forge:
        seen = await runtime.pool.fetchrow(
            q("forge_delivery_seen"), forge.source, delivery.delivery_id
        )
        if seen is not None:
            return _answer(200, "duplicate delivery", outcome=seen["outcome"])
    try:
        intent = await handler(delivery.data, forge.context(delivery))
    except PayloadError as error:
        return _answer(400, str(error))
    except Exception as error:
        refusal = forge.forge_error(error)
        if refusal is None:
            raise
        status = getattr(error, "status_code", None)
        log.warning(
            f"{forge.source} delivery not handled",
            forge_event=delivery.event,
            error=str(error)[:300],
            status=int(status) if status is not None else None,
        )
        return _refused(refusal)
    created = await store_delivery(runtime, forge.source, delivery, intent)
    if created is None:
        return _answer(200, "duplicate delivery")
    for after in intent.after:
        task = asyncio.create_task(_run_after(forge.source, after, delivery.delivery_id))
        state.background.add(task)
        task.add_done_callback(state.background.discard)
    log.info(
        f"{forge.source} delivery",
        forge_event=delivery.event,
        delivery=delivery.delivery_id,
        outcome=intent.outcome,
        deployments=created,
    )
    return _answer(intent.status, intent.outcome, deployments=created)


async def store_delivery(
    runtime: Runtime, source: str, delivery: Delivery, intent: DeliveryIntent
) -> list[int] | None:
    """The delivery row and its deployments in one statement (one round trip, its own
    transaction); their ids, or None when the delivery was stored already (a concurrent
    redelivery)."""
    items = intent.enqueue
    ids: list[int] | None = await runtime.pool.fetchval(
        q("forge_delivery_store"),
        source,
        delivery.delivery_id,
        delivery.event,
        intent.outcome,
        [item.service.id for item in items],
        [item.environment for item in items],
        [item.ref for item in items],
        [item.commit_sha for item in items],
        [item.trigger.to_json() for item in items],
        runtime.settings.retry_max_attempts,
    )
    return ids


async def _run_after(source: str, after: After, delivery_id: str) -> None:
    try:
        await after()
    except Exception as error:  # a reply that fails must not matter to anyone else
        log.warning(
            f"{source} follow-up failed",
            delivery=delivery_id,
            error=f"{type(error).__name__}: {error}",
        )


def mount(app: web.Application, path: str, key: web.AppKey[WebhookState]) -> None:
    """The route of a forge's webhook, its state found under `key` (set at start-up). The
    route reads its own body (up to WEBHOOK_MAX_BYTES), not through client_max_size."""

    async def view(request: web.Request) -> web.Response:
        return await receive(request.app[key], request)

    def precheck(request: web.Request) -> web.Response | None:
        refused = refuse_early(request.app[key], request)
        return None if refused is None else _refused(refused)

    app.router.add_post(path, view, expect_handler=answer_expect(precheck))
