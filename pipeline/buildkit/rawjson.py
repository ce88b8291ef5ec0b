"""Decode `buildctl build --progress=rawjson`: one JSON SolveStatus a line on stderr.

Byte fields (`logs[].data`, `warnings[].short`, `warnings[].detail[]`) are base64, as Go's
encoding/json writes []byte. A failed build ends with buildctl's plain-text error after
the JSON lines; `decode_rawjson_line` returns None for such a line.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime
from typing import Any

from pipeline.buildkit.status import SolveStatus, Vertex, VertexLog, VertexStatus, VertexWarning

_FRACTION = re.compile(r"\.(\d{6})\d+")


class RawJsonDecodeError(ValueError):
    """A JSON line that is not a SolveStatus."""


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        # RFC 3339 with nanoseconds; older Pythons take at most microseconds.
        return datetime.fromisoformat(_FRACTION.sub(r".\1", value).replace("Z", "+00:00"))


def _bytes(value: Any) -> bytes:
    if not value:
        return b""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError, TypeError) as error:
        raise RawJsonDecodeError(f"bad base64 in rawjson progress: {error}") from None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _list(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


def decode_solve_status(data: dict[str, Any]) -> SolveStatus:
    """A decoded rawjson object → SolveStatus."""
    return SolveStatus(
        vertexes=tuple(
            Vertex(
                digest=_str(v.get("digest")),
                name=_str(v.get("name")),
                inputs=tuple(_str(i) for i in v.get("inputs") or ()),
                cached=bool(v.get("cached", False)),
                started=_time(v.get("started")),
                completed=_time(v.get("completed")),
                error=_str(v.get("error")),
            )
            for v in _list(data.get("vertexes"))
        ),
        statuses=tuple(
            VertexStatus(
                id=_str(s.get("id")),
                vertex=_str(s.get("vertex")),
                name=_str(s.get("name")),
                current=_int(s.get("current")),
                total=_int(s.get("total")),
                timestamp=_time(s.get("timestamp")),
                started=_time(s.get("started")),
                completed=_time(s.get("completed")),
            )
            for s in _list(data.get("statuses"))
        ),
        logs=tuple(
            VertexLog(
                vertex=_str(entry.get("vertex")),
                stream=_int(entry.get("stream")),
                data=_bytes(entry.get("data")),
                timestamp=_time(entry.get("timestamp")),
            )
            for entry in _list(data.get("logs"))
        ),
        warnings=tuple(
            VertexWarning(
                vertex=_str(w.get("vertex")),
                level=_int(w.get("level")),
                short=_bytes(w.get("short")),
                detail=tuple(_bytes(d) for d in w.get("detail") or ()),
                url=_str(w.get("url")),
            )
            for w in _list(data.get("warnings"))
        ),
    )


def decode_rawjson_line(line: str | bytes) -> SolveStatus | None:
    """One stderr line of `buildctl --progress=rawjson`: a SolveStatus, or None when the
    line is plain text (buildctl's closing error message)."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    text = text.strip()
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    return decode_solve_status(data)
