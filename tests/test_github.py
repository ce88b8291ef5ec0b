"""The GitHub App front end: webhooks (signature, limits, dedupe), pushes, previews,
comment commands and check run re-requests, against a fake GitHub that checks every
request against GitHub's OpenAPI description; GitHub's real example payloads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_core import OpenAPI
from pydantic import SecretStr

from bot.github.setup import setup as github_setup
from bot.reporting.render import COMMENT_MARKER
from bot.runtime import Runtime
from pipeline.models import Service
from pipeline.queue.queue import Queue
from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import NewService, Store
from tests.support import fake_github
from tests.support.fake_github import FakeGitHub
from tests.support.github_hooks import SECRET, example, private_key_pem, signed
from tests.support.npm_cache import OPENAPI, WEBHOOK_EXAMPLES, npm_file
from tests.support.waiting import PATIENCE

REPO = "Codertocat/Hello-World"
INSTALLATION = {"id": 42}


@pytest.fixture(scope="session")
def github_openapi() -> OpenAPI:
    return fake_github.build_validator(str(npm_file(*OPENAPI)))


@pytest.fixture(scope="session")
def examples_path() -> Path:
    return npm_file(*WEBHOOK_EXAMPLES)


@pytest.fixture
async def fake(github_openapi: OpenAPI) -> AsyncIterator[FakeGitHub]:
    fake = FakeGitHub(github_openapi)
    runner = await fake_github.start(fake)
    yield fake
    await runner.cleanup()


@pytest.fixture
def gh_settings(settings: Settings, fake: FakeGitHub) -> Settings:
    return settings.model_copy(
        update={
            "github_webhook_secret": SecretStr(SECRET),
            "github_app_id": "1234",
            "github_private_key": SecretStr(private_key_pem()),
            "github_api_url": fake.url,
            "report_poll_seconds": 0.05,
            "report_throttle_seconds": 0.0,
            "webhook_max_bytes": 64 * 1024,
            "public_url": "https://deploy.example.com",
        }
    )


Post = Callable[..., Awaitable[tuple[int, dict[str, Any]]]]


@pytest.fixture
async def client(
    gh_settings: Settings, pool: asyncpg.Pool, database_url: str, store: Store
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    runtime = Runtime(gh_settings, database_url, pool, store, Queue(pool, gh_settings))
    github_setup(app, runtime)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.fixture
def post(client: TestClient[web.Request, web.Application]) -> Post:
    async def send(
        event: str, payload: Any, *, delivery: str | None = None, **header_changes: str
    ) -> tuple[int, dict[str, Any]]:
        body, headers = signed(event, payload, delivery=delivery)
        headers.update(header_changes)
        response = await client.post("/webhooks/github", data=body, headers=headers)
        return response.status, await response.json()

    return send


async def add(store: Store, name: str, branch: str = "master", **config: Any) -> Service:
    return await store.create_service(
        NewService(
            name, REPO, "github", branch=branch, root_dir=config.pop("root_dir", "."), config=config
        )
    )


async def settle(fake: FakeGitHub, count: int, timeout: float = PATIENCE) -> None:
    """Wait until the fake has seen `count` requests (follow-ups run after the answer)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while len(fake.requests) < count and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)


async def settle_calls(
    fake: FakeGitHub, method: str, pattern: str, count: int, timeout: float = PATIENCE
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while len(fake.calls(method, pattern)) < count:
        assert asyncio.get_running_loop().time() < deadline, fake.requests
        await asyncio.sleep(0.02)


def push_payload(examples_path: Path, **changes: Any) -> dict[str, Any]:
    payload = example(examples_path, "push", 4, installation=INSTALLATION)
    payload.update(changes)
    return payload


# --- ingress -----------------------------------------------------------------------------


async def test_signature_content_type_size_and_json_rules(
    client: TestClient[web.Request, web.Application], examples_path: Path
) -> None:
    payload = push_payload(examples_path)
    body, headers = signed("push", payload)

    async def status(data: bytes, **changes: str | None) -> int:
        sent = {**headers, **changes}
        response = await client.post(
            "/webhooks/github", data=data, headers={k: v for k, v in sent.items() if v}
        )
        assert response.content_type == "application/json"
        return response.status

    assert await status(body, **{"X-Hub-Signature-256": None}) == 401
    assert await status(body, **{"X-Hub-Signature-256": "sha256=" + "0" * 64}) == 401
    assert await status(body + b" ") == 401  # changed after signing
    _, wrong_secret = signed("push", payload, secret="another")
    assert await status(body, **{"X-Hub-Signature-256": wrong_secret["X-Hub-Signature-256"]}) == 401
    text, text_headers = signed("push", payload)
    assert await status(text, **{**text_headers, "Content-Type": "text/plain"}) == 415
    bad, bad_headers = b"{not json", signed("push", {})[1]
    import hashlib
    import hmac

    bad_headers["X-Hub-Signature-256"] = (
        "sha256=" + hmac.new(SECRET.encode(), bad, hashlib.sha256).hexdigest()
    )
    assert await status(bad, **bad_headers) == 400
    big = b"{" + b" " * (70 * 1024) + b"}"
    assert await status(big) == 413
    ping_body, ping_headers = signed("ping", example(examples_path, "ping"))
    assert (
        await client.post("/webhooks/github", data=ping_body, headers=ping_headers)
    ).status == 200
    star_body, star_headers = signed("star", {"action": "created"})
    assert (
        await client.post("/webhooks/github", data=star_body, headers=star_headers)
    ).status == 202


async def test_a_signed_push_queues_one_production_deployment_and_a_redelivery_nothing(
    post: Post, store: Store, pool: asyncpg.Pool, examples_path: Path
) -> None:
    service = await add(store, "hello")
    payload = push_payload(examples_path)
    status, answer = await post("push", payload, delivery="d-1")
    assert status == 200, answer
    assert len(answer["deployments"]) == 1
    deployment = await store.get_deployment(answer["deployments"][0])
    assert deployment.service_id == service.id
    assert deployment.environment == "production"
    assert deployment.commit_sha == payload["after"]
    assert deployment.trigger["source"] == "github"
    assert deployment.trigger["answer"]["github"] == {
        "repo": REPO,
        "installation_id": 42,
        "head_sha": payload["after"],
    }
    again, answer = await post("push", payload, delivery="d-1")
    assert again == 200 and answer["message"] == "duplicate delivery"
    assert await pool.fetchval("SELECT count(*) FROM deployments") == 1
    row = await pool.fetchrow("SELECT * FROM webhook_deliveries WHERE delivery_id = 'd-1'")
    assert row["event"] == "push" and row["deployment_ids"] == [deployment.id]


async def test_concurrent_redeliveries_make_one_deployment(
    post: Post, store: Store, pool: asyncpg.Pool, examples_path: Path
) -> None:
    await add(store, "hello")
    payload = push_payload(examples_path)
    results = await asyncio.gather(*(post("push", payload, delivery="same") for _ in range(8)))
    assert all(status == 200 for status, _ in results)
    assert await pool.fetchval("SELECT count(*) FROM deployments") == 1


async def test_push_skips_deletions_tags_markers_and_untouched_services(
    post: Post, store: Store, pool: asyncpg.Pool, examples_path: Path
) -> None:
    await add(store, "api", root_dir="services/api")
    await add(store, "web", root_dir="web", watch=["shared"])
    base = push_payload(examples_path)
    commit = dict(base["commits"][0], added=["services/api/main.py"], modified=[], removed=[])

    _, answer = await post("push", {**base, "commits": [commit]})
    queued = [
        await pool.fetchval(
            "SELECT s.name FROM deployments d JOIN services s ON "
            "s.id = d.service_id WHERE d.id = $1",
            i,
        )
        for i in answer["deployments"]
    ]
    assert queued == ["api"]
    shared = dict(commit, added=["shared/lib.py"])
    _, answer = await post("push", {**base, "commits": [shared]})
    assert len(answer["deployments"]) == 1
    docs = dict(commit, added=["docs/readme.md"])
    _, answer = await post("push", {**base, "commits": [docs]})
    assert answer["deployments"] == [] and "nothing under" in answer["message"]

    head = dict(base["head_commit"], message="Fix typo [skip ci]")
    _, answer = await post("push", {**base, "head_commit": head})
    assert answer["deployments"] == [] and answer["message"].startswith("skipped")
    _, answer = await post("push", {**base, "deleted": True, "after": "0" * 40})
    assert answer["message"] == "ignored: branch deleted"
    tag = example(examples_path, "push", 0, installation=INSTALLATION)
    _, answer = await post("push", tag)
    assert answer["message"] == "ignored: not a branch"


async def test_pull_requests_deploy_previews_but_never_forks(
    post: Post, store: Store, examples_path: Path
) -> None:
    await add(store, "hello", previews=True)
    await add(store, "quiet")  # no previews
    payload = example(examples_path, "pull_request", 0, installation=INSTALLATION)
    status, answer = await post("pull_request", payload)
    assert status == 200, answer
    assert len(answer["deployments"]) == 1
    deployment = await store.get_deployment(answer["deployments"][0])
    number = payload["pull_request"]["number"]
    assert deployment.environment == f"pr-{number}"
    assert deployment.commit_sha == payload["pull_request"]["head"]["sha"]
    assert deployment.trigger["answer"]["github"]["pr"] == number

    fork = example(examples_path, "pull_request", 0, installation=INSTALLATION)
    fork["pull_request"]["head"]["repo"]["full_name"] = "stranger/Hello-World"
    status, answer = await post("pull_request", fork)
    assert status == 200 and answer["deployments"] == []
    assert "forks" in answer["message"]


def comment_payload(examples_path: Path, body: str, login: str = "Codertocat") -> dict[str, Any]:
    payload = example(examples_path, "issue_comment", 3, installation=INSTALLATION)
    payload["comment"]["body"] = body
    payload["comment"]["user"]["login"] = login
    payload["issue"]["pull_request"] = {"url": "https://api.github.com/repos/x/y/pulls/1"}
    return payload


def pull(number: int, sha: str) -> dict[str, Any]:
    return {
        "number": number,
        "head": {"sha": sha, "ref": "feature", "repo": {"full_name": REPO}},
        "base": {"ref": "master", "repo": {"full_name": REPO}},
    }


async def test_a_maintainer_comment_deploys_with_eyes_and_others_are_refused_politely(
    post: Post, store: Store, pool: asyncpg.Pool, fake: FakeGitHub, examples_path: Path
) -> None:
    await add(store, "hello")
    fake.permissions.update({"maintainer": "write", "visitor": "read"})
    payload = comment_payload(examples_path, "/deploy", "maintainer")
    number = payload["issue"]["number"]
    fake.pulls[number] = pull(number, "a" * 40)

    status, answer = await post("issue_comment", payload)
    assert status == 200, answer
    assert len(answer["deployments"]) == 1
    deployment = await store.get_deployment(answer["deployments"][0])
    assert deployment.environment == f"pr-{number}" and deployment.commit_sha == "a" * 40
    assert deployment.trigger["answer"]["github"]["comment_id"] == payload["comment"]["id"]
    await settle_calls(fake, "POST", r".*/issues/comments/\d+/reactions", 1)
    reactions = fake.calls("POST", r".*/issues/comments/\d+/reactions")
    assert [r.body["content"] for r in reactions] == ["eyes"]

    refused = comment_payload(examples_path, "/deploy", "visitor")
    before = len(fake.requests)
    status, answer = await post("issue_comment", refused)
    assert status == 200 and answer["message"] == "refused" and answer["deployments"] == []
    await settle(fake, before + 3)

    def replies() -> list[str]:
        return [
            r.body["body"]
            for r in fake.calls("POST", r".*/issues/\d+/comments")
            if "click-deploy -->" not in r.body["body"]
        ]

    # The reporter's requests (check run, status, deployment) count too: wait for the reply.
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while not replies() or not fake.calls("POST", r".*/reactions")[1:]:
        assert asyncio.get_running_loop().time() < deadline, fake.requests
        await asyncio.sleep(0.02)
    assert "needs write access" in replies()[-1]
    assert fake.calls("POST", r".*/reactions")[-1].body["content"] == "confused"
    assert await pool.fetchval("SELECT count(*) FROM deployments") == 1
    assert fake.invalid == []


async def test_protected_services_need_the_allowlist(
    post: Post, store: Store, fake: FakeGitHub, examples_path: Path
) -> None:
    await add(store, "hello", protected=True, allow=["boss"])
    fake.permissions.update({"maintainer": "admin", "boss": "write"})
    payload = comment_payload(examples_path, "/deploy hello", "maintainer")
    number = payload["issue"]["number"]
    fake.pulls[number] = pull(number, "b" * 40)
    _, answer = await post("issue_comment", payload)
    assert answer["message"] == "refused"
    _, answer = await post("issue_comment", comment_payload(examples_path, "/deploy", "boss"))
    assert len(answer["deployments"]) == 1


async def test_a_stored_config_that_is_not_valid_refuses_comment_deploys(
    post: Post, store: Store, fake: FakeGitHub, examples_path: Path, pool: asyncpg.Pool
) -> None:
    """A config written before it was validated: "protectd" (a typo) used to leave the
    service unprotected; now an invalid config refuses every deploy from comments."""
    service = await add(store, "hello")
    await pool.execute(
        "UPDATE services SET config = $2 WHERE id = $1", service.id, {"protectd": True}
    )
    fake.permissions.update({"maintainer": "admin"})
    payload = comment_payload(examples_path, "/deploy hello", "maintainer")
    fake.pulls[payload["issue"]["number"]] = pull(payload["issue"]["number"], "b" * 40)
    _, answer = await post("issue_comment", payload)
    assert answer["message"] == "refused"
    await settle_calls(fake, "POST", r".*/issues/\d+/comments", 1)
    reply = fake.calls("POST", r".*/issues/\d+/comments")[-1].body["body"]
    assert "`hello` cannot be deployed until an admin fixes its config" in reply
    assert "protectd" not in reply  # the problem is in the log, not on the pull request
    assert await pool.fetchval("SELECT count(*) FROM deployments") == 0


async def test_bots_help_and_typos(
    post: Post, store: Store, fake: FakeGitHub, examples_path: Path
) -> None:
    await add(store, "hello")
    bot = comment_payload(examples_path, "/deploy", "click-deploy[bot]")
    _, answer = await post("issue_comment", bot)
    assert answer["message"] == "ignored: a bot's comment"
    _, answer = await post("issue_comment", comment_payload(examples_path, "nice work"))
    assert answer["message"] == "ignored: not a command"
    _, answer = await post("issue_comment", comment_payload(examples_path, "/deploy statsu"))
    assert answer["message"] == "replied: suggestion"
    await settle_calls(fake, "POST", r".*/comments", 1)
    assert "Did you mean `/deploy status`" in fake.calls("POST", r".*/comments")[-1].body["body"]
    assert fake.invalid == []


async def test_check_run_rerequested_redeploys_that_commit(
    post: Post, store: Store, examples_path: Path
) -> None:
    await add(store, "hello")
    _, answer = await post("push", push_payload(examples_path))
    first = answer["deployments"][0]
    payload = example(examples_path, "check_run", 7, installation=INSTALLATION)
    payload["check_run"]["external_id"] = str(first)
    payload["repository"]["full_name"] = REPO
    status, answer = await post("check_run", payload)
    assert status == 200, answer
    assert answer["deployments"], answer
    again = await store.get_deployment(answer["deployments"][0])
    assert again.commit_sha == payload["check_run"]["head_sha"]
    assert again.trigger["reason"] == "check_run.rerequested"
    foreign = example(examples_path, "check_run", 7, installation=INSTALLATION)
    _, answer = await post("check_run", foreign)
    assert answer["deployments"] == []


async def test_installation_events_are_acknowledged(post: Post, examples_path: Path) -> None:
    status, answer = await post("installation", example(examples_path, "installation", 1))
    assert status == 200 and answer["message"] == "installation created"


async def test_a_payload_without_what_its_event_needs_is_400(post: Post) -> None:
    status, answer = await post("push", {"ref": "refs/heads/main"})
    assert status == 400 and "repository" in answer["message"]


async def test_reports_wait_out_rate_limits_and_come_from_the_outbox(
    post: Post, store: Store, pool: asyncpg.Pool, fake: FakeGitHub, examples_path: Path
) -> None:
    from bot.github.client import retry_delay

    assert retry_delay({"Retry-After": "7"}, 1.0) == 7.0
    assert retry_delay({"X-RateLimit-Remaining": "5"}, 1.0) == 1.0
    await add(store, "hello")
    fake.failures.append(("POST", r"/repos/.*/check-runs", 429, {"Retry-After": "1"}))
    _, answer = await post("push", push_payload(examples_path))
    await settle_calls(fake, "POST", r"/repos/.*/check-runs", 2)
    _first, second = fake.calls("POST", r"/repos/.*/check-runs")
    assert second.body["status"] == "queued" and second.body["external_id"] == str(
        answer["deployments"][0]
    )
    await settle_calls(fake, "POST", r"/repos/.*/statuses/.*", 1)
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while await pool.fetchval("SELECT count(*) FROM outbox WHERE delivered_at IS NULL"):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    assert fake.invalid == []


async def _succeeded(pool: asyncpg.Pool, service: Service, image: str, digest: str) -> int:
    """A finished production deployment, as history (no build needed for a rollback)."""
    deployment_id: int = await pool.fetchval(
        "INSERT INTO deployments (service_id, environment, commit_sha, status, image, digest,"
        " finished_at) VALUES ($1, 'production', $2, 'succeeded', $3, $4, now()) RETURNING id",
        service.id,
        digest[-40:],
        image,
        digest,
    )
    await pool.execute(
        "INSERT INTO service_images (service_id, environment, deployment_id, image, digest)"
        " VALUES ($1, 'production', $2, $3, $4) ON CONFLICT (service_id, environment)"
        " DO UPDATE SET deployment_id = excluded.deployment_id, image = excluded.image,"
        " digest = excluded.digest",
        service.id,
        deployment_id,
        image,
        digest,
    )
    return deployment_id


async def test_rollback_comment_queues_the_previous_image(
    post: Post, store: Store, pool: asyncpg.Pool, fake: FakeGitHub, examples_path: Path
) -> None:
    service = await add(store, "hello")
    fake.permissions.update({"maintainer": "write"})
    _, answer = await post(
        "issue_comment", comment_payload(examples_path, "/deploy rollback", "maintainer")
    )
    assert answer["message"] == "refused" and answer["deployments"] == []
    await settle_calls(fake, "POST", r".*/issues/\d+/comments", 1)
    said = fake.calls("POST", r".*/issues/\d+/comments")[-1].body["body"]
    assert "Nothing was queued" in said and "never been deployed" in said

    older = await _succeeded(pool, service, "r/hello:old", "sha256:" + "1" * 64)
    await _succeeded(pool, service, "r/hello:new", "sha256:" + "2" * 64)
    _, answer = await post(
        "issue_comment", comment_payload(examples_path, "/deploy rollback hello", "maintainer")
    )
    assert answer["message"] == "queued" and len(answer["deployments"]) == 1
    queued = await store.get_deployment(answer["deployments"][0])
    assert (queued.environment, queued.trigger["rollback_to"]) == ("production", older)
    assert queued.commit_sha == "1" * 40
    assert fake.invalid == []


async def test_status_and_cancel_obey_the_allowlist_too(
    post: Post, store: Store, fake: FakeGitHub, examples_path: Path
) -> None:
    """A commenter who may not deploy a protected service sees none of its deployments'
    links in `/deploy status`, and cannot cancel them."""
    await add(store, "hello", protected=True, allow=["boss"])
    await add(store, "docs")
    fake.permissions.update({"maintainer": "admin", "boss": "write"})
    payload = comment_payload(examples_path, "/deploy", "boss")
    number = payload["issue"]["number"]
    fake.pulls[number] = pull(number, "c" * 40)
    _, answer = await post("issue_comment", payload)
    ids = answer["deployments"]
    assert len(ids) == 2
    by_name = {(await store.get_deployment(one)).service_name: one for one in ids}

    def replies() -> list[str]:
        return [
            r.body["body"]
            for r in fake.calls("POST", r".*/issues/\d+/comments")
            if "click-deploy -->" not in r.body["body"]
        ]

    async def reply_to(body: str, login: str) -> tuple[dict[str, Any], str]:
        before = len(replies())
        _, answer = await post("issue_comment", comment_payload(examples_path, body, login))
        deadline = asyncio.get_running_loop().time() + 5
        while len(replies()) == before:
            assert asyncio.get_running_loop().time() < deadline, fake.requests
            await asyncio.sleep(0.02)
        return answer, replies()[-1]

    answer, said = await reply_to("/deploy status", "maintainer")
    assert answer["message"] == "status"
    assert f"/deployments/{by_name['docs']}?s=" in said
    assert f"/deployments/{by_name['hello']}" not in said and "hello" not in said
    assert "1 protected service(s) you are not on the allowlist of: not shown" in said
    answer, said = await reply_to("/deploy status hello", "maintainer")
    assert f"/deployments/{by_name['hello']}" not in said, said
    answer, said = await reply_to("/deploy cancel", "maintainer")
    assert answer["message"] == "refused" and "Nothing was cancelled" in said
    for one in ids:
        assert not (await store.get_deployment(one)).cancel_requested
        assert (await store.get_deployment(one)).status == "queued"
    answer, said = await reply_to("/deploy status", "boss")
    assert all(f"/deployments/{one}?s=" in said for one in ids), said
    assert fake.invalid == []


async def test_a_rerequested_check_run_of_a_protected_service_needs_the_allowlist(
    post: Post, store: Store, queue: Queue, fake: FakeGitHub, examples_path: Path
) -> None:
    service = await add(store, "hello", protected=True, allow=["boss", "@acme/ops"])
    first = await queue.enqueue(service.id, ref="master", commit_sha="d" * 40)
    payload = example(examples_path, "check_run", 7, installation=INSTALLATION)
    payload["check_run"]["external_id"] = str(first.id)
    payload["repository"]["full_name"] = REPO
    payload["sender"]["login"] = "maintainer"
    status, answer = await post("check_run", payload)
    assert status == 200 and answer["deployments"] == [], answer
    assert answer["message"].startswith("refused: hello is protected"), answer
    payload["sender"]["login"] = "boss"
    _, answer = await post("check_run", payload)
    assert len(answer["deployments"]) == 1, answer
    assert fake.invalid == []


async def test_deploy_on_a_pull_request_deploys_the_services_it_touches(
    post: Post, store: Store, fake: FakeGitHub, examples_path: Path
) -> None:
    """Several services in one repository: `/deploy` deploys those whose root directory or
    watch paths the pull request's files are under; none touched, it says what to type."""
    await add(store, "web", root_dir="web")
    await add(store, "api", root_dir="services/api", watch=["shared"])
    await add(store, "docs", root_dir="docs")
    fake.permissions["maintainer"] = "write"
    payload = comment_payload(examples_path, "/deploy", "maintainer")
    number = payload["issue"]["number"]
    fake.pulls[number] = pull(number, "a" * 40)
    fake.pull_files[number] = ["web/index.html", "shared/util.py", "README.md"]

    status, answer = await post("issue_comment", payload)
    assert status == 200 and answer["message"] == "queued", answer
    deployed = [(await store.get_deployment(i)).service_name for i in answer["deployments"]]
    assert sorted(deployed) == ["api", "web"]
    [files_call] = fake.calls("GET", rf"/repos/{REPO}/pulls/{number}/files")
    assert files_call.status == 200

    # Nothing of a service changed: nothing queued, the services and the command to type.
    fake.pull_files[number] = ["README.md"]
    status, answer = await post(
        "issue_comment", comment_payload(examples_path, "/deploy", "maintainer")
    )
    assert answer["message"] == "replied: which service" and answer["deployments"] == []

    def answers() -> list[str]:  # not the reporter's comment, which may come at any time
        posted = fake.calls("POST", rf".*/issues/{number}/comments")
        return [call.body["body"] for call in posted if COMMENT_MARKER not in call.body["body"]]

    deadline = asyncio.get_running_loop().time() + PATIENCE
    while not answers():
        assert asyncio.get_running_loop().time() < deadline, fake.requests
        await asyncio.sleep(0.02)
    [said] = answers()
    assert "nothing was queued" in said and "`api`, `docs`, `web`" in said
    assert "`/deploy api`" in said

    # Naming a service deploys it whatever the files.
    named = comment_payload(examples_path, "/deploy docs", "maintainer")
    _, answer = await post("issue_comment", named)
    [only] = answer["deployments"]
    assert (await store.get_deployment(only)).service_name == "docs"
    assert fake.invalid == []


def button(examples_path: Path, deployment_id: int, identifier: str, login: str) -> Any:
    """check_run.requested_action: `login` pressed the button `identifier`."""
    payload = example(examples_path, "check_run", 6, installation=INSTALLATION)
    assert payload["action"] == "requested_action"
    payload["check_run"]["external_id"] = str(deployment_id)
    payload["repository"]["full_name"] = REPO
    payload["sender"]["login"] = login
    payload["requested_action"] = {"identifier": identifier}
    return payload


async def test_check_run_buttons_cancel_redeploy_and_roll_back_by_the_comment_rules(
    post: Post, store: Store, pool: asyncpg.Pool, fake: FakeGitHub, examples_path: Path
) -> None:
    """The check run offers Cancel while a deployment waits or runs and Redeploy once it is
    over; a press obeys the rules of `/deploy` comments (write access, the allowlist)."""
    service = await add(store, "hello", protected=True, allow=["maintainer"])
    fake.permissions.update({"maintainer": "write", "visitor": "read", "writer": "write"})
    _, answer = await post("push", push_payload(examples_path))
    [first] = answer["deployments"]
    await settle_calls(fake, "POST", r"/repos/.*/check-runs", 1, PATIENCE)
    created = fake.calls("POST", r"/repos/.*/check-runs")[0].body
    assert [action["identifier"] for action in created["actions"]] == ["cancel"]

    for login, why in (("visitor", "lacks write access"), ("writer", "not on its allowlist")):
        status, answer = await post("check_run", button(examples_path, first, "cancel", login))
        assert status == 200 and answer["message"].startswith("refused"), answer
        assert why in answer["message"]
    assert (await store.get_deployment(first)).status == Status.QUEUED
    _, answer = await post("check_run", button(examples_path, first, "cancel", "maintainer"))
    assert answer["message"] == "cancel: cancelled", answer
    assert (await store.get_deployment(first)).status == Status.CANCELLED

    async def offered() -> list[str]:
        deadline = asyncio.get_running_loop().time() + PATIENCE
        while True:
            actions = fake.latest_check_run().get("actions", [])
            if [a["identifier"] for a in actions] != ["cancel"]:
                return [a["identifier"] for a in actions]
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)

    assert await offered() == ["redeploy"]  # nothing earlier to roll back to
    _, answer = await post("check_run", button(examples_path, first, "redeploy", "maintainer"))
    [again] = answer["deployments"]
    redeployed = await store.get_deployment(again)
    assert redeployed.trigger["reason"] == "check_run.redeploy"
    assert redeployed.trigger["actor"] == "maintainer"

    # Rollback: production goes back to the previous good image.
    older = await _succeeded(pool, service, "registry/hello:old", "sha256:" + "1" * 64)
    await _succeeded(pool, service, "registry/hello:new", "sha256:" + "2" * 64)
    _, answer = await post("check_run", button(examples_path, first, "rollback", "maintainer"))
    [rollback] = answer["deployments"]
    assert (await store.get_deployment(rollback)).trigger["rollback_to"] == older
    _, answer = await post("check_run", button(examples_path, first, "merge", "maintainer"))
    assert answer["message"].startswith("ignored: no button") and answer["deployments"] == []
    assert fake.invalid == []


def test_check_run_actions_follow_the_state() -> None:
    from bot.github.check_runs import check_run_actions

    def deployment(status: Status, environment: str = "production") -> Any:
        return type("D", (), {"status": status, "environment": environment})()

    def names(actions: list[dict[str, str]]) -> list[str]:
        return [action["identifier"] for action in actions]

    for status in (Status.QUEUED, Status.CLONING, Status.BUILDING, Status.PUSHING):
        assert names(check_run_actions(deployment(status), True)) == ["cancel"]
    assert names(check_run_actions(deployment(Status.SUCCEEDED), True)) == ["redeploy", "rollback"]
    assert names(check_run_actions(deployment(Status.FAILED), False)) == ["redeploy"]
    assert names(check_run_actions(deployment(Status.SUCCEEDED, "pr-3"), True)) == ["redeploy"]
    for actions in (check_run_actions(deployment(s), True) for s in Status):
        assert len(actions) <= 3
        assert all(len(a["label"]) <= 20 and len(a["identifier"]) <= 20 for a in actions)
        assert all(len(a["description"]) <= 40 for a in actions)
