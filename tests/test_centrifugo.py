"""Live logs through Centrifugo: published once by one of several processes, in order and
complete; dropped for Centrifugo only when it is down, with a gap message telling where to
re-read; subscription tokens that Centrifugo (here: PyJWT, as Centrifugo checks them)
accepts; the readiness check. Centrifugo itself is the documented-API double
tests/support/fake_centrifugo.py."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cent import AsyncClient, BatchRequest, InfoRequest, PublishRequest
from cent.exceptions import CentApiResponseError, CentUnauthorizedError
from pydantic import SecretStr
from structlog.testing import capture_logs

from bot.api import log_messages
from bot.api.app import setup_api
from bot.api.live import Lines, LogHub
from bot.api.log_messages import encoded_lines, log_message, sse_chunk
from bot.api.tokens import Scope, TokenStore
from bot.centrifugo.check import check_centrifugo
from bot.centrifugo.publisher import Publisher
from bot.centrifugo.sender import BYTES_PER_PUBLICATION, LINES_PER_PUBLICATION, chunks
from bot.centrifugo.setup import PUBLISHER_KEY
from bot.centrifugo.setup import setup as centrifugo_setup
from bot.doctor import run_checks
from bot.ops import metrics as ops_metrics
from bot.ops.checks import Level
from bot.ops.health import readiness
from bot.runtime import Runtime
from pipeline.errors import ConfigError
from pipeline.models import LogLine, Page
from pipeline.queue.queue import Queue
from pipeline.queue.worker import Worker
from pipeline.settings import Settings, load_settings
from pipeline.store import LogEntry, Store
from tests.support.fake_centrifugo import API_KEY, TOKEN_HMAC_SECRET, FakeCentrifugo
from tests.support.pipelines import ScriptedPipeline
from tests.support.waiting import PATIENCE
from tests.test_processes import free_port, spawn, worker_env

StartWorker = Callable[..., Awaitable[Worker]]
LEGAL_ORDER = ["queued", "cloning", "building", "pushing", "succeeded"]


@pytest.fixture
async def centrifugo() -> AsyncIterator[FakeCentrifugo]:
    fake = FakeCentrifugo()
    await fake.start()
    yield fake
    await fake.stop()


class HeldCentrifugo(FakeCentrifugo):
    """The double, answering only while `answering` is set: a Centrifugo exactly as slow as a
    test wants, with no timing in it. `held` counts the requests that arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.answering = asyncio.Event()
        self.held = 0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.held += 1
        await self.answering.wait()
        return await super()._handle(request)


@pytest.fixture
async def held_centrifugo() -> AsyncIterator[HeldCentrifugo]:
    fake = HeldCentrifugo()
    await fake.start()
    yield fake
    await fake.stop()


def with_centrifugo(settings: Settings, fake: FakeCentrifugo, **more: Any) -> Settings:
    return settings.model_copy(
        update={
            "centrifugo_api_url": fake.url,
            "centrifugo_api_key": SecretStr(fake.api_key),
            "centrifugo_token_hmac_secret": SecretStr(TOKEN_HMAC_SECRET),
            "public_url": "https://deploy.example.com",
            **more,
        }
    )


async def until(condition: Callable[[], bool], what: str, timeout: float = PATIENCE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)


class Process:
    """What one `serve` process has for live logs: its LogHub and its publisher."""

    def __init__(self, settings: Settings, store: Store, url: str) -> None:
        self.hub = LogHub(url, store)
        self.publisher = Publisher(settings, self.hub, url)
        self.hub.observers.append(self.publisher)

    async def start(self) -> None:
        await self.hub.start()
        await self.publisher.start()
        await asyncio.wait_for(self.hub.listener.connected.wait(), PATIENCE)

    async def stop(self) -> None:
        await self.publisher.stop()
        await self.hub.stop()


@pytest.fixture
async def processes() -> AsyncIterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        await process.stop()


async def start_process(
    started: list[Process], settings: Settings, store: Store, url: str
) -> Process:
    process = Process(settings, store, url)
    await process.start()
    started.append(process)
    return process


def published_lines(messages: list[Any]) -> list[int]:
    return [line["seq"] for m in messages if m["type"] == "log" for line in m["lines"]]


def channel(deployment_id: int) -> str:
    return f"deployments:{deployment_id}"


# --- the double itself --------------------------------------------------------------------


async def test_the_double_enforces_the_documented_api(centrifugo: FakeCentrifugo) -> None:
    async with aiohttp.ClientSession() as session:
        body = {"channel": "deployments:1", "data": {"a": 1}}
        no_key = await session.post(f"{centrifugo.url}/publish", json=body)
        assert no_key.status == 401
        wrong = await session.post(
            f"{centrifugo.url}/publish", json=body, headers={"X-API-Key": "nope"}
        )
        assert wrong.status == 401
        key = {"X-API-Key": API_KEY}
        ok = await session.post(f"{centrifugo.url}/publish", json=body, headers=key)
        assert (ok.status, await ok.json()) == (200, {"result": {}})
        bad_bodies: list[dict[str, Any]] = [
            {"data": {}},
            {"channel": "deployments:1"},
            {**body, "extra": 1},
        ]
        for bad in bad_bodies:
            answer = await session.post(f"{centrifugo.url}/publish", json=bad, headers=key)
            assert (await answer.json())["error"]["code"] == 107, bad
        unknown = await session.post(
            f"{centrifugo.url}/publish", json={"channel": "nope:1", "data": 1}, headers=key
        )
        assert (await unknown.json())["error"] == {"code": 102, "message": "unknown channel"}
        garbage = await session.post(f"{centrifugo.url}/publish", data=b"{", headers=key)
        assert garbage.status == 400
        no_method = await session.post(f"{centrifugo.url}/nothing", json={}, headers=key)
        assert no_method.status == 404
        batch = await session.post(
            f"{centrifugo.url}/batch",
            json={"commands": [{"publish": body}, {"publish": {"channel": "x:1", "data": {}}}]},
            headers=key,
        )
        replies = (await batch.json())["replies"]
        assert replies == [{"publish": {}}, {"error": {"code": 102, "message": "unknown channel"}}]
    # cent, the client the publisher uses, speaks it.
    async with AsyncClient(centrifugo.url, API_KEY) as client:
        await client.publish(PublishRequest(channel="deployments:2", data={"b": 2}))
        result = await client.batch(
            BatchRequest(requests=[PublishRequest(channel="deployments:3", data=n) for n in (1, 2)])
        )
        assert len(result.replies) == 2
        assert len((await client.info(InfoRequest())).nodes) == 1
        with pytest.raises(CentApiResponseError):
            await client.publish(PublishRequest(channel="nope:1", data={}))
    async with AsyncClient(centrifugo.url, "wrong") as client:
        with pytest.raises(CentUnauthorizedError):
            await client.info(InfoRequest())
    assert centrifugo.messages("deployments:3") == [1, 2]
    assert centrifugo.messages("deployments:1") == [{"a": 1}, {"a": 1}]  # publish, batch


# --- publishing ---------------------------------------------------------------------------


async def test_a_build_is_published_once_by_one_of_two_processes_in_order_and_complete(
    settings: Settings,
    store: Store,
    queue: Queue,
    service: int,
    database_url: str,
    centrifugo: FakeCentrifugo,
    processes: list[Process],
    start_worker: StartWorker,
) -> None:
    configured = with_centrifugo(settings, centrifugo)
    first = await start_process(processes, configured, store, database_url)
    second = await start_process(processes, configured, store, database_url)
    await until(lambda: first.publisher.stats.leader or second.publisher.stats.leader, "a leader")
    await start_worker(ScriptedPipeline())
    deployment = await queue.enqueue(service, trigger={"script": {"lines": 600, "sleep": 0.6}})

    def messages() -> list[Any]:
        return centrifugo.messages(channel(deployment.id))

    await until(lambda: any(m["type"] == "end" for m in messages()), "the end message")
    stored = (await store.read_logs(deployment.id, limit=5000)).items
    assert published_lines(messages()) == [line.seq for line in stored]  # once each, in order
    texts = [line["line"] for m in messages() if m["type"] == "log" for line in m["lines"]]
    assert [t for t in texts if t.startswith("line ")] == [f"line {n}" for n in range(600)]
    statuses = [m["deployment"]["status"] for m in messages() if m["type"] == "status"]
    positions = [LEGAL_ORDER.index(status) for status in statuses]
    assert positions == sorted(positions) and statuses[-1] == "succeeded"
    final = [m for m in messages() if m["type"] == "status"][-1]["deployment"]
    assert [step["name"] for step in final["steps"]] == ["clone", "build", "push"]
    assert messages()[-1] == {"type": "end", "status": "succeeded"}
    assert [first.publisher.stats.leader, second.publisher.stats.leader].count(True) == 1
    leader, other = (first, second) if first.publisher.stats.leader else (second, first)
    assert other.publisher.stats.publications == 0
    assert leader.publisher.stats.lines == len(stored)
    assert not centrifugo.refused

    # The publishing process goes away: the other takes over (its lock went with it).
    await leader.stop()
    processes.remove(leader)
    await until(lambda: other.publisher.stats.leader, "the other process takes over")
    again = await queue.enqueue(service, trigger={"script": {"lines": 50}})

    def again_messages() -> list[Any]:
        return centrifugo.messages(channel(again.id))

    await until(lambda: any(m["type"] == "end" for m in again_messages()), "the second build")
    stored_again = (await store.read_logs(again.id, limit=5000)).items
    assert published_lines(again_messages()) == [line.seq for line in stored_again]
    assert other.publisher.stats.lines == len(stored_again)


class CountingStore(Store):
    """A store that counts the reads of log lines that found any."""

    lines_read = 0

    async def read_logs(
        self, deployment_id: int, after: int = 0, limit: int = 1000
    ) -> Page[LogLine]:
        page = await super().read_logs(deployment_id, after=after, limit=limit)
        if page.items:
            self.lines_read += len(page.items)
        return page


async def test_viewers_and_the_publisher_share_one_read_and_one_encoding_of_each_line(
    settings: Settings,
    store: Store,
    queue: Queue,
    service: int,
    database_url: str,
    centrifugo: FakeCentrifugo,
    processes: list[Process],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counting = CountingStore(store.pool)
    process = await start_process(
        processes, with_centrifugo(settings, centrifugo), counting, database_url
    )
    await until(lambda: process.publisher.stats.leader, "the publisher leads")
    deployment_id = await running_deployment(queue, service)
    seq = await store.append_logs(deployment_id, 1, [LogEntry(f"first {n}") for n in range(10)])
    await until(lambda: process.publisher.cursors.get(deployment_id) == 10, "the publisher follows")
    sent: list[list[int]] = [[], []]

    async def view(shown: list[int]) -> None:  # as the SSE route does: events, then bytes
        async with process.hub.watch(deployment_id, after=10) as viewer:
            while len(shown) < 50:
                events = await viewer.next(1.0)
                sse_chunk(events)
                shown.extend(line.seq for e in events if isinstance(e, Lines) for line in e.lines)

    encodings = 0
    original = log_messages.line_json

    def counted(line: LogLine) -> dict[str, Any]:
        nonlocal encodings
        encodings += 1
        return original(line)

    viewers = [asyncio.create_task(view(shown)) for shown in sent]
    await until(lambda: len(process.hub.feeds[deployment_id].viewers) == 3, "all three follow")
    monkeypatch.setattr(log_messages, "line_json", counted)
    counting.lines_read = 0
    await store.append_logs(deployment_id, seq, [LogEntry(f"live {n}") for n in range(50)])
    await asyncio.wait_for(asyncio.gather(*viewers), PATIENCE)
    await until(
        lambda: len(published_lines(centrifugo.messages(channel(deployment_id)))) == 60, "published"
    )
    assert sent == [list(range(11, 61))] * 2
    # 50 new lines, 2 viewers and Centrifugo: each line read once and encoded once.
    assert (counting.lines_read, encodings) == (50, 50)


async def running_deployment(queue: Queue, service: int) -> int:
    deployment = await queue.enqueue(service)
    assert await queue.claim("test-writer") is not None
    return deployment.id


async def test_centrifugo_down_drops_for_it_only_logs_once_and_says_where_to_re_read(
    settings: Settings,
    store: Store,
    queue: Queue,
    service: int,
    database_url: str,
    centrifugo: FakeCentrifugo,
    processes: list[Process],
) -> None:
    process = await start_process(
        processes, with_centrifugo(settings, centrifugo), store, database_url
    )
    publisher = process.publisher
    await until(lambda: publisher.stats.leader, "the publisher leads")
    deployment_id = await running_deployment(queue, service)
    seq = await store.append_logs(deployment_id, 1, [LogEntry(f"before {n}") for n in range(30)])
    await until(
        lambda: len(published_lines(centrifugo.messages(channel(deployment_id)))) == 30, "live"
    )

    with capture_logs() as logged:
        await centrifugo.stop()
        for batch in range(10):  # a build goes on writing while Centrifugo is away
            seq = await store.append_logs(
                deployment_id, seq, [LogEntry(f"away {batch}.{n}") for n in range(20)]
            )
            await asyncio.sleep(0.05)
        await until(lambda: publisher.stats.dropped_lines == 200, "every line away is dropped")
        assert publisher.stats.failed_batches >= 1 and not publisher.stats.up
        await centrifugo.start()
        seq = await store.append_logs(
            deployment_id, seq, [LogEntry(f"after {n}") for n in range(5)]
        )
        await until(lambda: publisher.stats.gap_messages == 1, "the gap message")
    assert seq - 1 == 235
    warnings = [entry for entry in logged if entry["log_level"] == "warning"]
    assert len(warnings) == 1, warnings  # once per outage, however many batches failed
    assert "dropping lines for Centrifugo only" in warnings[0]["event"]
    assert "unreachable" in warnings[0]["reason"]
    assert any("caught up" in entry["event"] for entry in logged)
    assert API_KEY not in repr(logged)

    messages = centrifugo.messages(channel(deployment_id))
    gaps = [m for m in messages if m["type"] == "gap"]
    assert gaps == [
        {
            "type": "gap",
            "after": 30,
            "logs": f"https://deploy.example.com/api/v1/deployments/{deployment_id}/logs?after=30",
            "deployment": f"https://deploy.example.com/api/v1/deployments/{deployment_id}",
        }
    ]
    live = published_lines(messages)
    assert live[:30] == list(range(1, 31))
    # A subscriber re-reads after the gap's seq, from the history that stayed in PostgreSQL:
    # the lines written after the restart came live after the gap, or are covered by it.
    assert_gaps_cover_what_was_dropped(messages, list(range(1, 236)))
    await store.append_logs(deployment_id, seq, [LogEntry("once it is back")])
    await until(
        lambda: 236 in published_lines(centrifugo.messages(channel(deployment_id))), "live again"
    )
    assert publisher.stats.outages == 1


async def test_a_full_queue_drops_instead_of_waiting(
    settings: Settings,
    store: Store,
    queue: Queue,
    service: int,
    database_url: str,
    held_centrifugo: HeldCentrifugo,
    processes: list[Process],
) -> None:
    centrifugo = held_centrifugo  # a slow Centrifugo: it answers once the lines are written
    configured = with_centrifugo(
        settings, centrifugo, centrifugo_queue_size=10, centrifugo_timeout_seconds=60
    )
    process = await start_process(processes, configured, store, database_url)
    publisher = process.publisher
    await until(lambda: publisher.stats.leader, "the publisher leads")
    deployment_id = await running_deployment(queue, service)
    seq = 1
    for batch in range(40):  # the writer never waits for Centrifugo
        entries = [LogEntry(f"{batch}.{n}") for n in range(LINES_PER_PUBLICATION)]
        seq = await store.append_logs(deployment_id, seq, entries)
        assert publisher.queue.qsize() <= 10
    await until(lambda: publisher.cursors.get(deployment_id) == seq - 1, "all read")
    # What waits is the queue (10) and the request held (its first and what the queue had
    # then), publications of up to 200 lines; the rest was dropped.
    assert publisher.stats.dropped_lines >= seq - 1 - (10 + 1 + 10) * LINES_PER_PUBLICATION
    centrifugo.answering.set()
    await until(lambda: publisher.stats.gap_messages >= 1, "the gap message")
    # Caught up: every line went to Centrifugo or was dropped, nothing waits or is on its way.
    await until(
        lambda: (
            publisher.caught_up()
            and publisher.stats.lines + publisher.stats.dropped_lines == seq - 1
        ),
        "caught up",
    )
    assert publisher.stats.failed_batches == 0  # slow is not down: nothing failed
    messages = centrifugo.messages(channel(deployment_id))
    live = published_lines(messages)
    assert len(live) == len(set(live)) == publisher.stats.lines
    assert_gaps_cover_what_was_dropped(messages, list(range(1, seq)))


def assert_gaps_cover_what_was_dropped(messages: list[Any], stored: list[int]) -> None:
    """A channel's messages as a subscriber that follows docs/centrifugo.md takes them: each
    line once by seq (skipping what is at or below the highest shown), and at a gap the lines
    after its `after`, re-read. Every line before a gap came live before it (else it would
    arrive only when the subscriber has moved past it), and every stored line is shown."""
    shown: list[int] = []  # in order, each above the one before

    def show(seqs: list[int]) -> None:
        shown.extend(seq for seq in seqs if seq > (shown[-1] if shown else 0))

    for message in messages:
        if message["type"] == "log":
            show([line["seq"] for line in message["lines"]])
        elif message["type"] == "gap":
            after = message["after"]
            assert shown[:after] == list(range(1, after + 1)), (
                f"a gap says after={after}, but of the lines up to it only "
                f"{len([seq for seq in shown if seq <= after])} came before it"
            )
            show([seq for seq in stored if seq > after])
    assert shown == stored


async def test_a_gap_comes_after_every_line_before_it_and_before_any_after_it(
    settings: Settings,
    store: Store,
    queue: Queue,
    service: int,
    database_url: str,
    held_centrifugo: HeldCentrifugo,
    processes: list[Process],
) -> None:
    """Driven step by step: a request held until the reader has filled the queue and dropped
    the rest, so where the gap message goes does not depend on timing."""
    centrifugo = held_centrifugo
    configured = with_centrifugo(
        settings, centrifugo, centrifugo_queue_size=10, centrifugo_timeout_seconds=60
    )
    process = await start_process(processes, configured, store, database_url)
    publisher = process.publisher
    await until(lambda: publisher.stats.leader, "the publisher leads")
    deployment_id = await running_deployment(queue, service)
    seq = await store.append_logs(deployment_id, 1, [LogEntry(f"first {n}") for n in range(200)])
    await until(lambda: centrifugo.held == 1, "the first batch is on its way")
    for batch in range(15):  # while it is held, far more than the queue takes
        entries = [LogEntry(f"{batch}.{n}") for n in range(LINES_PER_PUBLICATION)]
        seq = await store.append_logs(deployment_id, seq, entries)
    await until(lambda: publisher.cursors.get(deployment_id) == seq - 1, "all read")
    assert publisher.queue.full() and publisher.stats.dropped_lines > 0
    centrifugo.answering.set()
    await until(
        lambda: (
            publisher.caught_up()
            and publisher.stats.lines + publisher.stats.dropped_lines == seq - 1
        ),
        "caught up",
    )
    messages = centrifugo.messages(channel(deployment_id))
    assert [m["type"] for m in messages].count("gap") == publisher.stats.gap_messages == 1
    assert_gaps_cover_what_was_dropped(messages, list(range(1, seq)))
    # After the gap, new lines come live again.
    more = await store.append_logs(deployment_id, seq, [LogEntry("later")])
    await until(lambda: seq in published_lines(centrifugo.messages(channel(deployment_id))), "live")
    assert more == seq + 1
    assert publisher.stats.failed_batches == 0


async def test_a_namespace_centrifugo_does_not_know_is_named_once(
    settings: Settings,
    store: Store,
    queue: Queue,
    service: int,
    database_url: str,
    centrifugo: FakeCentrifugo,
    processes: list[Process],
) -> None:
    configured = with_centrifugo(settings, centrifugo, centrifugo_channel_prefix="builds:")
    with capture_logs() as logged:
        process = await start_process(processes, configured, store, database_url)
        await until(lambda: process.publisher.stats.leader, "the publisher leads")
        deployment_id = await running_deployment(queue, service)
        await store.append_logs(deployment_id, 1, [LogEntry("a line")])
        await until(lambda: process.publisher.stats.dropped_lines >= 1, "the refusal")
    warnings = [entry for entry in logged if entry["log_level"] == "warning"]
    assert len(warnings) == 1
    assert "CENTRIFUGO_CHANNEL_PREFIX='builds:'" in warnings[0]["reason"]
    assert "namespace 'builds' is not configured" in centrifugo.refused


def test_publications_stay_below_centrifugos_message_size() -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    lines = [LogLine(n, now, "stdout", "x" * (n % 7 * 900)) for n in range(1, 2001)]
    encoded = encoded_lines(Lines(lines))
    parts = list(chunks(encoded))
    assert [line.seq for part in parts for line in lines[part]] == list(range(1, 2001))
    for part in parts:
        assert len(lines[part]) <= LINES_PER_PUBLICATION
        assert len(log_message(encoded[part]).encode()) <= max(BYTES_PER_PUBLICATION, 65536)
    huge = [LogLine(1, now, "stdout", "y" * 100_000), LogLine(2, now, "stdout", "z")]
    huge_parts = list(chunks(encoded_lines(Lines(huge))))
    assert [len(huge[part]) for part in huge_parts] == [1, 1]


# --- the app: token route, metrics, wiring --------------------------------------------------


@pytest.fixture
async def app_client(
    settings: Settings, pool: asyncpg.Pool, database_url: str, centrifugo: FakeCentrifugo
) -> AsyncIterator[tuple[TestClient[web.Request, web.Application], Runtime, dict[str, str]]]:
    configured = with_centrifugo(settings, centrifugo)
    runtime = Runtime(configured, database_url, pool, Store(pool), Queue(pool, configured))
    app = web.Application()
    setup_api(app, runtime)
    centrifugo_setup(app, runtime)
    ops_metrics.setup(app, runtime)
    _record, token = await TokenStore(pool).create("front-end", Scope.READ)
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client, runtime, {"Authorization": f"Bearer {token}"}
    await client.close()


async def test_a_subscription_token_is_what_centrifugo_accepts_for_that_channel(
    app_client: tuple[TestClient[web.Request, web.Application], Runtime, dict[str, str]],
    queue: Queue,
    service: int,
) -> None:
    client, _runtime, auth = app_client
    deployment = await queue.enqueue(service)
    path = f"/api/v1/deployments/{deployment.id}/logs/subscription"
    answer = await client.get(path + "?user=alice", headers=auth)
    assert answer.status == 200
    assert answer.headers["Cache-Control"] == "no-store"
    body = await answer.json()
    assert body["channel"] == f"deployments:{deployment.id}"
    # As Centrifugo checks it: HS256 with its HMAC secret, exp required and in the future.
    claims = jwt.decode(
        body["token"],
        TOKEN_HMAC_SECRET,
        algorithms=["HS256"],
        options={"require": ["sub", "channel", "exp"]},
    )
    assert claims["sub"] == "alice" and claims["channel"] == body["channel"]
    assert 3500 < claims["exp"] - time.time() <= 3600
    assert jwt.get_unverified_header(body["token"])["alg"] == "HS256"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(body["token"], "another secret, of the same length", algorithms=["HS256"])
    anonymous = await (await client.get(path, headers=auth)).json()
    assert jwt.decode(anonymous["token"], TOKEN_HMAC_SECRET, algorithms=["HS256"])["sub"] == ""
    assert (await client.get(path)).status == 401
    missing = await client.get("/api/v1/deployments/999999/logs/subscription", headers=auth)
    assert missing.status == 404
    too_long = await client.get(path + "?user=" + "u" * 300, headers=auth)
    assert too_long.status == 422
    assert "query.user" in (await too_long.json())["error"]["message"]


async def test_without_a_token_secret_the_route_says_what_to_set(
    api_client_without_secret: tuple[TestClient[web.Request, web.Application], dict[str, str]],
    queue: Queue,
    service: int,
) -> None:
    client, auth = api_client_without_secret
    deployment = await queue.enqueue(service)
    answer = await client.get(
        f"/api/v1/deployments/{deployment.id}/logs/subscription", headers=auth
    )
    assert answer.status == 404
    error = (await answer.json())["error"]
    assert error["code"] == "centrifugo_not_configured"
    assert "CENTRIFUGO_TOKEN_HMAC_SECRET" in error["message"]


@pytest.fixture
async def api_client_without_secret(
    settings: Settings, pool: asyncpg.Pool, database_url: str
) -> AsyncIterator[tuple[TestClient[web.Request, web.Application], dict[str, str]]]:
    runtime = Runtime(settings, database_url, pool, Store(pool), Queue(pool, settings))
    app = web.Application()
    setup_api(app, runtime)
    centrifugo_setup(app, runtime)  # not configured: adds nothing
    assert PUBLISHER_KEY not in app
    _record, token = await TokenStore(pool).create("reader", Scope.READ)
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client, {"Authorization": f"Bearer {token}"}
    await client.close()


async def test_metrics_count_what_the_publisher_did(
    app_client: tuple[TestClient[web.Request, web.Application], Runtime, dict[str, str]],
    queue: Queue,
    store: Store,
    service: int,
    centrifugo: FakeCentrifugo,
) -> None:
    client, _runtime, _auth = app_client
    publisher = client.app[PUBLISHER_KEY]
    await until(lambda: publisher.stats.leader, "the app's publisher leads")
    deployment_id = await running_deployment(queue, service)
    await store.append_logs(deployment_id, 1, [LogEntry(f"l{n}") for n in range(12)])
    await until(lambda: publisher.stats.lines == 12, "published")
    await centrifugo.stop()
    await store.append_logs(deployment_id, 13, [LogEntry("lost")])
    await until(lambda: publisher.stats.dropped_lines == 1, "dropped")
    text = await (await client.get("/metrics")).text()
    figures = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("click_deploy_centrifugo_")
    }
    assert figures["click_deploy_centrifugo_published_lines_total"] == 12
    assert figures["click_deploy_centrifugo_dropped_lines_total"] == 1
    assert figures["click_deploy_centrifugo_outages_total"] == 1
    assert figures["click_deploy_centrifugo_publisher"] == 1
    assert figures["click_deploy_centrifugo_up"] == 0


# --- settings and the readiness check -------------------------------------------------------


def test_settings_name_what_is_missing_and_never_print_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CENTRIFUGO_API_URL", "http://centrifugo:8000/api/")
    with pytest.raises(ConfigError) as missing:
        load_settings(_env_file=None)
    assert "CENTRIFUGO_API_KEY is not set" in str(missing.value)
    monkeypatch.setenv("CENTRIFUGO_API_KEY", "s3cret-key")
    loaded = load_settings(_env_file=None)
    assert loaded.centrifugo_api_url == "http://centrifugo:8000/api"
    assert "s3cret-key" not in repr(loaded)
    monkeypatch.setenv("CENTRIFUGO_API_URL", "centrifugo:8000")
    monkeypatch.setenv("CENTRIFUGO_CHANNEL_PREFIX", "live logs:")
    with pytest.raises(ConfigError) as bad:
        load_settings(_env_file=None)
    assert "CENTRIFUGO_API_URL: must be an http:// or https:// URL" in str(bad.value)
    assert "CENTRIFUGO_CHANNEL_PREFIX: must be a channel name prefix" in str(bad.value)
    assert "s3cret-key" not in str(bad.value)
    monkeypatch.delenv("CENTRIFUGO_CHANNEL_PREFIX")
    monkeypatch.setenv("CENTRIFUGO_API_URL", "http://centrifugo:8000/api")
    monkeypatch.setenv("CENTRIFUGO_TOKEN_HMAC_SECRET", "short-secret")
    with pytest.raises(ConfigError) as short:
        load_settings(_env_file=None)
    assert "CENTRIFUGO_TOKEN_HMAC_SECRET: must be at least 32 characters" in str(short.value)
    assert "short-secret" not in str(short.value)


async def test_the_check_reports_centrifugo_when_configured(
    settings: Settings, centrifugo: FakeCentrifugo
) -> None:
    unconfigured = await check_centrifugo(settings)  # not configured: nothing to check
    assert unconfigured.level is Level.UNCONFIGURED and unconfigured.ok
    configured = with_centrifugo(settings, centrifugo)
    ok = await check_centrifugo(configured)
    assert ok.ok and ok.detail == "ok (1 node)"
    no_tokens = configured.model_copy(update={"centrifugo_token_hmac_secret": None})
    reported = await check_centrifugo(no_tokens)
    assert reported.ok
    assert "CENTRIFUGO_TOKEN_HMAC_SECRET is not set" in reported.detail
    wrong_key = configured.model_copy(update={"centrifugo_api_key": SecretStr("wrong")})
    refused = await check_centrifugo(wrong_key)
    assert not refused.ok
    assert refused.detail == "refused CENTRIFUGO_API_KEY (401)"
    wrong_path = configured.model_copy(
        update={"centrifugo_api_url": centrifugo.url[: -len("/api")]}
    )
    lost = await check_centrifugo(wrong_path)
    assert not lost.ok and "HTTP 404" in lost.detail
    await centrifugo.stop()
    down = await check_centrifugo(configured)
    assert not down.ok and down.detail.startswith("unreachable: ")
    assert API_KEY not in down.detail


# --- two real `serve` processes -------------------------------------------------------------


@pytest.fixture
def serve_processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(10)


async def metrics_of(session: aiohttp.ClientSession, port: int) -> dict[str, float] | None:
    try:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as answer:
            text = await answer.text()
    except aiohttp.ClientConnectionError:
        return None
    return {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("click_deploy_centrifugo_")
    }


async def test_two_serve_processes_publish_each_line_once(
    database_url: str,
    tmp_path: Path,
    queue: Queue,
    store: Store,
    service: int,
    centrifugo: FakeCentrifugo,
    serve_processes: list[subprocess.Popen[bytes]],
) -> None:
    ports = [free_port(), free_port()]
    for port in ports:
        env = worker_env(
            database_url,
            tmp_path,
            HTTP_PORT=str(port),
            CENTRIFUGO_API_URL=centrifugo.url,
            CENTRIFUGO_API_KEY=API_KEY,
            BUILDER="buildkitd",  # never used: the scripted pipeline builds nothing
            BUILDKIT_ADDRESS="tcp://127.0.0.1:1",
        )
        serve_processes.append(spawn([], env, "serve"))
    figures: list[dict[str, float] | None] = [None, None]
    deadline = time.monotonic() + PATIENCE
    async with aiohttp.ClientSession() as session:
        while (
            not all(figures)
            or sum(f["click_deploy_centrifugo_publisher"] for f in figures if f) != 1
        ):
            assert time.monotonic() < deadline, f"no single publisher: {figures}"
            await asyncio.sleep(0.2)
            figures = [await metrics_of(session, port) for port in ports]
        deployment = await queue.enqueue(service, trigger={"script": {"lines": 300, "sleep": 0.3}})

        def messages() -> list[Any]:
            return centrifugo.messages(channel(deployment.id))

        await until(lambda: any(m["type"] == "end" for m in messages()), "the end message")
        stored = (await store.read_logs(deployment.id, limit=5000)).items
        assert published_lines(messages()) == [line.seq for line in stored]
        assert messages()[-1] == {"type": "end", "status": "succeeded"}
        figures = [await metrics_of(session, port) for port in ports]
    lines = sorted(f["click_deploy_centrifugo_published_lines_total"] for f in figures if f)
    assert lines == [0, len(stored)]
    assert not centrifugo.refused


async def test_readyz_and_doctor_show_centrifugo_which_never_makes_serve_unready(
    settings: Settings, pool: asyncpg.Pool, database_url: str, centrifugo: FakeCentrifugo
) -> None:
    configured = with_centrifugo(settings, centrifugo)
    runtime = Runtime(configured, database_url, pool, Store(pool), Queue(pool, configured))
    _, body = await readiness(runtime)
    assert body["checks"]["centrifugo"] == {"ok": True, "detail": "ok (1 node)"}
    [shown] = [check for check in await run_checks(configured, 2.0) if check.name == "centrifugo"]
    assert shown.level is Level.PASS
    await centrifugo.stop()
    _, body = await readiness(runtime)
    assert not body["checks"]["centrifugo"]["ok"]
    assert "centrifugo" not in body.get("not_ready", [])
    [shown] = [check for check in await run_checks(configured, 2.0) if check.name == "centrifugo"]
    assert shown.level is Level.FAIL and shown.fix and API_KEY not in shown.detail
    _, body = await readiness(
        Runtime(settings, database_url, pool, Store(pool), Queue(pool, settings))
    )
    assert "centrifugo" not in body["checks"]  # not configured: not shown
