"""`/deploy` from Slack: parse (the shared parser, Slack's forms), find the service,
authorize, then run one small runner per command. Every answer but the deployment's own
live message is ephemeral (only the person who asked sees it)."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.commands.parser import (
    Command,
    Ignore,
    Response,
    deployment_id,
    is_service_name,
    parse_slack,
    shown,
)
from bot.forge.access import NOTHING_CANCELLED, NOTHING_QUEUED
from bot.links import deployment_page_url
from bot.runtime import Runtime
from bot.slack import access, blocks
from pipeline.errors import ClickDeployError, NotFound
from pipeline.models import Deployment, Service
from pipeline.rollback import enqueue_rollback
from pipeline.trigger import Trigger

log = structlog.get_logger(__name__)

REF_MAX = 255  # a ref rides in a button's value (at most 2000 characters) when confirmed


SLACK_ID = re.compile(r"[A-Z0-9]{1,40}")  # U0ALICE, C0DEPLOY, W…: Slack's ids


@dataclass(frozen=True)
class Asker:
    """Who asked, from where."""

    user: str
    channel: str

    @classmethod
    def of(cls, user: Any, channel: Any) -> Asker | None:
        """An asker from a request's user and channel ids; None unless both are Slack ids."""
        if all(isinstance(x, str) and SLACK_ID.fullmatch(x) for x in (user, channel)):
            return cls(user, channel)
        return None


@dataclass
class SlackContext:
    runtime: Runtime
    client: AsyncWebClient

    async def say(
        self, asker: Asker, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        """An ephemeral answer to the person who asked."""
        arguments: dict[str, Any] = {"channel": asker.channel, "user": asker.user, "text": text}
        if blocks is not None:
            arguments["blocks"] = blocks
        try:
            await self.client.chat_postEphemeral(**arguments)
        except SlackApiError as error:  # not in the channel, say: nobody else to tell
            log.warning(
                "slack ephemeral reply failed",
                channel=asker.channel,
                error=str(error.response.get("error")),
            )


def nearest(name: str, names: list[str]) -> str | None:
    found = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    return found[0] if found else None


async def find_service(context: SlackContext, asker: Asker, name: str) -> Service | None:
    """The service called `name`, or None after telling the asker the nearest match."""
    if is_service_name(name):
        try:
            return await context.runtime.store.get_service_by_name(name)
        except NotFound:
            pass
    names = [service.name for service in await context.runtime.store.list_services()]
    near = nearest(name[:100], names)
    hint = f" Did you mean `{near}`?" if near else " `/deploy list` shows the services."
    await context.say(asker, f"There is no service `{shown(name)}`.{hint}")
    return None


async def allowed(
    context: SlackContext, asker: Asker, service: Service, outcome: str = NOTHING_QUEUED
) -> bool:
    """Whether the asker may act on `service` or see its deployments (bot/slack/access.py);
    when not, they are told why."""
    why = await access.refusal(context.client, service, asker.user, asker.channel, outcome)
    if why is None:
        return True
    log.info("slack request refused", service=service.name, user=asker.user)
    await context.say(asker, why)
    return False


async def permitted(context: SlackContext, asker: Asker, services: list[Service]) -> set[int]:
    """The ids of those of `services` the asker may deploy (and so see), silently."""
    found = set()
    for service in services:
        if await access.refusal(context.client, service, asker.user, asker.channel) is None:
            found.add(service.id)
    return found


NOT_SHOWN = "Its deployments are not shown."


def slack_trigger(asker: Asker, ref: str | None, reason: str) -> Trigger:
    return Trigger(
        source="slack",
        actor=asker.user,
        ref=ref,
        reason=reason,
        answer={"slack": {"channel": asker.channel, "user": asker.user}},
    )


async def enqueue_deploy(
    context: SlackContext,
    asker: Asker,
    service: Service,
    ref: str | None,
    *,
    environment: str = "production",
    commit_sha: str | None = None,
    reason: str = "/deploy slash command",
) -> Deployment:
    """Queue it; its live message is posted by the reporter (bot/slack/reporter.py)."""
    ref = ref or service.branch
    trigger = slack_trigger(asker, ref, reason).model_copy(
        update={"environment": environment, "commit_sha": commit_sha}
    )
    deployment = await context.runtime.queue.enqueue(
        service.id,
        environment=environment,
        ref=ref,
        commit_sha=commit_sha,
        trigger=trigger.to_json(),
    )
    log.info("slack deployment queued", deployment_id=deployment.id, service=service.name)
    return deployment


async def run_command(context: SlackContext, asker: Asker, text: str) -> None:
    """A slash command's text, after the acknowledgement. Errors a person can cause are
    told to them; anything else is logged and answered with one line."""
    try:
        await _run(context, asker, text)
    except ClickDeployError as error:
        await context.say(asker, str(error))
    except Exception as error:
        log.warning("slack command failed", error=f"{type(error).__name__}: {error}"[:300])
        await context.say(asker, "Something went wrong on our side; nothing was changed.")


async def _run(context: SlackContext, asker: Asker, text: str) -> None:
    store = context.runtime.store
    names = [service.name for service in await store.list_services()]
    result = parse_slack(text, names) if text.strip() else parse_slack("help")
    if isinstance(result, Ignore):
        result = parse_slack("help")
    if not isinstance(result, Command):
        await context.say(asker, result.text if isinstance(result, Response) else "")
        return
    if result.name == "list":
        await run_list(context, asker)
    elif result.name == "status":
        await run_status(context, asker, result)
    elif result.name == "cancel":
        await run_cancel(context, asker, deployment_id(result.target or "") or 0)
    elif result.name == "rollback":
        await run_rollback(context, asker, result.service or "")
    else:
        await run_deploy(context, asker, result)


async def run_deploy(context: SlackContext, asker: Asker, command: Command) -> None:
    if command.ref is not None and len(command.ref) > REF_MAX:
        await context.say(asker, f"That ref is longer than {REF_MAX} characters.")
        return
    service = await find_service(context, asker, command.service or "")
    if service is None or not await allowed(context, asker, service):
        return
    if service.options.protected:
        prompt = blocks.confirm_prompt(service, command.ref, asker.channel)
        await context.say(asker, f"`{service.name}` is protected: confirm the deploy.", prompt)
        return
    await enqueue_deploy(context, asker, service, command.ref)


async def run_rollback(
    context: SlackContext, asker: Asker, name: str, *, confirmed: bool = False
) -> None:
    service = await find_service(context, asker, name)
    if service is None or not await allowed(context, asker, service):
        return
    if service.options.protected and not confirmed:
        prompt = blocks.confirm_prompt(service, None, asker.channel, rollback=True)
        await context.say(asker, f"`{service.name}` is protected: confirm the rollback.", prompt)
        return
    trigger = slack_trigger(asker, None, "/deploy rollback")
    deployment = await enqueue_rollback(
        context.runtime.store, context.runtime.queue, service, "production", trigger=trigger
    )
    log.info("slack rollback queued", deployment_id=deployment.id, service=service.name)


async def run_cancel(context: SlackContext, asker: Asker, deployment_id: int) -> None:
    store = context.runtime.store
    try:
        deployment = await store.get_deployment(deployment_id)
    except NotFound:
        await context.say(asker, f"There is no deployment #{deployment_id}.")
        return
    service = await store.get_service(deployment.service_id)
    if not await allowed(context, asker, service, NOTHING_CANCELLED):
        return
    outcome = await context.runtime.queue.cancel(deployment_id)
    texts = {
        "cancelled": f"Deployment #{deployment_id} of `{service.name}` was cancelled.",
        "requested": f"Deployment #{deployment_id} of `{service.name}` is being stopped.",
        "already finished": f"Deployment #{deployment_id} had already finished "
        f"({outcome.deployment.status}).",
    }
    await context.say(asker, texts[str(outcome.outcome)])


async def run_status(context: SlackContext, asker: Asker, command: Command) -> None:
    """Deployments, with their signed page links: only of services the asker may deploy."""
    store = context.runtime.store
    settings = context.runtime.settings
    target = command.target
    deployments: list[Deployment] = []
    hidden = 0
    number = deployment_id(target or "")
    if number is not None:
        try:
            deployment = await store.get_deployment(number)
        except NotFound:
            await context.say(asker, f"There is no deployment #{target}.")
            return
        service = await store.get_service(deployment.service_id)
        if not await allowed(context, asker, service, NOT_SHOWN):
            return
        deployments = [deployment]
    elif target is not None:
        named = await find_service(context, asker, target)
        if named is None or not await allowed(context, asker, named, NOT_SHOWN):
            return
        deployments = (await store.list_deployments(named.id, limit=5)).items
    else:
        services = await store.list_services()
        visible = await permitted(context, asker, services)
        hidden = len(services) - len(visible)
        for service in services:
            if service.id in visible:
                deployments += (await store.list_deployments(service.id, limit=1)).items
    lines = [
        blocks.deployment_line(deployment, deployment_page_url(settings, deployment.id))
        for deployment in deployments[:40]
    ]
    if not lines:
        lines = ["No deployments yet."]
    if hidden:
        lines.append(f"_{hidden} service(s) you may not deploy from here are not shown._")
    await context.say(asker, "\n".join(lines))


async def run_list(context: SlackContext, asker: Asker) -> None:
    """Every service; the current image only of those the asker may deploy."""
    store = context.runtime.store
    services = (await store.list_services())[:100]
    visible = await permitted(context, asker, services)
    rows = [
        (service, await store.current_image(service.id, "production"))
        if service.id in visible
        else (service, None)
        for service in services
    ]
    await context.say(asker, blocks.services_list(rows, visible))
