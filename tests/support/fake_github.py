"""A fake GitHub REST API on loopback. Every request is checked against GitHub's published
OpenAPI description (`@octokit/openapi`): an unknown path or method, a missing required
field or a wrong enum value is answered 422 and recorded in `invalid`. Every request is
recorded in `requests` with the status it was answered; a few answers are canned and can
be changed per test. GET /app verifies the App's JWT (RS256) with the public key of an App
registered in `app_keys`, and answers 401 as GitHub does when it cannot.

`start_outage(seconds)` plays a GitHub incident: until it ends, every (valid) request is
answered with the next status of a cycle of 500 and 429 (the 429 as GitHub sends a
secondary rate limit: `Retry-After` and the `x-ratelimit-*` headers), and each such answer
is recorded in `outage_answers`."""

from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from aiohttp import web
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest

from tests.support.fake_github_apps import CONVERSION, FakeApps
from tests.support.fake_server import serve

SERVER = "https://api.github.com"


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    body: Any
    headers: dict[str, str]
    status: int = 0  # what the fake answered


@dataclass(frozen=True)
class OutageAnswer:
    """A request answered with an error because of an outage."""

    at: float  # time.monotonic()
    method: str
    path: str
    status: int


SECONDARY_RATE_LIMIT = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
    "again. If you reach out to GitHub Support for help, please include the request ID."
)
RATE_LIMIT_DOCS = (
    "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"
    "#about-secondary-rate-limits"
)


def build_validator(spec_path: str) -> OpenAPI:
    with open(spec_path, encoding="utf-8") as file:
        return OpenAPI.from_dict(json.load(file))


@dataclass
class FakeGitHub:
    validator: OpenAPI
    permissions: dict[str, str] = field(default_factory=dict)  # login → admin/write/read
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    # pull request number → the files it changes (GET …/pulls/{n}/files; one page, as many
    # as a test needs)
    pull_files: dict[int, list[str]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    # (method, path regex) → (status, headers) to answer once instead, e.g. a rate limit
    failures: list[tuple[str, str, int, dict[str, str]]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))
    url: str = ""
    # The outage (start_outage): until `outage_until` (time.monotonic()), answers cycle
    # through `outage_statuses`; 429s ask to come back after `outage_retry_after` seconds.
    outage_until: float = 0.0
    outage_statuses: tuple[int, ...] = (500, 429)
    outage_retry_after: int | None = 60
    outage_answers: list[OutageAnswer] = field(default_factory=list)
    _outage_turn: int = 0
    # GET /app answers an App JWT (RS256, `iss` the App's id) signed by the key of an App
    # registered here: app id → (public key PEM, slug); anything else is GitHub's 401.
    app_keys: dict[str, tuple[str, str]] = field(default_factory=dict)
    # Apps made from a manifest: GitHub's web page and the code conversion.
    apps: FakeApps = field(init=False)

    def __post_init__(self) -> None:
        self.apps = FakeApps(self.validator)

    def start_outage(
        self,
        seconds: float,
        statuses: tuple[int, ...] = (500, 429),
        retry_after: int | None = 60,
    ) -> None:
        """From now on, for `seconds`, answer every request with the next of `statuses`
        (500 or 429, in turn); a 429 says `Retry-After: retry_after` (None: no header)."""
        assert statuses and all(status in (500, 429) for status in statuses), statuses
        self.outage_statuses = statuses
        self.outage_retry_after = retry_after
        self._outage_turn = 0
        self.outage_until = time.monotonic() + seconds

    def end_outage(self) -> None:
        self.outage_until = 0.0

    @property
    def in_outage(self) -> bool:
        return time.monotonic() < self.outage_until

    def delivered(self, method: str, pattern: str) -> list[Recorded]:
        """The calls GitHub took (answered 2xx), as `calls`."""
        return [call for call in self.calls(method, pattern) if 200 <= call.status < 300]

    def _outage_answer(self, request: web.Request) -> web.Response:
        status = self.outage_statuses[self._outage_turn % len(self.outage_statuses)]
        self._outage_turn += 1
        self.outage_answers.append(
            OutageAnswer(time.monotonic(), request.method, request.path, status)
        )
        headers = {"X-GitHub-Request-Id": f"FAKE:{self._outage_turn:08X}"}
        if status == 500:
            return web.json_response({"message": "Server Error"}, status=500, headers=headers)
        # A secondary rate limit: the quota itself is not spent (remaining > 0), so only
        # Retry-After says when to come back.
        if self.outage_retry_after is not None:
            headers["Retry-After"] = str(self.outage_retry_after)
        headers.update(
            {
                "X-RateLimit-Limit": "5000",
                "X-RateLimit-Remaining": str(max(5000 - len(self.requests), 1)),
                "X-RateLimit-Used": str(min(len(self.requests), 4999)),
                "X-RateLimit-Reset": str(int(time.time()) + 3600),
                "X-RateLimit-Resource": "core",
            }
        )
        return web.json_response(
            {"message": SECONDARY_RATE_LIMIT, "documentation_url": RATE_LIMIT_DOCS},
            status=429,
            headers=headers,
        )

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
        if self.apps.is_page(request.path):  # github.com's pages, not the API
            return await self.apps.page(request)
        body = await request.read()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = body
        index = len(self.requests)
        self.requests.append(Recorded(request.method, request.path, parsed, dict(request.headers)))
        response = self._respond(request, body, parsed)
        self.requests[index] = replace(self.requests[index], status=response.status)
        return response

    def _respond(self, request: web.Request, body: bytes, parsed: Any) -> web.Response:
        problem = self._validate(request, body)
        if problem is not None:
            self.invalid.append(problem)
            return web.json_response({"message": problem}, status=422)
        if self.in_outage:
            return self._outage_answer(request)
        for index, (method, pattern, status, headers) in enumerate(self.failures):
            if method == request.method and re.fullmatch(pattern, request.path):
                del self.failures[index]
                return web.json_response(
                    {"message": "fake failure"}, status=status, headers=headers
                )
        if request.method == "GET" and request.path == "/app":
            return self._app(request.headers.get("Authorization", ""))
        return self.answer(request.method, request.path, parsed)

    def _app(self, authorization: str) -> web.Response:
        """GET /app as GitHub answers it: the App of a valid JWT, else 401."""
        scheme, _, token = authorization.partition(" ")
        refused = web.json_response(
            {
                "message": "A JSON web token could not be decoded",
                "documentation_url": "https://docs.github.com/rest",
            },
            status=401,
        )
        if scheme.lower() != "bearer":
            return refused
        try:
            issuer = str(jwt.decode(token, options={"verify_signature": False}).get("iss"))
            public_key, slug = self.app_keys[issuer]
            jwt.decode(token, public_key, algorithms=["RS256"], options={"require": ["exp"]})
        except (jwt.PyJWTError, KeyError):
            return refused
        return web.json_response(
            {
                "id": int(issuer),
                "slug": slug,
                "node_id": "MDExOkludGVncmF0aW9uMQ==",
                "client_id": "Iv1.ab1112223334445c",
                "owner": {"login": "octocat", "id": 1, "type": "User"},
                "name": slug.replace("-", " ").title(),
                "description": "",
                "external_url": "https://example.com",
                "html_url": f"https://github.com/apps/{slug}",
                "created_at": "2017-07-08T16:18:44-04:00",
                "updated_at": "2017-07-08T16:18:44-04:00",
                "permissions": {"metadata": "read", "checks": "write", "statuses": "write"},
                "events": ["push", "pull_request"],
            }
        )

    def answer(self, method: str, path: str, body: Any) -> web.Response:
        if method == "POST" and (m := CONVERSION.fullmatch(path)):
            return self.apps.convert(method, path, m[1])
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
        if m := re.fullmatch(r"/repos/[^/]+/[^/]+/pulls/(\d+)/files", path):
            return web.json_response(
                [pull_file(name) for name in self.pull_files.get(int(m[1]), [])]
            )
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
        """The check run as GitHub would hold it: the creation merged with every update it
        took (a call answered with an error changed nothing)."""
        state: dict[str, Any] = {}
        for call in self.requests:
            if call.status >= 300:
                continue
            if (call.path.endswith("/check-runs") and call.method == "POST") or (
                "/check-runs/" in call.path and call.method == "PATCH"
            ):
                state.update(call.body)
        return state

    def pr_comment(self) -> str | None:
        bodies = [
            call.body["body"]
            for call in self.requests
            if call.status < 300
            and re.search(r"/issues/(\d+/comments|comments/\d+)$", call.path)
            and call.method in ("POST", "PATCH")
            and "<!-- click-deploy -->" in str(call.body)
        ]
        return bodies[-1] if bodies else None


def pull_file(filename: str) -> dict[str, Any]:
    """One entry of GET /repos/{owner}/{repo}/pulls/{pull_number}/files (a "diff-entry")."""
    return {
        "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e",
        "filename": filename,
        "status": "modified",
        "additions": 1,
        "deletions": 1,
        "changes": 2,
        "blob_url": f"https://github.com/o/r/blob/HEAD/{filename}",
        "raw_url": f"https://github.com/o/r/raw/HEAD/{filename}",
        "contents_url": f"https://api.github.com/repos/o/r/contents/{filename}",
        "patch": "@@ -1 +1 @@\n-a\n+b",
    }


async def start(fake: FakeGitHub) -> web.AppRunner:
    runner, fake.url = await serve("/{tail:.*}", fake.handle)
    return runner
