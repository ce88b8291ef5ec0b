"""One command runner for `/deploy` on a pull or merge request, every forge alike.

A forge front end turns its comment or note into a `Thread` (plain data) and a
`ForgeClient` (reply, react, the member's role and groups, the request's head and files;
no vendor types reach this module) and hands them here with the text. The shared work happens once
before dispatch: parse (bot/commands/parser.py), the role check, the per-service rule
(bot/forge/access.py, for every command, status too), then one small runner per
command. Replies and reactions are after-actions: they go out once the delivery is
stored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from bot.commands.parser import Command, Ignore, Response, parse
from bot.forge.access import NOTHING_CANCELLED, NOTHING_QUEUED, Member, may_deploy, refusal
from bot.forge.context import HandlerContext
from bot.forge.intent import After, DeliveryIntent, Enqueue
from bot.forge.paths import touches
from bot.reporting.render import status_table
from pipeline.db.queries import q
from pipeline.models import Deployment, Service
from pipeline.rollback import NothingToRollBack, rollback_target
from pipeline.trigger import Source as TriggerSource
from pipeline.trigger import Trigger

Reaction = Literal["eyes", "rocket", "confused"]


@dataclass(frozen=True)
class Head:
    """What a preview of the request builds: the ref to fetch and, when known, its commit."""

    ref: str
    commit_sha: str | None


@dataclass(frozen=True)
class RequestKind:
    """A forge's pull or merge requests, as the runner words and finds them."""

    source: TriggerSource  # the services' provider, and the trigger's source
    noun: str  # "pull request", "merge request"
    prefix: str  # of a request's preview environment: "pr" (pr-7), "mr" (mr-7)
    reason: str  # why a deployment was queued, for the trigger
    status_query: str  # the query of a request's newest deployments (repository, number)

    def environment(self, number: int) -> str:
        return f"{self.prefix}-{number}"


@dataclass(frozen=True)
class Thread:
    """A pull or merge request where someone wrote a command."""

    kind: RequestKind
    repository: str  # as services name it
    number: int  # the pull request's number, the merge request's iid

    @property
    def environment(self) -> str:
        return self.kind.environment(self.number)


class ForgeClient(Member, Protocol):
    """The forge, for one command: who asked (a `Member`) and how to answer them."""

    async def connect(self) -> None:
        """Raises the forge's error when it cannot be asked at all (not configured)."""

    def reply(self, text: str) -> After: ...

    def react(self, reaction: Reaction) -> After: ...

    async def head(self) -> Head:
        """The request's head now (a fork's through the forge's own ref)."""

    async def changed_files(self) -> list[str] | None:
        """The paths the request changes (both sides of a rename); None when the forge
        cannot list them all (too many)."""

    def answer(self, head_sha: str | None) -> dict[str, dict[str, Any]]:
        """Where reporters answer: the trigger's `answer`."""


def refused(forge: ForgeClient, text: str) -> DeliveryIntent:
    return DeliveryIntent("refused", after=[forge.react("confused"), forge.reply(text)])


async def run_comment(
    context: HandlerContext, thread: Thread, forge: ForgeClient, text: str
) -> DeliveryIntent:
    """A comment's text on `thread`, written by `forge`'s member: what the delivery asks for."""
    rows = await context.pool.fetch(
        q("forge_services_for_repository"), thread.kind.source, thread.repository
    )
    services = [Service.from_row(row) for row in rows]
    result = parse(text, [service.name for service in services])
    if isinstance(result, Ignore):
        return DeliveryIntent("ignored: not a command")
    await forge.connect()
    if isinstance(result, Response):
        return DeliveryIntent(f"replied: {result.kind}", after=[forge.reply(result.text)])
    lacking = await forge.write_access()
    if lacking is not None:
        return refused(
            forge,
            f"Sorry @{forge.login}, `/deploy` needs {lacking}. {NOTHING_QUEUED}",
        )
    where = thread.repository
    if result.service is not None:
        services = [service for service in services if service.name == result.service]
        if not services:
            return refused(forge, f"There is no service `{result.service}` for {where}.")
    if not services:
        return refused(forge, f"No service deploys {where}.")
    if result.name == "deploy" and result.service is None and len(services) > 1:
        touched = await touched_services(thread, forge, services)
        if isinstance(touched, DeliveryIntent):
            return touched
        services = touched
    permitted = [service for service in services if await may_deploy(forge, service)]
    if result.name == "status":  # only what the commenter may deploy, with its links
        return await run_status(context, thread, forge, permitted, len(services) - len(permitted))
    forbidden = [service for service in services if service not in permitted]
    if forbidden:
        outcome = NOTHING_CANCELLED if result.name == "cancel" else NOTHING_QUEUED
        return refused(forge, refusal(forge, forbidden[0], outcome))
    if result.name == "deploy":
        return await run_deploy(context, thread, forge, result, services)
    if result.name == "cancel":
        return await run_cancel(context, thread, forge, services)
    return await run_rollback(context, thread, forge, services)


async def touched_services(
    thread: Thread, forge: ForgeClient, services: list[Service]
) -> list[Service] | DeliveryIntent:
    """The services whose root directory or `config.watch` paths the request changes;
    when that is none, or the forge cannot tell, the answer that lists them and says what
    to type."""
    changed = await forge.changed_files()
    if changed is not None:
        touched = [service for service in services if touches(service, changed)]
        if touched:
            return touched
        why = f"This {thread.kind.noun} changes no file of a service of {thread.repository}"
    else:
        why = f"This {thread.kind.noun} changes too many files to tell which services it touches"
    names = ", ".join(f"`{service.name}`" for service in services)
    text = (
        f"{why}, so nothing was queued. Its services: {names}.\n\n"
        f"To deploy one, comment `/deploy {services[0].name}`."
    )
    return DeliveryIntent("replied: which service", after=[forge.reply(text)])


def _trigger(context: HandlerContext, thread: Thread, forge: ForgeClient, **fields: Any) -> Trigger:
    return Trigger(
        source=thread.kind.source,
        actor=forge.login,
        delivery_id=context.delivery_id,
        answer=forge.answer(fields.get("commit_sha")),
        **fields,
    )


async def run_deploy(
    context: HandlerContext,
    thread: Thread,
    forge: ForgeClient,
    command: Command,
    services: list[Service],
) -> DeliveryIntent:
    """A preview of the request's head (forks too: someone with write access asked), or
    of `--ref`."""
    if command.ref is not None:
        head = Head(command.ref, None)
    else:
        head = await forge.head()
    environment = thread.environment
    intent = DeliveryIntent("queued", after=[forge.react("eyes")])
    for service in services:
        trigger = _trigger(
            context,
            thread,
            forge,
            environment=environment,
            ref=head.ref,
            commit_sha=head.commit_sha,
            reason=thread.kind.reason,
        )
        intent.enqueue.append(Enqueue(service, environment, head.ref, head.commit_sha, trigger))
    return intent


async def run_rollback(
    context: HandlerContext, thread: Thread, forge: ForgeClient, services: list[Service]
) -> DeliveryIntent:
    """Production goes back to each service's previous image: re-tagged, not rebuilt."""
    intent = DeliveryIntent("queued", after=[forge.react("eyes")])
    for service in services:
        try:
            target = await rollback_target(context.store, service, "production")
        except NothingToRollBack as error:
            return refused(forge, f"Nothing was queued: {error}.")
        trigger = _trigger(
            context,
            thread,
            forge,
            environment="production",
            ref=target.ref,
            commit_sha=target.commit_sha,
            reason=thread.kind.reason.replace("/deploy", "/deploy rollback", 1),
            rollback_to=target.id,
        )
        intent.enqueue.append(
            Enqueue(service, "production", target.ref, target.commit_sha, trigger)
        )
    return intent


async def run_cancel(
    context: HandlerContext, thread: Thread, forge: ForgeClient, services: list[Service]
) -> DeliveryIntent:
    environment = thread.environment
    rows = await context.pool.fetch(
        q("forge_active_deployments"), [service.id for service in services], environment
    )
    active = [Deployment.from_row(row) for row in rows]
    if not active:
        text = f"Nothing to cancel: no deployment of `{environment}` is queued or running."
        return DeliveryIntent("nothing to cancel", after=[forge.reply(text)])
    lines = []
    for deployment in active:
        outcome = await context.queue.cancel(deployment.id)
        lines.append(f"- `{deployment.service_name}` deployment {deployment.id}: {outcome.outcome}")
    return DeliveryIntent("cancelled", after=[forge.react("eyes"), forge.reply("\n".join(lines))])


async def run_status(
    context: HandlerContext,
    thread: Thread,
    forge: ForgeClient,
    services: list[Service],
    hidden: int,
) -> DeliveryIntent:
    """The request's deployments of `services` (those the commenter may deploy)."""
    rows = await context.pool.fetch(
        q(thread.kind.status_query), thread.repository, str(thread.number)
    )
    shown = {service.id for service in services}
    deployments = [Deployment.from_row(row) for row in rows]
    deployments = [deployment for deployment in deployments if deployment.service_id in shown]
    text = (
        status_table(context.settings, deployments)
        if deployments
        else f"No deployments for this {thread.kind.noun} yet."
    )
    if hidden:
        text += f"\n\n{hidden} protected service(s) you are not on the allowlist of: not shown."
    return DeliveryIntent("status", after=[forge.reply(text)])
