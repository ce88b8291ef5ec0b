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
from urllib.parse import urlsplit

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
from pipeline.errors import ConfigError, DeploymentFailure

if TYPE_CHECKING:
    from pipeline.settings import Settings

DEFAULT_REGISTRY = "docker.io"
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
        return ImageReference.parse(self.image).registry

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
        return f"{ImageReference.parse(self.reference).repository}@{self.digest}"


class Builder(Protocol):
    async def build(
        self, request: BuildRequest, on_event: Callable[[BuildEvent], None]
    ) -> BuiltImage:
        """Build `request` with BuildKit and push it; report progress through `on_event`.

        Raises `BuildFailed`/`BuildTimedOut`/`RegistryAuthFailed` (DeploymentFailure) or
        `BuilderUnavailable`/`RegistryUnavailable` (TransientError). Cancelling the call
        stops the build on the builder too."""
        ...


@dataclass(frozen=True, slots=True)
class ImageReference:
    registry: str  # host[:port], "docker.io" when the name has none
    path: str  # click-deploy/web
    tag: str | None
    digest: str | None
    explicit_registry: bool

    @property
    def repository(self) -> str:
        """The name to push: registry/path as written (no tag, no digest)."""
        return f"{self.registry}/{self.path}" if self.explicit_registry else self.path

    @classmethod
    def parse(cls, reference: str) -> ImageReference:
        name, _, digest = reference.partition("@")
        slash = name.rfind("/")
        colon = name.rfind(":")
        tag = None
        if colon > slash:
            name, tag = name[:colon], name[colon + 1 :]
        first, _, rest = name.partition("/")
        explicit = bool(rest) and ("." in first or ":" in first or first == "localhost")
        registry, path = (first, rest) if explicit else (DEFAULT_REGISTRY, name)
        if not path or tag == "" or any(part == "" for part in path.split("/")):
            raise DeploymentFailure(f"invalid image reference {reference!r}")
        return cls(registry, path, tag, digest or None, explicit)


def cache_ref_for(image: str) -> str:
    """The registry cache next to an image: same repository, tag `buildcache`."""
    return f"{ImageReference.parse(image).repository}:buildcache"


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


def _check_address(variable: str, value: str, schemes: tuple[str, ...], example: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not (parts.path if parts.scheme == "unix" else parts.netloc):
        raise ConfigError(f"{variable} must look like {example} (got {value!r})")


DOCKER_SCHEMES = ("unix", "tcp", "http")
DOCKER_EXAMPLE = "unix:///var/run/docker.sock or tcp://host:2375"
BUILDKITD_SCHEMES = ("unix", "tcp", "docker-container", "kube-pod", "podman-container", "ssh")
BUILDKITD_EXAMPLE = "unix:///run/buildkit/buildkitd.sock or tcp://host:1234"


def parse_addresses(
    variable: str, value: str, schemes: tuple[str, ...], example: str
) -> tuple[str, ...]:
    """One daemon address, or several separated by commas, each checked; in order."""
    addresses = tuple(item.strip() for item in value.split(",") if item.strip())
    if not addresses:
        raise ConfigError(f"{variable} must look like {example} (got {value!r})")
    for address in addresses:
        _check_address(variable, address, schemes, example)
    seen: set[str] = set()
    for address in addresses:
        if address in seen:
            raise ConfigError(f"{variable} names {address} twice")
        seen.add(address)
    return addresses


def builder_addresses(settings: Settings) -> tuple[str, ...]:
    """The daemons the settings name (DOCKER_HOST or BUILDKIT_ADDRESS), checked."""
    if settings.builder == "docker":
        return parse_addresses("DOCKER_HOST", settings.docker_host, DOCKER_SCHEMES, DOCKER_EXAMPLE)
    if not settings.buildkit_address:
        raise ConfigError(f"BUILDER=buildkitd needs BUILDKIT_ADDRESS ({BUILDKITD_EXAMPLE})")
    return parse_addresses(
        "BUILDKIT_ADDRESS", settings.buildkit_address, BUILDKITD_SCHEMES, BUILDKITD_EXAMPLE
    )


def make_builder(settings: Settings, *, buildctl: str = "buildctl") -> Builder:
    """The builder BUILDER names, checked: a bad configuration names its variables. Several
    addresses give a `BuilderPool` of one builder each; one gives that builder itself."""
    from pipeline.buildkit.pool import BuilderPool

    timeout = settings.build_timeout_seconds
    addresses = builder_addresses(settings)
    builders: dict[str, Builder]
    if settings.builder == "docker":
        from pipeline.buildkit.engine import EngineBuilder

        builders = {
            address: EngineBuilder(address, timeout=timeout, network=settings.build_network)
            for address in addresses
        }
        kind = "docker engine"
    else:
        from pipeline.buildkit.buildctl import BuildctlBuilder, find_buildctl

        tls = {
            "BUILDKIT_TLS_CA": settings.buildkit_tls_ca,
            "BUILDKIT_TLS_CERT": settings.buildkit_tls_cert,
            "BUILDKIT_TLS_KEY": settings.buildkit_tls_key,
        }
        for variable, path in tls.items():
            if path is not None and not path.is_file():
                raise ConfigError(f"{variable}: no such file {path}")
        if (settings.buildkit_tls_cert is None) != (settings.buildkit_tls_key is None):
            raise ConfigError("BUILDKIT_TLS_CERT and BUILDKIT_TLS_KEY must be set together")
        if any(tls.values()) and not all(a.startswith("tcp://") for a in addresses):
            raise ConfigError("BUILDKIT_TLS_* only apply to a tcp:// BUILDKIT_ADDRESS")
        executable = find_buildctl(buildctl)
        builders = {
            address: BuildctlBuilder(
                address,
                tls_ca=settings.buildkit_tls_ca,
                tls_cert=settings.buildkit_tls_cert,
                tls_key=settings.buildkit_tls_key,
                buildctl=executable,
                timeout=timeout,
                network=settings.build_network,
            )
            for address in addresses
        }
        kind = "buildkitd"
    if len(builders) == 1:
        return next(iter(builders.values()))
    return BuilderPool(builders, kind=kind)
