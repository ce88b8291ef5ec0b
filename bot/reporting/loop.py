"""The reporter loop: claim due outbox rows of one target (FOR UPDATE SKIP LOCKED, so
several serve processes share the work), send each, then mark it delivered or pending
again. A failed send backs off exponentially (or as long as the forge's Retry-After /
x-ratelimit-reset asks) and is given up after REPORT_MAX_ATTEMPTS; a build never waits
for it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import structlog

from pipeline.db.queries import q
from pipeline.settings import Settings

log = structlog.get_logger(__name__)

CLAIM_BATCH = 20
CLAIM_LEASE_SECONDS = 60.0
BACKOFF_MAX_SECONDS = 300.0


@dataclass(frozen=True)
class Sent:
    """Delivered (or nothing left to say)."""


@dataclass(frozen=True)
class Later:
    """Not now: throttled, or waiting for something; not a failure."""

    seconds: float
    reason: str


class Retry(Exception):
    """A send failed; try again after `seconds` (None: exponential backoff)."""

    def __init__(self, message: str, seconds: float | None = None) -> None:
        super().__init__(message)
        self.seconds = seconds


Outcome = Sent | Later
Send = Callable[[int], Awaitable[Outcome]]


def backoff(attempts: int) -> float:
    return float(min(2 ** max(attempts - 1, 0), BACKOFF_MAX_SECONDS))


async def deliver_due(pool: asyncpg.Pool, settings: Settings, target: str, send: Send) -> int:
    """One round: claim what is due and send it. Returns how many rows were handled."""
    rows = await pool.fetch(q("forge_outbox_claim"), target, CLAIM_BATCH, CLAIM_LEASE_SECONDS)
    await asyncio.gather(*(_handle(pool, settings, target, send, row) for row in rows))
    return len(rows)


async def _handle(
    pool: asyncpg.Pool, settings: Settings, target: str, send: Send, row: asyncpg.Record
) -> None:
    row_id, deployment_id, changes, attempts = (
        row["id"],
        row["deployment_id"],
        row["changes"],
        row["attempts"],
    )
    try:
        outcome = await send(deployment_id)
    except Exception as error:  # a report must never take the loop down
        message = f"{type(error).__name__}: {error}"[:500]
        if attempts >= settings.report_max_attempts:
            log.warning(
                "report given up", target=target, deployment_id=deployment_id, error=message
            )
            await pool.execute(q("forge_outbox_give_up"), row_id, message)
            return
        delay = error.seconds if isinstance(error, Retry) and error.seconds is not None else None
        delay = backoff(attempts) if delay is None else delay
        log.info(
            "report failed; retrying",
            target=target,
            deployment_id=deployment_id,
            error=message,
            in_seconds=round(delay, 1),
        )
        await pool.execute(q("forge_outbox_later"), row_id, delay, message, False)
        return
    if isinstance(outcome, Later):
        await pool.execute(q("forge_outbox_later"), row_id, outcome.seconds, None, True)
        return
    done = await pool.fetchval(q("forge_outbox_done"), row_id, changes)
    if done is None:
        # The deployment changed while we sent: send again once the throttle allows, or at
        # once when the change was its last (a final state is never throttled).
        final = await pool.fetchval(q("deployment_is_final"), deployment_id)
        delay = 0.0 if final else settings.report_throttle_seconds
        await pool.execute(q("forge_outbox_later"), row_id, delay, None, True)


async def run_reporter(
    pool: asyncpg.Pool, settings: Settings, target: str, send: Send, stop: asyncio.Event
) -> None:
    """Until `stop` is set: deliver what is due, then poll again after REPORT_POLL_SECONDS
    (at once when a full batch came back)."""
    while not stop.is_set():
        handled = 0
        try:
            handled = await deliver_due(pool, settings, target, send)
        except (
            OSError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,  # a connection ended by a PostgreSQL restart
        ) as error:
            log.warning("reporter cannot reach the database", target=target, error=str(error))
        if handled >= CLAIM_BATCH:
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.report_poll_seconds)
