"""Polling helpers: wait for a state the system reaches on its own."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from pipeline.models import Deployment
from pipeline.states import Status
from pipeline.store import Store

# The longest a test waits for something the system does by itself: generous, for a loaded
# 2-core machine. A wait ends as soon as its condition holds, so passing tests never pay it;
# how fast things happen is measured in bench/, never asserted here.
PATIENCE = 120.0


async def wait_for_status(
    store: Store, deployment_id: int, *statuses: Status, timeout: float = PATIENCE
) -> Deployment:
    deadline = time.monotonic() + timeout
    while True:
        deployment = await store.get_deployment(deployment_id)
        if deployment.status in statuses:
            return deployment
        if time.monotonic() > deadline:
            raise AssertionError(
                f"deployment {deployment_id} is {deployment.status}, not {statuses} "
                f"after {timeout} s (error: {deployment.error})"
            )
        await asyncio.sleep(0.02)


FENCE = "test-fence"


async def queue_fence(database: str | asyncpg.Pool, channel: str) -> None:
    """NOTIFY `channel` with FENCE in a transaction of its own. PostgreSQL delivers a
    channel's notifications in commit order, so a listener that receives FENCE has received
    everything committed before: "nothing else was told" becomes a check, not a sleep."""
    if isinstance(database, str):
        connection = await asyncpg.connect(database)
        try:
            await connection.execute("SELECT pg_notify($1, $2)", channel, FENCE)
        finally:
            await connection.close()
    else:
        await database.execute("SELECT pg_notify($1, $2)", channel, FENCE)
