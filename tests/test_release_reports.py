"""The live URL of a release, where deployments are reported: the REST API's deployment,
the GitHub Deployment status (`environment_url`), the check run summary, the PR comment's
link, the Slack message and the deployment page; what runs, in the API and the CLI."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from click.testing import CliRunner

from bot.api.schemas import DeploymentOut
from bot.cli import main
from bot.reporting.github_deployments import environment_url, status_body
from bot.reporting.render import check_output, preview_link
from bot.slack.blocks import deployment_message
from bot.web.signing import signed_path
from pipeline.models import Deployment, Service
from pipeline.queue.queue import Queue
from pipeline.release import ReleaseStore
from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import NewService, Store
from tests.support.api import Api, api
from tests.support.infra import MIRROR, docker

__all__ = ["api"]  # the fixture, used by name

LIVE = "https://pr-12.web.example.com"


def _deployment(**changes: Any) -> Deployment:
    values: dict[str, Any] = {field: None for field in Deployment.__dataclass_fields__}
    now = datetime.now(UTC)
    values.update(
        id=1,
        service_id=7,
        service_name="web",
        environment="pr-12",
        status=Status.SUCCEEDED,
        trigger={},
        attempts=1,
        max_attempts=3,
        cancel_requested=False,
        created_at=now,
        run_at=now,
        updated_at=now,
    )
    values.update(changes)
    return Deployment(**values)


def _service(**config: Any) -> Service:
    now = datetime.now(UTC)
    return Service(7, "web", "github", "acme/web", "main", "", config, now, now)


def test_github_gets_the_live_url_once_the_release_is_healthy(settings: Settings) -> None:
    service = _service(preview_url="https://{environment}.static.example.com")
    assert environment_url(settings, _deployment(live_url=LIVE), service) == LIVE
    # Before the switch (no live URL yet) the configured template stands in, as before.
    waiting = _deployment(status=Status.PUSHING)
    assert environment_url(settings, waiting, service) == "https://pr-12.static.example.com"
    assert status_body(settings, _deployment(live_url=LIVE), service)["environment_url"] == LIVE


def test_the_check_run_comment_and_slack_message_say_where_it_is_live() -> None:
    deployment = _deployment(live_url=LIVE, image="registry/web:pr-12-1a2b")
    assert f"Live at {LIVE}" in check_output(deployment, [], [], "https://bot/log").summary
    assert preview_link(deployment, None) == f"[open]({LIVE})"
    assert preview_link(_deployment(), None) == "–"
    blocks = deployment_message(deployment, "https://bot/log", protected=False)
    fields = [field["text"] for block in blocks for field in block.get("fields", [])]
    assert f"*Live at*\n<{LIVE}>" in fields
    without = deployment_message(_deployment(), "https://bot/log", protected=False)
    assert "Live at" not in str(without)


async def test_the_api_deployment_carries_the_live_url_set_by_the_release(
    store: Store, queue: Queue, pool: asyncpg.Pool
) -> None:
    service = await store.create_service(NewService("web", "acme/web", "github"))
    made = await queue.enqueue(service.id, environment="pr-12", commit_sha="ab" * 20)
    assert DeploymentOut.of(await store.get_deployment(made.id)).live_url is None
    await ReleaseStore(pool).set_live_url(made.id, None, LIVE)
    stored = await store.get_deployment(made.id)
    assert stored.live_url == LIVE
    assert DeploymentOut.of(stored).model_dump()["live_url"] == LIVE


async def test_what_runs_is_listed_by_the_api_and_service_show_as_it_is_now(
    api: Api,
    store: Store,
    queue: Queue,
    pool: asyncpg.Pool,
    database_url: str,
    docker_engine: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The record says the version was healthy at the switch; what is shown is looked at
    now: a container killed since is "not running", an engine that does not answer is
    "unknown", and neither is called healthy."""
    image = f"{MIRROR}/library/debian:bookworm-slim"
    started = docker("run", "-d", image, "sleep", "infinity", check=True)
    container = started.stdout.strip()
    try:
        service = await store.create_service(NewService("web", "acme/web", "github"))
        made = await queue.enqueue(service.id, commit_sha="ab" * 20)
        digest = "sha256:" + "cd" * 32
        records = ReleaseStore(pool)
        await records.switched(
            service_id=service.id,
            environment="production",
            deployment_id=made.id,
            target="docker",
            image="registry/web:abab",
            digest=digest,
            engine=docker_engine,
            runs_as=container[:12],
            url="https://web.example.com",
        )
        await records.switched(
            service_id=service.id,
            environment="pr-3",
            deployment_id=made.id,
            target="docker",
            image="registry/web:pr-3-abab",
            digest=digest,
            engine="tcp://127.0.0.1:9",  # nothing listens: the engine cannot be asked
            runs_as="fedcba987654",
            url="https://pr-3.web.example.com",
        )

        async def releases() -> dict[str, dict[str, Any]]:
            path = f"/api/v1/services/{service.id}"
            answer = await api.client.get(path, headers=api.auth("read"))
            assert answer.status == 200
            return {r["environment"]: r for r in (await answer.json())["releases"]}

        monkeypatch.setenv("DATABASE_URL", database_url)
        monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
        monkeypatch.chdir(tmp_path)

        running = await releases()
        production = running["production"]
        assert production["digest"] == digest and production["url"] == "https://web.example.com"
        assert production["deployment_id"] == made.id and production["runs_as"] == container[:12]
        assert (production["healthy"], production["state"]) == (True, "running")
        assert production["state_detail"] == "1 of 1 container running"
        unreachable = running["pr-3"]
        assert (unreachable["healthy"], unreachable["state"]) == (False, "unknown")
        assert "127.0.0.1:9" in unreachable["state_detail"]
        shown = await asyncio.to_thread(CliRunner().invoke, main, ["service", "show", "web"])
        assert shown.exit_code == 0, shown.output
        [row] = [line for line in shown.output.splitlines() if container[:12] in line]
        assert "https://web.example.com" in row and " healthy " in row, shown.output
        [row] = [line for line in shown.output.splitlines() if "fedcba987654" in line]
        assert " unknown " in row, shown.output

        docker("kill", container, check=True)
        gone = (await releases())["production"]
        assert (gone["healthy"], gone["state"]) == (False, "not running")
        assert gone["state_detail"].startswith("0 of 1 container running; ")
        assert f"container {container[:12]} exited (exit code 137)" in gone["state_detail"]
        shown = await asyncio.to_thread(CliRunner().invoke, main, ["service", "show", "web"])
        [row] = [line for line in shown.output.splitlines() if container[:12] in line]
        assert " not running " in row and " healthy " not in row, shown.output

        docker("rm", "-f", container, check=True)
        removed = (await releases())["production"]
        assert (removed["healthy"], removed["state"]) == (False, "not running")
        assert f"container {container[:12]} is gone" in removed["state_detail"]
    finally:
        docker("rm", "-f", container)


async def test_the_deployment_page_links_the_live_url(
    api: Api, store: Store, queue: Queue, pool: asyncpg.Pool, settings: Settings
) -> None:
    service = await store.create_service(NewService("web", "acme/web", "github"))
    made = await queue.enqueue(service.id, environment="pr-12", commit_sha="ab" * 20)
    path = signed_path(settings, "deployment", made.id)
    before = await (await api.client.get(path)).text()
    assert "<dt>live at</dt><dd id=live_url>-</dd>" in before
    await ReleaseStore(pool).set_live_url(made.id, None, LIVE)
    page = await api.client.get(path)
    assert page.status == 200
    assert f'<dd id=live_url><a href="{LIVE}">{LIVE}</a></dd>' in await page.text()
