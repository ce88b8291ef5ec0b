"""Bursts of signed GitHub push deliveries against a real `click-deploy serve` process, sent
as GitHub sends them: a delivery that is not acknowledged (a connection error or a 5xx) is
sent again with the same X-GitHub-Delivery until it is, or until a deadline.

Also: the environment of a bot process with the GitHub App configured (webhook secret, App
key, the fake GitHub as its API), and processes whose output goes to a file (a pipe nobody
reads fills up and stops a chatty process)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import REPO_ROOT
from tests.support.github_hooks import SECRET, example, private_key_pem, signed
from tests.test_processes import CLI, worker_env

INSTALLATION = {"id": 42}
OK = range(200, 300)


def bot_env(database_url: str, data_dir: Path, github_api_url: str, **extra: str) -> dict[str, str]:
    """A `serve`/`worker` process's environment: the scripted pipeline and short queue
    timings (tests.test_processes.worker_env), and the GitHub App as a real install has it."""
    return worker_env(
        database_url,
        data_dir,
        GITHUB_WEBHOOK_SECRET=SECRET,
        GITHUB_APP_ID="1234",
        GITHUB_PRIVATE_KEY=private_key_pem(),
        GITHUB_API_URL=github_api_url,
        PUBLIC_URL="https://deploy.example.com",
        **extra,
    )


def spawn_logged(
    processes: list[subprocess.Popen[bytes]], env: dict[str, str], log: Path, *args: str
) -> subprocess.Popen[bytes]:
    """A `click-deploy` process (stopped by the `processes` fixture) writing to `log`."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*CLI, *args],
            env=env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    processes.append(process)
    return process


def outputs(directory: Path) -> dict[str, str]:
    """What each process wrote (`spawn_logged`'s *.log files in `directory`), by file name."""
    return {log.name: log.read_text(errors="replace") for log in directory.glob("*.log")}


def push_payload(examples_path: Path, repository: str, branch: str, commit: str) -> dict[str, Any]:
    """GitHub's example push, moved to `repository` and `branch` at `commit`."""
    payload = example(examples_path, "push", 4, installation=INSTALLATION)
    owner, name = repository.split("/")
    payload["repository"].update(full_name=repository, name=name)
    payload["repository"]["owner"].update(login=owner, name=owner)
    payload.update(ref=f"refs/heads/{branch}", after=commit, deleted=False)
    if isinstance(payload.get("head_commit"), dict):
        payload["head_commit"].update(id=commit, message="a change")
    return payload


@dataclass
class Attempt:
    """One send of a delivery: the answer, or the connection error (status None)."""

    status: int | None
    content_type: str
    body: str
    error: str | None = None


@dataclass
class Delivery:
    id: str
    repository: str
    commit: str
    body: bytes
    headers: dict[str, str]
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def acknowledged(self) -> Attempt | None:
        last = self.attempts[-1] if self.attempts else None
        return last if last is not None and last.status in OK else None


def push_delivery(examples_path: Path, repository: str, branch: str = "main") -> Delivery:
    commit = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    delivery_id = str(uuid.uuid4())
    body, headers = signed(
        "push", push_payload(examples_path, repository, branch, commit), delivery=delivery_id
    )
    return Delivery(delivery_id, repository, commit, body, headers)


class Sender:
    """Sends deliveries to `url` as GitHub does, each until acknowledged or `deadline`
    (time.monotonic()), waiting a little longer after each refusal."""

    def __init__(self, session: aiohttp.ClientSession, url: str, deadline: float) -> None:
        self.session = session
        self.url = url
        self.deadline = deadline

    async def send(self, delivery: Delivery) -> None:
        pause = 0.05
        while True:
            attempt = await self._once(delivery)
            delivery.attempts.append(attempt)
            if attempt.status in OK:
                return
            if attempt.status is not None and attempt.status < 500:
                return  # refused for good (4xx): GitHub does not send it again either
            if time.monotonic() + pause > self.deadline:
                return
            await asyncio.sleep(pause)  # pacing between sends, as GitHub's redelivery
            pause = min(pause * 2, 0.5)

    async def _once(self, delivery: Delivery) -> Attempt:
        try:
            async with self.session.post(
                self.url, data=delivery.body, headers=delivery.headers
            ) as response:
                body = await response.text()
                return Attempt(response.status, response.content_type, body)
        except (aiohttp.ClientError, TimeoutError) as error:
            return Attempt(None, "", "", f"{type(error).__name__}: {error}")

    async def send_all(self, deliveries: Iterable[Delivery], concurrency: int) -> None:
        """Every delivery, `concurrency` at a time (each sender its own connection)."""
        waiting: asyncio.Queue[Delivery] = asyncio.Queue()
        for delivery in deliveries:
            waiting.put_nowait(delivery)

        async def one_sender() -> None:
            while not waiting.empty():
                await self.send(waiting.get_nowait())

        await asyncio.gather(*(one_sender() for _ in range(concurrency)))


async def wait_listening(session: aiohttp.ClientSession, port: int, timeout: float = 30) -> None:
    """Until serve's /healthz answers and its worker's LISTEN connection is up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                if response.status == 200 and (await response.json())["listening"]:
                    return
        except aiohttp.ClientConnectionError:
            pass
        assert time.monotonic() < deadline, f"serve on {port} did not come up"
        await asyncio.sleep(0.05)


async def stop_processes(processes: Iterable[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    """SIGTERM each, then wait for all to exit 0 without blocking the event loop (the fake
    GitHub they report to runs on it)."""
    stopping = list(processes)
    for process in stopping:
        assert process.poll() is None, f"process {process.pid} died before the end"
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(process.poll() is None for process in stopping):
        assert time.monotonic() < deadline, "a process did not stop after SIGTERM"
        await asyncio.sleep(0.05)
    assert [process.returncode for process in stopping] == [0] * len(stopping)


@dataclass
class Readiness:
    """/readyz, asked all along: every answer's status, in order."""

    statuses: list[int] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)

    async def watch(self, session: aiohttp.ClientSession, port: int) -> None:
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                    self.statuses.append(response.status)
                    self.bodies.append(await response.text())
            except aiohttp.ClientError as error:  # recorded: the test fails on it
                self.statuses.append(0)
                self.bodies.append(repr(error))
            await asyncio.sleep(0.05)

    def recovered(self) -> bool:
        """503 seen, and 200 after it."""
        return 503 in self.statuses and self.statuses[-1] == 200


async def until(
    condition: Callable[[], bool | Awaitable[bool]], message: str, deadline: float
) -> None:
    """Wait for `condition()` (sync or async) to be true, failing at `deadline`."""
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, message
        await asyncio.sleep(0.05)


def worker_pids(log_lines: Iterable[str]) -> set[int]:
    """The processes that ran deployments, from the first line of each run:
    "attempt N of M on worker HOST:PID:SUFFIX"."""
    pids = set()
    for line in log_lines:
        if line.startswith("attempt ") and " on worker " in line:
            pids.add(int(line.split(" on worker ", 1)[1].rsplit(":", 2)[1]))
    return pids
