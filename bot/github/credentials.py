"""Clone credentials for `provider = "github"` services: the GitHub App's installation
token for the service's repository ("x-access-token", token), registered with the build
pipeline as a clone-auth hook. Without App credentials it answers None (GIT_TOKEN then)."""

from __future__ import annotations

import aiohttp
import gidgethub

from bot.github.auth import AppAuth, GitHubAppError
from pipeline.clone import GitAuth
from pipeline.deploy import clone_auth_hooks
from pipeline.errors import DeploymentFailure, TransientError
from pipeline.models import Service
from pipeline.settings import Settings

_auths: dict[tuple[str, str], AppAuth] = {}


def _auth_for(settings: Settings) -> AppAuth | None:
    if not settings.github_app_id or settings.github_private_key is None:
        return None
    key = (settings.github_api_url, settings.github_app_id)
    auth = _auths.get(key)
    if auth is None:
        auth = _auths[key] = AppAuth(settings)
    return auth


async def github_clone_auth(service: Service, settings: Settings) -> GitAuth | None:
    if service.provider != "github":
        return None
    auth = _auth_for(settings)
    if auth is None:
        return None
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            installation = await auth.installation_for(session, service.repository)
            token = await auth.token(session, installation)
    except GitHubAppError as error:
        raise DeploymentFailure(f"clone credentials: {error}") from None
    except gidgethub.GitHubBroken as error:
        raise TransientError(f"clone credentials: GitHub answered {error.status_code}") from None
    except gidgethub.BadRequest as error:
        raise DeploymentFailure(
            f"clone credentials: GitHub refused the App ({error.status_code})"
        ) from None
    except (aiohttp.ClientError, TimeoutError) as error:
        raise TransientError(f"clone credentials: GitHub unreachable ({error})") from None
    return GitAuth("x-access-token", token)


def register() -> None:
    if github_clone_auth not in clone_auth_hooks:
        clone_auth_hooks.append(github_clone_auth)


register()
