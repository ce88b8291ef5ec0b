"""Live log latency: a log line stored → seen by SSE viewers of another process, with
publishing to Centrifugo off and on, side by side.

A `click-deploy serve` process serves the API; this process writes lines of one running
deployment at a steady rate (batches every 20 ms, as a worker flushes), and N SSE viewers
in a process of their own follow it. Each line carries its write time; a viewer's latency
is arrival − write. The build side's figures are the lines written per second and how long
each batch's write took (a worker waits for it). With Centrifugo on, serve publishes to
the Centrifugo double (tests/support/fake_centrifugo.py, in a process of its own), which
records each arrival: its latency is arrival − write too.
With `--centrifugo both` the two modes alternate for `--rounds` rounds (off, on, on, off,
off, on, ...), so both see the same machine, and a summary gives each figure's median over
the rounds with the change from off to on.
Usage: .venv/bin/python bench/logs.py [--rate 5000] [--viewers 10] [--seconds 10]
[--centrifugo off|on|both] [--rounds 3] (DATABASE_URL: the PostgreSQL server; a scratch
database is made and dropped for each run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
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
WRITE_TIME = re.compile(rb'^data: \{"seq".*?"line":"t=([0-9.]+) ', re.MULTILINE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def viewer(
    url: str, token: str, total: int, latencies: list[float], connected: asyncio.Queue[None]
) -> int:
    seen = 0
    timeout = aiohttp.ClientTimeout(total=None, sock_read=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(
            url, headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        ) as response,
    ):
        connected.put_nowait(None)
        buffer = b""
        async for chunk in response.content.iter_any():
            now = time.time()
            buffer += chunk
            cut = buffer.rfind(b"\n\n")  # the events complete so far
            if cut < 0:
                continue
            complete, buffer = buffer[:cut], buffer[cut + 2 :]
            # A log event's line is "t=<write time> ...": found without decoding its JSON,
            # so the viewers' own work stays small beside what they measure.
            stamps = WRITE_TIME.findall(complete)
            latencies.extend(now - float(stamp) for stamp in stamps)
            seen += len(stamps)
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


async def follow(stream: str, total: int, count: int) -> None:
    """The viewers' own process (a worker does not share its loop with browsers): `count`
    SSE viewers of `stream`. Prints "following" once all are connected, then, when each has
    `total` lines, their figures as JSON."""
    token = os.environ["BENCH_TOKEN"]
    latencies: list[list[float]] = [[] for _ in range(count)]
    connected: asyncio.Queue[None] = asyncio.Queue()
    viewers = [
        asyncio.create_task(viewer(stream, token, total, latencies[i], connected))
        for i in range(count)
    ]
    for _ in range(count):
        await connected.get()
    print("following", flush=True)
    counts = await asyncio.gather(*viewers)
    last = time.time()
    flat = [value for series in latencies for value in series]
    figures = {"counts": counts, "last": last, "latency": percentiles(flat)}
    print(json.dumps(figures | {"cpu": time.process_time()}))


async def start_viewers(
    stream: str, token: str, total: int, count: int
) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--follow", stream, "--total", str(total),
        "--viewers", str(count),
        env={**os.environ, "BENCH_TOKEN": token}, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    if await process.stdout.readline() != b"following\n":
        raise RuntimeError("the viewers did not connect")
    return process


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
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--follow", help=argparse.SUPPRESS)  # the viewers' process
    parser.add_argument("--total", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.follow:
        await follow(args.follow, args.total, args.viewers)
        return
    modes = [False, True] if args.centrifugo == "both" else [args.centrifugo == "on"]
    figures: dict[bool, list[dict[str, float]]] = {mode: [] for mode in modes}
    for number in range(1, args.rounds + 1):
        # Which mode goes first alternates too: a run just after another sees a warmer
        # PostgreSQL.
        for centrifugo in modes if number % 2 else modes[::-1]:
            print(f"--- round {number}: Centrifugo publishing {'on' if centrifugo else 'off'}")
            figures[centrifugo].append(await run(args, centrifugo))
    summarize(figures)


FIGURES = [  # key, label, unit
    ("lines_per_second", "lines written per second", ""),
    ("batch_p50", "batch write, build side, p50", " ms"),
    ("batch_p99", "batch write, build side, p99", " ms"),
    ("viewer_p50", "SSE viewer latency p50", " ms"),
    ("viewer_p99", "SSE viewer latency p99", " ms"),
    ("serve_cpu", "serve CPU", " s"),
    ("centrifugo_p50", "latency to Centrifugo p50", " ms"),
    ("centrifugo_p99", "latency to Centrifugo p99", " ms"),
    ("dropped", "lines dropped for Centrifugo", ""),
]


def summarize(figures: dict[bool, list[dict[str, float]]]) -> None:
    """Each figure's median over the rounds, off and on, and the change from off to on."""
    rounds = len(next(iter(figures.values())))
    print(f"--- medians of {rounds} round(s)")
    print(f"{'':32} {'off':>10} {'on':>10} {'change':>8}")
    for key, label, unit in FIGURES:
        medians = {
            mode: statistics.median(run[key] for run in runs)
            for mode, runs in figures.items()
            if runs and key in runs[0]
        }
        if not medians:
            continue
        off, on = medians.get(False), medians.get(True)
        shown = [f"{value:.1f}{unit}" if value is not None else "-" for value in (off, on)]
        change = f"{(on - off) / off * 100:+.1f} %" if off and on is not None else ""
        print(f"{label:32} {shown[0]:>10} {shown[1]:>10} {change:>8}")


async def run(args: argparse.Namespace, centrifugo: bool) -> dict[str, float]:
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
        viewers = await start_viewers(stream, token, total, args.viewers)
        await asyncio.sleep(0.5)  # each viewer's feed has started
        serve_cpu = cpu_seconds(process.pid)
        fake_cpu = cpu_seconds(fake.pid) if fake is not None else 0.0
        started, started_at = time.monotonic(), time.time()
        durations: list[float] = []
        written = await write(store, deployment.id, args.rate, args.seconds, durations)
        wrote_for = time.monotonic() - started
        assert viewers.stdout is not None
        seen = json.loads(await asyncio.wait_for(viewers.stdout.read(), args.seconds + 60))
        await viewers.wait()
        counts, received_for = seen["counts"], seen["last"] - started_at
        serve_cpu = cpu_seconds(process.pid) - serve_cpu
        p50, p99, worst = seen["latency"]
        viewers_cpu = seen["cpu"]
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
        print(
            f"CPU while lines were written and followed: serve {serve_cpu:.1f} s, "
            f"the viewers' process {viewers_cpu:.1f} s (from its start)"
        )
        figures = {
            "lines_per_second": written / wrote_for,
            "batch_p50": w50,
            "batch_p99": w99,
            "viewer_p50": p50,
            "viewer_p99": p99,
            "serve_cpu": serve_cpu,
        }
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
            figures |= {"centrifugo_p50": c50, "centrifugo_p99": c99, "dropped": dropped}
        await pool.close()
        return figures
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
