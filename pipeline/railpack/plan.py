"""Railpack's plan.json and info.json, read into typed values.

The shapes are Railpack's (`core/plan`: BuildPlan, Step, Layer, the four commands;
`core.BuildResult` for info.json). Keys Railpack may add later are ignored; a file that
does not have the shape is a `RailpackError` naming what is wrong, never a traceback.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.errors import DeploymentFailure


class RailpackError(DeploymentFailure):
    """Railpack could not plan the app, or its output cannot be built; one message."""


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class Layer(_Lenient):
    """A step's input: an image, another step's result, or the app's files (`local`),
    filtered by `include` / `exclude` paths."""

    image: str | None = None
    step: str | None = None
    local: bool = False
    spread: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


class ExecCommand(_Lenient):
    cmd: str
    custom_name: str | None = Field(default=None, alias="customName")


class PathCommand(_Lenient):
    path: str


class CopyCommand(_Lenient):
    src: str
    dest: str
    image: str | None = None


class FileCommand(_Lenient):
    path: str
    name: str
    mode: int | None = None  # Go's os.FileMode: a number (0o755 is 493)
    custom_name: str | None = Field(default=None, alias="customName")


Command = ExecCommand | PathCommand | CopyCommand | FileCommand


def _command(value: Any) -> Command:
    """Railpack tells its commands apart by their keys (`UnmarshalCommand`); a plain string
    is a command to run."""
    if isinstance(value, str):
        return ExecCommand(cmd=value)
    if not isinstance(value, dict):
        raise ValueError(f"a command must be an object, not {type(value).__name__}")
    if "cmd" in value:
        return ExecCommand.model_validate(value)
    if "src" in value:
        return CopyCommand.model_validate(value)
    if "name" in value:
        return FileCommand.model_validate(value)
    if "path" in value:
        return PathCommand.model_validate(value)
    raise ValueError(f"unknown command with keys {', '.join(sorted(value)) or 'none'}")


def _layer(value: Any) -> Any:
    """The short forms Railpack accepts for an input: ".", "...", "$step"."""
    if value == ".":
        return {"local": True, "include": ["."]}
    if value == "...":
        return {"spread": True}
    if isinstance(value, str) and value.startswith("$"):
        return {"step": value[1:]}
    return value


class Step(_Lenient):
    name: str
    inputs: tuple[Layer, ...] = ()
    commands: tuple[Command, ...] = ()
    secrets: tuple[str, ...] = ()
    assets: dict[str, str] = Field(default_factory=dict)
    variables: dict[str, str] = Field(default_factory=dict)
    caches: tuple[str, ...] = ()

    @field_validator("inputs", mode="before")
    @classmethod
    def _inputs(cls, value: Any) -> Any:
        return [_layer(item) for item in value] if isinstance(value, list) else value

    @field_validator("commands", mode="before")
    @classmethod
    def _commands(cls, value: Any) -> Any:
        return [_command(item) for item in value] if isinstance(value, list) else value


class Cache(_Lenient):
    directory: str
    type: Literal["shared", "locked"] = "shared"


class Deploy(_Lenient):
    base: Layer = Field(default_factory=Layer)
    inputs: tuple[Layer, ...] = ()
    start_command: str | None = Field(default=None, alias="startCommand")
    variables: dict[str, str] = Field(default_factory=dict)
    paths: tuple[str, ...] = ()

    @field_validator("inputs", mode="before")
    @classmethod
    def _inputs(cls, value: Any) -> Any:
        return [_layer(item) for item in value] if isinstance(value, list) else value


class RailpackPlan(_Lenient):
    """plan.json (`railpack prepare --plan-out`)."""

    steps: tuple[Step, ...] = ()
    caches: dict[str, Cache] = Field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    deploy: Deploy = Field(default_factory=Deploy)
    exclude: tuple[str, ...] = ()


class LogLine(_Lenient):
    level: str = "info"
    msg: str = ""

    @classmethod
    def read(cls, value: Any) -> LogLine:
        """Railpack's logger.Msg is written without JSON tags by some versions (Level, Msg)
        and with them by others (level, msg)."""
        if isinstance(value, dict):
            lowered = {str(key).lower(): item for key, item in value.items()}
            return cls(level=str(lowered.get("level", "info")), msg=str(lowered.get("msg", "")))
        return cls(msg=str(value))


class ResolvedPackage(_Lenient):
    name: str
    requested_version: str | None = Field(default=None, alias="requestedVersion")
    resolved_version: str | None = Field(default=None, alias="resolvedVersion")
    source: str = ""


class RailpackInfo(_Lenient):
    """info.json (`railpack prepare --info-out`): Railpack's BuildResult without the plan."""

    railpack_version: str | None = Field(default=None, alias="railpackVersion")
    resolved_packages: dict[str, ResolvedPackage] = Field(
        default_factory=dict, alias="resolvedPackages"
    )
    metadata: dict[str, str] = Field(default_factory=dict)
    detected_providers: tuple[str, ...] = Field(default=(), alias="detectedProviders")
    logs: tuple[LogLine, ...] = ()
    success: bool = False

    @field_validator("logs", mode="before")
    @classmethod
    def _logs(cls, value: Any) -> Any:
        return [LogLine.read(item) for item in value] if isinstance(value, list) else value


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors()[:3]:
        where = ".".join(str(part) for part in item.get("loc", ()))
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


def _load(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as error:
        raise RailpackError(f"railpack wrote a {what} that is not JSON ({error})") from None
    if not isinstance(data, dict):
        raise RailpackError(f"railpack wrote a {what} that is not a JSON object")
    return data


def parse_plan(text: str) -> RailpackPlan:
    try:
        return RailpackPlan.model_validate(_load(text, "plan"))
    except ValidationError as error:
        raise RailpackError(f"railpack's plan cannot be read: {_describe(error)}") from None


def parse_info(text: str) -> RailpackInfo:
    try:
        return RailpackInfo.model_validate(_load(text, "build info"))
    except ValidationError as error:
        raise RailpackError(f"railpack's build info cannot be read: {_describe(error)}") from None
