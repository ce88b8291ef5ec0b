"""Routes to released containers, changed through Caddy's admin API.

click-deploy keeps one server of its own in Caddy's config (`apps.http.servers.
click-deploy`, listening on CADDY_LISTEN) and one route per environment of a service,
found by its `@id` (`click-deploy-<service>-<environment>`): it matches the release's host
name and proxies to the containers that run it. A switch replaces the route's upstreams in
one request; Caddy applies a new config gracefully (requests in flight finish on the old
one), so no request is refused while traffic moves. A request that no upstream accepts
(a connection refused: a Swarm task being replaced, a container that died) is held and
tried again, on any upstream, for CADDY_RETRY_SECONDS before it is answered 502. Other
servers and routes in Caddy's config are left alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import aiohttp

from pipeline.errors import TransientError
from pipeline.release.base import ReleaseFailed

SERVER = "click-deploy"


class CaddyUnavailable(TransientError):
    """Caddy's admin API did not answer."""


class CaddyRefused(ReleaseFailed):
    """Caddy's admin API refused a change."""


def route_id(service: str, environment: str) -> str:
    return f"click-deploy-{service}-{environment}"


class Caddy:
    def __init__(
        self, admin_url: str, *, listen: str, automatic_https: bool, retry_seconds: float = 0.0
    ) -> None:
        self.admin_url = admin_url.rstrip("/")
        self.listen = listen
        self.automatic_https = automatic_https
        self.retry_seconds = retry_seconds

    async def _request(
        self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,)
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body)
        try:
            async with (
                aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=30, sock_connect=5)
                ) as session,
                session.request(
                    method,
                    self.admin_url + path,
                    data=data,
                    # Caddy refuses admin requests whose Origin it does not know; none is sent.
                    headers={"Content-Type": "application/json"},
                ) as response,
            ):
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            raise CaddyUnavailable(
                f"cannot reach Caddy's admin API at {self.admin_url}: {error}"
            ) from None
        if status not in ok:
            raise CaddyRefused(f"Caddy refused {method} {path}: {_message(text, status)}")
        try:
            return status, json.loads(text) if text.strip() else None
        except ValueError:
            return status, None

    async def ping(self) -> None:
        await self._request("GET", "/config/")

    def _server(self) -> dict[str, Any]:
        server: dict[str, Any] = {"listen": [self.listen], "routes": []}
        if not self.automatic_https:
            server["automatic_https"] = {"disable": True}
        return server

    async def ensure_server(self) -> None:
        """Our server exists in Caddy's config (made, with its parents, when missing)."""
        status, found = await self._request(
            "GET", f"/config/apps/http/servers/{SERVER}", ok=(200, 400, 404)
        )
        if status == 200 and found:
            return
        server = self._server()
        # The innermost parent that exists gets the new part; PUT refuses to overwrite.
        for path, body in (
            (f"/config/apps/http/servers/{SERVER}", server),
            ("/config/apps/http/servers", {SERVER: server}),
            ("/config/apps/http", {"servers": {SERVER: server}}),
            ("/config/apps", {"http": {"servers": {SERVER: server}}}),
        ):
            status, _ = await self._request("PUT", path, body, ok=(200, 400, 404, 409))
            if status == 200:
                return
        raise CaddyRefused(f"Caddy at {self.admin_url} would not take a server for click-deploy")

    async def route(self, service: str, environment: str) -> list[str] | None:
        """The upstreams (host:port) the environment's route proxies to, None without one."""
        status, found = await self._request(
            "GET", f"/id/{route_id(service, environment)}", ok=(200, 404)
        )
        if status != 200 or not isinstance(found, dict):
            return None
        upstreams: list[str] = []
        for handler in found.get("handle") or []:
            for upstream in handler.get("upstreams") or []:
                upstreams.append(str(upstream.get("dial")))
        return upstreams

    async def switch(
        self, service: str, environment: str, host: str, upstreams: Sequence[str]
    ) -> None:
        """Point the environment's host name at `upstreams`, in one change."""
        identity = route_id(service, environment)
        proxy: dict[str, Any] = {
            "handler": "reverse_proxy",
            "upstreams": [{"dial": upstream} for upstream in upstreams],
        }
        if self.retry_seconds > 0:
            # Caddy retries only requests whose connection was refused (never one an
            # upstream has begun to answer), every 250 ms, for this long.
            proxy["load_balancing"] = {
                "try_duration": f"{int(self.retry_seconds * 1000)}ms",
                "try_interval": "250ms",
            }
        route = {
            "@id": identity,
            "match": [{"host": [host]}],
            "handle": [proxy],
            "terminal": True,
        }
        await self.ensure_server()
        status, _ = await self._request("PATCH", f"/id/{identity}", route, ok=(200, 404))
        if status == 404:
            await self._request("POST", f"/config/apps/http/servers/{SERVER}/routes", route)

    async def remove(self, service: str, environment: str) -> None:
        await self._request("DELETE", f"/id/{route_id(service, environment)}", ok=(200, 404))


def _message(text: str, status: int) -> str:
    try:
        message = json.loads(text).get("error")
    except (ValueError, AttributeError):
        message = None
    return str(message or text.strip() or f"HTTP {status}")[:300]
