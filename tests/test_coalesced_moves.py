"""Moves through the build states are written with a job's next write (migration 0008)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from pipeline.job import LOG_FLUSH_SECONDS, Job
from pipeline.queue.queue import Queue
from pipeline.states import Status
from pipeline.store import LeaseLost, Store
from tests.support.waiting import FENCE, PATIENCE, queue_fence


async def claimed_job(queue: Queue, store: Store, service: int) -> Job:
    await queue.enqueue(service)
    [deployment] = await queue.claim_many("test-worker", 1)
    assert deployment.lease_token is not None
    return Job(store, deployment, deployment.lease_token)


async def test_moves_made_between_writes_land_as_one_change(
    pool: asyncpg.Pool, store: Store, queue: Queue, service: int
) -> None:
    job = await claimed_job(queue, store, service)
    job.log("compiling")
    await job.enter(Status.BUILDING)
    await job.enter(Status.PUSHING)
    done = await job.finish(
        Status.SUCCEEDED, image="registry.test/web:1", digest="sha256:" + "a" * 64
    )
    await job.close()
    assert (done.status, done.phase, done.image) == ("succeeded", "pushing", "registry.test/web:1")
    assert (await store.current_image(service, "production")) is not None
    lines = (await store.read_logs(done.id)).items
    assert [line.line for line in lines] == ["compiling"]


async def test_a_build_state_becomes_visible_without_another_write(
    store: Store, queue: Queue, service: int
) -> None:
    job = await claimed_job(queue, store, service)
    await job.enter(Status.BUILDING)
    assert (await store.get_deployment(job.deployment.id)).status == "cloning"
    async with asyncio.timeout(LOG_FLUSH_SECONDS * 20):
        while (await store.get_deployment(job.deployment.id)).status != "building":
            await asyncio.sleep(0.02)
    failed = await job.finish(Status.FAILED, error="RUN make exited 2", error_kind="failed")
    assert (failed.status, failed.phase, failed.error) == (
        "failed",
        "building",
        "RUN make exited 2",
    )
    await job.close()


async def job_that_lost_its_lease(
    pool: asyncpg.Pool, store: Store, queue: Queue, service: int
) -> Job:
    """A claimed job whose deployment the reaper has since handed to another worker."""
    job = await claimed_job(queue, store, service)
    await pool.execute(
        "UPDATE deployments SET lease_token = gen_random_uuid() WHERE id = $1", job.deployment.id
    )
    return job


async def test_a_lost_lease_stops_the_next_move(
    pool: asyncpg.Pool, store: Store, queue: Queue, service: int
) -> None:
    job = await job_that_lost_its_lease(pool, store, queue, service)
    await job.enter(Status.BUILDING)
    with pytest.raises(LeaseLost):
        await job.flush()
    with pytest.raises(LeaseLost):
        await job.finish(Status.SUCCEEDED, image="x", digest="sha256:" + "b" * 64)
    await job.close()  # never raises: the run is over
    assert (await store.get_deployment(job.deployment.id)).status == "cloning"


async def test_a_refused_background_write_is_raised_by_the_next_move(
    pool: asyncpg.Pool, store: Store, queue: Queue, service: int
) -> None:
    job = await job_that_lost_its_lease(pool, store, queue, service)
    await job.enter(Status.BUILDING)
    # Nothing writes but the job's timer; its refusal comes back with a later move.
    async with asyncio.timeout(10):
        while True:
            await asyncio.sleep(LOG_FLUSH_SECONDS / 2)
            try:
                await job.enter(Status.PUSHING)
            except LeaseLost:
                break
    await job.close()


@pytest.mark.parametrize(
    ("before", "phase", "after", "allowed"),
    [
        ("cloning", "pushing", "succeeded", True),
        ("cloning", "building", "failed", True),
        ("cloning", "pushing", "pushing", True),
        ("building", "pushing", "cancelled", True),
        # A phase no later than where the row is, or a step from it that is not legal.
        ("cloning", "cloning", "succeeded", False),
        ("pushing", "building", "succeeded", True),  # pushing → succeeded is legal anyway
        ("building", "building", "succeeded", False),
        ("cloning", "building", "succeeded", False),
        ("queued", "pushing", "succeeded", False),
        ("succeeded", "pushing", "failed", False),
    ],
)
async def test_the_database_allows_only_forward_moves_through_the_build_states(
    pool: asyncpg.Pool, service: int, before: str, phase: str, after: str, allowed: bool
) -> None:
    deployment_id = await pool.fetchval(
        "INSERT INTO deployments (service_id) VALUES ($1) RETURNING id", service
    )
    # Put the row where the case starts, straight past the trigger.
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SET LOCAL session_replication_role = replica")
        await connection.execute(
            "UPDATE deployments SET status = $2, phase = NULL WHERE id = $1", deployment_id, before
        )
    move = "UPDATE deployments SET status = $2, phase = $3 WHERE id = $1"
    if allowed:
        await pool.execute(move, deployment_id, after, phase)
        assert (
            await pool.fetchval("SELECT status FROM deployments WHERE id = $1", deployment_id)
            == after
        )
    else:
        with pytest.raises(
            asyncpg.CheckViolationError, match=f"cannot go from {before} to {after}"
        ):
            await pool.execute(move, deployment_id, after, phase)


async def test_a_finished_deployment_wakes_the_queue_only_for_a_waiting_request(
    database_url: str, store: Store, queue: Queue, service: int
) -> None:
    woken: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(database_url)
    try:
        await listener.add_listener("click_deploy_queue", lambda *args: woken.put_nowait(args[3]))
        alone = await claimed_job(queue, store, service)
        await woken.get()  # its own enqueue
        await alone.finish(Status.CANCELLED, error="stopped", error_kind="cancelled")
        await alone.close()
        # A fence, not a sleep: notifications arrive in commit order, so if the finish had
        # woken the queue, that would come before this one.
        await queue_fence(database_url, "click_deploy_queue")
        assert await woken.get() == FENCE, "nothing waited, yet the queue was woken"

        busy = await claimed_job(queue, store, service)
        waiting = await queue.enqueue(service)  # same target: waits until `busy` is done
        assert {await woken.get(), await woken.get()} == {str(busy.deployment.id), str(waiting.id)}
        await busy.enter(Status.BUILDING)
        await busy.finish(Status.FAILED, error="RUN make exited 2", error_kind="failed")
        await busy.close()
        assert await asyncio.wait_for(woken.get(), PATIENCE) == str(busy.deployment.id)
    finally:
        await listener.close()
