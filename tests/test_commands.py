"""The /deploy parser (a table of text in, value out), and the one command runner and
permission rule every front end uses, over front ends of plain data."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import pytest

from bot.commands.parser import Command, Ignore, Response, parse, parse_slack
from bot.forge.access import may_deploy, why_not
from bot.forge.commands import Head, Reaction, RequestClient, Target, run
from bot.forge.context import HandlerContext
from bot.forge.intent import After, DeliveryIntent
from bot.forge.requests import RequestKind, RequestScope, Thread
from pipeline.models import Deployment, Service
from pipeline.queue.queue import CancelOutcome, CancelResult
from pipeline.settings import Settings
from pipeline.trigger import Source as TriggerSource

CASES: list[tuple[str, object]] = [
    ("/deploy", Command("deploy")),
    ("  /deploy  ", Command("deploy")),
    ("/deploy web", Command("deploy", service="web")),
    ("/deploy Web", Command("deploy", service="web")),
    ("/deploy web --ref main", Command("deploy", service="web", ref="main")),
    ("/deploy --ref=v1.2 web", Command("deploy", service="web", ref="v1.2")),
    ("/deploy --ref feature/x", Command("deploy", ref="feature/x")),
    ("/deploy cancel", Command("cancel")),
    ("/deploy CANCEL", Command("cancel")),
    ("/deploy status", Command("status")),
    ("/deploy rollback", Command("rollback")),
    ("/deploy rollback api", Command("rollback", service="api")),
    ("thanks!\n/deploy web\nmore text", Command("deploy", service="web")),
    ("hello", Ignore()),
    ("", Ignore()),
    ("please /deploy web", Ignore()),
    ("/deployment web", Ignore()),
    ("> /deploy web", Ignore()),
    ("```\n/deploy web\n```", Ignore()),
    ("/other thing", Ignore()),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_parse(text: str, expected: object) -> None:
    assert parse(text) == expected


RESPONSES: list[tuple[str, str, str]] = [
    # text, kind, a phrase the reply must contain
    ("/deploy help", "help", "/deploy rollback [SERVICE]"),
    ("/deploy help me", "usage", "takes no arguments"),
    ("/deploy statsu", "suggestion", "Did you mean `/deploy status`"),
    ("/deploy cancle", "suggestion", "Did you mean `/deploy cancel`"),
    ("/deploy rolback web", "suggestion", "Did you mean `/deploy rollback`"),
    ("/delpoy web", "suggestion", "Did you mean `/deploy`"),
    ("/deploy web --rf main", "usage", "Did you mean `--ref`"),
    ("/deploy web --ref", "usage", "`--ref` needs a value"),
    ("/deploy web --ref=", "usage", "`--ref` needs a value"),
    ("/deploy --ref a --ref b", "usage", "given twice"),
    ("/deploy web api", "usage", "Unexpected argument `api`"),
    ("/deploy cancel now", "usage", "Usage: `/deploy cancel`"),
    ("/deploy status --ref x", "usage", "Unknown flag `--ref`"),
    ("/deploy rollback web --ref x", "usage", "Unknown flag"),
    ("/deploy 'web", "usage", "Could not read the command"),
    ("/deploy we;b", "usage", "is not a service name: use 1-63 lower-case letters"),
    # The examples, refused here as everywhere (pipeline/values.py).
    ("/deploy web --ref=-x", "usage", "`-x` is not a branch, tag or commit: use 1-255"),
    ("/deploy web --ref -x", "usage", "`--ref` needs a value"),
    ("/deploy web --ref ../../etc", "usage", "`../../etc` is not a branch, tag or commit"),
    ("/deploy web --ref 'prod uction/../x'", "usage", "without spaces"),
    ("/deploy web --ref main.lock", "usage", "is not a branch, tag or commit"),
    ("/deploy web_app", "usage", "`web_app` is not a service name"),
    ("/deploy " + "x" * 64, "usage", "is not a service name"),
]


@pytest.mark.parametrize(("text", "kind", "phrase"), RESPONSES)
def test_responses(text: str, kind: str, phrase: str) -> None:
    result = parse(text)
    assert isinstance(result, Response), result
    assert result.kind == kind
    assert phrase in result.text


def test_a_known_service_is_not_taken_for_a_typo() -> None:
    assert isinstance(parse("/deploy hello"), Response)  # "help"?
    assert parse("/deploy hello", services=["hello"]) == Command("deploy", service="hello")


SLACK_REFUSALS: list[tuple[str, str]] = [
    ("web -x", "Unknown flag `-x`"),
    ("web a..b", "`a..b` is not a branch, tag or commit: use 1-255"),
    ("web 'prod uction'", "without spaces"),
    ("Web_App", "is not a service name: use 1-63 lower-case letters"),
    ("rollback we/b", "is not a service name"),
]


@pytest.mark.parametrize(("text", "phrase"), SLACK_REFUSALS)
def test_slack_forms_refuse_the_same_values(text: str, phrase: str) -> None:
    result = parse_slack(text)
    assert isinstance(result, Response) and result.kind == "usage", result
    assert phrase in result.text and "Usage: `/deploy" in result.text


# --- the one runner and the one permission module, with front ends of plain data ----------


def service_of(config: dict[str, Any], name: str = "web", id: int = 1) -> Service:
    now = datetime.now(UTC)
    return Service.from_row(
        {
            "id": id,
            "name": name,
            "provider": "github",
            "repository": f"acme/{name}",
            "branch": "main",
            "root_dir": ".",
            "config": config,
            "created_at": now,
            "updated_at": now,
        }
    )


@dataclass
class Client:
    """A front end's `ForgeClient` that records what it was asked to say."""

    login: str = "alice"
    groups: tuple[str, ...] = ()
    lacking: str | None = None
    said: list[str] = field(default_factory=list)
    reactions: list[str] = field(default_factory=list)

    async def connect(self) -> None:
        pass

    async def write_access(self) -> str | None:
        return self.lacking

    async def in_group(self, group: str) -> bool:
        return group in self.groups

    def reply(self, text: str) -> After:
        async def run() -> None:
            self.said.append(text)

        return run

    def react(self, reaction: Reaction) -> After:
        async def run() -> None:
            self.reactions.append(reaction)

        return run

    def answer(self, head_sha: str | None) -> dict[str, dict[str, Any]]:
        return {"test": {"head": head_sha or ""}}


@dataclass
class ChatClient(Client):
    channel: str = "C0DEPLOY"


@dataclass
class PlainScope:
    """A scope where every service is named and protected ones ask to be confirmed."""

    all_services: list[Service]
    asks: bool = False

    @property
    def source(self) -> TriggerSource:
        return "slack"

    def reason(self, command: Command) -> str:
        return f"test {command.name}"

    async def services(
        self, context: HandlerContext, command: Command
    ) -> list[Service] | DeliveryIntent:
        return self.all_services

    def confirmation(self, command: Command, services: list[Service]) -> After | None:
        if not self.asks or not any(service.options.protected for service in services):
            return None

        async def ask() -> None:
            pass

        return ask

    async def target(self, command: Command, service: Service) -> Target:
        return Target("production", Head(command.ref or service.branch, None))

    async def to_cancel(self, context: HandlerContext, services: list[Service]) -> list[Deployment]:
        return []

    def cancelled(self, results: list[CancelResult], services: list[Service]) -> str:
        return f"{len(results)} cancelled"

    async def to_show(self, context: HandlerContext, services: list[Service]) -> list[Deployment]:
        return []

    def status(self, settings: Settings, deployments: list[Deployment], hidden: int) -> str:
        return f"{hidden} hidden"


CONTEXT = cast(HandlerContext, SimpleNamespace(delivery_id="d1", settings=None))


async def finish(intent: DeliveryIntent) -> DeliveryIntent:
    for after in intent.after:
        await after()
    return intent


async def test_every_front_end_gets_the_same_role_check_and_answers() -> None:
    client = Client(lacking="write access to acme/web (you have read)")
    intent = await finish(
        await run(CONTEXT, PlainScope([service_of({})]), client, parse("/deploy"))
    )
    assert intent.outcome == "refused" and intent.enqueue == []
    assert client.reactions == ["confused"]
    assert client.said == [
        "Sorry @alice, `/deploy` needs write access to acme/web (you have read). "
        "Nothing was queued."
    ]
    helped = Client()
    await finish(await run(CONTEXT, PlainScope([]), helped, parse_slack("help")))
    assert "/deploy SERVICE [REF]" in helped.said[0]


async def test_the_runner_queues_with_the_scopes_target_and_the_askers_answer() -> None:
    client = Client()
    intent = await run(CONTEXT, PlainScope([service_of({})]), client, parse("/deploy web --ref v2"))
    [queued] = intent.enqueue
    assert (queued.environment, queued.ref) == ("production", "v2")
    trigger = queued.trigger
    assert (trigger.source, trigger.actor, trigger.reason, trigger.delivery_id) == (
        "slack",
        "alice",
        "test deploy",
        "d1",
    )
    assert trigger.answer == {"test": {"head": ""}}


async def test_a_protected_service_is_confirmed_first_where_the_scope_asks() -> None:
    protected = service_of({"protected": True})
    asked = await run(CONTEXT, PlainScope([protected], asks=True), ChatClient(), parse("/deploy"))
    assert (asked.outcome, asked.enqueue) == ("asked to confirm", [])
    # In a chat the forge's allowlist does not apply: the confirmation is the guard.
    confirmed = await run(CONTEXT, PlainScope([protected]), ChatClient(), parse("/deploy"))
    assert len(confirmed.enqueue) == 1
    # On a forge it does.
    forge = Client()
    refused = await finish(await run(CONTEXT, PlainScope([protected]), forge, parse("/deploy")))
    assert (
        refused.enqueue == [] and "is protected and you are not on its allowlist" in forge.said[0]
    )


async def test_status_hides_what_the_asker_may_not_deploy_and_cancel_says_what_did_not_happen() -> (
    None
):
    services = [service_of({}), service_of({"slack": {"users": ["U0BOB"]}}, "api", 2)]
    chat = ChatClient(login="U0MALLORY")
    await finish(await run(CONTEXT, PlainScope(services), chat, parse("/deploy status")))
    assert chat.said == ["1 hidden"]
    cancel = await finish(await run(CONTEXT, PlainScope(services), chat, parse("/deploy cancel")))
    assert cancel.outcome == "refused"
    assert chat.said[-1] == (
        "Sorry <@U0MALLORY>, you are not allowed to deploy `api` (only <@U0BOB> may). "
        "Nothing was cancelled."
    )


PERMISSIONS: list[tuple[dict[str, Any], Client, bool]] = [
    ({}, Client(), True),
    ({}, ChatClient(), True),
    ({"protected": True}, Client(), False),
    ({"protected": True, "allow": ["Alice"]}, Client(), True),
    ({"protected": True, "allow": ["@acme/ops"]}, Client(groups=("acme/ops",)), True),
    ({"protected": True, "allow": ["@acme/ops"]}, Client(groups=("acme/dev",)), False),
    ({"protected": True}, ChatClient(), True),  # confirmed in the chat instead
    ({"slack": {"users": ["U0BOB"]}}, ChatClient(login="U0BOB"), True),
    ({"slack": {"users": ["U0BOB"]}}, ChatClient(), False),
    ({"slack": {"users": ["U0BOB"]}}, Client(), True),  # Slack's rule is Slack's
    ({"slack": {"usergroups": ["S0OPS"]}}, ChatClient(groups=("S0OPS",)), True),
    ({"slack": {"channels": ["C0OTHER"]}}, ChatClient(), False),
    ({"slack": {"users": "U0BOB"}}, ChatClient(login="U0BOB"), False),  # not valid: nobody
    ({"slack": {"users": "U0BOB"}}, Client(), False),
]


@pytest.mark.parametrize(("config", "member", "allowed"), PERMISSIONS)
async def test_one_permission_rule_for_forges_and_chats(
    config: dict[str, Any], member: Client, allowed: bool
) -> None:
    why = await why_not(member, service_of(config))
    assert (why is None) == allowed, why
    assert await may_deploy(member, service_of(config)) == allowed


def deployment_of(service: Service, id: int) -> Deployment:
    """A deployment as a cancel returns it: without its service's name (only what the
    answer reads)."""
    return cast(Deployment, SimpleNamespace(id=id, service_id=service.id, service_name=None))


def test_a_requests_cancel_answer_names_each_service() -> None:
    kind = RequestKind("github", "pull request", "pr", "/deploy comment", "unused")
    web, api = service_of({}), service_of({}, "api", 2)
    scope = RequestScope(Thread(kind, "acme/web", 7), cast(RequestClient, Client()), [web, api])
    results = [
        CancelResult(CancelOutcome.CANCELLED, deployment_of(api, 11)),
        CancelResult(CancelOutcome.REQUESTED, deployment_of(web, 12)),
    ]
    assert scope.cancelled(results, [web, api]) == (
        "- `api` deployment 11: cancelled\n- `web` deployment 12: requested"
    )
    assert "no deployment of `pr-7` is queued or running" in scope.cancelled([], [web])
