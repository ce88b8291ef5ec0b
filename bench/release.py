"""Release benchmark: the release step's own time (target docker, through real Caddy) and
the requests lost while traffic switches.

Run:  .venv/bin/python bench/release.py [--switches N] [--clients N] [--drain S]

Needs `scripts/infra up` (the Docker engine on unix:///run/cd-docker.sock, the mirror
localhost:5000, the registry 127.0.0.1:5001), PostgreSQL (DATABASE_URL, default
postgresql://postgres@127.0.0.1:5432/postgres) and Debian's `caddy` (/usr/bin/caddy).
The bench makes its own database, git repository, Caddy (admin API and listener on free
local ports, state in a temporary folder) and service `benchrel<hex>`; it removes its
containers at the end.

What is measured
    A small app (Python's http.server on python:3.11-slim-bookworm from the mirror, answering
    its version) is deployed once through the real worker and pipeline (clone, plan,
    build, push, verify, release). Then N more deployments follow, alternating between two
    commits (so each switch changes the version that answers; their images are cached
    after the first build of each). During all of them, C clients ask Caddy for the
    service's host name in a loop (aiohttp, one connection pool each, 10 ms between
    requests); every answer other than 200, and every connection error or timeout, is a
    lost request.

    The release step's time is the `release` row of deployment_steps (started → finished):
    pull by digest, container start, health check until GET /health answers 200 (polled
    every 0.25 s), the Caddy route switch, the release record, the drain (--drain, default
    1 s) and stopping the old container. Shown with and without the drain.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.e2e import GitDaemon, bench_settings, quiet_logging, temporary_database
from pipeline.db.connect import create_pool
from pipeline.deploy import deploy_pipeline
from pipeline.queue.queue import Queue
from pipeline.queue.worker import Worker
from pipeline.states import Status
from pipeline.store import NewService, Store
from tests.support.caddy_server import CaddyServer
from tests.support.release_apps import app_files

DOCKER_CLI = "/usr/bin/docker"
DOCKER_HOST = "unix:///run/cd-docker.sock"
DOMAIN = "web.example.com"


def write_app(path: Path, version: str) -> None:
    for name, content in app_files(version).items():
        (path / name).write_text(content if isinstance(content, str) else content.decode())


def remove_containers(service: str) -> None:
    listed = subprocess.run(
        [DOCKER_CLI, "-H", DOCKER_HOST, "ps", "-aq", "--filter",
         f"label=click-deploy.service={service}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    for container in listed.stdout.split():
        subprocess.run(
            [DOCKER_CLI, "-H", DOCKER_HOST, "rm", "-f", container], capture_output=True, check=False
        )


async def wait_final(store: Store, deployment_id: int, timeout: float = 900) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deployment = await store.get_deployment(deployment_id)
        if deployment.status in (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED):
            return deployment
        await asyncio.sleep(0.05)
    raise RuntimeError(f"deployment {deployment_id} did not finish")


class Load:
    def __init__(self, port: int, clients: int) -> None:
        self.port = port
        self.clients = clients
        self.ok = 0
        self.lost: list[str] = []
        self.stop = asyncio.Event()

    async def client(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            while not self.stop.is_set():
                try:
                    async with session.get(
                        f"http://127.0.0.1:{self.port}/", headers={"Host": DOMAIN}
                    ) as answer:
                        await answer.read()
                        if answer.status == 200:
                            self.ok += 1
                        else:
                            self.lost.append(str(answer.status))
                except (aiohttp.ClientError, TimeoutError) as error:
                    self.lost.append(type(error).__name__)
                await asyncio.sleep(0.01)


async def run(options: argparse.Namespace) -> dict[str, Any]:
    server_url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"benchrel{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory(prefix="cd-bench-release-") as temporary:
        workdir = Path(temporary)
        caddy = CaddyServer(workdir / "caddy").start()
        git = GitDaemon(workdir / "git").start()
        try:
            async with temporary_database(server_url) as database_url:
                settings = bench_settings(database_url, workdir).model_copy(
                    update={
                        "registry_project": "bench",
                        "release_docker_host": DOCKER_HOST,
                        "release_secrets_dir": workdir / "secrets",
                        "caddy_admin_url": caddy.admin_url,
                        "caddy_listen": f"127.0.0.1:{caddy.http_port}",
                        "caddy_automatic_https": False,
                        "caddy_public_url": f"http://{{host}}:{caddy.http_port}",
                    }
                )
                source = workdir / "source"
                source.mkdir()
                write_app(source, "a")
                first = git.create_repo(name, source)
                write_app(git.root / name, "b")
                second = git._commit(git.root / name, "b")
                commits = [first, second]
                pool = await create_pool(database_url, size=5)
                store, queue = Store(pool), Queue(pool, settings)
                service = await store.create_service(
                    NewService(
                        name,
                        git.url_for(name),
                        "git",
                        config={
                            "release": {
                                "target": "docker",
                                "domain": DOMAIN,
                                "health_path": "/health",
                                "drain_seconds": options.drain,
                            }
                        },
                    )
                )
                worker = Worker(settings, pool, database_url, deploy_pipeline(settings), slots=1)
                worker_task = asyncio.create_task(worker.run())
                await asyncio.wait_for(worker.listener.connected.wait(), 60)
                try:
                    made = await queue.enqueue(service.id, ref="main", commit_sha=commits[0])
                    done = await wait_final(store, made.id)
                    if done.status != Status.SUCCEEDED:
                        raise RuntimeError(f"first deployment failed: {done.error}")
                    # Build the other commit's image once, so switches measure releases.
                    load = Load(caddy.http_port, options.clients)
                    clients = [asyncio.create_task(load.client()) for _ in range(options.clients)]
                    steps: list[float] = []
                    totals: list[float] = []
                    for index in range(options.switches + 1):
                        commit = commits[(index + 1) % 2]
                        started = time.perf_counter()
                        made = await queue.enqueue(service.id, ref="main", commit_sha=commit)
                        done = await wait_final(store, made.id)
                        if done.status != Status.SUCCEEDED:
                            raise RuntimeError(f"deployment {done.id} failed: {done.error}")
                        if index == 0:
                            continue  # the second commit's first build: not a sample
                        totals.append(time.perf_counter() - started)
                        [step] = [s for s in await store.list_steps(done.id) if s.name == "release"]
                        steps.append(step.seconds or 0.0)
                    load.stop.set()
                    await asyncio.gather(*clients)
                finally:
                    worker.stop(now=True)
                    await asyncio.wait_for(worker_task, 60)
                    await pool.close()
        finally:
            git.stop()
            caddy.stop()
            await asyncio.to_thread(remove_containers, name)
    return {
        "switches": len(steps),
        "clients": options.clients,
        "drain_seconds": options.drain,
        "release_step_median_s": round(statistics.median(steps), 3),
        "release_step_min_s": round(min(steps), 3),
        "release_step_max_s": round(max(steps), 3),
        "release_step_without_drain_median_s": round(statistics.median(steps) - options.drain, 3),
        "deployment_median_s": round(statistics.median(totals), 3),
        "requests_answered": load.ok,
        "requests_lost": len(load.lost),
        "lost_kinds": sorted(set(load.lost)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--switches", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--drain", type=float, default=1.0)
    options = parser.parse_args()
    quiet_logging()
    with contextlib.suppress(KeyboardInterrupt):
        print(json.dumps(asyncio.run(run(options)), indent=2))


if __name__ == "__main__":
    main()
