"""A live log's events as they go out: server-sent events, WebSocket messages and
Centrifugo publications carry the same JSON. A batch of lines is encoded once, however
many viewers (and the Centrifugo publisher) take it: the hub hands them all the same
`Lines` (bot/api/live.py), which keeps what was made of it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bot.api import schemas as s
from bot.api.live import End, Event, Lines, StatusChange
from pipeline.models import LogLine


def status_json(change: StatusChange | End) -> dict[str, Any]:
    body: dict[str, Any] = s.DeploymentOut.of(change.deployment).model_dump(mode="json")
    if isinstance(change, StatusChange):
        body["steps"] = [s.StepOut.of(step).model_dump(mode="json") for step in change.steps]
    return body


def line_json(line: LogLine) -> dict[str, Any]:
    return {"seq": line.seq, "at": line.at.isoformat(), "stream": line.stream, "line": line.line}


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def encoded_lines(batch: Lines) -> list[str]:
    """Each line's JSON."""
    if batch.encoded is None:
        batch.encoded = [compact(line_json(line)) for line in batch.lines]
    return batch.encoded


def log_message(encoded: Sequence[str]) -> str:
    """The `log` message of lines already encoded (WebSocket, Centrifugo)."""
    return '{"type":"log","lines":[' + ",".join(encoded) + "]}"


def event_text(event: Event) -> str:
    """An event as a WebSocket message or a Centrifugo publication."""
    if isinstance(event, Lines):
        return log_message(encoded_lines(event))
    if isinstance(event, StatusChange):
        return compact({"type": "status", "deployment": status_json(event)})
    return compact({"type": "end", "status": str(event.deployment.status)})


def _sse_lines(batch: Lines) -> bytes:
    if batch.sse is None:
        # `id:` is the line's seq, so a reconnecting EventSource resumes with Last-Event-ID.
        text = "".join(
            f"id: {line.seq}\nevent: log\ndata: {data}\n\n"
            for line, data in zip(batch.lines, encoded_lines(batch), strict=True)
        )
        batch.sse = text.encode()
    return batch.sse


def sse_chunk(events: list[Event]) -> bytes:
    out: list[bytes] = []
    for event in events:
        if isinstance(event, Lines):
            out.append(_sse_lines(event))
        elif isinstance(event, StatusChange):
            out.append(f"event: status\ndata: {json.dumps(status_json(event))}\n\n".encode())
        else:
            data = json.dumps({"status": str(event.deployment.status)})
            out.append(f"event: end\ndata: {data}\n\n".encode())
    return b"".join(out)
