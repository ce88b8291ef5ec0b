"""`/deploy` notes on merge requests: parse, authorize, then run the command.

The shared work (ignore the bot's own and system notes, parse, the Developer-or-more check,
the protected services' allowlist, `may_deploy`, for every command, status too) happens
once here; each command has a small runner.
Replies go out as MR notes after the delivery is stored (`Plan.after`)."""

from __future__ import annotations

from typing import Any

from bot.commands.parser import Command, Ignore, Response, parse
from bot.gitlab.api import DEVELOPER, GitLabApi
from bot.gitlab.context import SOURCE, After, Enqueue, GitLabContext, Plan, preview_environment
from bot.gitlab.models import MergeRequest, Note
from bot.reporting.render import COMMENT_MARKER, status_table
from pipeline.db.queries import q
from pipeline.models import Deployment, Service
from pipeline.rollback import NothingToRollBack, rollback_target
from pipeline.service_config import refused_for_config
from pipeline.trigger import Trigger

# Every note the bot writes carries the marker, so it never answers itself.
REPLY_MARKER = COMMENT_MARKER.replace("-->", "reply -->")


def reply(api: GitLabApi, note: Note, mr: MergeRequest, text: str) -> After:
    async def run() -> None:
        await api.create_note(note.project.id, mr.iid, f"{text}\n\n{REPLY_MARKER}")

    return run


def refuse(api: GitLabApi, note: Note, mr: MergeRequest, text: str) -> Plan:
    return Plan("refused", after=[reply(api, note, mr, text)])


async def on_allowlist(api: GitLabApi, service: Service, note: Note) -> bool:
    """`config.allow`: usernames, or groups as "@group/subgroup"."""
    entries = service.options.allow
    login = note.author.username.lower()
    if login in {entry.lower() for entry in entries if not entry.startswith("@")}:
        return True
    for entry in entries:
        if (
            entry.startswith("@")
            and len(entry) > 1
            and await api.in_group(entry[1:], note.author.id)
        ):
            return True
    return False


async def on_note(payload: Any, context: GitLabContext) -> Plan:
    note = Note.from_payload(payload)
    if note.action not in (None, "create"):
        return Plan(f"ignored: note {note.action}")
    if note.system:
        return Plan("ignored: a system note")
    if COMMENT_MARKER in note.body or REPLY_MARKER in note.body:
        return Plan("ignored: the bot's own note")
    if note.mr is None:
        return Plan("ignored: not a merge request")
    mr = note.mr
    if isinstance(parse(note.body), Ignore):
        return Plan("ignored: not a command")
    api = context.api()
    if note.author.username == await api.bot_username():
        return Plan("ignored: the bot's own note")
    rows = await context.pool.fetch(q("forge_services_for_repository"), SOURCE, note.project.path)
    services = [Service.from_row(row) for row in rows]
    result = parse(note.body, [service.name for service in services])
    if isinstance(result, Ignore):
        return Plan("ignored: not a command")
    if isinstance(result, Response):
        return Plan(f"replied: {result.kind}", after=[reply(api, note, mr, result.text)])

    level = await api.access_level(note.project.id, note.author.id)
    if level < DEVELOPER:
        return refuse(
            api,
            note,
            mr,
            f"Sorry @{note.author.username}, `/deploy` needs the Developer role or more in "
            f"{note.project.path}. Nothing was queued.",
        )
    if result.service is not None:
        services = [service for service in services if service.name == result.service]
        if not services:
            return refuse(
                api, note, mr, f"There is no service `{result.service}` for {note.project.path}."
            )
    if not services:
        return refuse(api, note, mr, f"No service deploys {note.project.path}.")
    permitted = [service for service in services if await may_deploy(api, service, note)]
    if result.name == "status":  # only what the author may deploy, with its links
        return await run_status(context, api, note, mr, permitted, len(services) - len(permitted))
    forbidden = [service for service in services if service not in permitted]
    if forbidden:
        service = forbidden[0]
        if service.options.problem is not None:
            return refuse(api, note, mr, refused_for_config(service.name))
        undone = "Nothing was cancelled." if result.name == "cancel" else "Nothing was queued."
        return refuse(
            api,
            note,
            mr,
            f"Sorry @{note.author.username}, `{service.name}` is protected and you "
            f"are not on its allowlist. {undone}",
        )
    if result.name == "deploy":
        return run_deploy(context, note, mr, result, services)
    if result.name == "cancel":
        return await run_cancel(context, api, note, mr, services)
    return await run_rollback(context, api, note, mr, services)


async def may_deploy(api: GitLabApi, service: Service, note: Note) -> bool:
    """The per-service rule, for every command (deploy, rollback, cancel, status): a
    protected service needs the author on its allowlist. (The Developer role is checked
    before, for all of them.)"""
    if service.options.problem is not None:  # a stored config that is not valid: refuse
        return False
    return not service.options.protected or await on_allowlist(api, service, note)


def _trigger(context: GitLabContext, note: Note, mr: MergeRequest, **fields: Any) -> Trigger:
    return Trigger(
        source=SOURCE,
        actor=note.author.username,
        delivery_id=context.delivery_id,
        answer=context.answer(
            note.project.path,
            note.project.id,
            mr=mr.iid,
            head_sha=fields.get("commit_sha"),
            note_id=note.id,
        ),
        **fields,
    )


def run_deploy(
    context: GitLabContext, note: Note, mr: MergeRequest, command: Command, services: list[Service]
) -> Plan:
    """A preview of the MR's head (forks too: a Developer asked), or of `--ref`."""
    ref = command.ref or mr.fetch_ref
    commit = None if command.ref else mr.head_sha
    environment = preview_environment(mr.iid)
    plan = Plan("queued")
    for service in services:
        trigger = _trigger(
            context,
            note,
            mr,
            environment=environment,
            ref=ref,
            commit_sha=commit,
            reason="/deploy note",
        )
        plan.enqueue.append(Enqueue(service, environment, ref, commit, trigger))
    return plan


async def run_rollback(
    context: GitLabContext, api: GitLabApi, note: Note, mr: MergeRequest, services: list[Service]
) -> Plan:
    """Production goes back to each service's previous image: re-tagged, not rebuilt."""
    plan = Plan("queued")
    for service in services:
        try:
            target = await rollback_target(context.store, service, "production")
        except NothingToRollBack as error:
            return refuse(api, note, mr, f"Nothing was queued: {error}.")
        trigger = _trigger(
            context,
            note,
            mr,
            environment="production",
            ref=target.ref,
            commit_sha=target.commit_sha,
            reason="/deploy rollback note",
            rollback_to=target.id,
        )
        plan.enqueue.append(Enqueue(service, "production", target.ref, target.commit_sha, trigger))
    return plan


async def run_cancel(
    context: GitLabContext, api: GitLabApi, note: Note, mr: MergeRequest, services: list[Service]
) -> Plan:
    environment = preview_environment(mr.iid)
    rows = await context.pool.fetch(
        q("forge_active_deployments"), [service.id for service in services], environment
    )
    active = [Deployment.from_row(row) for row in rows]
    if not active:
        text = f"Nothing to cancel: no deployment of `{environment}` is queued or running."
        return Plan("nothing to cancel", after=[reply(api, note, mr, text)])
    lines = []
    for deployment in active:
        outcome = await context.queue.cancel(deployment.id)
        lines.append(f"- `{deployment.service_name}` deployment {deployment.id}: {outcome.outcome}")
    return Plan("cancelled", after=[reply(api, note, mr, "\n".join(lines))])


async def run_status(
    context: GitLabContext,
    api: GitLabApi,
    note: Note,
    mr: MergeRequest,
    services: list[Service],
    hidden: int,
) -> Plan:
    """The merge request's deployments of `services` (those the author may deploy)."""
    rows = await context.pool.fetch(
        q("forge_gitlab_mr_deployments"), note.project.path, str(mr.iid)
    )
    shown = {service.id for service in services}
    deployments = [Deployment.from_row(row) for row in rows]
    deployments = [deployment for deployment in deployments if deployment.service_id in shown]
    text = (
        status_table(context.settings, deployments)
        if deployments
        else "No deployments for this merge request yet."
    )
    if hidden:
        text += f"\n\n{hidden} protected service(s) you are not on the allowlist of: not shown."
    return Plan("status", after=[reply(api, note, mr, text)])
