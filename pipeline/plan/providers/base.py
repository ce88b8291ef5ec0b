"""The provider interface (after Railpack's `core/providers`).

`detect` only looks for files; anything that parses (and can fail) happens in `plan`,
which writes a layout, evidence and messages into the context, or calls `ctx.fail`.
A file that does not parse raises `InvalidFile`, which the planner turns into a failed
result.
"""

from __future__ import annotations

from typing import Protocol

from pipeline.plan.app import App
from pipeline.plan.context import PlanContext


class Provider(Protocol):
    @property
    def name(self) -> str:
        """The runtime's name, as `provider = "…"` forces it."""

    @property
    def looks_for(self) -> tuple[str, ...]:
        """The files `detect` looks for, for the "nothing detected" message."""

    @property
    def start_help(self) -> str:
        """How to give the app a start command when none was found."""

    def detect(self, app: App) -> bool: ...

    def plan(self, app: App, ctx: PlanContext) -> None: ...
