"""Release target `swarm`, for real: a private Docker engine in Swarm mode (so the shared
engine's other tests are not disturbed), services updated by digest, a version that fails
its health check rolled back by Swarm with the old one answering again, a rollback without
a build, and real Caddy in front."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from pipeline.deploy import deploy_pipeline
from pipeline.models import Deployment
from pipeline.queue.queue import Queue
from pipeline.queue.worker import Worker
from pipeline.release import ReleaseStore, observe, stop_environment
from pipeline.rollback import enqueue_rollback
from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import Store
from tests.support.caddy_server import CaddyServer
from tests.support.gitserver import GitDaemon
from tests.support.infra import free_port
from tests.support.release_apps import (
    API_KEY,
    DOMAIN,
    LoadLoop,
    add_service,
    app_files,
    caddy,
    deployed,
    get,
    release_settings,
    service_name,
)
from tests.support.second_engine import PrivateEngine, private_engine
from tests.support.waiting import PATIENCE

pytestmark = pytest.mark.slow
__all__ = ["caddy", "release_settings", "service_name"]  # fixtures used by name


@pytest.fixture(scope="module")
def swarm_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateEngine]:
    with private_engine("swarm", tmp_path_factory.mktemp("swarm-engine")) as engine:
        port = str(free_port())
        engine.docker(
            "swarm",
            "init",
            "--advertise-addr",
            f"127.0.0.1:{port}",
            "--listen-addr",
            f"127.0.0.1:{port}",
            check=True,
        )
        yield engine
        engine.docker("swarm", "leave", "--force")


@pytest.fixture
def swarm_settings(release_settings: Settings, swarm_engine: PrivateEngine) -> Settings:
    return release_settings.model_copy(update={"release_docker_host": swarm_engine.host})


def service_image(engine: PrivateEngine, name: str) -> str:
    shown = engine.docker(
        "service", "inspect", "--format", "{{json .Spec.TaskTemplate.ContainerSpec.Image}}", name
    )
    return str(json.loads(shown.stdout or '""'))


@pytest.fixture
async def swarm_worker(
    swarm_settings: Settings, pool: asyncpg.Pool, database_url: str
) -> AsyncIterator[Worker]:
    running = Worker(swarm_settings, pool, database_url, deploy_pipeline(swarm_settings), slots=1)
    task = asyncio.create_task(running.run())
    await asyncio.wait_for(running.listener.connected.wait(), PATIENCE)
    yield running
    running.stop(now=True)
    await asyncio.wait_for(task, 60)


async def test_a_swarm_service_is_updated_by_digest_and_rolled_back(
    git_daemon: GitDaemon,
    store: Store,
    queue: Queue,
    pool: asyncpg.Pool,
    caddy: CaddyServer,
    swarm_settings: Settings,
    swarm_engine: PrivateEngine,
    swarm_worker: Worker,
    service_name: str,
) -> None:
    commit1 = git_daemon.create_repo(service_name, app_files("v1"))
    service_id = await add_service(
        store,
        swarm_settings,
        service_name,
        git_daemon.url_for(service_name),
        target="swarm",
        health_timeout_seconds=90,
    )
    name = f"cd-{service_name}-production"

    first = await deployed(store, await queue.enqueue(service_id, ref="main", commit_sha=commit1))
    assert first.image is not None and first.digest is not None
    assert service_image(swarm_engine, name) == f"{first.image.rsplit(':', 1)[0]}@{first.digest}"
    assert first.live_url == f"http://{DOMAIN}:{caddy.http_port}"
    assert (await get(caddy, DOMAIN))[1].startswith("v1 hello")

    # v2 under load: Swarm replaces the one task stop-first (the host port is held by one
    # task at a time); Caddy holds the requests that find no task listening and tries
    # again (CADDY_RETRY_SECONDS), so none fails.
    commit2 = git_daemon.commit(service_name, app_files("v2"), "v2")
    load = LoadLoop(caddy, DOMAIN)

    async def deploy_v2() -> Deployment:
        made = await queue.enqueue(service_id, ref="main", commit_sha=commit2)
        return await deployed(store, made)

    second = await load.run_while(deploy_v2)
    assert load.failures == [], f"{len(load.failures)} failed: {load.failures[:5]}"
    assert load.answers.get("v1", 0) > 0 and load.answers.get("v2", 0) > 0, load.answers
    assert second.digest is not None
    assert (await get(caddy, DOMAIN))[1].startswith("v2 hello")
    assert service_image(swarm_engine, name).endswith(second.digest)

    # v3 answers its health path with 500: Swarm goes back to v2, which answers again.
    commit3 = git_daemon.commit(service_name, app_files("v3", healthy=False), "v3")
    third = await deployed(
        store, await queue.enqueue(service_id, ref="main", commit_sha=commit3), Status.FAILED
    )
    assert third.error is not None and "not healthy" in third.error, third.error
    assert "rolled back" in third.error and "v3: the database is unreachable" in third.error
    assert "config: API_KEY=<secret>" in third.error and API_KEY not in third.error
    assert service_image(swarm_engine, name).endswith(second.digest)
    assert (await get(caddy, DOMAIN))[1].startswith("v2 hello")

    # A rollback to v1: no build, an update by v1's digest.
    service = await store.get_service(service_id)
    await deployed(store, await enqueue_rollback(store, queue, service, to=first.id))
    assert service_image(swarm_engine, name).endswith(first.digest)
    assert (await get(caddy, DOMAIN))[1].startswith("v1 hello")
    live = await ReleaseStore(pool).live(service_id, "production")
    assert live is not None and live.target == "swarm" and live.digest == first.digest
    replicas = swarm_engine.docker(
        "service", "inspect", "--format", "{{.Spec.Mode.Replicated.Replicas}}", name
    )
    assert replicas.stdout.strip() == "1"
    [seen] = await observe([live])
    assert (seen.state, seen.detail, seen.healthy) == ("running", "1 of 1 task running", True)

    # Taking the environment out of service removes the Swarm service and its route.
    stopped = await stop_environment(
        service_id,
        service_name,
        "production",
        service.options.release,
        swarm_settings,
        ReleaseStore(pool),
        lambda _: None,
    )
    assert stopped
    assert swarm_engine.docker("service", "inspect", name).returncode != 0
    [seen] = await observe([live])  # what was shown as running is not any more
    assert (seen.state, seen.healthy) == ("not running", False)
    assert seen.detail == f"the Swarm service {name} is gone"
    assert await ReleaseStore(pool).live(service_id, "production") is None
