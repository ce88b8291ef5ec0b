"""Frozen row values the store returns. Nothing outside the store sees asyncpg records."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime
from functools import cached_property
from typing import Any, Generic, Self, TypeVar
from uuid import UUID

import asyncpg

from pipeline.service_config import ServiceConfig, stored_options
from pipeline.states import Status

# A database row: an asyncpg record, or a plain mapping.
Row = Mapping[str, Any] | asyncpg.Record


# One plan per (class, column names) pair: which columns fill which fields, and the
# defaults of the fields the row lacks. Rows of one query share their columns, so the
# filtering is worked out once instead of per row (this runs several times a job).
_Plan = tuple[tuple[str, ...], dict[str, Any]]
_plans: dict[tuple[type[Any], tuple[str, ...]], _Plan | None] = {}


_names: dict[type[Any], frozenset[str]] = {}


def _field_names(cls: type[Any]) -> frozenset[str]:
    names = _names.get(cls)
    if names is None:
        names = _names[cls] = frozenset(item.name for item in fields(cls))
    return names


def _plan(cls: type[Any], keys: tuple[str, ...]) -> _Plan | None:
    wanted = _field_names(cls)
    names = tuple(key for key in keys if key in wanted)
    defaults: dict[str, Any] = {}
    for item in fields(cls):
        if item.name in names:
            continue
        if item.default is MISSING:
            return None  # a required field is missing: let the constructor say so
        defaults[item.name] = item.default
    return names, defaults


def _from_row(cls: type[Any], row: Row, convert: Mapping[str, Any] | None = None) -> Any:
    """`cls` from the row's columns that are its fields (other columns are ignored).
    `convert` maps a field to a callable applied to its value."""
    keys = tuple(row.keys())
    try:
        plan = _plans[cls, keys]
    except KeyError:
        plan = _plans[cls, keys] = _plan(cls, keys)
    if plan is None:
        values = {key: row[key] for key in keys if key in _field_names(cls)}
        for name, function in (convert or {}).items():
            if name in values:
                values[name] = function(values[name])
        return cls(**values)
    names, defaults = plan
    values = dict(defaults)
    values.update({name: row[name] for name in names})
    for name, function in (convert or {}).items():
        values[name] = function(values[name])
    # The dataclasses are frozen and validate nothing in __init__: filling the instance
    # dict directly builds the same value without 30 object.__setattr__ calls.
    instance = object.__new__(cls)
    instance.__dict__.update(values)
    return instance


@dataclass(frozen=True)
class Service:
    id: int
    name: str
    provider: str
    repository: str
    branch: str
    root_dir: str
    config: dict[str, Any]  # as stored; read it through `options`
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Row) -> Self:
        return _from_row(cls, row)  # type: ignore[no-any-return]

    @cached_property
    def options(self) -> ServiceConfig:
        """The config, validated: a stored config that is not valid reads as one that
        refuses deploys from chat and forges (`ServiceConfig.problem` says why)."""
        return stored_options(self.config, self.name)


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
    # Where the release step put it into service (target docker or swarm), once healthy.
    live_url: str | None = field(default=None)
    service_name: str | None = field(default=None)
    # Only on a freshly claimed deployment: where its log numbering goes on from.
    last_log_seq: int | None = field(default=None)

    @classmethod
    def from_row(cls, row: Row) -> Self:
        return _from_row(cls, row, _DEPLOYMENT_CONVERT)  # type: ignore[no-any-return]

    def updated(self, row: Row) -> Self:
        """This deployment with the columns `row` carries (a write that returns only the
        columns it can have changed); the other fields stay as they are."""
        names = _field_names(type(self))
        values = dict(self.__dict__)
        values.update({key: value for key, value in row.items() if key in names})
        values["status"] = Status(values["status"])
        values["last_log_seq"] = row.get("last_log_seq")  # a claim's, not a later write's
        instance = object.__new__(type(self))
        instance.__dict__.update(values)
        return instance


_DEPLOYMENT_CONVERT = {"status": Status}


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
