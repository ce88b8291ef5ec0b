"""The worker loop in-process, against real PostgreSQL, driven by a scripted pipeline."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable

import asyncpg

from pipeline.job import BuildResult, Job
from pipeline.queue.queue import Queue
from pipeline.queue.worker import Worker
from pipeline.states import Status
from pipeline.store import NewService, Store
from tests.support.pipelines import ScriptedPipeline
from tests.support.waiting import PATIENCE, wait_for_status

StartWorker = Callable[..., Awaitable[Worker]]


async def test_a_deployment_runs_through_every_state_to_success(
    store: Store, queue: Queue, service: int, start_worker: StartWorker
) -> None:
    pipeline = ScriptedPipeline()
    await start_worker(pipeline)
    deployment = await queue.enqueue(
        service, commit_sha="abc", trigger={"script": {"lines": 1200, "sleep": 0.1}}
    )
    done = await wait_for_status(store, deployment.id, Status.SUCCEEDED)
    assert done.image == f"registry.test/web:{deployment.id}"
    assert (done.step, done.steps_total, done.progress_message) == (2, 2, "pushing")
    assert done.started_at is not None and done.finished_at is not None
    assert done.lease_token is None and done.worker_id is None
    logs = (await store.read_logs(deployment.id, limit=5000)).items
    texts = [line.line for line in logs]
    assert texts[0].startswith("attempt 1 of 3 on worker")
    assert texts[1] == "building abc"
    assert texts[2:] == [f"line {n}" for n in range(1200)]
    assert [line.seq for line in logs] == list(range(1, len(logs) + 1))
    steps = await store.list_steps(deployment.id)
    assert [(s.name, s.status, s.attempt) for s in steps] == [
        ("clone", "done", 1),
        ("build", "done", 1),
        ("push", "done", 1),
    ]
    assert all(s.seconds is not None and s.seconds >= 0 for s in steps)
    current = await store.current_image(service, "production")
    assert current is not None
    assert (current.deployment_id, current.image) == (deployment.id, done.image)
    assert done.digest == current.digest == "sha256:" + f"{deployment.id:064x}"


async def test_a_failing_build_fails_once_with_its_message(
    store: Store, queue: Queue, service: int, start_worker: StartWorker
) -> None:
    await start_worker(ScriptedPipeline())
    deployment = await queue.enqueue(service, trigger={"script": {"fail": "permanent"}})
    failed = await wait_for_status(store, deployment.id, Status.FAILED)
    assert failed.error == "RUN make failed with exit code 3"
    assert (failed.error_kind, failed.attempts) == ("failed", 1)
    last = (await store.read_logs(deployment.id)).items[-1]
    assert (last.stream, last.line) == ("system", "RUN make failed with exit code 3")


async def test_a_crashing_pipeline_fails_without_a_traceback_in_the_message(
    store: Store, queue: Queue, service: int, start_worker: StartWorker
) -> None:
    await start_worker(ScriptedPipeline())
    deployment = await queue.enqueue(service, trigger={"script": {"fail": "crash"}})
    failed = await wait_for_status(store, deployment.id, Status.FAILED)
    assert failed.error == "internal error in the build pipeline (RuntimeError)"
    assert failed.error_kind == "internal" and failed.attempts == 1


async def test_transient_failures_are_retried_with_exponential_backoff(
    store: Store, queue: Queue, service: int, start_worker: StartWorker
) -> None:
    pipeline = ScriptedPipeline()
    await start_worker(pipeline)
    deployment = await queue.enqueue(service, trigger={"script": {"transient_until": 3}})
    done = await wait_for_status(store, deployment.id, Status.SUCCEEDED)
    assert done.attempts == 3
    runs = [run for run in pipeline.runs if run.deployment_id == deployment.id]
    assert [(run.attempt, run.outcome) for run in runs] == [
        (1, "failed"),
        (2, "failed"),
        (3, "succeeded"),
    ]
    # Backoff 0.2 s after attempt 1, 0.4 s after attempt 2 (settings fixture).
    gaps = [later.started - earlier.ended for earlier, later in itertools.pairwise(runs)]  # type: ignore[operator]
    assert gaps[0] >= 0.18 and gaps[1] >= 0.38, gaps
    lines = [line.line for line in (await store.read_logs(deployment.id)).items]
    assert "registry unavailable (attempt 1); retrying in 0.2 s" in lines
    assert "registry unavailable (attempt 2); retrying in 0.4 s" in lines


async def test_transient_failures_give_up_after_max_attempts(
    store: Store, queue: Queue, service: int, start_worker: StartWorker
) -> None:
    await start_worker(ScriptedPipeline())
    deployment = await queue.enqueue(
        service, max_attempts=2, trigger={"script": {"transient_until": 99}}
    )
    failed = await wait_for_status(store, deployment.id, Status.FAILED)
    assert failed.attempts == 2 and failed.error_kind == "transient"
    assert failed.error == "registry unavailable (attempt 2) (gave up after 2 attempts)"


async def test_cancel_of_a_running_deployment_arrives_by_notify(
    store: Store, queue: Queue, service: int, start_worker: StartWorker
) -> None:
    pipeline = ScriptedPipeline()
    # A heartbeat slower than any wait: only the NOTIFY can deliver the cancel. (How fast
    # it lands is a number for bench/, not an assertion.)
    await start_worker(
        pipeline, worker_heartbeat_seconds=PATIENCE * 2, worker_lease_seconds=PATIENCE * 4
    )
    deployment = await queue.enqueue(service, trigger={"script": {"hang": True}})
    await wait_for_status(store, deployment.id, Status.BUILDING)
    await queue.cancel(deployment.id)
    cancelled = await wait_for_status(store, deployment.id, Status.CANCELLED)
    assert cancelled.error == "cancelled by request"
    assert pipeline.runs[-1].outcome == "cancelled"


async def test_a_build_over_the_timeout_is_stopped_and_failed(
    store: Store, queue: Queue, service: int, start_worker: StartWorker
) -> None:
    pipeline = ScriptedPipeline()
    await start_worker(pipeline, build_timeout_seconds=0.5)
    deployment = await queue.enqueue(service, trigger={"script": {"hang": True}})
    failed = await wait_for_status(store, deployment.id, Status.FAILED)
    assert failed.error_kind == "timeout"
    assert "BUILD_TIMEOUT_SECONDS (0.5 s)" in (failed.error or "")
    assert pipeline.runs[-1].outcome == "cancelled"


async def test_graceful_shutdown_finishes_short_work_and_hands_back_the_rest(
    store: Store, queue: Queue, start_worker: StartWorker
) -> None:
    quick_service = await store.create_service(NewService("quick", "acme/quick", "github"))
    slow_service = await store.create_service(NewService("slow", "acme/slow", "github"))
    # The grace is far longer than the quick build's 0.6 s, so even a loaded machine
    # finishes it; the hanging one outlasts any grace.
    worker = await start_worker(ScriptedPipeline(), slots=2, shutdown_grace_seconds=5.0)
    quick = await queue.enqueue(quick_service.id, trigger={"script": {"sleep": 0.6}})
    slow = await queue.enqueue(slow_service.id, trigger={"script": {"hang": True}})
    await wait_for_status(store, quick.id, Status.BUILDING)
    await wait_for_status(store, slow.id, Status.BUILDING)
    later = await queue.enqueue(quick_service.id, environment="pr-1")

    worker.stop()
    deadline = time.monotonic() + PATIENCE
    while worker.running:
        assert time.monotonic() < deadline, "the grace period never ended"
        await asyncio.sleep(0.02)
    assert (await store.get_deployment(quick.id)).status == Status.SUCCEEDED
    handed_back = await store.get_deployment(slow.id)
    assert handed_back.status == Status.QUEUED
    assert handed_back.attempts == 0  # a shutdown does not use up an attempt
    assert handed_back.worker_id is None and handed_back.lease_token is None
    # It stopped claiming: the request made after stop() still waits.
    assert (await store.get_deployment(later.id)).status == Status.QUEUED

    # Another worker takes the handed-back deployment.
    await start_worker(ScriptedPipeline())
    await queue.cancel(slow.id)  # it would hang again; cancelling it is enough to prove
    done = await wait_for_status(store, later.id, Status.SUCCEEDED)
    assert done.attempts == 1


async def test_worker_listens_again_after_its_connection_is_killed(
    database_url: str, store: Store, queue: Queue, service: int, start_worker: StartWorker
) -> None:
    worker = await start_worker(ScriptedPipeline(), queue_poll_seconds=3600.0)
    old_pid = worker.listener.backend_pid
    admin = await asyncpg.connect(database_url)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", old_pid)
    finally:
        await admin.close()
    deadline = time.monotonic() + PATIENCE
    while worker.listener.reconnects < 1 or not worker.listener.connected.is_set():
        assert time.monotonic() < deadline, "the listener did not come back"
        await asyncio.sleep(0.02)
    assert worker.listener.backend_pid != old_pid

    # With an hour's poll, only a NOTIFY on the new connection can wake the worker.
    deployment = await queue.enqueue(service)
    await wait_for_status(store, deployment.id, Status.SUCCEEDED)


async def test_many_deployments_never_two_active_for_one_target(
    pool: asyncpg.Pool, store: Store, queue: Queue, start_worker: StartWorker
) -> None:
    services = [
        (await store.create_service(NewService(f"svc-{n}", f"acme/svc-{n}", "github"))).id
        for n in range(10)
    ]
    pipeline = ScriptedPipeline()
    # Four slots over two independent workers, so claims really race.
    await start_worker(pipeline, slots=2)
    await start_worker(pipeline, slots=2)
    rng = random.Random(7)
    made = []
    for _ in range(200):
        service_id = rng.choice(services)
        sleep = rng.choice([0.0, 0.01, 0.03])
        made.append(await queue.enqueue(service_id, trigger={"script": {"sleep": sleep}}))
        await asyncio.sleep(rng.choice([0.0, 0.002, 0.01]))
    for deployment in made:
        await wait_for_status(store, deployment.id, Status.SUCCEEDED, Status.SUPERSEDED)

    rows = await pool.fetch(
        "SELECT id, service_id, status, superseded_by, started_at, finished_at "
        "FROM deployments ORDER BY id"
    )
    assert len(rows) == 200
    by_service: dict[int, list[asyncpg.Record]] = defaultdict(list)
    for row in rows:
        by_service[row["service_id"]].append(row)
        if row["status"] == "superseded":
            newer = next(r for r in rows if r["id"] == row["superseded_by"])
            assert newer["service_id"] == row["service_id"] and newer["id"] > row["id"]
    succeeded = [row for row in rows if row["status"] == "succeeded"]
    print(f"{len(succeeded)} of 200 ran, the rest were superseded")
    # The overlap checks below need a service that ran more than once; how many ran
    # depends on the machine's speed, so only that much is asked.
    ran = defaultdict(int)
    for row in succeeded:
        ran[row["service_id"]] += 1
    assert max(ran.values()) >= 2, "the producer was too fast for the test to mean much"

    # From the database's own timestamps: claim to finish never overlaps per service.
    for service_rows in by_service.values():
        spans = sorted(
            (row["started_at"], row["finished_at"])
            for row in service_rows
            if row["status"] == "succeeded"
        )
        for (_s1, end), (start, _e2) in itertools.pairwise(spans):
            assert end <= start, f"two active at once: {spans}"
        # The newest request for a service always ran.
        assert service_rows[-1]["status"] == "succeeded"

    # And from the pipeline's own recording of when it ran.
    runs_by_service = defaultdict(list)
    for run in pipeline.runs:
        runs_by_service[run.service_id].append((run.started, run.ended))
    for spans in runs_by_service.values():
        spans.sort()
        for (_s1, end), (start, _e2) in itertools.pairwise(spans):
            assert end is not None and end <= start


class GatedPipeline:
    """Enters the build states and succeeds once its deployment's gate opens; writes nothing
    itself, so a row lock held by the test stops only the job's final write."""

    def __init__(self) -> None:
        self.gates: dict[int, asyncio.Event] = defaultdict(asyncio.Event)
        self.started: asyncio.Queue[int] = asyncio.Queue()
        self.spans: dict[int, tuple[float, float]] = {}

    async def run(self, job: Job) -> BuildResult:
        began = time.monotonic()
        self.started.put_nowait(job.deployment.id)
        await job.enter(Status.BUILDING)
        await self.gates[job.deployment.id].wait()
        await job.enter(Status.PUSHING)
        self.spans[job.deployment.id] = (began, time.monotonic())
        return BuildResult(image="registry.test/web:gated", digest="sha256:" + "c" * 64)


async def test_a_slot_is_claimed_again_while_its_last_job_s_final_write_waits(
    pool: asyncpg.Pool, store: Store, queue: Queue, service: int, start_worker: StartWorker
) -> None:
    pipeline = GatedPipeline()
    await start_worker(pipeline, slots=1)
    first = await queue.enqueue(service, environment="first")
    assert await asyncio.wait_for(pipeline.started.get(), PATIENCE) == first.id
    async with pool.acquire() as connection, connection.transaction():
        # Hold the first deployment's row: its final write waits behind this lock.
        await connection.execute("SELECT 1 FROM deployments WHERE id = $1 FOR UPDATE", first.id)
        pipeline.gates[first.id].set()
        second = await queue.enqueue(service, environment="second")
        # The only slot's pipeline has returned, so the slot takes the next deployment
        # while the first one's write still waits.
        assert await asyncio.wait_for(pipeline.started.get(), PATIENCE) == second.id
        assert (await store.get_deployment(first.id)).status != Status.SUCCEEDED
    pipeline.gates[second.id].set()
    await wait_for_status(store, first.id, Status.SUCCEEDED)
    await wait_for_status(store, second.id, Status.SUCCEEDED)
    # One slot, one pipeline at a time.
    assert pipeline.spans[first.id][1] <= pipeline.spans[second.id][0]
