"""Live log latency: a log line stored → seen by SSE viewers of another process, with
publishing to Centrifugo off and on, side by side.

A `click-deploy serve` process serves the API; this process writes lines of one running
deployment at a steady rate (batches every 20 ms, as a worker flushes) and follows it with
N SSE viewers. Each line carries its write time; a viewer's latency is arrival − write.
The build side's figures are the lines written per second and how long each batch's write
took (a worker waits for it). With Centrifugo on, serve publishes to the Centrifugo double
(tests/support/fake_centrifugo.py, in a process of its own), which records each arrival:
its latency is arrival − write too.
Usage: .venv/bin/python bench/logs.py [--rate 5000] [--viewers 10] [--seconds 10]
[--centrifugo off|on|both] (DATABASE_URL: the PostgreSQL server; a scratch database is
made and dropped for each run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.api.tokens import Scope, TokenStore  # noqa: E402
from pipeline.db.connect import create_pool  # noqa: E402
from pipeline.db.migrate import migrate  # noqa: E402
from pipeline.queue.queue import Queue  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.store import LogEntry, NewService, Store  # noqa: E402
from tests.support.fake_centrifugo import API_KEY  # noqa: E402

BATCH_SECONDS = 0.02


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def viewer(url: str, token: str, total: int, latencies: list[float]) -> int:
    seen = 0
    timeout = aiohttp.ClientTimeout(total=None, sock_read=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(
            url, headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        ) as response,
    ):
        async for raw in response.content:
            if raw.startswith(b'data: {"seq"'):
                now = time.time()
                # the line is "t=<write time> ...": no JSON decoding needed to find it
                start = raw.index(b'"line":"t=') + 10
                sent = float(raw[start : raw.index(b" ", start)])
                latencies.append(now - sent)
                seen += 1
                if seen >= total:
                    return seen
    return seen


async def write(
    store: Store, deployment_id: int, rate: int, seconds: float, durations: list[float]
) -> int:
    per_batch = max(1, round(rate * BATCH_SECONDS))
    batches = round(seconds / BATCH_SECONDS)
    seq = 1
    start = time.monotonic()
    for number in range(batches):
        delay = start + number * BATCH_SECONDS - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.time()
        entries = [LogEntry(f"t={now:.6f} line {seq + i} " + "x" * 60) for i in range(per_batch)]
        began = time.monotonic()
        seq = await store.append_logs(deployment_id, seq, entries)
        durations.append(time.monotonic() - began)
    return seq - 1


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentiles(values: list[float]) -> tuple[float, float, float]:
    """p50, p99 and max, in milliseconds."""
    ordered = sorted(values)
    if not ordered:
        return (float("nan"),) * 3
    return (
        statistics.median(ordered) * 1000,
        ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        ordered[-1] * 1000,
    )


async def start_centrifugo(port: int) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.fake_centrifugo", str(port),
        env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
    )  # fmt: skip
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(f"http://127.0.0.1:{port}/fake/publications") as answer:
                    if answer.status == 200:
                        return process
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("the Centrifugo double did not start")


async def centrifugo_latencies(port: int, total: int) -> tuple[list[float], int]:
    """Arrival − write of every log line Centrifugo got (waiting for all of them, or 30 s)."""
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(f"http://127.0.0.1:{port}/fake/publications") as answer:
                every = await answer.json()
            lines = [
                (at, line["line"])
                for _channel, at, data in every
                if data.get("type") == "log"
                for line in data["lines"]
            ]
            if len(lines) >= total or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    latencies = [at - float(text[2 : text.index(" ")]) for at, text in lines]
    return latencies, len(lines)


async def metric(port: int, name: str) -> float | None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as answer,
    ):
        for line in (await answer.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split(" ")[1])
    return None


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--viewers", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--centrifugo", choices=["off", "on", "both"], default="both")
    args = parser.parse_args()
    modes = [False, True] if args.centrifugo == "both" else [args.centrifugo == "on"]
    for centrifugo in modes:
        await run(args, centrifugo)


async def run(args: argparse.Namespace, centrifugo: bool) -> None:
    print(f"--- Centrifugo publishing {'on' if centrifugo else 'off'}")
    server = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"bench_logs_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = server.rsplit("/", 1)[0] + "/" + name
    process = None
    fake = None
    fake_port = free_port()
    try:
        connection = await asyncpg.connect(url)
        await migrate(connection)
        await connection.close()
        pool = await create_pool(url, size=4)
        store = Store(pool)
        # A lease longer than any run: the serve process's reaper must not hand it back.
        long_lease = Settings(
            _env_file=None,  # type: ignore[call-arg]
            worker_lease_seconds=86400.0,
            worker_heartbeat_seconds=60.0,
        )
        queue = Queue(pool, long_lease)
        service = await store.create_service(NewService("bench", "acme/bench", "github"))
        deployment = await queue.enqueue(service.id)
        assert await queue.claim("bench-writer") is not None  # running, before serve starts
        _record, token = await TokenStore(pool).create("bench", Scope.READ)
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "HTTP_PORT": str(port),
            "DATA_DIR": f"/tmp/{name}",
            "LOG_LEVEL": "warning",
            "LOCAL_SERVICES": "false",  # serve only serves logs here: no engine, no registry
            "PYTHONPATH": str(ROOT),
        }
        if centrifugo:
            fake = await start_centrifugo(fake_port)
            env["CENTRIFUGO_API_URL"] = f"http://127.0.0.1:{fake_port}/api"
            env["CENTRIFUGO_API_KEY"] = API_KEY
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "serve", env=env, cwd=ROOT
        )
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        total = round(args.seconds / BATCH_SECONDS) * max(1, round(args.rate * BATCH_SECONDS))
        stream = f"http://127.0.0.1:{port}/api/v1/deployments/{deployment.id}/logs"
        latencies: list[list[float]] = [[] for _ in range(args.viewers)]
        viewers = [
            asyncio.create_task(viewer(stream, token, total, latencies[i]))
            for i in range(args.viewers)
        ]
        await asyncio.sleep(1.0)  # all connected and following
        serve_cpu = cpu_seconds(process.pid)
        fake_cpu = cpu_seconds(fake.pid) if fake is not None else 0.0
        started = time.monotonic()
        durations: list[float] = []
        written = await write(store, deployment.id, args.rate, args.seconds, durations)
        wrote_for = time.monotonic() - started
        counts = await asyncio.wait_for(asyncio.gather(*viewers), args.seconds + 60)
        received_for = time.monotonic() - started
        serve_cpu = cpu_seconds(process.pid) - serve_cpu
        p50, p99, worst = percentiles([value for series in latencies for value in series])
        w50, w99, wmax = percentiles(durations)
        print(
            f"rate asked {args.rate} lines/s, written {written} lines in {wrote_for:.1f} s "
            f"({written / wrote_for:.0f} lines/s); {args.viewers} viewers received "
            f"{min(counts)}..{max(counts)} lines each, all within {received_for:.1f} s "
            f"({sum(counts) / received_for:.0f} lines/s delivered in all)"
        )
        print(
            f"latency line stored -> SSE viewer: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
            f"max {worst:.1f} ms"
        )
        print(
            f"build side: a batch of {max(1, round(args.rate * BATCH_SECONDS))} lines written "
            f"in p50 {w50:.2f} ms, p99 {w99:.2f} ms, max {wmax:.2f} ms"
        )
        print(f"serve process CPU while lines were written and followed: {serve_cpu:.1f} s")
        if fake is not None:
            arrivals, got = await centrifugo_latencies(fake_port, written)
            fake_cpu = cpu_seconds(fake.pid) - fake_cpu
            c50, c99, cmax = percentiles(arrivals)
            dropped = await metric(port, "click_deploy_centrifugo_dropped_lines_total") or 0.0
            print(
                f"Centrifugo got {got} of {written} lines (dropped: {dropped:.0f}); latency "
                f"line stored -> Centrifugo: p50 {c50:.1f} ms, p99 {c99:.1f} ms, "
                f"max {cmax:.1f} ms; the Centrifugo double's CPU: {fake_cpu:.1f} s"
            )
        await pool.close()
    finally:
        if process is not None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 30)
        if fake is not None:
            fake.terminate()
            await asyncio.wait_for(fake.wait(), 30)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
