"""Following a deployment's log live, woken by NOTIFY and checked by a slow poll.

What is read goes to a display. On a terminal, `LiveDisplay` (rich) keeps one live region:
the state, step i of n and its name, the elapsed time and the current log line, with each
finished step printed above it. Anywhere else (a pipe, a file, TERM=dumb), `PlainDisplay`
prints every log line and every change of state as plain lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Protocol

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.control import strip_control_codes
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from bot import cli_format as fmt
from bot.runtime import Runtime
from pipeline.models import Deployment, LogLine
from pipeline.queue.listener import Listener
from pipeline.queue.queue import LOGS_CHANNEL
from pipeline.states import FINAL, Status

POLL_SECONDS = 1.0
FAILURE_TAIL_LINES = 15  # log lines shown again under a failed deployment's summary


def progress_line(deployment: Deployment) -> str:
    """`-- building (step 1 of 2: compiling)`: the state, and the progress while building."""
    line = f"-- {deployment.status}"
    if deployment.steps_total:
        line += f" (step {deployment.step} of {deployment.steps_total}"
        line += f": {deployment.progress_message})" if deployment.progress_message else ")"
    elif deployment.progress_message:
        line += f" ({deployment.progress_message})"
    return line


def final_line(deployment: Deployment) -> str:
    return (
        f"deployment {deployment.id} {deployment.status}"
        + (f": {deployment.error}" if deployment.error else "")
        + (f" ({deployment.image})" if deployment.image else "")
    )


class Display(Protocol):
    def log(self, line: LogLine) -> None: ...

    def state(self, deployment: Deployment) -> None:
        """The deployment's state, step or progress message changed (or was first read)."""

    def finish(self, deployment: Deployment) -> None:
        """The deployment reached a final state."""


class PlainDisplay:
    """Plain lines, for pipes and files: each log line, each state, the outcome."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo

    def log(self, line: LogLine) -> None:
        self.echo(fmt.log_line(line))

    def state(self, deployment: Deployment) -> None:
        if not deployment.status.is_final:
            self.echo(progress_line(deployment))

    def finish(self, deployment: Deployment) -> None:
        self.echo(f"-- {final_line(deployment)}")


def elapsed(since: datetime | None, until: datetime | None = None) -> str:
    """`1:02` (minutes:seconds) or `1:02:03`."""
    if since is None:
        return "0:00"
    end = until or datetime.now(UTC)
    seconds = max(0, round((end - since).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def step_text(deployment: Deployment) -> str:
    """`step 1 of 2: compiling`, or just the progress message, or nothing."""
    if deployment.steps_total:
        text = f"step {deployment.step} of {deployment.steps_total}"
        return f"{text}: {deployment.progress_message}" if deployment.progress_message else text
    return deployment.progress_message or ""


class LiveDisplay:
    """A rich live region on the terminal; finished steps and the outcome stay above it."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.deployment: Deployment | None = None
        self.current: LogLine | None = None
        self.tail: deque[LogLine] = deque(maxlen=FAILURE_TAIL_LINES)
        self.spinner = Spinner("dots", style="cyan")
        self.live = Live(self, console=console, refresh_per_second=4, transient=True)

    @contextlib.contextmanager
    def running(self) -> Iterator[LiveDisplay]:
        with self.live:
            yield self

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """Drawn at every refresh, so the elapsed time moves between events too."""
        deployment = self.deployment
        if deployment is None:
            return
        header = Text(str(deployment.status), style="bold")
        step = step_text(deployment)
        if step:
            header.append(f"  {step}")
        since = deployment.started_at or deployment.created_at
        header.append(f"  {elapsed(since)}", style="dim")
        self.spinner.text = header
        lines: list[Spinner | Text] = [self.spinner]
        if self.current is not None:
            lines.append(
                Text(
                    "  " + strip_control_codes(self.current.line),
                    style="dim",
                    no_wrap=True,
                    overflow="ellipsis",
                )
            )
        yield Group(*lines)

    def log(self, line: LogLine) -> None:
        self.current = line
        self.tail.append(line)

    def state(self, deployment: Deployment) -> None:
        before = self.deployment
        self.deployment = deployment
        if before is None:
            return
        # A new state, or the next step of this one (the first step of a state only says
        # what the state is doing: nothing ended).
        moved = before.status != deployment.status or (
            before.step is not None and before.step != deployment.step
        )
        if moved and before.status not in (Status.QUEUED, *FINAL):
            # The step (or state) before is over: it stays on the screen, marked as it ended.
            ended_well = not deployment.status.is_final or deployment.status == Status.SUCCEEDED
            done = Text("✓ " if ended_well else "✗ ", style="green" if ended_well else "red")
            done.append(str(before.status))
            if step_text(before):
                done.append(f"  {step_text(before)}")
            self.console.print(done)

    def finish(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.live.stop()  # the live region goes; what follows stays
        since = deployment.started_at or deployment.created_at
        took = elapsed(since, deployment.finished_at)
        succeeded = deployment.status == Status.SUCCEEDED
        if not succeeded and self.tail:
            for line in self.tail:
                self.console.print(Text(strip_control_codes(fmt.log_line(line)), style="dim"))
        mark = Text("✓ " if succeeded else "✗ ", style="green" if succeeded else "red")
        mark.append(f"{final_line(deployment)} in {took}")
        self.console.print(mark)
        if not succeeded:
            self.console.print(Text(f"full log: click-deploy logs {deployment.id}", style="dim"))


def on_a_terminal() -> bool:
    """The live display needs a terminal that can move the cursor."""
    return sys.stdout.isatty() and os.environ.get("TERM", "") != "dumb"


async def follow_logs(
    runtime: Runtime,
    deployment_id: int,
    echo: Callable[[str], None],
    *,
    live: bool | None = None,
) -> int:
    """Show lines as they arrive until the deployment is final; 0 if it succeeded. `live`
    None: the live display on a terminal, plain lines through `echo` elsewhere."""
    await runtime.store.get_deployment(deployment_id)  # no such deployment: one line, at once
    if live if live is not None else on_a_terminal():
        display = LiveDisplay(Console(highlight=False, markup=False, emoji=False))
        with display.running():
            return await _follow(runtime, deployment_id, display)
    return await _follow(runtime, deployment_id, PlainDisplay(echo))


async def _follow(runtime: Runtime, deployment_id: int, display: Display) -> int:
    wake = asyncio.Event()
    prefix = f"{deployment_id}:"

    def on_logs(payload: str) -> None:
        if payload.startswith(prefix):
            wake.set()

    listener = Listener(runtime.url, {LOGS_CHANNEL: on_logs}, on_connect=wake.set)
    listening = asyncio.create_task(listener.run())
    cursor = 0
    last_state: tuple[Status, int | None, str | None] | None = None
    try:
        while True:
            wake.clear()
            deployment = await runtime.store.get_deployment(deployment_id)
            while True:
                page = await runtime.store.read_logs(deployment_id, after=cursor)
                for line in page.items:
                    display.log(line)
                cursor = page.next_cursor or cursor
                if not page.items:
                    break
            state = (deployment.status, deployment.step, deployment.progress_message)
            if state != last_state:
                last_state = state
                display.state(deployment)
            if deployment.status.is_final:
                display.finish(deployment)
                return 0 if deployment.status == Status.SUCCEEDED else 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), POLL_SECONDS)
    finally:
        listener.stop()
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
