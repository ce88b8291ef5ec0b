"""Procfile: `web: <command>` is the start command, whatever the runtime."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.plan.app import App

PROCFILE = "Procfile"
_LINE = re.compile(r"^([A-Za-z0-9_-]+)\s*:\s*(.*?)\s*$")


@dataclass(frozen=True)
class Procfile:
    processes: dict[str, str]

    @property
    def web(self) -> str | None:
        return self.processes.get("web")

    @property
    def others(self) -> list[str]:
        return [name for name in self.processes if name != "web"]


def parse_procfile(text: str) -> Procfile:
    processes: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line.strip())
        if match and match.group(2):
            processes.setdefault(match.group(1), match.group(2))
    return Procfile(processes)


def read_procfile(app: App) -> Procfile | None:
    text = app.read_optional(PROCFILE)
    return parse_procfile(text) if text is not None else None
