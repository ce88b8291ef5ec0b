"""Commands on pull and merge requests, GitHub's and GitLab's alike: the `Scope` of a
request for the command runner (bot/forge/commands.py). Its services are the
repository's; `/deploy` builds a preview of the request's head (or `--ref`) in its own
environment (pr-7, mr-7), `cancel` stops that environment's deployments, `status` shows
the request's."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.commands.parser import Command, parse
from bot.forge.commands import Head, RequestClient, Target, refused, run
from bot.forge.context import HandlerContext
from bot.forge.intent import DeliveryIntent
from bot.forge.paths import touches
from bot.reporting.render import status_table
from pipeline.db.queries import q
from pipeline.models import Deployment, Service
from pipeline.queue.queue import CancelResult
from pipeline.settings import Settings
from pipeline.trigger import Source as TriggerSource


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


@dataclass
class RequestScope:
    """The runner's `Scope` for one command on `thread`."""

    thread: Thread
    forge: RequestClient
    repository_services: list[Service]
    _head: Head | None = field(default=None, init=False)

    @property
    def source(self) -> TriggerSource:
        return self.thread.kind.source

    def reason(self, command: Command) -> str:
        if command.name == "rollback":
            return self.thread.kind.reason.replace("/deploy", "/deploy rollback", 1)
        return self.thread.kind.reason

    async def services(
        self, context: HandlerContext, command: Command
    ) -> list[Service] | DeliveryIntent:
        where = self.thread.repository
        services = self.repository_services
        if command.service is not None:
            services = [service for service in services if service.name == command.service]
            if not services:
                return refused(self.forge, f"There is no service `{command.service}` for {where}.")
        if not services:
            return refused(self.forge, f"No service deploys {where}.")
        if command.name == "deploy" and command.service is None and len(services) > 1:
            return await self.touched(services)
        return services

    async def touched(self, services: list[Service]) -> list[Service] | DeliveryIntent:
        """The services whose root directory or `config.watch` paths the request changes;
        when that is none, or the forge cannot tell, the answer that lists them and says
        what to type."""
        noun = self.thread.kind.noun
        changed = await self.forge.changed_files()
        if changed is not None:
            touched = [service for service in services if touches(service, changed)]
            if touched:
                return touched
            why = f"This {noun} changes no file of a service of {self.thread.repository}"
        else:
            why = f"This {noun} changes too many files to tell which services it touches"
        names = ", ".join(f"`{service.name}`" for service in services)
        text = (
            f"{why}, so nothing was queued. Its services: {names}.\n\n"
            f"To deploy one, comment `/deploy {services[0].name}`."
        )
        return DeliveryIntent("replied: which service", after=[self.forge.reply(text)])

    def confirmation(self, command: Command, services: list[Service]) -> None:
        return None  # the allowlist guards protected services on a forge

    async def target(self, command: Command, service: Service) -> Target:
        """A preview of the request's head (forks too: someone with write access asked),
        or of `--ref`."""
        if command.ref is not None:
            return Target(self.thread.environment, Head(command.ref, None))
        if self._head is None:
            self._head = await self.forge.head()
        return Target(self.thread.environment, self._head)

    async def to_cancel(self, context: HandlerContext, services: list[Service]) -> list[Deployment]:
        rows = await context.pool.fetch(
            q("forge_active_deployments"),
            [service.id for service in services],
            self.thread.environment,
        )
        return [Deployment.from_row(row) for row in rows]

    def cancelled(self, results: list[CancelResult], services: list[Service]) -> str:
        if not results:
            environment = self.thread.environment
            return f"Nothing to cancel: no deployment of `{environment}` is queued or running."
        names = {service.id: service.name for service in services}
        return "\n".join(
            f"- `{names[result.deployment.service_id]}` deployment {result.deployment.id}: "
            f"{result.outcome}"
            for result in results
        )

    async def to_show(self, context: HandlerContext, services: list[Service]) -> list[Deployment]:
        rows = await context.pool.fetch(
            q(self.thread.kind.status_query), self.thread.repository, str(self.thread.number)
        )
        shown = {service.id for service in services}
        deployments = [Deployment.from_row(row) for row in rows]
        return [deployment for deployment in deployments if deployment.service_id in shown]

    def status(self, settings: Settings, deployments: list[Deployment], hidden: int) -> str:
        text = (
            status_table(settings, deployments)
            if deployments
            else f"No deployments for this {self.thread.kind.noun} yet."
        )
        if hidden:
            text += f"\n\n{hidden} protected service(s) you are not on the allowlist of: not shown."
        return text


async def run_comment(
    context: HandlerContext, thread: Thread, forge: RequestClient, text: str
) -> DeliveryIntent:
    """A comment's text on `thread`, written by `forge`'s member: what the delivery asks for."""
    rows = await context.pool.fetch(
        q("forge_services_for_repository"), thread.kind.source, thread.repository
    )
    services = [Service.from_row(row) for row in rows]
    result = parse(text, [service.name for service in services])
    return await run(context, RequestScope(thread, forge, services), forge, result)
