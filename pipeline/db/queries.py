"""Named queries from queries.sql, loaded once."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_BLOCK = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@cache
def _queries() -> dict[str, str]:
    text = resources.files("pipeline.db").joinpath("queries.sql").read_text(encoding="utf-8")
    parts = _BLOCK.split(text)
    # parts: [preamble, name1, body1, name2, body2, ...]
    found: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in found:
            raise RuntimeError(f"queries.sql names {name!r} twice")
        found[name] = body.strip().rstrip(";")
    return found


def q(name: str) -> str:
    """The SQL of the query called `name`."""
    return _queries()[name]


def query_names() -> frozenset[str]:
    """The names queries.sql defines."""
    return frozenset(_queries())
