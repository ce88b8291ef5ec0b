"""GitHub's side of "registering a GitHub App from a manifest", for FakeGitHub: the web
page that takes a manifest (`POST /settings/apps/new`, or under
`/organizations/ORG/settings/apps/new`), its "Create" button that makes the App and sends
the browser to the manifest's `redirect_url` with `code` and `state`, and the API's
`POST /app-manifests/{code}/conversions`, which answers a code once, within the hour.

The manifest is checked as GitHub documents it (https://docs.github.com/apps/sharing-github-apps/
registering-a-github-app-from-a-manifest): `url` and `hook_attributes.url` required,
permissions read/write, events among GitHub's webhook events; problems go to `invalid`.
The conversion's answer is checked against GitHub's OpenAPI description before it is sent.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

SERVER = "https://api.github.com"
NEW_APP_PAGE = re.compile(r"(?:/organizations/([A-Za-z0-9-]+))?/settings/apps/new")
CREATE_PATH = "/settings/apps/new/create"  # the fake page's own button
CONVERSION = re.compile(r"/app-manifests/([^/]+)/conversions")
CODE_SECONDS = 3600
# Webhook events a manifest may name (GitHub's list; those click-deploy and tests use).
EVENTS = frozenset(
    {
        "check_run",
        "check_suite",
        "deployment",
        "deployment_status",
        "issue_comment",
        "issues",
        "pull_request",
        "pull_request_review",
        "push",
        "release",
        "status",
        "workflow_run",
    }
)


def _pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # GitHub's .pem: BEGIN RSA PRIVATE KEY
        serialization.NoEncryption(),
    ).decode()


def simple_user(login: str, kind: str) -> dict[str, Any]:
    """An account as GitHub's API shows it (`simple-user`: every required field)."""
    api = f"https://api.github.com/users/{login}"
    return {
        "login": login,
        "id": 1,
        "node_id": "MDQ6VXNlcjE=",
        "avatar_url": "https://github.com/images/error/octocat_happy.gif",
        "gravatar_id": "",
        "url": api,
        "html_url": f"https://github.com/{login}",
        "followers_url": f"{api}/followers",
        "following_url": f"{api}/following{{/other_user}}",
        "gists_url": f"{api}/gists{{/gist_id}}",
        "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions",
        "organizations_url": f"{api}/orgs",
        "repos_url": f"{api}/repos",
        "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events",
        "type": kind,
        "site_admin": False,
    }


def manifest_problems(manifest: Any) -> list[str]:
    if not isinstance(manifest, dict):
        return ["the manifest is not a JSON object"]
    problems = []
    if not isinstance(manifest.get("url"), str):
        problems.append("url is required")
    hook = manifest.get("hook_attributes")
    if not isinstance(hook, dict) or not isinstance(hook.get("url"), str):
        problems.append("hook_attributes.url is required")
    for name, level in (manifest.get("default_permissions") or {}).items():
        if level not in ("read", "write"):
            problems.append(f"permission {name}: {level!r} is not read or write")
    for event in manifest.get("default_events") or []:
        if event not in EVENTS:
            problems.append(f"event {event!r} is not a webhook event")
    if not isinstance(manifest.get("redirect_url"), str):
        problems.append("redirect_url is missing: GitHub would not send the code back")
    return problems


@dataclass
class FakeApps:
    validator: OpenAPI
    invalid: list[str] = field(default_factory=list)
    manifests: list[dict[str, Any]] = field(default_factory=list)  # as posted
    created: dict[str, dict[str, Any]] = field(default_factory=dict)  # code → App (with pem)
    converted: set[str] = field(default_factory=set)
    issued_at: dict[str, float] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(90001))

    @staticmethod
    def is_page(path: str) -> bool:
        return bool(NEW_APP_PAGE.fullmatch(path)) or path in (CREATE_PATH, "/favicon.ico")

    async def page(self, request: web.Request) -> web.Response:
        if request.path == "/favicon.ico":  # a browser on GitHub's page asks for it
            return web.Response(status=404)
        form = await request.post()
        if request.path == CREATE_PATH:
            return self._create(form)
        organization = NEW_APP_PAGE.fullmatch(request.path)[1]  # type: ignore[index]
        try:
            manifest = json.loads(str(form.get("manifest", "")))
        except ValueError:
            manifest = None
        problems = manifest_problems(manifest)
        if problems:
            self.invalid.extend(problems)
            return web.Response(status=400, text="; ".join(problems))
        self.manifests.append(manifest)
        owner = organization or "octocat"
        state = request.query.get("state", "")
        kind = "Organization" if organization else "User"
        fields = {"manifest": json.dumps(manifest), "state": state, "owner": owner, "kind": kind}
        hidden = "".join(
            f'<input type=hidden name={name} value="{escape(value)}">'
            for name, value in fields.items()
        )
        html = (
            f"<!doctype html><title>Create GitHub App</title><h1>{escape(manifest['name'])}"
            f"</h1><p id=owner>{escape(owner)}</p><form method=post action={CREATE_PATH}>"
            f"{hidden}<button id=create>Create GitHub App for {escape(owner)}</button></form>"
        )
        return web.Response(text=html, content_type="text/html")

    def _create(self, form: Any) -> web.Response:
        manifest = json.loads(str(form["manifest"]))
        owner = str(form["owner"])
        app_id = next(self._ids)
        slug = re.sub(r"[^a-z0-9]+", "-", manifest["name"].lower()).strip("-")
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        code = secrets.token_hex(20)
        self.created[code] = {
            "id": app_id,
            "slug": slug,
            "node_id": f"A_kwDO{app_id}",
            "client_id": f"Iv1.{secrets.token_hex(8)}",
            "owner": simple_user(owner, str(form["kind"])),
            "name": manifest["name"],
            "description": manifest.get("description"),
            "external_url": manifest["url"],
            "html_url": f"https://github.com/apps/{slug}",
            "created_at": now,
            "updated_at": now,
            "permissions": manifest.get("default_permissions") or {},
            "events": manifest.get("default_events") or [],
            "client_secret": secrets.token_hex(20),
            "webhook_secret": secrets.token_hex(20),
            "pem": _pem(),
        }
        self.issued_at[code] = time.monotonic()
        query = urlencode({"code": code, "state": str(form.get("state", ""))})
        raise web.HTTPFound(f"{manifest['redirect_url']}?{query}")

    def convert(self, method: str, path: str, code: str) -> web.Response:
        app = self.created.get(code)
        fresh = app is not None and time.monotonic() - self.issued_at[code] < CODE_SECONDS
        if app is None or code in self.converted or not fresh:
            return web.json_response(
                {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"},
                status=404,
            )
        self.converted.add(code)
        body = json.dumps(app).encode()
        self._check_answer(method, path, body)
        return web.Response(body=body, status=201, content_type="application/json")

    def _check_answer(self, method: str, path: str, body: bytes) -> None:
        """The answer as GitHub's description has it (so the bot is tested against GitHub's
        shape, not the fake's)."""
        request = MockRequest(SERVER, method.lower(), path)
        response = MockResponse(body, status_code=201, content_type="application/json")
        try:
            self.validator.validate_response(request, response)
        except Exception as error:
            self.invalid.append(f"conversion answer: {error} {error.__cause__ or ''}")
