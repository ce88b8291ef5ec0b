"""A Slack channel as the command runner's `Scope` (bot/forge/commands.py): commands name
services by name across the workspace (with "did you mean"), deployments by id; `/deploy`
and `rollback` go to production; a protected service asks for a confirmation button
first; `status` lists deployments with their signed page links."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from bot.commands.parser import Command, deployment_id, is_service_name, shown
from bot.forge.commands import Head, Target, refused
from bot.forge.context import HandlerContext
from bot.forge.intent import After, DeliveryIntent
from bot.links import deployment_page_url
from bot.slack import blocks
from bot.slack.member import SlackMember
from pipeline.errors import NotFound
from pipeline.models import Deployment, Service
from pipeline.queue.queue import CancelOutcome, CancelResult
from pipeline.settings import Settings
from pipeline.trigger import Source as TriggerSource

STATUS_LINES = 40  # an ephemeral message stays short
SERVICE_HISTORY = 5  # `status SERVICE`: its newest deployments


def nearest(name: str, names: list[str]) -> str | None:
    found = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    return found[0] if found else None


@dataclass
class SlackScope:
    """The runner's `Scope` for one slash command or button click. `confirmed`: the person
    already said yes (a button behind a confirm dialog)."""

    member: SlackMember
    confirmed: bool = False
    # What the command named, found by `services`:
    deployment: Deployment | None = field(default=None, init=False)
    named: bool = field(default=False, init=False)

    @property
    def source(self) -> TriggerSource:
        return "slack"

    def reason(self, command: Command) -> str:
        if command.name == "rollback":
            return "/deploy rollback"
        if self.deployment is not None:
            return f"redeploy of #{self.deployment.id} from Slack"
        return "/deploy (confirmed)" if self.confirmed else "/deploy slash command"

    async def services(
        self, context: HandlerContext, command: Command
    ) -> list[Service] | DeliveryIntent:
        """`cancel ID`, `status ID` and a Redeploy button name a deployment (`target`);
        `deploy`, `rollback` and `status SERVICE` a service; `status` alone every one."""
        store = context.store
        target = command.target
        number = deployment_id(target or "")
        if target is not None and number is None and command.name == "status":
            self.named = True
            found = await self.find(context, target)
            return found if isinstance(found, DeliveryIntent) else [found]
        if number is not None:
            try:
                self.deployment = await store.get_deployment(number)
            except NotFound:
                return refused(self.member, f"There is no deployment #{number}.")
            return [await store.get_service(self.deployment.service_id)]
        if command.name == "status":
            return await store.list_services()
        found = await self.find(context, command.service or "")
        return found if isinstance(found, DeliveryIntent) else [found]

    async def find(self, context: HandlerContext, name: str) -> Service | DeliveryIntent:
        """The service called `name`, or the answer that names the nearest match."""
        if is_service_name(name):
            try:
                return await context.store.get_service_by_name(name)
            except NotFound:
                pass
        names = [service.name for service in await context.store.list_services()]
        near = nearest(name[:100], names)
        hint = f" Did you mean `{near}`?" if near else " `/deploy list` shows the services."
        return refused(self.member, f"There is no service `{shown(name)}`.{hint}")

    def confirmation(self, command: Command, services: list[Service]) -> After | None:
        protected = [service for service in services if service.options.protected]
        if self.confirmed or not protected:
            return None
        service = protected[0]
        rollback = command.name == "rollback"
        prompt = blocks.confirm_prompt(service, command.ref, self.member.channel, rollback=rollback)
        what = "rollback" if rollback else "deploy"
        text = f"`{service.name}` is protected: confirm the {what}."

        async def ask() -> None:
            await self.member.say(text, prompt)

        return ask

    async def target(self, command: Command, service: Service) -> Target:
        """Production at `REF` or the service's branch; a redeploy where the earlier one
        went, at its commit."""
        earlier = self.deployment
        if earlier is not None:
            head = Head(earlier.ref or service.branch, earlier.commit_sha)
            return Target(earlier.environment, head)
        return Target("production", Head(command.ref or service.branch, None))

    async def to_cancel(self, context: HandlerContext, services: list[Service]) -> list[Deployment]:
        return [] if self.deployment is None else [self.deployment]

    def cancelled(self, results: list[CancelResult], services: list[Service]) -> str:
        names = {service.id: service.name for service in services}
        lines = [cancelled(result, names[result.deployment.service_id]) for result in results]
        return "\n".join(lines) or "Nothing to cancel."

    async def to_show(self, context: HandlerContext, services: list[Service]) -> list[Deployment]:
        if self.deployment is not None:
            return [self.deployment]
        limit = SERVICE_HISTORY if self.named else 1
        deployments: list[Deployment] = []
        for service in services:
            deployments += (await context.store.list_deployments(service.id, limit=limit)).items
        return deployments

    def status(self, settings: Settings, deployments: list[Deployment], hidden: int) -> str:
        lines = [
            blocks.deployment_line(deployment, deployment_page_url(settings, deployment.id))
            for deployment in deployments[:STATUS_LINES]
        ] or ["No deployments yet."]
        if hidden:
            lines.append(f"_{hidden} service(s) you may not deploy from here are not shown._")
        return "\n".join(lines)


def cancelled(result: CancelResult, name: str) -> str:
    deployment = result.deployment
    if result.outcome == CancelOutcome.CANCELLED:
        return f"Deployment #{deployment.id} of `{name}` was cancelled."
    if result.outcome == CancelOutcome.REQUESTED:
        return f"Deployment #{deployment.id} of `{name}` is being stopped."
    return f"Deployment #{deployment.id} had already finished ({deployment.status})."
