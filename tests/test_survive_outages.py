"""Surviving outages of what click-deploy talks to (issue 7, "Survive"), with real processes:

- The registry goes down before the push (a private `docker-registry`, stopped while the
  deployment builds): the attempt is handed back to the queue as transient, with backoff and
  nothing half-done; once the registry is back (same port, same storage) the retry pushes,
  and the image is in the registry under the recorded digest and runs.
- GitHub answers 500 and 429 for a minute (the fake GitHub's outage mode) while a real
  `click-deploy serve` process takes a pull request: the build is not affected, the reporter
  honours Retry-After instead of hammering, its failures show in /metrics, and once GitHub
  is back every report is delivered (check run, commit status, PR comment, GitHub
  Deployment) and nothing is left in the outbox.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from pipeline.models import Deployment
from pipeline.queue.queue import Queue
from pipeline.registry import RegistryClient
from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import NewService, Store
from tests.conftest import REPO_ROOT
from tests.support.fake_github import FakeGitHub
from tests.support.github_hooks import SECRET, example, private_key_pem, signed
from tests.support.gitserver import GitDaemon
from tests.support.infra import MIRROR, docker, run_container_and_get
from tests.support.registry_server import basic_registry_running
from tests.test_deploy_e2e import (
    BUILD_TIMEOUT,
    StartDeployer,
    add_service,
    assert_build_dir_gone,
    build_settings,
    deployer,
)
from tests.test_github import INSTALLATION, REPO, examples_path, fake, github_openapi
from tests.test_ops_processes import scrape
from tests.test_processes import CLI, free_port, processes, worker_env

pytestmark = pytest.mark.slow
__all__ = ["build_settings", "deployer", "examples_path", "fake", "github_openapi", "processes"]

ACTIVE = ("cloning", "building", "pushing")


async def wait_until(
    condition: Callable[[], Any], what: str, timeout: float, poll: float = 0.05
) -> Any:
    """Poll `condition` (sync or async) until it returns something truthy; fail with
    `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        await asyncio.sleep(poll)


# --- the registry down during the push ----------------------------------------------------

# A build step that holds the build until nothing listens on HOST:PORT any more (the
# registry was stopped), so the push is certain to find it down. It gives up waiting after
# a while and lets the build go on (a retry whose cache was pruned must not hang).
GATE = '''"""Wait until nothing listens on HOST:PORT (at most 120 s)."""
import socket
import sys
import time

host, port = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        print(f"{host}:{port} no longer answers", flush=True)
        break
    time.sleep(0.1)
'''

SERVER = """import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello from the registry outage\\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Hello).serve_forever()
"""


def gated_app(registry_port: int) -> dict[str, str | bytes]:
    dockerfile = (
        f"FROM {MIRROR}/library/python:3.11-slim-bookworm\n"
        "WORKDIR /app\n"
        "COPY gate.py server.py ./\n"
        f"RUN python gate.py 127.0.0.1 {registry_port}\n"
        "ENV PORT=8080\n"
        "USER 10001:10001\n"
        'CMD ["python", "server.py"]\n'
    )
    return {"Dockerfile": dockerfile, "gate.py": GATE, "server.py": SERVER}


@pytest.fixture
def docker_config(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A client config of this test's own (its registry login goes there, not to ~)."""
    directory = tmp_path / "docker-config"
    directory.mkdir()
    yield {"DOCKER_CONFIG": str(directory)}
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def built_images() -> Iterator[list[str]]:
    """Images the test makes the engine hold: removed afterwards, whatever happened."""
    images: list[str] = []
    yield images
    for image in images:
        docker("rmi", "-f", image, timeout=60)


async def test_registry_down_during_push_is_retried_once_it_is_back(
    git_daemon: GitDaemon,
    store: Store,
    queue: Queue,
    build_settings: Settings,
    deployer: StartDeployer,
    tmp_path: Path,
    docker_config: dict[str, str],
    built_images: list[str],
) -> None:
    with basic_registry_running(tmp_path / "registry") as private:
        registry = private.registry
        port = int(registry.host.rsplit(":", 1)[1])
        name = f"outage-{port}"
        commit = git_daemon.create_repo(name, gated_app(port))
        image = f"{registry.host}/e2e/{name}:{commit[:12]}"
        built_images.append(image)
        service_id = await add_service(store, name, git_daemon.url_for(name))
        password = SecretStr(private.password)
        async with RegistryClient(registry.url, private.username, password) as client:
            assert not await client.manifest_exists(f"e2e/{name}", commit[:12])
        await deployer(
            registry_url=registry.url,
            registry_username=private.username,
            registry_password=password,
            retry_backoff_seconds=5.0,
            retry_backoff_max_seconds=5.0,
        )
        made = await queue.enqueue(service_id, ref="main", commit_sha=commit, max_attempts=3)
        running = await wait_until(
            lambda: _status_in(store, made.id, Status.BUILDING, Status.PUSHING),
            "the deployment started building",
            BUILD_TIMEOUT,
        )
        assert running.attempts == 1

        # Down while the deployment builds: the build waits for it (the gate), then pushes.
        registry.stop()
        handed_back: Deployment = await wait_until(
            lambda: _status_in(store, made.id, Status.QUEUED, Status.SUCCEEDED, Status.FAILED),
            "the attempt ended",
            BUILD_TIMEOUT,
            poll=0.02,
        )
        assert handed_back.status == Status.QUEUED, (handed_back.status, handed_back.error)
        # Back in the queue, nothing half-done: nothing active, the build dir removed.
        # (Checked first: the retry starts after the backoff, 5 s.)
        active = await store.pool.fetchval(
            "SELECT count(*) FROM deployments WHERE status = ANY($1::text[])", list(ACTIVE)
        )
        assert active == 0
        await assert_build_dir_gone(build_settings)
        # Back on the same port with the same storage, for the retry.
        registry.restart()

        # Transient, and a person reads that the registry could not be reached.
        assert handed_back.attempts == 1 and handed_back.error_kind == "transient"
        error = handed_back.error or ""
        assert f"registry {registry.host} is unreachable" in error, error
        assert "connection refused" in error, error
        # With backoff, and the lease given up.
        assert handed_back.run_at > handed_back.updated_at
        assert handed_back.worker_id is None and handed_back.lease_token is None
        steps = [s for s in await store.list_steps(made.id) if s.attempt == 1]
        assert [(s.name, s.status) for s in steps if s.kind == "pipeline"] == [
            ("clone", "done"),
            ("plan", "done"),
            ("build", "failed"),
        ]
        pushes = [s for s in steps if s.kind == "build" and s.name.startswith("pushing ")]
        assert [s.status for s in pushes] == ["failed"], [(s.name, s.status) for s in steps]
        lines = [line.line for line in (await store.read_logs(made.id, limit=10000)).items]
        assert any("no longer answers" in line for line in lines)
        assert any("retrying in 5 s" in line for line in lines), "\n".join(lines)

        # The retry pushes.
        done = await wait_until(
            lambda: _status_in(store, made.id, Status.SUCCEEDED, Status.FAILED),
            "the retry finished",
            BUILD_TIMEOUT,
        )
        assert done.status == Status.SUCCEEDED, done.error
        assert done.attempts == 2
        assert done.image == image
        assert done.digest is not None and done.digest.startswith("sha256:")
        retry = [s for s in await store.list_steps(made.id) if s.attempt == 2]
        assert all(s.status == "done" for s in retry if s.kind == "pipeline"), retry
        await assert_build_dir_gone(build_settings)

        # The registry holds what the deployment recorded, under its tag and the moving one.
        async with RegistryClient(registry.url, private.username, password) as client:
            assert await client.manifest_digest(f"e2e/{name}", commit[:12]) == done.digest
            assert await client.manifest_digest(f"e2e/{name}", "production") == done.digest
            manifest = await client.get_manifest(f"e2e/{name}", done.digest)
            assert manifest.digest == done.digest

        # And it runs: pulled back from the registry (not the engine's local copy).
        docker("rmi", image, check=True, timeout=60)
        docker(
            "login",
            registry.host,
            "--username",
            private.username,
            "--password-stdin",
            input=private.password,
            env=docker_config,
            check=True,
            timeout=60,
        )
        docker("pull", image, env=docker_config, check=True, timeout=120)
        status, body = await asyncio.to_thread(run_container_and_get, image, timeout=90)
        assert status == 200 and "hello from the registry outage" in body


async def _status_in(store: Store, deployment_id: int, *statuses: Status) -> Deployment | None:
    deployment = await store.get_deployment(deployment_id)
    return deployment if deployment.status in statuses else None


# --- GitHub answers 500 and 429 for a minute -----------------------------------------------

OUTAGE_SECONDS = 60.0
RETRY_AFTER = 60  # what GitHub sends with a secondary rate limit
# Every request in the outage is answered, in turn: 500, 500, 429 (Retry-After: 60), …
OUTAGE_STATUSES = (500, 500, 429)


def _spawn_serve(
    processes: list[subprocess.Popen[bytes]], env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """`click-deploy serve`, its output in `log` (a pipe nobody reads could fill up)."""
    with log.open("wb") as output:
        server = subprocess.Popen(
            [*CLI, "serve"], env=env, cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT
        )
    processes.append(server)
    return server


async def _serve_ready(session: aiohttp.ClientSession, port: int, log: Path) -> None:
    async def listening() -> bool:
        try:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                return response.status == 200 and bool((await response.json())["listening"])
        except aiohttp.ClientConnectionError:
            return False

    try:
        await wait_until(listening, "`click-deploy serve` answers /healthz", 30, poll=0.1)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{_tail(log)}") from None


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


async def _outbox(store: Store) -> dict[str, int]:
    row = await store.pool.fetchrow(
        "SELECT count(*) AS rows,"
        " count(*) FILTER (WHERE delivered_at IS NULL) AS pending,"
        " count(*) FILTER (WHERE last_error IS NOT NULL) AS with_error"
        " FROM outbox"
    )
    assert row is not None
    return dict(row)


async def test_github_outage_reports_are_delivered_afterwards_and_builds_go_on(
    database_url: str,
    tmp_path: Path,
    store: Store,
    fake: FakeGitHub,
    examples_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    await store.create_service(
        NewService("hello", REPO, "github", branch="main", config={"previews": True})
    )
    port = free_port()
    env = worker_env(
        database_url,
        tmp_path,
        HTTP_PORT=str(port),
        GITHUB_WEBHOOK_SECRET=SECRET,
        GITHUB_APP_ID="1234",
        GITHUB_PRIVATE_KEY=private_key_pem(),
        GITHUB_API_URL=fake.url,
        REPORT_POLL_SECONDS="0.2",
        PUBLIC_URL="https://deploy.example.com",
    )
    env = {k: v for k, v in env.items() if not k.startswith(("SLACK_", "GITLAB_"))}
    log = tmp_path / "serve.log"
    server = _spawn_serve(processes, env, log)

    sha = secrets.token_hex(20)
    payload = example(examples_path, "pull_request", 0, installation=INSTALLATION)
    payload["pull_request"]["base"]["ref"] = "main"
    payload["pull_request"]["head"].update(sha=sha, ref="feature")
    pr = int(payload["pull_request"]["number"])
    async with aiohttp.ClientSession() as session:
        await _serve_ready(session, port, log)

        # GitHub goes down, then the pull request's webhook arrives (webhooks come from
        # GitHub's side, which still sends them during an API outage).
        fake.start_outage(OUTAGE_SECONDS, statuses=OUTAGE_STATUSES, retry_after=RETRY_AFTER)
        body, headers = signed("pull_request", payload)
        async with session.post(
            f"http://127.0.0.1:{port}/webhooks/github", data=body, headers=headers
        ) as response:
            assert response.status == 200, await response.text()
            answer = await response.json()
        deployment_id = answer["deployments"][0]

        # The build is not affected: it succeeds while GitHub is still down.
        done = await wait_until(
            lambda: _status_in(store, deployment_id, Status.SUCCEEDED, Status.FAILED),
            "the deployment finished",
            30,
        )
        assert done.status == Status.SUCCEEDED, done.error
        assert fake.in_outage, "the build should have finished during the outage"
        assert all(call.status >= 400 for call in fake.requests)  # nothing got through

        # The reporter's failures show in /metrics while GitHub is down.
        async def failing_shown() -> dict[str, float] | None:
            samples = await scrape(session, port)
            failing = samples.get("click_deploy_reports_failing{target=github}")
            return samples if failing == 1 else None

        during = await wait_until(failing_shown, "/metrics shows the failing report", 30, 0.2)
        assert fake.in_outage
        assert during["click_deploy_reports_pending{target=github}"] == 1
        assert during["click_deploy_report_failures_total{target=github}"] == 0

        # After the outage (and the last 429's minute), everything is delivered.
        async def all_delivered() -> bool:
            outbox = await _outbox(store)
            return outbox["rows"] > 0 and outbox["pending"] == 0

        remaining = max(fake.outage_until - time.monotonic(), 0.0)
        try:
            await wait_until(
                all_delivered, "every report delivered", remaining + RETRY_AFTER + 60, 0.2
            )
        except AssertionError as error:
            raise AssertionError(f"{error}\n{fake.outage_answers}\n{_tail(log)}") from None
        assert not fake.in_outage
        after = await scrape(session, port)

    # Retry-After honoured, no hammering: the reporter backed off after each 500 (1 s, then
    # 2 s) and waited out the 429's minute, which outlasts the outage. So exactly one 429
    # and it was the outage's last answer (ignoring it would have meant ~6 attempts).
    statuses = [answer.status for answer in fake.outage_answers]
    assert statuses == [500, 500, 429], fake.outage_answers
    assert fake.invalid == []
    assert all(call.status < 300 for call in fake.requests[len(fake.outage_answers) :])

    # Every report, once, with the final state.
    repo_path = f"/repos/{REPO}"
    assert len(fake.delivered("POST", rf"{repo_path}/check-runs")) == 1
    check = fake.latest_check_run()
    assert (check["status"], check["conclusion"]) == ("completed", "success")
    assert check["head_sha"] == sha and check["external_id"] == str(deployment_id)
    assert check["name"] == f"click-deploy/hello (pr-{pr})"
    commit_statuses = fake.delivered("POST", rf"{repo_path}/statuses/{sha}")
    assert commit_statuses and commit_statuses[-1].body["state"] == "success"
    assert len(fake.delivered("POST", rf"{repo_path}/issues/{pr}/comments")) == 1
    comment = fake.pr_comment()
    assert comment is not None and "succeeded" in comment and str(done.image) in comment
    assert len(fake.delivered("POST", rf"{repo_path}/deployments")) == 1
    deployment_states = [
        call.body["state"]
        for call in fake.delivered("POST", rf"{repo_path}/deployments/\d+/statuses")
    ]
    assert deployment_states and deployment_states[-1] == "success"

    # Nothing pending, nothing given up; the metrics counted the three failed attempts.
    assert await _outbox(store) == {"rows": 1, "pending": 0, "with_error": 0}
    assert after["click_deploy_reports_pending{target=github}"] == 0
    assert after["click_deploy_reports_failing{target=github}"] == 0
    assert after["click_deploy_report_failures_total{target=github}"] == 0
    assert after["click_deploy_report_retries_total{target=github}"] == len(statuses)

    server.send_signal(signal.SIGTERM)
    assert server.wait(20) == 0, _tail(log)
    assert "Traceback" not in log.read_text(errors="replace")
