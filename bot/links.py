"""Links people follow from a check run, a comment or a Slack message."""

from __future__ import annotations

from pipeline.settings import Settings


def deployment_page_url(settings: Settings, deployment_id: int) -> str:
    """The live log page of a deployment (served by the web pages feature)."""
    return f"{settings.public_url.rstrip('/')}/deployments/{deployment_id}"
