"""What the planner hands the build layer: a frozen, JSON-serializable plan, or a reason."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

Level = Literal["info", "warning", "suggestion"]
Kind = Literal["web", "worker"]  # a worker has no port and no HTTP check

PORT_ENV = "PORT"
DEFAULT_PORT = 8080


class Message(NamedTuple):
    """A line for the person deploying: what was assumed, what looks wrong, what to try."""

    level: Level
    text: str

    def to_dict(self) -> dict[str, str]:
        return {"level": self.level, "text": self.text}


def _frozen_mapping(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True)
class BuildPlan:
    """How to build one service. `dockerfile` is the Dockerfile's text (the repo's own, or a
    generated one); paths are relative to the repository root, POSIX-style."""

    runtime: str  # node, python, go, php, ruby, static, or "dockerfile" for the repo's own
    version: str | None
    context_dir: str
    dockerfile: str
    dockerfile_path: str | None = None  # the repo's own Dockerfile; None when generated
    target: str | None = None
    # Docker build args of the repo's own Dockerfile (its ARGs): not secret, a RUN that
    # uses one writes it into the image's history.
    build_args: Mapping[str, str] = field(default_factory=dict)
    # The build env, as BuildKit secrets (name → value): shown by name only.
    secrets: Mapping[str, str] = field(default_factory=dict)
    dockerignore: str | None = None  # write it to the context when the repo has none
    install: str | None = None
    build: str | None = None
    start: str | None = None
    port_env: str = PORT_ENV
    kind: Kind = "web"
    evidence: tuple[str, ...] = ()
    messages: tuple[Message, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "build_args", _frozen_mapping(self.build_args))
        object.__setattr__(self, "secrets", _frozen_mapping(self.secrets))
        object.__setattr__(self, "evidence", tuple(self.evidence))
        object.__setattr__(self, "messages", tuple(Message(*item) for item in self.messages))

    @property
    def generated(self) -> bool:
        return self.dockerfile_path is None

    @property
    def port(self) -> int | None:
        """The port the app listens on ($PORT), or None for a worker: nothing to route to
        and nothing to check over HTTP."""
        return None if self.kind == "worker" else DEFAULT_PORT

    def to_dict(self) -> dict[str, Any]:
        """`kind` and `port` are only present for a worker (`"kind": "worker", "port":
        null`): a plan without them is a web service on $PORT."""
        worker: dict[str, Any] = {"kind": "worker", "port": None} if self.kind == "worker" else {}
        return {
            "runtime": self.runtime,
            "version": self.version,
            "context_dir": self.context_dir,
            "dockerfile_path": self.dockerfile_path,
            "target": self.target,
            "build_args": dict(sorted(self.build_args.items())),
            "secrets": sorted(self.secrets),  # names: the values are never shown
            "install": self.install,
            "build": self.build,
            "start": self.start,
            "port_env": self.port_env,
            **worker,
            "evidence": list(self.evidence),
            "messages": [message.to_dict() for message in self.messages],
            "dockerignore": self.dockerignore,
            "dockerfile": self.dockerfile,
        }


@dataclass(frozen=True)
class PlanResult:
    """The planner's answer. Not `ok`: `message` says why, for a person."""

    ok: bool
    plan: BuildPlan | None = None
    message: str | None = None
    # A failure because no runtime was detected (what another builder may still plan).
    no_runtime: bool = False

    @classmethod
    def success(cls, plan: BuildPlan) -> PlanResult:
        return cls(ok=True, plan=plan)

    @classmethod
    def failure(cls, message: str, *, no_runtime: bool = False) -> PlanResult:
        return cls(ok=False, message=message, no_runtime=no_runtime)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "message": self.message,
            "plan": self.plan.to_dict() if self.plan is not None else None,
        }
