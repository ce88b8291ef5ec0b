"""What the release tests share: an app whose answers name its version (and whose health
path can be made to fail), a real Caddy, settings for target docker with it, a worker
running the real pipeline, and a load loop."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from pydantic import SecretStr

from pipeline.deploy import deploy_pipeline
from pipeline.models import Deployment
from pipeline.queue.worker import Worker
from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import NewService, Store
from tests.support.caddy_server import CaddyServer
from tests.support.infra import (
    DOCKER_HOST,
    MIRROR,
    TARGET_PASSWORD,
    TARGET_REGISTRY_URL,
    TARGET_USER,
    TargetRegistry,
    docker,
)
from tests.support.waiting import PATIENCE, wait_for_status

BUILD_TIMEOUT = 600.0
API_KEY = "sk-release-7d1f0c9e-never-shown"
DOMAIN = "web.example.com"

SERVER = r"""
import hashlib, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = open("/app/version").read().strip()
HEALTHY = open("/app/healthy").read().strip() == "yes"
KEY = hashlib.sha256(os.environ.get("API_KEY", "").encode()).hexdigest()[:12]

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/health" and not HEALTHY:
            status, body = 500, b"sick"
        else:
            status = 200
            body = f"{VERSION} {os.environ.get('GREETING', '-')} key={KEY}".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

print(f"{VERSION} starting; healthy={HEALTHY}", file=sys.stderr, flush=True)
if not HEALTHY:
    # As a careless app does: its configuration, secret and all, in its output.
    print(f"config: API_KEY={os.environ.get('API_KEY')}", file=sys.stderr, flush=True)
    print(f"{VERSION}: the database is unreachable", file=sys.stderr, flush=True)
ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""

DOCKERFILE = f"""FROM {MIRROR}/library/python:3.11-slim-bookworm
WORKDIR /app
COPY server.py version healthy ./
CMD ["python3", "-u", "server.py"]
"""


def app_files(version: str, healthy: bool = True) -> dict[str, str | bytes]:
    return {
        "Dockerfile": DOCKERFILE,
        "server.py": SERVER,
        "version": version + "\n",
        "healthy": "yes\n" if healthy else "no\n",
    }


@pytest.fixture
def caddy(tmp_path: Path) -> Iterator[CaddyServer]:
    server = CaddyServer(tmp_path / "caddy").start()
    yield server
    server.stop()


@pytest.fixture
def release_settings(
    settings: Settings,
    tmp_path: Path,
    docker_engine: str,
    mirror_registry: str,
    target_registry: TargetRegistry,
    caddy: CaddyServer,
) -> Settings:
    secrets = tmp_path / "secrets"
    return settings.model_copy(
        update={
            "builder": "docker",
            "docker_host": DOCKER_HOST,
            "build_dir": tmp_path / "builds",
            "registry_url": TARGET_REGISTRY_URL,
            "registry_project": "release",
            "registry_username": TARGET_USER,
            "registry_password": SecretStr(TARGET_PASSWORD),
            "base_image_mirror": MIRROR,
            "build_timeout_seconds": BUILD_TIMEOUT,
            "worker_lease_seconds": 30.0,
            "worker_heartbeat_seconds": 2.0,
            "release_docker_host": DOCKER_HOST,
            "release_secrets_dir": secrets,
            "caddy_admin_url": caddy.admin_url,
            "caddy_listen": f"127.0.0.1:{caddy.http_port}",
            "caddy_automatic_https": False,
            "caddy_public_url": f"http://{{host}}:{caddy.http_port}",
        }
    )


@pytest.fixture
async def worker(
    release_settings: Settings, pool: asyncpg.Pool, database_url: str
) -> AsyncIterator[Worker]:
    running = Worker(
        release_settings, pool, database_url, deploy_pipeline(release_settings), slots=2
    )
    task = asyncio.create_task(running.run())
    await asyncio.wait_for(running.listener.connected.wait(), PATIENCE)
    yield running
    running.stop(now=True)
    await asyncio.wait_for(task, 60)


@pytest.fixture
def service_name() -> Iterator[str]:
    """A name of its own (containers carry it in a label), and its containers removed."""
    name = f"web{uuid.uuid4().hex[:6]}"
    yield name
    listed = docker("ps", "-aq", "--filter", f"label=click-deploy.service={name}")
    for container in listed.stdout.split():
        docker("rm", "-f", container)


def containers_of(service: str, environment: str) -> list[str]:
    listed = docker(
        "ps",
        "-q",
        "--filter",
        f"label=click-deploy.service={service}",
        "--filter",
        f"label=click-deploy.environment={environment}",
    )
    return listed.stdout.split()


async def add_service(
    store: Store, release_settings: Settings, name: str, url: str, **release: object
) -> int:
    assert release_settings.release_secrets_dir is not None
    folder = release_settings.release_secrets_dir / name
    folder.mkdir(parents=True)
    (folder / "API_KEY").write_text(API_KEY + "\n")
    config = {
        "release": {
            "target": "docker",
            "domain": DOMAIN,
            "preview_domain": "{environment}." + DOMAIN,
            "health_path": "/health",
            "health_timeout_seconds": 30,
            "drain_seconds": 2,
            "env": {"GREETING": "hello"},
            "secrets": ["API_KEY"],
            **release,
        }
    }
    created = await store.create_service(NewService(name, url, "git", config=config))
    return created.id


async def get(caddy: CaddyServer, host: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(f"http://127.0.0.1:{caddy.http_port}/", headers={"Host": host}) as answer,
    ):
        return answer.status, await answer.text()


async def deployed(store: Store, made: Deployment, status: Status = Status.SUCCEEDED) -> Deployment:
    done = await wait_for_status(
        store, made.id, Status.SUCCEEDED, Status.FAILED, timeout=BUILD_TIMEOUT
    )
    if done.status != status:
        logs = "\n".join(line.line for line in (await store.read_logs(done.id, limit=5000)).items)
        raise AssertionError(f"deployment {done.id} is {done.status}: {done.error}\n{logs[-3000:]}")
    return done


@dataclass
class LoadLoop:
    """Clients asking Caddy for the service over and over, counting every answer."""

    caddy: CaddyServer
    host: str
    answers: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def _client(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            while not self._stop.is_set():
                try:
                    async with session.get(
                        f"http://127.0.0.1:{self.caddy.http_port}/", headers={"Host": self.host}
                    ) as answer:
                        body = await answer.text()
                        if answer.status != 200:
                            self.failures.append(f"{answer.status} {body[:80]}")
                        else:
                            version = body.split()[0]
                            self.answers[version] = self.answers.get(version, 0) + 1
                except (aiohttp.ClientError, TimeoutError) as error:
                    self.failures.append(repr(error))
                await asyncio.sleep(0.01)

    async def run_while(self, work: Callable[[], Awaitable[Deployment]]) -> Deployment:
        clients = [asyncio.create_task(self._client()) for _ in range(4)]
        try:
            return await work()
        finally:
            self._stop.set()
            await asyncio.gather(*clients)
