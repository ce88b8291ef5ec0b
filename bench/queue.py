"""Queue benchmark: click-deploy's deployments queue against pgqueuer, on one PostgreSQL server.

Run:  .venv/bin/python bench/queue.py [--jobs N] [--samples N] [--database-url URL] [--json PATH]

Each side gets a fresh database on the same server (``cd_bench_<hex>`` and
``pgq_bench_<hex>``, dropped at the end) and is driven only through its own public API.

Enqueue → claim latency (NOTIFY wake-up)
    One consumer waits idle; nothing polls (click-deploy ``queue_poll_seconds=60``, pgqueuer
    ``dequeue_timeout=60 s``), so only LISTEN/NOTIFY can wake it. The bench enqueues one job,
    waits until the consumer has picked it up and finished it, lets the consumer settle back
    into its wait (``--settle-ms``), and only then enqueues the next. Latency is
    ``perf_counter()`` when the job's code is called minus ``perf_counter()`` just before the
    enqueue call. For click-deploy the job's code is a pipeline's ``run(job)``, which the real
    ``Worker`` calls right after the claim and ``Job.start()`` (one more query); the pipeline
    then walks the job through ``building`` and ``pushing`` and returns, so the worker marks it
    ``succeeded``. For pgqueuer it is an ``@pgq.entrypoint`` handler.

Enqueue rate and claim + complete throughput
    N jobs are enqueued one call at a time, in sequence, with nothing consuming (enqueue/s).
    click-deploy jobs go to distinct targets (one service, environments ``t-0`` … ``t-<N-1>``),
    since a newer deployment of the same target supersedes a queued one. Then the consumers
    start (by default 2 ``Worker`` × 4 slots sharing one pool of 20, against 2 ``PgQueuer``
    with one connection each and ``batch_size=10``), and the clock runs until every job is
    finished in the database: ``succeeded`` for click-deploy, gone from the queue table (its
    completion flushed) for pgqueuer. Before the consumers start, both sides' databases are
    vacuumed and analysed, as autovacuum would keep them.

    Two more rows, throughput and statements only, with as many jobs at once on each side:
    click-deploy with ``--extra-slots`` (default 20) slots per Worker, since a worker claims
    at most its free slots at once and its jobs' writes are batched across its slots; and
    pgqueuer with ``max_concurrent_tasks`` set to the same number per instance
    (``--pgq-extra-max-tasks``; at least 20, pgqueuer's minimum for a batch of 10), since by
    default it runs any number of jobs at once.

    CPU time is recorded for both sides: this process's, and, when the server runs on this
    machine, the server's (all its processes, from /proc). On a machine shared with other
    work the wall-clock rates wobble; CPU per job does not, and on two cores shared by client
    and server it bounds the rate.

Statements per job
    A second, untimed run of the throughput test counts every statement each side sends, with
    asyncpg query loggers (they slow the client down by some 10 %, hence not in the timed run):
    for click-deploy every connection of its pool (the pool sends no reset query on release);
    for pgqueuer its producer and consumer connections. click-deploy's LISTEN connection is not
    counted. Each statement costs at least one round trip.

Logging is turned down to warnings on both sides, so per-job log lines cost nothing.
"""

# Run as `python bench/queue.py`, this file's folder comes first on sys.path, where its name
# would shadow the standard library's `queue` (imported by asyncpg and asyncio's thread pool).
# The folder is dropped from sys.path before anything else is imported, hence E402 below.
# ruff: noqa: E402

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import os
import platform
import re
import secrets
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from importlib import metadata, resources
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import structlog
from asyncpg.connection import LoggedQuery
from pgqueuer import AsyncpgDriver, Job, PgQueuer, Queries
from pydantic import SecretStr

from pipeline.db.connect import create_pool
from pipeline.db.migrate import migrate
from pipeline.db.queries import q
from pipeline.job import BuildResult
from pipeline.job import Job as DeployJob
from pipeline.queue.queue import Queue
from pipeline.queue.worker import Worker
from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import NewService, Store

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PGQ_ENTRYPOINT = "bench"
PGQ_BATCH_ENTRYPOINT = "bench_batch_enqueue"  # never consumed; only to time batched enqueue
POOL_SIZE = 20
PICKUP_TIMEOUT_SECONDS = 10.0  # far below the 60 s poll: a miss means NOTIFY did not wake it


class BenchError(RuntimeError):
    """The benchmark could not measure what it set out to."""


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    samples: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float

    @classmethod
    def from_seconds(cls, values: list[float]) -> Latency:
        if len(values) < 2:
            raise BenchError("need at least two latency samples")
        ms = [value * 1000 for value in values]
        cuts = statistics.quantiles(ms, n=100, method="inclusive")
        return cls(
            samples=len(ms),
            p50_ms=cuts[49],
            p99_ms=cuts[98],
            mean_ms=statistics.fmean(ms),
            min_ms=min(ms),
            max_ms=max(ms),
        )


@dataclass(frozen=True)
class Throughput:
    jobs: int
    enqueue_seconds: float
    enqueue_per_second: float
    # From starting the consumers until every job's completion is committed.
    complete_seconds: float
    jobs_per_second: float
    # From starting the consumers until the last job's code was called and returned.
    handled_seconds: float
    # CPU time this (single) Python process spent while the consumers ran.
    client_cpu_seconds: float
    # CPU time all the PostgreSQL server's processes spent meanwhile (None: not measurable,
    # the server is not on this machine); includes whatever else the server did.
    server_cpu_seconds: float | None = None


@dataclass(frozen=True)
class Statements:
    """Statements sent, per job, in a separate run of the throughput test (query loggers
    slow the client down, so the timed run goes without them)."""

    jobs: int
    per_enqueue: float
    per_job: float  # claim + complete
    # The most frequent statements of the consume phase, per job.
    top: list[tuple[float, str]]

    @classmethod
    def from_counts(cls, jobs: int, enqueue: Counter[str], consume: Counter[str]) -> Statements:
        frequent = [(count / jobs, query) for query, count in consume.most_common(12)]
        return cls(
            jobs=jobs,
            per_enqueue=sum(enqueue.values()) / jobs,
            per_job=sum(consume.values()) / jobs,
            top=[(rate, query) for rate, query in frequent if rate >= 0.01],
        )


@dataclass
class SideResult:
    name: str
    configuration: dict[str, Any]
    latency: Latency | None = None
    throughput: Throughput | None = None
    statements: Statements | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# --- shared helpers ------------------------------------------------------------------------


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@contextlib.asynccontextmanager
async def temporary_database(server_url: str, prefix: str) -> AsyncIterator[str]:
    """A fresh, empty database; yields its URL and drops it (forcefully) afterwards."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield with_database(server_url, name)
    finally:
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def wait_until(condition: Callable[[], bool], what: str, within: float = 30.0) -> None:
    try:
        async with asyncio.timeout(within):
            while not condition():
                await asyncio.sleep(0.001)
    except TimeoutError:
        raise BenchError(f"timed out after {within:g} s waiting for {what}") from None


async def wait_for_event(event: asyncio.Event, what: str, within: float) -> None:
    try:
        async with asyncio.timeout(within):
            await event.wait()
    except TimeoutError:
        raise BenchError(f"timed out after {within:g} s waiting for {what}") from None


class ServerCpu:
    """CPU time spent by a PostgreSQL server running on this machine: its postmaster and every
    process it forked (backends that exited are in the postmaster's children's time), from
    Linux's /proc. Wall-clock throughput on a shared machine wobbles; CPU per job does not."""

    def __init__(self, postmaster: int | None) -> None:
        self.postmaster = postmaster

    @classmethod
    async def find(cls, url: str) -> ServerCpu:
        connection = await asyncpg.connect(url)
        try:
            # Read while the backend lives: it exits when the connection closes.
            stat = _proc_stat(int(await connection.fetchval("SELECT pg_backend_pid()")))
        finally:
            await connection.close()
        return cls(int(stat[1]) if stat is not None else None)

    def seconds(self) -> float | None:
        if self.postmaster is None:
            return None
        own = _proc_stat(self.postmaster)
        if own is None:
            return None
        ticks = sum(int(value) for value in own[11:15])  # utime stime cutime cstime
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                stat = _proc_stat(int(entry.name))
                if stat is not None and int(stat[1]) == self.postmaster:
                    ticks += int(stat[11]) + int(stat[12])
        return ticks / os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> list[str] | None:
    """/proc/PID/stat from the field after the command name on (ppid first), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def cpu_delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


async def vacuum(url: str) -> None:
    """VACUUM ANALYZE the database, as autovacuum would keep it: both sides start each
    consume phase from tables without the dead rows of earlier runs (the bench's server may
    run with autovacuum off, as this project's CI server does)."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()


def short_sql(query: str, width: int = 90) -> str:
    text = " ".join(query.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@functools.cache
def click_deploy_query_names() -> dict[str, str]:
    """click-deploy's named queries (pipeline/db/queries.sql), by their whitespace-collapsed
    text, so counted statements can be shown by name."""
    text = resources.files("pipeline.db").joinpath("queries.sql").read_text(encoding="utf-8")
    names = re.findall(r"^-- name: (\w+)\s*$", text, flags=re.MULTILINE)
    return {" ".join(q(name).split()): name for name in names}


@functools.cache
def statement_label(query: str) -> str:
    text = " ".join(query.split()).rstrip(";")
    names = click_deploy_query_names()
    # The claim is sent with its limit written in (queue.claim_statement).
    name = names.get(text) or names.get(re.sub(r"LIMIT \d+", "LIMIT $3", text))
    return f"{name} (queries.sql)" if name else short_sql(query)


class StatementCounter:
    """An asyncpg query logger that counts the statements sent on the connections it is
    attached to (loggers are called soon after each statement, not during it)."""

    def __init__(self) -> None:
        self.by_statement: Counter[str] = Counter()

    def __call__(self, record: LoggedQuery) -> None:
        self.by_statement[statement_label(record.query)] += 1

    async def take(self) -> Counter[str]:
        """The counts so far, and start again from zero."""
        for _ in range(3):  # let pending logger callbacks run
            await asyncio.sleep(0)
        taken, self.by_statement = self.by_statement, Counter()
        return taken

    async def attach_to_pool(self, pool: asyncpg.Pool, size: int) -> None:
        """Open all `size` connections of the pool and attach to each."""
        connections = [await pool.acquire() for _ in range(size)]
        for connection in connections:
            connection.add_query_logger(self)
        for connection in connections:
            await pool.release(connection)


# --- click-deploy --------------------------------------------------------------------------


class TimingPipeline:
    """Builds nothing: notes when the worker called it, then walks the job through the build
    states as a real build would and succeeds."""

    def __init__(self) -> None:
        self.started_at: dict[int, float] = {}
        self.picked = asyncio.Event()
        self.finished = 0
        self.finish_target: int | None = None
        self.all_finished = asyncio.Event()

    async def run(self, job: DeployJob) -> BuildResult:
        self.started_at[job.deployment.id] = time.perf_counter()
        self.picked.set()
        await job.enter(Status.BUILDING)
        await job.enter(Status.PUSHING)
        self.finished += 1
        if self.finish_target is not None and self.finished >= self.finish_target:
            self.all_finished.set()
        return BuildResult(image=None)


def click_deploy_settings(url: str, slots: int) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=SecretStr(url),
        worker_slots=slots,
        queue_poll_seconds=60,
        worker_heartbeat_seconds=5,
        worker_lease_seconds=30,
    )


async def stop_workers(workers: list[Worker], tasks: list[asyncio.Task[None]]) -> None:
    for worker in workers:
        worker.stop()
    await asyncio.gather(*tasks)


async def click_deploy_latency(
    url: str, service_id: int, options: Options
) -> tuple[Latency, dict[str, Any]]:
    settings = click_deploy_settings(url, options.slots)
    pool = await create_pool(url, size=POOL_SIZE)
    pipeline = TimingPipeline()
    worker = Worker(settings, pool, url, pipeline, slots=options.slots, worker_id="bench-latency")
    queue = Queue(pool, settings)
    task = asyncio.create_task(worker.run())
    latencies: list[float] = []
    try:
        await wait_for_event(worker.listener.connected, "the worker's LISTEN connection", 10)
        await asyncio.sleep(options.settle_seconds)
        for index in range(options.warmup + options.samples):
            pipeline.picked.clear()
            before = time.perf_counter()
            deployment = await queue.enqueue(service_id, environment="latency")
            await wait_for_event(
                pipeline.picked,
                f"the worker to pick up deployment {deployment.id}",
                PICKUP_TIMEOUT_SECONDS,
            )
            if index >= options.warmup:
                latencies.append(pipeline.started_at[deployment.id] - before)
            await wait_until(lambda: not worker.running, "the worker to finish its deployment")
            await asyncio.sleep(options.settle_seconds)
    finally:
        await stop_workers([worker], [task])
        await pool.close()
    configuration = {"workers": 1, "slots": options.slots, "queue_poll_seconds": 60}
    return Latency.from_seconds(latencies), configuration


async def click_deploy_throughput(
    url: str, service_id: int, options: Options, *, label: str, count: bool
) -> tuple[Throughput, Statements | None]:
    """Enqueue `options.jobs` deployments to environments `<label>-0` …, then time the
    workers through them. With `count`, also count every statement the pool sends."""
    jobs = options.jobs
    settings = click_deploy_settings(url, options.slots)
    pool = await create_pool(url, size=POOL_SIZE)
    counter = StatementCounter()
    if count:
        await counter.attach_to_pool(pool, POOL_SIZE)
        await counter.take()
    queue = Queue(pool, settings)
    try:
        started = time.perf_counter()
        for index in range(jobs):
            await queue.enqueue(service_id, environment=f"{label}-{index}")
        enqueue_seconds = time.perf_counter() - started
        enqueue_counts = await counter.take()
        await vacuum(url)

        pipeline = TimingPipeline()
        pipeline.finish_target = jobs
        workers = [
            Worker(settings, pool, url, pipeline, slots=options.slots, worker_id=f"bench-{n}")
            for n in range(options.workers)
        ]
        server_cpu = await ServerCpu.find(url)
        server_started = server_cpu.seconds()
        started, cpu_started = time.perf_counter(), time.process_time()
        tasks = [asyncio.create_task(worker.run()) for worker in workers]
        try:
            await wait_for_event(pipeline.all_finished, f"{jobs} deployments", options.timeout)
            handled_seconds = time.perf_counter() - started
            await wait_until(
                lambda: not any(worker.running for worker in workers),
                "the workers to record the last results",
            )
            complete_seconds = time.perf_counter() - started
            cpu_seconds = time.process_time() - cpu_started
            server_seconds = cpu_delta(server_started, server_cpu.seconds())
        finally:
            await stop_workers(workers, tasks)
        consume_counts = await counter.take()
        rows = await pool.fetch(
            "SELECT status, count(*) AS n FROM deployments WHERE environment LIKE $1 "
            "GROUP BY status",
            f"{label}-%",
        )
        statuses = {str(row["status"]): int(row["n"]) for row in rows}
        if statuses != {"succeeded": jobs}:
            raise BenchError(f"expected {jobs} succeeded deployments, found {statuses}")
        progress(
            "click-deploy claims per worker: "
            + ", ".join(f"{worker.worker_id}={worker.claimed}" for worker in workers)
        )
    finally:
        await pool.close()
    throughput = Throughput(
        jobs=jobs,
        enqueue_seconds=enqueue_seconds,
        enqueue_per_second=jobs / enqueue_seconds,
        complete_seconds=complete_seconds,
        jobs_per_second=jobs / complete_seconds,
        handled_seconds=handled_seconds,
        client_cpu_seconds=cpu_seconds,
        server_cpu_seconds=server_seconds,
    )
    statements = Statements.from_counts(jobs, enqueue_counts, consume_counts) if count else None
    return throughput, statements


async def bench_click_deploy(server_url: str, options: Options) -> list[SideResult]:
    """The configured workers × slots (latency, throughput, statements), then, with
    --extra-slots, the same number of workers with that many slots each (throughput and
    statements: latency is one deployment at a time, where slots do not matter)."""
    async with temporary_database(server_url, "cd_bench") as url:
        connection = await asyncpg.connect(url)
        try:
            await migrate(connection)
        finally:
            await connection.close()
        pool = await create_pool(url, size=2)
        try:
            service = await Store(pool).create_service(
                NewService(name="bench", repository="acme/bench", provider="github")
            )
        finally:
            await pool.close()

        progress(f"click-deploy: latency, {options.warmup} warm-up + {options.samples} samples")
        latency, latency_configuration = await click_deploy_latency(url, service.id, options)
        progress(
            f"click-deploy: throughput, {options.jobs} jobs, "
            f"{options.workers} workers × {options.slots} slots"
        )
        throughput, _ = await click_deploy_throughput(
            url, service.id, options, label="t", count=False
        )
        progress(f"click-deploy: statements, {options.jobs} more jobs (not timed)")
        _, statements = await click_deploy_throughput(
            url, service.id, options, label="s", count=True
        )
        sides = [
            SideResult(
                name="click-deploy",
                configuration={
                    "latency": latency_configuration,
                    "throughput": click_deploy_configuration(options),
                    "settings": CLICK_DEPLOY_SETTINGS,
                },
                latency=latency,
                throughput=throughput,
                statements=statements,
            )
        ]
        if options.extra_slots:
            extra = replace(options, slots=options.extra_slots)
            progress(
                f"click-deploy: throughput, {options.jobs} jobs, "
                f"{extra.workers} workers × {extra.slots} slots"
            )
            throughput, _ = await click_deploy_throughput(
                url, service.id, extra, label="u", count=False
            )
            progress(f"click-deploy: statements, {options.jobs} more jobs (not timed)")
            _, statements = await click_deploy_throughput(
                url, service.id, extra, label="v", count=True
            )
            sides.append(
                SideResult(
                    name=f"click-deploy {extra.workers}×{extra.slots}",
                    configuration={
                        "throughput": click_deploy_configuration(extra),
                        "settings": CLICK_DEPLOY_SETTINGS,
                    },
                    throughput=throughput,
                    statements=statements,
                )
            )
    return sides


CLICK_DEPLOY_SETTINGS = {
    "queue_poll_seconds": 60,
    "worker_heartbeat_seconds": 5,
    "worker_lease_seconds": 30,
}


def click_deploy_configuration(options: Options) -> dict[str, Any]:
    return {
        "workers": options.workers,
        "slots_per_worker": options.slots,
        "slots_in_total": options.workers * options.slots,
        "pool_size": POOL_SIZE,
        "targets": f"1 service, environments t-0 … t-{options.jobs - 1}",
    }


# --- pgqueuer ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PgqConfig:
    consumers: int
    batch_size: int
    max_concurrent_tasks: int | None
    dequeue_timeout: timedelta = timedelta(seconds=60)

    def describe(self) -> dict[str, Any]:
        return {
            "consumers": self.consumers,
            "driver": "AsyncpgDriver (one asyncpg connection per PgQueuer)",
            "batch_size": self.batch_size,
            "max_concurrent_tasks": self.max_concurrent_tasks or "unlimited",
            "dequeue_timeout_seconds": self.dequeue_timeout.total_seconds(),
            "entrypoint_concurrency_limit": "unlimited",
            "durability": "durable (default install)",
        }


class PgqRecorder:
    """What the entrypoint handlers report back."""

    def __init__(self) -> None:
        self.started_at: dict[int, float] = {}
        self.picked = asyncio.Event()
        self.handled = 0
        self.handle_target: int | None = None
        self.all_handled = asyncio.Event()

    def record(self, job: Job) -> None:
        self.started_at[job.id] = time.perf_counter()
        self.picked.set()
        self.handled += 1
        if self.handle_target is not None and self.handled >= self.handle_target:
            self.all_handled.set()


@dataclass
class PgqConsumer:
    connection: asyncpg.Connection
    pgq: PgQueuer
    task: asyncio.Task[None] | None = None


async def start_consumer(
    url: str, recorder: PgqRecorder, config: PgqConfig, counter: StatementCounter | None
) -> PgqConsumer:
    connection = await asyncpg.connect(url)
    if counter is not None:
        connection.add_query_logger(counter)
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint(PGQ_ENTRYPOINT)
    async def handle(job: Job) -> None:
        recorder.record(job)

    consumer = PgqConsumer(connection, pgq)
    consumer.task = asyncio.create_task(
        pgq.run(
            dequeue_timeout=config.dequeue_timeout,
            batch_size=config.batch_size,
            max_concurrent_tasks=config.max_concurrent_tasks,
        )
    )
    return consumer


async def stop_consumers(consumers: list[PgqConsumer]) -> None:
    for consumer in consumers:
        consumer.pgq.shutdown.set()
    await asyncio.gather(*(consumer.task for consumer in consumers if consumer.task))
    for consumer in consumers:
        await consumer.connection.close()


async def queued_jobs(queries: Queries) -> int:
    return sum(row.count for row in await queries.queue_size())


async def wait_queue_empty(queries: Queries, within: float = 30.0) -> None:
    """Until no job is left in pgqueuer's queue table (completions are flushed in batches)."""
    try:
        async with asyncio.timeout(within):
            while await queued_jobs(queries):
                await asyncio.sleep(0.002)
    except TimeoutError:
        raise BenchError(f"timed out after {within:g} s waiting for pgqueuer's queue") from None


async def pgqueuer_latency(url: str, options: Options, config: PgqConfig) -> Latency:
    recorder = PgqRecorder()
    producer_connection = await asyncpg.connect(url)
    producer = Queries(AsyncpgDriver(producer_connection))
    consumer = await start_consumer(url, recorder, config, counter=None)
    latencies: list[float] = []
    try:
        for index in range(options.warmup + options.samples):
            recorder.picked.clear()
            before = time.perf_counter()
            (job_id,) = await producer.enqueue(PGQ_ENTRYPOINT, None)
            await wait_for_event(
                recorder.picked, f"pgqueuer to pick up job {job_id}", PICKUP_TIMEOUT_SECONDS
            )
            if index >= options.warmup:
                latencies.append(recorder.started_at[job_id] - before)
            await wait_queue_empty(producer)  # its completion is flushed
            await asyncio.sleep(options.settle_seconds)
    finally:
        await stop_consumers([consumer])
        await producer_connection.close()
    return Latency.from_seconds(latencies)


async def pgqueuer_batched_enqueue(url: str, jobs: int) -> float:
    """Jobs/s for one `enqueue` call with lists of `jobs` jobs (click-deploy has no batched
    enqueue); the jobs go to an entrypoint nobody consumes and are cleared again."""
    connection = await asyncpg.connect(url)
    try:
        producer = Queries(AsyncpgDriver(connection))
        started = time.perf_counter()
        await producer.enqueue([PGQ_BATCH_ENTRYPOINT] * jobs, [None] * jobs, [0] * jobs)
        seconds = time.perf_counter() - started
        await producer.clear_queue(PGQ_BATCH_ENTRYPOINT)
    finally:
        await connection.close()
    return jobs / seconds


async def pgqueuer_throughput(
    url: str, options: Options, config: PgqConfig, *, count: bool
) -> tuple[Throughput, Statements | None]:
    """Enqueue `options.jobs` jobs one call at a time, then time the consumers through them.
    With `count`, also count every statement the producer and consumers send."""
    jobs = options.jobs
    producer_counter, consumer_counter = StatementCounter(), StatementCounter()
    producer_connection = await asyncpg.connect(url)
    producer = Queries(AsyncpgDriver(producer_connection))
    try:
        if count:
            producer_connection.add_query_logger(producer_counter)
        started = time.perf_counter()
        for _ in range(jobs):
            await producer.enqueue(PGQ_ENTRYPOINT, None)
        enqueue_seconds = time.perf_counter() - started
        enqueue_counts = await producer_counter.take()
        if count:
            producer_connection.remove_query_logger(producer_counter)
        if (queued := await queued_jobs(producer)) != jobs:
            raise BenchError(f"expected {jobs} queued pgqueuer jobs, found {queued}")
        await vacuum(url)

        recorder = PgqRecorder()
        recorder.handle_target = jobs
        server_cpu = await ServerCpu.find(url)
        server_started = server_cpu.seconds()
        started, cpu_started = time.perf_counter(), time.process_time()
        consumers = [
            await start_consumer(url, recorder, config, consumer_counter if count else None)
            for _ in range(config.consumers)
        ]
        try:
            await wait_for_event(recorder.all_handled, f"{jobs} pgqueuer jobs", options.timeout)
            handled_seconds = time.perf_counter() - started
            await wait_queue_empty(producer)
            complete_seconds = time.perf_counter() - started
            cpu_seconds = time.process_time() - cpu_started
            server_seconds = cpu_delta(server_started, server_cpu.seconds())
        finally:
            await stop_consumers(consumers)
        consume_counts = await consumer_counter.take()
    finally:
        await producer_connection.close()
    throughput = Throughput(
        jobs=jobs,
        enqueue_seconds=enqueue_seconds,
        enqueue_per_second=jobs / enqueue_seconds,
        complete_seconds=complete_seconds,
        jobs_per_second=jobs / complete_seconds,
        handled_seconds=handled_seconds,
        client_cpu_seconds=cpu_seconds,
        server_cpu_seconds=server_seconds,
    )
    statements = Statements.from_counts(jobs, enqueue_counts, consume_counts) if count else None
    return throughput, statements


async def bench_pgqueuer(server_url: str, options: Options) -> list[SideResult]:
    """The configured consumers (latency, throughput, statements), then, with
    --pgq-extra-max-tasks, the same consumers with max_concurrent_tasks set (throughput and
    statements): a concurrency like click-deploy's slots."""
    async with temporary_database(server_url, "pgq_bench") as url:
        connection = await asyncpg.connect(url)
        try:
            await Queries(AsyncpgDriver(connection)).install()
        finally:
            await connection.close()

        latency_config = PgqConfig(
            consumers=1,
            batch_size=options.pgq_batch_size,
            max_concurrent_tasks=options.pgq_max_tasks or None,
        )
        throughput_config = PgqConfig(
            consumers=options.pgq_consumers,
            batch_size=options.pgq_batch_size,
            max_concurrent_tasks=options.pgq_max_tasks or None,
        )
        progress(f"pgqueuer: latency, {options.warmup} warm-up + {options.samples} samples")
        latency = await pgqueuer_latency(url, options, latency_config)
        progress(f"pgqueuer: throughput, {options.jobs} jobs")
        throughput, _ = await pgqueuer_throughput(url, options, throughput_config, count=False)
        progress(f"pgqueuer: statements, {options.jobs} more jobs (not timed)")
        _, statements = await pgqueuer_throughput(url, options, throughput_config, count=True)
        batched = await pgqueuer_batched_enqueue(url, options.jobs)
        sides = [
            SideResult(
                name="pgqueuer",
                configuration={
                    "latency": latency_config.describe(),
                    "throughput": throughput_config.describe(),
                    "run": "PgQueuer.run (queue manager + scheduler)",
                },
                latency=latency,
                throughput=throughput,
                statements=statements,
                extra={"batched_enqueue_per_second (one call, N jobs)": batched},
            )
        ]
        if options.pgq_extra_max_tasks:
            bounded = replace(throughput_config, max_concurrent_tasks=options.pgq_extra_max_tasks)
            progress(
                f"pgqueuer: throughput, {options.jobs} jobs, "
                f"max_concurrent_tasks={options.pgq_extra_max_tasks}"
            )
            throughput, _ = await pgqueuer_throughput(url, options, bounded, count=False)
            progress(f"pgqueuer: statements, {options.jobs} more jobs (not timed)")
            _, statements = await pgqueuer_throughput(url, options, bounded, count=True)
            sides.append(
                SideResult(
                    name=f"pgqueuer max {options.pgq_extra_max_tasks} tasks",
                    configuration={
                        "throughput": bounded.describe(),
                        "run": "PgQueuer.run (queue manager + scheduler)",
                    },
                    throughput=throughput,
                    statements=statements,
                )
            )
    return sides


# --- options and report --------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    database_url: str
    jobs: int
    samples: int
    warmup: int
    workers: int
    slots: int
    settle_seconds: float
    timeout: float
    pgq_consumers: int
    pgq_batch_size: int
    pgq_max_tasks: int
    extra_slots: int
    pgq_extra_max_tasks: int
    json_path: Path | None


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL),
        help="server to use; the bench creates and drops its own databases there "
        "(default: $DATABASE_URL, else %(default)s)",
    )
    parser.add_argument("--jobs", type=int, default=2000, help="jobs for the throughput runs")
    parser.add_argument("--samples", type=int, default=300, help="latency samples per side")
    parser.add_argument("--warmup", type=int, default=20, help="latency samples not counted")
    parser.add_argument("--workers", type=int, default=2, help="click-deploy Worker instances")
    parser.add_argument("--slots", type=int, default=4, help="slots per click-deploy Worker")
    parser.add_argument("--pgq-consumers", type=int, default=2, help="PgQueuer instances")
    parser.add_argument("--pgq-batch-size", type=int, default=10, help="pgqueuer batch_size")
    parser.add_argument(
        "--pgq-max-tasks",
        type=int,
        default=0,
        help="pgqueuer max_concurrent_tasks per instance (0: unlimited; else >= 2 x batch size)",
    )
    parser.add_argument(
        "--extra-slots",
        type=int,
        default=20,
        help="also time click-deploy with this many slots per Worker (0: no such run)",
    )
    parser.add_argument(
        "--pgq-extra-max-tasks",
        type=int,
        default=-1,
        help="also time pgqueuer with this max_concurrent_tasks per instance (0: no such "
        "run; default: --extra-slots, so both sides run as many jobs at once, but at least "
        "2 x batch size, pgqueuer's minimum)",
    )
    parser.add_argument(
        "--settle-ms",
        type=float,
        default=25.0,
        help="pause after each latency sample so the consumer is back in its idle wait",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds allowed for one throughput run"
    )
    parser.add_argument("--json", type=Path, help="write the JSON results here, not to stdout")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.samples < 2 or args.warmup < 0:
        parser.error("need --jobs >= 1, --samples >= 2 and --warmup >= 0")
    if args.pgq_max_tasks and args.pgq_max_tasks < 2 * args.pgq_batch_size:
        parser.error("pgqueuer needs --pgq-max-tasks >= 2 x --pgq-batch-size (or 0)")
    if args.extra_slots < 0:
        parser.error("need --extra-slots >= 0")
    if args.pgq_extra_max_tasks < 0:
        per_consumer = args.extra_slots or args.slots
        args.pgq_extra_max_tasks = max(per_consumer, 2 * args.pgq_batch_size)
    elif args.pgq_extra_max_tasks and args.pgq_extra_max_tasks < 2 * args.pgq_batch_size:
        parser.error("pgqueuer needs --pgq-extra-max-tasks >= 2 x --pgq-batch-size (or 0)")
    return Options(
        database_url=args.database_url,
        jobs=args.jobs,
        samples=args.samples,
        warmup=args.warmup,
        workers=args.workers,
        slots=args.slots,
        settle_seconds=args.settle_ms / 1000,
        timeout=args.timeout,
        pgq_consumers=args.pgq_consumers,
        pgq_batch_size=args.pgq_batch_size,
        pgq_max_tasks=args.pgq_max_tasks,
        extra_slots=args.extra_slots,
        pgq_extra_max_tasks=args.pgq_extra_max_tasks,
        json_path=args.json,
    )


async def environment(server_url: str) -> dict[str, Any]:
    connection = await asyncpg.connect(server_url)
    try:
        server = await connection.fetchval("SHOW server_version")
        synchronous_commit = await connection.fetchval("SHOW synchronous_commit")
    finally:
        await connection.close()
    parts = urlsplit(server_url)
    return {
        "postgresql": server,
        "server": f"{parts.hostname}:{parts.port or 5432}",
        "synchronous_commit": synchronous_commit,
        "python": platform.python_version(),
        "asyncpg": metadata.version("asyncpg"),
        "pgqueuer": metadata.version("pgqueuer"),
        "cpus": os.cpu_count(),
        "event_loop": "asyncio (default)",
    }


def markdown_table(sides: list[SideResult]) -> str:
    def latency_ms(side: SideResult, which: str) -> str:
        return "–" if side.latency is None else f"{getattr(side.latency, which):,.2f}"

    def throughput(side: SideResult, which: str) -> str:
        return "–" if side.throughput is None else f"{getattr(side.throughput, which):,.0f}"

    def statements(side: SideResult, which: str) -> str:
        return "–" if side.statements is None else f"{getattr(side.statements, which):,.1f}"

    def cpu_per_job(side: SideResult, which: str) -> str:
        t = side.throughput
        seconds = None if t is None else getattr(t, which)
        return "–" if t is None or seconds is None else f"{seconds / t.jobs * 1e6:,.0f}"

    rows = [
        ("enqueue → claim p50 (ms)", [latency_ms(s, "p50_ms") for s in sides]),
        ("enqueue → claim p99 (ms)", [latency_ms(s, "p99_ms") for s in sides]),
        (
            "enqueue/s (one call per job, sequential)",
            [throughput(s, "enqueue_per_second") for s in sides],
        ),
        ("claim + complete (jobs/s)", [throughput(s, "jobs_per_second") for s in sides]),
        ("client CPU per job (µs)", [cpu_per_job(s, "client_cpu_seconds") for s in sides]),
        ("server CPU per job (µs)", [cpu_per_job(s, "server_cpu_seconds") for s in sides]),
        ("statements per enqueue", [statements(s, "per_enqueue") for s in sides]),
        ("statements per claim + complete", [statements(s, "per_job") for s in sides]),
    ]
    lines = [
        "| measure | " + " | ".join(side.name for side in sides) + " |",
        "|---|" + "---:|" * len(sides),
    ]
    lines += [f"| {label} | " + " | ".join(values) + " |" for label, values in rows]
    return "\n".join(lines)


def report(env: dict[str, Any], options: Options, sides: list[SideResult]) -> str:
    out = [
        "## Queue benchmark: click-deploy vs pgqueuer",
        "",
        f"PostgreSQL {env['postgresql']} at {env['server']} (synchronous_commit="
        f"{env['synchronous_commit']}), Python {env['python']}, asyncpg {env['asyncpg']}, "
        f"pgqueuer {env['pgqueuer']}, {env['cpus']} CPUs, {env['event_loop']} event loop.",
        f"Latency: {options.samples} samples after {options.warmup} warm-up, one job at a time, "
        f"NOTIFY wake-up only (polling set to 60 s). Throughput: {options.jobs} jobs.",
        "",
        markdown_table(sides),
        "",
    ]
    for side in sides:
        out.append(
            f"- {side.name}: {json.dumps(side.configuration['throughput'], ensure_ascii=False)}"
        )
        if side.throughput is not None:
            t = side.throughput
            out.append(
                f"  - throughput run: {t.complete_seconds:.2f} s to complete "
                f"({t.handled_seconds:.2f} s until the last job's code returned); "
                f"enqueue took {t.enqueue_seconds:.2f} s; client CPU "
                f"{t.client_cpu_seconds:.2f} s ({t.client_cpu_seconds / t.jobs * 1e6:,.0f} µs/job)"
            )
        if side.latency is not None:
            lat = side.latency
            out.append(
                f"  - latency: mean {lat.mean_ms:.2f} ms, min {lat.min_ms:.2f} ms, "
                f"max {lat.max_ms:.2f} ms"
            )
        for key, value in side.extra.items():
            shown = f"{value:,.0f}" if isinstance(value, float) else str(value)
            out.append(f"  - {key}: {shown}")
    for side in sides:
        if side.statements is None:
            continue
        out += [
            "",
            f"### {side.name}: statements per job while consuming (top; separate untimed run)",
            "",
            "| per job | statement |",
            "|---:|---|",
        ]
        out += [f"| {count:.2f} | `{query}` |" for count, query in side.statements.top]
    return "\n".join(out)


def quiet_logging() -> None:
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,  # as the product configures it (bot/logs.py)
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


async def run(options: Options) -> dict[str, Any]:
    env = await environment(options.database_url)
    sides = [
        *await bench_click_deploy(options.database_url, options),
        *await bench_pgqueuer(options.database_url, options),
    ]
    print(report(env, options, sides), flush=True)
    return {
        "environment": env,
        "options": {
            key: str(value) if isinstance(value, Path) else value
            for key, value in asdict(options).items()
            if key != "database_url"
        },
        "results": {side.name: asdict(side) for side in sides},
    }


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    quiet_logging()
    started = time.perf_counter()
    try:
        results = asyncio.run(run(options))
    except BenchError as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 1
    results["wall_seconds"] = round(time.perf_counter() - started, 1)
    progress(f"done in {results['wall_seconds']} s")
    text = json.dumps(results, indent=2, ensure_ascii=False)
    if options.json_path is not None:
        options.json_path.write_text(text + "\n", encoding="utf-8")
        progress(f"results written to {options.json_path}")
    else:
        print()
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
