"""The pipeline interface: what a worker hands a claimed deployment to.

A pipeline gets a `Job`, moves it through the build states with `enter`, reports progress
and log lines, and returns a `BuildResult`. It signals failure by raising
`DeploymentFailure` (final) or `TransientError` (retried); the worker cancels it through
ordinary asyncio cancellation, so every step must be cancellable.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from pipeline.errors import ConfigError, DeploymentFailure
from pipeline.models import Deployment
from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import LogEntry, Store

# Flush buffered log lines at least this often, or when this many are waiting.
LOG_FLUSH_SECONDS = 0.2
LOG_FLUSH_LINES = 500


@dataclass(frozen=True)
class BuildResult:
    image: str | None = None


class Job:
    """One run of one deployment, as the pipeline sees it."""

    def __init__(self, store: Store, deployment: Deployment, lease_token: UUID) -> None:
        self.store = store
        self.deployment = deployment
        self.lease_token = lease_token
        self.status = deployment.status
        self._buffer: list[LogEntry] = []
        self._next_seq = 1
        self._flushed = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        # A retry goes on numbering after the lines of the earlier attempts.
        self._next_seq = await self.store.last_log_seq(self.deployment.id) + 1
        self._flusher = asyncio.create_task(self._flush_periodically())

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()

    async def enter(self, status: Status) -> None:
        """Move to the next build state (cloning → building → pushing)."""
        await self.flush()
        self.deployment = await self.store.set_status(
            self.deployment.id, status, lease_token=self.lease_token
        )
        self.status = status

    async def progress(self, step: int | None, total: int | None, message: str | None) -> None:
        await self.store.set_progress(
            self.deployment.id, step, total, message, lease_token=self.lease_token
        )

    def log(self, line: str, stream: str = "stdout") -> None:
        """Buffer one line of output; written in batches."""
        self._buffer.append(LogEntry(line=line, stream=stream))
        if len(self._buffer) >= LOG_FLUSH_LINES:
            self._flushed.set()

    async def flush(self) -> None:
        async with self._lock:
            while self._buffer:
                batch, self._buffer = self._buffer[:LOG_FLUSH_LINES], self._buffer[LOG_FLUSH_LINES:]
                self._next_seq = await self.store.append_logs(
                    self.deployment.id, self._next_seq, batch
                )

    async def _flush_periodically(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._flushed.wait(), LOG_FLUSH_SECONDS)
            self._flushed.clear()
            await self.flush()


class Pipeline(Protocol):
    async def run(self, job: Job) -> BuildResult: ...


class NoBuildPipeline:
    """Stands in until the build pipeline is configured: fails every deployment with a
    message that says so, instead of pretending to build."""

    async def run(self, job: Job) -> BuildResult:
        raise DeploymentFailure(
            "this click-deploy has no build pipeline configured (WORKER_PIPELINE)"
        )


def default_pipeline(settings: Settings) -> Pipeline:
    return NoBuildPipeline()


def load_pipeline(settings: Settings) -> Pipeline:
    """The pipeline named by WORKER_PIPELINE ("module:factory"; the factory takes Settings)."""
    module_name, _, attribute = settings.worker_pipeline.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise ConfigError(
            f"WORKER_PIPELINE: cannot load {settings.worker_pipeline!r} ({error})"
        ) from None
    pipeline: Pipeline = factory(settings)
    return pipeline
