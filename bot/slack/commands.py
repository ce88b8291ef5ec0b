"""`/deploy` from Slack: parse (the shared parser, Slack's forms), then the one command
runner (bot/forge/commands.py) with the person who asked as its `ForgeClient` and the
channel as its `Scope` (bot/slack/scope.py); what it asks for is queued here. Every answer
but the deployment's own live message is ephemeral (only the person who asked sees it).
`/deploy list` is Slack's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog

from bot.commands.parser import Command, Ignore, Result, parse_slack
from bot.forge.access import may_deploy
from bot.forge.commands import run
from bot.forge.context import HandlerContext
from bot.slack import blocks
from bot.slack.member import Asker, SlackContext, SlackMember
from bot.slack.scope import SlackScope
from pipeline.errors import ClickDeployError

log = structlog.get_logger(__name__)


@asynccontextmanager
async def answering(member: SlackMember) -> AsyncIterator[None]:
    """Errors a person can cause are told to them; anything else is logged and answered
    with one line (Slack has had its acknowledgement: nothing else would tell them)."""
    try:
        yield
    except ClickDeployError as error:
        await member.say(str(error))
    except Exception as error:
        log.warning("slack command failed", error=f"{type(error).__name__}: {error}"[:300])
        await member.say("Something went wrong on our side; nothing was changed.")


async def carry_out(
    context: SlackContext, asker: Asker, result: Result, *, confirmed: bool = False
) -> None:
    """Run a command through the runner: queue what it asks for, then answer.
    `confirmed`: the person already said yes (a button behind a confirm dialog)."""
    member = SlackMember(context.client, asker)
    # No webhook delivery: the triggers name none.
    handler = HandlerContext.of(context.runtime, delivery_id="")
    async with answering(member):
        intent = await run(handler, SlackScope(member, confirmed), member, result)
        for item in intent.enqueue:
            deployment = await context.runtime.queue.enqueue(
                item.service.id,
                environment=item.environment,
                ref=item.ref,
                commit_sha=item.commit_sha,
                trigger=item.trigger.to_json(),
            )
            log.info(
                "slack deployment queued", deployment_id=deployment.id, service=item.service.name
            )
        if intent.outcome == "refused":
            log.info("slack request refused", user=asker.user)
        for after in intent.after:
            await after()


async def run_command(context: SlackContext, asker: Asker, text: str) -> None:
    """A slash command's text, after the acknowledgement."""
    async with answering(SlackMember(context.client, asker)):
        names = [service.name for service in await context.runtime.store.list_services()]
        result = parse_slack(text, names) if text.strip() else parse_slack("help")
        if isinstance(result, Ignore):
            result = parse_slack("help")
        if isinstance(result, Command) and result.name == "list":
            await run_list(context, asker)
        else:
            await carry_out(context, asker, result)


async def run_list(context: SlackContext, asker: Asker) -> None:
    """Every service; the current image only of those the asker may deploy."""
    store = context.runtime.store
    member = SlackMember(context.client, asker)
    services = (await store.list_services())[:100]
    visible = {service.id for service in services if await may_deploy(member, service)}
    rows = [
        (service, await store.current_image(service.id, "production"))
        if service.id in visible
        else (service, None)
        for service in services
    ]
    await member.say(blocks.services_list(rows, visible))
