"""Webhook and Slack bodies are not read before the headers are checked, and never past the
limit: over real HTTP, a raw socket client sends the headers, then streams a 24 MB body
and stops as soon as an answer arrives. What it managed to send bounds what the server
consumed (the server's buffers plus the kernel's): a server that read the whole body first
would let it send all 24 MB before answering."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import select
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from bot.github.setup import setup as github_setup
from bot.gitlab.setup import setup as gitlab_setup
from bot.runtime import Runtime
from bot.slack.setup import setup as slack_setup
from pipeline.queue.queue import Queue
from pipeline.settings import Settings
from pipeline.store import Store
from tests.support.fake_gitlab import WEBHOOK_SECRET as GITLAB_SECRET
from tests.support.github_hooks import SECRET as GITHUB_SECRET

SLACK_SECRET = "slack-signing-secret-for-the-test"
BODY_BYTES = 24 * 1024 * 1024
PIECE = 64 * 1024
# The server's read buffer, its socket's receive buffer and ours for sending: a few MB at
# most on loopback; nowhere near the 24 MB a server reading the whole body takes.
CONSUMED_AT_MOST = 8 * 1024 * 1024


@dataclass
class Sent:
    body_bytes: int  # how much of the body the server let us send before it answered
    status: int
    head: bytes


def stream_until_answered(port: int, head: bytes, body_bytes: int, chunked: bool) -> Sent:
    """Send `head`, then body bytes while the server takes them and has not answered."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, PIECE)
    try:
        sock.connect(("127.0.0.1", port))
        sock.sendall(head)
        sock.setblocking(False)
        data = b"{" + b" " * (PIECE - 2) + b"}"
        piece = f"{len(data):x}\r\n".encode() + data + b"\r\n" if chunked else data
        sent, pending = 0, b""
        while sent < body_bytes:
            readable, _, _ = select.select([sock], [sock], [])  # no timeout: whichever first
            if readable:
                break
            pending = pending or piece
            try:
                count = sock.send(pending)
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            pending = pending[count:]
            sent += count
        else:
            if chunked:
                sock.setblocking(True)
                sock.sendall(b"0\r\n\r\n")
        sock.setblocking(True)
        sock.settimeout(60)
        answer = b""
        while b"\r\n" not in answer:
            part = sock.recv(PIECE)
            if not part:
                break
            answer += part
    finally:
        sock.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return Sent(sent, status, answer[:300])


def request_head(path: str, headers: dict[str, str], length: int | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(
        f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    )
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


Start = Callable[[int], Awaitable[int]]


@pytest.fixture
async def serve(
    settings: Settings, pool: asyncpg.Pool, database_url: str, store: Store
) -> AsyncIterator[Start]:
    """Start the webhooks and Slack (real handlers) with WEBHOOK_MAX_BYTES `limit`."""
    servers: list[TestServer] = []

    async def start(limit: int) -> int:
        configured = settings.model_copy(
            update={
                "github_webhook_secret": SecretStr(GITHUB_SECRET),
                "gitlab_webhook_secret": SecretStr(GITLAB_SECRET),
                "slack_signing_secret": SecretStr(SLACK_SECRET),
                "slack_bot_token": SecretStr("xoxb-test"),
                "slack_api_url": "http://127.0.0.1:9/api/",
                "webhook_max_bytes": limit,
            }
        )
        runtime = Runtime(configured, database_url, pool, store, Queue(pool, configured))
        app = web.Application()
        for setup in (github_setup, gitlab_setup, slack_setup):
            setup(app, runtime)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        assert server.port is not None
        return server.port

    yield start
    for server in servers:
        await server.close()


def github_headers(**extra: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "3a7c9e10-0000-4000-8000-000000000001",
        **extra,
    }


def slack_headers() -> dict[str, str]:
    stamp = str(int(time.time()))
    mac = hmac.new(SLACK_SECRET.encode(), f"v0:{stamp}:".encode() + b"x", hashlib.sha256)
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": "v0=" + mac.hexdigest(),
    }


async def send(port: int, path: str, headers: dict[str, str], length: int | None = None) -> Sent:
    head = request_head(path, headers, length)
    sent = await asyncio.to_thread(
        stream_until_answered, port, head, BODY_BYTES, chunked=length is None
    )
    print(f"{path}: {sent.status} after {sent.body_bytes} body bytes")
    return sent


async def test_unsigned_chunked_bodies_are_refused_before_they_are_read(
    serve: Start, pool: asyncpg.Pool
) -> None:
    port = await serve(25 * 1024 * 1024)  # the default limit: 24 MB would be allowed
    cases = {
        "/webhooks/github": github_headers(),
        "/webhooks/gitlab": {"Content-Type": "application/json", "X-Gitlab-Event": "Push Hook"},
        "/slack/commands": {"Content-Type": "application/x-www-form-urlencoded"},
    }
    for path, headers in cases.items():
        sent = await send(port, path, headers)
        assert sent.status == 401, (path, sent)
        assert sent.body_bytes <= CONSUMED_AT_MOST, (path, sent.body_bytes)
    # A wrong token is in the headers too.
    wrong = await send(
        port,
        "/webhooks/gitlab",
        {"Content-Type": "application/json", "X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "no"},
    )
    assert wrong.status == 401 and wrong.body_bytes <= CONSUMED_AT_MOST, wrong
    assert await pool.fetchval("SELECT count(*) FROM webhook_deliveries") == 0


async def test_wrong_types_and_long_lengths_are_refused_before_reading(
    serve: Start,
) -> None:
    port = await serve(1024 * 1024)
    signed = github_headers(**{"X-Hub-Signature-256": "sha256=" + "0" * 64})
    text = await send(port, "/webhooks/github", {**signed, "Content-Type": "text/plain"})
    assert text.status == 415 and text.body_bytes <= CONSUMED_AT_MOST, text
    long = await send(port, "/webhooks/github", signed, length=BODY_BYTES)
    assert long.status == 413 and long.body_bytes <= CONSUMED_AT_MOST, long
    gitlab = {
        "Content-Type": "application/json",
        "X-Gitlab-Event": "Push Hook",
        "X-Gitlab-Token": GITLAB_SECRET,
    }
    long = await send(port, "/webhooks/gitlab", gitlab, length=BODY_BYTES)
    assert long.status == 413 and long.body_bytes <= CONSUMED_AT_MOST, long
    xml = await send(port, "/webhooks/gitlab", {**gitlab, "Content-Type": "text/xml"})
    assert xml.status == 415 and xml.body_bytes <= CONSUMED_AT_MOST, xml
    slack = await send(port, "/slack/commands", {**slack_headers(), "Content-Type": "text/html"})
    assert slack.status == 415 and slack.body_bytes <= CONSUMED_AT_MOST, slack
    slack = await send(port, "/slack/events", slack_headers(), length=BODY_BYTES)
    assert slack.status == 413 and slack.body_bytes <= CONSUMED_AT_MOST, slack


async def test_signed_bodies_are_read_only_up_to_the_limit(
    serve: Start,
) -> None:
    """A signature header (not yet checkable) gets the body read, but only to the limit."""
    port = await serve(1024 * 1024)
    signed = github_headers(**{"X-Hub-Signature-256": "sha256=" + "0" * 64})
    github = await send(port, "/webhooks/github", signed)
    assert github.status == 413 and github.body_bytes <= CONSUMED_AT_MOST, github
    gitlab = {
        "Content-Type": "application/json",
        "X-Gitlab-Event": "Push Hook",
        "X-Gitlab-Token": GITLAB_SECRET,
    }
    gitlab_sent = await send(port, "/webhooks/gitlab", gitlab)
    assert gitlab_sent.status == 413 and gitlab_sent.body_bytes <= CONSUMED_AT_MOST, gitlab_sent
    slack = await send(port, "/slack/commands", slack_headers())
    assert slack.status == 413 and slack.body_bytes <= CONSUMED_AT_MOST, slack


def first_answer(port: int, head: bytes) -> bytes:
    """The first thing the server says to `head` alone (no body sent)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head)
        answer = b""
        while b"\r\n" not in answer:
            part = sock.recv(PIECE)
            if not part:
                break
            answer += part
    return answer.split(b"\r\n", 1)[0]


async def test_a_sender_waiting_for_100_continue_gets_the_refusal_instead(
    serve: Start,
) -> None:
    port = await serve(1024 * 1024)
    expect = {"Expect": "100-continue"}
    gitlab = {"Content-Type": "application/json", "X-Gitlab-Event": "Push Hook", **expect}
    refusals = {
        "/webhooks/github": (github_headers(**expect), b"HTTP/1.1 401 "),
        "/webhooks/gitlab": (gitlab, b"HTTP/1.1 401 "),
        "/slack/events": ({"Content-Type": "application/json", **expect}, b"HTTP/1.1 401 "),
        "/slack/commands": (
            {**slack_headers(), "Content-Type": "text/plain", **expect},
            b"HTTP/1.1 415 ",
        ),
    }
    for path, (headers, status_line) in refusals.items():
        head = request_head(path, headers, 1000)
        line = await asyncio.to_thread(first_answer, port, head)
        assert line.startswith(status_line), (path, line)
    # Headers that pass are told to go on.
    passing = request_head(
        path="/webhooks/gitlab", headers={**gitlab, "X-Gitlab-Token": GITLAB_SECRET}, length=1000
    )
    assert await asyncio.to_thread(first_answer, port, passing) == b"HTTP/1.1 100 Continue"
