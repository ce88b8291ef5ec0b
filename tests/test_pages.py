"""The pages: signed links or tokens, what they show, and the live log in a real browser."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bot.links import deployment_page_url, service_page_url
from bot.web import signing
from pipeline.models import Step
from pipeline.queue.queue import Queue
from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import LogEntry, Store
from tests.support.api import Api
from tests.support.infra import ensure_tool

pytest_plugins = ["tests.support.api"]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


async def running_deployment(store: Store, queue: Queue, service: int) -> Any:
    deployment = await queue.enqueue(service, ref="main", commit_sha="0123456789abcdef")
    claimed = await queue.claim("page-test")
    assert claimed is not None and claimed.id == deployment.id
    return claimed


async def test_deployment_links_are_signed_and_checked(
    api: Api, settings: Settings, store: Store, queue: Queue, service: int
) -> None:
    deployment = await running_deployment(store, queue, service)
    url = deployment_page_url(settings, deployment.id)
    assert url.startswith(f"{settings.public_url}/deployments/{deployment.id}?s=")
    page = await api.client.get(path_of(url))
    assert page.status == 200
    html = await page.text()
    assert "0123456789abcdef" in html and "cloning" in html
    assert page.headers["Referrer-Policy"] == "no-referrer"
    neighbour = signing.sign(settings, "deployment", deployment.id + 1)
    for wrong in ["", "?s=", "?s=AAAAAAAAAAAAAAAAAAAAAAAA", f"?s={neighbour}"]:
        refused = await api.client.get(f"/deployments/{deployment.id}{wrong}")
        assert refused.status == 404, wrong
    # The page's live log accepts the same signature, and only for that deployment.
    signature = signing.sign(settings, "deployment", deployment.id)
    logs = await api.client.get(f"/api/v1/deployments/{deployment.id}/logs?s={signature}")
    assert logs.status == 200
    other = await api.client.get(f"/api/v1/deployments/{deployment.id + 1}/logs?s={signature}")
    assert other.status == 401
    assert (await api.client.get("/deployments/99999999999999999999")).status == 404


async def test_the_signing_key_survives_in_data_dir(settings: Settings) -> None:
    first = signing.sign(settings, "deployment", 7)
    signing._file_key.cache_clear()
    assert signing.sign(settings, "deployment", 7) == first
    assert (settings.data_dir / "page-secret").stat().st_mode & 0o077 == 0
    given = settings.model_copy(update={"page_secret": SecretStr("s3cret-value-" * 3)})
    assert signing.sign(given, "deployment", 7) != first


async def test_service_page_shows_current_image_and_recent_deployments(
    api: Api, settings: Settings, store: Store, queue: Queue, service: int
) -> None:
    deployment = await running_deployment(store, queue, service)
    token = deployment.lease_token
    await store.set_status(deployment.id, Status.BUILDING, lease_token=token)
    await store.set_status(deployment.id, Status.PUSHING, lease_token=token)
    await store.succeed(
        deployment.id, lease_token=token, image="registry.test/web:abc", digest="sha256:feed"
    )
    page = await api.client.get(path_of(service_page_url(settings, service)))
    html = await page.text()
    assert page.status == 200
    assert "registry.test/web:abc" in html and "sha256:feed" in html
    assert f"/deployments/{deployment.id}?s=" in html and "succeeded" in html
    assert (await api.client.get(f"/services/{service}")).status == 404


async def test_pages_behind_a_token(
    api: Api, settings: Settings, store: Store, queue: Queue, service: int
) -> None:
    api.client.app[signing_settings_key()] = settings.model_copy(update={"pages_access": "token"})
    deployment = await running_deployment(store, queue, service)
    url = deployment_page_url(api.client.app[signing_settings_key()], deployment.id)
    assert "?s=" not in url
    assert (await api.client.get(f"/deployments/{deployment.id}")).status == 401
    signature = signing.sign(settings, "deployment", deployment.id)
    assert (await api.client.get(f"/deployments/{deployment.id}?s={signature}")).status == 401
    bad = await api.client.get(f"/deployments/{deployment.id}?token=cdt_wrong")
    assert bad.status == 401
    opened = await api.client.get(f"/deployments/{deployment.id}?token={api.tokens['read']}")
    assert opened.status == 200 and str(opened.url).endswith(f"/deployments/{deployment.id}")
    assert "cloning" in await opened.text()
    # The cookie also opens the live log (EventSource cannot send headers).
    logs = await api.client.get(f"/api/v1/deployments/{deployment.id}/logs")
    assert logs.status == 200


def signing_settings_key() -> Any:
    from bot.api.auth import SETTINGS_KEY

    return SETTINGS_KEY


def chromium_or_skip() -> str:
    """Named for its callers; it never skips: scripts/infra up installs chromium, and a
    chromium still missing fails (tests/support/infra.py's rule)."""
    return ensure_tool("chromium", CHROMIUM)


async def test_the_page_follows_a_running_build_in_chromium(
    api: Api, settings: Settings, store: Store, queue: Queue, service: int, tmp_path: Path
) -> None:
    executable = chromium_or_skip()
    from playwright.async_api import async_playwright

    deployment = await running_deployment(store, queue, service)
    token = deployment.lease_token
    seq = await store.append_logs(
        deployment.id,
        1,
        [LogEntry("\x1b[1;32mcloned\x1b[0m 0123456"), LogEntry("plain line two")],
    )
    started = datetime.now().astimezone() - timedelta(seconds=2)
    await store.record_steps(
        deployment.id,
        1,
        [Step(deployment.id, 1, 1, "pipeline", "clone", "done", started, started, 0.42, None)],
    )
    url = str(api.client.make_url(path_of(deployment_page_url(settings, deployment.id))))
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 800}, bypass_csp=True)
            await page.goto(url)
            await page.wait_for_function("document.querySelectorAll('#log .ln').length == 2")
            colour = await page.eval_on_selector("#log .ln span", "e => e.className")
            assert "f32" in colour and "b" in colour.split()
            assert await page.inner_text("#steps") == "clone\tdone\t0.42 s"

            # New lines and a state change arrive while the page is open.
            await store.set_status(deployment.id, Status.BUILDING, lease_token=token)
            for batch in range(3):
                entries = [LogEntry(f"step {batch}.{n} \x1b[33mwarning\x1b[0m") for n in range(20)]
                seq = await store.append_logs(deployment.id, seq, entries)
                await asyncio.sleep(0.1)
            await page.wait_for_function("document.querySelectorAll('#log .ln').length == 62")
            await page.wait_for_function(
                "document.getElementById('status').textContent == 'building'"
            )

            # Paused, lines are held back and counted; resumed, they show.
            await page.click("#pause")
            seq = await store.append_logs(deployment.id, seq, [LogEntry("held line")])
            await page.wait_for_function(
                "document.getElementById('held').textContent == '1 new lines'"
            )
            assert await page.eval_on_selector_all("#log .ln", "e => e.length") == 62
            await page.click("#pause")
            await page.wait_for_function("document.querySelectorAll('#log .ln').length == 63")

            await store.set_status(deployment.id, Status.PUSHING, lease_token=token)
            await store.append_logs(deployment.id, seq, [LogEntry("pushed")])
            await store.succeed(
                deployment.id,
                lease_token=token,
                image="registry.test/web:0123456",
                digest="sha256:" + "ab" * 32,
            )
            await page.wait_for_function(
                "document.getElementById('status').textContent == 'succeeded'"
            )
            await page.wait_for_function("document.body.dataset.ended == '1'")
            assert await page.inner_text("#image") == "registry.test/web:0123456"
            assert (await page.inner_text("#log")).splitlines()[-1] == "pushed"
            shot = tmp_path / "deployment-page.png"
            await page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}")
            assert shot.stat().st_size > 10_000
        finally:
            await browser.close()


async def test_the_page_cookie_only_reads(
    api: Api, settings: Settings, store: Store, queue: Queue, service: int
) -> None:
    """An admin token opened a page: the cookie it left reads, but changes nothing."""
    api.client.app[signing_settings_key()] = settings.model_copy(update={"pages_access": "token"})
    deployment = await running_deployment(store, queue, service)
    opened = await api.client.get(
        f"/deployments/{deployment.id}?token={api.tokens['admin']}", allow_redirects=False
    )
    assert opened.status == 303
    cookie = opened.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert (await api.client.get(opened.headers["Location"])).status == 200  # with the cookie
    assert (await api.client.get("/api/v1/services")).status == 200
    assert (await api.client.get(f"/api/v1/deployments/{deployment.id}")).status == 200
    writes = [
        ("POST", f"/api/v1/services/{service}/deploy"),
        ("POST", f"/api/v1/services/{service}/rollback"),
        ("POST", f"/api/v1/deployments/{deployment.id}/cancel"),
        ("PATCH", f"/api/v1/services/{service}"),
        ("DELETE", f"/api/v1/services/{service}"),
        ("POST", "/api/v1/services"),
    ]
    for method, path in writes:
        refused = await api.client.request(method, path, json={})
        body = await refused.json()
        assert refused.status == 401, (method, path, body)
        assert "the page cookie only reads" in body["error"]["message"]
    assert await api.runtime.pool.fetchval("SELECT count(*) FROM deployments") == 1
    assert (await store.get_deployment(deployment.id)).cancel_requested is False
    # The same token in the header does what its scope allows.
    queued = await api.client.post(
        f"/api/v1/services/{service}/deploy", json={"environment": "staging"}, headers=api.auth()
    )
    assert queued.status == 202


async def test_the_page_cookie_is_secure_when_the_public_url_is_https(
    api: Api, settings: Settings, store: Store, queue: Queue, service: int
) -> None:
    api.client.app[signing_settings_key()] = settings.model_copy(
        update={"pages_access": "token", "public_url": "https://deploy.example.com"}
    )
    opened = await api.client.get(
        f"/services/{service}?token={api.tokens['read']}", allow_redirects=False
    )
    assert opened.status == 303
    cookie = opened.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
