"""Frozen row values the store returns. Nothing outside the store sees asyncpg records."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Generic, Self, TypeVar
from uuid import UUID

import asyncpg

from pipeline.states import Status

# A database row: an asyncpg record, or a plain mapping.
Row = Mapping[str, Any] | asyncpg.Record


def _from_row(cls: type[Any], row: Row) -> Any:
    names = {item.name for item in fields(cls)}
    return cls(**{key: value for key, value in dict(row.items()).items() if key in names})


@dataclass(frozen=True)
class Service:
    id: int
    name: str
    provider: str
    repository: str
    branch: str
    root_dir: str
    config: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Row) -> Self:
        return _from_row(cls, row)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Deployment:
    id: int
    service_id: int
    environment: str
    ref: str | None
    commit_sha: str | None
    status: Status
    trigger: dict[str, Any]
    attempts: int
    max_attempts: int
    run_at: datetime
    worker_id: str | None
    lease_token: UUID | None
    lease_expires_at: datetime | None
    heartbeat_at: datetime | None
    cancel_requested: bool
    superseded_by: int | None
    phase: str | None
    step: int | None
    steps_total: int | None
    progress_message: str | None
    image: str | None
    error: str | None
    error_kind: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    digest: str | None = field(default=None)
    service_name: str | None = field(default=None)
    # Only on a freshly claimed deployment: where its log numbering goes on from.
    last_log_seq: int | None = field(default=None)

    @classmethod
    def from_row(cls, row: Row) -> Self:
        values = dict(row.items())
        values["status"] = Status(values["status"])
        return _from_row(cls, values)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class LogLine:
    seq: int
    at: datetime
    stream: str
    line: str

    @classmethod
    def from_row(cls, row: Row) -> Self:
        return _from_row(cls, row)  # type: ignore[no-any-return]


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: int | None


@dataclass(frozen=True)
class Step:
    """A pipeline step (clone, plan, build, push, verify) or a BuildKit step of one attempt."""

    deployment_id: int
    attempt: int
    seq: int
    kind: str
    name: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    seconds: float | None
    detail: str | None

    @classmethod
    def from_row(cls, row: Row) -> Self:
        return _from_row(cls, row)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ServiceImage:
    service_id: int
    environment: str
    deployment_id: int
    image: str
    digest: str | None
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Row) -> Self:
        return _from_row(cls, row)  # type: ignore[no-any-return]
