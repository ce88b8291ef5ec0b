"""Webhook benchmark: signed GitHub push deliveries per second into persisted deployments.

Run:  .venv/bin/python bench/webhooks.py [--seconds 10] [--senders 16] [--json PATH]
      [--database-url URL] [--profile PATH]

Three phases, each in a fresh server process on a free loopback port, driven by this
process over keep-alive HTTP/1.1 connections (one per sender; a sender sends its next
delivery as soon as the previous one is answered):

bare
    an aiohttp app whose one handler reads the body, verifies X-Hub-Signature-256 with
    gidgethub's sans-I/O ``validate_event`` and answers 200: the ceiling of this harness on
    this machine.
real, distinct targets
    click-deploy's GitHub feature exactly as ``click-deploy serve`` mounts it
    (``bot.github.setup.setup`` on an aiohttp app, a pool of DATABASE_POOL_SIZE, access log
    off) against a fresh database (``cd_bench_hooks_<hex>``, migrations applied, dropped WITH
    (FORCE) at the end). Every delivery is GitHub's example push (``@octokit/webhooks-
    examples``, refs/heads/master, ~8 KB) to its own repository with its own service, so
    each one queues a deployment of a target nobody else touches.
real, shared targets
    the same server, pushes spread over 8 services (8 repositories): each delivery
    supersedes the deployment the previous push to that service queued.

Every delivery has its own X-GitHub-Delivery. Latency is from writing the request to
reading the whole answer, measured in this (client) process. Afterwards the database is
asked, for every acknowledged (200) delivery, for its row in webhook_deliveries and the
deployments the answer named: all must be there.

Workers are not started (no builds; the deployments stay queued or superseded), nor the
reporter (no App credentials), and LOG_LEVEL is warning in the server, as in the other
benchmarks. ``--profile PATH`` runs the real server under pyinstrument and writes its
HTML report there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import platform
import secrets
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parent.parent
sys.path.insert(0, str(ROOT))
# --server-root: the real server runs another checkout's code (a before/after comparison).
if os.environ.get("CD_BENCH_SERVER_ROOT"):
    sys.path.insert(0, os.environ["CD_BENCH_SERVER_ROOT"])

import asyncpg  # noqa: E402

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SECRET = "bench-webhook-secret"
EXAMPLES = Path(
    "/var/cache/cd-npm/octokit-webhooks-examples-7.6.1/package/api.github.com/index.json"
)
SHARED_SERVICES = 8
WARMUP_SECONDS = 1.0


class BenchError(RuntimeError):
    """The benchmark could not measure what it set out to."""


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- the servers (run in a child process) --------------------------------------------------


async def serve_bare(port: int) -> None:
    from aiohttp import web
    from gidgethub import ValidationFailure, sansio

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            sansio.validate_event(
                body, signature=request.headers.get("X-Hub-Signature-256", ""), secret=SECRET
            )
        except ValidationFailure:
            return web.json_response({"message": "signature does not match"}, status=401)
        return web.json_response({"message": "ok"})

    app = web.Application()
    app.router.add_post("/webhooks/github", handler)
    await _run_app(app, port)


async def serve_real(port: int) -> None:
    from aiohttp import web
    from pydantic import SecretStr

    from bot.github.setup import setup as github_setup
    from bot.runtime import open_runtime
    from pipeline.settings import Settings

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, github_webhook_secret=SecretStr(SECRET), log_level="warning"
    )
    async with open_runtime(settings) as runtime:
        app = web.Application()
        github_setup(app, runtime)
        await _run_app(app, port)


async def _run_app(app: Any, port: int) -> None:
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await runner.cleanup()


def server_main(kind: str, port: int, profile: str | None) -> int:
    coroutine = serve_bare(port) if kind == "bare" else serve_real(port)
    if profile is None:
        asyncio.run(coroutine)
        return 0
    from pyinstrument import Profiler

    profiler = Profiler(async_mode="disabled", interval=0.0005)
    profiler.start()
    try:
        asyncio.run(coroutine)
    finally:
        profiler.stop()
        Path(profile).write_text(profiler.output_html(), encoding="utf-8")
        Path(profile).with_suffix(".txt").write_text(
            profiler.output_text(unicode=True, show_all=False), encoding="utf-8"
        )
    return 0


@contextlib.asynccontextmanager
async def server_process(
    kind: str, database_url: str | None, profile: Path | None = None, root: Path | None = None
) -> AsyncIterator[tuple[int, int]]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "warning"}
    if root is not None:
        env["CD_BENCH_SERVER_ROOT"] = str(root)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    args = [sys.executable, str(SCRIPT), "--serve", kind, "--port", str(port)]
    if profile is not None:
        args += ["--profile", str(profile)]
    process = await asyncio.create_subprocess_exec(
        *args, env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        if line.strip() != b"ready":
            raise BenchError(f"the {kind} server did not start")
        yield port, process.pid
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), 60)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU the processes used so far (from /proc; same machine)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


async def backend_pids(url: str | None) -> list[int]:
    """The PostgreSQL backends serving the benchmark database (the server's pool)."""
    if url is None:
        return []
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
    finally:
        await connection.close()
    return [row["pid"] for row in rows]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the load -----------------------------------------------------------------------------


class Payloads:
    """GitHub's example push, serialized once with placeholders; each delivery fills in its
    repository and commit and is signed."""

    def __init__(self) -> None:
        data = json.loads(EXAMPLES.read_text(encoding="utf-8"))
        push = next(item for item in data if item["name"] == "push")["examples"][4]
        assert push["ref"] == "refs/heads/master" and push["installation"]["id"]
        push["after"] = "@@SHA@@"
        push["repository"]["full_name"] = "acme/@@REPO@@"
        push["repository"]["name"] = "@@REPO@@"
        self.template = json.dumps(push).encode()
        self.size = len(self.template)

    def request(self, port: int, repo: str, number: int) -> tuple[str, bytes]:
        sha = hashlib.sha1(f"{repo}:{number}".encode()).hexdigest()
        body = self.template.replace(b"@@SHA@@", sha.encode()).replace(b"@@REPO@@", repo.encode())
        signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        delivery = f"bench-{secrets.token_hex(8)}-{number}"
        head = (
            f"POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "User-Agent: GitHub-Hookshot/bench\r\nContent-Type: application/json\r\n"
            f"X-GitHub-Event: push\r\nX-GitHub-Delivery: {delivery}\r\n"
            f"X-GitHub-Hook-ID: 1\r\nX-Hub-Signature-256: sha256={signature}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return delivery, head.encode() + body


@dataclass
class Phase:
    name: str
    seconds: float
    senders: int
    sent: int = 0
    acknowledged: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    server_cpu: float = 0.0
    database_cpu: float = 0.0
    client_cpu: float = 0.0
    answers: dict[str, list[int]] = field(default_factory=dict)  # delivery -> deployment ids


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        key, _, value = line.partition(":")
        if key.lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def drive(
    port: int, payloads: Payloads, repos: list[str], phase: Phase, *, keep: bool
) -> None:
    """`phase.senders` connections, each sending back to back until the phase ends."""
    counter = iter(range(10**9))
    deadline = time.perf_counter() + phase.seconds

    async def sender() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                number = next(counter)
                delivery, request = payloads.request(port, repos[number % len(repos)], number)
                started = time.perf_counter()
                status, body = await _exchange(reader, writer, request)
                elapsed = time.perf_counter() - started
                phase.sent += 1
                phase.statuses[status] = phase.statuses.get(status, 0) + 1
                if not keep:
                    continue
                phase.latencies.append(elapsed)
                if status == 200:
                    phase.acknowledged += 1
                    answer = json.loads(body)
                    phase.answers[delivery] = list(answer.get("deployments", [0]))
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    await asyncio.gather(*(sender() for _ in range(phase.senders)))


async def run_phase(
    server: tuple[int, int],
    url: str | None,
    payloads: Payloads,
    repos: list[str],
    name: str,
    options: Options,
) -> Phase:
    port, pid = server
    warmup = Phase(name, WARMUP_SECONDS, options.senders)
    await drive(port, payloads, repos[::-1], warmup, keep=False)
    backends = await backend_pids(url)
    phase = Phase(name, options.seconds, options.senders)
    cpu = (time.process_time(), cpu_seconds([pid]), cpu_seconds(backends))
    started = time.perf_counter()
    await drive(port, payloads, repos, phase, keep=True)
    phase.seconds = time.perf_counter() - started
    phase.client_cpu = time.process_time() - cpu[0]
    phase.server_cpu = cpu_seconds([pid]) - cpu[1]
    phase.database_cpu = cpu_seconds(backends) - cpu[2]
    progress(
        f"{name}: {phase.sent} deliveries in {phase.seconds:.1f} s "
        f"({phase.sent / phase.seconds:,.0f}/s), statuses {phase.statuses}, CPU s: "
        f"client {phase.client_cpu:.1f}, server {phase.server_cpu:.1f}, "
        f"database backends {phase.database_cpu:.1f}; load {os.getloadavg()[0]:.1f}"
    )
    return phase


# --- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    name: str
    deliveries: int
    seconds: float
    per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_us: float
    database_cpu_us: float
    client_cpu_us: float
    statuses: dict[int, int]
    verified: str

    @classmethod
    def of(cls, phase: Phase, verified: str) -> Result:
        ms = [value * 1000 for value in phase.latencies]
        cuts = statistics.quantiles(ms, n=100, method="inclusive")
        return cls(
            name=phase.name,
            deliveries=phase.sent,
            seconds=round(phase.seconds, 2),
            per_second=round(phase.sent / phase.seconds, 1),
            p50_ms=round(cuts[49], 2),
            p99_ms=round(cuts[98], 2),
            max_ms=round(max(ms), 2),
            server_cpu_us=round(phase.server_cpu / phase.sent * 1e6),
            database_cpu_us=round(phase.database_cpu / phase.sent * 1e6),
            client_cpu_us=round(phase.client_cpu / phase.sent * 1e6),
            statuses=dict(phase.statuses),
            verified=verified,
        )


async def verify(url: str, phase: Phase) -> str:
    """Every acknowledged delivery is stored with the deployments its answer named."""
    if phase.acknowledged != phase.sent:
        raise BenchError(f"{phase.name}: not every delivery was acknowledged: {phase.statuses}")
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT delivery_id, deployment_ids FROM webhook_deliveries "
            "WHERE source = 'github' AND delivery_id = ANY($1::text[])",
            list(phase.answers),
        )
        stored = {row["delivery_id"]: list(row["deployment_ids"] or []) for row in rows}
        named = [i for ids in phase.answers.values() for i in ids]
        found = await connection.fetchval(
            "SELECT count(*) FROM deployments WHERE id = ANY($1::bigint[])", named
        )
        superseded = await connection.fetchval(
            "SELECT count(*) FROM deployments WHERE id = ANY($1::bigint[]) "
            "AND status = 'superseded'",
            named,
        )
    finally:
        await connection.close()
    missing = [d for d in phase.answers if d not in stored]
    mismatched = [d for d, ids in phase.answers.items() if stored.get(d, ids) != ids]
    empty = [d for d, ids in phase.answers.items() if len(ids) != 1]
    if missing or mismatched or empty or found != len(named):
        raise BenchError(
            f"{phase.name}: {len(missing)} acknowledged deliveries not stored, "
            f"{len(mismatched)} with other deployments, {len(empty)} without exactly one, "
            f"{len(named) - found} deployments missing"
        )
    return (
        f"{len(phase.answers)} of {len(phase.answers)} acknowledged deliveries stored, each "
        f"with its deployment ({superseded} of them superseded by a later push)"
    )


# --- set-up -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    database_url: str
    seconds: float
    senders: int
    distinct_services: int
    json_path: Path | None
    profile: Path | None
    server_root: Path | None


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@contextlib.asynccontextmanager
async def temporary_database(server_url: str) -> AsyncIterator[str]:
    name = f"cd_bench_hooks_{secrets.token_hex(4)}"
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


async def prepare(url: str, distinct: int) -> tuple[list[str], list[str]]:
    """Migrations, then one service per repository: `distinct` for the distinct-target
    phase (more than it can send) and SHARED_SERVICES for the shared one."""
    from pipeline.db.migrate import migrate

    connection = await asyncpg.connect(url)
    try:
        await migrate(connection)
        await connection.execute(
            "INSERT INTO services (name, provider, repository, branch) "
            "SELECT 'app-' || i, 'github', 'acme/app-' || i, 'master' "
            "FROM generate_series(0, $1 - 1) AS i",
            distinct + SHARED_SERVICES,
        )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    names = [f"app-{i}" for i in range(distinct + SHARED_SERVICES)]
    return names[SHARED_SERVICES:], names[:SHARED_SERVICES]


async def environment(server_url: str) -> dict[str, Any]:
    connection = await asyncpg.connect(server_url)
    try:
        version = await connection.fetchval("SHOW server_version")
        synchronous_commit = await connection.fetchval("SHOW synchronous_commit")
    finally:
        await connection.close()
    return {
        "postgresql": version,
        "synchronous_commit": synchronous_commit,
        "python": platform.python_version(),
        "aiohttp": metadata.version("aiohttp"),
        "asyncpg": metadata.version("asyncpg"),
        "gidgethub": metadata.version("gidgethub"),
        "cpus": os.cpu_count(),
        "load": os.getloadavg()[0],
    }


def table(results: list[Result]) -> str:
    lines = [
        "| handler | deliveries/s | ack p50 (ms) | ack p99 (ms) | max (ms) | deliveries "
        "| server CPU µs/delivery | PostgreSQL backends CPU µs/delivery |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.per_second:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
            f"{r.max_ms:.1f} | {r.deliveries:,} | {r.server_cpu_us:,.0f} | "
            f"{r.database_cpu_us:,.0f} |"
        )
    return "\n".join(lines)


async def run(options: Options) -> dict[str, Any]:
    env = await environment(options.database_url)
    payloads = Payloads()
    results: list[Result] = []
    async with server_process("bare", None) as server:
        phase = await run_phase(
            server, None, payloads, ["bare"], "bare aiohttp + signature", options
        )
        results.append(Result.of(phase, "–"))
    async with temporary_database(options.database_url) as url:
        distinct, shared = await prepare(url, options.distinct_services)
        async with server_process("real", url, options.profile, options.server_root) as server:
            # Warm-up pushes use the end of the list, the timed phase the start.
            phase = await run_phase(
                server, url, payloads, distinct, "click-deploy, distinct targets", options
            )
            if phase.sent + 10_000 > len(distinct):
                raise BenchError("more deliveries than services: raise --distinct-services")
            results.append(Result.of(phase, await verify(url, phase)))
            phase = await run_phase(
                server, url, payloads, shared, "click-deploy, 8 shared targets", options
            )
            results.append(Result.of(phase, await verify(url, phase)))
    print(table(results))
    for result in results:
        print(f"- {result.name}: {result.verified}")
    return {
        "environment": env,
        "options": {
            "seconds": options.seconds,
            "senders": options.senders,
            "payload_bytes": payloads.size,
        },
        "results": [asdict(result) for result in results],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase")
    parser.add_argument("--senders", type=int, default=16, help="concurrent connections")
    parser.add_argument("--distinct-services", type=int, default=60_000)
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--profile", type=Path, default=None, help="pyinstrument HTML report")
    parser.add_argument(
        "--server-root", type=Path, default=None, help="run the real server from this checkout"
    )
    parser.add_argument("--serve", choices=("bare", "real"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        profile = str(args.profile) if args.profile is not None else None
        return server_main(args.serve, args.port, profile)
    options = Options(
        database_url=args.database_url,
        seconds=args.seconds,
        senders=args.senders,
        distinct_services=args.distinct_services,
        json_path=args.json,
        profile=args.profile,
        server_root=args.server_root,
    )
    try:
        results = asyncio.run(run(options))
    except BenchError as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 1
    text = json.dumps(results, indent=2)
    if options.json_path is not None:
        options.json_path.write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
