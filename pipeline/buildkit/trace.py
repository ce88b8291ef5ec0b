"""Decode the Docker engine's `moby.buildkit.trace` messages.

A BuildKit build through the Engine API streams JSON lines; those with
`"id": "moby.buildkit.trace"` carry a base64 protobuf `moby.buildkit.v1.StatusResponse`
in `aux`. The message description below is written from BuildKit's field numbers (the
`control.proto` of `moby/buildkit`) and built at import time: no generated code, no
download. Fields we do not describe are skipped by protobuf as unknown fields.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from functools import cache
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2
from google.protobuf.message import DecodeError

from pipeline.buildkit.status import SolveStatus, Vertex, VertexLog, VertexStatus, VertexWarning

TRACE_ID = "moby.buildkit.trace"
_PACKAGE = "moby.buildkit.v1"
_TIMESTAMP = ".google.protobuf.Timestamp"

_F = descriptor_pb2.FieldDescriptorProto
_ONE = _F.LABEL_OPTIONAL
_MANY = _F.LABEL_REPEATED

# (message, [(field, number, type, label, message type)])
_MESSAGES: list[tuple[str, list[tuple[str, int, int, int, str]]]] = [
    (
        "Vertex",
        [
            ("digest", 1, _F.TYPE_STRING, _ONE, ""),
            ("inputs", 2, _F.TYPE_STRING, _MANY, ""),
            ("name", 3, _F.TYPE_STRING, _ONE, ""),
            ("cached", 4, _F.TYPE_BOOL, _ONE, ""),
            ("started", 5, _F.TYPE_MESSAGE, _ONE, _TIMESTAMP),
            ("completed", 6, _F.TYPE_MESSAGE, _ONE, _TIMESTAMP),
            ("error", 7, _F.TYPE_STRING, _ONE, ""),
        ],
    ),
    (
        "VertexStatus",
        [
            ("id", 1, _F.TYPE_STRING, _ONE, ""),
            ("vertex", 2, _F.TYPE_STRING, _ONE, ""),
            ("name", 3, _F.TYPE_STRING, _ONE, ""),
            ("current", 4, _F.TYPE_INT64, _ONE, ""),
            ("total", 5, _F.TYPE_INT64, _ONE, ""),
            ("timestamp", 6, _F.TYPE_MESSAGE, _ONE, _TIMESTAMP),
            ("started", 7, _F.TYPE_MESSAGE, _ONE, _TIMESTAMP),
            ("completed", 8, _F.TYPE_MESSAGE, _ONE, _TIMESTAMP),
        ],
    ),
    (
        "VertexLog",
        [
            ("vertex", 1, _F.TYPE_STRING, _ONE, ""),
            ("timestamp", 2, _F.TYPE_MESSAGE, _ONE, _TIMESTAMP),
            ("stream", 3, _F.TYPE_INT64, _ONE, ""),
            ("msg", 4, _F.TYPE_BYTES, _ONE, ""),
        ],
    ),
    (
        "VertexWarning",
        [
            ("vertex", 1, _F.TYPE_STRING, _ONE, ""),
            ("level", 2, _F.TYPE_INT64, _ONE, ""),
            ("short", 3, _F.TYPE_BYTES, _ONE, ""),
            ("detail", 4, _F.TYPE_BYTES, _MANY, ""),
            ("url", 5, _F.TYPE_STRING, _ONE, ""),
        ],
    ),
    (
        "StatusResponse",
        [
            ("vertexes", 1, _F.TYPE_MESSAGE, _MANY, f".{_PACKAGE}.Vertex"),
            ("statuses", 2, _F.TYPE_MESSAGE, _MANY, f".{_PACKAGE}.VertexStatus"),
            ("logs", 3, _F.TYPE_MESSAGE, _MANY, f".{_PACKAGE}.VertexLog"),
            ("warnings", 4, _F.TYPE_MESSAGE, _MANY, f".{_PACKAGE}.VertexWarning"),
        ],
    ),
]


class TraceDecodeError(ValueError):
    """An `aux` payload that is not a StatusResponse."""


@cache
def _status_response_class() -> Any:
    file = descriptor_pb2.FileDescriptorProto(
        name="click_deploy/buildkit_status.proto", package=_PACKAGE, syntax="proto3"
    )
    file.dependency.append("google/protobuf/timestamp.proto")
    for message_name, fields in _MESSAGES:
        message = file.message_type.add(name=message_name)
        for name, number, kind, label, type_name in fields:
            field = message.field.add(name=name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name
    pool = descriptor_pool.DescriptorPool()  # private: never clashes with other users
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(timestamp_pb2.DESCRIPTOR.serialized_pb))
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.StatusResponse"))


def _time(message: Any, name: str) -> datetime | None:
    if not message.HasField(name):
        return None
    stamp = getattr(message, name)
    seconds: int = stamp.seconds
    nanos: int = stamp.nanos
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=nanos // 1000)


def decode_status_response(payload: bytes) -> SolveStatus:
    """A serialized StatusResponse → SolveStatus."""
    try:
        response = _status_response_class().FromString(payload)
    except DecodeError as error:
        raise TraceDecodeError(f"not a BuildKit StatusResponse: {error}") from None
    return SolveStatus(
        vertexes=tuple(
            Vertex(
                digest=v.digest,
                name=v.name,
                inputs=tuple(v.inputs),
                cached=v.cached,
                started=_time(v, "started"),
                completed=_time(v, "completed"),
                error=v.error,
            )
            for v in response.vertexes
        ),
        statuses=tuple(
            VertexStatus(
                id=s.id,
                vertex=s.vertex,
                name=s.name,
                current=s.current,
                total=s.total,
                timestamp=_time(s, "timestamp"),
                started=_time(s, "started"),
                completed=_time(s, "completed"),
            )
            for s in response.statuses
        ),
        logs=tuple(
            VertexLog(
                vertex=entry.vertex,
                stream=entry.stream,
                data=entry.msg,
                timestamp=_time(entry, "timestamp"),
            )
            for entry in response.logs
        ),
        warnings=tuple(
            VertexWarning(
                vertex=w.vertex,
                level=w.level,
                short=w.short,
                detail=tuple(w.detail),
                url=w.url,
            )
            for w in response.warnings
        ),
    )


def decode_trace(aux: str | bytes) -> SolveStatus:
    """The `aux` of a `moby.buildkit.trace` line (base64 text) → SolveStatus."""
    try:
        payload = base64.b64decode(aux, validate=True)
    except (binascii.Error, ValueError) as error:
        raise TraceDecodeError(f"trace payload is not base64: {error}") from None
    return decode_status_response(payload)
