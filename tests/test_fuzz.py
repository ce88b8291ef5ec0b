"""Fuzzing the front ends with hypothesis: the GitHub and GitLab webhooks, Slack's three
endpoints and the `/deploy` command parser. Correctly signed requests whose bodies are real
payloads with fields of the wrong type, missing, huge or full of odd Unicode (and random
bytes, random JSON, random headers) get a 2xx or a clear 4xx, never a 5xx or a traceback,
and a refused delivery leaves nothing in the database. The parser turns any text into a
command, a helpful answer or nothing, and reads a rendered command back as itself.

One real app (all three features) on the test's own database serves every example of a
test: hypothesis runs the examples against the same fixtures on purpose (the health check
for function-scoped fixtures is turned off for that), and each example checks only what it
changed. Under CI=true the examples are derandomized, so a run is reproducible.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import itertools
import json
import logging
import os
import random
import re
import shlex
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import asyncpg
import hypothesis
import pytest
import structlog.testing
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_core import OpenAPI
from pydantic import SecretStr

from bot.commands.parser import (
    Command,
    Ignore,
    Response,
    deployment_id,
    parse,
    parse_line,
    parse_slack,
)
from bot.github.setup import setup as github_setup
from bot.gitlab.setup import setup as gitlab_setup
from bot.runtime import Runtime
from bot.slack import blocks
from bot.slack.setup import setup as slack_setup
from pipeline.queue.queue import Queue
from pipeline.settings import Settings
from pipeline.store import NewService, Store
from pipeline.values import valid_ref
from tests.support import fake_github, fake_gitlab, fake_slack
from tests.support.fake_github import FakeGitHub
from tests.support.fake_gitlab import FakeGitLab
from tests.support.fake_slack import FakeSlack
from tests.support.fuzz import (
    Request,
    any_character,
    content_types,
    dump,
    header_text,
    huge_text,
    json_values,
    mutated,
    odd_text,
    texts,
)
from tests.support.github_hooks import SECRET as GITHUB_SECRET
from tests.support.github_hooks import private_key_pem
from tests.support.npm_cache import OPENAPI, WEBHOOK_EXAMPLES, npm_file
from tests.support.waiting import PATIENCE

SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
GITHUB_REPO = "Codertocat/Hello-World"
INSTALLATION = 42
COMMENTER = "Codertocat"
SLACK_USER, SLACK_CHANNEL = "U0ALICE", "C0DEPLOY"
BODY_LIMIT = 256 * 1024

CI = os.environ.get("CI") == "true"
# FUZZ_SCALE=10 runs ten times as many examples (a longer hunt than the suite's minute).
SCALE = float(os.environ.get("FUZZ_SCALE", "1"))


def fuzz(examples: int) -> Any:
    """Hypothesis settings for one fuzz target: reproducible under CI, no deadline (a
    shared 2-core machine), no example database in the checkout, and one set of fixtures
    for all the examples (deliberately: see the module docstring)."""
    return settings(
        max_examples=max(1, round(examples * SCALE)),
        deadline=None,
        derandomize=CI,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


# --- the app under fuzz ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def github_openapi() -> OpenAPI:
    return fake_github.build_validator(str(npm_file(*OPENAPI)))


@pytest.fixture(scope="session")
def github_examples() -> dict[str, list[dict[str, Any]]]:
    """@octokit/webhooks-examples: GitHub's own example payloads, by event."""
    data = json.loads(npm_file(*WEBHOOK_EXAMPLES).read_text(encoding="utf-8"))
    return {item["name"]: item["examples"] for item in data}


@dataclass
class Fakes:
    github: FakeGitHub
    gitlab: FakeGitLab
    slack: FakeSlack


@pytest.fixture
async def fakes(github_openapi: OpenAPI) -> AsyncIterator[Fakes]:
    started = Fakes(FakeGitHub(github_openapi), FakeGitLab(), FakeSlack())
    runners = [
        await fake_github.start(started.github),
        await fake_gitlab.start(started.gitlab),
        await fake_slack.start(started.slack),
    ]
    try:
        yield started
    finally:
        for runner in runners:
            await runner.cleanup()


@pytest.fixture
def fuzz_settings(settings: Settings, fakes: Fakes) -> Settings:
    return settings.model_copy(
        update={
            "github_webhook_secret": SecretStr(GITHUB_SECRET),
            "github_app_id": "1234",
            "github_private_key": SecretStr(private_key_pem()),
            "github_api_url": fakes.github.url,
            "gitlab_webhook_secret": SecretStr(fake_gitlab.WEBHOOK_SECRET),
            "gitlab_token": SecretStr(fake_gitlab.TOKEN),
            "gitlab_api_url": fakes.gitlab.url,
            "slack_signing_secret": SecretStr(SLACK_SECRET),
            "slack_bot_token": SecretStr(fake_slack.TOKEN),
            "slack_api_url": fakes.slack.api_url,
            # The reporters look once at start: the fuzz is about what comes in.
            "report_poll_seconds": 3600.0,
            "webhook_max_bytes": BODY_LIMIT,
            "public_url": "https://deploy.example.com",
        }
    )


@dataclass
class World:
    """The app, its database and what is in it: services for every forge and a few
    deployments, so that well-formed deliveries reach deep into the handlers."""

    client: TestClient[web.Request, web.Application]
    pool: asyncpg.Pool
    fakes: Fakes
    deployment_ids: list[int]
    errors: ErrorLog


@pytest.fixture
async def world(
    fuzz_settings: Settings, pool: asyncpg.Pool, database_url: str, store: Store, fakes: Fakes
) -> AsyncIterator[World]:
    queue = Queue(pool, fuzz_settings)
    services = [
        NewService("hello", GITHUB_REPO, "github", branch="master", config={"previews": True}),
        NewService(
            "hello-api",
            GITHUB_REPO,
            "github",
            branch="master",
            root_dir="services/api",
            config={"protected": True, "allow": [COMMENTER, "@octo-org/ops"]},
        ),
        NewService(
            "diaspora",
            fake_gitlab.PROJECT_PATH,
            "gitlab",
            branch="master",
            config={"previews": True},
        ),
        NewService(
            "diaspora-api",
            fake_gitlab.PROJECT_PATH,
            "gitlab",
            branch="master",
            root_dir="api",
            config={"protected": True, "allow": ["jsmith", "@ops/deployers"]},
        ),
        NewService(
            "web",
            "acme/web",
            "github",
            branch="main",
            config={"slack": {"users": [SLACK_USER], "channels": [SLACK_CHANNEL]}},
        ),
        NewService("locked", "acme/locked", "github", branch="main", config={"protected": True}),
    ]
    ids = []
    for new in services:
        service = await store.create_service(new)
        deployment = await queue.enqueue(service.id, ref=new.branch, commit_sha="a" * 40)
        ids.append(deployment.id)
    fakes.github.permissions.update({COMMENTER: "write", "octocat": "admin", "visitor": "read"})
    fakes.gitlab.members[fake_gitlab.PROJECT_ID] = {fake_gitlab.USER["id"]: 30, 8: 20}
    fakes.gitlab.groups["ops/deployers"] = {fake_gitlab.USER["id"]}

    app = web.Application()
    runtime = Runtime(fuzz_settings, database_url, pool, store, queue)
    github_setup(app, runtime)
    gitlab_setup(app, runtime)
    slack_setup(app, runtime)
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    try:
        async with TestClient(TestServer(app)) as client:
            yield World(client, pool, fakes, ids, errors)
    finally:
        logging.getLogger().removeHandler(errors)


def aiohttp_refused(record: logging.LogRecord) -> bool:
    """aiohttp's own log of an HTTP message it refused with a 400 before (a Content-Encoding
    it cannot decode) or after our handler (draining a body it could not decompress, after
    our 400): out of our hands, and the answer was a 400."""
    error = record.exc_info[1] if record.exc_info else None
    return record.name == "aiohttp.server" and (
        isinstance(error, web.RequestPayloadError)
        or (isinstance(error, HttpProcessingError) and error.code == 400)
    )


class ErrorLog(logging.Handler):
    """Every record logged at ERROR or with a traceback: aiohttp's "Error handling
    request", bolt's listener errors."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if (record.levelno >= logging.ERROR or record.exc_info) and not aiohttp_refused(record):
            self.records.append(record)

    def take(self) -> list[str]:
        taken = [logging.Formatter().format(record)[-3000:] for record in self.records]
        self.records.clear()
        return taken


# --- what every webhook answer must be ------------------------------------------------------


async def database_counts(pool: asyncpg.Pool) -> tuple[int, int, int]:
    """Deployments, deliveries and outbox rows: what a delivery may write."""
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM deployments) AS deployments,"
        " (SELECT count(*) FROM webhook_deliveries) AS deliveries,"
        " (SELECT count(*) FROM outbox) AS outbox"
    )
    assert row is not None
    return row["deployments"], row["deliveries"], row["outbox"]


# What a message of ours never looks like: an exception's name or repr, a traceback.
RAW_ERROR = re.compile(r"\w(Error|Exception)\b|Traceback|File \"|object at 0x")


async def send_webhook(world: World, path: str, request: Request, allowed: set[int]) -> None:
    """Send one delivery and hold the answer to the rules: an allowed 2xx/4xx status, a
    JSON `message` (no traceback), nothing stored when refused, and when accepted exactly
    the deployments the answer names, stored with the delivery."""
    before = await database_counts(world.pool)
    response = await world.client.post(path, data=request.body, headers=request.headers)
    text = await response.text()
    status = response.status
    errors = world.errors.take()
    assert status < 500 and not errors, f"{status} {text[:500]} for {request!r}\n" + "\n".join(
        errors
    )
    assert status in allowed, f"{status} {text[:2000]} for {request!r}"
    if status == 400 and response.content_type == "text/plain":
        # aiohttp refused the HTTP message itself (a Content-Encoding it cannot decode):
        # no handler of ours ran.
        assert await database_counts(world.pool) == before
        return
    assert response.content_type == "application/json", (status, text[:500], request)
    assert "Traceback" not in text and 'File "' not in text, text[:2000]
    answer = json.loads(text)
    # What the examples reached (pytest --hypothesis-show-statistics shows it).
    hypothesis.event(f"{request.what} -> {status} {answer.get('message', '')[:48]}")
    message = answer.get("message")
    assert isinstance(message, str) and message, answer
    assert len(message) <= 1000, f"an overlong message: {message[:300]!r}"
    if status >= 400:
        assert not RAW_ERROR.search(message), f"not a message of ours: {message!r}"
    after = await database_counts(world.pool)
    if status >= 300 or message in ("pong", "duplicate delivery"):
        assert after == before, f"{status} {answer} changed the database for {request!r}"
        return
    if status == 202:
        assert after == before, (answer, request)
        return
    created = answer.get("deployments", [])
    assert after[0] - before[0] == len(created), (answer, before, after, request)
    assert after[1] - before[1] == 1, (answer, before, after, request)
    if created:
        stored = await world.pool.fetchval(
            "SELECT deployment_ids FROM webhook_deliveries WHERE $1::bigint = ANY(deployment_ids)",
            created[0],
        )
        assert sorted(stored) == sorted(created), (stored, created)


# --- GitHub ----------------------------------------------------------------------------------

GITHUB_EVENTS = ("push", "pull_request", "issue_comment", "check_run", "installation", "ping")
COMMON_FOCUS: list[tuple[str | int, ...]] = [
    ("action",),
    ("repository",),
    ("repository", "full_name"),
    ("installation",),
    ("installation", "id"),
    ("sender",),
    ("sender", "login"),
]
GITHUB_FOCUS: dict[str, list[tuple[str | int, ...]]] = {
    "push": [
        ("ref",),
        ("after",),
        ("deleted",),
        ("head_commit",),
        ("head_commit", "message"),
        ("commits",),
        ("commits", 0),
        ("commits", 0, "added"),
        ("commits", 0, "added", 0),
        ("commits", 0, "modified"),
        ("pusher",),
        ("pusher", "name"),
    ],
    "pull_request": [
        ("number",),
        ("pull_request",),
        ("pull_request", "number"),
        ("pull_request", "head"),
        ("pull_request", "head", "sha"),
        ("pull_request", "head", "ref"),
        ("pull_request", "head", "repo"),
        ("pull_request", "head", "repo", "full_name"),
        ("pull_request", "base"),
        ("pull_request", "base", "ref"),
        ("pull_request", "user"),
        ("pull_request", "user", "login"),
        ("pull_request", "user", "type"),
    ],
    "issue_comment": [
        ("comment",),
        ("comment", "body"),
        ("comment", "body"),
        ("comment", "id"),
        ("comment", "user"),
        ("comment", "user", "login"),
        ("comment", "user", "type"),
        ("issue",),
        ("issue", "number"),
        ("issue", "pull_request"),
    ],
    "check_run": [
        ("check_run",),
        ("check_run", "head_sha"),
        ("check_run", "name"),
        ("check_run", "external_id"),
        ("check_run", "external_id"),
        ("check_run", "pull_requests"),
        ("check_run", "pull_requests", 0),
        ("check_run", "pull_requests", 0, "number"),
        ("check_run", "check_suite"),
        ("check_run", "check_suite", "head_branch"),
    ],
    "installation": [("installation", "account")],
    "ping": [("zen",), ("hook_id",), ("hook",), ("hook", "config")],
}
COMMANDS = (
    "/deploy",
    "/deploy hello",
    "/deploy hello --ref feature",
    "/deploy hello-api",
    "/deploy --ref=main",
    "/deploy cancel",
    "/deploy status",
    "/deploy rollback hello",
    "/deploy rollback",
    "/deploy help",
    "/deplyo",
    "/deploy statsu",
    "please\n/deploy hello",
    "```\n/deploy\n```",
)


def command_texts() -> st.SearchStrategy[str]:
    """Comment bodies: commands, commands with odd pieces, and anything."""
    return st.one_of(
        st.sampled_from(COMMANDS),
        st.builds(lambda c, extra: c + " " + extra, st.sampled_from(COMMANDS), odd_text()),
        st.builds(lambda extra: "/deploy " + extra, texts()),
        texts(),
    )


def github_base(
    examples: dict[str, list[dict[str, Any]]], event: str, index: int, world: World
) -> dict[str, Any]:
    """A real example, pointed at the services of the world so that it goes deep."""
    payload = copy.deepcopy(examples[event][index % len(examples[event])])
    payload["installation"] = {"id": INSTALLATION, "node_id": "x"}
    if isinstance(payload.get("repository"), dict):
        payload["repository"]["full_name"] = GITHUB_REPO
    if event == "push":
        payload["ref"] = "refs/heads/master"
        payload["deleted"] = False
    elif event == "pull_request":
        payload["action"] = random.Random(index).choice(["opened", "synchronize", "closed"])
        pull = payload["pull_request"]
        pull["base"]["ref"] = "master"
        if isinstance(pull["head"].get("repo"), dict):
            pull["head"]["repo"]["full_name"] = GITHUB_REPO
    elif event == "issue_comment":
        payload["action"] = "created"
        payload["comment"]["user"]["login"] = COMMENTER
        payload["comment"]["user"]["type"] = "User"
        payload["issue"]["pull_request"] = {"url": "https://api.github.com/repos/x/y/pulls/1"}
        number = payload["issue"]["number"]
        world.fakes.github.pulls.setdefault(
            number,
            {
                "number": number,
                "head": {"sha": "b" * 40, "ref": "feature", "repo": {"full_name": GITHUB_REPO}},
                "base": {"ref": "master", "repo": {"full_name": GITHUB_REPO}},
            },
        )
    elif event == "check_run":
        payload["action"] = "rerequested"
        payload["check_run"]["external_id"] = str(world.deployment_ids[index % 2])
    return payload


_deliveries = itertools.count(1)
GITHUB_HEADERS = ("X-GitHub-Event", "X-GitHub-Delivery")
GITLAB_HEADERS = ("X-Gitlab-Event", "X-Gitlab-Event-UUID")


def header_values(name: str) -> st.SearchStrategy[str]:
    """Odd values for a header: any text, and for some headers the plausible ones."""
    if name == "Content-Type":
        return content_types
    if name == "Content-Encoding":  # the body is never compressed: each is a lie
        return st.sampled_from(["gzip", "deflate", "br", "identity", "gzip, deflate"])
    return header_text


def delivery_ids() -> st.SearchStrategy[str]:
    """A fresh id, now and then the previous one again (a redelivery)."""
    return st.sampled_from(["new"] * 15 + ["again"]).map(
        lambda how: f"fuzz-{next(_deliveries) if how == 'new' else 0}"
    )


@st.composite
def github_requests(
    draw: st.DrawFn, examples: dict[str, list[dict[str, Any]]], world: World
) -> Request:
    """Mostly well-signed mutations of GitHub's examples; some random JSON or bytes; now
    and then odd headers or a wrong signature."""
    event = draw(st.sampled_from(GITHUB_EVENTS))
    kind = draw(st.sampled_from(["mutated"] * 17 + ["form", "json", "bytes"]))
    content_type = "application/json"
    if kind in ("mutated", "form"):
        base = github_base(examples, event, draw(st.integers(0, 30)), world)
        if event == "issue_comment" and draw(st.sampled_from([True] * 4 + [False])):
            base["comment"]["body"] = draw(command_texts())
        payload = draw(mutated(base, COMMON_FOCUS + GITHUB_FOCUS[event]))
        body = dump(payload, ascii_only=draw(st.sampled_from([True] * 9 + [False])))
        if kind == "form":  # GitHub's other content type: the JSON in a `payload` field
            body = urlencode({"payload": body}).encode()
            content_type = "application/x-www-form-urlencoded"
    elif kind == "json":
        body = dump(draw(json_values), ascii_only=True)
    else:
        body = draw(st.binary(max_size=200))
    headers = {
        "Content-Type": content_type,
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": draw(delivery_ids()),
        "User-Agent": "GitHub-Hookshot/abc",
    }
    digest = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers["X-Hub-Signature-256"] = f"sha256={digest}"
    odd = draw(st.sampled_from([None] * 16 + ["header", "header", "signature", "signature"]))
    if odd == "header":
        name = draw(st.sampled_from([*GITHUB_HEADERS, "Content-Type", "Content-Encoding"]))
        headers[name] = draw(header_values(name))
    elif odd == "signature":
        sha1 = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha1).hexdigest()
        headers["X-Hub-Signature-256"] = draw(
            st.sampled_from(
                [f"sha256={digest.upper()}", f"sha1={sha1}", f"sha256={digest[:-1]}é", digest]
            )
            | header_text
        )
    return Request(body, headers, f"github {kind} {event}" + (f" odd {odd}" if odd else ""))


@fuzz(examples=500)
@given(data=st.data())
async def test_github_webhook_answers_2xx_or_4xx_and_stores_nothing_it_refuses(
    data: st.DataObject,
    world: World,
    github_examples: dict[str, list[dict[str, Any]]],
) -> None:
    request = data.draw(github_requests(github_examples, world))
    await send_webhook(
        world, "/webhooks/github", request, allowed={200, 202, 400, 401, 413, 415, 422}
    )


# --- GitLab ----------------------------------------------------------------------------------

GITLAB_EVENTS = ("Push Hook", "Merge Request Hook", "Note Hook")
PROJECT_FOCUS: list[tuple[str | int, ...]] = [
    ("project",),
    ("project", "id"),
    ("project", "path_with_namespace"),
    ("user",),
    ("user", "id"),
    ("user", "username"),
]
MR_FIELDS: list[tuple[str | int, ...]] = [
    ("iid",),
    ("last_commit",),
    ("last_commit", "id"),
    ("source_branch",),
    ("target_branch",),
    ("source_project_id",),
    ("target_project_id",),
]
GITLAB_FOCUS: dict[str, list[tuple[str | int, ...]]] = {
    "Push Hook": [
        ("ref",),
        ("after",),
        ("checkout_sha",),
        ("commits",),
        ("commits", 1),
        ("commits", 1, "id"),
        ("commits", 1, "message"),
        ("commits", 1, "added"),
        ("commits", 1, "added", 0),
        ("total_commits_count",),
        ("user_username",),
    ],
    "Merge Request Hook": [
        ("object_attributes",),
        ("object_attributes", "action"),
        ("object_attributes", "oldrev"),
        *[("object_attributes", *path) for path in MR_FIELDS],
    ],
    "Note Hook": [
        ("object_attributes",),
        ("object_attributes", "note"),
        ("object_attributes", "note"),
        ("object_attributes", "noteable_type"),
        ("object_attributes", "id"),
        ("object_attributes", "system"),
        ("object_attributes", "action"),
        ("merge_request",),
        *[("merge_request", *path) for path in MR_FIELDS],
    ],
}


@st.composite
def gitlab_payloads(draw: st.DrawFn, event: str) -> dict[str, Any]:
    if event == "Push Hook":
        return fake_gitlab.push_hook(
            added=draw(st.sampled_from([None, ["api/main.go"], ["docs/x.md"]]))
        )
    if event == "Merge Request Hook":
        return fake_gitlab.merge_request_hook(
            draw(st.sampled_from(["open", "reopen", "update", "close", "merge", "approved"])),
            iid=draw(st.integers(1, 5)),
            oldrev=draw(st.sampled_from([None, "b" * 40])),
        )
    return fake_gitlab.note_hook(
        draw(command_texts()).replace("hello", "diaspora"), iid=draw(st.integers(1, 5))
    )


@st.composite
def gitlab_requests(draw: st.DrawFn) -> Request:
    """Mostly GitLab-shaped hooks with the right token, mutated; some random JSON or bytes;
    now and then odd headers or a wrong token."""
    event = draw(st.sampled_from(GITLAB_EVENTS))
    kind = draw(st.sampled_from(["mutated"] * 18 + ["json", "bytes"]))
    if kind == "mutated":
        payload = draw(mutated(draw(gitlab_payloads(event)), PROJECT_FOCUS + GITLAB_FOCUS[event]))
        body = dump(payload, ascii_only=draw(st.sampled_from([True] * 9 + [False])))
    elif kind == "json":
        body = dump(draw(json_values), ascii_only=True)
    else:
        body = draw(st.binary(max_size=200))
    headers = fake_gitlab.hook_headers(event, uuid_=draw(delivery_ids()))
    odd = draw(st.sampled_from([None] * 16 + ["header", "header", "header", "token"]))
    if odd == "header":
        name = draw(st.sampled_from([*GITLAB_HEADERS, "Content-Type", "Content-Encoding"]))
        headers[name] = draw(header_values(name))
        if name == "X-Gitlab-Event-UUID" and draw(st.booleans()):
            del headers[name]  # older GitLab: the body identifies the delivery
    elif odd == "token":
        headers["X-Gitlab-Token"] = draw(
            st.sampled_from([fake_gitlab.WEBHOOK_SECRET + "é", fake_gitlab.WEBHOOK_SECRET[:-1]])
            | header_text
        )
    return Request(body, headers, f"gitlab {kind} {event}" + (f" odd {odd}" if odd else ""))


@fuzz(examples=400)
@given(data=st.data())
async def test_gitlab_webhook_answers_2xx_or_4xx_and_stores_nothing_it_refuses(
    data: st.DataObject, world: World
) -> None:
    request = data.draw(gitlab_requests())
    await send_webhook(world, "/webhooks/gitlab", request, allowed={200, 202, 400, 401, 413, 415})


# --- Slack -----------------------------------------------------------------------------------

SLACK_TEXTS = (
    "",
    "help",
    "list",
    "web",
    "web main",
    "web feature/x",
    "locked",
    "status",
    "status web",
    "status 1",
    "status 99999999999999999999",
    "cancel 1",
    "cancel",
    "cancel ²",
    "rollback web",
    "rollback",
    "wbe",
    "lsit",
    "web --ref",
)


def slack_texts() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(SLACK_TEXTS),
        st.builds(lambda t, extra: f"{t} {extra}", st.sampled_from(SLACK_TEXTS), odd_text()),
        texts(),
    )


def slack_signed(
    body: bytes, *, at: int | None = None, secret: str = SLACK_SECRET
) -> dict[str, str]:
    stamp = str(int(time.time()) if at is None else at)
    digest = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256)
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": "v0=" + digest.hexdigest()}


def form(fields: Any) -> bytes:
    """A form as Slack sends it; a field of any other type goes as its str()."""
    if not isinstance(fields, dict):
        return urlencode({"payload": json.dumps(fields)}).encode()
    return urlencode(
        {str(key): str(value) for key, value in fields.items()}, errors="surrogatepass"
    ).encode()


def same_but(sent: Any, base: dict[str, Any], free: tuple[str | int, ...]) -> bool:
    """Whether `sent` differs from `base` at most at the path `free`, a free-form field."""
    if not isinstance(sent, dict):
        return False
    sent, base = copy.deepcopy(sent), copy.deepcopy(base)
    for document in (sent, base):
        node = document
        for step in free[:-1]:
            node = node[step] if isinstance(node, dict | list) and _has(node, step) else None
        if isinstance(node, dict | list) and _has(node, free[-1]):
            node[free[-1]] = None
    return bool(sent == base)


def _has(node: dict[str, Any] | list[Any], step: str | int) -> bool:
    if isinstance(node, dict):
        return step in node
    return isinstance(step, int) and 0 <= step < len(node)


@st.composite
def slash_commands(draw: st.DrawFn) -> tuple[bytes, str, bool]:
    fields = {
        "token": "unused",
        "team_id": "T1",
        "team_domain": "acme",
        "channel_id": SLACK_CHANNEL,
        "channel_name": "deploys",
        "user_id": SLACK_USER,
        "user_name": "alice",
        "command": "/deploy",
        "text": draw(slack_texts()),
        "api_app_id": "A1",
        "response_url": "https://hooks.slack.test/commands/1",
        "trigger_id": "1.2.3",
    }
    focus: list[tuple[str | int, ...]] = [
        ("text",),
        ("user_id",),
        ("channel_id",),
        ("command",),
    ]
    sent = draw(mutated(fields, focus, max_mutations=2))
    return form(sent), "command", same_but(sent, fields, ("text",))


@st.composite
def button_clicks(draw: st.DrawFn, world: World) -> tuple[bytes, str, bool]:
    ids = [str(i) for i in world.deployment_ids]
    confirm = json.dumps({"service": "locked", "ref": None, "channel": SLACK_CHANNEL})
    action_id = draw(
        st.sampled_from(
            [
                blocks.CANCEL,
                blocks.REDEPLOY,
                blocks.ROLLBACK,
                blocks.CONFIRM_DEPLOY,
                blocks.VIEW_LOGS,
                blocks.DISMISS,
                "deploy_other",
            ]
        )
    )
    value = draw(st.sampled_from([*ids, "web", "locked", confirm, "99999999999999999999", "²"]))
    payload = {
        "type": "block_actions",
        "team": {"id": "T1", "domain": "acme"},
        "user": {"id": SLACK_USER, "username": "alice", "team_id": "T1"},
        "api_app_id": "A1",
        "token": "unused",
        "container": {"type": "message", "channel_id": SLACK_CHANNEL, "message_ts": "1.1"},
        "trigger_id": "1.2.3",
        "channel": {"id": SLACK_CHANNEL, "name": "deploys"},
        "response_url": "https://hooks.slack.test/actions/1",
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "b",
                "value": value,
                "action_ts": "1.2",
            }
        ],
    }
    focus: list[tuple[str | int, ...]] = [
        ("type",),
        ("user",),
        ("user", "id"),
        ("channel",),
        ("channel", "id"),
        ("container",),
        ("container", "channel_id"),
        ("actions",),
        ("actions", 0),
        ("actions", 0, "action_id"),
        ("actions", 0, "value"),
        ("actions", 0, "value"),
    ]
    sent = draw(mutated(payload, focus, max_mutations=3))
    text = json.dumps(sent, ensure_ascii=draw(st.booleans()))
    body = urlencode({"payload": text}, errors="surrogatepass").encode()
    return body, "click", same_but(sent, payload, ("actions", 0, "value"))


@st.composite
def slack_events(draw: st.DrawFn) -> tuple[bytes, str, bool]:
    kind = draw(st.sampled_from(["url_verification", "event_callback"]))
    if kind == "url_verification":
        payload: dict[str, Any] = {"token": "t", "challenge": "abc", "type": kind}
    else:
        payload = {
            "token": "t",
            "team_id": "T1",
            "api_app_id": "A1",
            "type": kind,
            "event_id": "Ev1",
            "event_time": 1_700_000_000,
            "event": {
                "type": draw(st.sampled_from(["app_mention", "message", "reaction_added"])),
                "user": SLACK_USER,
                "text": "<@UBOT> deploy web",
                "channel": SLACK_CHANNEL,
                "ts": "1.1",
            },
        }
    focus: list[tuple[str | int, ...]] = [
        ("type",),
        ("challenge",),
        ("event",),
        ("event", "type"),
        ("event", "user"),
        ("event", "text"),
    ]
    sent = draw(mutated(payload, focus, max_mutations=2))
    free = ("challenge",) if kind == "url_verification" else ("event", "text")
    return dump(sent, draw(st.booleans())), "event", same_but(sent, payload, free)


@st.composite
def slack_requests(draw: st.DrawFn, world: World) -> tuple[str, Request]:
    """Correctly signed (v0, a current timestamp) commands, clicks and events, mutated; a
    few random bodies; now and then a bad, stale or odd signature."""
    path = draw(st.sampled_from(["/slack/commands", "/slack/interactivity", "/slack/events"]))
    kind = draw(st.sampled_from(["shaped"] * 9 + ["bytes"]))
    must_ack = False
    if kind == "bytes":
        body, what = draw(st.binary(max_size=300)), "bytes"
    elif path == "/slack/commands":
        body, what, must_ack = draw(slash_commands())
    elif path == "/slack/interactivity":
        body, what, must_ack = draw(button_clicks(world))
    else:
        body, what, must_ack = draw(slack_events())
    content_type = "application/json" if what == "event" else "application/x-www-form-urlencoded"
    headers = {"Content-Type": content_type, **slack_signed(body)}
    odd = draw(st.sampled_from([None] * 12 + ["signature", "stale", "content-type", "encoding"]))
    if odd == "signature":
        headers["X-Slack-Signature"] = draw(
            st.sampled_from(["v0=" + "0" * 64, headers["X-Slack-Signature"] + "é"]) | header_text
        )
    elif odd == "stale":
        at = draw(st.sampled_from([int(time.time()) - 400, int(time.time()) + 400, 0]))
        headers.update(slack_signed(body, at=at))
    elif odd == "encoding":
        headers["Content-Encoding"] = draw(header_values("Content-Encoding"))
    elif odd == "content-type":
        headers["Content-Type"] = draw(content_types)
    described = f"slack {what}" + (f" odd {odd}" if odd else "")
    # Slack sends UTF-8: bolt checks the signature again on the body as text.
    must_ack = must_ack and odd is None and utf8(body)
    return path, Request(body, headers, described, must_ack=must_ack)


def utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def bolt_tasks() -> list[asyncio.Task[Any]]:
    """The listeners bolt still runs after acknowledging (`run_ack_function_asynchronously`)."""
    return [
        task
        for task in asyncio.all_tasks()
        if "run_ack_function" in getattr(task.get_coro(), "__qualname__", "") and not task.done()
    ]


GENERIC_FAILURES = ("slack command failed", "slack action failed", "slack listener failed")


async def send_slack(world: World, path: str, request: Request) -> None:
    """Send one request to a Slack endpoint: never a 5xx or a traceback; a correctly signed
    request is answered by bolt; and what runs after the acknowledgement ends without an
    error, without our catch-all ("something went wrong on our side"), and with only calls
    Slack would accept."""
    with structlog.testing.capture_logs() as logs:
        response = await world.client.post(path, data=request.body, headers=request.headers)
        text = await response.text()
        deadline = time.monotonic() + PATIENCE
        while bolt_tasks():
            assert time.monotonic() < deadline, f"listeners still running after {request!r}"
            await asyncio.sleep(0.01)
    status = response.status
    errors = world.errors.take()
    hypothesis.event(f"{request.what} {path} -> {status} {text[:40]}")
    assert status < 500 and not errors, f"{status} {text[:500]} for {request!r}\n" + "\n".join(
        errors
    )
    assert status in (200, 400, 401, 404, 415), (status, text[:500], request)
    if request.must_ack:
        assert status == 200, f"Slack's request not acknowledged: {status} {text[:300]} {request!r}"
    assert "Traceback" not in text and 'File "' not in text, text[:2000]
    generic = [entry for entry in logs if entry.get("event") in GENERIC_FAILURES]
    assert generic == [], f"{generic} for {request!r}"
    assert world.fakes.slack.invalid == [], f"{world.fakes.slack.invalid} for {request!r}"


@fuzz(examples=400)
@given(data=st.data())
async def test_slack_endpoints_answer_signed_requests_without_5xx_or_errors(
    data: st.DataObject, world: World
) -> None:
    path, request = data.draw(slack_requests(world))
    await send_slack(world, path, request)


# --- the command parser ----------------------------------------------------------------------

SERVICE_NAMES = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
# Refs as people name branches and tags (git check-ref-format's rules hold for all of them).
REFS = st.from_regex(
    r"[A-Za-z0-9_][A-Za-z0-9_.+=,%#!'\"()<>é🚀-]{0,30}(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}){0,3}",
    fullmatch=True,
).filter(lambda ref: valid_ref(ref) and not ref.endswith("."))
any_text = st.one_of(
    st.text(any_character, max_size=200),
    odd_text(20),
    st.builds(lambda words: "/deploy " + " ".join(words), st.lists(odd_text(3), max_size=6)),
    huge_text(10_000, 200_000),
)


def check_result(result: Any, slack: bool) -> None:
    """What every parse must give: a command that is safe to run, or something to say."""
    assert isinstance(result, Command | Response | Ignore), result
    if isinstance(result, Response):
        assert result.kind in ("help", "usage", "suggestion")
        assert result.text.strip() and len(result.text) <= 2_000, result.text[:300]
        assert all(line.isprintable() for line in result.text.split("\n")), result.text[:300]
    if isinstance(result, Command):
        if result.service is not None:
            assert result.service == result.service.lower() and result.service.isprintable()
        if result.ref is not None:
            assert valid_ref(result.ref), result
        if slack and result.name == "cancel":
            assert result.target is not None and deployment_id(result.target) is not None


@fuzz(examples=300)
@given(text=any_text, services=st.lists(SERVICE_NAMES, max_size=3))
def test_any_text_parses_to_a_command_an_answer_or_nothing(text: str, services: list[str]) -> None:
    check_result(parse(text, services), slack=False)
    check_result(parse_line(text, services), slack=False)
    check_result(parse_slack(text, services), slack=True)


def render(command: Command) -> str:
    words = ["/deploy"]
    if command.name != "deploy":
        words.append(command.name)
    if command.service is not None:
        words.append(command.service)
    if command.ref is not None:
        words += ["--ref", shlex.quote(command.ref)]
    return " ".join(words)


commands = st.one_of(
    st.builds(
        Command,
        st.just("deploy"),
        st.none() | SERVICE_NAMES,
        st.none() | REFS,
    ),
    st.builds(Command, st.sampled_from(["cancel", "status"])),
    st.builds(Command, st.just("rollback"), st.none() | SERVICE_NAMES),
)


@fuzz(examples=300)
@given(command=commands, before=st.sampled_from(["", "thanks!\n", "  "]))
def test_a_rendered_command_parses_back_to_itself(command: Command, before: str) -> None:
    services = [command.service] if command.service else []
    assert parse(before + render(command), services) == command


@fuzz(examples=200)
@given(service=SERVICE_NAMES, ref=st.none() | REFS)
def test_a_rendered_slack_deploy_parses_back_to_itself(service: str, ref: str | None) -> None:
    text = service if ref is None else f"{service} {shlex.quote(ref)}"
    assert parse_slack(text, [service]) == Command("deploy", service=service, ref=ref)


# --- the cases the fuzzers found, one focused example each ---------------------------------


def github_headers(body: bytes, event: str = "push", **changes: str) -> dict[str, str]:
    digest = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": f"sha256={digest}",
    }
    headers.update(changes)
    return headers


async def github_answer(world: World, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    response = await world.client.post("/webhooks/github", data=body, headers=headers)
    return response.status, (await response.json())["message"]


async def test_github_signatures_with_non_ascii_text_or_sha1_are_refused_401(
    world: World,
) -> None:
    body = b'{"zen": "x"}'
    sha1 = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha1).hexdigest()
    for signature in ("sha256=é", "sha256=" + "0" * 63 + "é", f"sha1={sha1}", "ü"):
        headers = github_headers(body, "ping", **{"X-Hub-Signature-256": signature})
        assert await github_answer(world, body, headers) == (401, "signature does not match")
    assert await github_answer(world, body, github_headers(body, "ping")) == (200, "pong")


async def test_github_bodies_nested_too_deep_or_in_an_unknown_charset_are_400(
    world: World,
) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    assert await github_answer(world, deep, github_headers(deep)) == (
        400,
        "the body is not valid JSON",
    )
    body = b'{"zen": "x"}'
    for content_type in ("application/json; charset=no-such-codec", "application/json; charset="):
        headers = github_headers(body, "ping", **{"Content-Type": content_type})
        assert await github_answer(world, body, headers) == (200, "pong")
    form = b"payload=%7B%22zen%22%3A+%22x%22%7D"
    headers = github_headers(form, "ping", **{"Content-Type": "application/x-www-form-urlencoded"})
    assert await github_answer(world, form, headers) == (200, "pong")
    for bad in (b"nopayload=1", b"\xff\xfe"):
        headers = github_headers(
            bad, "ping", **{"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert await github_answer(world, bad, headers) == (400, "the body is not valid JSON")


async def test_github_delivery_ids_too_long_or_not_ascii_are_400_and_not_stored(
    world: World, github_examples: dict[str, list[dict[str, Any]]]
) -> None:
    body = json.dumps(github_base(github_examples, "push", 4, world)).encode()
    before = await database_counts(world.pool)
    for delivery in ("d" * 3000, "dé", "d\tx"):
        headers = github_headers(body, **{"X-GitHub-Delivery": delivery})
        status, message = await github_answer(world, body, headers)
        assert (status, message.split(" (")[0]) == (400, "X-GitHub-Delivery is not an id")
    assert await database_counts(world.pool) == before
    odd_event = github_headers(body, **{"X-GitHub-Event": "e" * 3000})
    status, message = await github_answer(world, body, odd_event)
    assert status == 202 and len(message) < 200
    headers = github_headers(body, **{"X-GitHub-Delivery": "d" * 200})
    assert (await github_answer(world, body, headers))[0] == 200


async def github_send(world: World, event: str, payload: Any) -> tuple[int, dict[str, Any]]:
    body = json.dumps(payload).encode()
    response = await world.client.post(
        "/webhooks/github", data=body, headers=github_headers(body, event)
    )
    return response.status, await response.json()


async def test_github_fields_of_another_type_are_400_or_skipped_never_500(
    world: World, github_examples: dict[str, list[dict[str, Any]]]
) -> None:
    push = github_base(github_examples, "push", 4, world)
    # Optional parts of another type are left out; the push still deploys.
    status, answer = await github_send(world, "push", {**push, "installation": [42], "pusher": "x"})
    assert status == 200 and answer["message"] == "queued", answer
    deployment = await world.pool.fetchrow(
        "SELECT trigger FROM deployments WHERE id = $1", answer["deployments"][0]
    )
    assert "actor" not in deployment["trigger"]
    pull = github_base(github_examples, "pull_request", 0, world)
    pull["pull_request"]["head"] = "feature"
    assert await github_send(world, "pull_request", pull) == (
        400,
        {"message": "the payload has no head.sha"},
    )
    comment = github_base(github_examples, "issue_comment", 3, world)
    comment["comment"]["body"] = "/deploy hello"
    del comment["installation"]
    status, answer = await github_send(world, "issue_comment", comment)
    assert status == 400 and "names no installation" in answer["message"]


async def test_github_check_run_external_ids_that_are_no_deployment_id_are_ignored(
    world: World, github_examples: dict[str, list[dict[str, Any]]]
) -> None:
    for external_id in ("²", "١٢", "99999999999999999999", "0", "-1", "12a"):
        payload = github_base(github_examples, "check_run", 0, world)
        payload["check_run"]["external_id"] = external_id
        payload["sender"] = "not an object"
        assert await github_send(world, "check_run", payload) == (
            200,
            {"message": "ignored: not a click-deploy check run", "deployments": []},
        ), external_id
    payload = github_base(github_examples, "check_run", 0, world)
    payload["sender"] = ["not an object"]
    status, answer = await github_send(world, "check_run", payload)
    assert status == 200 and answer["message"] == "queued"
    deployment = await world.pool.fetchrow(
        "SELECT trigger FROM deployments WHERE id = $1", answer["deployments"][0]
    )
    assert "actor" not in deployment["trigger"]


async def test_github_nul_and_lone_surrogates_are_stored_as_replacement_characters(
    world: World, github_examples: dict[str, list[dict[str, Any]]]
) -> None:
    push = github_base(github_examples, "push", 4, world)
    push["pusher"] = {"name": "oct\x00o\ud800cat\udbff\udfff"}
    push["head_commit"]["message"] = "fix\x00 \udc00"
    status, answer = await github_send(world, "push", push)
    assert status == 200 and len(answer["deployments"]) == 1, answer
    actor = await world.pool.fetchval(
        "SELECT trigger->>'actor' FROM deployments WHERE id = $1", answer["deployments"][0]
    )
    assert actor == "oct\ufffdo\ufffdcat\U0010ffff"  # a joined pair is a real character


async def test_github_commit_ids_and_refs_git_could_not_have_are_400(
    world: World, github_examples: dict[str, list[dict[str, Any]]]
) -> None:
    before = await database_counts(world.pool)
    push = github_base(github_examples, "push", 4, world)
    for changes in (
        {"after": "💥"},
        {"after": "abc123"},
        {"ref": "refs/heads/a b"},
        {"ref": "refs/heads/x\u202e"},
        {"ref": "refs/heads/" + "m" * 300},
    ):
        status, answer = await github_send(world, "push", {**push, **changes})
        assert status == 400, (changes, answer)
        assert answer["message"].split(":")[0] in (
            "after is not a commit id",
            "ref is not a git ref",
        )
        assert len(answer["message"]) < 200
    pull = github_base(github_examples, "pull_request", 0, world)
    pull["pull_request"]["head"]["ref"] = "feature..x"
    status, answer = await github_send(world, "pull_request", pull)
    assert status == 400 and answer["message"].startswith("head.ref is not a git ref")
    assert await database_counts(world.pool) == before


async def test_github_outcomes_that_quote_the_payload_stay_short(
    world: World, github_examples: dict[str, list[dict[str, Any]]]
) -> None:
    payload = github_base(github_examples, "installation", 0, world)
    payload["action"] = "a" * 20_000
    status, answer = await github_send(world, "installation", payload)
    assert status == 200 and answer["message"].startswith("installation aaa")
    assert len(answer["message"]) == 300 and answer["message"].endswith("...")


async def raw_post(world: World, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    """POST with header bytes as given (a client may send any, not only UTF-8); the status."""
    server = world.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        head = [b"POST " + path.encode() + b" HTTP/1.1", b"Host: localhost", b"Connection: close"]
        head += [name + b": " + value for name, value in headers]
        head.append(b"Content-Length: " + str(len(body)).encode())
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), PATIENCE)
        return int(status_line.split()[1])
    finally:
        writer.close()


async def test_gitlab_headers_that_are_not_utf8_are_401_or_400_never_500(world: World) -> None:
    body = json.dumps(fake_gitlab.push_hook()).encode()
    good = [
        (name.encode(), value.encode())
        for name, value in fake_gitlab.hook_headers("Push Hook").items()
    ]

    def changed(name: bytes, value: bytes) -> list[tuple[bytes, bytes]]:
        return [(n, value if n == name else v) for n, v in good]

    token = fake_gitlab.WEBHOOK_SECRET.encode()
    assert (
        await raw_post(world, "/webhooks/gitlab", changed(b"X-Gitlab-Token", token + b"\xe9"), body)
        == 401
    )
    assert (
        await raw_post(world, "/webhooks/gitlab", changed(b"X-Gitlab-Event-UUID", b"id-\xe9"), body)
        == 400
    )
    assert await raw_post(world, "/webhooks/gitlab", good, body) == 200
    # The same for GitHub's delivery id and signature.
    github = github_headers(body)
    github_raw = [(name.encode(), value.encode()) for name, value in github.items()]
    for name, value in (
        (b"X-GitHub-Delivery", b"id-\xe9"),
        (b"X-Hub-Signature-256", b"sha256=\xe9"),
    ):
        sent = [(n, value if n == name else v) for n, v in github_raw]
        assert await raw_post(world, "/webhooks/github", sent, body) in (400, 401)


async def gitlab_send(world: World, event: str, payload: Any) -> tuple[int, dict[str, Any]]:
    response = await world.client.post(
        "/webhooks/gitlab", data=json.dumps(payload), headers=fake_gitlab.hook_headers(event)
    )
    return response.status, await response.json()


async def test_gitlab_odd_strings_deep_nesting_bad_commits_and_refs(world: World) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    response = await world.client.post(
        "/webhooks/gitlab", data=deep, headers=fake_gitlab.hook_headers("Push Hook")
    )
    assert (response.status, (await response.json())["message"]) == (
        400,
        "the body is not valid JSON",
    )
    push = fake_gitlab.push_hook()
    status, answer = await gitlab_send(
        world, "Push Hook", {**push, "user_username": "js\x00\ud800"}
    )
    assert status == 200 and len(answer["deployments"]) == 1, answer
    actor = await world.pool.fetchval(
        "SELECT trigger->>'actor' FROM deployments WHERE id = $1", answer["deployments"][0]
    )
    assert actor == "js\ufffd\ufffd"
    before = await database_counts(world.pool)
    for changes in ({"after": "HEAD"}, {"ref": "refs/heads/a:b"}, {"ref": "refs/heads/~1"}):
        status, answer = await gitlab_send(world, "Push Hook", {**push, **changes})
        assert status == 400 and " is not a " in answer["message"], (changes, answer)
    merge = fake_gitlab.merge_request_hook()
    merge["object_attributes"]["source_branch"] = "feature branch"
    status, answer = await gitlab_send(world, "Merge Request Hook", merge)
    assert status == 400 and answer["message"].startswith("source_branch is not a git ref")
    merge["object_attributes"]["source_branch"] = "feature"
    merge["object_attributes"]["iid"] = 2**63
    status, answer = await gitlab_send(world, "Merge Request Hook", merge)
    assert status == 400 and answer["message"].startswith("iid is not a positive id")
    assert await database_counts(world.pool) == before


async def test_github_comments_naming_what_github_does_not_know_are_422_not_502(
    world: World, github_examples: dict[str, list[dict[str, Any]]]
) -> None:
    before = await database_counts(world.pool)
    comment = github_base(github_examples, "issue_comment", 3, world)
    comment["comment"]["body"] = "/deploy hello"
    comment["issue"]["number"] = 777  # no such pull request on the fake GitHub
    assert await github_send(world, "issue_comment", comment) == (
        422,
        {"message": "GitHub does not know what the delivery names (404)"},
    )
    assert await database_counts(world.pool) == before
    # GitHub being unreachable is still a 502: the delivery can be sent again later.
    world.fakes.github.failures.append(("GET", r".*/pulls/\d+", 503, {}))
    comment = github_base(github_examples, "issue_comment", 3, world)
    comment["comment"]["body"] = "/deploy hello"
    status, answer = await github_send(world, "issue_comment", comment)
    assert status == 502 and answer["message"].startswith("could not ask GitHub"), answer
    assert await database_counts(world.pool) == before


async def slack_post(world: World, path: str, body: bytes, json_body: bool = False) -> int:
    """A signed request; returns the status once every listener it started has ended."""
    content_type = "application/json" if json_body else "application/x-www-form-urlencoded"
    headers = {"Content-Type": content_type, **slack_signed(body)}
    response = await world.client.post(path, data=body, headers=headers)
    deadline = time.monotonic() + PATIENCE
    while bolt_tasks():
        assert time.monotonic() < deadline, "listeners still running"
        await asyncio.sleep(0.01)
    return response.status


def slash_body(text: str, **changes: str) -> bytes:
    fields = {
        "command": "/deploy",
        "text": text,
        "user_id": SLACK_USER,
        "channel_id": SLACK_CHANNEL,
        "team_id": "T1",
        **changes,
    }
    return urlencode(fields).encode()


def click_body(action_id: str, value: str, **changes: Any) -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": SLACK_USER},
        "channel": {"id": SLACK_CHANNEL},
        "team": {"id": "T1"},
        "actions": [{"type": "button", "action_id": action_id, "value": value}],
        **changes,
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


async def test_slack_digits_python_cannot_read_and_ids_beyond_a_bigint_get_clear_answers(
    world: World,
) -> None:
    with structlog.testing.capture_logs() as logs:
        for text in ("cancel ²", "cancel 99999999999999999999", "status ١٢", "status 1" + "0" * 20):
            assert await slack_post(world, "/slack/commands", slash_body(text)) == 200
        for action in (blocks.CANCEL, blocks.REDEPLOY):
            for value in ("²", "99999999999999999999"):
                assert (
                    await slack_post(world, "/slack/interactivity", click_body(action, value))
                    == 200
                )
    assert [entry for entry in logs if entry["event"] in GENERIC_FAILURES] == []
    answers = world.fakes.slack.ephemeral_texts()
    assert "`²` is not a deployment id" in answers[0]
    assert "`99999999999999999999` is not a deployment id" in answers[1]
    assert "`١٢` is neither a service nor a deployment id" in answers[2]
    assert "There is no service `100000000000000000000`" in answers[3]
    assert len(answers) == 4  # clicks on a value that is no deployment id do nothing
    assert world.errors.take() == []


async def test_slack_refs_and_names_that_cannot_be_are_refused_before_the_database(
    world: World,
) -> None:
    before = await database_counts(world.pool)
    with structlog.testing.capture_logs() as logs:
        assert await slack_post(world, "/slack/commands", slash_body("web a\x00b")) == 200
        assert (
            await slack_post(world, "/slack/commands", slash_body("web --ref=--upload-pack=x"))
            == 200
        )
        confirm = json.dumps({"service": "web", "ref": "a..b"})
        body = click_body(blocks.CONFIRM_DEPLOY, confirm)
        assert await slack_post(world, "/slack/interactivity", body) == 200
        body = click_body(blocks.ROLLBACK, "we\x00b")
        assert await slack_post(world, "/slack/interactivity", body) == 200
    assert [entry for entry in logs if entry["event"] in GENERIC_FAILURES] == []
    answers = world.fakes.slack.ephemeral_texts()
    assert "`a\\x00b` is not a branch, tag or commit" in answers[0]
    assert "`--upload-pack=x` is not a branch, tag or commit" in answers[1]
    assert "That ref is not a branch, tag or commit. Nothing was queued." in answers[2]
    assert "There is no service `we\\x00b`" in answers[3]
    assert await database_counts(world.pool) == before
    assert world.errors.take() == []


async def test_slack_payloads_with_parts_of_another_type_get_an_answer_never_a_traceback(
    world: World,
) -> None:
    with structlog.testing.capture_logs() as logs:
        # A click whose user or channel is not an object: acknowledged, nothing done.
        for changes in ({"user": SLACK_USER}, {"channel": [SLACK_CHANNEL]}, {"user": None}):
            body = click_body(blocks.CANCEL, "1", **changes)
            assert await slack_post(world, "/slack/interactivity", body) == 200
        # Shapes bolt itself cannot read: a 400, one line in the log.
        for changes in ({"actions": ["deploy_cancel"]}, {"actions": [{"value": "1"}]}):
            body = click_body(blocks.CANCEL, "1", **changes)
            assert await slack_post(world, "/slack/interactivity", body) == 400
        event = json.dumps({"type": "event_callback", "event": "app_mention"}).encode()
        assert await slack_post(world, "/slack/events", event, json_body=True) == 400
    assert [entry for entry in logs if entry["event"] in GENERIC_FAILURES] == []
    assert world.fakes.slack.ephemeral_texts() == []
    assert world.errors.take() == []


async def test_slack_events_of_any_type_are_acknowledged(world: World) -> None:
    for kind in ("app_mention", "message", "reaction_added", "team_join"):
        event = {"type": kind, "user": SLACK_USER, "channel": SLACK_CHANNEL, "ts": "1.1"}
        body = json.dumps({"type": "event_callback", "event_id": "Ev1", "event": event}).encode()
        assert await slack_post(world, "/slack/events", body, json_body=True) == 200, kind


def test_the_parser_shows_odd_words_short_and_visible_and_refuses_impossible_refs() -> None:
    result = parse("/deploy " + "\x00" * 900)
    assert isinstance(result, Response) and result.kind == "usage"
    assert len(result.text) < 300 and "\\x00\\x00" in result.text and "…" in result.text
    result = parse("/deploy we\u202eb")
    assert isinstance(result, Response) and "`we\\u202eb` is not a service name" in result.text
    assert isinstance(parse("/deploy wéb"), Response)  # services are named [a-z0-9-]
    for ref in ("-x", "--upload-pack=touch x", "a..b", "'a b'", ".hidden", "x.lock", "a:b"):
        result = parse(f"/deploy web --ref={ref}", ["web"])
        assert isinstance(result, Response), ref
        assert "is not a branch, tag or commit" in result.text, (ref, result.text)
    assert parse("/deploy web --ref feature/ünïcode-🚀", ["web"]) == Command(
        "deploy", "web", "feature/ünïcode-🚀"
    )
    assert parse_slack("cancel 12") == Command("cancel", target="12")
    for text in ("cancel ²", "cancel 0", "cancel 1234567890123456789"):
        result = parse_slack(text)
        assert isinstance(result, Response) and "is not a deployment id" in result.text, text
    assert deployment_id("١٢") is None and deployment_id("123456789012345678") is not None


def test_the_parser_refuses_overlong_commands_at_once() -> None:
    # A GitHub comment may hold 65536 characters; splitting them like a shell costs time.
    for text in ("/deploy web --ref " + "x" * 70_000, "/deploy " + "é\u0301" * 30_000):
        result = parse(text, ["web"])
        assert isinstance(result, Response) and "longer than 1000 characters" in result.text
    assert parse("/dep" + "y" * 70_000) == Ignore()
    assert parse("/deplyo web") == Response(
        "suggestion", "`/deplyo` is not a command. Did you mean `/deploy`?"
    )


async def test_bodies_not_in_their_content_encoding_are_400_everywhere(world: World) -> None:
    body = b'{"zen": "x"}'
    requests = {
        "/webhooks/github": github_headers(body, "ping"),
        "/webhooks/gitlab": fake_gitlab.hook_headers("Push Hook"),
        "/slack/commands": {
            "Content-Type": "application/x-www-form-urlencoded",
            **slack_signed(body),
        },
    }
    for path, headers in requests.items():
        for encoding in (b"gzip", b"deflate"):
            sent = [(k.encode(), v.encode()) for k, v in headers.items()]
            sent.append((b"Content-Encoding", encoding))
            assert await raw_post(world, path, sent, body) == 400, (path, encoding)
    assert world.errors.take() == []


async def test_github_logins_and_repositories_github_could_not_have_are_400(
    world: World, github_examples: dict[str, list[dict[str, Any]]]
) -> None:
    # They end up in GitHub API paths: a 9000-character login made a request line GitHub
    # refuses (400), which we answered 502 ("send it again").
    before = await database_counts(world.pool)
    for login in ("a" * 9000, "a/b", "", "-x y"):
        comment = github_base(github_examples, "issue_comment", 3, world)
        comment["comment"]["body"] = "/deploy hello"
        comment["comment"]["user"]["login"] = login
        status, answer = await github_send(world, "issue_comment", comment)
        assert status == 400 and answer["message"].endswith("is not a GitHub login"), answer
    for full_name in ("Codertocat/" + "x" * 9000, "Codertocat/..", "a b/c", "Codertocat/"):
        comment = github_base(github_examples, "issue_comment", 3, world)
        comment["repository"]["full_name"] = full_name
        status, answer = await github_send(world, "issue_comment", comment)
        assert status == 400 and answer["message"].startswith("repository "), answer
    assert await database_counts(world.pool) == before
    comment = github_base(github_examples, "issue_comment", 3, world)
    comment["comment"]["body"] = "/deploy hello"
    comment["comment"]["user"]["login"] = "octocat_acme"  # an Enterprise managed user
    assert (await github_send(world, "issue_comment", comment))[0] == 200
