"""One JSON error shape for every refusal: {"error": {"code": "...", "message": "..."}}.
Bad input is a 4xx naming what is wrong, never a traceback."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError

from pipeline.errors import Conflict, InvalidTransition, InvalidValue, NotFound
from pipeline.explain import explain

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    500: "internal",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _CODES.get(status, "error")
        self.headers = headers or {}


def error_response(
    status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": {"code": code or _CODES.get(status, "error"), "message": message}}
    return web.json_response(body, status=status, headers=headers)


def describe(
    error: ValidationError, where: str = "body", model: type[BaseModel] | None = None
) -> str:
    """`body.environment: environment 'x y' is not allowed: …; body.confg: is not a known
    key (did you mean config?)`"""
    if model is not None:
        return "; ".join(str(problem) for problem in explain(error, model, where))
    parts = []
    for item in error.errors(include_url=False):
        location = ".".join(str(part) for part in item.get("loc", ()))
        field = f"{where}.{location}" if location else where
        parts.append(f"{field}: {item.get('msg', 'invalid')}")
    return "; ".join(parts)


def _map(error: Exception) -> tuple[int, str, str | None]:
    if isinstance(error, ApiError):
        return error.status, error.message, error.code
    if isinstance(error, ValidationError):
        return 422, describe(error), None
    if isinstance(error, InvalidValue):
        return 422, str(error), None
    if isinstance(error, NotFound):
        return 404, str(error), None
    if isinstance(error, InvalidTransition | Conflict):
        return 409, str(error), None
    if isinstance(
        error,
        asyncpg.DataError | asyncpg.CheckViolationError | asyncpg.NotNullViolationError,
    ):
        # A value the database refuses (out of range, a check): the caller's input.
        return 422, "a value is out of range or not allowed", None
    raise error


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """For /api/ paths: every error as the one JSON shape; anything unforeseen a 500 with
    no detail (the log has it)."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        headers = {k: v for k, v in error.headers.items() if k.lower() == "allow"}
        return error_response(error.status, error.reason or "error", headers=headers)
    except (
        ApiError,
        ValidationError,
        InvalidValue,
        NotFound,
        Conflict,
        InvalidTransition,
    ) as error:
        status, message, code = _map(error)
        extra = error.headers if isinstance(error, ApiError) else None
        return error_response(status, message, code, extra)
    except (asyncpg.DataError, asyncpg.CheckViolationError, asyncpg.NotNullViolationError) as error:
        status, message, code = _map(error)
        return error_response(status, message, code)
    except Exception:
        log.exception("API request failed", method=request.method, path=request.path)
        return error_response(500, "internal error; the server log has the details")


def to_json(model: Any) -> Any:
    return model.model_dump(mode="json")
