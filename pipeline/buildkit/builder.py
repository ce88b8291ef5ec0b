"""The builder interface: build a context with a Dockerfile into an image and push it.

Two transports implement it: `engine.EngineBuilder` (a Docker engine's embedded BuildKit,
BUILDER=docker) and `buildctl.BuildctlBuilder` (a standalone buildkitd through `buildctl`,
BUILDER=buildkitd). `make_builder` picks one from the settings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from pydantic import SecretStr

from pipeline.buildkit.errors import BuildFailed
from pipeline.buildkit.events import BuildEvent, FailedStep
from pipeline.errors import ConfigError, DeploymentFailure

if TYPE_CHECKING:
    from pipeline.settings import Settings

DEFAULT_REGISTRY = "docker.io"
METADATA_PREFIX = "[internal] load metadata for "


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
    build_args: Mapping[str, str] = field(default_factory=dict)
    credentials: RegistryCredentials | None = None
    cache_ref: str | None = None  # a registry cache (buildkitd): …/web:buildcache
    insecure_registry: bool = False  # the registry speaks plain HTTP (not needed for localhost)

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


def _check_address(variable: str, value: str, schemes: tuple[str, ...], example: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not (parts.path if parts.scheme == "unix" else parts.netloc):
        raise ConfigError(f"{variable} must look like {example} (got {value!r})")


def make_builder(settings: Settings, *, buildctl: str = "buildctl") -> Builder:
    """The builder BUILDER names, checked: a bad configuration names its variables."""
    timeout = settings.build_timeout_seconds
    if settings.builder == "docker":
        from pipeline.buildkit.engine import EngineBuilder

        _check_address(
            "DOCKER_HOST",
            settings.docker_host,
            ("unix", "tcp", "http"),
            "unix:///var/run/docker.sock or tcp://host:2375",
        )
        return EngineBuilder(settings.docker_host, timeout=timeout)

    from pipeline.buildkit.buildctl import BuildctlBuilder, find_buildctl

    address = settings.buildkit_address
    if not address:
        raise ConfigError(
            "BUILDER=buildkitd needs BUILDKIT_ADDRESS "
            "(unix:///run/buildkit/buildkitd.sock or tcp://host:1234)"
        )
    _check_address(
        "BUILDKIT_ADDRESS",
        address,
        ("unix", "tcp", "docker-container", "kube-pod", "podman-container", "ssh"),
        "unix:///run/buildkit/buildkitd.sock or tcp://host:1234",
    )
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
    if any(tls.values()) and not address.startswith("tcp://"):
        raise ConfigError("BUILDKIT_TLS_* only apply to a tcp:// BUILDKIT_ADDRESS")
    return BuildctlBuilder(
        address,
        tls_ca=settings.buildkit_tls_ca,
        tls_cert=settings.buildkit_tls_cert,
        tls_key=settings.buildkit_tls_key,
        buildctl=find_buildctl(buildctl),
        timeout=timeout,
    )
