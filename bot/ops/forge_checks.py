"""Checks of the forges and chat click-deploy answers on (bot.ops.checks' other half): the
GitHub App (its JWT, GET /app), the GitLab token (GET /user) and the Slack bot token
(auth.test). Each asks the vendor one read-only question with the configured credentials;
unconfigured ones are "not configured" results."""

from __future__ import annotations

import asyncio

import aiohttp
import gidgethub
import gitlab
import gitlab.exceptions
import requests
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import configured
from bot.github.auth import AppAuth
from bot.github.client import GitHubClient
from bot.gitlab.api import api_url as gitlab_api_url
from bot.ops.checks import CheckResult, Level, failed, fault, passed
from bot.slack.setup import api_url as slack_api_url
from pipeline.settings import Settings


def _unconfigured(name: str, fix: str) -> CheckResult:
    return CheckResult(name, Level.UNCONFIGURED, "not configured", fix)


async def check_github(settings: Settings, patience: float) -> CheckResult:
    """A JWT signed with GITHUB_PRIVATE_KEY for GITHUB_APP_ID, shown to GET /app."""
    if not settings.github_app_id or configured.secret(settings.github_private_key) is None:
        return _unconfigured("github", "set GITHUB_APP_ID and GITHUB_PRIVATE_KEY to use GitHub")
    where = f"GitHub at {settings.github_api_url}"
    try:
        auth = AppAuth(settings)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=patience)) as session:
            app = await GitHubClient(session, base_url=settings.github_api_url).getitem(
                "/app", jwt=auth.jwt()
            )
    except gidgethub.BadRequest as error:  # 4xx: GitHub refused the JWT
        return failed(
            "github",
            f"{where} refused the App's token ({error.status_code}: {error})",
            "set GITHUB_APP_ID to the App's ID and GITHUB_PRIVATE_KEY to a private key "
            "generated on the App's settings page",
        )
    except gidgethub.GitHubException as error:  # 5xx, rate limits
        return failed("github", f"{where}: {error}", "try again later (githubstatus.com)")
    except Exception as error:  # unreachable, a time-out, a body that is not JSON
        return failed("github", f"{where}: {fault(error, patience)}", "check GITHUB_API_URL")
    slug = str(app.get("slug", "")) if isinstance(app, dict) else ""
    detail = f"App {slug or '?'} (id {settings.github_app_id}) at {settings.github_api_url}"
    if slug and slug != settings.github_app_slug:
        return CheckResult(
            "github",
            Level.WARN,
            f"{detail}, but GITHUB_APP_SLUG is {settings.github_app_slug}",
            f"set GITHUB_APP_SLUG={slug} so the bot knows its own comments",
        )
    return passed("github", detail)


async def check_gitlab(settings: Settings, patience: float) -> CheckResult:
    """GET /user with GITLAB_TOKEN: whose token it is."""
    token = configured.secret(settings.gitlab_token)
    if token is None:
        return _unconfigured("gitlab", "set GITLAB_TOKEN to use GitLab")
    url = gitlab_api_url(settings)
    client = gitlab.Gitlab(url, private_token=token, timeout=patience, user_agent="click-deploy")

    def whoami() -> str:
        client.auth()
        user = client.user
        return str(getattr(user, "username", "") or "?")

    try:
        username = await asyncio.wait_for(asyncio.to_thread(whoami), patience * 2)
    except gitlab.exceptions.GitlabAuthenticationError as error:
        return failed(
            "gitlab",
            f"GitLab at {url} refused GITLAB_TOKEN ({error.response_code or 401})",
            "create an access token with the api scope and set GITLAB_TOKEN to it",
        )
    except gitlab.exceptions.GitlabError as error:
        return failed(
            "gitlab",
            f"GitLab at {url} answered {error.response_code}: {error.error_message}"[:300],
            "check GITLAB_URL (or GITLAB_API_URL) and GITLAB_TOKEN",
        )
    except (requests.RequestException, TimeoutError) as error:
        return failed(
            "gitlab",
            f"GitLab at {url} is unreachable: {fault(error, patience)}"[:300],
            "check GITLAB_URL (or GITLAB_API_URL)",
        )
    finally:
        client.session.close()
    detail = f"token of {username} at {url}"
    wanted = settings.gitlab_bot_username
    if wanted and wanted != username:
        return CheckResult(
            "gitlab",
            Level.WARN,
            f"{detail}, but GITLAB_BOT_USERNAME is {wanted}",
            f"set GITLAB_BOT_USERNAME={username} (or unset it) so the bot knows its own notes",
        )
    return passed("gitlab", detail)


async def check_slack(settings: Settings, patience: float) -> CheckResult:
    """auth.test with SLACK_BOT_TOKEN: which bot in which workspace."""
    token = configured.secret(settings.slack_bot_token)
    if token is None:
        return _unconfigured("slack", "set SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN to use Slack")
    url = slack_api_url(settings.slack_api_url)
    fix = (
        "set SLACK_BOT_TOKEN to the Bot User OAuth Token (xoxb-…) on the Slack app's "
        "OAuth & Permissions page"
    )
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=patience)) as session:
            client = AsyncWebClient(token=token, base_url=url, session=session, retry_handlers=[])
            answer = await asyncio.wait_for(client.auth_test(), patience)
    except SlackApiError as error:
        code = error.response.get("error") if error.response is not None else None
        return failed("slack", f"Slack at {url} refused SLACK_BOT_TOKEN ({code or 'error'})", fix)
    except Exception as error:  # unreachable, a time-out
        return failed("slack", f"Slack at {url}: {fault(error, patience)}", "check SLACK_API_URL")
    bot = answer.get("user") or answer.get("user_id") or "?"
    team = answer.get("team") or answer.get("team_id") or "?"
    return passed("slack", f"bot {bot} in workspace {team}")
