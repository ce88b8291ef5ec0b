"""Clone credentials for `provider = "gitlab"` services: GITLAB_TOKEN with the user
"oauth2" (GitLab takes project, group and personal tokens that way), registered with the
build pipeline as a clone-auth hook. Without a token it answers None (GIT_TOKEN then)."""

from __future__ import annotations

from pipeline.clone import GitAuth
from pipeline.deploy import clone_auth_hooks
from pipeline.models import Service
from pipeline.settings import Settings


async def gitlab_clone_auth(service: Service, settings: Settings) -> GitAuth | None:
    if service.provider != "gitlab" or settings.gitlab_token is None:
        return None
    return GitAuth("oauth2", settings.gitlab_token)


def register() -> None:
    if gitlab_clone_auth not in clone_auth_hooks:
        clone_auth_hooks.append(gitlab_clone_auth)


register()
