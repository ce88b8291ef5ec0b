"""The builder the settings name: DOCKER_HOST or BUILDKIT_ADDRESS checked, one builder per
daemon, several daemons behind a `BuilderPool`. Apart from `builder.py` so that the transports
can import the interface without importing each other."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pipeline.buildkit.buildctl import BuildctlBuilder, find_buildctl
from pipeline.buildkit.builder import Builder
from pipeline.buildkit.engine import EngineBuilder
from pipeline.buildkit.pool import BuilderPool
from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.settings import Settings


def _check_address(variable: str, value: str, schemes: tuple[str, ...], example: str) -> None:
    try:
        parts = urlsplit(value)
    except ValueError:  # "tcp://[::1": an unclosed IPv6 bracket
        raise ConfigError(f"{variable} must look like {example} (got {value!r})") from None
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
    timeout = settings.build_timeout_seconds
    addresses = builder_addresses(settings)
    builders: dict[str, Builder]
    if settings.builder == "docker":
        builders = {
            address: EngineBuilder(address, timeout=timeout, network=settings.build_network)
            for address in addresses
        }
        kind = "docker engine"
    else:
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
