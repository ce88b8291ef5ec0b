"""`POST /webhooks/github`: read, verify and parse (into gidgethub's sans-I/O `Event`),
then dispatch by event. The delivery and the deployments it causes are stored in one
transaction before the answer; a redelivery (same X-GitHub-Delivery) changes nothing.

401 missing or bad signature, 413 body over WEBHOOK_MAX_BYTES, 415 not JSON (a missing
signature, a wrong Content-Type or a Content-Length over the limit is answered before the
body is read; it is read in chunks up to the limit, its HMAC made as they come), 400 bad JSON
or a payload without what its event needs, 422 GitHub does not know what the payload names
(a pull request, an installation), 502 GitHub could not be asked, 202 an event we do not
handle, 200 otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import gidgethub
import structlog
from aiohttp import web
from gidgethub import sansio

from bot import configured
from bot.github.auth import AppAuth, GitHubAppError
from bot.github.comments import on_issue_comment
from bot.github.events import on_check_run, on_installation, on_pull_request, on_push
from bot.github.models import installation_id
from bot.github.plan import Context, Plan
from bot.payload import PayloadError, loads
from bot.request_body import BodyRefused, check_before_reading, media_type, read_capped, unread
from bot.runtime import Runtime
from pipeline.db.queries import q

log = structlog.get_logger(__name__)

SOURCE = "github"
Handler = Callable[[Any, Context], Awaitable[Plan]]
HANDLERS: dict[str, Handler] = {
    "push": on_push,
    "pull_request": on_pull_request,
    "issue_comment": on_issue_comment,
    "check_run": on_check_run,
    "installation": on_installation,
}
# Events whose handler may ask GitHub's API before the delivery is stored: a redelivery of
# one is looked up first, so it costs no API calls. The others only read the database, and
# a redelivery of those is caught when the delivery is stored (one round trip less).
ASKS_GITHUB = frozenset({"issue_comment"})
JSON_TYPES = ("application/json", "application/x-www-form-urlencoded")
ID_MAX = 200  # delivery ids are UUIDs; a longer one could not even be indexed


@dataclass
class GitHubState:
    runtime: Runtime
    session: aiohttp.ClientSession
    auth: AppAuth | None
    background: set[asyncio.Task[None]] = field(default_factory=set)


GITHUB_STATE = web.AppKey("github", GitHubState)


def _answer(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"message": message, **extra}, status=status)


def unknown_to_github(error: gidgethub.BadRequest) -> bool:
    """GitHub's 404 or 422: what we asked about (from the delivery) does not exist."""
    return int(error.status_code) in (404, 422)


def plain_id(value: str) -> bool:
    """A delivery id we can store and index: printable ASCII, not too long (a UUID)."""
    return len(value) <= ID_MAX and value.isascii() and value.isprintable()


def new_mac(secret: str) -> hmac.HMAC:
    """The HMAC-SHA256 GitHub signs a body with; fed chunk by chunk while it is read."""
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def signature_matches(signature: str, mac: hmac.HMAC) -> bool:
    """`X-Hub-Signature-256` against the body's HMAC-SHA256, in constant time. Only
    "sha256=" counts (never SHA-1); any header text compares, as bytes, without raising."""
    expected = "sha256=" + mac.hexdigest()
    return hmac.compare_digest(signature.encode("utf-8", "surrogateescape"), expected.encode())


def decode_body(content_type: str, body: bytes) -> Any:
    """The JSON a delivery carries (GitHub sends UTF-8; a form's `payload` field holds the
    JSON); ValueError when there is none."""
    text = body.decode("utf-8")
    if content_type == "application/x-www-form-urlencoded":
        payload = urllib.parse.parse_qs(text).get("payload")
        if not payload:
            raise ValueError("no payload field")
        text = payload[0]
    return loads(text)


def verifying_secret(headers: Mapping[str, str], secret: str | None) -> str | web.Response:
    """The secret to check the signature with, or a 401 when nothing could verify the
    delivery: no secret here, no signature on it."""
    if not secret:  # unset or empty: an HMAC with an empty key anyone can make
        return _answer(401, "webhook secret not configured (GITHUB_WEBHOOK_SECRET)")
    if "x-hub-signature-256" not in headers:
        return _answer(401, "signature missing (X-Hub-Signature-256)")
    return secret


def parse_event(
    headers: dict[str, str], body: bytes, secret: str | None, mac: hmac.HMAC | None = None
) -> sansio.Event | web.Response:
    """The pure part: verified event, or the response that refuses it. `mac`: the body's
    HMAC when it was computed while reading."""
    key = verifying_secret(headers, secret)
    if isinstance(key, web.Response):
        return key
    if mac is None:
        mac = new_mac(key)
        mac.update(body)
    if not signature_matches(headers["x-hub-signature-256"], mac):
        return _answer(401, "signature does not match")
    content_type = media_type(headers)
    if content_type not in JSON_TYPES:
        return _answer(415, "expected Content-Type application/json")
    event, delivery = headers.get("x-github-event"), headers.get("x-github-delivery")
    if not event or not delivery:
        return _answer(400, "X-GitHub-Event and X-GitHub-Delivery are required")
    if not plain_id(delivery):
        return _answer(400, f"X-GitHub-Delivery is not an id (at most {ID_MAX} ASCII characters)")
    try:
        data = decode_body(content_type, body)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested too deep
        return _answer(400, "the body is not valid JSON")
    if not isinstance(data, dict):
        return _answer(400, "the body is not a JSON object")
    return sansio.Event(data, event=event, delivery_id=delivery)


def refuse_early(request: web.Request) -> str | web.Response:
    """What the headers alone refuse (401 unsigned, 415, 413 by Content-Length); else the
    secret to check the body's signature with."""
    settings = request.app[GITHUB_STATE].runtime.settings
    headers = {key.lower(): value for key, value in request.headers.items()}
    secret = verifying_secret(headers, configured.secret(settings.github_webhook_secret))
    if isinstance(secret, web.Response):
        return secret
    try:
        check_before_reading(request, settings.webhook_max_bytes, JSON_TYPES, JSON_TYPES[0])
    except BodyRefused as error:
        return _answer(error.status, error.message)
    return secret


async def github_webhook(request: web.Request) -> web.Response:
    state = request.app[GITHUB_STATE]
    settings = state.runtime.settings
    headers = {key.lower(): value for key, value in request.headers.items()}
    # Refused on its headers before the body is read; then read with a cap, signed as read.
    secret = refuse_early(request)
    if isinstance(secret, web.Response):
        return unread(secret)
    mac = new_mac(secret)
    try:
        body = await read_capped(request, settings.webhook_max_bytes, mac.update)
    except BodyRefused as error:
        return unread(_answer(error.status, error.message))
    parsed = parse_event(headers, body, secret, mac)
    if isinstance(parsed, web.Response):
        return parsed
    event = parsed
    if event.event == "ping":
        return _answer(200, "pong")
    handler = HANDLERS.get(event.event)
    if handler is None:
        return _answer(202, f"event {event.event[:100]!r} is not handled")
    pool = state.runtime.pool
    if event.event in ASKS_GITHUB:
        seen = await pool.fetchrow(q("forge_delivery_seen"), SOURCE, event.delivery_id)
        if seen is not None:
            return _answer(200, "duplicate delivery", outcome=seen["outcome"])
    context = Context(
        settings=settings,
        pool=pool,
        store=state.runtime.store,
        queue=state.runtime.queue,
        session=state.session,
        auth=state.auth,
        delivery_id=event.delivery_id,
        installation_id=installation_id(event.data),
    )
    try:
        plan = await handler(event.data, context)
    except PayloadError as error:
        return _answer(400, str(error))
    except (GitHubAppError, gidgethub.GitHubException, aiohttp.ClientError, TimeoutError) as error:
        if isinstance(error, gidgethub.BadRequest) and unknown_to_github(error):
            # No such pull request, installation or user on GitHub: sending the delivery
            # again will not help, and nothing is wrong on our side either.
            return _answer(
                422, f"GitHub does not know what the delivery names ({error.status_code})"
            )
        # Not stored: GitHub shows the failure and the delivery can be sent again.
        status = getattr(error, "status_code", None)
        log.warning(
            "github delivery not handled",
            github_event=event.event,
            error=str(error)[:300],
            status=int(status) if status is not None else None,
        )
        answered = f" ({int(status)})" if status is not None else ""
        return _answer(502, f"could not ask GitHub: {type(error).__name__}{answered}")
    created = await store_delivery(state, event, plan)
    if created is None:
        return _answer(200, "duplicate delivery")
    for after in plan.after:
        task = asyncio.create_task(_run_after(after, event.delivery_id))
        state.background.add(task)
        task.add_done_callback(state.background.discard)
    log.info(
        "github delivery",
        github_event=event.event,
        delivery=event.delivery_id,
        outcome=plan.outcome,
        deployments=created,
    )
    return _answer(plan.status, plan.outcome, deployments=created)


async def store_delivery(state: GitHubState, event: sansio.Event, plan: Plan) -> list[int] | None:
    """The delivery row and its deployments in one statement (one round trip, its own
    transaction); their ids, or None when the delivery was stored already (a concurrent
    redelivery)."""
    items = plan.enqueue
    ids: list[int] | None = await state.runtime.pool.fetchval(
        q("github_delivery_store"),
        SOURCE,
        event.delivery_id,
        event.event,
        plan.outcome,
        [item.service.id for item in items],
        [item.environment for item in items],
        [item.ref for item in items],
        [item.commit_sha for item in items],
        [item.trigger.to_json() for item in items],
        state.runtime.settings.retry_max_attempts,
    )
    return ids


async def _run_after(after: Callable[[], Awaitable[None]], delivery_id: str) -> None:
    try:
        await after()
    except Exception as error:  # a reply that fails must not matter to anyone else
        log.warning(
            "github follow-up failed",
            delivery=delivery_id,
            error=f"{type(error).__name__}: {error}",
        )
