"""The one way a fake vendor API (GitHub, GitLab, Slack) is served: an aiohttp app with
one catch-all route on a free loopback port, no access log."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler


async def serve(route: str, handler: Handler) -> tuple[web.AppRunner, str]:
    """Start serving every method of `route` with `handler`; the runner (to clean up)
    and the base URL."""
    app = web.Application()
    app.router.add_route("*", route, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"
