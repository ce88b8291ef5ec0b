"""What runs where: one row per release in `releases`, at most one live per environment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from pipeline.db.queries import q


@dataclass(frozen=True)
class ReleaseRecord:
    id: int
    service_id: int
    environment: str
    deployment_id: int | None
    target: str
    image: str
    digest: str
    engine: str | None
    runs_as: str
    url: str | None
    healthy: bool
    started_at: datetime
    stopped_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ReleaseRecord:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


class ReleaseStore:
    """Every query about releases (and the live URL of a deployment)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def live(self, service_id: int, environment: str) -> ReleaseRecord | None:
        row = await self.pool.fetchrow(q("release_live"), service_id, environment)
        return None if row is None else ReleaseRecord.from_row(row)

    async def live_for_service(self, service_id: int) -> list[ReleaseRecord]:
        rows = await self.pool.fetch(q("releases_live_for_service"), service_id)
        return [ReleaseRecord.from_row(row) for row in rows]

    async def live_previews(self, service_id: int) -> list[ReleaseRecord]:
        rows = await self.pool.fetch(q("releases_live_previews"), service_id)
        return [ReleaseRecord.from_row(row) for row in rows]

    async def switched(
        self,
        *,
        service_id: int,
        environment: str,
        deployment_id: int | None,
        target: str,
        image: str,
        digest: str,
        engine: str | None,
        runs_as: str,
        url: str | None,
    ) -> ReleaseRecord:
        """Record that traffic moved: the live release of the environment ends, this one
        begins (one transaction, so there is never none or two)."""
        async with self.pool.acquire() as connection, connection.transaction():
            old = await connection.fetchrow(q("release_live"), service_id, environment)
            if old is not None:
                await connection.execute(q("release_stop"), old["id"])
            row = await connection.fetchrow(
                q("release_insert"),
                service_id,
                environment,
                deployment_id,
                target,
                image,
                digest,
                engine,
                runs_as,
                url,
            )
        assert row is not None
        return ReleaseRecord.from_row(row)

    async def stopped(self, release_id: int) -> None:
        await self.pool.execute(q("release_stop"), release_id)

    async def set_live_url(self, deployment_id: int, lease_token: UUID | None, url: str) -> None:
        await self.pool.execute(q("deployment_set_live_url"), deployment_id, lease_token, url)
