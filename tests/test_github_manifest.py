"""The GitHub App made from app.yml's manifest: /github/setup, GitHub's page (the fake's,
its requests checked against GitHub's OpenAPI description), the callback that converts
the code, the App kept encrypted in PostgreSQL and used at once; in Chromium, and the
refusals as pages."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import jwt
import pytest
import yaml
from aiohttp import web
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from openapi_core import OpenAPI
from pydantic import SecretStr

from bot.github import manifest_flow
from bot.github.manifest_flow import ManifestError, load_manifest, setup_link
from bot.github.setup import setup as github_setup
from bot.github.webhook import GITHUB_WEBHOOK
from bot.runtime import Runtime
from pipeline.app_credentials import AppCredentials, store_app, stored_app, use_stored_app
from pipeline.errors import ConfigError
from pipeline.queue.queue import Queue
from pipeline.settings import Settings, load_settings
from pipeline.store import NewService, Store
from tests.support import fake_github
from tests.support.fake_github import FakeGitHub
from tests.support.fake_github_apps import CREATE_PATH
from tests.support.github_hooks import SECRET, example, signed
from tests.support.infra import ensure_tool
from tests.support.npm_cache import OPENAPI, WEBHOOK_EXAMPLES, npm_file
from tests.support.waiting import PATIENCE
from tests.test_pages import CHROMIUM, CHROMIUM_ARGS

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def github_openapi() -> OpenAPI:
    return fake_github.build_validator(str(npm_file(*OPENAPI)))


@pytest.fixture
async def fake(github_openapi: OpenAPI) -> AsyncIterator[FakeGitHub]:
    fake = FakeGitHub(github_openapi)
    runner = await fake_github.start(fake)
    yield fake
    await runner.cleanup()
    assert (fake.invalid, fake.apps.invalid) == ([], [])  # every request as GitHub takes it


@dataclass
class Bot:
    url: str
    settings: Settings
    app: web.Application

    def link(self) -> str:
        return setup_link(self.settings)


@pytest.fixture
async def bot(
    settings: Settings, fake: FakeGitHub, pool: asyncpg.Pool, database_url: str, store: Store
) -> AsyncIterator[Bot]:
    """The GitHub feature alone on a real port (the browser and GitHub's redirect reach
    it), no App configured, SECRETS_KEY set."""
    listener = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    bot_settings = settings.model_copy(
        update={
            "github_url": fake.url,
            "github_api_url": fake.url,
            "public_url": url,
            "secrets_key": SecretStr(Fernet.generate_key().decode()),
            "report_poll_seconds": 0.05,
            "report_throttle_seconds": 0.0,
        }
    )
    assert bot_settings.github_app_id is None and bot_settings.github_webhook_secret is None
    app = web.Application()
    github_setup(app, Runtime(bot_settings, database_url, pool, store, Queue(pool, bot_settings)))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, listener).start()
    yield Bot(url, bot_settings, app)
    await runner.cleanup()


def session() -> aiohttp.ClientSession:
    # unsafe: keep cookies of an IP address host (127.0.0.1), as a browser does
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def page_of(response: aiohttp.ClientResponse) -> tuple[int, str, str]:
    """Status, title and message text of one of the setup pages."""
    html = await response.text()
    title = re.search(r"<h1 id=title>(.*?)</h1>", html)
    message = re.search(r"<div id=message>(.*?)</div>", html, re.S)
    assert title is not None and message is not None, html
    text = re.sub(r"<[^>]+>", " ", message[1])
    return response.status, unescape(title[1]), " ".join(unescape(text).split())


def form_of(html: str) -> tuple[str, dict[str, Any]]:
    """The manifest form's action and the manifest it posts."""
    action = re.search(r'<form id=create method=post action="([^"]+)"', html)
    value = re.search(r'name=manifest value="([^"]+)"', html)
    assert action is not None and value is not None, html
    return unescape(action[1]), yaml.safe_load(unescape(value[1]))


async def to_github_and_back(client: aiohttp.ClientSession, link: str) -> str:
    """What a person does: open the setup page, post the manifest to GitHub, press Create;
    the URL GitHub sends the browser back to."""
    opened = await client.get(link)
    assert opened.status == 200
    action, manifest = form_of(await opened.text())
    github_page = await client.post(action, data={"manifest": json.dumps(manifest)})
    assert github_page.status == 200, await github_page.text()
    fields = dict(re.findall(r'name=(\w+) value="([^"]*)"', await github_page.text()))
    base = action.split("/settings/")[0].split("/organizations/")[0]
    created = await client.post(
        base + CREATE_PATH,
        data={key: unescape(value) for key, value in fields.items()},
        allow_redirects=False,
    )
    assert created.status == 302
    return created.headers["Location"]


async def test_the_app_is_made_in_chromium_kept_encrypted_and_used_at_once(
    bot: Bot, fake: FakeGitHub, pool: asyncpg.Pool, store: Store
) -> None:
    executable = ensure_tool("chromium", CHROMIUM)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(bot.link())
            assert await page.inner_text("#title") == "Create the GitHub App"
            assert "only this machine reaches" in await page.inner_text("#warning")
            await page.click("#create button")
            await page.wait_for_selector("#owner")  # GitHub's page
            assert await page.inner_text("#owner") == "octocat"
            await page.click("#create")
            await page.wait_for_selector("#install")
            title = await page.inner_text("#title")
            install = await page.get_attribute("#install", "href")
            cookies = await page.context.cookies()
        finally:
            await browser.close()
    assert title == "The GitHub App click-deploy is ready"
    assert install == f"{fake.url}/apps/click-deploy/installations/new"
    assert [c for c in cookies if c["name"] == manifest_flow.STATE_COOKIE] == []

    # GitHub got app.yml's manifest with this install's URLs.
    [posted] = fake.apps.manifests
    app_yml = yaml.safe_load((REPO_ROOT / "app.yml").read_text())
    assert posted["hook_attributes"] == {"url": f"{bot.url}/webhooks/github", "active": True}
    assert posted["redirect_url"] == f"{bot.url}/github/setup/callback"
    assert posted["default_permissions"] == app_yml["default_permissions"]
    assert posted["default_events"] == app_yml["default_events"]
    [github_app] = fake.apps.created.values()

    # Kept: the database row holds no secret in clear text; SECRETS_KEY opens it.
    row = await pool.fetchval("SELECT github_app::text FROM github_app")
    secret_values = [github_app["webhook_secret"], github_app["client_secret"]]
    pem_lines = [line for line in github_app["pem"].splitlines() if "-----" not in line]
    for value in [*secret_values, *pem_lines]:
        assert value not in row
    assert "PRIVATE KEY" not in row
    kept = await stored_app(pool, bot.settings)
    assert kept is not None and kept.app_id == github_app["id"] and kept.owner == "octocat"
    assert kept.private_key.get_secret_value() == github_app["pem"]

    # Used at once: webhooks signed with the App's secret, no other.
    assert bot.settings.github_app_id == str(github_app["id"])
    examples = npm_file(*WEBHOOK_EXAMPLES)
    async with session() as client:
        body, headers = signed(
            "ping", example(examples, "ping"), secret=kept.webhook_secret.get_secret_value()
        )
        accepted = await client.post(f"{bot.url}/webhooks/github", data=body, headers=headers)
        assert accepted.status == 200 and (await accepted.json())["message"] == "pong"
        body, headers = signed("ping", example(examples, "ping"), secret=SECRET)
        refused = await client.post(f"{bot.url}/webhooks/github", data=body, headers=headers)
        assert refused.status == 401

        # The reporter now runs and signs as the new App (its key, its id).
        await store.create_service(
            NewService("hello", "Codertocat/Hello-World", "github", branch="master")
        )
        push = example(examples, "push", 4, installation={"id": 42})
        body, headers = signed("push", push, secret=kept.webhook_secret.get_secret_value())
        queued = await client.post(f"{bot.url}/webhooks/github", data=body, headers=headers)
        assert queued.status == 200 and len((await queued.json())["deployments"]) == 1
        deadline = asyncio.get_running_loop().time() + PATIENCE
        while not fake.delivered("POST", r"/repos/Codertocat/Hello-World/check-runs"):
            assert asyncio.get_running_loop().time() < deadline, fake.requests
            await asyncio.sleep(0.05)
        [token_call] = fake.calls("POST", r"/app/installations/42/access_tokens")
        scheme, bearer = token_call.headers["Authorization"].split()
        assert scheme.lower() == "bearer"
        public_key = load_pem_private_key(github_app["pem"].encode(), None).public_key()
        claims = jwt.decode(bearer, public_key, algorithms=["RS256"])  # type: ignore[arg-type]
        assert str(claims["iss"]) == str(github_app["id"])

        # The page is closed now.
        again = await client.get(bot.link())
        status, heading, _ = await page_of(again)
        assert (status, heading) == (409, "A GitHub App is configured already")


async def test_another_process_takes_up_the_stored_app_and_the_environment_wins(
    bot: Bot, pool: asyncpg.Pool, settings: Settings
) -> None:
    async with session() as client:
        done = await client.get(await to_github_and_back(client, bot.link()))
        assert done.status == 200
    fresh = settings.model_copy(update={"secrets_key": bot.settings.secrets_key})
    kept = await use_stored_app(fresh, pool)
    assert kept is not None and fresh.github_app_id == str(kept.app_id)
    assert fresh.github_webhook_secret == kept.webhook_secret
    assert fresh.github_app_slug == "click-deploy"

    from_environment = settings.model_copy(
        update={"secrets_key": bot.settings.secrets_key, "github_app_id": "7"}
    )
    assert await use_stored_app(from_environment, pool) is None
    assert from_environment.github_app_id == "7"

    other_key = settings.model_copy(
        update={"secrets_key": SecretStr(Fernet.generate_key().decode())}
    )
    with pytest.raises(ConfigError, match="encrypted with another key"):
        await use_stored_app(other_key, pool)
    # Rotation: a new key first, the old one after it, still opens it.
    rotated = f"{Fernet.generate_key().decode()},{bot.settings.secrets_key.get_secret_value()}"  # type: ignore[union-attr]
    assert await use_stored_app(
        settings.model_copy(update={"secrets_key": SecretStr(rotated)}), pool
    )
    without_key = settings.model_copy()
    with pytest.raises(ConfigError, match="SECRETS_KEY is not set"):
        await use_stored_app(without_key, pool)


async def test_an_organization_gets_its_own_github_page(bot: Bot, fake: FakeGitHub) -> None:
    async with session() as client:
        bad = await client.get(bot.link() + "&organization=-not/valid")
        assert (await page_of(bad))[:2] == (400, "That is not an organization name")
        opened = await client.get(bot.link() + "&organization=acme-corp")
        action, _ = form_of(await opened.text())
        assert action.startswith(f"{fake.url}/organizations/acme-corp/settings/apps/new?state=")
        done = await client.get(
            await to_github_and_back(client, bot.link() + "&organization=acme-corp")
        )
        assert done.status == 200
    [github_app] = fake.apps.created.values()
    assert github_app["owner"]["login"] == "acme-corp"


async def test_a_state_from_elsewhere_is_refused(bot: Bot, pool: asyncpg.Pool) -> None:
    async with session() as client:
        back = await to_github_and_back(client, bot.link())
        tampered = re.sub(r"state=[^&]+", "state=9999999999.abc.def", back)
        status, heading, message = await page_of(await client.get(tampered))
        assert (status, heading) == (400, "This answer is not for a setup started here")
        assert "Start again from the setup link" in message
    async with session() as other_browser:  # the right state, without this browser's cookie
        status, heading, _ = await page_of(await other_browser.get(back))
        assert (status, heading) == (400, "This answer is not for a setup started here")
    assert await pool.fetchval("SELECT count(*) FROM github_app") == 0
    # Within the hour only.
    state = manifest_flow.new_state(bot.settings, now=1000.0)
    assert manifest_flow.state_matches(bot.settings, state.value, state.nonce, now=1000.0 + 3599)
    assert not manifest_flow.state_matches(bot.settings, state.value, state.nonce, now=4601.0)
    assert not manifest_flow.state_matches(bot.settings, state.value, "another", now=1000.0)


async def test_a_used_code_and_a_failing_github_each_give_one_page(
    bot: Bot, fake: FakeGitHub, pool: asyncpg.Pool
) -> None:
    async with session() as client:
        back = await to_github_and_back(client, bot.link())
        # GitHub fails once: the page says so, and the same code works when reloaded.
        fake.failures.append(("POST", r"/app-manifests/[^/]+/conversions", 500, {}))
        status, heading, message = await page_of(await client.get(back))
        assert (status, heading) == (502, "GitHub could not finish the App")
        assert "GitHub answered 500" in message and "reload" in message
        assert (await client.get(back)).status == 200
        # The same answer again: the App is there, the page says so.
        status, heading, _ = await page_of(await client.get(back))
        assert (status, heading) == (409, "A GitHub App is configured already")
    await pool.execute("DELETE FROM github_app")
    bot.settings.github_app_id = None
    async with session() as client:  # a code someone else converted first
        back = await to_github_and_back(client, bot.link())
        code = re.search(r"code=([^&]+)", back)[1]  # type: ignore[index]
        async with aiohttp.ClientSession() as thief:
            taken = await thief.post(f"{fake.url}/app-manifests/{code}/conversions")
            assert taken.status == 201
        status, heading, message = await page_of(await client.get(back))
        assert (status, heading) == (400, "GitHub did not take this code")
        assert "used already or is more than an hour old" in message
    assert await pool.fetchval("SELECT count(*) FROM github_app") == 0


async def test_the_page_needs_its_link_and_a_secrets_key(bot: Bot) -> None:
    async with session() as client:
        for wrong in ["", "?s=", "?s=" + "A" * 32]:
            status, heading, message = await page_of(
                await client.get(f"{bot.url}/github/setup{wrong}")
            )
            assert (status, heading) == (403, "This page needs its setup link")
            assert "writes to its log" in message
        opened = await client.get(bot.link())
        assert opened.headers["Referrer-Policy"] == "no-referrer"
        assert (
            "form-action 'self' " + bot.settings.github_url
            in opened.headers["Content-Security-Policy"]
        )
        cookie = opened.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/github/setup" in cookie
        link = bot.link()
        bot.settings.secrets_key = None
        status, heading, message = await page_of(await client.get(link))
        assert (status, heading) == (503, "SECRETS_KEY is not set")
        assert "openssl rand -base64 32" in message
        assert bot.app[GITHUB_WEBHOOK].forge.auth is None


def test_the_manifest_comes_from_app_yml_and_a_bad_one_is_named(
    settings: Settings, tmp_path: Path
) -> None:
    made = load_manifest(settings.model_copy(update={"public_url": "https://deploy.example.com/"}))
    assert made["hook_attributes"]["url"] == "https://deploy.example.com/webhooks/github"
    assert made["name"] == "click-deploy"
    wrong = tmp_path / "app.yml"
    wrong.write_text("name: x\nhook_attributes: {url: a}\npermissions: {}\n")
    with pytest.raises(ManifestError, match="keys GitHub does not take: permissions"):
        load_manifest(settings, wrong)
    wrong.write_text("name: [unclosed\n")
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_manifest(settings, wrong)


def test_a_bad_secrets_key_is_one_line_without_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRETS_KEY", "not-a-key-at-all")
    with pytest.raises(ConfigError) as refused:
        load_settings(_env_file=None)
    assert "SECRETS_KEY: the key is not a Fernet key" in str(refused.value)
    assert "not-a-key-at-all" not in str(refused.value)
    good = Fernet.generate_key().decode()
    monkeypatch.setenv("SECRETS_KEY", f"{good}, short")
    with pytest.raises(ConfigError, match="key 2 of 2 is not a Fernet key"):
        load_settings(_env_file=None)
    monkeypatch.setenv("SECRETS_KEY", f" {good} ")
    assert load_settings(_env_file=None).secrets_key == SecretStr(good)


async def test_serve_takes_up_the_stored_app_at_start_and_a_wrong_key_stops_it(
    database_url: str, pool: asyncpg.Pool, settings: Settings, tmp_path: Path
) -> None:
    """The real `click-deploy serve`: the App kept in the database verifies webhooks from
    its first request; with another SECRETS_KEY it does not start (one line, exit 3)."""
    from tests.support.github_hooks import private_key_pem
    from tests.test_processes import free_port, worker_env

    key = Fernet.generate_key().decode()
    kept = AppCredentials(
        app_id=90999,
        slug="deploys-of-acme",
        name="Deploys of Acme",
        owner="acme",
        html_url="https://github.com/apps/deploys-of-acme",
        client_id="Iv1.0123456789abcdef",
        private_key=SecretStr(private_key_pem()),
        webhook_secret=SecretStr("stored-webhook-secret"),
        client_secret=SecretStr("stored-client-secret"),
    )
    assert await store_app(pool, settings.model_copy(update={"secrets_key": SecretStr(key)}), kept)
    port = free_port()
    env = worker_env(database_url, tmp_path, HTTP_PORT=str(port), SECRETS_KEY=key)
    for name in ("GITHUB_APP_ID", "GITHUB_PRIVATE_KEY", "GITHUB_WEBHOOK_SECRET"):
        env.pop(name, None)
    cli = [sys.executable, "-m", "bot.cli", "serve"]
    for command in ("serve", "worker"):  # both load the App at start
        wrong = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            command,
            env={**env, "SECRETS_KEY": Fernet.generate_key().decode()},
            cwd=REPO_ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(wrong.communicate(), PATIENCE)
        said = stderr.decode()
        assert wrong.returncode == 3, (command, said)
        stored = "SECRETS_KEY: the stored GitHub App (deploys-of-acme, id 90999) was encrypted"
        assert stored in said and "Traceback" not in said, (command, said)

    server = await asyncio.create_subprocess_exec(
        *cli,
        env=env,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        examples = npm_file(*WEBHOOK_EXAMPLES)
        async with aiohttp.ClientSession() as client:
            deadline = asyncio.get_running_loop().time() + PATIENCE
            while True:
                try:
                    if (await client.get(f"{base}/healthz")).status == 200:
                        break
                except aiohttp.ClientConnectionError:
                    pass
                assert asyncio.get_running_loop().time() < deadline, "serve did not start"
                await asyncio.sleep(0.1)
            body, headers = signed(
                "ping", example(examples, "ping"), secret="stored-webhook-secret"
            )
            assert (
                await client.post(f"{base}/webhooks/github", data=body, headers=headers)
            ).status == 200
            body, headers = signed("ping", example(examples, "ping"), secret=SECRET)
            assert (
                await client.post(f"{base}/webhooks/github", data=body, headers=headers)
            ).status == 401
            status, heading, message = await page_of(await client.get(f"{base}/github/setup"))
            assert (status, heading) == (409, "A GitHub App is configured already")
            assert "deploys-of-acme (id 90999)" in message
    finally:
        server.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(server.wait(), PATIENCE) == 0
