"""Long-running processes: the worker alone, or workers plus the HTTP endpoints."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

from bot.api.app import setup_api
from bot.app_keys import RUNTIME_KEY, WORKER_KEY
from bot.centrifugo.setup import setup as centrifugo_setup
from bot.github.setup import setup as github_setup
from bot.gitlab.setup import setup as gitlab_setup
from bot.ops import health as ops_health
from bot.ops import logcontext as ops_logcontext
from bot.ops import metrics as ops_metrics
from bot.ops import unavailable as ops_unavailable
from bot.runtime import Runtime
from bot.slack.setup import setup as slack_setup
from bot.web.pages import setup_pages
from pipeline.app_credentials import use_stored_app
from pipeline.errors import ConfigError
from pipeline.job import Pipeline
from pipeline.queue.worker import Worker
from pipeline.settings import Settings

log = structlog.get_logger(__name__)


def make_worker(runtime: Runtime, pipeline: Pipeline, slots: int | None = None) -> Worker:
    return Worker(runtime.settings, runtime.pool, runtime.url, pipeline, slots=slots)


def bind_http(settings: Settings) -> socket.socket:
    """The listening socket of HTTP_HOST:HTTP_PORT, made before anything else starts, so a
    port in use or a host that does not resolve is one line naming them."""
    host, port = settings.http_host, settings.http_port
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ConfigError(f"HTTP_HOST: cannot resolve {host!r} ({error.strerror})") from None
    family, _type, _proto, _name, address = addresses[0]
    try:
        return socket.create_server(address, family=family, backlog=1024)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            message = f"HTTP_PORT: {port} is in use on {host} (another process listens there)"
        elif error.errno == errno.EACCES:
            message = f"HTTP_PORT: {port} needs privileges on this machine (use 1024 or above)"
        else:
            reason = os.strerror(error.errno) if error.errno else str(error)
            message = f"HTTP_HOST: cannot listen on {host} port {port} ({reason})"
        raise ConfigError(message) from None


def stop_on_signals(worker: Worker) -> None:
    """SIGTERM or SIGINT: stop claiming and let running work finish within the grace
    period. A second signal hands running work back to the queue at once."""
    loop = asyncio.get_running_loop()
    received = 0

    def on_signal(number: int) -> None:
        nonlocal received
        received += 1
        name = signal.Signals(number).name
        if received == 1:
            log.info(
                "stopping: running deployments may finish",
                signal=name,
                grace_seconds=worker.settings.shutdown_grace_seconds,
            )
            worker.stop()
        else:
            log.info("stopping now: handing running deployments back", signal=name)
            worker.stop(now=True)

    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, on_signal, number)


async def run_worker(runtime: Runtime, pipeline: Pipeline, slots: int | None = None) -> None:
    await use_stored_app(runtime.settings, runtime.pool)  # the App made at /github/setup
    worker = make_worker(runtime, pipeline, slots)
    stop_on_signals(worker)
    await worker.run()


async def health(request: web.Request) -> web.Response:
    """Liveness: the process and its event loop answer. Cheap (no query, no I/O), and 200
    even while the database is down, so an orchestrator does not restart a process that
    would only wait for it; /readyz (bot/ops/health.py) checks what it depends on."""
    worker = request.app[WORKER_KEY]
    body: dict[str, Any] = {
        "status": "ok",
        "worker": worker.worker_id,
        "slots": worker.slots,
        "running": len(worker.running),
        "listening": worker.listener.connected.is_set(),
    }
    return web.json_response(body)


def make_app(runtime: Runtime, worker: Worker) -> web.Application:
    app = web.Application()
    app[RUNTIME_KEY] = runtime
    app[WORKER_KEY] = worker
    app.router.add_get("/healthz", health)
    for setup in FEATURES:
        setup(app, runtime)
    return app


# Each front end adds its routes here: setup(app, runtime) registers handlers and any
# background tasks (app.cleanup_ctx). One line a feature, so features stay apart.
FEATURES: list[Callable[[web.Application, Runtime], None]] = []
FEATURES.append(setup_api)  # REST API and live logs (bot/api)
FEATURES.append(centrifugo_setup)  # live logs published to Centrifugo, when set (bot/centrifugo)
FEATURES.append(setup_pages)  # deployment and service pages (bot/web)
FEATURES.append(github_setup)  # POST /webhooks/github, the GitHub reporter (bot/github)
FEATURES.append(gitlab_setup)  # POST /webhooks/gitlab, the GitLab reporter (bot/gitlab)
FEATURES.append(slack_setup)  # /slack/commands, /interactivity, /events; reporter (bot/slack)
FEATURES.append(ops_health.setup)  # GET /readyz: database, migrations, BuildKit (bot/ops)
FEATURES.append(ops_metrics.setup)  # GET /metrics: Prometheus (bot/ops)
FEATURES.append(ops_logcontext.setup)  # delivery/deployment ids bound to request logs (bot/ops)
FEATURES.append(ops_unavailable.setup)  # 503 + Retry-After while the database is away (bot/ops)


async def run_server(
    runtime: Runtime, listener: socket.socket, pipeline: Pipeline, slots: int | None = None
) -> None:
    """Serve HTTP on `listener` (from bind_http) and run the workers until stopped."""
    await use_stored_app(runtime.settings, runtime.pool)  # the App made at /github/setup
    worker = make_worker(runtime, pipeline, slots)
    stop_on_signals(worker)
    app_runner = web.AppRunner(make_app(runtime, worker), access_log=None)
    try:
        await app_runner.setup()
        await web.SockSite(app_runner, listener).start()
        port = listener.getsockname()[1]  # HTTP_PORT=0: the one the system chose
        log.info("serving", url=f"http://{runtime.settings.http_host}:{port}")
        await worker.run()
    finally:
        await app_runner.cleanup()
