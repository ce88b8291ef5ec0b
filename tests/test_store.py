from __future__ import annotations

import asyncpg
import pytest

from pipeline.errors import Conflict, InvalidTransition, InvalidValue, NotFound
from pipeline.queue.queue import Queue
from pipeline.states import TRANSITIONS, Status
from pipeline.store import LogEntry, NewService, Store


async def test_service_crud_and_lookups(store: Store) -> None:
    api = await store.create_service(NewService("api", "acme/mono", "github", root_dir="api"))
    web = await store.create_service(NewService("web", "acme/mono", "github", root_dir="web"))
    await store.create_service(NewService("docs", "acme/mono", "github", branch="gh-pages"))

    assert (await store.get_service(api.id)).name == "api"
    assert (await store.get_service_by_name("web")).id == web.id
    assert (await store.find_service(str(web.id))).name == "web"
    monorepo = await store.services_for_repository("github", "acme/mono", "main")
    assert [s.name for s in monorepo] == ["api", "web"]
    assert [s.name for s in await store.list_services()] == ["api", "docs", "web"]

    updated = await store.update_service(api.id, branch="release", config={"previews": True})
    assert (updated.branch, updated.config, updated.root_dir) == (
        "release",
        {"previews": True},
        "api",
    )
    assert updated.updated_at >= api.updated_at

    await store.delete_service(api.id)
    with pytest.raises(NotFound, match="no service with id"):
        await store.get_service(api.id)
    with pytest.raises(NotFound, match="'nope'"):
        await store.find_service("nope")


async def test_service_errors_are_readable(store: Store) -> None:
    await store.create_service(NewService("web", "acme/web", "github"))
    with pytest.raises(Conflict, match="already exists"):
        await store.create_service(NewService("web", "acme/other", "github"))
    with pytest.raises(InvalidValue, match="not allowed"):
        await store.create_service(NewService("Web App!", "acme/web", "github"))
    with pytest.raises(InvalidValue, match="provider 'svn' is unknown"):
        await store.create_service(NewService("svc", "acme/web", provider="svn"))
    with pytest.raises(NotFound):
        await store.update_service(999, branch="x")


async def test_service_with_deployments_in_flight_cannot_be_deleted(
    store: Store, queue: Queue, service: int
) -> None:
    deployment = await queue.enqueue(service)
    with pytest.raises(Conflict, match="queued or running"):
        await store.delete_service(service)
    await queue.cancel(deployment.id)
    await store.delete_service(service)
    with pytest.raises(NotFound):
        await store.get_deployment(deployment.id)


async def test_deployments_listed_newest_first_in_pages(
    store: Store, queue: Queue, service: int
) -> None:
    ids = []
    for number in range(7):
        deployment = await queue.enqueue(service, environment=f"pr-{number}")
        ids.append(deployment.id)
    first = await store.list_deployments(service, limit=3)
    assert [d.id for d in first.items] == ids[::-1][:3]
    second = await store.list_deployments(service, limit=3, before=first.next_cursor)
    third = await store.list_deployments(service, limit=3, before=second.next_cursor)
    assert [d.id for d in second.items + third.items] == ids[::-1][3:]
    assert third.next_cursor is None
    queued = await store.list_deployments(service, status=Status.QUEUED)
    assert len(queued.items) == 7
    assert (await store.list_deployments(service, status=Status.FAILED)).items == []


async def test_only_state_machine_transitions_are_allowed(
    store: Store, queue: Queue, service: int
) -> None:
    deployment = await queue.enqueue(service)
    with pytest.raises(InvalidTransition, match="is queued; it cannot become succeeded"):
        await store.set_status(deployment.id, Status.SUCCEEDED)
    with pytest.raises(InvalidTransition, match="cannot become building"):
        await store.set_status(deployment.id, Status.BUILDING)
    claimed = await queue.claim("w1")
    assert claimed is not None and claimed.status == Status.CLONING
    for status in (Status.BUILDING, Status.PUSHING, Status.SUCCEEDED):
        moved = await store.set_status(deployment.id, status, lease_token=claimed.lease_token)
        assert moved.status == status
    finished = await store.get_deployment(deployment.id)
    assert finished.finished_at is not None and finished.lease_token is None
    for status in Status:
        with pytest.raises(InvalidTransition):
            await store.set_status(deployment.id, status)


async def test_database_refuses_illegal_transitions_too(
    pool: asyncpg.Pool, queue: Queue, service: int
) -> None:
    deployment = await queue.enqueue(service)
    with pytest.raises(asyncpg.CheckViolationError, match="cannot go from queued to succeeded"):
        await pool.execute(
            "UPDATE deployments SET status = 'succeeded' WHERE id = $1", deployment.id
        )


async def test_database_transition_table_matches_the_code(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch("SELECT from_status, to_status FROM deployment_transitions")
    in_database = {(row["from_status"], row["to_status"]) for row in rows}
    in_code = {(str(a), str(b)) for a, targets in TRANSITIONS.items() for b in targets}
    assert in_database == in_code


async def test_progress_is_recorded(store: Store, queue: Queue, service: int) -> None:
    await queue.enqueue(service)
    claimed = await queue.claim("w1")
    assert claimed is not None
    await store.set_progress(
        claimed.id, 2, 5, "installing dependencies", lease_token=claimed.lease_token
    )
    current = await store.get_deployment(claimed.id)
    assert (current.phase, current.step, current.steps_total, current.progress_message) == (
        "cloning",
        2,
        5,
        "installing dependencies",
    )


async def test_logs_in_batches_and_read_from_a_cursor(
    store: Store, queue: Queue, service: int
) -> None:
    deployment = await queue.enqueue(service)
    next_seq = 1
    for batch in range(5):
        entries = [LogEntry(f"batch {batch} line {n}") for n in range(1000)]
        next_seq = await store.append_logs(deployment.id, next_seq, entries)
    assert next_seq == 5001
    assert await store.last_log_seq(deployment.id) == 5000
    await store.append_logs(deployment.id, next_seq, [LogEntry("nul \x00 byte", "stderr")])

    seen, cursor = [], 0
    while True:
        page = await store.read_logs(deployment.id, after=cursor, limit=700)
        if not page.items:
            break
        seen.extend(page.items)
        cursor = page.next_cursor or cursor
    assert [line.seq for line in seen] == list(range(1, 5002))
    assert seen[1234].line == "batch 1 line 234"
    assert seen[-1].stream == "stderr" and seen[-1].line == "nul \ufffd byte"
    # A reader that is up to date gets nothing new and keeps its cursor.
    empty = await store.read_logs(deployment.id, after=cursor)
    assert empty.items == [] and empty.next_cursor == cursor
