"""What a build reports while it runs, and the pure tracker that produces it.

Both transports turn BuildKit's raw progress (`status.SolveStatus`) into these events
through one `ProgressTracker`: each step's start, its end (done, cached or failed) once,
and its output as whole lines.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from pipeline.buildkit.status import STDERR, SolveStatus, Vertex, VertexLog

Stream = Literal["stdout", "stderr"]

LOG_TAIL_LINES = 50
MAX_LINE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class StepStarted:
    step_id: str  # the vertex digest
    name: str  # e.g. "[2/4] RUN pip install -r requirements.txt"


@dataclass(frozen=True, slots=True)
class StepCached:
    step_id: str
    name: str


@dataclass(frozen=True, slots=True)
class StepDone:
    step_id: str
    name: str
    seconds: float


@dataclass(frozen=True, slots=True)
class StepFailed:
    step_id: str
    name: str
    error: str


@dataclass(frozen=True, slots=True)
class BuildLog:
    step_id: str
    name: str
    stream: Stream
    line: str


@dataclass(frozen=True, slots=True)
class BuildWarning:
    message: str


BuildEvent = StepStarted | StepCached | StepDone | StepFailed | BuildLog | BuildWarning


@dataclass(frozen=True, slots=True)
class FailedStep:
    """The step a failed build is blamed on, with the end of its output."""

    step_id: str
    name: str
    error: str
    log_tail: tuple[str, ...]


@dataclass(slots=True)
class _Step:
    name: str
    started: bool = False
    finished: bool = False  # done or cached reported
    failed: bool = False
    error: str = ""
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_TAIL_LINES))


def _is_cancellation(error: str) -> bool:
    lowered = error.lower()
    return "context canceled" in lowered or "context cancelled" in lowered


class ProgressTracker:
    """Turns raw SolveStatus updates into events, each transition of a step once.

    BuildKit resends a vertex whole on every change, may start a finished vertex again,
    and may mark a finished one cached afterwards; a step is reported started at most once
    and finished (done or cached) at most once. A failure is always reported, once. Log
    chunks are split into lines; a partial line waits for the rest of it (per step and
    stream) until the step ends or `flush()` is called.
    """

    def __init__(self, *, log_tail: int = LOG_TAIL_LINES, max_line: int = MAX_LINE_BYTES):
        self._steps: dict[str, _Step] = {}
        self._partial: dict[tuple[str, int], bytearray] = {}
        self._failures: list[str] = []
        self._warnings: set[tuple[str, bytes]] = set()
        self._log_tail = log_tail
        self._max_line = max_line

    def feed(self, status: SolveStatus) -> list[BuildEvent]:
        events: list[BuildEvent] = []
        for vertex in status.vertexes:
            self._vertex(vertex, events)
        for log in status.logs:
            self._log(log, events)
        for warning in status.warnings:
            key = (warning.vertex, warning.short)
            if key in self._warnings:
                continue
            self._warnings.add(key)
            message = warning.short.decode("utf-8", "replace").strip()
            if warning.url:
                message = f"{message} ({warning.url})"
            events.append(BuildWarning(message))
        return events

    def flush(self) -> list[BuildEvent]:
        """Report every partial line still buffered (at the end of the build)."""
        events: list[BuildEvent] = []
        for digest, stream in list(self._partial):
            self._flush_partial(digest, stream, events)
        return events

    def step_name(self, step_id: str) -> str:
        step = self._steps.get(step_id)
        return step.name if step else ""

    def log_tail(self, step_id: str) -> tuple[str, ...]:
        step = self._steps.get(step_id)
        return tuple(step.tail) if step else ()

    def failed_step(self) -> FailedStep | None:
        """The step to blame: the first that failed for a reason other than the
        cancellation BuildKit spreads to its siblings, else the first that failed."""
        if not self._failures:
            return None
        chosen = next(
            (d for d in self._failures if not _is_cancellation(self._steps[d].error)),
            self._failures[0],
        )
        step = self._steps[chosen]
        return FailedStep(chosen, step.name, step.error, tuple(step.tail))

    # -- internals -------------------------------------------------------------------

    def _step(self, digest: str, name: str = "") -> _Step:
        step = self._steps.get(digest)
        if step is None:
            step = self._steps[digest] = _Step(name, tail=deque(maxlen=self._log_tail))
        elif name:
            step.name = name
        return step

    def _vertex(self, vertex: Vertex, events: list[BuildEvent]) -> None:
        step = self._step(vertex.digest, vertex.name)
        if step.failed:
            return
        if vertex.error:
            self._flush_step(vertex.digest, events)
            step.failed = True
            step.error = vertex.error
            self._failures.append(vertex.digest)
            events.append(StepFailed(vertex.digest, step.name, vertex.error))
            return
        if step.finished:
            return
        if vertex.cached:
            step.finished = True
            events.append(StepCached(vertex.digest, step.name))
            return
        if vertex.started is not None and not step.started:
            step.started = True
            events.append(StepStarted(vertex.digest, step.name))
        if vertex.completed is not None:
            if not step.started:  # completed without a start ever seen
                step.started = True
                events.append(StepStarted(vertex.digest, step.name))
            self._flush_step(vertex.digest, events)
            step.finished = True
            seconds = 0.0
            if vertex.started is not None:
                seconds = max((vertex.completed - vertex.started).total_seconds(), 0.0)
            events.append(StepDone(vertex.digest, step.name, seconds))

    def _log(self, log: VertexLog, events: list[BuildEvent]) -> None:
        key = (log.vertex, log.stream)
        buffer = self._partial.setdefault(key, bytearray())
        buffer += log.data
        step = self._step(log.vertex)
        while True:
            newline = buffer.find(b"\n")
            if newline < 0:
                break
            self._emit_line(log.vertex, step, log.stream, bytes(buffer[:newline]), events)
            del buffer[: newline + 1]
        if len(buffer) > self._max_line:
            self._emit_line(log.vertex, step, log.stream, bytes(buffer), events)
            buffer.clear()
        if not buffer:
            del self._partial[key]

    def _emit_line(
        self, digest: str, step: _Step, stream: int, raw: bytes, events: list[BuildEvent]
    ) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        if "\r" in text:  # a progress bar redrawn in place: keep what a terminal would show
            text = text.rsplit("\r", 1)[-1]
        step.tail.append(text)
        name: Stream = "stderr" if stream == STDERR else "stdout"
        events.append(BuildLog(digest, step.name, name, text))

    def _flush_step(self, digest: str, events: list[BuildEvent]) -> None:
        for key_digest, stream in [key for key in self._partial if key[0] == digest]:
            self._flush_partial(key_digest, stream, events)

    def _flush_partial(self, digest: str, stream: int, events: list[BuildEvent]) -> None:
        buffer = self._partial.pop((digest, stream), None)
        if buffer:
            self._emit_line(digest, self._step(digest), stream, bytes(buffer), events)
