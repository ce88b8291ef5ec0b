"""Following a deployment's log live, woken by NOTIFY and checked by a slow poll."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from bot import cli_format as fmt
from bot.runtime import Runtime
from pipeline.models import Deployment
from pipeline.queue.listener import Listener
from pipeline.queue.queue import LOGS_CHANNEL
from pipeline.states import Status

POLL_SECONDS = 1.0


def progress_line(deployment: Deployment) -> str:
    """`-- building (step 1 of 2: compiling)`: the state, and the progress while building."""
    line = f"-- {deployment.status}"
    if deployment.steps_total:
        line += f" (step {deployment.step} of {deployment.steps_total}"
        line += f": {deployment.progress_message})" if deployment.progress_message else ")"
    elif deployment.progress_message:
        line += f" ({deployment.progress_message})"
    return line


async def follow_logs(runtime: Runtime, deployment_id: int, echo: Callable[[str], None]) -> int:
    """Print lines as they arrive until the deployment is final; 0 if it succeeded."""
    deployment = await runtime.store.get_deployment(deployment_id)
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
                    echo(fmt.log_line(line))
                cursor = page.next_cursor or cursor
                if not page.items:
                    break
            state = (deployment.status, deployment.step, deployment.progress_message)
            if state != last_state:
                last_state = state
                if not deployment.status.is_final:
                    echo(progress_line(deployment))
            if deployment.status.is_final:
                echo(
                    f"-- deployment {deployment_id} {deployment.status}"
                    + (f": {deployment.error}" if deployment.error else "")
                    + (f" ({deployment.image})" if deployment.image else "")
                )
                return 0 if deployment.status == Status.SUCCEEDED else 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), POLL_SECONDS)
    finally:
        listener.stop()
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
