"""`click-deploy deploy --follow` and `logs --follow` as people see them: on a terminal (a
real pseudo-terminal) the live display, piped the plain lines. A real worker process runs
the deployments (the scripted pipeline: real states, steps and log lines in PostgreSQL)."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyte
import pytest

from pipeline.db.connect import create_pool
from pipeline.queue.queue import Queue
from pipeline.settings import Settings
from pipeline.store import NewService, Store
from tests.conftest import REPO_ROOT
from tests.support.waiting import PATIENCE


def environment(database_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(REPO_ROOT),
        "LOG_FORMAT": "json",
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
    }


@pytest.fixture
def worker(database_url: str, tmp_path: Path) -> Iterator[None]:
    """A worker process whose deployments take a few seconds and print three lines."""
    env = environment(database_url, tmp_path) | {
        "WORKER_PIPELINE": "tests.support.pipelines:scripted",
        "SCRIPTED_PIPELINE_SCRIPT": json.dumps({"sleep": 3, "lines": 3}),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "worker"],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield
    process.terminate()
    process.wait(30)


def add_service(database_url: str) -> int:
    async def add() -> int:
        pool = await create_pool(database_url, size=2)
        try:
            created = await Store(pool).create_service(
                NewService(name="web", repository="acme/web", provider="github")
            )
            return created.id
        finally:
            await pool.close()

    return asyncio.run(add())


def enqueue(database_url: str, service_id: int, script: dict[str, object]) -> int:
    async def queue() -> int:
        pool = await create_pool(database_url, size=2)
        try:
            settings = Settings(_env_file=None, database_url=database_url)  # type: ignore[call-arg]
            deployment = await Queue(pool, settings).enqueue(
                service_id, ref="main", trigger={"script": script}
            )
            return deployment.id
        finally:
            await pool.close()

    return asyncio.run(queue())


ROWS, COLUMNS = 30, 100


@dataclass(frozen=True)
class Screens:
    code: int
    raw: str
    seen: list[str]  # every distinct screen the terminal showed, in order

    @property
    def last(self) -> str:
        return self.seen[-1] if self.seen else ""


def on_a_terminal(args: list[str], env: dict[str, str]) -> Screens:
    """Run `click-deploy ARGS` on a pseudo-terminal and show what it writes on an emulated
    terminal of the same size (pyte): every screen it showed, and the last."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", *args],
        env=env | {"TERM": "xterm-256color"},
        cwd=REPO_ROOT,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        close_fds=True,
    )
    os.close(terminal)
    screen = pyte.Screen(COLUMNS, ROWS)
    stream = pyte.ByteStream(screen)
    raw = bytearray()
    seen: list[str] = []
    deadline = time.monotonic() + PATIENCE
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 1.0)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the command ended and closed the terminal
                break
            if not chunk:
                break
            raw += chunk
            stream.feed(chunk)
            shown = "\n".join(line.rstrip() for line in screen.display).rstrip()
            if not seen or seen[-1] != shown:
                seen.append(shown)
        code = process.wait(PATIENCE)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)
    return Screens(code, raw.decode("utf-8", "replace"), seen)


def test_deploy_follow_on_a_terminal_is_a_live_display(
    database_url: str, tmp_path: Path, worker: None
) -> None:
    add_service(database_url)
    shown = on_a_terminal(["deploy", "web", "--follow"], environment(database_url, tmp_path))
    assert shown.code == 0, shown.raw
    # While it builds: the state, step i of n with its name, the elapsed time, and the
    # current log line under it, redrawn in place.
    live = re.compile(r"^. building  step 1 of 2: compiling  \d+:\d\d\n  line 2$", re.MULTILINE)
    building = [screen for screen in shown.seen if live.search(screen)]
    assert building, "\n----\n".join(shown.seen)
    assert len(shown.seen) > 4  # redrawn: the spinner and the clock move
    # At the end: the finished steps and the outcome, with how long it took; the live
    # region is gone.
    lines = shown.last.splitlines()
    assert lines[0] == "queued deployment 1 of web (production)"
    assert lines[1] == "✓ cloning", shown.last
    assert "✓ building  step 1 of 2: compiling" in lines, shown.last
    # Step 2 is drawn under building, pushing or both: the worker writes the move to pushing
    # and the step's progress together or one after the other (DESIGN.md: coalesced moves).
    step = re.compile(r"✓ (building|pushing)  step [12] of 2: (compiling|pushing)")
    # After the outcome, deploy prints how to start the image (bot/local_engine.py).
    [end] = [i for i, line in enumerate(lines) if line.startswith("✓ deployment 1 succeeded")]
    assert all(step.fullmatch(line) for line in lines[2:end]), shown.last
    assert 2 <= len(lines[2:end]) <= 3, shown.last
    assert re.fullmatch(r"✓ deployment 1 succeeded \(registry.test/web:1\) in \d+:\d\d", lines[end])
    assert lines[end + 1 :] and lines[end + 1] == "-- start it with:", shown.last


def test_a_failure_on_a_terminal_shows_the_end_of_the_log(
    database_url: str, tmp_path: Path, worker: None
) -> None:
    service = add_service(database_url)
    deployment = enqueue(database_url, service, {"fail": "permanent", "sleep": 1, "lines": 2})
    args = ["logs", str(deployment), "--follow"]
    shown = on_a_terminal(args, environment(database_url, tmp_path))
    assert shown.code == 1, shown.raw
    lines = shown.last.splitlines()
    assert "✗ building  step 1 of 2: compiling" in lines, shown.last
    # The log's last lines again, above the outcome: the reason is on the screen.
    logged = [re.sub(r"^\d\d:\d\d:\d\d ", "", line) for line in lines[-6:-2]]
    assert logged == [
        "building main",
        "line 0",
        "line 1",
        "» RUN make failed with exit code 3",
    ], shown.last
    assert re.fullmatch(
        rf"✗ deployment {deployment} failed: RUN make failed with exit code 3 in \d+:\d\d",
        lines[-2],
    ), shown.last
    assert lines[-1] == f"full log: click-deploy logs {deployment}"


def test_piped_output_is_the_plain_lines(database_url: str, tmp_path: Path, worker: None) -> None:
    service = add_service(database_url)
    deployment = enqueue(database_url, service, {"sleep": 1, "lines": 2})
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "logs", str(deployment), "--follow"],
        env=environment(database_url, tmp_path) | {"TERM": "xterm-256color"},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\x1b" not in result.stdout
    lines = result.stdout.splitlines()
    stamped = re.compile(r"^\d\d:\d\d:\d\d ")
    logged = [stamped.sub("", line) for line in lines if stamped.match(line)]
    logged = [line for line in logged if not line.startswith("» ")]  # the worker's own
    assert logged == ["building main", "line 0", "line 1"], result.stdout
    states = [line for line in lines if line.startswith("-- ")]
    assert "-- building (step 1 of 2: compiling)" in states
    assert states[-1] == f"-- deployment {deployment} succeeded (registry.test/web:{deployment})"
