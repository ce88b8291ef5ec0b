from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

from pipeline.errors import NotFound
from pipeline.queue.queue import CancelOutcome, Queue
from pipeline.states import Status
from pipeline.store import NewService, Store
from tests.support.waiting import PATIENCE


async def test_enqueue_notifies_and_claim_takes_it(
    database_url: str, queue: Queue, service: int
) -> None:
    listener = await asyncpg.connect(database_url)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener("click_deploy_queue", lambda *args: heard.put_nowait(args[3]))
    try:
        deployment = await queue.enqueue(
            service, ref="main", commit_sha="abc123", trigger={"source": "cli", "user": "ann"}
        )
        assert deployment.status == Status.QUEUED
        assert deployment.trigger == {"source": "cli", "user": "ann"}
        assert await asyncio.wait_for(heard.get(), PATIENCE) == str(deployment.id)

        claimed = await queue.claim("worker-a")
        assert claimed is not None
        assert (claimed.id, claimed.status, claimed.attempts) == (deployment.id, Status.CLONING, 1)
        assert claimed.worker_id == "worker-a" and claimed.lease_token is not None
        assert claimed.service_name == "web"
        assert await queue.claim("worker-b") is None
    finally:
        await listener.close()


async def test_enqueue_for_unknown_service_is_not_found(queue: Queue) -> None:
    with pytest.raises(NotFound, match="no service with id 4242"):
        await queue.enqueue(4242)


async def test_newer_request_supersedes_queued_ones(
    store: Store, queue: Queue, service: int
) -> None:
    first = await queue.enqueue(service, commit_sha="a")
    second = await queue.enqueue(service, commit_sha="b")
    preview = await queue.enqueue(service, environment="pr-7", commit_sha="p")
    third = await queue.enqueue(service, commit_sha="c")

    old_one, old_two = await store.get_deployment(first.id), await store.get_deployment(second.id)
    assert (old_one.status, old_one.superseded_by) == (Status.SUPERSEDED, second.id)
    assert (old_two.status, old_two.superseded_by) == (Status.SUPERSEDED, third.id)
    assert old_two.finished_at is not None
    # Another environment of the same service is another target.
    assert (await store.get_deployment(preview.id)).status == Status.QUEUED
    claimed = {(await queue.claim("w")).id, (await queue.claim("w")).id}  # type: ignore[union-attr]
    assert claimed == {third.id, preview.id}


async def test_running_deployment_is_not_superseded_and_blocks_its_target(
    store: Store, queue: Queue, service: int
) -> None:
    running = await queue.enqueue(service, commit_sha="a")
    assert (await queue.claim("w")) is not None
    waiting = await queue.enqueue(service, commit_sha="b")
    assert (await store.get_deployment(running.id)).status == Status.CLONING
    assert await queue.claim("w") is None  # one active per target
    await store.set_status(running.id, Status.FAILED, error="boom")
    claimed = await queue.claim("w")
    assert claimed is not None and claimed.id == waiting.id


async def test_database_keeps_one_active_per_target(
    pool: asyncpg.Pool, queue: Queue, service: int
) -> None:
    await queue.enqueue(service, commit_sha="a")
    await queue.claim("w")
    await queue.enqueue(service, commit_sha="b")
    # Even a claim that ignored the rule is stopped by the partial unique index.
    with pytest.raises(asyncpg.UniqueViolationError, match="deployments_one_active"):
        await pool.execute("UPDATE deployments SET status = 'cloning' WHERE status = 'queued'")


async def test_concurrent_enqueues_for_one_target_leave_exactly_one_queued(
    store: Store, queue: Queue, service: int
) -> None:
    made = await asyncio.gather(*(queue.enqueue(service, commit_sha=str(n)) for n in range(20)))
    page = await store.list_deployments(service, limit=50)
    statuses = [d.status for d in page.items]
    assert statuses.count(Status.QUEUED) == 1
    assert statuses.count(Status.SUPERSEDED) == 19
    newest = max(d.id for d in made)
    assert next(d for d in page.items if d.status == Status.QUEUED).id == newest


async def test_cancel_queued_is_immediate_and_running_is_told(
    database_url: str, store: Store, queue: Queue, service: int
) -> None:
    queued = await queue.enqueue(service, environment="pr-1")
    result = await queue.cancel(queued.id)
    assert result.outcome == CancelOutcome.CANCELLED
    assert (await store.get_deployment(queued.id)).status == Status.CANCELLED

    listener = await asyncpg.connect(database_url)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener("click_deploy_cancel", lambda *args: heard.put_nowait(args[3]))
    try:
        running = await queue.enqueue(service)
        await queue.claim("w")
        result = await queue.cancel(running.id)
        assert result.outcome == CancelOutcome.REQUESTED
        assert await asyncio.wait_for(heard.get(), PATIENCE) == str(running.id)
        assert (await store.get_deployment(running.id)).cancel_requested
    finally:
        await listener.close()

    again = await queue.cancel(queued.id)
    assert again.outcome == CancelOutcome.ALREADY_FINISHED
    with pytest.raises(NotFound):
        await queue.cancel(999999)


async def test_heartbeat_extends_lease_and_reports_lost_and_cancelled(
    store: Store, queue: Queue, service: int
) -> None:
    await queue.enqueue(service)
    claimed = await queue.claim("w")
    assert claimed is not None and claimed.lease_token is not None
    before = claimed.lease_expires_at
    await asyncio.sleep(0.05)
    beat = await queue.heartbeat({claimed.id: claimed.lease_token})
    assert beat.lost == frozenset() and beat.cancel_requested == frozenset()
    after = (await store.get_deployment(claimed.id)).lease_expires_at
    assert before is not None and after is not None and after > before

    await queue.cancel(claimed.id)
    beat = await queue.heartbeat({claimed.id: claimed.lease_token})
    assert beat.cancel_requested == {claimed.id}

    import uuid

    beat = await queue.heartbeat({claimed.id: uuid.uuid4()})
    assert beat.lost == {claimed.id}


async def test_reaper_requeues_then_fails_after_max_attempts(
    pool: asyncpg.Pool, store: Store, queue: Queue, service: int
) -> None:
    deployment = await queue.enqueue(service, max_attempts=2)
    for attempt in (1, 2):
        claimed = await queue.claim(f"doomed-{attempt}")
        assert claimed is not None and claimed.attempts == attempt
        await pool.execute(
            "UPDATE deployments SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
            deployment.id,
        )
        reaped = await queue.reap()
        assert [r.deployment_id for r in reaped] == [deployment.id]
    final = await store.get_deployment(deployment.id)
    assert final.status == Status.FAILED
    assert final.error_kind == "worker_lost"
    assert "worker doomed-2 was lost" in (final.error or "")
    assert "attempt 2 of 2" in (final.error or "")
    assert await queue.reap() == []


async def test_hand_back_supersedes_when_newer_request_waits(
    store: Store, queue: Queue, service: int
) -> None:
    await queue.enqueue(service, commit_sha="a")
    running = await queue.claim("w")
    assert running is not None
    newer = await queue.enqueue(service, commit_sha="b")
    handed = await queue.hand_back(running, running.lease_token, reason="registry down")
    assert handed is not None
    assert (handed.status, handed.superseded_by) == (Status.SUPERSEDED, newer.id)
    # A stale lease token changes nothing.
    assert await queue.hand_back(running, running.lease_token) is None


async def test_trigger_is_stored_as_json(pool: asyncpg.Pool, queue: Queue, service: int) -> None:
    deployment = await queue.enqueue(service, trigger={"answer": {"slack": ["C1", "123.4"]}})
    raw = await pool.fetchval("SELECT trigger::text FROM deployments WHERE id = $1", deployment.id)
    assert json.loads(raw) == {"answer": {"slack": ["C1", "123.4"]}}


async def test_services_for_another_repository_are_separate(store: Store) -> None:
    await store.create_service(NewService("a", "acme/a", "gitlab"))
    assert await store.services_for_repository("github", "acme/a", "main") == []
