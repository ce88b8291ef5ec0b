"""The Slack front end: signed slash commands and button clicks through slack-bolt mounted
in our aiohttp app, against a fake Slack Web API that checks every call (required
arguments, Block Kit structure); deployments run by an in-process worker with the scripted
pipeline; the live message and its thread come from the outbox reporter."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from bot.slack.setup import PATHS
from bot.slack.setup import setup as slack_setup
from bot.slack.signature import InvalidSignature, verify
from pipeline.models import Deployment, Service
from pipeline.queue.queue import Queue
from pipeline.queue.worker import Worker
from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import NewService, Store
from tests.support import fake_slack
from tests.support.fake_slack import TOKEN, FakeSlack, Message
from tests.support.pipelines import ScriptedPipeline
from tests.support.waiting import PATIENCE, wait_for_status

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
CHANNEL = "C0DEPLOY"
USER = "U0ALICE"

StartWorker = Callable[..., Awaitable[Worker]]
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    runner = await fake_slack.start(fake)
    yield fake
    await runner.cleanup()
    assert fake.invalid == []


@pytest.fixture
def slack_settings(settings: Settings, fake: FakeSlack) -> Settings:
    return settings.model_copy(
        update={
            "slack_signing_secret": SecretStr(SECRET),
            "slack_bot_token": SecretStr(TOKEN),
            "slack_api_url": fake.api_url,
            "report_poll_seconds": 0.05,
            "report_throttle_seconds": 0.0,
            "public_url": "https://deploy.example.com",
        }
    )


@pytest.fixture
async def client(
    slack_settings: Settings, pool: asyncpg.Pool, database_url: str, store: Store
) -> AsyncIterator[Client]:
    from bot.runtime import Runtime

    app = web.Application()
    runtime = Runtime(slack_settings, database_url, pool, store, Queue(pool, slack_settings))
    slack_setup(app, runtime)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def sign(body: bytes, timestamp: int | None = None, secret: str = SECRET) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256)
    return {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": "v0=" + digest.hexdigest(),
        "Content-Type": "application/x-www-form-urlencoded",
    }


Slash = Callable[..., Awaitable[int]]


@pytest.fixture
def slash(client: Client) -> Slash:
    async def send(text: str, user: str = USER, channel: str = CHANNEL) -> int:
        body = urlencode(
            {
                "token": "unused",
                "team_id": "T1",
                "team_domain": "acme",
                "channel_id": channel,
                "channel_name": "deploys",
                "user_id": user,
                "user_name": user.lower(),
                "command": "/deploy",
                "text": text,
                "api_app_id": "A1",
                "response_url": "https://hooks.slack.test/commands/1",
                "trigger_id": "1.2.3",
            }
        ).encode()
        response = await client.post("/slack/commands", data=body, headers=sign(body))
        return response.status

    return send


Click = Callable[..., Awaitable[int]]


@pytest.fixture
def click(client: Client) -> Click:
    async def send(action_id: str, value: str, user: str = USER, channel: str = CHANNEL) -> int:
        payload = {
            "type": "block_actions",
            "team": {"id": "T1", "domain": "acme"},
            "user": {"id": user, "username": user.lower(), "team_id": "T1"},
            "api_app_id": "A1",
            "token": "unused",
            "container": {"type": "message", "channel_id": channel, "message_ts": "1.1"},
            "trigger_id": "1.2.3",
            "channel": {"id": channel, "name": "deploys"},
            "response_url": "https://hooks.slack.test/actions/1",
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "b",
                    "value": value,
                    "action_ts": "1.2",
                }
            ],
        }
        body = urlencode({"payload": json.dumps(payload)}).encode()
        response = await client.post("/slack/interactivity", data=body, headers=sign(body))
        return response.status

    return send


async def add(store: Store, name: str = "web", **config: Any) -> Service:
    return await store.create_service(
        NewService(name, f"acme/{name}", "github", branch="main", config=config)
    )


async def eventually(check: Callable[[], Any], timeout: float = PATIENCE) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def only_deployment(pool: asyncpg.Pool, timeout: float = PATIENCE) -> Deployment:
    async def fetch() -> list[asyncpg.Record]:
        return await pool.fetch("SELECT d.*, NULL AS service_name FROM deployments d")

    deadline = time.monotonic() + timeout
    rows = await fetch()
    while not rows:
        assert time.monotonic() < deadline, "nothing was queued"
        await asyncio.sleep(0.02)
        rows = await fetch()
    assert len(rows) == 1
    return Deployment.from_row(rows[0])


async def script(pool: asyncpg.Pool, deployment_id: int, **steps: Any) -> None:
    """Tell the scripted pipeline what to do (before a worker claims it)."""
    await pool.execute(
        "UPDATE deployments SET trigger = trigger || jsonb_build_object('script', $2::jsonb) "
        "WHERE id = $1",
        deployment_id,
        steps,
    )


def final_message(fake: FakeSlack, word: str) -> Message | None:
    top = fake.top_level(CHANNEL)
    return top[0] if len(top) == 1 and word in top[0].text else None


# --- signatures --------------------------------------------------------------------------


def test_the_signature_is_slacks_v0_hmac_within_five_minutes() -> None:
    body = b"token=x&text=web"
    now = 1_700_000_000
    verify(sign(body, now), body, SECRET, now=now + 299)
    with pytest.raises(InvalidSignature, match="five minutes"):
        verify(sign(body, now), body, SECRET, now=now + 301)
    with pytest.raises(InvalidSignature, match="five minutes"):
        verify(sign(body, now), body, SECRET, now=now - 301)
    with pytest.raises(InvalidSignature, match="does not match"):
        verify(sign(body, now, secret="another"), body, SECRET, now=now)
    with pytest.raises(InvalidSignature, match="does not match"):
        verify(sign(body, now), body + b"&x=1", SECRET, now=now)
    with pytest.raises(InvalidSignature, match="not signed"):
        verify({}, body, SECRET, now=now)
    with pytest.raises(InvalidSignature, match="not a number"):
        verify({**sign(body, now), "X-Slack-Request-Timestamp": "soon"}, body, SECRET)


async def test_bad_or_stale_signatures_are_401_on_every_endpoint(
    client: Client, fake: FakeSlack
) -> None:
    body = b"command=%2Fdeploy&text=help&user_id=U1&channel_id=C1&team_id=T1"
    for path in PATHS:
        stale = await client.post(path, data=body, headers=sign(body, int(time.time()) - 400))
        assert stale.status == 401, path
        wrong = await client.post(path, data=body, headers=sign(body, secret="nope"))
        assert wrong.status == 401, path
        unsigned = await client.post(path, data=body)
        assert unsigned.status == 401, path
    assert fake.calls == []
    # Slack's URL verification on the events endpoint, signed: answered with the challenge.
    challenge = json.dumps({"type": "url_verification", "challenge": "abc", "token": "t"})
    headers = {**sign(challenge.encode()), "Content-Type": "application/json"}
    answer = await client.post("/slack/events", data=challenge, headers=headers)
    assert answer.status == 200 and "abc" in await answer.text()


# --- commands ----------------------------------------------------------------------------


async def test_help_list_status_and_typos_answer_ephemerally(
    slash: Slash, fake: FakeSlack, store: Store, queue: Queue, pool: asyncpg.Pool
) -> None:
    web_service = await add(store, "web")
    await add(store, "api", protected=True)
    assert await slash("help") == 200
    await eventually(lambda: fake.ephemeral_texts())
    assert "/deploy SERVICE [REF]" in fake.ephemeral_texts()[-1]
    await slash("wbe")
    await eventually(lambda: len(fake.ephemeral_texts()) == 2)
    assert "There is no service `wbe`. Did you mean `web`?" in fake.ephemeral_texts()[-1]
    await slash("lsit")
    await eventually(lambda: len(fake.ephemeral_texts()) == 3)
    assert "Did you mean `/deploy list`?" in fake.ephemeral_texts()[-1]
    await slash("list")
    await eventually(lambda: len(fake.ephemeral_texts()) == 4)
    assert "`api` :lock:" in fake.ephemeral_texts()[-1]
    assert "`web` (acme/web@main): never deployed" in fake.ephemeral_texts()[-1]
    deployment = await queue.enqueue(web_service.id, ref="main")
    await slash(f"status {deployment.id}")
    await eventually(lambda: len(fake.ephemeral_texts()) == 5)
    assert f"#{deployment.id}" in fake.ephemeral_texts()[-1]
    assert "is queued" in fake.ephemeral_texts()[-1]
    # One at a time: answers to commands sent together may arrive in any order.
    for count, command in enumerate(("status web", "status", "status 999", "cancel nine"), 6):
        await slash(command)
        await eventually(lambda count=count: len(fake.ephemeral_texts()) == count)
    assert "There is no deployment #999." in fake.ephemeral_texts()[7]
    assert "is not a deployment id" in fake.ephemeral_texts()[8]
    await slash("web " + "x" * 300)
    await eventually(lambda: len(fake.ephemeral_texts()) == 10)
    assert "longer than 255 characters" in fake.ephemeral_texts()[9]
    assert fake.called("chat.postMessage") == []  # nothing said in the channel
    assert await pool.fetchval("SELECT count(*) FROM deployments") == 1


async def test_a_slash_command_deploys_and_one_message_follows_it_to_success(
    slash: Slash, fake: FakeSlack, store: Store, pool: asyncpg.Pool, start_worker: StartWorker
) -> None:
    await add(store, "web")
    assert await slash("web release-1") == 200
    deployment = await only_deployment(pool)
    await script(pool, deployment.id, sleep=0.9)
    # The build waits at step 1 until its message has shown it (a loaded machine's
    # reporter could otherwise first see a later state).
    gate = asyncio.Event()
    await start_worker(ScriptedPipeline(gates={deployment.id: gate}))
    building = await eventually(lambda: final_message(fake, "building (step 1 of 2)"))
    assert "deploy_cancel" in json.dumps(building.blocks)
    gate.set()
    assert (deployment.ref, deployment.trigger["source"]) == ("release-1", "slack")
    assert deployment.trigger["answer"]["slack"] == {"channel": CHANNEL, "user": USER}
    await wait_for_status(store, deployment.id, Status.SUCCEEDED)
    message = await eventually(lambda: final_message(fake, "succeeded"))
    assert f"registry.test/web:{deployment.id}" in message.text
    assert " in " in message.text and " s:" in message.text  # its duration
    rendered = json.dumps(message.blocks)
    assert "View logs" in rendered and "Redeploy" in rendered and "Rollback" in rendered
    assert "deploy_cancel" not in rendered  # no Cancel once finished
    assert f"<@{USER}>" in rendered
    assert message.edits >= 1  # posted once, then edited
    assert len(fake.called("chat.postMessage")) == 2  # the message and its steps reply
    thread = fake.thread(message)
    assert len(thread) == 1
    await eventually(lambda: "push: done" in thread[0].text)
    for step in ("clone: done", "build: done", "push: done"):
        assert step in thread[0].text
    row = await pool.fetchrow(
        "SELECT * FROM slack_messages WHERE deployment_id = $1", deployment.id
    )
    assert (row["channel"], row["ts"]) == (CHANNEL, message.ts)


async def test_a_failing_build_shows_the_failing_step_and_the_log_tail(
    slash: Slash, fake: FakeSlack, store: Store, pool: asyncpg.Pool, start_worker: StartWorker
) -> None:
    await add(store, "web")
    await slash("web")
    deployment = await only_deployment(pool)
    await script(pool, deployment.id, fail="permanent", lines=80)
    await start_worker(ScriptedPipeline())
    await wait_for_status(store, deployment.id, Status.FAILED)
    message = await eventually(lambda: final_message(fake, "failed"))
    assert "RUN make failed with exit code 3" in message.text
    thread = await eventually(lambda: len(fake.thread(message)) == 2 and fake.thread(message))
    tail = thread[1].text + json.dumps(thread[1].blocks)
    assert "Failed at step build" in tail
    assert "line 79" in tail and "line 10" not in tail
    assert "RUN make failed" in tail


async def test_the_cancel_button_cancels_a_running_build(
    slash: Slash,
    click: Click,
    fake: FakeSlack,
    store: Store,
    pool: asyncpg.Pool,
    start_worker: StartWorker,
) -> None:
    await add(store, "web")
    await slash("web")
    deployment = await only_deployment(pool)
    await script(pool, deployment.id, hang=True)
    await start_worker(ScriptedPipeline())
    await wait_for_status(store, deployment.id, Status.BUILDING)
    running = await eventually(lambda: final_message(fake, "building"))
    assert "deploy_cancel" in json.dumps(running.blocks)
    assert await click("deploy_cancel", str(deployment.id)) == 200
    await wait_for_status(store, deployment.id, Status.CANCELLED)
    await eventually(lambda: final_message(fake, "cancelled"))
    await eventually(lambda: any("is being stopped" in t for t in fake.ephemeral_texts()))


async def test_unauthorized_users_and_channels_are_refused_and_nothing_is_queued(
    slash: Slash, click: Click, fake: FakeSlack, store: Store, pool: asyncpg.Pool
) -> None:
    fake.usergroups["S0OPS"] = ["U0BOB"]
    await add(store, "web", slack={"users": [USER], "usergroups": ["S0OPS"], "channels": [CHANNEL]})
    await slash("web", user="U0MALLORY")
    await eventually(lambda: fake.ephemeral_texts("U0MALLORY"))
    assert "you are not allowed to deploy `web`" in fake.ephemeral_texts("U0MALLORY")[0]
    await slash("web", user=USER, channel="C0RANDOM")
    await eventually(lambda: fake.ephemeral_texts(USER))
    assert f"can only be deployed from <#{CHANNEL}>" in fake.ephemeral_texts(USER)[0]
    await click("deploy_rollback", "web", user="U0MALLORY")
    await eventually(lambda: len(fake.ephemeral_texts("U0MALLORY")) == 2)
    assert await pool.fetchval("SELECT count(*) FROM deployments") == 0
    await slash("web", user="U0BOB")  # a member of the allowed user group
    deployment = await only_deployment(pool)
    assert deployment.trigger["actor"] == "U0BOB"


async def test_a_stored_allowlist_that_is_not_valid_refuses_everyone(
    slash: Slash, fake: FakeSlack, store: Store, pool: asyncpg.Pool
) -> None:
    """The issue's example, as a row stored before configs were validated: a string where
    the list of users belongs let everyone deploy. Now nobody can, until it is fixed."""
    service = await add(store, "web")
    await pool.execute(
        "UPDATE services SET config = $2 WHERE id = $1",
        service.id,
        {"slack": {"users": USER}},
    )
    for who in ("U0MALLORY", USER):
        await slash("web", user=who)
        await eventually(lambda who=who: fake.ephemeral_texts(who))
        assert (
            "`web` cannot be deployed until an admin fixes its config"
            in (fake.ephemeral_texts(who)[0])
        )
    assert await pool.fetchval("SELECT count(*) FROM deployments") == 0


async def test_a_protected_service_asks_for_confirmation_first(
    slash: Slash, click: Click, fake: FakeSlack, store: Store, pool: asyncpg.Pool
) -> None:
    await add(store, "api", protected=True)
    await slash("api v2")
    await eventually(lambda: fake.called("chat.postEphemeral"))
    prompt = fake.called("chat.postEphemeral")[0].args
    assert prompt["user"] == USER and prompt["channel"] == CHANNEL
    button = prompt["blocks"][1]["elements"][0]
    assert button["action_id"] == "deploy_confirm" and "confirm" in button
    assert await pool.fetchval("SELECT count(*) FROM deployments") == 0
    assert await click("deploy_confirm", button["value"]) == 200
    deployment = await only_deployment(pool)
    assert deployment.ref == "v2"
    # Its message offers Redeploy behind a confirm dialog too.
    message = await eventually(lambda: final_message(fake, "queued"))
    redeploy = next(
        element
        for block in message.blocks
        if block["type"] == "actions"
        for element in block["elements"]
        if element["action_id"] == "deploy_redeploy"
    )
    assert "confirm" in redeploy
    # A rollback of a protected service is confirmed first too.
    await slash("rollback api")
    await eventually(lambda: len(fake.called("chat.postEphemeral")) == 2)
    question = fake.called("chat.postEphemeral")[1].args["blocks"][1]["elements"][0]
    assert json.loads(question["value"])["rollback"] is True
    await click("deploy_confirm", question["value"])
    await eventually(lambda: len(fake.called("chat.postEphemeral")) == 3)
    assert "api (production) has never been deployed" in fake.ephemeral_texts()[2]
    assert await pool.fetchval("SELECT count(*) FROM deployments") == 1


async def test_rollback_and_redeploy_from_slack(
    slash: Slash,
    click: Click,
    fake: FakeSlack,
    store: Store,
    queue: Queue,
    pool: asyncpg.Pool,
) -> None:
    service = await add(store, "web")
    await slash("rollback web")
    await eventually(lambda: fake.ephemeral_texts())
    assert "web (production) has never been deployed" in fake.ephemeral_texts()[0]
    earlier = await queue.enqueue(service.id, ref="main", commit_sha="a" * 40)
    await click("deploy_redeploy", str(earlier.id))
    deadline = time.monotonic() + PATIENCE
    while await pool.fetchval("SELECT count(*) FROM deployments") < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    again = Deployment.from_row(
        await pool.fetchrow("SELECT * FROM deployments ORDER BY id DESC LIMIT 1")
    )
    assert (again.commit_sha, again.trigger["source"]) == ("a" * 40, "slack")


async def test_github_deployments_are_announced_in_the_services_channel_despite_rate_limits(
    client: Client, fake: FakeSlack, store: Store, queue: Queue, pool: asyncpg.Pool
) -> None:
    service = await add(store, "web", slack_channel="C0ANNOUNCE")
    quiet = await add(store, "quiet")
    fake.failures.append(("chat.postMessage", 429, {"Retry-After": "1"}))
    started = time.monotonic()
    trigger = {"source": "github", "actor": "octocat", "reason": "push", "answer": {}}
    deployment = await queue.enqueue(service.id, ref="main", trigger=trigger)
    message = await eventually(lambda: fake.top_level("C0ANNOUNCE"))
    assert time.monotonic() - started >= 0.9  # Retry-After was honoured
    assert f"#{deployment.id}" in message[0].text and "queued" in message[0].text
    assert "via github" in json.dumps(message[0].blocks)
    assert len(fake.called("chat.postMessage")) == 2  # the refused one, then the real one
    # A service without a channel, a deployment not from Slack: nothing for Slack at all.
    for answer in ({}, {"github": {"repo": "acme/quiet"}}):
        other = await queue.enqueue(quiet.id, trigger={"source": "cli", "answer": answer})
        await queue.cancel(other.id)
    await queue.enqueue(quiet.id, trigger={"source": "cli"})
    rows = await pool.fetch("SELECT deployment_id FROM outbox WHERE target = 'slack'")
    assert [row["deployment_id"] for row in rows] == [deployment.id]


async def test_signed_nonsense_gets_no_5xx_and_no_traceback(
    client: Client, fake: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    bodies = {
        "/slack/commands": [b"garbage", b"\xff\xfe", b"command=%2Fdeploy"],
        "/slack/interactivity": [b"payload=notjson", b"payload=%7B%7D", b""],
        "/slack/events": [b"{}", b"[1, 2]", b'{"type": "event_callback", "event": {}}'],
    }
    for path, items in bodies.items():
        for body in items:
            response = await client.post(path, data=body, headers=sign(body))
            assert response.status < 500, (path, body, response.status)
            assert "Traceback" not in await response.text()
    assert fake.called("chat.postMessage") == []
    assert [record for record in caplog.records if record.exc_info] == []


async def test_a_reply_slack_refuses_is_logged_not_raised(
    slash: Slash, fake: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    fake.errors.append(("chat.postEphemeral", "channel_not_found"))
    assert await slash("help") == 200
    await eventually(lambda: fake.called("chat.postEphemeral"))
    assert await slash("help") == 200
    await eventually(lambda: len(fake.called("chat.postEphemeral")) == 2)
    # Not a sleep: until bolt's listeners (which log the refusal) have all ended.
    await eventually(lambda: not bolt_listeners())
    assert [record for record in caplog.records if record.exc_info] == []


def bolt_listeners() -> list[asyncio.Task[Any]]:
    """The listeners bolt still runs after acknowledging (`run_ack_function_asynchronously`)."""
    return [
        task
        for task in asyncio.all_tasks()
        if "run_ack_function" in getattr(task.get_coro(), "__qualname__", "") and not task.done()
    ]


async def test_updates_are_throttled_and_the_final_state_always_goes_out(
    slack_settings: Settings,
    fake: FakeSlack,
    pool: asyncpg.Pool,
    database_url: str,
    store: Store,
    queue: Queue,
    start_worker: StartWorker,
) -> None:
    from bot.runtime import Runtime

    throttled = slack_settings.model_copy(update={"report_throttle_seconds": 2.5})
    app = web.Application()
    slack_setup(app, Runtime(throttled, database_url, pool, store, Queue(pool, throttled)))
    service = await add(store, "web", slack_channel=CHANNEL)
    async with TestClient(TestServer(app)):
        deployment = await queue.enqueue(
            service.id, ref="main", trigger={"source": "cli", "script": {"sleep": 1.0}}
        )
        await start_worker(ScriptedPipeline())
        await wait_for_status(store, deployment.id, Status.SUCCEEDED)
        message = await eventually(lambda: final_message(fake, "succeeded"))
    # Six changes (cloning, building, step 1, pushing, step 2, succeeded) within about a
    # second of the first post: nothing more inside the 2.5 s throttle, then the final state
    # (once more if a slow machine lets the throttle run out before the build ends).
    assert 1 <= message.edits <= 2


async def test_status_and_list_obey_who_may_deploy(
    slash: Slash, fake: FakeSlack, store: Store, queue: Queue
) -> None:
    """Someone refused deploys of a service gets none of its deployments or signed links,
    however they ask."""
    web_service = await add(store, "web", slack={"users": [USER]})
    open_service = await add(store, "docs")
    secret_one = await queue.enqueue(web_service.id, ref="main")
    open_one = await queue.enqueue(open_service.id, ref="main")
    mallory = "U0MALLORY"
    for text in (f"status {secret_one.id}", "status web", "status", "list"):
        before = len(fake.ephemeral_texts(mallory))
        assert await slash(text, user=mallory) == 200
        await eventually(lambda before=before: len(fake.ephemeral_texts(mallory)) > before)
        answer = fake.ephemeral_texts(mallory)[-1]
        assert f"/deployments/{secret_one.id}?s=" not in answer, (text, answer)
        assert f"#{secret_one.id}" not in answer, (text, answer)
        if text.startswith("status ") and text != "status":
            assert "you are not allowed to deploy `web`" in answer, answer
            assert "Its deployments are not shown." in answer, answer
    status_all, listing = fake.ephemeral_texts(mallory)[2:4]
    assert f"/deployments/{open_one.id}?s=" in status_all  # what they may deploy shows
    assert "1 service(s) you may not deploy from here are not shown" in status_all
    assert "`web` (acme/web@main): not yours to deploy from here" in listing
    assert "`docs` (acme/docs@main): never deployed" in listing
    # The one allowed sees it, link and all.
    assert await slash(f"status {secret_one.id}") == 200
    await eventually(lambda: fake.ephemeral_texts(USER))
    assert f"/deployments/{secret_one.id}?s=" in fake.ephemeral_texts(USER)[-1]


async def test_buttons_obey_the_same_rule_and_say_what_did_not_happen(
    click: Click, fake: FakeSlack, store: Store, queue: Queue, pool: asyncpg.Pool
) -> None:
    """A Cancel or Redeploy button in a message someone else may see is the runner's
    command for whoever clicks it: refused for the one not allowed, nothing changed."""
    service = await add(store, "web", slack={"users": [USER]})
    queued = await queue.enqueue(service.id, ref="main")
    mallory = "U0MALLORY"
    assert await click("deploy_cancel", str(queued.id), user=mallory) == 200
    await eventually(lambda: fake.ephemeral_texts(mallory))
    assert "you are not allowed to deploy `web`" in fake.ephemeral_texts(mallory)[0]
    assert "Nothing was cancelled." in fake.ephemeral_texts(mallory)[0]
    assert await click("deploy_redeploy", str(queued.id), user=mallory) == 200
    await eventually(lambda: len(fake.ephemeral_texts(mallory)) == 2)
    assert "Nothing was queued." in fake.ephemeral_texts(mallory)[1]
    assert (await store.get_deployment(queued.id)).status == Status.QUEUED
    assert await pool.fetchval("SELECT count(*) FROM deployments") == 1
    # The one allowed cancels it, and is told so.
    assert await click("deploy_cancel", str(queued.id)) == 200
    await eventually(lambda: fake.ephemeral_texts(USER))
    assert f"Deployment #{queued.id} of `web` was cancelled." in fake.ephemeral_texts(USER)[0]
    assert (await store.get_deployment(queued.id)).status == Status.CANCELLED
