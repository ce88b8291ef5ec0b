"""The reporters' outbox loop (bot/reporting/loop.py) against real PostgreSQL."""

from __future__ import annotations

import asyncpg

from bot.reporting.loop import Sent, deliver_due
from pipeline.queue.queue import Queue
from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import Store

ANSWER = {"answer": {"github": {"installation_id": 1, "repo": "acme/web", "head_sha": "a" * 40}}}


async def seconds_until_due(pool: asyncpg.Pool, deployment_id: int) -> float:
    return float(
        await pool.fetchval(
            "SELECT extract(epoch FROM available_at - now()) FROM outbox "
            "WHERE deployment_id = $1 AND target = 'github' AND delivered_at IS NULL",
            deployment_id,
        )
    )


async def test_a_change_during_a_send_is_sent_after_the_throttle_but_a_final_one_at_once(
    pool: asyncpg.Pool, store: Store, queue: Queue, service: int, settings: Settings
) -> None:
    throttled = settings.model_copy(update={"report_throttle_seconds": 30.0})
    running = await queue.enqueue(service, trigger=ANSWER)
    finishing = await queue.enqueue(service, environment="staging", trigger=ANSWER)
    claimed = {d.id: d for d in await queue.claim_many("test-worker", 2)}
    assert set(claimed) == {running.id, finishing.id}

    async def send(deployment_id: int) -> Sent:
        # The deployment changes while its report is on the way.
        lease = claimed[deployment_id].lease_token
        if deployment_id == running.id:
            await store.set_progress(deployment_id, 1, 3, "compiling", lease_token=lease)
        else:
            await store.set_status(deployment_id, Status.CANCELLED, lease_token=lease)
        return Sent()

    assert await deliver_due(pool, throttled, "github", send) == 2
    assert 25 < await seconds_until_due(pool, running.id) <= 30
    assert await seconds_until_due(pool, finishing.id) <= 0
