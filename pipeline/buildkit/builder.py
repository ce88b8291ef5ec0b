"""The builder interface: build a context with a Dockerfile into an image and push it.

Two transports implement it: `engine.EngineBuilder` (a Docker engine's embedded BuildKit,
BUILDER=docker) and `buildctl.BuildctlBuilder` (a standalone buildkitd through `buildctl`,
BUILDER=buildkitd). `make_builder` picks one from the settings; DOCKER_HOST and
BUILDKIT_ADDRESS may list several daemons (comma-separated), which `pool.BuilderPool`
shares out by service.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pydantic import SecretStr

from pipeline.buildkit.errors import BuildFailed
from pipeline.buildkit.events import (
    BuildEvent,
    BuildLog,
    BuildWarning,
    FailedStep,
    StepCached,
    StepDone,
    StepFailed,
    StepStarted,
)
from pipeline.registry.reference import parse_reference

if TYPE_CHECKING:
    pass

METADATA_PREFIX = "[internal] load metadata for "
REDACT_MIN_LENGTH = 4


@dataclass(frozen=True, slots=True)
class RegistryCredentials:
    """Credentials for one registry: used to push, and to pull private base images."""

    username: str
    password: SecretStr
    registry: str | None = None  # host[:port]; None: the registry of the pushed image


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildRequest:
    context_dir: Path
    dockerfile: str  # the Dockerfile's text; it need not exist in the context
    image: str  # the full reference to tag and push: localhost:5001/click-deploy/web:abc123
    dockerignore: str | None = None  # applied instead of the context's own .dockerignore
    target: str | None = None
    # Build args are not secret: they are on buildctl's command line, and a Dockerfile
    # that uses one in a RUN writes it into the image's history.
    build_args: Mapping[str, str] = field(default_factory=dict)
    # BuildKit secrets (id → value): `RUN --mount=type=secret,id=ID` reads them from
    # /run/secrets/ID. They never reach argv, the image, its history or the build cache.
    secrets: Mapping[str, SecretStr] = field(default_factory=dict)
    credentials: RegistryCredentials | None = None
    cache_ref: str | None = None  # a registry cache (buildkitd): …/web:buildcache
    insecure_registry: bool = False  # the registry speaks plain HTTP (not needed for localhost)
    # The checkout the context is part of: files read from the context (.dockerignore)
    # must not lead out of it. None: the context directory itself.
    checkout_dir: Path | None = None
    # What picks the daemon when there are several (the service): the same key always goes
    # to the same daemon, whose cache it then finds. None: the image's repository.
    affinity_key: str | None = None

    def secret_values(self) -> list[str]:
        """The secrets' values, for redacting them from anything shown (not the shortest:
        hiding every "1" or "dev" in a build's output would hide the output)."""
        values = (value.get_secret_value() for value in self.secrets.values())
        return [value for value in values if len(value) >= REDACT_MIN_LENGTH]

    @property
    def registry(self) -> str:
        return parse_reference(self.image).host

    @property
    def credentials_registry(self) -> str | None:
        if self.credentials is None:
            return None
        return self.credentials.registry or self.registry


@dataclass(frozen=True, slots=True)
class BuiltImage:
    reference: str  # what was pushed: registry/repository:tag
    digest: str  # the manifest digest the registry stored: sha256:…

    @property
    def pinned(self) -> str:
        """The reference by digest, for deploying exactly this image."""
        return f"{parse_reference(self.reference).name}@{self.digest}"


class Builder(Protocol):
    async def build(
        self, request: BuildRequest, on_event: Callable[[BuildEvent], None]
    ) -> BuiltImage:
        """Build `request` with BuildKit and push it; report progress through `on_event`.

        Raises `BuildFailed`/`BuildTimedOut`/`RegistryAuthError` (DeploymentFailure) or
        `BuilderUnavailable`/`RegistryUnavailable` (TransientError). Cancelling the call
        stops the build on the builder too."""
        ...


def cache_ref_for(image: str) -> str:
    """The registry cache next to an image: same repository, tag `buildcache`."""
    return f"{parse_reference(image).name}:buildcache"


def redact(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def build_failure(failed: FailedStep | None, overall: str, detail: str = "") -> BuildFailed:
    """The user-facing failure of a build from the step BuildKit blamed, if any."""
    overall = overall.strip()
    if failed is None:
        message = overall or "the build failed"
        return BuildFailed(message, error=overall, detail=detail)
    if failed.name.startswith(METADATA_PREFIX):
        image = failed.name.removeprefix(METADATA_PREFIX)
        message = f"base image {image} could not be pulled: {failed.error}"
    else:
        message = f"step {failed.name} failed: {failed.error}"
    return BuildFailed(
        message, step=failed.name, error=failed.error, log_tail=failed.log_tail, detail=detail
    )


def redact_event(event: BuildEvent, hidden: Sequence[str]) -> BuildEvent:
    """`event` with every `hidden` value in its text replaced by ***."""
    if not any(hidden):
        return event
    if isinstance(event, BuildLog):
        return replace(event, line=redact(event.line, *hidden))
    if isinstance(event, StepFailed):
        return replace(event, error=redact(event.error, *hidden))
    if isinstance(event, BuildWarning):
        return replace(event, message=redact(event.message, *hidden))
    return event


class OpenSteps:
    """Forwards a build's events and remembers the steps that started and have not ended,
    so a build that breaks off (the daemon went away, a timeout, a cancel) can close them
    as failed instead of leaving them running for ever. A RUN that prints a secret shows
    *** instead: `hidden` values never leave through the events."""

    def __init__(self, on_event: Callable[[BuildEvent], None], hidden: Sequence[str] = ()) -> None:
        self._on_event = on_event
        self._hidden = [value for value in hidden if value]
        self._open: dict[str, str] = {}
        self.seen = False  # any event at all: the daemon took the build

    def __call__(self, event: BuildEvent) -> None:
        self.seen = True
        event = redact_event(event, self._hidden)
        if isinstance(event, StepStarted):
            self._open[event.step_id] = event.name
        elif isinstance(event, StepDone | StepCached | StepFailed):
            self._open.pop(event.step_id, None)
        self._on_event(event)

    def interrupt(self, reason: str) -> None:
        """Report every step still open as failed with `reason`."""
        open_steps, self._open = self._open, {}
        for step_id, name in open_steps.items():
            self._on_event(StepFailed(step_id, name, redact(reason, *self._hidden)))
