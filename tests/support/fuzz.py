"""Hypothesis strategies for fuzzing the front ends: odd text (NUL, bidi controls, lone
surrogates, emoji, combining marks, other scripts' digits), any JSON value, huge fields, and
structural mutations of real payloads (a field of the wrong type, null, a list, a nested
object, a missing key, a huge or odd string), aimed mostly at the fields the bot reads.

Everything here is pure: a strategy draws a payload or a request; the tests sign and send it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

JsonPath = tuple[str | int, ...]  # keys and indexes into a JSON document

# Characters that have broken parsers, databases and terminals before.
ODD_PIECES = (
    "\x00",  # PostgreSQL text and jsonb refuse it
    "\ud800",  # lone surrogates: no UTF-8 for them
    "\udfff",
    "\udbff\udfff",  # a pair as two escapes: JSON joins them into U+10FFFF
    "\u202e",  # right-to-left override
    "\u200f",  # right-to-left mark
    "\u061c",  # Arabic letter mark
    "\u200b",  # zero width space
    "\u200d",  # zero width joiner
    "\ufeff",  # byte order mark
    "\u2028",  # line separator
    "\u0085",  # next line (str.splitlines splits on it)
    "\x1b[31m",  # a terminal escape
    "\x7f",
    "\uffff",
    "\ufffd",
    "e\u0301\u0302\u0303",  # combining marks
    "\u0301",
    "🚀",
    "👩‍👩‍👧‍👦",
    "🇺🇳",
    "İ",  # lower() makes it two characters
    "ß",
    "ǅ",
    "²",  # isdigit() but not int()-able
    "١٢٣",  # Arabic-Indic digits: isdigit() and int()-able
    "𝟗",
    "Ⅻ",
    "\n",
    "\r\n",
    "\t",
    " ",
    "'",
    '"',
    "\\",
    "`",
    "```",
    "> ",
    "$(id)",
    "%00",
    "../",
    "<!-- click-deploy -->",
    "[skip ci]",
    "/deploy",
    "--ref",
    "--ref=",
    "-",
    "@org/team",
    "refs/heads/",
    "0" * 40,
    "9" * 25,
)

# Any code point, surrogates included.
any_character = st.characters(exclude_categories=())


def odd_text(max_pieces: int = 8) -> st.SearchStrategy[str]:
    """Short text made of odd pieces and arbitrary characters."""
    piece = st.one_of(st.sampled_from(ODD_PIECES), st.text(any_character, max_size=4))
    return st.lists(piece, max_size=max_pieces).map("".join)


def huge_text(low: int = 1_000, high: int = 40_000) -> st.SearchStrategy[str]:
    """A long string (repeated, so hypothesis need not draw every character)."""
    return st.builds(
        lambda unit, count: (unit or "x") * max(1, count // max(1, len(unit or "x"))),
        odd_text(3),
        st.integers(low, high),
    )


def texts() -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=20), odd_text(), huge_text())


numbers = st.one_of(
    st.integers(-(2**31), 2**31),
    st.sampled_from([0, -1, 2**31, 2**63 - 1, 2**63, -(2**63) - 1, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
)

scalars = st.one_of(st.none(), st.booleans(), numbers, texts())

json_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), odd_text(2)), children, max_size=4),
    ),
    max_leaves=8,
)


# --- mutations of real payloads ------------------------------------------------------------


def paths(value: Any, prefix: JsonPath = (), depth: int = 6) -> list[JsonPath]:
    """Every path into `value` (object keys and list indexes), up to `depth` deep."""
    found: list[JsonPath] = []
    if depth == 0:
        return found
    if isinstance(value, dict):
        items: list[tuple[str | int, Any]] = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return found
    for key, child in items:
        path = (*prefix, key)
        found.append(path)
        found += paths(child, path, depth - 1)
    return found


def _parent(document: Any, path: JsonPath) -> tuple[Any, str | int] | None:
    """The container holding `path`'s last step, when every step before it exists."""
    node = document
    for step in path[:-1]:
        if (isinstance(node, dict) and step in node) or (
            isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node)
        ):
            node = node[step]
        else:
            return None
    if isinstance(node, dict) or (isinstance(node, list) and isinstance(path[-1], int)):
        return node, path[-1]
    return None


def _wrong_type(value: Any) -> list[Any]:
    """Values of another type that a careless reader might still take for `value`."""
    if isinstance(value, bool):
        return [str(value).lower(), int(value), None, [value]]
    if isinstance(value, int):
        return [str(value), float(value), -value, value * 10**20, True, [value], {"id": value}]
    if isinstance(value, str):
        swapped: list[Any] = [
            len(value),
            [value],
            {"value": value},
            value.encode("utf-8", "surrogatepass").hex(),
        ]
        if value.isascii() and value.isdigit() and len(value) < 100:
            swapped.append(int(value))
        return swapped
    if isinstance(value, list):
        return [value[0] if value else None, {"0": value}, json.dumps(value)[:200]]
    if isinstance(value, dict):
        return [list(value.values())[:3], json.dumps(value)[:200], list(value)[:3]]
    return [str(value), 0]


@st.composite
def _replacement(draw: st.DrawFn, current: Any) -> Any:
    choices: list[st.SearchStrategy[Any]] = [
        st.none(),
        json_values,
        huge_text(),
        st.sampled_from(_wrong_type(current)),
    ]
    if isinstance(current, str):
        # The same text with odd pieces around it: it still looks right to a quick check.
        choices.append(
            st.builds(lambda before, after: before + current + after, odd_text(2), odd_text(2))
        )
    return draw(st.one_of(choices))


@st.composite
def mutated(
    draw: st.DrawFn, base: Any, focus: Sequence[JsonPath] = (), max_mutations: int = 4
) -> Any:
    """A deep copy of `base` with a few of its fields changed (mostly those in `focus`,
    the ones the bot reads), deleted, or given odd values."""
    document = copy.deepcopy(base)
    for _ in range(draw(st.integers(0, max_mutations))):
        every = paths(document)
        candidates = [p for p in focus if _parent(document, p) is not None]
        pool = (
            candidates if candidates and draw(st.sampled_from([True] * 7 + [False] * 3)) else every
        )
        if not pool:
            break
        path = draw(st.sampled_from(pool))
        found = _parent(document, path)
        if found is None:
            continue
        container, key = found
        exists = (isinstance(container, dict) and key in container) or (
            isinstance(container, list) and isinstance(key, int) and key < len(container)
        )
        if exists and isinstance(container, dict) and draw(st.sampled_from([True] + [False] * 4)):
            del container[key]
            continue
        current = container[key] if exists else None
        value = draw(_replacement(current))
        if isinstance(container, dict):
            container[key] = value
        elif exists:
            container[key] = value  # type: ignore[index]
    if draw(st.sampled_from([False] * 49 + [True])):
        return draw(json_values)  # not even an object
    return document


def dump(payload: Any, ascii_only: bool) -> bytes:
    """JSON as a sender would write it. Lone surrogates stay escapes with `ascii_only`;
    otherwise they become the bytes a lax encoder writes (not valid UTF-8)."""
    text = json.dumps(payload, ensure_ascii=ascii_only, allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


# --- HTTP headers --------------------------------------------------------------------------

# What an HTTP header can carry (latin-1, no controls): what aiohttp lets a client send.
header_character = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")
header_text = st.one_of(
    st.text(header_character, max_size=40),
    st.text(header_character, min_size=2_000, max_size=4_000),
)

CONTENT_TYPES = (
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=UTF-16",
    "application/json; charset=latin-1",
    "application/json; charset=no-such-codec",
    "application/json; charset=",
    "application/JSON",
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=bogus",
    "text/plain",
    "multipart/form-data; boundary=x",
    "",
)
content_types = st.one_of(st.sampled_from(CONTENT_TYPES), header_text)


@dataclass(frozen=True)
class Request:
    """One HTTP request to send: body and headers exactly as drawn."""

    body: bytes
    headers: dict[str, str]
    what: str  # a short description for failure messages
    must_ack: bool = False  # Slack: only a free-form field changed, so the answer is a 200

    def __repr__(self) -> str:
        shown = self.body[:600] + (b"..." if len(self.body) > 600 else b"")
        return f"Request({self.what}, headers={self.headers!r}, body={shown!r})"
