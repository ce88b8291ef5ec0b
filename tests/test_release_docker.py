"""Release target `docker`, end to end: a git server, the worker, the Docker engine's
BuildKit, the registry with auth, containers on the real engine and real Caddy in front.
A push ends with the new version answering through Caddy while a load loop sees no failed
request; a version that fails its health check leaves the old one answering; a rollback
switches back without a build; a preview gets its own container and host name and leaves
with its pull request."""

from __future__ import annotations

import hashlib
import json

import asyncpg
import pytest

from bot.forge.previews import delete_preview_images
from pipeline.models import Deployment
from pipeline.queue.queue import Queue
from pipeline.queue.worker import Worker
from pipeline.release import ReleaseStore
from pipeline.rollback import enqueue_rollback
from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import Store
from tests.support.caddy_server import CaddyServer
from tests.support.gitserver import GitDaemon
from tests.support.infra import docker
from tests.support.progress import Progress, progress_seen
from tests.support.release_apps import (
    API_KEY,
    DOMAIN,
    LoadLoop,
    add_service,
    app_files,
    caddy,
    containers_of,
    deployed,
    get,
    release_settings,
    service_name,
    worker,
)

pytestmark = pytest.mark.slow
# fixtures used by name
__all__ = ["caddy", "progress_seen", "release_settings", "service_name", "worker"]


async def test_a_push_switches_traffic_with_no_failed_request_and_a_sick_version_never_serves(
    git_daemon: GitDaemon,
    store: Store,
    queue: Queue,
    pool: asyncpg.Pool,
    caddy: CaddyServer,
    release_settings: Settings,
    worker: Worker,
    service_name: str,
    progress_seen: dict[int, list[Progress]],
) -> None:
    commit1 = git_daemon.create_repo(service_name, app_files("v1"))
    service_id = await add_service(
        store, release_settings, service_name, git_daemon.url_for(service_name)
    )

    # v1: built, started, healthy, routed.
    first = await deployed(store, await queue.enqueue(service_id, ref="main", commit_sha=commit1))
    url = f"http://{DOMAIN}:{caddy.http_port}"
    assert first.live_url == url
    key = hashlib.sha256(API_KEY.encode()).hexdigest()[:12]
    assert await get(caddy, DOMAIN) == (200, f"v1 hello key={key}")
    steps = [s.name for s in await store.list_steps(first.id) if s.kind == "pipeline"]
    assert steps == ["clone", "plan", "build", "verify", "release"]
    # Every step counts the release from the first one on: "1 of 6" … "6 of 6".
    assert progress_seen[first.id] == [
        (1, 6, "cloning"),
        (2, 6, "planning"),
        (3, 6, "building"),
        (4, 6, "pushing"),
        (5, 6, "verifying"),
        (6, 6, "releasing (docker)"),
    ]
    [v1_container] = containers_of(service_name, "production")

    # v2 under load: every request answered, by v1 and then by v2.
    commit2 = git_daemon.commit(service_name, app_files("v2"), "v2")
    load = LoadLoop(caddy, DOMAIN)

    async def deploy_v2() -> Deployment:
        made = await queue.enqueue(service_id, ref="main", commit_sha=commit2)
        return await deployed(store, made)

    second = await load.run_while(deploy_v2)
    assert load.failures == [], f"{len(load.failures)} failed: {load.failures[:5]}"
    assert load.answers.get("v1", 0) > 0 and load.answers.get("v2", 0) > 0, load.answers
    assert await get(caddy, DOMAIN) == (200, f"v2 hello key={key}")
    [v2_container] = containers_of(service_name, "production")
    assert v2_container != v1_container  # the old one stopped after the drain
    live = await ReleaseStore(pool).live(service_id, "production")
    assert live is not None and live.deployment_id == second.id and live.digest == second.digest

    # v3 fails its health check: v2 answers on, the failure has v3's log, v3 is gone.
    commit3 = git_daemon.commit(service_name, app_files("v3", healthy=False), "v3")
    third = await deployed(
        store, await queue.enqueue(service_id, ref="main", commit_sha=commit3), Status.FAILED
    )
    assert third.error is not None
    assert third.error.startswith("release failed: the new version is not healthy")
    assert "GET /health answered 500 (expected 200)" in third.error
    assert "v3: the database is unreachable" in third.error
    assert "config: API_KEY=<secret>" in third.error and API_KEY not in third.error
    assert await get(caddy, DOMAIN) == (200, f"v2 hello key={key}")
    assert containers_of(service_name, "production") == [v2_container]
    assert third.live_url is None
    failed_steps = {s.name: s.status for s in await store.list_steps(third.id)}
    assert failed_steps["release"] == "failed"

    # Rollback to v1: no build, the same health-checked switch.
    rolled = await enqueue_rollback(store, queue, await store.get_service(service_id), to=first.id)
    back = await deployed(store, rolled)
    assert await get(caddy, DOMAIN) == (200, f"v1 hello key={key}")
    assert back.live_url == url
    steps = [s.name for s in await store.list_steps(back.id)]
    assert "build" not in steps and "release" in steps
    assert progress_seen[back.id] == [
        (1, 3, f"rolling back to deployment {first.id}"),
        (2, 3, "re-tagging"),
        (3, 3, "releasing (docker)"),
    ]

    # The secret reached the container, and nothing else.
    image_config = docker("image", "inspect", "--format", "{{json .Config}}", second.image or "")
    assert API_KEY not in image_config.stdout and "GREETING" not in image_config.stdout
    async with pool.acquire() as connection:
        for table in ("deployments", "releases", "deployment_logs", "deployment_steps", "services"):
            dump = await connection.fetchval(f"SELECT json_agg(t)::text FROM {table} t")
            assert API_KEY not in (dump or ""), table


async def test_a_preview_gets_its_own_host_and_goes_when_its_pull_request_closes(
    git_daemon: GitDaemon,
    store: Store,
    queue: Queue,
    pool: asyncpg.Pool,
    caddy: CaddyServer,
    release_settings: Settings,
    worker: Worker,
    service_name: str,
) -> None:
    commit = git_daemon.create_repo(service_name, app_files("main"))
    service_id = await add_service(
        store, release_settings, service_name, git_daemon.url_for(service_name), max_previews=1
    )
    await deployed(store, await queue.enqueue(service_id, ref="main", commit_sha=commit))
    preview_commit = git_daemon.commit(service_name, app_files("pr"), "pr")
    preview = await deployed(
        store, await queue.enqueue(service_id, environment="pr-12", commit_sha=preview_commit)
    )
    assert preview.live_url == f"http://pr-12.{DOMAIN}:{caddy.http_port}"
    assert (await get(caddy, f"pr-12.{DOMAIN}"))[1].startswith("pr hello")
    assert (await get(caddy, DOMAIN))[1].startswith("main hello")
    assert len(containers_of(service_name, "pr-12")) == 1

    # A second preview: at most one live, so pr-12 (the oldest) stops.
    other = await deployed(
        store, await queue.enqueue(service_id, environment="pr-13", commit_sha=preview_commit)
    )
    assert other.live_url == f"http://pr-13.{DOMAIN}:{caddy.http_port}"
    assert containers_of(service_name, "pr-12") == []
    assert "click-deploy-" + service_name + "-pr-12" not in json.dumps(caddy.config())

    # The pull request of pr-13 closes: route, container and record go; production stays.
    service = await store.get_service(service_id)
    await delete_preview_images(release_settings, pool, service, "pr-13")()
    assert containers_of(service_name, "pr-13") == []
    assert "click-deploy-" + service_name + "-pr-13" not in json.dumps(caddy.config())
    assert await ReleaseStore(pool).live(service_id, "pr-13") is None
    status, body = await get(caddy, f"pr-13.{DOMAIN}")
    assert not body.startswith("pr hello"), (status, body)
    assert (await get(caddy, DOMAIN))[1].startswith("main hello")
