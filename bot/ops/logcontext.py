"""Bind what a request is about to every log line it causes: the webhook delivery id
(GitHub, GitLab), the deployment or service in the path, and the route. The worker binds
deployment id, service and delivery id for the lines of each run (pipeline/queue/worker.py).
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from bot.runtime import Runtime

DELIVERY_HEADERS = ("X-GitHub-Delivery", "X-Gitlab-Event-UUID", "X-Gitlab-Webhook-UUID")


@web.middleware
async def bind_request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    values: dict[str, Any] = {"http_method": request.method, "http_path": request.path}
    for header in DELIVERY_HEADERS:
        delivery = request.headers.get(header)
        if delivery:
            values["delivery_id"] = delivery[:100]
            break
    identifier = request.match_info.get("id")
    if identifier is not None and identifier.isdigit():
        if "/deployments/" in request.path:
            values["deployment_id"] = int(identifier)
        elif "/services/" in request.path:
            values["service_id"] = int(identifier)
    # Reset afterwards: a keep-alive connection serves its next request in the same task.
    with structlog.contextvars.bound_contextvars(**values):
        return await handler(request)


def setup(app: web.Application, _runtime: Runtime) -> None:
    app.middlewares.insert(0, bind_request_context)  # outermost: every line of the request
