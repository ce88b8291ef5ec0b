"""A fake GitHub REST API on loopback. Every request is checked against GitHub's published
OpenAPI description (`@octokit/openapi`): an unknown path or method, a missing required
field or a wrong enum value is answered 422 and recorded in `invalid`. Every request is
recorded in `requests`; a few answers are canned and can be changed per test."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest

SERVER = "https://api.github.com"


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    body: Any
    headers: dict[str, str]


def build_validator(spec_path: str) -> OpenAPI:
    with open(spec_path, encoding="utf-8") as file:
        return OpenAPI.from_dict(json.load(file))


@dataclass
class FakeGitHub:
    validator: OpenAPI
    permissions: dict[str, str] = field(default_factory=dict)  # login → admin/write/read
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    # (method, path regex) → (status, headers) to answer once instead, e.g. a rate limit
    failures: list[tuple[str, str, int, dict[str, str]]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))
    url: str = ""

    def calls(self, method: str, pattern: str) -> list[Recorded]:
        regex = re.compile(pattern)
        return [r for r in self.requests if r.method == method and regex.fullmatch(r.path)]

    def _validate(self, request: web.Request, body: bytes) -> str | None:
        headers = {key.lower(): value for key, value in request.headers.items()}
        mock = MockRequest(
            SERVER,
            request.method.lower(),
            request.path,
            args=dict(request.query),
            headers=headers,
            data=body or None,
            content_type=headers.get("content-type", "application/json").split(";")[0],
        )
        try:
            self.validator.validate_request(mock)
        except Exception as error:  # any validation error: say what and where
            cause = getattr(error, "__cause__", None)
            return f"{request.method} {request.path}: {error} {cause or ''}"[:2000]
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = body
        self.requests.append(Recorded(request.method, request.path, parsed, dict(request.headers)))
        problem = self._validate(request, body)
        if problem is not None:
            self.invalid.append(problem)
            return web.json_response({"message": problem}, status=422)
        for index, (method, pattern, status, headers) in enumerate(self.failures):
            if method == request.method and re.fullmatch(pattern, request.path):
                del self.failures[index]
                return web.json_response(
                    {"message": "fake failure"}, status=status, headers=headers
                )
        return self.answer(request.method, request.path, parsed)

    def answer(self, method: str, path: str, body: Any) -> web.Response:
        if m := re.fullmatch(r"/app/installations/(\d+)/access_tokens", path):
            expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            return web.json_response(
                {"token": f"ghs_install{m[1]}", "expires_at": expires}, status=201
            )
        if re.fullmatch(r"/repos/[^/]+/[^/]+/installation", path):
            return web.json_response({"id": 42})
        if m := re.fullmatch(r"/repos/[^/]+/[^/]+/collaborators/([^/]+)/permission", path):
            level = self.permissions.get(m[1], "read")
            return web.json_response({"permission": level, "role_name": level, "user": None})
        if m := re.fullmatch(r"/repos/[^/]+/[^/]+/pulls/(\d+)", path):
            pull = self.pulls.get(int(m[1]))
            if pull is None:
                return web.json_response({"message": "Not Found"}, status=404)
            return web.json_response(pull)
        if method == "POST" and re.fullmatch(r"/repos/[^/]+/[^/]+/check-runs", path):
            return web.json_response({"id": next(self._ids), **body}, status=201)
        if method == "PATCH" and (m := re.fullmatch(r"/repos/[^/]+/[^/]+/check-runs/(\d+)", path)):
            return web.json_response({"id": int(m[1]), **body})
        if method == "POST" and re.fullmatch(r"/repos/[^/]+/[^/]+/issues/\d+/comments", path):
            return web.json_response({"id": next(self._ids), **body}, status=201)
        if method == "PATCH" and (
            m := re.fullmatch(r"/repos/[^/]+/[^/]+/issues/comments/(\d+)", path)
        ):
            return web.json_response({"id": int(m[1]), **body})
        if method == "POST":
            return web.json_response({"id": next(self._ids)}, status=201)
        return web.json_response({})

    def latest_check_run(self) -> dict[str, Any]:
        """The check run as GitHub would hold it: the creation merged with every update."""
        state: dict[str, Any] = {}
        for call in self.requests:
            if (call.path.endswith("/check-runs") and call.method == "POST") or (
                "/check-runs/" in call.path and call.method == "PATCH"
            ):
                state.update(call.body)
        return state

    def pr_comment(self) -> str | None:
        bodies = [
            call.body["body"]
            for call in self.requests
            if re.search(r"/issues/(\d+/comments|comments/\d+)$", call.path)
            and call.method in ("POST", "PATCH")
            and "<!-- click-deploy -->" in str(call.body)
        ]
        return bodies[-1] if bodies else None


async def start(fake: FakeGitHub) -> web.AppRunner:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}"
    return runner
