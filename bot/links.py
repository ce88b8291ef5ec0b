"""Links people follow from a check run, a comment or a Slack message."""

from __future__ import annotations

from bot.web.signing import signed_path
from pipeline.settings import Settings


def deployment_page_url(settings: Settings, deployment_id: int) -> str:
    """The live log page of a deployment (served by the web pages feature); signed when
    pages are public by link, since deployment ids are easy to guess."""
    return settings.public_url.rstrip("/") + signed_path(settings, "deployment", deployment_id)


def service_page_url(settings: Settings, service_id: int) -> str:
    """A service's page: its current image and recent deployments."""
    return settings.public_url.rstrip("/") + signed_path(settings, "service", service_id)
