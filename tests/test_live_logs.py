"""Live logs: SSE and WebSocket viewers of builds run by a worker, in order and complete,
resumable, and never slowed by (or slowing) another viewer."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.api.live import End, Lines, LogHub, StatusChange
from bot.api.tokens import Scope, TokenStore
from pipeline.queue.queue import Queue
from pipeline.queue.worker import Worker
from pipeline.states import Status
from pipeline.store import LogEntry, Store
from tests.support.api import Api
from tests.support.pipelines import ScriptedPipeline
from tests.support.sse import SseEvent, read_events
from tests.support.waiting import PATIENCE, wait_for_status
from tests.test_processes import free_port, processes, spawn, worker_env

__all__ = ["processes"]  # a fixture

pytest_plugins = ["tests.support.api"]

StartWorker = Callable[..., Awaitable[Worker]]


async def collect_sse(api: Api, deployment_id: int, headers: dict[str, str]) -> list[SseEvent]:
    events = []
    async with api.client.get(
        f"/api/v1/deployments/{deployment_id}/logs",
        headers={**api.auth("read"), "Accept": "text/event-stream", **headers},
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        async for event in read_events(response):
            events.append(event)
            if event.event == "end":
                break
    return events


def log_lines(events: list[SseEvent]) -> list[str]:
    return [e.data["line"] for e in events if e.event == "log"]


LEGAL_ORDER = ["queued", "cloning", "building", "pushing", "succeeded"]


def assert_in_legal_order(statuses: list[str]) -> None:
    """Each state seen is one of the legal order's, none goes back: a subsequence of it
    (a state may be told twice in a row, as the row changes within it)."""
    positions = [LEGAL_ORDER.index(status) for status in statuses]
    assert positions == sorted(positions), statuses


def test_the_legal_order_check_refuses_what_it_should() -> None:
    assert_in_legal_order(["cloning", "pushing", "succeeded"])  # the loaded machine's view
    assert_in_legal_order(["building", "building", "succeeded"])
    for wrong in (["pushing", "building", "succeeded"], ["succeeded", "building"]):
        with pytest.raises(AssertionError):
            assert_in_legal_order(wrong)
    with pytest.raises(ValueError):
        assert_in_legal_order(["cloning", "failed"])


async def test_sse_follows_a_build_live_to_the_end(
    api: Api, queue: Queue, service: int, start_worker: StartWorker
) -> None:
    await start_worker(ScriptedPipeline())
    deployment = await queue.enqueue(service, trigger={"script": {"lines": 300, "sleep": 0.6}})
    events = await asyncio.wait_for(collect_sse(api, deployment.id, {}), PATIENCE)
    lines = log_lines(events)
    assert [line for line in lines if line.startswith("line ")] == [f"line {n}" for n in range(300)]
    ids = [int(e.id) for e in events if e.event == "log" and e.id]
    assert ids == list(range(1, len(ids) + 1))
    # A viewer is not promised every state (moves within one flush interval land as one
    # row version, DESIGN.md): what it sees is in the legal order and ends succeeded.
    statuses = [e.data["status"] for e in events if e.event == "status"]
    assert statuses[-1] == "succeeded"
    assert_in_legal_order(statuses)
    final = [e for e in events if e.event == "status"][-1].data
    assert final["image"] and final["digest"].startswith("sha256:")
    assert [step["name"] for step in final["steps"]] == ["clone", "build", "push"]
    assert events[-1].event == "end" and events[-1].data == {"status": "succeeded"}


async def test_a_finished_deployment_replays_resumes_and_closes(
    api: Api, store: Store, queue: Queue, service: int, start_worker: StartWorker
) -> None:
    await start_worker(ScriptedPipeline())
    deployment = await queue.enqueue(service, trigger={"script": {"lines": 20}})
    await wait_for_status(store, deployment.id, *[s for s in _final()])
    last = await store.last_log_seq(deployment.id)
    whole = await asyncio.wait_for(collect_sse(api, deployment.id, {}), PATIENCE)
    assert len(log_lines(whole)) == last > 20
    resumed = await asyncio.wait_for(
        collect_sse(api, deployment.id, {"Last-Event-ID": "15"}), PATIENCE
    )
    assert [int(e.id or 0) for e in resumed if e.event == "log"] == list(range(16, last + 1))
    assert resumed[-1].event == "end"
    followed = []
    async with api.client.get(
        f"/api/v1/deployments/{deployment.id}/logs?follow=1&after={last - 2}",
        headers=api.auth("read"),
    ) as response:
        async for event in read_events(response):
            followed.append(event)
    assert [e.event for e in followed] == ["log", "log", "status", "end"]
    bad = await api.client.get(
        f"/api/v1/deployments/{deployment.id}/logs",
        headers={**api.auth("read"), "Accept": "text/event-stream", "Last-Event-ID": "x"},
    )
    assert bad.status == 422


def _final() -> list[Any]:
    from pipeline.states import FINAL

    return list(FINAL)


async def test_websocket_viewer(
    api: Api, queue: Queue, service: int, start_worker: StartWorker
) -> None:
    await start_worker(ScriptedPipeline())
    deployment = await queue.enqueue(service, trigger={"script": {"lines": 100, "sleep": 0.3}})
    seen: list[int] = []
    kinds = []
    async with api.client.ws_connect(
        f"/api/v1/deployments/{deployment.id}/logs/ws", headers=api.auth("read")
    ) as socket:
        async for message in socket:
            body = message.json()
            kinds.append(body["type"])
            if body["type"] == "log":
                seen += [line["seq"] for line in body["lines"]]
            if body["type"] == "end":
                assert body["status"] == "succeeded"
                break
    assert seen == list(range(1, await api.runtime.store.last_log_seq(deployment.id) + 1))
    assert len(seen) > 100
    assert "status" in kinds
    denied = await api.client.get(f"/api/v1/deployments/{deployment.id}/logs/ws")
    assert denied.status == 401


async def test_a_slow_viewer_re_reads_and_never_holds_up_the_others(
    store: Store, queue: Queue, service: int, database_url: str
) -> None:
    hub = LogHub(database_url, store, buffer=2)
    await hub.start()
    try:
        await asyncio.wait_for(hub.listener.connected.wait(), PATIENCE)
        deployment = await queue.enqueue(service)
        async with (
            hub.watch(deployment.id) as slow,
            hub.watch(deployment.id) as fast,
        ):
            fast_seen: list[int] = []

            async def follow_fast() -> None:
                while len(fast_seen) < 2000:
                    for event in await fast.next(5):
                        if isinstance(event, Lines):
                            fast_seen.extend(line.seq for line in event.lines)

            following = asyncio.create_task(follow_fast())
            seq = 1
            for _batch in range(40):
                entries = [LogEntry(f"l{n}") for n in range(50)]
                seq = await store.append_logs(deployment.id, seq, entries)
                await asyncio.sleep(0.005)
            await asyncio.wait_for(following, PATIENCE)
            assert fast_seen == list(range(1, 2001))
            assert slow.dropped >= 1  # it never read: its queue filled and it was dropped
            slow_seen: list[int] = []
            while len(slow_seen) < 2000:
                for event in await slow.next(5):
                    if isinstance(event, Lines):
                        slow_seen.extend(line.seq for line in event.lines)
                    assert not isinstance(event, End)
            assert slow_seen == list(range(1, 2001))
        assert deployment.id not in hub.feeds  # the last viewer gone, its feed is gone
    finally:
        await hub.stop()


async def test_status_changes_reach_viewers_without_log_lines(
    store: Store, queue: Queue, service: int, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The safety poll never comes within the test: only NOTIFY can tell the viewer.
    monkeypatch.setattr("bot.api.live.SAFETY_POLL_SECONDS", PATIENCE * 10)
    hub = LogHub(database_url, store)
    await hub.start()
    try:
        await asyncio.wait_for(hub.listener.connected.wait(), PATIENCE)
        deployment = await queue.enqueue(service)
        async with hub.watch(deployment.id) as viewer:
            first = await viewer.next(1)
            assert [type(e) for e in first] == [StatusChange]
            await queue.cancel(deployment.id)
            events: list[Any] = []
            async with asyncio.timeout(PATIENCE):
                while not viewer.finished:
                    events += await viewer.next(2)
            assert isinstance(events[-1], End) and str(events[-1].deployment.status) == (
                "cancelled"
            )
    finally:
        await hub.stop()


@pytest.mark.slow
async def test_a_viewer_on_one_process_follows_a_build_in_another(
    database_url: str,
    tmp_path: Path,
    store: Store,
    queue: Queue,
    service: int,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    _record, token = await TokenStore(store.pool).create("viewer", Scope.READ)
    ports = [free_port(), free_port()]
    spawned = [
        spawn(processes, worker_env(database_url, tmp_path, HTTP_PORT=str(port)), "serve")
        for port in ports
    ]
    async with aiohttp.ClientSession() as session:
        for port in ports:
            await wait_healthy(session, port)
        deployment = await queue.enqueue(service, trigger={"script": {"lines": 500, "sleep": 2}})
        running = await wait_for_status(store, deployment.id, Status.BUILDING, Status.CLONING)
        assert running.worker_id is not None
        builder = int(running.worker_id.split(":")[1])
        viewer_port = ports[1] if spawned[0].pid == builder else ports[0]
        assert builder in {process.pid for process in spawned}
        seqs: list[int] = []
        lines: list[str] = []
        statuses: list[str] = []
        arrived_while_running = 0
        async with session.get(
            f"http://127.0.0.1:{viewer_port}/api/v1/deployments/{deployment.id}/logs",
            headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
            timeout=aiohttp.ClientTimeout(total=30),
        ) as response:
            assert response.status == 200
            async for event in read_events(response):
                if event.event == "log":
                    seqs.append(int(event.id or 0))
                    lines.append(event.data["line"])
                    if not statuses or statuses[-1] not in {"succeeded", "failed"}:
                        arrived_while_running += 1
                elif event.event == "status":
                    statuses.append(event.data["status"])
                elif event.event == "end":
                    break
    assert seqs == list(range(1, len(seqs) + 1))
    assert [line for line in lines if line.startswith("line ")] == [f"line {n}" for n in range(500)]
    assert statuses[-1] == "succeeded" and "pushing" in statuses
    assert arrived_while_running == len(seqs)


async def wait_healthy(session: aiohttp.ClientSession, port: int) -> None:
    deadline = time.monotonic() + PATIENCE
    while True:
        try:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"serve on port {port} did not become healthy")
        await asyncio.sleep(0.1)


async def test_follow_prints_a_progress_line(queue: Queue, service: int) -> None:
    from dataclasses import replace

    from bot.follow import progress_line

    deployment = await queue.enqueue(service)
    assert progress_line(deployment) == "-- queued"
    building = replace(
        deployment, status=Status.BUILDING, step=1, steps_total=2, progress_message="compiling"
    )
    assert progress_line(building) == "-- building (step 1 of 2: compiling)"
