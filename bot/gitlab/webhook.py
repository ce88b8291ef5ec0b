"""`POST /webhooks/gitlab`: read, verify (X-Gitlab-Token, constant time) and parse, then
dispatch by X-Gitlab-Event. The delivery and the deployments it causes are stored in one
transaction before the answer; a redelivery (same X-Gitlab-Event-UUID) changes nothing.

401 missing or wrong token, 413 body over WEBHOOK_MAX_BYTES, 415 not JSON (all three
answered before the body is read when the headers tell; the body is read up to the limit
only), 400 bad JSON or
a payload without what its event needs, 202 an event we do not handle, 200 otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from bot import configured
from bot.github.webhook import ID_MAX, plain_id
from bot.gitlab.api import GitLabApi, GitLabError
from bot.gitlab.context import SOURCE, GitLabContext, Plan
from bot.gitlab.events import on_merge_request, on_push
from bot.gitlab.models import PayloadError
from bot.gitlab.notes import on_note
from bot.payload import loads
from bot.request_body import BodyRefused, check_before_reading, media_type, read_capped, unread
from bot.runtime import Runtime
from pipeline.db.queries import q
from pipeline.models import Deployment

log = structlog.get_logger(__name__)

Handler = Callable[[Any, GitLabContext], Awaitable[Plan]]
HANDLERS: dict[str, Handler] = {
    "Push Hook": on_push,
    "Merge Request Hook": on_merge_request,
    "Note Hook": on_note,
}


@dataclass
class GitLabState:
    runtime: Runtime
    api: GitLabApi | None
    background: set[asyncio.Task[None]] = field(default_factory=set)


GITLAB_STATE = web.AppKey("gitlab", GitLabState)


@dataclass(frozen=True)
class GitLabEvent:
    """A verified delivery: its X-Gitlab-Event, its id and its JSON object."""

    event: str
    delivery_id: str
    data: dict[str, Any]


def _answer(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"message": message, **extra}, status=status)


def refuse_token(headers: Mapping[str, str], secret: str | None) -> web.Response | None:
    """401 unless X-Gitlab-Token is the secret (compared in constant time): all in the
    headers, so it is checked before the body is read."""
    if not secret:  # unset or empty: an empty token header would match
        return _answer(401, "webhook secret not configured (GITLAB_WEBHOOK_SECRET)")
    token = headers.get("x-gitlab-token")
    if token is None:
        return _answer(401, "token missing (X-Gitlab-Token)")
    # Any header text compares (as bytes): a header that is not UTF-8 is just wrong.
    if not hmac.compare_digest(token.encode("utf-8", "surrogateescape"), secret.encode()):
        return _answer(401, "token does not match")
    return None


def parse_event(
    headers: dict[str, str], body: bytes, secret: str | None
) -> GitLabEvent | web.Response:
    """The pure part: verified event, or the response that refuses it."""
    refused = refuse_token(headers, secret)
    if refused is not None:
        return refused
    if media_type(headers) != "application/json":
        return _answer(415, "expected Content-Type application/json")
    event = headers.get("x-gitlab-event")
    if not event:
        return _answer(400, "X-Gitlab-Event is required")
    # Older GitLab sends no X-Gitlab-Event-UUID: the body itself identifies a redelivery.
    delivery = headers.get("x-gitlab-event-uuid") or "sha256:" + hashlib.sha256(body).hexdigest()
    if not plain_id(delivery):
        return _answer(400, f"X-Gitlab-Event-UUID is not an id (at most {ID_MAX} ASCII characters)")
    try:
        data = loads(body.decode("utf-8"))
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested too deep
        return _answer(400, "the body is not valid JSON")
    if not isinstance(data, dict):
        return _answer(400, "the body is not a JSON object")
    return GitLabEvent(event, delivery, data)


def refuse_early(request: web.Request) -> web.Response | None:
    """What the headers alone refuse: 401 (the token), 415, 413 (by Content-Length)."""
    settings = request.app[GITLAB_STATE].runtime.settings
    headers = {key.lower(): value for key, value in request.headers.items()}
    refused = refuse_token(headers, configured.secret(settings.gitlab_webhook_secret))
    if refused is not None:
        return refused
    try:
        limit = settings.webhook_max_bytes
        check_before_reading(request, limit, ("application/json",), "application/json")
    except BodyRefused as error:
        return _answer(error.status, error.message)
    return None


async def gitlab_webhook(request: web.Request) -> web.Response:
    state = request.app[GITLAB_STATE]
    runtime = state.runtime
    settings = runtime.settings
    headers = {key.lower(): value for key, value in request.headers.items()}
    secret = configured.secret(settings.gitlab_webhook_secret)
    refused = refuse_early(request)  # the token, the type, the length: before reading
    if refused is not None:
        return unread(refused)
    try:
        body = await read_capped(request, settings.webhook_max_bytes)
    except BodyRefused as error:
        return unread(_answer(error.status, error.message))
    parsed = parse_event(headers, body, secret)
    if isinstance(parsed, web.Response):
        return parsed
    event = parsed
    handler = HANDLERS.get(event.event)
    if handler is None:
        return _answer(202, f"event {event.event[:100]!r} is not handled")
    seen = await runtime.pool.fetchrow(q("forge_delivery_seen"), SOURCE, event.delivery_id)
    if seen is not None:
        return _answer(200, "duplicate delivery", outcome=seen["outcome"])
    context = GitLabContext(
        settings=settings,
        pool=runtime.pool,
        store=runtime.store,
        queue=runtime.queue,
        gitlab=state.api,
        delivery_id=event.delivery_id,
    )
    try:
        plan = await handler(event.data, context)
    except PayloadError as error:
        return _answer(400, str(error))
    except GitLabError as error:
        # Not stored: GitLab shows the failure and the delivery can be sent again.
        log.warning("gitlab delivery not handled", gitlab_event=event.event, error=str(error))
        return _answer(502, "could not ask GitLab")
    created = await store(runtime, event, plan)
    if created is None:
        return _answer(200, "duplicate delivery")
    for after in plan.after:
        task = asyncio.create_task(_run_after(after, event.delivery_id))
        state.background.add(task)
        task.add_done_callback(state.background.discard)
    log.info(
        "gitlab delivery",
        gitlab_event=event.event,
        delivery=event.delivery_id,
        outcome=plan.outcome,
        deployments=[d.id for d in created],
    )
    return _answer(plan.status, plan.outcome, deployments=[d.id for d in created])


async def store(runtime: Runtime, event: GitLabEvent, plan: Plan) -> list[Deployment] | None:
    """The delivery row (source "gitlab") and its deployments, in one transaction; None
    when the delivery was stored already (a concurrent redelivery)."""
    async with runtime.pool.acquire() as connection, connection.transaction():
        inserted = await connection.fetchval(
            q("forge_delivery_insert"), SOURCE, event.delivery_id, event.event
        )
        if inserted is None:
            return None
        created: list[Deployment] = []
        for item in plan.enqueue:
            row = await connection.fetchrow(
                q("enqueue"),
                item.service.id,
                item.environment,
                item.ref,
                item.commit_sha,
                item.trigger.to_json(),
                runtime.settings.retry_max_attempts,
            )
            assert row is not None
            created.append(Deployment.from_row(row))
        await connection.execute(
            q("forge_delivery_finish"),
            SOURCE,
            event.delivery_id,
            plan.outcome,
            [deployment.id for deployment in created],
        )
    return created


async def _run_after(after: Callable[[], Awaitable[None]], delivery_id: str) -> None:
    try:
        await after()
    except Exception as error:  # a reply that fails must not matter to anyone else
        log.warning(
            "gitlab follow-up failed",
            delivery=delivery_id,
            error=f"{type(error).__name__}: {error}",
        )
