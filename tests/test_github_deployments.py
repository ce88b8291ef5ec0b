"""GitHub Deployments from the outbox reporter: one GitHub Deployment per click-deploy
deployment (environment `production` or `pr-<n>`), a deployment status per state change
with log_url and environment_url; every request checked against GitHub's OpenAPI."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bot.reporting.github_deployments import STATES, environment_url
from pipeline.models import Deployment, Service
from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import Store
from tests.support.fake_github import FakeGitHub, Recorded
from tests.support.github_hooks import example
from tests.support.waiting import PATIENCE
from tests.test_github import (
    INSTALLATION,
    Post,
    add,
    client,
    examples_path,
    fake,
    gh_settings,
    github_openapi,
    post,
    push_payload,
)

__all__ = ["client", "examples_path", "fake", "gh_settings", "github_openapi", "post"]

DEPLOYMENTS = r"/repos/[^/]+/[^/]+/deployments"
STATUSES = r"/repos/[^/]+/[^/]+/deployments/\d+/statuses"


async def reported(pool: asyncpg.Pool, deployment_id: int, timeout: float = PATIENCE) -> None:
    """Until the reporter has delivered every outbox entry of the deployment so far."""
    deadline = asyncio.get_running_loop().time() + timeout
    query = "SELECT count(*) FROM outbox WHERE deployment_id = $1 AND delivered_at IS NULL"
    while await pool.fetchval(query, deployment_id):
        assert asyncio.get_running_loop().time() < deadline, "the reporter did not catch up"
        await asyncio.sleep(0.02)


async def stored_state(
    pool: asyncpg.Pool, deployment_id: int, state: str, timeout: float = PATIENCE
) -> None:
    """Until the bot has recorded `state` as the GitHub Deployment's state."""
    deadline = asyncio.get_running_loop().time() + timeout
    query = "SELECT github_deployment_state FROM forge_reports WHERE deployment_id = $1"
    while await pool.fetchval(query, deployment_id) != state:
        assert asyncio.get_running_loop().time() < deadline, "the state was never recorded"
        await asyncio.sleep(0.02)


async def wait_states(fake: FakeGitHub, *states: str, timeout: float = PATIENCE) -> list[Recorded]:
    """Until the deployment statuses sent are exactly `states`, in order."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        calls = fake.calls("POST", STATUSES)
        if [call.body["state"] for call in calls] == list(states):
            return calls
        assert asyncio.get_running_loop().time() < deadline, [c.body for c in calls]
        await asyncio.sleep(0.02)


async def move(pool: asyncpg.Pool, deployment_id: int, status: str, **columns: Any) -> None:
    sets = ", ".join(["status = $2", *(f"{key} = ${i + 3}" for i, key in enumerate(columns))])
    finished = ", finished_at = now()" if status in ("succeeded", "failed", "cancelled") else ""
    await pool.execute(
        f"UPDATE deployments SET {sets}{finished} WHERE id = $1",
        deployment_id,
        status,
        *columns.values(),
    )


async def test_a_push_makes_one_production_deployment_with_a_status_per_state(
    post: Post,
    store: Store,
    pool: asyncpg.Pool,
    fake: FakeGitHub,
    examples_path: Path,
    gh_settings: Settings,
) -> None:
    await add(store, "hello", url="https://hello.example.com")
    payload = push_payload(examples_path)
    _, answer = await post("push", payload)
    deployment_id = answer["deployments"][0]
    queued = await wait_states(fake, "queued")
    for status in ("cloning", "building", "pushing"):
        await move(pool, deployment_id, status)
        await reported(pool, deployment_id)  # each state reached the reporter; in_progress once
    await move(pool, deployment_id, "succeeded", image="registry/hello:abc")
    calls = await wait_states(fake, "queued", "in_progress", "success")

    (created,) = fake.calls("POST", DEPLOYMENTS)
    assert created.body["ref"] == payload["after"]
    assert created.body["environment"] == "production"
    assert created.body["auto_merge"] is False and created.body["required_contexts"] == []
    assert created.body["production_environment"] is True
    assert created.body["transient_environment"] is False
    assert created.body["payload"] == {"click_deploy_id": deployment_id, "service": "hello"}
    github_id = await pool.fetchval(
        "SELECT github_deployment_id FROM forge_reports WHERE deployment_id = $1", deployment_id
    )
    assert all(call.path.endswith(f"/deployments/{github_id}/statuses") for call in calls)
    first, _, last = (call.body for call in calls)
    assert first["log_url"] == last["log_url"]
    assert first["log_url"].startswith(f"https://deploy.example.com/deployments/{deployment_id}")
    assert first["environment_url"] == "https://hello.example.com"
    assert "registry/hello:abc" in last["description"]
    assert queued[0].body["auto_inactive"] is False
    stored = await pool.fetchval(
        "SELECT github_deployment_state FROM forge_reports WHERE deployment_id = $1",
        deployment_id,
    )
    assert stored == "success"
    assert fake.invalid == []


async def test_a_preview_is_a_transient_pr_environment_and_a_failure_says_so(
    post: Post, store: Store, pool: asyncpg.Pool, fake: FakeGitHub, examples_path: Path
) -> None:
    await add(store, "hello", previews=True, preview_url="https://{environment}.hello.test")
    payload = example(examples_path, "pull_request", 0, installation=INSTALLATION)
    number = payload["pull_request"]["number"]
    _, answer = await post("pull_request", payload)
    deployment_id = answer["deployments"][0]
    await wait_states(fake, "queued")
    await move(pool, deployment_id, "cloning")
    await wait_states(fake, "queued", "in_progress")
    await move(pool, deployment_id, "failed", error="RUN npm ci failed")
    calls = await wait_states(fake, "queued", "in_progress", "failure")
    (created,) = fake.calls("POST", DEPLOYMENTS)
    assert created.body["environment"] == f"pr-{number}"
    assert created.body["ref"] == payload["pull_request"]["head"]["sha"]
    assert created.body["transient_environment"] is True
    assert created.body["production_environment"] is False
    assert calls[-1].body["environment_url"] == f"https://pr-{number}.hello.test"
    assert "RUN npm ci failed" in calls[-1].body["description"]
    assert fake.invalid == []


async def test_cancelled_is_an_error_and_superseded_before_any_report_makes_none(
    post: Post, store: Store, pool: asyncpg.Pool, fake: FakeGitHub, examples_path: Path
) -> None:
    await add(store, "hello")
    _, answer = await post("push", push_payload(examples_path))
    deployment_id = answer["deployments"][0]
    await wait_states(fake, "queued")
    await move(pool, deployment_id, "cancelled")
    await wait_states(fake, "queued", "error")

    # Superseded before the reporter saw it: no GitHub Deployment at all.
    row = await pool.fetchrow(
        "INSERT INTO deployments (service_id, environment, commit_sha, status, trigger, "
        "finished_at) SELECT service_id, 'production', commit_sha, 'superseded', trigger, "
        "now() FROM deployments WHERE id = $1 RETURNING id",
        deployment_id,
    )
    assert row is not None
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE deployment_id = $1 AND target = 'github' "
        "AND delivered_at IS NULL",
        row["id"],
    ):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    assert len(fake.calls("POST", DEPLOYMENTS)) == 1
    assert [c.body["state"] for c in fake.calls("POST", STATUSES)] == ["queued", "error"]
    assert fake.invalid == []


@pytest.mark.parametrize("status", list(Status))
def test_every_state_has_a_deployment_state_github_accepts(status: Status) -> None:
    assert STATES[status] in {"queued", "in_progress", "success", "failure", "error", "inactive"}


def test_environment_url_falls_back_to_the_service_page(settings: Settings) -> None:
    service = Service.from_row(
        {
            "id": 7,
            "name": "web",
            "provider": "github",
            "repository": "acme/web",
            "branch": "main",
            "root_dir": ".",
            "config": {"preview_url": "https://{environment}.{service}.test"},
            "created_at": None,
            "updated_at": None,
        }
    )
    preview = _deployment(environment="pr-3")
    production = _deployment(environment="production")
    assert environment_url(settings, preview, service) == "https://pr-3.web.test"
    assert "/services/7" in environment_url(settings, production, service)


def _deployment(**changes: Any) -> Deployment:
    values: dict[str, Any] = {field: None for field in Deployment.__dataclass_fields__}
    values.update(id=1, service_id=7, environment="production", status=Status.QUEUED, trigger={})
    values.update(changes)
    return Deployment(**values)


async def test_closing_the_pull_request_makes_its_live_preview_inactive(
    post: Post, store: Store, pool: asyncpg.Pool, fake: FakeGitHub, examples_path: Path
) -> None:
    await add(store, "hello", previews=True)
    payload = example(examples_path, "pull_request", 0, installation=INSTALLATION)
    _, answer = await post("pull_request", payload)
    deployment_id = answer["deployments"][0]
    await wait_states(fake, "queued")
    await move(pool, deployment_id, "cloning")
    await wait_states(fake, "queued", "in_progress")
    for status in ("building", "pushing"):
        await move(pool, deployment_id, status)
    await move(pool, deployment_id, "succeeded", image="registry/hello:pr")
    await wait_states(fake, "queued", "in_progress", "success")
    # GitHub has its success; the close is handled once the bot has recorded it too (a
    # close between the two leaves the preview live, a race of its own).
    await stored_state(pool, deployment_id, "success")

    closed = example(examples_path, "pull_request", 0, installation=INSTALLATION)
    closed["action"] = "closed"
    status, answer = await post("pull_request", closed)
    assert status == 200 and answer["message"] == "preview closed"
    calls = await wait_states(fake, "queued", "in_progress", "success", "inactive")
    assert calls[-1].path == calls[0].path  # the same GitHub Deployment
    # GitHub hears of it before the bot writes it down: wait for the row too.
    await stored_state(pool, deployment_id, "inactive")
    assert fake.invalid == []
