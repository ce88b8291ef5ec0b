"""Query-string models: validated like bodies, named in errors as `query.<name>`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from pipeline.states import Status

MAX_ID = 2**63 - 1


class Query(BaseModel):
    # Other parameters (a page link's signature, cache busters) are ignored.
    model_config = ConfigDict(extra="ignore", frozen=True)


class DeploymentsQuery(Query):
    status: Status | None = Field(default=None, description="only deployments in this state")
    limit: int = Field(default=20, ge=1, le=500)
    before: int | None = Field(
        default=None, ge=1, le=MAX_ID, description="cursor: `next_cursor` of the previous page"
    )


class LogsQuery(Query):
    after: int = Field(default=0, ge=0, le=MAX_ID, description="cursor: lines after this seq")
    limit: int = Field(default=1000, ge=1, le=5000)
    follow: bool = Field(
        default=False, description="stream as server-sent events (as `Accept: text/event-stream`)"
    )


class WatchQuery(Query):
    after: int = Field(default=0, ge=0, le=MAX_ID, description="lines after this seq")
