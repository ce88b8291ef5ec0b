"""The GitLab front end: the webhook (token, limits, dedupe), pushes, merge request previews,
`/deploy` notes with authorization, and reporting (commit statuses, one MR note edited in
place) against a fake GitLab that checks what GitLab documents; payloads shaped as
GitLab's webhook documentation shows them."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
import structlog.testing
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from bot.gitlab.credentials import gitlab_clone_auth
from bot.gitlab.setup import setup as gitlab_setup
from bot.reporting.gitlab import status_link
from bot.reporting.render import COMMENT_MARKER
from bot.runtime import Runtime
from pipeline.deploy import clone_auth
from pipeline.models import Deployment, Service
from pipeline.queue.queue import Queue
from pipeline.queue.worker import Worker
from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import NewService, Store
from tests.support import fake_gitlab
from tests.support.fake_gitlab import (
    BOT,
    HEAD,
    PROJECT_ID,
    PROJECT_PATH,
    TOKEN,
    WEBHOOK_SECRET,
    FakeGitLab,
    hook_headers,
    merge_request_hook,
    note_hook,
    push_hook,
)
from tests.support.pipelines import ScriptedPipeline
from tests.support.waiting import PATIENCE, wait_for_status

DEVELOPER, REPORTER = 30, 20
MAINTAINER_ID, VISITOR_ID, BOSS_ID = 7, 8, 9


@pytest.fixture
async def fake() -> AsyncIterator[FakeGitLab]:
    fake = FakeGitLab()
    runner = await fake_gitlab.start(fake)
    yield fake
    await runner.cleanup()


@pytest.fixture
def gl_settings(settings: Settings, fake: FakeGitLab) -> Settings:
    return settings.model_copy(
        update={
            "gitlab_webhook_secret": SecretStr(WEBHOOK_SECRET),
            "gitlab_token": SecretStr(TOKEN),
            "gitlab_api_url": fake.url,
            "report_poll_seconds": 0.05,
            "report_throttle_seconds": 0.0,
            "webhook_max_bytes": 64 * 1024,
            "public_url": "https://deploy.example.com",
        }
    )


Client = TestClient[web.Request, web.Application]
Post = Callable[..., Awaitable[tuple[int, dict[str, Any]]]]


@pytest.fixture
async def client(
    gl_settings: Settings, pool: asyncpg.Pool, database_url: str, store: Store
) -> AsyncIterator[Client]:
    app = web.Application()
    runtime = Runtime(gl_settings, database_url, pool, store, Queue(pool, gl_settings))
    gitlab_setup(app, runtime)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.fixture
def post(client: Client) -> Post:
    async def send(
        event: str, payload: Any, *, delivery: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        headers = hook_headers(event, uuid_=delivery)
        response = await client.post("/webhooks/gitlab", data=json.dumps(payload), headers=headers)
        return response.status, await response.json()

    return send


async def add(store: Store, name: str, branch: str = "master", **config: Any) -> Service:
    return await store.create_service(
        NewService(
            name,
            PROJECT_PATH,
            "gitlab",
            branch=branch,
            root_dir=config.pop("root_dir", "."),
            config=config,
        )
    )


async def until(check: Callable[[], bool], timeout: float = PATIENCE) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def names(pool: asyncpg.Pool, ids: list[int]) -> list[str]:
    rows = await pool.fetch(
        "SELECT s.name FROM deployments d JOIN services s ON s.id = d.service_id"
        " WHERE d.id = ANY($1::bigint[]) ORDER BY s.name",
        ids,
    )
    return [row["name"] for row in rows]


# --- ingress -----------------------------------------------------------------------------


async def test_token_content_type_size_and_json_rules(client: Client) -> None:
    body = json.dumps(push_hook()).encode()

    async def status(data: bytes, **changes: str | None) -> int:
        sent = {**hook_headers("Push Hook"), **changes}
        response = await client.post(
            "/webhooks/gitlab", data=data, headers={k: v for k, v in sent.items() if v}
        )
        assert response.content_type == "application/json"
        return response.status

    assert await status(body, **{"X-Gitlab-Token": None}) == 401
    assert await status(body, **{"X-Gitlab-Token": "wrong"}) == 401
    assert await status(body, **{"X-Gitlab-Token": WEBHOOK_SECRET + "x"}) == 401
    assert await status(body, **{"Content-Type": "text/plain"}) == 415
    assert await status(b"{not json") == 400
    assert await status(b"[1, 2]") == 400
    assert await status(b"\xff\xfe") == 400
    assert await status(body, **{"X-Gitlab-Event": None}) == 400
    assert await status(b"{" + b" " * (70 * 1024) + b"}") == 413
    assert (
        await status(b'{"object_kind": "pipeline"}', **{"X-Gitlab-Event": "Pipeline Hook"}) == 202
    )
    response = await client.post("/webhooks/gitlab", data=b"{}", headers=hook_headers("Push Hook"))
    assert response.status == 400 and "ref" in (await response.json())["message"]


async def test_a_push_queues_production_and_a_redelivery_nothing(
    post: Post, store: Store, pool: asyncpg.Pool
) -> None:
    service = await add(store, "diaspora")
    status, answer = await post("Push Hook", push_hook(), delivery="uuid-1")
    assert status == 200, answer
    [deployment_id] = answer["deployments"]
    deployment = await store.get_deployment(deployment_id)
    assert (deployment.service_id, deployment.environment) == (service.id, "production")
    assert deployment.commit_sha == HEAD and deployment.ref == "master"
    assert deployment.trigger["source"] == "gitlab" and deployment.trigger["actor"] == "jsmith"
    assert deployment.trigger["answer"]["gitlab"] == {
        "project": PROJECT_PATH,
        "project_id": PROJECT_ID,
        "head_sha": HEAD,
    }
    again, answer = await post("Push Hook", push_hook(), delivery="uuid-1")
    assert again == 200 and answer["message"] == "duplicate delivery"
    concurrent = await asyncio.gather(
        *(post("Push Hook", push_hook(), delivery="uuid-2") for _ in range(6))
    )
    assert all(code == 200 for code, _ in concurrent)
    assert await pool.fetchval("SELECT count(*) FROM deployments") == 2
    row = await pool.fetchrow(
        "SELECT * FROM webhook_deliveries WHERE source = 'gitlab' AND delivery_id = 'uuid-1'"
    )
    assert row["event"] == "Push Hook" and row["deployment_ids"] == [deployment_id]


async def test_push_filters_markers_paths_deletions_tags_and_monorepos(
    post: Post, store: Store, pool: asyncpg.Pool
) -> None:
    await add(store, "api", root_dir="services/api")
    await add(store, "web", root_dir="web", watch=["shared"])
    await add(store, "other-branch", branch="develop")

    _, answer = await post("Push Hook", push_hook(added=["services/api/main.py"]))
    assert await names(pool, answer["deployments"]) == ["api"]
    _, answer = await post("Push Hook", push_hook(added=["shared/lib.py", "services/api/x"]))
    assert await names(pool, answer["deployments"]) == ["api", "web"]
    _, answer = await post("Push Hook", push_hook(added=["docs/readme.md"]))
    assert answer["deployments"] == [] and "nothing under" in answer["message"]
    _, answer = await post("Push Hook", push_hook(message="Fix typo\n\n[skip deploy]"))
    assert answer["message"].startswith("skipped")
    _, answer = await post("Push Hook", push_hook(after="0" * 40))
    assert answer["message"] == "ignored: branch deleted"
    _, answer = await post("Push Hook", push_hook(ref="refs/tags/v1.0.0"))
    assert answer["message"] == "ignored: not a branch"
    _, answer = await post("Push Hook", push_hook(project_path="someone/else"))
    assert answer["message"] == "ignored: no service deploys this branch"
    # Not every commit listed: the paths cannot tell, so every service of the branch deploys.
    many = push_hook(added=["docs/readme.md"])
    many["total_commits_count"] = 40
    _, answer = await post("Push Hook", many)
    assert await names(pool, answer["deployments"]) == ["api", "web"]


async def test_merge_requests_deploy_previews_but_not_forks_and_closing_ends_them(
    post: Post, store: Store
) -> None:
    await add(store, "diaspora", previews=True)
    await add(store, "quiet")  # no previews
    status, answer = await post("Merge Request Hook", merge_request_hook("open", iid=3))
    assert status == 200, answer
    [deployment_id] = answer["deployments"]
    deployment = await store.get_deployment(deployment_id)
    assert deployment.environment == "mr-3" and deployment.commit_sha == HEAD
    assert deployment.ref == "ms-viewport"
    assert deployment.trigger["answer"]["gitlab"]["mr"] == 3

    _, answer = await post("Merge Request Hook", merge_request_hook("update", iid=3))
    assert answer["deployments"] == [] and "without new commits" in answer["message"]
    pushed = merge_request_hook("update", iid=3, sha="c" * 40, oldrev=HEAD)
    _, answer = await post("Merge Request Hook", pushed)
    assert len(answer["deployments"]) == 1
    _, answer = await post("Merge Request Hook", merge_request_hook("approved", iid=3))
    assert answer["deployments"] == []
    fork = merge_request_hook("open", iid=4, source_project_id=77)
    _, answer = await post("Merge Request Hook", fork)
    assert answer["deployments"] == [] and "forks" in answer["message"]
    _, answer = await post("Merge Request Hook", merge_request_hook("merge", iid=3))
    assert answer["message"] == "preview closed"


# --- notes -------------------------------------------------------------------------------


async def replies(fake: FakeGitLab, count: int) -> list[str]:
    """The bot's answers to notes; not the reporter's deployment note (COMMENT_MARKER),
    which a deployment queued earlier in the test may post at any moment."""

    def answers() -> list[str]:
        notes = fake.calls("POST", r".*/merge_requests/\d+/notes")
        return [call.body["body"] for call in notes if COMMENT_MARKER not in call.body["body"]]

    await until(lambda: len(answers()) >= count)
    return answers()


async def test_a_developer_note_deploys_and_others_are_refused_politely(
    post: Post, store: Store, pool: asyncpg.Pool, fake: FakeGitLab
) -> None:
    await add(store, "diaspora")
    fake.members[PROJECT_ID] = {MAINTAINER_ID: DEVELOPER, VISITOR_ID: REPORTER}
    payload = note_hook("LGTM\n/deploy", user_id=MAINTAINER_ID, username="maint", iid=5)
    status, answer = await post("Note Hook", payload)
    assert status == 200, answer
    [deployment_id] = answer["deployments"]
    deployment = await store.get_deployment(deployment_id)
    assert deployment.environment == "mr-5" and deployment.commit_sha == HEAD
    assert deployment.trigger["answer"]["gitlab"]["note_id"] == payload["object_attributes"]["id"]
    assert deployment.trigger["actor"] == "maint"

    status, answer = await post("Note Hook", note_hook("/deploy", user_id=VISITOR_ID, iid=5))
    assert status == 200 and answer["message"] == "refused" and answer["deployments"] == []
    [said] = await replies(fake, 1)
    assert "needs the Developer role" in said and "Nothing was queued" in said
    # A stranger (no membership at all) is refused the same way.
    _, answer = await post("Note Hook", note_hook("/deploy", user_id=1234, iid=5))
    assert answer["message"] == "refused"
    assert await pool.fetchval("SELECT count(*) FROM deployments") == 1
    # A fork's merge request builds on a Developer's note, from GitLab's MR ref.
    fork = note_hook("/deploy", user_id=MAINTAINER_ID, iid=6, source_project_id=77)
    _, answer = await post("Note Hook", fork)
    forked = await store.get_deployment(answer["deployments"][0])
    assert forked.ref == "refs/merge-requests/6/head"
    assert fake.invalid == []


async def test_protected_services_need_the_allowlist(
    post: Post, store: Store, fake: FakeGitLab
) -> None:
    await add(store, "diaspora", protected=True, allow=["boss", "@ops/deployers"])
    fake.members[PROJECT_ID] = {MAINTAINER_ID: 40, BOSS_ID: DEVELOPER, 11: DEVELOPER}
    fake.groups["ops/deployers"] = {11}
    _, answer = await post("Note Hook", note_hook("/deploy", user_id=MAINTAINER_ID))
    assert answer["message"] == "refused"
    [said] = await replies(fake, 1)
    assert "protected" in said and "allowlist" in said
    _, answer = await post(
        "Note Hook", note_hook("/deploy diaspora", user_id=BOSS_ID, username="boss")
    )
    assert len(answer["deployments"]) == 1
    _, answer = await post("Note Hook", note_hook("/deploy", user_id=11, username="opsie"))
    assert len(answer["deployments"]) == 1
    assert fake.invalid == []


async def test_a_stored_config_that_is_not_valid_refuses_note_deploys(
    post: Post, store: Store, fake: FakeGitLab, pool: asyncpg.Pool
) -> None:
    """`"protectd"` (a typo, which left the service unprotected) stored before configs
    were validated: refused for everyone, the maintainer too, and nothing is queued."""
    service = await add(store, "diaspora")
    await pool.execute(
        "UPDATE services SET config = $2 WHERE id = $1",
        service.id,
        {"protectd": True, "allow": ["boss"]},
    )
    fake.members[PROJECT_ID] = {MAINTAINER_ID: 40}
    _, answer = await post("Note Hook", note_hook("/deploy", user_id=MAINTAINER_ID))
    assert answer["message"] == "refused" and answer["deployments"] == []
    [said] = await replies(fake, 1)
    assert "`diaspora` cannot be deployed until an admin fixes its config" in said
    assert await pool.fetchval("SELECT count(*) FROM deployments") == 0


async def test_own_notes_system_notes_help_and_typos(
    post: Post, store: Store, fake: FakeGitLab
) -> None:
    await add(store, "diaspora")
    _, answer = await post(
        "Note Hook", note_hook("/deploy", user_id=BOT["id"], username=BOT["username"])
    )
    assert answer["message"] == "ignored: the bot's own note"
    _, answer = await post("Note Hook", note_hook("<!-- click-deploy -->\n/deploy status"))
    assert answer["message"] == "ignored: the bot's own note"
    system = note_hook("/deploy")
    system["object_attributes"]["system"] = True
    _, answer = await post("Note Hook", system)
    assert answer["message"] == "ignored: a system note"
    _, answer = await post("Note Hook", note_hook("nice work"))
    assert answer["message"] == "ignored: not a command"
    _, answer = await post("Note Hook", note_hook("/deploy", noteable_type="Issue"))
    assert answer["message"] == "ignored: not a merge request"
    _, answer = await post("Note Hook", note_hook("/deploy statsu"))
    assert answer["message"] == "replied: suggestion"
    [said] = await replies(fake, 1)
    assert "Did you mean `/deploy status`" in said
    assert fake.invalid == []


async def test_gitlab_unreachable_for_a_note_is_502_and_not_stored(
    post: Post,
    store: Store,
    fake: FakeGitLab,
    pool: asyncpg.Pool,
) -> None:
    await add(store, "diaspora")
    fake.failures.append(("GET", r"/projects/\d+/members/all/\d+", 503, {}))
    with structlog.testing.capture_logs() as logged:
        status, answer = await post("Note Hook", note_hook("/deploy"), delivery="n-1")
    assert status == 502 and TOKEN not in json.dumps(answer)
    assert await pool.fetchval("SELECT count(*) FROM webhook_deliveries") == 0
    assert [entry["event"] for entry in logged] == ["gitlab delivery not handled"]
    assert TOKEN not in repr(logged) and WEBHOOK_SECRET not in repr(logged)
    # GitLab answers again: the same delivery is handled then.
    status, answer = await post("Note Hook", note_hook("/deploy"), delivery="n-1")
    assert status == 200 and answer["message"] == "refused"


# --- reporting ---------------------------------------------------------------------------


async def test_the_reporter_sends_statuses_and_edits_one_mr_note(
    post: Post,
    store: Store,
    pool: asyncpg.Pool,
    fake: FakeGitLab,
    start_worker: Callable[..., Awaitable[Worker]],
) -> None:
    await add(store, "diaspora", previews=True, preview_url="https://{environment}.example.com")
    # One rate limit on the first status: python-gitlab waits out Retry-After and resends.
    fake.failures.append(("POST", r"/projects/\d+/statuses/\w+", 429, {"Retry-After": "1"}))
    _, answer = await post("Merge Request Hook", merge_request_hook("open", iid=9))
    first = answer["deployments"][0]
    await until(lambda: [b["state"] for b in fake.status_posts()] == ["pending", "pending"])
    pipeline = ScriptedPipeline()
    gate = pipeline.gates[first] = asyncio.Event()
    await start_worker(pipeline)
    await until(lambda: fake.status_posts()[-1]["state"] == "running", 10)
    gate.set()
    done = await wait_for_status(store, first, Status.SUCCEEDED, Status.FAILED)
    assert done.status == Status.SUCCEEDED
    await until(lambda: (fake.status_posts() or [{}])[-1].get("state") == "success", 10)
    states = [body["state"] for body in fake.status_posts()]
    assert states[0] == "pending" and states[-1] == "success" and "running" in states
    last = fake.status_posts()[-1]
    assert last["name"] == "click-deploy/diaspora (mr-9)" and last["ref"] == "ms-viewport"
    assert last["target_url"].startswith(f"https://deploy.example.com/deployments/{first}")
    await until(lambda: any(str(done.image) in n["body"] for n in fake.mr_notes(9)), 10)

    # A new push to the merge request: the same note is edited, not a second one written.
    pushed = merge_request_hook("update", iid=9, sha="e" * 40, oldrev=HEAD)
    _, answer = await post("Merge Request Hook", pushed)
    second = await wait_for_status(store, answer["deployments"][0], Status.SUCCEEDED)
    await until(lambda: any(str(second.image) in n["body"] for n in fake.mr_notes(9)), 10)
    [note] = fake.mr_notes(9)
    assert fake.calls("PUT", rf"/projects/{PROJECT_ID}/merge_requests/9/notes/{note['id']}")
    assert "<!-- click-deploy -->" in note["body"] and "https://mr-9.example.com" in note["body"]
    assert "| diaspora |" in note["body"] and f"deployments/{second.id}" in note["body"]
    assert len(fake.calls("POST", r".*/merge_requests/9/notes")) == 1
    await until(lambda: fake.statuses.get((str(PROJECT_ID), "e" * 40, last["name"])) == "success")

    async def drained() -> bool:
        return not await pool.fetchval("SELECT count(*) FROM outbox WHERE delivered_at IS NULL")

    deadline = asyncio.get_running_loop().time() + PATIENCE
    while not await drained():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    assert all(r.headers.get("PRIVATE-TOKEN") == TOKEN for r in fake.requests)
    assert fake.invalid == []


async def test_a_push_reports_statuses_without_an_mr_note(
    post: Post,
    store: Store,
    fake: FakeGitLab,
    start_worker: Callable[..., Awaitable[Worker]],
) -> None:
    await add(store, "diaspora")
    await start_worker(ScriptedPipeline())
    payload = push_hook()
    status, answer = await post("Push Hook", payload)
    assert status == 200
    done = await wait_for_status(store, answer["deployments"][0], Status.SUCCEEDED)
    await until(lambda: (fake.status_posts() or [{}])[-1].get("state") == "success", 10)
    assert fake.status_posts()[-1]["name"] == "click-deploy/diaspora"
    assert fake.mr_notes(1) == [] and done.image
    assert fake.invalid == []


async def test_clone_credentials_are_the_token_as_oauth2(gl_settings: Settings) -> None:
    gitlab = _service("gitlab")
    auth = await gitlab_clone_auth(gitlab, gl_settings)
    assert auth is not None and auth.username == "oauth2"
    assert auth.password.get_secret_value() == TOKEN
    assert await gitlab_clone_auth(_service("github"), gl_settings) is None
    registered = await clone_auth(gitlab, gl_settings)
    assert registered is not None and registered.username == "oauth2"


def _service(provider: str) -> Service:
    from datetime import UTC, datetime

    return Service(
        id=1,
        name="diaspora",
        repository=PROJECT_PATH,
        provider=provider,
        branch="master",
        root_dir=".",
        config={},
        created_at=datetime.now(UTC),
        updated_at=datetime.now(UTC),
    )


@pytest.mark.parametrize("event", ["Push Hook", "Merge Request Hook", "Note Hook"])
async def test_malformed_payloads_are_400_never_a_traceback(
    post: Post, store: Store, event: str
) -> None:
    await add(store, "diaspora", previews=True)
    good = {
        "Push Hook": push_hook(),
        "Merge Request Hook": merge_request_hook(),
        "Note Hook": note_hook("/deploy"),
    }[event]
    for key in list(good):
        for junk in (None, "x", 3, [], {}):
            status, answer = await post(event, {**good, key: junk})
            assert status in (200, 400, 502), (key, junk, status, answer)


async def test_status_and_cancel_obey_the_allowlist_too(
    post: Post, store: Store, fake: FakeGitLab
) -> None:
    """An author who may not deploy a protected service sees none of its deployments'
    links in `/deploy status`, and cannot cancel them."""
    from bot.gitlab.notes import REPLY_MARKER

    await add(store, "diaspora", protected=True, allow=["boss"])
    await add(store, "docs")
    fake.members[PROJECT_ID] = {MAINTAINER_ID: 40, BOSS_ID: DEVELOPER}
    _, answer = await post("Note Hook", note_hook("/deploy", user_id=BOSS_ID, username="boss"))
    ids = answer["deployments"]
    assert len(ids) == 2
    by_name = {(await store.get_deployment(one)).service_name: one for one in ids}

    def ours() -> list[str]:
        notes = [call.body["body"] for call in fake.calls("POST", r".*/merge_requests/\d+/notes")]
        return [note for note in notes if REPLY_MARKER in note]

    async def reply_to(body: str, user_id: int, username: str) -> tuple[dict[str, Any], str]:
        before = len(ours())
        _, answer = await post("Note Hook", note_hook(body, user_id=user_id, username=username))
        await until(lambda: len(ours()) > before)
        return answer, ours()[-1]

    answer, said = await reply_to("/deploy status", MAINTAINER_ID, "maint")
    assert answer["message"] == "status"
    assert f"/deployments/{by_name['docs']}?s=" in said
    assert f"/deployments/{by_name['diaspora']}" not in said and "diaspora" not in said
    assert "1 protected service(s) you are not on the allowlist of: not shown" in said
    answer, said = await reply_to("/deploy cancel", MAINTAINER_ID, "maint")
    assert answer["message"] == "refused" and "Nothing was cancelled" in said
    for one in ids:
        assert (await store.get_deployment(one)).status == "queued"
    answer, said = await reply_to("/deploy status", BOSS_ID, "boss")
    assert all(f"/deployments/{one}?s=" in said for one in ids), said
    assert fake.invalid == []


async def test_notes_get_reactions_like_on_github(
    post: Post,
    store: Store,
    fake: FakeGitLab,
    start_worker: Callable[..., Awaitable[Worker]],
) -> None:
    """👀 when a note's command is taken, 😕 when it is refused or its deployment fails, 🚀
    when it succeeds: GitLab's award emoji API on the note itself."""
    await add(store, "diaspora")
    fake.members[PROJECT_ID] = {MAINTAINER_ID: DEVELOPER, VISITOR_ID: REPORTER}
    refused = note_hook("/deploy", user_id=VISITOR_ID, iid=3)
    _, answer = await post("Note Hook", refused)
    assert answer["message"] == "refused"
    refused_id = refused["object_attributes"]["id"]
    await until(lambda: fake.awards.get(refused_id) == ["confused"])

    accepted = note_hook("/deploy", user_id=MAINTAINER_ID, username="maint", iid=3)
    _, answer = await post("Note Hook", accepted)
    [deployment_id] = answer["deployments"]
    accepted_id = accepted["object_attributes"]["id"]
    await until(lambda: fake.awards.get(accepted_id) == ["eyes"])
    pipeline = ScriptedPipeline()
    await start_worker(pipeline)
    assert (await wait_for_status(store, deployment_id, Status.SUCCEEDED)).status == "succeeded"
    await until(lambda: fake.awards.get(accepted_id) == ["eyes", "rocket"])

    failing = note_hook("/deploy", user_id=MAINTAINER_ID, username="maint", iid=4)
    failing_id = failing["object_attributes"]["id"]
    pipeline.default_script["fail"] = "permanent"
    _, answer = await post("Note Hook", failing)
    await wait_for_status(store, answer["deployments"][0], Status.FAILED, Status.SUCCEEDED)
    await until(lambda: "confused" in fake.awards.get(failing_id, []))
    assert fake.awards[failing_id] == ["eyes", "confused"]
    award_calls = fake.calls("POST", r".*/notes/\d+/award_emoji")
    assert all(call.body.keys() == {"name"} for call in award_calls)
    assert fake.invalid == []


async def test_deploy_on_a_merge_request_deploys_the_services_it_touches(
    post: Post, store: Store, fake: FakeGitLab
) -> None:
    """The MR's diffs against each service's root directory and watch paths; none touched:
    the list and the command to type."""
    await add(store, "web", root_dir="web")
    await add(store, "api", root_dir="api", watch=["lib"])
    fake.members[PROJECT_ID] = {MAINTAINER_ID: DEVELOPER}
    fake.mr_files[2] = ["lib/x.rb"]
    note = note_hook("/deploy", user_id=MAINTAINER_ID, username="maint", iid=2)
    _, answer = await post("Note Hook", note)
    [deployment_id] = answer["deployments"]
    assert (await store.get_deployment(deployment_id)).service_name == "api"
    assert fake.calls("GET", rf"/projects/{PROJECT_ID}/merge_requests/2/diffs")

    fake.mr_files[2] = [".gitlab-ci.yml"]
    note = note_hook("/deploy", user_id=MAINTAINER_ID, username="maint", iid=2)
    _, answer = await post("Note Hook", note)
    assert answer["message"] == "replied: which service" and answer["deployments"] == []
    [said] = await replies(fake, 1)
    assert "`api`, `web`" in said and "`/deploy api`" in said
    assert fake.invalid == []


async def test_once_the_release_answers_the_status_and_environment_link_the_live_url(
    post: Post,
    store: Store,
    fake: FakeGitLab,
    start_worker: Callable[..., Awaitable[Worker]],
) -> None:
    """The release's live URL (set once the new version is healthy) is what the commit
    status opens and says, and what the preview's environment links; before, the status
    links the deployment page and the environment the configured preview URL."""
    await add(store, "diaspora", previews=True, preview_url="https://{environment}.example.com")
    _, answer = await post("Merge Request Hook", merge_request_hook("open", iid=12))
    [preview] = answer["deployments"]
    live = "https://mr-12.diaspora.live.example.com"
    pipeline = ScriptedPipeline(default_script={"live_url": live})
    gate = pipeline.gates[preview] = asyncio.Event()
    await start_worker(pipeline)
    await until(lambda: (fake.status_posts() or [{}])[-1].get("state") == "running", 10)
    running = fake.status_posts()[-1]
    assert running["target_url"].startswith(f"https://deploy.example.com/deployments/{preview}")
    assert "Live" not in running["description"]
    await until(lambda: fake.environments.get("mr-12", {}).get("external_url") is not None)
    assert fake.environments["mr-12"]["external_url"] == "https://mr-12.example.com"
    gate.set()
    done = await wait_for_status(store, preview, Status.SUCCEEDED)
    assert done.live_url == live
    await until(lambda: (fake.status_posts() or [{}])[-1].get("state") == "success", 10)
    success = fake.status_posts()[-1]
    assert success["target_url"] == live
    assert success["description"] == f"Live at {live}. Deployed `{done.image}`"
    await until(lambda: fake.environments["mr-12"]["external_url"] == live, 10)
    await until(lambda: any(f"[open]({live})" in n["body"] for n in fake.mr_notes(12)), 10)
    assert fake.invalid == []


def test_a_live_url_too_long_for_the_description_is_still_the_link(
    gl_settings: Settings,
) -> None:
    long = "https://" + "a" * 60 + "." + "b" * 60 + "." + "c" * 60 + "." + "d" * 60 + ".example.com"
    deployment = Deployment(
        **{name: None for name in Deployment.__dataclass_fields__}
        | {"id": 5, "status": Status.SUCCEEDED, "live_url": long, "image": "r/web:1"}
    )
    target_url, description = status_link(gl_settings, deployment)
    assert target_url == long
    assert description == "Live (the link opens it). Deployed `r/web:1`"
    failed = dataclasses.replace(deployment, status=Status.FAILED, error="x" * 400)
    target_url, description = status_link(gl_settings, failed)
    assert target_url.startswith("https://deploy.example.com/deployments/5")
    assert len(description) == 255 and description.startswith("Failed: xxx")


async def test_a_preview_is_a_gitlab_deployment_to_its_environment_with_its_url(
    post: Post,
    store: Store,
    fake: FakeGitLab,
    start_worker: Callable[..., Awaitable[Worker]],
) -> None:
    """The merge request's preview shows in GitLab as a deployment to `mr-N` whose
    environment links the preview; production pushes make none."""
    await add(store, "diaspora", previews=True, preview_url="https://{environment}.example.com")
    _, answer = await post("Merge Request Hook", merge_request_hook("open", iid=11))
    [preview] = answer["deployments"]
    pipeline = ScriptedPipeline()
    gate = pipeline.gates[preview] = asyncio.Event()
    await start_worker(pipeline)
    await until(lambda: [d["status"] for d in fake.deployments.values()] == ["running"])
    gate.set()
    await wait_for_status(store, preview, Status.SUCCEEDED)
    await until(lambda: [d["status"] for d in fake.deployments.values()] == ["success"])
    [made] = fake.deployments.values()
    assert made["environment"]["name"] == "mr-11" and made["sha"] == HEAD
    assert fake.environments["mr-11"]["external_url"] == "https://mr-11.example.com"
    assert len(fake.calls("POST", rf"/projects/{PROJECT_ID}/deployments")) == 1

    _, answer = await post("Push Hook", push_hook())
    await wait_for_status(store, answer["deployments"][0], Status.SUCCEEDED)
    await until(lambda: fake.status_posts()[-1]["state"] == "success")
    assert len(fake.deployments) == 1  # production: no GitLab deployment
    assert fake.invalid == []
