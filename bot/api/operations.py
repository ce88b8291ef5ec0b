"""The table of API operations: each handler with what the OpenAPI document says about it
(method, path, scope, request and response models). Routes and document come from here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from pydantic import BaseModel

from bot.api.errors import ApiError
from bot.api.tokens import Scope

PREFIX = "/api/v1"
MAX_ID = 2**63 - 1

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # OpenAPI style, below PREFIX: /deployments/{id}
    handler: Handler
    summary: str
    scope: Scope | None  # None: no token needed
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    responses: dict[int, type[BaseModel] | None] = field(default_factory=dict)
    errors: tuple[int, ...] = ()
    signed_link: bool = False  # a signed page link also opens it
    streams: bool = False  # may answer text/event-stream

    @property
    def route(self) -> str:
        """aiohttp's path: ids are digits (anything else is a 404)."""
        return PREFIX + self.path.replace("{id}", r"{id:\d+}")

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


OPERATIONS: list[Operation] = []


def operation(
    method: str,
    path: str,
    summary: str,
    scope: Scope | None,
    **options: object,
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        OPERATIONS.append(Operation(method, path, handler, summary, scope, **options))  # type: ignore[arg-type]
        return handler

    return register


def path_id(request: web.Request) -> int:
    """The `{id}` of the path; an id no row can have is simply not found."""
    value = int(request.match_info["id"])
    if not 1 <= value <= MAX_ID:
        raise ApiError(404, f"nothing has id {request.match_info['id']}")
    return value
