"""/readyz's view of release targets (`check_targets`): each thing a configured target
needs answers, or the check names what is missing, within a short timeout."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr

from bot.ops.checks import Level
from bot.ops.health import readiness
from bot.ops.release_checks import check_release_targets_at
from bot.runtime import Runtime
from pipeline.queue.queue import Queue
from pipeline.release import check_targets
from pipeline.release.config import ReleaseConfig
from pipeline.settings import Settings
from pipeline.store import NewService, Store
from tests.support.caddy_server import CaddyServer
from tests.support.infra import DOCKER_HOST, free_port

DOCKER = ReleaseConfig.model_validate({"target": "docker", "domain": "web.example.com"})
SWARM = ReleaseConfig.model_validate({"target": "swarm", "domain": "web.example.com"})
HOOK = ReleaseConfig.model_validate(
    {"target": "webhook", "webhook_url": "https://hooks.example.com/deploy"}
)


@pytest.fixture
def caddy(tmp_path: Path) -> Iterator[CaddyServer]:
    server = CaddyServer(tmp_path / "caddy").start()
    yield server
    server.stop()


async def test_docker_target_ready_when_its_engine_and_caddy_answer(
    settings: Settings, docker_engine: str, caddy: CaddyServer
) -> None:
    ready = settings.model_copy(
        update={"release_docker_host": DOCKER_HOST, "caddy_admin_url": caddy.admin_url}
    )
    checks = await check_targets(ready, [DOCKER, DOCKER, ReleaseConfig()])
    assert {(c.name, c.ok) for c in checks} == {
        (f"release docker engine {DOCKER_HOST}", True),
        ("release caddy", True),
    }


async def test_what_is_down_or_missing_is_named(settings: Settings, docker_engine: str) -> None:
    down = settings.model_copy(
        update={
            "release_docker_host": f"tcp://127.0.0.1:{free_port()}",
            "caddy_admin_url": f"http://127.0.0.1:{free_port()}",
            "release_webhook_secret": None,
        }
    )
    checks = {c.name: c for c in await check_targets(down, [DOCKER, HOOK])}
    assert not any(check.ok for check in checks.values())
    assert (
        "cannot reach the Docker engine"
        in checks[f"release docker engine {down.release_docker_host}"].detail
    )
    assert "cannot reach Caddy's admin API" in checks["release caddy"].detail
    assert "RELEASE_WEBHOOK_SECRET is not set" in checks["release webhook"].detail


async def test_a_swarm_target_needs_a_swarm_manager(settings: Settings, docker_engine: str) -> None:
    # The shared test engine is not in Swarm mode (the Swarm tests use a private one).
    plain = settings.model_copy(update={"release_docker_host": DOCKER_HOST})
    [check] = await check_targets(plain, [SWARM])
    assert not check.ok and "is not a Swarm manager" in check.detail


async def test_a_webhook_target_is_ready_with_its_key(settings: Settings) -> None:
    keyed = settings.model_copy(update={"release_webhook_secret": SecretStr("k" * 32)})
    assert [(c.name, c.ok) for c in await check_targets(keyed, [HOOK])] == [
        ("release webhook", True)
    ]


async def test_readyz_and_doctor_show_the_targets_of_the_services(
    settings: Settings, pool: asyncpg.Pool, database_url: str
) -> None:
    """What the services in the database release to, in /readyz (shown, never a reason to be
    unready: webhooks and builds still work) and in doctor."""
    store = Store(pool)
    runtime = Runtime(settings, database_url, pool, store, Queue(pool, settings))
    _, body = await readiness(runtime)
    assert not any(name.startswith("release") for name in body["checks"])  # none configured
    await store.create_service(
        NewService(
            "hooked",
            "acme/hooked",
            "github",
            config={"release": {"target": "webhook", "webhook_url": "https://h.example.com/d"}},
        )
    )
    _, body = await readiness(runtime)
    assert body["checks"]["release webhook"] == {
        "ok": False,
        "detail": "RELEASE_WEBHOOK_SECRET is not set: release webhooks cannot be signed",
    }
    assert "release webhook" not in body.get("not_ready", [])
    [shown] = await check_release_targets_at(settings, database_url, 5.0)
    assert shown.name == "release webhook" and shown.level is Level.FAIL and shown.fix
