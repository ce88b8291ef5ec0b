"""`GET /github/setup` and `GET /github/setup/callback`: the GitHub App created from
app.yml's manifest in one click, and its credentials kept (pipeline/app_credentials.py).

The page opens only with its signed link (written to the log at start-up while no App is
configured) and is refused (409) once an App is, from the environment or stored. The
`state` of the round trip is signed and tied to the browser by a cookie. When the App is
stored, this process uses it at once (webhook secret, API tokens, the reporter); other
processes take it up when they start (`use_stored_app`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import structlog
from aiohttp import web

from bot.github.auth import AppAuth
from bot.github.manifest_flow import (
    CALLBACK_PATH,
    SETUP_PATH,
    STATE_COOKIE,
    STATE_SECONDS,
    ManifestError,
    install_url,
    link_matches,
    load_manifest,
    new_app_url,
    new_state,
    parse_conversion,
    public_url_unreachable,
    setup_link,
    state_matches,
    valid_code,
    valid_organization,
)
from bot.github.manifest_pages import install_link, page, setup_form
from bot.github.webhook import GITHUB_WEBHOOK, GitHubWebhook
from bot.reporting.github import TARGET, GitHubReporter
from bot.reporting.loop import run_reporter
from bot.runtime import Runtime
from pipeline.app_credentials import AppCredentials, adopt, app_stored, store_app

log = structlog.get_logger(__name__)

START_AGAIN = "Start again from the setup link click-deploy writes to its log."
API_HEADERS = {
    "Accept": "application/vnd.github+json",
    "X-GitHub-Api-Version": "2022-11-28",
    "User-Agent": "click-deploy",
}


@dataclass
class ManifestState:
    runtime: Runtime
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    reporter: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


MANIFEST_STATE = web.AppKey("github_manifest", ManifestState)


async def configured_refusal(runtime: Runtime) -> web.Response | None:
    """The 409 page once an App is configured; the 503 one while SECRETS_KEY is unset."""
    settings = runtime.settings
    if settings.github_app_id or await app_stored(runtime.pool):
        return page(
            409,
            "A GitHub App is configured already",
            [
                f"click-deploy uses the GitHub App {settings.github_app_slug} "
                f"(id {settings.github_app_id})."
                if settings.github_app_id
                else "A GitHub App is stored; click-deploy uses it from its next start.",
                "To use another App, set GITHUB_APP_ID and GITHUB_PRIVATE_KEY (and "
                "GITHUB_WEBHOOK_SECRET) in the environment; they win over the stored one.",
            ],
        )
    if settings.secrets_key is None:
        return page(
            503,
            "SECRETS_KEY is not set",
            [
                "click-deploy keeps the App's private key in its database, encrypted with "
                "SECRETS_KEY, and refuses to create an App it could not keep.",
                "Make a key with: openssl rand -base64 32 | tr '+/' '-_' — set SECRETS_KEY "
                "to it (keep it outside the database), restart, and open the setup link again.",
            ],
        )
    return None


async def setup_page(request: web.Request) -> web.Response:
    runtime = request.app[MANIFEST_STATE].runtime
    settings = runtime.settings
    refused = await configured_refusal(runtime)
    if refused is not None:
        return refused
    if not link_matches(settings, request.query.get("s")):
        return page(
            403,
            "This page needs its setup link",
            [
                "The GitHub App setup page opens with the link click-deploy writes to its "
                "log when it starts without a GitHub App (the line 'github app setup').",
            ],
        )
    organization = request.query.get("organization", "").strip() or None
    if organization is not None and not valid_organization(organization):
        return page(
            400,
            "That is not an organization name",
            [
                "A GitHub organization name has letters, digits and single hyphens between "
                "them, at most 39 characters; leave it empty for your own account.",
            ],
        )
    try:
        manifest = load_manifest(settings)
    except ManifestError as error:
        return page(500, "The App manifest cannot be used", [str(error)])
    state = new_state(settings)
    post_to = new_app_url(settings, organization, state.value)
    warning = None
    if public_url_unreachable(settings):
        warning = (
            f"PUBLIC_URL is {settings.public_url}, which only this machine reaches: GitHub "
            "could not deliver webhooks there. Set PUBLIC_URL to the address GitHub reaches."
        )
    response = page(
        200,
        "Create the GitHub App",
        [],
        form_action=settings.github_url.rstrip("/"),
        body_html=setup_form(manifest, post_to, request.query["s"], organization, warning=warning),
    )
    response.set_cookie(
        STATE_COOKIE,
        state.nonce,
        max_age=STATE_SECONDS,
        path=SETUP_PATH,
        httponly=True,
        samesite="Lax",  # sent on GitHub's redirect back (a top-level GET)
        secure=settings.public_url.startswith("https://"),
    )
    return response


async def convert(session: aiohttp.ClientSession, api_url: str, code: str) -> Any:
    """GitHub's answer to the code: the App (JSON), or a page saying why there is none."""
    url = f"{api_url.rstrip('/')}/app-manifests/{quote(code)}/conversions"
    try:
        async with session.post(url, headers=API_HEADERS) as answer:
            if answer.status in (404, 422):
                return page(
                    400,
                    "GitHub did not take this code",
                    [
                        "The code GitHub sent back was used already or is more than an hour "
                        "old (GitHub answered " + str(answer.status) + ").",
                        START_AGAIN,
                    ],
                )
            if answer.status != 201:
                return page(
                    502,
                    "GitHub could not finish the App",
                    [
                        f"GitHub answered {answer.status} when asked for the App's keys. "
                        "The code stays valid for an hour: reload this page to ask again.",
                    ],
                )
            return await answer.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        log.warning("github app conversion failed", error=f"{type(error).__name__}")
        return page(
            502,
            "GitHub could not be asked",
            [
                f"click-deploy could not reach GitHub at {api_url} ({type(error).__name__}). "
                "The code stays valid for an hour: reload this page to ask again.",
            ],
        )


async def setup_callback(request: web.Request) -> web.Response:
    manifest_state = request.app[MANIFEST_STATE]
    runtime = manifest_state.runtime
    settings = runtime.settings
    refused = await configured_refusal(runtime)
    if refused is not None:
        return refused
    if not state_matches(settings, request.query.get("state"), request.cookies.get(STATE_COOKIE)):
        return page(
            400,
            "This answer is not for a setup started here",
            [
                "GitHub's answer does not carry the state of a setup started in this browser "
                "within the last hour, so it is not used.",
                START_AGAIN,
            ],
        )
    code = request.query.get("code", "")
    if not valid_code(code):
        return page(400, "GitHub's answer has no code", [START_AGAIN])
    async with manifest_state.lock:  # one conversion at a time in this process
        github = github_forge(request.app)
        converted = await convert(github.session, settings.github_api_url, code)
        if isinstance(converted, web.Response):
            return converted
        try:
            app = parse_conversion(converted)
        except ValueError as error:
            return page(502, "GitHub's answer cannot be used", [f"{error}.", START_AGAIN])
        if not await store_app(runtime.pool, settings, app):
            return page(
                409,
                "A GitHub App was stored meanwhile",
                [
                    f"Another setup finished first, so the App {app.slug} just created is not "
                    f"used; delete it on GitHub: {app.html_url}",
                ],
            )
        start_using(request.app, app)
    log.info("github app stored", app_id=app.app_id, slug=app.slug, owner=app.owner)
    response = page(
        200,
        f"The GitHub App {app.name} is ready",
        [
            f"click-deploy keeps the App {app.slug} (id {app.app_id}) and uses it now; "
            "workers started separately take it up when they restart.",
            "Next, install the App on the repositories click-deploy should deploy.",
        ],
        body_html=install_link(install_url(settings, app.slug)),
    )
    response.del_cookie(STATE_COOKIE, path=SETUP_PATH)
    return response


def github_forge(app: web.Application) -> GitHubWebhook:
    """The GitHub feature's webhook state (its HTTP session, its App tokens)."""
    forge = app[GITHUB_WEBHOOK].forge
    if not isinstance(forge, GitHubWebhook):
        raise TypeError("the GitHub webhook is not mounted in this application")
    return forge


def start_using(app: web.Application, credentials: AppCredentials) -> None:
    """This process's App from now on: the settings every part reads, the API tokens of
    the webhook, and the reporter (not started before: there was no App)."""
    manifest_state = app[MANIFEST_STATE]
    runtime = manifest_state.runtime
    adopt(runtime.settings, credentials)
    github = github_forge(app)
    had_app = github.auth is not None
    github.auth = AppAuth(runtime.settings)
    if not had_app and manifest_state.reporter is None:
        send = GitHubReporter(runtime.settings, runtime.pool, github.session, github.auth)
        manifest_state.reporter = asyncio.create_task(
            run_reporter(runtime.pool, runtime.settings, TARGET, send, manifest_state.stop)
        )


def setup(app: web.Application, runtime: Runtime) -> None:
    app.router.add_get(SETUP_PATH, setup_page)
    app.router.add_get(CALLBACK_PATH, setup_callback)
    app[MANIFEST_STATE] = ManifestState(runtime)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        manifest_state = app[MANIFEST_STATE]
        settings = runtime.settings
        if not settings.github_app_id and not await app_stored(runtime.pool):
            if settings.secrets_key is None:
                log.info("github app not configured: set SECRETS_KEY to create it here")
            else:  # only who reads this log can open the page
                log.info("github app setup", url=setup_link(settings))
        yield
        manifest_state.stop.set()
        if manifest_state.reporter is not None:
            await manifest_state.reporter

    app.cleanup_ctx.append(lifecycle)
