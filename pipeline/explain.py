"""Validation errors as people read them: each problem located (`config.slack.users`),
"did you mean" for a key that is not known, and the kind of value given when its type is
wrong. Used for service configs and for every body and query of the REST API."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import NoneType, UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where (`config.slack.users`) and what."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


_KINDS = {str: "a string", bool: "true or false", int: "a number", float: "a number"}


def kind_of(value: object) -> str:
    """How a message names the kind of a value: a string, a list, null…"""
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return _KINDS.get(type(value), type(value).__name__)


def _unwrap(annotation: Any) -> Any:
    """The model or container inside `X | None` and `Annotated[X, ...]`."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            options = [arg for arg in get_args(annotation) if arg is not NoneType]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


def _model_at(model: type[BaseModel], path: Sequence[str | int]) -> type[BaseModel] | None:
    """The model that holds the key at `path` (for "did you mean"), if there is one."""
    current: Any = model
    for part in path:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            if info is None:
                return None
            current = info.annotation
        elif get_origin(current) in (list, tuple, dict):
            current = get_args(current)[-1] if get_args(current) else Any
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def explain(error: ValidationError, model: type[BaseModel], where: str = "") -> list[Problem]:
    """Each problem of a failed validation of `model`, located (`where.a.b`), with "did
    you mean" for unknown keys and the kind of value given for a wrong type."""
    problems = []
    for item in error.errors(include_url=False):
        path = list(item.get("loc", ()))
        location = ".".join(str(part) for part in [where, *path] if part != "")
        kind = item.get("type", "")
        if kind == "extra_forbidden" and path:
            parent = _model_at(model, path[:-1])
            known = sorted(parent.model_fields) if parent is not None else []
            close = difflib.get_close_matches(str(path[-1]), known, n=1, cutoff=0.6)
            if close:
                hint = f" (did you mean {close[0]}?)"
            else:
                hint = f" (known keys: {', '.join(known)})" if known else ""
            problems.append(Problem(location, f"is not a known key{hint}"))
            continue
        message = str(item.get("msg", "invalid value")).removeprefix("Value error, ")
        if kind.endswith("_type") or kind in ("model_type", "dict_type", "list_type"):
            message = f"{message} (got {kind_of(item.get('input'))})"
        problems.append(Problem(location, message))
    return problems
