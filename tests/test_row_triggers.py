"""The deployments table's row triggers (migration 0009): a transition check that is a WHEN
condition, and a Slack flag decided when a deployment is created."""

from __future__ import annotations

import asyncio
import itertools

import asyncpg

from pipeline.queue.queue import Queue
from pipeline.states import TRANSITIONS, Status
from pipeline.store import NewService, Store
from tests.support.waiting import FENCE, PATIENCE, queue_fence


async def test_the_trigger_s_transitions_are_the_table_s_and_the_code_s(pool: asyncpg.Pool) -> None:
    table = {
        (row["from_status"], row["to_status"])
        for row in await pool.fetch("SELECT from_status, to_status FROM deployment_transitions")
    }
    code = {(str(before), str(after)) for before, afters in TRANSITIONS.items() for after in afters}
    assert table == code
    statuses = [str(status) for status in Status]
    pairs = list(itertools.product(statuses, statuses))
    allowed = await pool.fetch(
        "SELECT f, t, click_deploy_move_allowed(f, NULL, t) AS ok "
        "FROM unnest($1::text[], $2::text[]) AS p (f, t)",
        [f for f, _ in pairs],
        [t for _, t in pairs],
    )
    assert {(row["f"], row["t"]) for row in allowed if row["ok"]} == table


async def test_an_illegal_change_is_refused_by_the_database(
    pool: asyncpg.Pool, service: int
) -> None:
    deployment_id = await pool.fetchval(
        "INSERT INTO deployments (service_id) VALUES ($1) RETURNING id", service
    )
    try:
        await pool.execute(
            "UPDATE deployments SET status = 'succeeded' WHERE id = $1", deployment_id
        )
    except asyncpg.CheckViolationError as error:
        assert f"deployment {deployment_id} cannot go from queued to succeeded" in str(error)
    else:
        raise AssertionError("queued → succeeded was allowed")


async def slack_rows(pool: asyncpg.Pool, deployment_id: int) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM outbox WHERE deployment_id = $1 AND target = 'slack'",
            deployment_id,
        )
    )


async def test_slack_reports_follow_the_request_and_the_service_s_channel(
    pool: asyncpg.Pool, store: Store, queue: Queue
) -> None:
    quiet = await store.create_service(NewService("quiet", "acme/quiet", "github"))
    announced = await store.create_service(
        NewService("loud", "acme/loud", "github", config={"slack_channel": "C0DEPLOY"})
    )
    plain = await queue.enqueue(quiet.id)
    from_slack = await queue.enqueue(
        quiet.id, environment="staging", trigger={"answer": {"slack": {"channel": "C1"}}}
    )
    in_channel = await queue.enqueue(announced.id)
    assert await slack_rows(pool, plain.id) == 0
    assert await slack_rows(pool, from_slack.id) == 1
    assert await slack_rows(pool, in_channel.id) == 1

    # A channel configured later counts for the deployments not yet finished.
    await store.update_service(quiet.id, config={"slack_channel": "C0QUIET"})
    claimed = await queue.claim_many("test-worker", 3)
    assert {deployment.id for deployment in claimed} == {plain.id, from_slack.id, in_channel.id}
    assert await slack_rows(pool, plain.id) == 1
    assert await slack_rows(pool, from_slack.id) == 1  # still one pending row, coalesced


async def test_status_changes_are_told_once_per_row_and_lease_renewals_not_at_all(
    pool: asyncpg.Pool, database_url: str, store: Store, queue: Queue
) -> None:
    services = [
        (await store.create_service(NewService(f"told-{n}", f"acme/told-{n}", "github"))).id
        for n in range(3)
    ]
    deployments = [await queue.enqueue(service_id) for service_id in services]
    told: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(database_url)
    try:
        await listener.add_listener("click_deploy_status", lambda *args: told.put_nowait(args[3]))
        claimed = await queue.claim_many("test-worker", 3)  # one statement, three rows
        await pool.execute(
            "UPDATE deployments SET heartbeat_at = now(), "
            "lease_expires_at = now() + interval '1 minute'"
        )
        await pool.execute(
            "UPDATE deployments SET progress_message = 'compiling' WHERE id = $1", claimed[0].id
        )
        expected = sorted([str(d.id) for d in deployments] + [str(claimed[0].id)])
        got = [await asyncio.wait_for(told.get(), PATIENCE) for _ in expected]
        assert sorted(got) == expected
        # A fence, not a sleep: notifications arrive in commit order.
        await queue_fence(pool, "click_deploy_status")
        assert await told.get() == FENCE, "a lease renewal was told as a status change"
    finally:
        await listener.close()
