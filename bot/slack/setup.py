"""The Slack feature for `serve`: slack-bolt's `AsyncApp` mounted in our aiohttp
application at `/slack/commands`, `/slack/interactivity` and `/slack/events`, and the
outbox reporter that keeps each deployment's message up to date. Only when both
SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN are set.

Each request's signature is checked first by pure functions (bot/slack/signature.py: 401
when missing, wrong or stale, the headers before the body is read) and again by bolt.
Listeners acknowledge at once and do the work afterwards (bolt answers Slack as soon as
`ack()` is called)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot import configured
from bot.reporting.loop import run_reporter
from bot.request_body import (
    BodyRefused,
    answer_expect,
    check_before_reading,
    read_capped,
    unread,
)
from bot.runtime import Runtime
from bot.slack.actions import run_action
from bot.slack.commands import run_command
from bot.slack.member import Asker, SlackContext
from bot.slack.reporter import TARGET, SlackReporter
from bot.slack.signature import InvalidSignature, check_headers, check_mac, new_mac

log = structlog.get_logger(__name__)

PATHS = ("/slack/commands", "/slack/interactivity", "/slack/events")
# Slash commands and clicks come as forms, events as JSON; none is near a megabyte.
CONTENT_TYPES = ("application/x-www-form-urlencoded", "application/json")
MAX_BODY_BYTES = 1024 * 1024


@dataclass
class SlackState:
    secret: str
    bolt: AsyncApp
    context: SlackContext


SLACK_STATE = web.AppKey("slack", SlackState)


def build_bolt(context: SlackContext, secret: str) -> AsyncApp:
    bolt = AsyncApp(signing_secret=secret, client=context.client, name="click-deploy")

    # Any slash command the Slack app is configured with (usually /deploy).
    @bolt.command(re.compile(r"^/"))
    async def on_command(ack: AsyncAck, command: dict[str, Any]) -> None:
        await ack()
        asker = Asker.of(command.get("user_id"), command.get("channel_id"))
        if asker is not None:
            await run_command(context, asker, str(command.get("text") or ""))

    @bolt.action(re.compile(r"^deploy_"))
    async def on_action(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        await run_action(context, body)

    # Every event is acknowledged (none is acted on yet): Slack retries an event that
    # gets no 2xx and turns the subscription off when too many fail.
    @bolt.event(re.compile(r".*"))
    async def on_event(ack: AsyncAck) -> None:
        await ack()

    @bolt.error
    async def on_error(error: Exception, response: BoltResponse | None) -> BoltResponse | None:
        if response is None:
            # A listener failed after acknowledging: Slack has had its answer.
            log.warning("slack listener failed", error=f"{type(error).__name__}: {error}"[:300])
            return None
        # bolt itself could not read a signed request (a field of another type in it, say):
        # a 400 for Slack, one line in the log, no traceback.
        log.info("slack request not understood", error=type(error).__name__)
        return BoltResponse(status=400, body={"error": "bad request"})

    return bolt


def refuse_early(request: web.Request) -> tuple[SlackState, str, str] | web.Response:
    """What the headers alone refuse: 401 (no signature, a stale timestamp), 415, 413 (by
    Content-Length); else the state, the timestamp and the signature to check."""
    state = request.app.get(SLACK_STATE)
    if state is None:
        return web.json_response({"error": "starting"}, status=503)
    try:
        timestamp, signature = check_headers(request.headers, state.secret)
    except InvalidSignature as error:
        log.info("slack request refused", path=request.path, reason=str(error))
        return web.json_response({"error": "invalid signature"}, status=401)
    try:
        check_before_reading(request, MAX_BODY_BYTES, CONTENT_TYPES, " or ".join(CONTENT_TYPES))
    except BodyRefused as error:
        return web.json_response({"error": error.message}, status=error.status)
    return state, timestamp, signature


async def slack_endpoint(request: web.Request) -> web.Response:
    # The signature's headers, the type and the length are checked before the body is
    # read; the body is read up to MAX_BODY_BYTES, its HMAC made as it arrives.
    checked = refuse_early(request)
    if isinstance(checked, web.Response):
        return unread(checked)
    state, timestamp, signature = checked
    mac = new_mac(state.secret, timestamp)
    try:
        body = await read_capped(request, MAX_BODY_BYTES, mac.update)
    except BodyRefused as error:
        return unread(web.json_response({"error": error.message}, status=error.status))
    try:
        check_mac(mac, signature)
    except InvalidSignature as error:
        log.info("slack request refused", path=request.path, reason=str(error))
        return web.json_response({"error": "invalid signature"}, status=401)
    try:
        bolt_request = AsyncBoltRequest(
            body=body.decode("utf-8", "replace"),
            query=request.query_string,
            headers={key: value for key, value in request.headers.items()},
        )
        response = await state.bolt.async_dispatch(bolt_request)
    except Exception as error:  # a signed but unreadable request: say so, no traceback
        log.warning("slack request not understood", error=type(error).__name__)
        return web.json_response({"error": "bad request"}, status=400)
    return await to_aiohttp_response(response)


def api_url(url: str) -> str:
    return url.rstrip("/") + "/"


def setup(app: web.Application, runtime: Runtime) -> None:
    settings = runtime.settings
    secret = configured.secret(settings.slack_signing_secret)
    token = configured.secret(settings.slack_bot_token)
    if secret is None or token is None:  # empty is unset: nothing could be verified
        return
    for path in PATHS:
        app.router.add_post(path, slack_endpoint, expect_handler=answer_expect(refuse_early))

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        client = AsyncWebClient(
            token=token, base_url=api_url(settings.slack_api_url), session=session
        )
        context = SlackContext(runtime, client)
        app[SLACK_STATE] = SlackState(secret, build_bolt(context, secret), context)
        stop = asyncio.Event()
        send = SlackReporter(settings, runtime.pool, client)
        reporter = asyncio.create_task(run_reporter(runtime.pool, settings, TARGET, send, stop))
        yield
        stop.set()
        await reporter
        await session.close()

    app.cleanup_ctx.append(lifecycle)
