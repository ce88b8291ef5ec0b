"""BuildKit's progress stream as plain values, whichever transport it came through.

Both the Docker engine (`moby.buildkit.trace`, protobuf) and `buildctl --progress=rawjson`
(JSON) carry BuildKit's `SolveStatus`; `trace.py` and `rawjson.py` decode them into these
types so that `events.ProgressTracker` has one input shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

STDOUT = 1
STDERR = 2


@dataclass(frozen=True, slots=True)
class Vertex:
    """One node of the build graph; BuildKit resends the whole vertex on every change."""

    digest: str
    name: str = ""
    inputs: tuple[str, ...] = ()
    cached: bool = False
    started: datetime | None = None
    completed: datetime | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class VertexStatus:
    """Progress of a sub-task of a vertex (a transfer, a layer push)."""

    id: str
    vertex: str = ""
    name: str = ""
    current: int = 0
    total: int = 0
    timestamp: datetime | None = None
    started: datetime | None = None
    completed: datetime | None = None


@dataclass(frozen=True, slots=True)
class VertexLog:
    """A chunk of a process's output: not split into lines, maybe ending mid-line."""

    vertex: str
    stream: int  # 1 stdout, 2 stderr
    data: bytes
    timestamp: datetime | None = None


@dataclass(frozen=True, slots=True)
class VertexWarning:
    vertex: str
    level: int = 0
    short: bytes = b""
    detail: tuple[bytes, ...] = ()
    url: str = ""


@dataclass(frozen=True, slots=True)
class SolveStatus:
    vertexes: tuple[Vertex, ...] = ()
    statuses: tuple[VertexStatus, ...] = ()
    logs: tuple[VertexLog, ...] = ()
    warnings: tuple[VertexWarning, ...] = field(default=())
