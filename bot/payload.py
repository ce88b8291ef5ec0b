"""Reading forge payloads (GitHub, GitLab) at the edge: a missing or mistyped field is a
`PayloadError` (answered 400), never a KeyError deep in a handler.

`loads` turns a body into JSON whose every string PostgreSQL can store (no NUL, no
unpaired surrogate), so nothing read from it can fail a query later; the readers check
types, and `commit_id` / `ref_name` / `number` also check that the value can be one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pipeline import values
from pipeline.errors import InvalidValue
from pipeline.values import valid_ref

ID_MAX = 2**63 - 1  # ids are PostgreSQL bigints at most
# Escapes that make strings PostgreSQL refuses: NUL and surrogates. Raw NUL is not valid
# JSON and raw surrogates are not valid UTF-8, so escapes are the only way in.
_UNSTORABLE_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class PayloadError(ValueError):
    """A payload without a field the event needs."""


def shown(value: Any, limit: int = 80) -> str:
    """A value for a message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def loads(text: str) -> Any:
    """JSON from a body's text (ValueError, or RecursionError when nested too deep), with
    NUL and unpaired surrogates in strings replaced by U+FFFD. Joined surrogate pairs are
    real characters and stay."""
    data = json.loads(text)
    return _storable(data) if _UNSTORABLE_ESCAPE.search(text) else data


def _clean(value: str) -> str:
    if not _UNSTORABLE.search(value):
        return value
    return _UNSTORABLE.sub("\ufffd", value)


def _storable(data: Any) -> Any:
    """`data` with its strings cleaned, in place (iterative: any depth)."""
    if isinstance(data, str):
        return _clean(data)
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            keys: list[Any] = list(node)
        elif isinstance(node, list):
            keys = list(range(len(node)))
        else:
            continue
        for key in keys:
            child = node[key]
            if isinstance(child, str):
                node[key] = _clean(child)
            elif isinstance(child, dict | list):
                stack.append(child)
    return data


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


def optional_text(data: Any, *path: str) -> str | None:
    """The string at `path`, or None when anything on the way is missing or not one."""
    value = data
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value if isinstance(value, str) else None


def number(data: Any, *path: str) -> int:
    """A positive id or number (as forges use them), at most a bigint."""
    value = field(data, *path)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"{'.'.join(path)} is not a number")
    if not 0 < value <= ID_MAX:
        raise PayloadError(f"{'.'.join(path)} is not a positive id: {shown(value)}")
    return value


def commit_id(data: Any, *path: str) -> str:
    """A full commit id: 40 (SHA-1) or 64 (SHA-256) hex digits, in lower case."""
    value = text(data, *path)
    try:
        return values.commit(value)
    except InvalidValue:
        raise PayloadError(f"{'.'.join(path)} is not a commit id: {shown(value)}") from None


def ref_name(data: Any, *path: str) -> str:
    """A branch or ref name git could have: 1 to 255 printable characters, none of those
    git refuses (spaces, `~^:?*[\\`, `..`, `@{`, a part starting with a dot), and not
    starting with `-` (git would read it as an option)."""
    value = text(data, *path)
    if not valid_ref(value):
        raise PayloadError(f"{'.'.join(path)} is not a git ref: {shown(value)}")
    return value
