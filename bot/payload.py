"""Reading forge payloads (GitHub, GitLab) at the edge: a missing or mistyped field is a
`PayloadError` (answered 400), never a KeyError deep in a handler."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class PayloadError(ValueError):
    """A payload without a field the event needs."""


def field(data: Any, *path: str) -> Any:
    value = data
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            raise PayloadError(f"the payload has no {'.'.join(path)}")
        value = value[key]
    return value


def text(data: Any, *path: str) -> str:
    value = field(data, *path)
    if not isinstance(value, str):
        raise PayloadError(f"{'.'.join(path)} is not a string")
    return value


def number(data: Any, *path: str) -> int:
    value = field(data, *path)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"{'.'.join(path)} is not a number")
    return value
