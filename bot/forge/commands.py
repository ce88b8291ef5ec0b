"""One command runner for `/deploy`, `cancel`, `status`, `rollback` and `help`, every front
end alike: pull and merge request comments (GitHub, GitLab) and Slack.

A front end hands over the parsed command, a `ForgeClient` (who asked, as a `Member`, and
how to answer them: reply, react, where reporters answer; no vendor types reach this
module) and a `Scope` (where the command was written, and so which services and
deployments its words name: a pull or merge request's `RequestScope` here, a Slack
channel's in bot/slack/commands.py). The shared work happens once before dispatch: the
role check, the per-service rule (bot/forge/access.py, for every command, status too), a
confirmation where the scope asks for one, then one small runner per command. Replies and
reactions are after-actions: on a forge they go out once the delivery is stored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from bot.commands.parser import Command, Ignore, Response, Result
from bot.forge.access import NOT_SHOWN, NOTHING_CANCELLED, NOTHING_QUEUED, Member, why_not
from bot.forge.context import HandlerContext
from bot.forge.intent import After, DeliveryIntent, Enqueue
from pipeline.models import Deployment, Service
from pipeline.queue.queue import CancelResult
from pipeline.rollback import NothingToRollBack, rollback_target
from pipeline.settings import Settings
from pipeline.trigger import Source as TriggerSource
from pipeline.trigger import Trigger

Reaction = Literal["eyes", "rocket", "confused"]


@dataclass(frozen=True)
class Head:
    """What a deployment builds: the ref to fetch (None: a rollback of a deployment that
    named none) and, when known, its commit."""

    ref: str | None
    commit_sha: str | None


@dataclass(frozen=True)
class Target:
    """Where one service's deployment goes and what it builds."""

    environment: str
    head: Head


class ForgeClient(Member, Protocol):
    """The front end, for one command: who asked (a `Member`) and how to answer them."""

    async def connect(self) -> None:
        """Raises the forge's error when it cannot be asked at all (not configured)."""

    def reply(self, text: str) -> After: ...

    def react(self, reaction: Reaction) -> After: ...

    def answer(self, head_sha: str | None) -> dict[str, dict[str, Any]]:
        """Where reporters answer: the trigger's `answer`."""


class RequestClient(ForgeClient, Protocol):
    """A forge's client for a command on a pull or merge request."""

    async def head(self) -> Head:
        """The request's head now (a fork's through the forge's own ref)."""

    async def changed_files(self) -> list[str] | None:
        """The paths the request changes (both sides of a rename); None when the forge
        cannot list them all (too many)."""


class Scope(Protocol):
    """Where a command was written: what its words name there, and how answers read."""

    @property
    def source(self) -> TriggerSource: ...

    def reason(self, command: Command) -> str:
        """Why a deployment was queued, for its trigger."""

    async def services(
        self, context: HandlerContext, command: Command
    ) -> list[Service] | DeliveryIntent:
        """The services `command` is about; or the answer when it names none here."""

    def confirmation(self, command: Command, services: list[Service]) -> After | None:
        """A question to answer before `command` runs (Slack's button for a protected
        service); None to run it now."""

    async def target(self, command: Command, service: Service) -> Target: ...

    async def to_cancel(self, context: HandlerContext, services: list[Service]) -> list[Deployment]:
        """The deployments `cancel` stops."""

    def cancelled(self, results: list[CancelResult], services: list[Service]) -> str:
        """The answer to `cancel` of deployments of `services` (`results` empty: nothing
        was queued or running)."""

    async def to_show(self, context: HandlerContext, services: list[Service]) -> list[Deployment]:
        """The deployments `status` shows, of `services` (those the asker may deploy)."""

    def status(self, settings: Settings, deployments: list[Deployment], hidden: int) -> str: ...


def refused(forge: ForgeClient, text: str) -> DeliveryIntent:
    return DeliveryIntent("refused", after=[forge.react("confused"), forge.reply(text)])


def _outcome(command: Command) -> str:
    """What did not happen, for a refusal of `command`."""
    if command.name == "cancel":
        return NOTHING_CANCELLED
    return NOT_SHOWN if command.name == "status" else NOTHING_QUEUED


async def run(
    context: HandlerContext,
    scope: Scope,
    forge: ForgeClient,
    result: Result,
) -> DeliveryIntent:
    """A parsed command, asked by `forge`'s member in `scope`: what it asks for."""
    if isinstance(result, Ignore):
        return DeliveryIntent("ignored: not a command")
    await forge.connect()
    if isinstance(result, Response):
        return DeliveryIntent(f"replied: {result.kind}", after=[forge.reply(result.text)])
    if result.name == "list":  # Slack's own (bot/slack/commands.py)
        return DeliveryIntent("ignored: list is not the runner's")
    lacking = await forge.write_access()
    if lacking is not None:
        return refused(forge, f"Sorry @{forge.login}, `/deploy` needs {lacking}. {NOTHING_QUEUED}")
    services = await scope.services(context, result)
    if isinstance(services, DeliveryIntent):
        return services
    outcome = _outcome(result)
    refusals = {service.id: await why_not(forge, service, outcome) for service in services}
    permitted = [service for service in services if refusals[service.id] is None]
    if result.name == "status" and result.target is None:
        # Everything here: only what the asker may deploy, with its links.
        return await run_status(context, scope, forge, permitted, len(services) - len(permitted))
    for service in services:
        why = refusals[service.id]
        if why is not None:
            return refused(forge, why)
    if result.name == "status":
        return await run_status(context, scope, forge, services, 0)
    if result.name == "cancel":
        return await run_cancel(context, scope, forge, services)
    question = scope.confirmation(result, services)
    if question is not None:
        return DeliveryIntent("asked to confirm", after=[question])
    return await run_deploy(context, scope, forge, result, services)


def _enqueue(
    context: HandlerContext,
    scope: Scope,
    forge: ForgeClient,
    command: Command,
    service: Service,
    target: Target,
    rollback_to: int | None = None,
) -> Enqueue:
    head = target.head
    trigger = Trigger(
        source=scope.source,
        actor=forge.login,
        delivery_id=context.delivery_id or None,
        answer=forge.answer(head.commit_sha),
        reason=scope.reason(command),
        environment=target.environment,
        ref=head.ref,
        commit_sha=head.commit_sha,
        rollback_to=rollback_to,
    )
    return Enqueue(service, target.environment, head.ref, head.commit_sha, trigger)


async def run_deploy(
    context: HandlerContext,
    scope: Scope,
    forge: ForgeClient,
    command: Command,
    services: list[Service],
) -> DeliveryIntent:
    """`/deploy`: where the scope says; `rollback`: production goes back to each service's
    previous image (re-tagged by the pipeline, not rebuilt)."""
    intent = DeliveryIntent("queued", after=[forge.react("eyes")])
    for service in services:
        earlier: Deployment | None = None
        if command.name == "rollback":
            try:
                earlier = await rollback_target(context.store, service, "production")
            except NothingToRollBack as error:
                return refused(forge, f"Nothing was queued: {error}.")
            target = Target("production", Head(earlier.ref, earlier.commit_sha))
        else:
            target = await scope.target(command, service)
        rollback_to = None if earlier is None else earlier.id
        intent.enqueue.append(
            _enqueue(context, scope, forge, command, service, target, rollback_to)
        )
    return intent


async def run_cancel(
    context: HandlerContext, scope: Scope, forge: ForgeClient, services: list[Service]
) -> DeliveryIntent:
    active = await scope.to_cancel(context, services)
    if not active:
        return DeliveryIntent(
            "nothing to cancel", after=[forge.reply(scope.cancelled([], services))]
        )
    results = [await context.queue.cancel(deployment.id) for deployment in active]
    return DeliveryIntent(
        "cancelled", after=[forge.react("eyes"), forge.reply(scope.cancelled(results, services))]
    )


async def run_status(
    context: HandlerContext,
    scope: Scope,
    forge: ForgeClient,
    services: list[Service],
    hidden: int,
) -> DeliveryIntent:
    """The deployments of `services` (those the asker may deploy); `hidden`: how many
    others there are."""
    deployments = await scope.to_show(context, services)
    text = scope.status(context.settings, deployments, hidden)
    return DeliveryIntent("status", after=[forge.reply(text)])
