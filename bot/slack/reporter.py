"""Reporting a deployment to Slack from the outbox (target "slack"): one channel message
per deployment, posted once and then edited (`chat.update`), a thread reply with the steps
(edited too) and, on failure, one reply with the failing step's last log lines. Rendered
from the deployment's current state every time, so a coalesced or late report is still
right. Slack's rate limits (429 + Retry-After) and 5xx answers become a `Retry`."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.links import deployment_page_url
from bot.reporting.loop import Later, Outcome, Retry, Sent
from bot.reporting.render import FINAL
from bot.slack import blocks
from pipeline.db.queries import q
from pipeline.errors import NotFound
from pipeline.models import Deployment, LogLine
from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import Store

TARGET = "slack"


def retry_after(error: SlackApiError) -> float | None:
    headers = getattr(error.response, "headers", None) or {}
    for key, value in dict(headers).items():
        if str(key).lower() == "retry-after":
            try:
                return max(float(value if not isinstance(value, list) else value[0]), 0.0)
            except (TypeError, ValueError):
                return None
    return None


def where_to(deployment: Deployment, service_channel: str | None) -> str | None:
    """The channel: where it was asked for from Slack, else the service's channel."""
    answer = deployment.trigger.get("answer", {})
    slack = answer.get(TARGET) if isinstance(answer, dict) else None
    channel = slack.get("channel") if isinstance(slack, dict) else None
    if not isinstance(channel, str) or not channel:
        channel = service_channel
    return channel if isinstance(channel, str) and channel else None


class SlackReporter:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, client: AsyncWebClient) -> None:
        self.settings = settings
        self.pool = pool
        self.store = Store(pool)
        self.client = client

    async def __call__(self, deployment_id: int) -> Outcome:
        try:
            return await self.send(deployment_id)
        except SlackApiError as error:
            status = int(getattr(error.response, "status_code", 0) or 0)
            code = error.response.get("error") if error.response is not None else None
            if status == 429 or code == "ratelimited":
                raise Retry("Slack rate limit", retry_after(error)) from None
            if status >= 500:
                raise Retry(f"Slack answered {status}") from None
            raise Retry(f"Slack refused: {code}") from None
        except NotFound:
            return Sent()  # the deployment is gone: nothing to report

    async def send(self, deployment_id: int) -> Outcome:
        deployment = await self.store.get_deployment(deployment_id)
        service = await self.store.get_service(deployment.service_id)
        channel = where_to(deployment, service.options.slack_channel)
        if channel is None:
            return Sent()
        row = await self.pool.fetchrow(q("slack_message_get"), deployment_id)
        final = deployment.status in FINAL
        if row is not None and row["sent_at"] is not None and not final:
            since = (datetime.now(UTC) - row["sent_at"]).total_seconds()
            if since < self.settings.report_throttle_seconds:
                return Later(self.settings.report_throttle_seconds - since, "throttled")
        url = deployment_page_url(self.settings, deployment.id)
        text = blocks.headline(deployment)
        message = blocks.deployment_message(deployment, url, protected=service.options.protected)
        if row is None:
            posted = await self.client.chat_postMessage(channel=channel, text=text, blocks=message)
            channel, ts = str(posted["channel"]), str(posted["ts"])
            # Stored at once: a failure further down must not post a second message.
            await self.pool.execute(
                q("slack_message_insert"), deployment_id, channel, ts, str(deployment.status)
            )
            steps_ts: str | None = None
            tail_posted = False
        else:
            channel, ts = row["channel"], row["ts"]
            steps_ts, tail_posted = row["steps_ts"], row["tail_posted"]
            await self.client.chat_update(channel=channel, ts=ts, text=text, blocks=message)
        steps = await self.store.list_steps(deployment_id)
        if steps:
            steps_text = blocks.steps_text(deployment, steps)
            steps_blocks = blocks.steps_message(deployment, steps)
            if steps_ts is None:
                reply = await self.client.chat_postMessage(
                    channel=channel, thread_ts=ts, text=steps_text, blocks=steps_blocks
                )
                await self.pool.execute(q("slack_message_steps"), deployment_id, str(reply["ts"]))
            else:
                await self.client.chat_update(
                    channel=channel, ts=steps_ts, text=steps_text, blocks=steps_blocks
                )
        post_tail = deployment.status == Status.FAILED and not tail_posted
        if post_tail:
            rows = await self.pool.fetch(q("forge_log_tail"), deployment_id, blocks.TAIL_LINES)
            tail = [LogLine.from_row(line) for line in rows]
            head, tail_blocks = blocks.log_tail_message(deployment, steps, tail)
            await self.client.chat_postMessage(
                channel=channel, thread_ts=ts, text=head, blocks=tail_blocks
            )
        await self.pool.execute(
            q("slack_message_sent"), deployment_id, str(deployment.status), post_tail
        )
        return Sent()
