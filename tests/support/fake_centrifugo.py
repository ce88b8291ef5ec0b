"""A fake Centrifugo server HTTP API on loopback (`url` ends in /api, as CENTRIFUGO_API_URL).

It checks what Centrifugo's server API documentation (centrifugal.dev, "Server API
walkthrough" and "Error codes") specifies for the methods click-deploy uses:

- every request is an HTTP POST to /api/<method> with a JSON object body, and carries the
  key in the `X-API-Key` header (or the `api_key` query parameter): else 401 Unauthorized;
  an unknown method is a 404, a body that is no JSON object a 400;
- `publish`: `channel` (a non-empty string, at most 255 characters) and `data` (any JSON)
  are required; only the documented fields are taken (skip_history, tags, b64data,
  idempotency_key, delta, version, version_epoch); a bad request is answered 200 with
  `{"error": {"code": 107, "message": "bad request"}}`, a channel whose namespace (the part
  before ':') is not configured with code 102 "unknown channel"; success is `{"result": {}}`;
- `batch`: `{"commands": [{"publish": {...}}, ...], "parallel": bool}` answered with
  `{"replies": [...]}`, one reply per command in order, each `{"publish": {}}` or
  `{"error": {...}}`;
- `info`: `{"result": {"nodes": [...]}}`.

Publications are kept per channel with their arrival time. `stop()` closes the port (a
Centrifugo that is down: connections are refused) and `start()` opens the same port again.

`python -m tests.support.fake_centrifugo PORT` runs it alone (for bench/logs.py, so its
work is not the measuring process's); GET /fake/publications then answers what arrived,
as `[[channel, arrival time, data], ...]` (not a Centrifugo endpoint).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

API_KEY = "test-centrifugo-api-key"
TOKEN_HMAC_SECRET = "test-centrifugo-token-hmac-secret-of-256-bits"
PUBLISH_FIELDS = {
    "channel", "data", "skip_history", "tags", "b64data", "idempotency_key", "delta",
    "version", "version_epoch",
}  # fmt: skip
CHANNEL_MAX_LENGTH = 255
BAD_REQUEST = {"code": 107, "message": "bad request"}
UNKNOWN_CHANNEL = {"code": 102, "message": "unknown channel"}
METHOD_NOT_FOUND = {"code": 104, "message": "method not found"}


@dataclass(frozen=True)
class Received:
    channel: str
    data: Any
    at: float  # time.time() on arrival


@dataclass
class FakeCentrifugo:
    api_key: str = API_KEY
    namespaces: frozenset[str] = frozenset({"deployments"})
    delay: float = 0.0  # seconds before each answer: a slow Centrifugo
    port: int = 0
    publications: dict[str, list[Received]] = field(default_factory=dict)
    requests: list[tuple[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # why each refused command was refused
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    async def start(self) -> None:
        if self.port == 0:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = int(probe.getsockname()[1])
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle)
        app.router.add_get("/fake/publications", self._dump)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _dump(self, _request: web.Request) -> web.Response:
        every = [
            [received.channel, received.at, received.data]
            for channel in self.publications.values()
            for received in channel
        ]
        return web.json_response(every)

    def messages(self, channel: str) -> list[Any]:
        return [received.data for received in self.publications.get(channel, [])]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(status=405)
        key = request.headers.get("X-API-Key") or request.query.get("api_key")
        if key != self.api_key:
            self.refused.append("unauthorized")
            return web.Response(status=401)
        try:
            body = json.loads(await request.read())
        except ValueError:
            self.refused.append("body is no JSON")
            return web.Response(status=400)
        if not isinstance(body, dict):
            self.refused.append("body is no JSON object")
            return web.Response(status=400)
        method = request.match_info["method"]
        self.requests.append((method, body))
        if self.delay:
            await asyncio.sleep(self.delay)
        if method == "publish":
            return web.json_response(self._reply(self._publish(body), "result"))
        if method == "batch":
            return web.json_response(self._batch(body))
        if method == "info":
            return web.json_response({"result": {"nodes": [self._node()]}})
        return web.Response(status=404)

    @staticmethod
    def _reply(error: dict[str, Any] | None, key: str) -> dict[str, Any]:
        return {"error": error} if error is not None else {key: {}}

    def _publish(self, params: Any) -> dict[str, Any] | None:
        """None when published, else the error Centrifugo answers."""
        if not isinstance(params, dict):
            return self._refuse(BAD_REQUEST, "publish params are no object")
        unknown = sorted(set(params) - PUBLISH_FIELDS)
        if unknown:
            return self._refuse(BAD_REQUEST, f"unknown fields {unknown}")
        channel = params.get("channel")
        if not isinstance(channel, str) or not channel or len(channel) > CHANNEL_MAX_LENGTH:
            return self._refuse(BAD_REQUEST, f"bad channel {channel!r}")
        if "data" not in params and "b64data" not in params:
            return self._refuse(BAD_REQUEST, "no data")
        tags = params.get("tags", {})
        if not isinstance(tags, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
        ):
            return self._refuse(BAD_REQUEST, "tags must map strings to strings")
        if not isinstance(params.get("skip_history", False), bool):
            return self._refuse(BAD_REQUEST, "skip_history must be a boolean")
        namespace, colon, _rest = channel.partition(":")
        if colon and namespace not in self.namespaces:
            return self._refuse(UNKNOWN_CHANNEL, f"namespace {namespace!r} is not configured")
        received = Received(channel, params.get("data"), time.time())
        self.publications.setdefault(channel, []).append(received)
        return None

    def _batch(self, body: dict[str, Any]) -> dict[str, Any]:
        commands = body.get("commands")
        if not isinstance(commands, list) or not isinstance(body.get("parallel", False), bool):
            return {"error": self._refuse(BAD_REQUEST, "commands must be a list")}
        replies: list[dict[str, Any]] = []
        for command in commands:
            if not isinstance(command, dict) or len(command) != 1:
                replies.append({"error": self._refuse(BAD_REQUEST, "a command has one method")})
                continue
            ((method, params),) = command.items()
            if method != "publish":
                replies.append({"error": self._refuse(METHOD_NOT_FOUND, f"method {method}")})
                continue
            replies.append(self._reply(self._publish(params), "publish"))
        return {"replies": replies}

    def _refuse(self, error: dict[str, Any], why: str) -> dict[str, Any]:
        self.refused.append(why)
        return dict(error)

    def _node(self) -> dict[str, Any]:
        channels = len(self.publications)
        return {
            "uid": "fake-centrifugo-node", "name": "fake_8000", "version": "6.1.0",
            "num_clients": 0, "num_users": 0, "num_subs": 0, "num_channels": channels,
            "uptime": 1,
        }  # fmt: skip


async def serve(port: int) -> None:
    fake = FakeCentrifugo(port=port)
    await fake.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    import sys

    asyncio.run(serve(int(sys.argv[1])))
