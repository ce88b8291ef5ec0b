"""Empty or short keys never sign or verify anything: PAGE_SECRET, the page-secret file in
DATA_DIR, the GitHub and GitLab webhook secrets, Slack's signing secret. Through the real
aiohttp app, and `click-deploy serve` for the start-up refusal."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from bot.github.setup import setup as github_setup
from bot.gitlab.setup import setup as gitlab_setup
from bot.runtime import Runtime
from bot.slack.setup import PATHS
from bot.slack.setup import setup as slack_setup
from bot.web import signing
from pipeline.errors import ConfigError
from pipeline.queue.queue import Queue
from pipeline.settings import Settings
from pipeline.store import Store
from tests.conftest import REPO_ROOT
from tests.support.api import make_app
from tests.support.fake_gitlab import hook_headers

Client = TestClient[web.Request, web.Application]


def forged(key: bytes, kind: str, object_id: int) -> str:
    """What a link's signature is with `key` (an attacker knows b"")."""
    digest = hmac.new(key, f"{kind}:{object_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


@pytest.fixture(autouse=True)
def fresh_key_cache() -> None:
    signing._file_key.cache_clear()


async def serving(settings: Settings, pool: asyncpg.Pool, database_url: str) -> Client:
    runtime = Runtime(settings, database_url, pool, Store(pool), Queue(pool, settings))
    client = TestClient(TestServer(make_app(runtime)))
    await client.start_server()
    return client


@pytest.fixture
async def opened() -> AsyncIterator[list[Client]]:
    clients: list[Client] = []
    yield clients
    for client in clients:
        await client.close()


async def test_an_empty_page_secret_is_unset_and_a_forged_link_opens_nothing(
    settings: Settings,
    pool: asyncpg.Pool,
    database_url: str,
    service: int,
    opened: list[Client],
) -> None:
    empty = settings.model_copy(update={"page_secret": SecretStr("")})
    client = await serving(empty, pool, database_url)
    opened.append(client)
    refused = await client.get(f"/services/{service}?s={forged(b'', 'service', service)}")
    assert refused.status == 404
    # The key in use is the one kept in DATA_DIR, and its links open the page.
    key = (settings.data_dir / "page-secret").read_bytes()
    assert len(key) >= signing.MIN_KEY_BYTES
    page = await client.get(f"/services/{service}?s={forged(key, 'service', service)}")
    assert page.status == 200


async def test_an_empty_or_short_key_file_is_made_anew_0600(
    settings: Settings,
    pool: asyncpg.Pool,
    database_url: str,
    service: int,
    opened: list[Client],
) -> None:
    key_file = settings.data_dir / "page-secret"
    for stored in (b"", b"\n", b"short-key"):
        signing._file_key.cache_clear()
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_bytes(stored)
        key_file.chmod(0o644)
        client = await serving(settings, pool, database_url)
        opened.append(client)
        forged_link = f"/services/{service}?s={forged(stored.strip(), 'service', service)}"
        assert (await client.get(forged_link)).status == 404, stored
        fresh = key_file.read_bytes()
        assert len(fresh) >= signing.MIN_KEY_BYTES and fresh != stored
        assert key_file.stat().st_mode & 0o777 == 0o600
        assert signing.verify(settings, "service", service, forged(fresh, "service", service))


async def test_a_short_page_secret_stops_the_start_naming_it(
    settings: Settings, pool: asyncpg.Pool, database_url: str
) -> None:
    short = settings.model_copy(update={"page_secret": SecretStr("x" * 31)})
    runtime = Runtime(short, database_url, pool, Store(pool), Queue(pool, short))
    with pytest.raises(ConfigError, match=r"^PAGE_SECRET: must be at least 32 bytes"):
        make_app(runtime)
    # Also when pages need tokens: a bad setting is a bad setting.
    token_pages = short.model_copy(update={"pages_access": "token"})
    with pytest.raises(ConfigError, match="PAGE_SECRET"):
        signing.check(token_pages)
    long_enough = settings.model_copy(update={"page_secret": SecretStr("x" * 32)})
    signing.check(long_enough)
    assert not (settings.data_dir / "page-secret").exists()  # a configured key is used


def serve_env(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PAGE", "DATABASE_", "WORKER_", "DATA_DIR"))
    }
    env.update(
        DATABASE_URL=database_url,
        DATA_DIR=str(tmp_path / "data"),
        PYTHONPATH=str(REPO_ROOT),
        WORKER_PIPELINE="tests.support.pipelines:scripted",
        HTTP_PORT="0",
        LOG_FORMAT="json",
    )
    env.update(extra)
    return env


@pytest.mark.parametrize(
    ("variables", "line"),
    [
        ({"PAGE_SECRET": "too-short"}, "click-deploy: PAGE_SECRET: must be at least 32 bytes"),
        ({"DATA_DIR": "/proc/click-deploy"}, "click-deploy: DATA_DIR: cannot write to"),
    ],
)
def test_serve_with_a_bad_page_key_exits_3_with_one_line(
    database_url: str, tmp_path: Path, variables: dict[str, str], line: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "serve"],
        env=serve_env(database_url, tmp_path, **variables),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stderr[-2000:]
    lines = [text for text in done.stderr.splitlines() if text.startswith("click-deploy:")]
    assert len(lines) == 1 and lines[0].startswith(line), done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "too-short" not in done.stderr


async def test_empty_webhook_secrets_verify_nothing(
    settings: Settings, pool: asyncpg.Pool, database_url: str, store: Store
) -> None:
    empty = settings.model_copy(
        update={
            "github_webhook_secret": SecretStr(""),
            "gitlab_webhook_secret": SecretStr(""),
            "slack_signing_secret": SecretStr(""),
            "slack_bot_token": SecretStr("xoxb-test"),
        }
    )
    runtime = Runtime(empty, database_url, pool, store, Queue(pool, empty))
    app = web.Application()
    github_setup(app, runtime)
    gitlab_setup(app, runtime)
    slack_setup(app, runtime)
    body = json.dumps({"zen": "anyone can sign this", "hook_id": 1}).encode()
    with_empty_key = "sha256=" + hmac.new(b"", body, hashlib.sha256).hexdigest()
    async with TestClient(TestServer(app)) as client:
        github = await client.post(
            "/webhooks/github",
            data=body,
            headers={
                "Content-Type": "application/json",
                "X-GitHub-Event": "ping",
                "X-GitHub-Delivery": "d-1",
                "X-Hub-Signature-256": with_empty_key,
            },
        )
        assert github.status == 401
        assert "GITHUB_WEBHOOK_SECRET" in (await github.json())["message"]
        gitlab = await client.post(
            "/webhooks/gitlab", data=body, headers=hook_headers("Push Hook", token="")
        )
        assert gitlab.status == 401
        assert "GITLAB_WEBHOOK_SECRET" in (await gitlab.json())["message"]
        for path in PATHS:  # Slack is off: an empty signing secret is no secret
            assert (await client.post(path, data=b"text=help")).status == 404
    assert await pool.fetchval("SELECT count(*) FROM webhook_deliveries") == 0


async def test_a_signature_that_is_not_ascii_is_just_wrong(
    settings: Settings, pool: asyncpg.Pool, database_url: str, service: int, opened: list[Client]
) -> None:
    client = await serving(settings, pool, database_url)
    opened.append(client)
    assert (await client.get(f"/services/{service}?s=%C3%A9t%C3%A9")).status == 404
    logs = await client.get("/api/v1/deployments/1/logs?s=%C3%A9t%C3%A9")
    assert logs.status == 401
