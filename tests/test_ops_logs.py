"""Structured logs (bot/ops/redact.py, bot/ops/logcontext.py, the worker's binding):
configured secrets, tokens in URLs and Authorization headers never reach a log line, and
every line of a run or request names its deployment, service and delivery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.ops.logcontext import bind_request_context
from bot.ops.redact import MASK, RedactSecrets, configured_secrets
from pipeline.job import BuildResult, Job
from pipeline.queue.queue import Queue
from pipeline.queue.worker import Worker
from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import Store
from tests.conftest import REPO_ROOT
from tests.support.github_hooks import private_key_pem
from tests.support.waiting import wait_for_status

GIT_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
WEBHOOK_SECRET = "whsec-correct-horse-battery"
REGISTRY_PASSWORD = "Harbor-Robot-Pa55word!"
DB_PASSWORD = "pg-s3cret-pw"
PRIVATE_KEY = private_key_pem()  # a real one: GITHUB_PRIVATE_KEY is checked at start-up
PEM_LINE = PRIVATE_KEY.splitlines()[1]
SECRETS = (GIT_TOKEN, WEBHOOK_SECRET, REGISTRY_PASSWORD, DB_PASSWORD, PEM_LINE)


def settings_with_secrets() -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        git_token=GIT_TOKEN,
        github_webhook_secret=WEBHOOK_SECRET,
        registry_password=REGISTRY_PASSWORD,
        database_url=f"postgresql://deploy:{DB_PASSWORD}@db.internal:5432/click",
        github_app_id="1234",
        github_private_key=PRIVATE_KEY,
        registry_username="robot",
    )


def test_configured_secrets_are_every_secret_setting() -> None:
    found = configured_secrets(settings_with_secrets())
    for secret in SECRETS:
        assert secret in found
    assert found == sorted(found, key=len, reverse=True)
    # Unset secrets and short values add nothing.
    unset = Settings(_env_file=None, database_url=None, git_token="short")  # type: ignore[call-arg]
    assert configured_secrets(unset) == []


def test_redaction_of_values_keys_urls_and_headers() -> None:
    redact = RedactSecrets.from_settings(settings_with_secrets())
    event: dict[str, Any] = {
        "event": f"cloning https://x-access-token:{GIT_TOKEN}@github.com/acme/web.git",
        "url": "https://robot$deploy:hunter22@harbor.example.com/v2/",
        "headers": {"Authorization": "Bearer abc.def.ghi", "Accept": "application/json"},
        "request": "GET /v2/ HTTP/1.1\r\nAuthorization: Basic cm9ib3Q6aHVudGVyMjI=\r\n",
        "text": f"signature with {WEBHOOK_SECRET} and Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig",
        "nested": [{"password": "anything"}, ("registry", REGISTRY_PASSWORD)],
        "error": ValueError(f"login failed for deploy:{DB_PASSWORD}"),
        "exception": f"Traceback ...\nRuntimeError: key {PEM_LINE}",
        "slack": "xoxb-1234567890-abcdefghij",
        "count": 3,
        "ok": True,
        "nothing": None,
    }
    out = redact(None, "info", dict(event))
    rendered = json.dumps(out, default=repr)
    for secret in (*SECRETS, "hunter22", "abc.def.ghi", "cm9ib3Q6aHVudGVyMjI=", "eyJhbGci"):
        assert secret not in rendered
    assert out["event"] == f"cloning https://{MASK}@github.com/acme/web.git"
    assert out["url"] == f"https://{MASK}@harbor.example.com/v2/"
    assert out["headers"] == {"Authorization": MASK, "Accept": "application/json"}
    assert out["nested"] == [{"password": MASK}, ["registry", MASK]]
    assert out["slack"] == MASK
    assert (out["count"], out["ok"], out["nothing"]) == (3, True, None)
    # What is not secret stays as it was.
    plain = {"event": "deployment succeeded", "image": "localhost:5001/click-deploy/web:abc"}
    assert redact(None, "info", dict(plain)) == plain


LOGGING_SCRIPT = textwrap.dedent(
    """
    import structlog
    from bot.logs import configure_logging
    from pipeline.settings import load_settings

    settings = load_settings()
    configure_logging(settings)
    log = structlog.get_logger("secret-test")
    token = settings.git_token.get_secret_value()
    url = settings.database_url.get_secret_value()
    log.info("clone", url=f"https://x-access-token:{token}@github.com/acme/web.git")
    log.info(f"database at {url}")
    log.warning("registry refused", password=settings.registry_password.get_secret_value())
    structlog.contextvars.bind_contextvars(secret=settings.github_webhook_secret)
    log.info("bound", detail={"headers": {"authorization": f"token {token}"}})
    try:
        raise RuntimeError(f"push with {settings.registry_password.get_secret_value()} failed")
    except RuntimeError:
        log.exception("crashed", key=settings.github_private_key.get_secret_value())
    """
)


def run_logging_script(log_format: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT", "DATABASE", "REG"))}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        LOG_FORMAT=log_format,
        GIT_TOKEN=GIT_TOKEN,
        GITHUB_WEBHOOK_SECRET=WEBHOOK_SECRET,
        REGISTRY_PASSWORD=REGISTRY_PASSWORD,
        DATABASE_URL=f"postgresql://deploy:{DB_PASSWORD}@db.internal:5432/click",
        GITHUB_APP_ID="1234",
        GITHUB_PRIVATE_KEY=PRIVATE_KEY,
        REGISTRY_USERNAME="robot",
    )
    result = subprocess.run(
        [sys.executable, "-c", LOGGING_SCRIPT],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout + result.stderr


def test_a_configured_secret_never_shows_in_a_json_log_line() -> None:
    output = run_logging_script("json")
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert [line["event"] for line in lines] == [
        "clone",
        f"database at {MASK}",  # the whole URL is a configured secret
        "registry refused",
        "bound",
        "crashed",
    ]
    for secret in SECRETS:
        assert secret not in output
    assert lines[0]["url"] == f"https://{MASK}@github.com/acme/web.git"
    assert lines[2]["password"] == MASK
    assert lines[3]["detail"] == {"headers": {"authorization": MASK}}
    assert "RuntimeError: push with *** failed" in lines[4]["exception"]


def test_a_configured_secret_never_shows_on_a_terminal_either() -> None:
    output = run_logging_script("console")
    assert "registry refused" in output and "crashed" in output
    for secret in SECRETS:
        assert secret not in output


# ------------------------------------------------------------------ bound context


class RecordingPipeline:
    """Records what the structlog context holds while the pipeline runs."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    async def run(self, job: Job) -> BuildResult:
        self.seen.append(structlog.contextvars.get_contextvars())
        await job.enter(Status.BUILDING)
        await job.enter(Status.PUSHING)
        return BuildResult(image="registry.test/web:1", digest="sha256:" + "0" * 64)


async def test_the_worker_binds_deployment_service_and_delivery(
    start_worker: Callable[..., Awaitable[Worker]], queue: Queue, store: Store, service: int
) -> None:
    pipeline = RecordingPipeline()
    await start_worker(pipeline)
    first = await queue.enqueue(service, trigger={"source": "github", "delivery_id": "d-42"})
    await wait_for_status(store, first.id, Status.SUCCEEDED)
    second = await queue.enqueue(service, environment="staging", trigger={"source": "cli"})
    await wait_for_status(store, second.id, Status.SUCCEEDED)
    assert pipeline.seen == [
        {"deployment_id": first.id, "service": "web", "delivery_id": "d-42"},
        {"deployment_id": second.id, "service": "web"},
    ]
    # The worker's own context stays clean.
    assert "deployment_id" not in structlog.contextvars.get_contextvars()


async def test_requests_bind_delivery_and_deployment_and_reset_after() -> None:
    seen: list[dict[str, Any]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(structlog.contextvars.get_contextvars())
        return web.Response(text="ok")

    app = web.Application(middlewares=[bind_request_context])
    app.router.add_post("/webhooks/github", handler)
    app.router.add_get(r"/api/v1/deployments/{id:\d+}", handler)
    async with TestClient(TestServer(app)) as client:
        await client.post("/webhooks/github", headers={"X-GitHub-Delivery": "abc-123"})
        await client.get("/api/v1/deployments/7")  # same keep-alive connection
    assert seen == [
        {"http_method": "POST", "http_path": "/webhooks/github", "delivery_id": "abc-123"},
        {"http_method": "GET", "http_path": "/api/v1/deployments/7", "deployment_id": 7},
    ]
