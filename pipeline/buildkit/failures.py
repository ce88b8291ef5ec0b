"""How both transports turn what failed into one message: registry errors classified (auth,
unreachable), the failed step of a build, the values a message must hide."""

from __future__ import annotations

import re
from dataclasses import replace

from pipeline.buildkit.builder import METADATA_PREFIX, BuildRequest, build_failure, redact
from pipeline.buildkit.events import FailedStep
from pipeline.errors import ClickDeployError
from pipeline.registry.errors import RegistryAuthError, RegistryUnavailable

_AUTH = re.compile(
    r"unauthori[sz]ed|authentication required|no basic auth credentials|\bdenied\b"
    r"|forbidden|\b401\b|\b403\b|insufficient_scope|no active sessions",
    re.IGNORECASE,
)
_UNREACHABLE = re.compile(
    r"connection refused|no such host|i/o timeout|timed? ?out|connection reset|\bEOF\b"
    r"|server misbehaving|network is unreachable|no route to host|tls handshake"
    r"|\b50[0234]\b|server error|service unavailable|bad gateway|too many requests|\b429\b",
    re.IGNORECASE,
)

# The registry never answered (as opposed to answering with an error).
_NO_ANSWER = re.compile(
    r"connection refused|no such host|i/o timeout|network is unreachable|no route to host",
    re.IGNORECASE,
)


def hidden_values(request: BuildRequest) -> list[str]:
    """What must never appear in a message: the registry password, the build's secrets."""
    password = request.credentials.password.get_secret_value() if request.credentials else ""
    return [password, *request.secret_values()]


def is_auth_error(message: str) -> bool:
    return bool(_AUTH.search(message))


def is_unreachable_error(message: str) -> bool:
    return bool(_UNREACHABLE.search(message))


def registry_error(
    action: str, registry: str, message: str, request: BuildRequest
) -> ClickDeployError:
    """A registry's refusal → RegistryAuthError (the user fixes credentials) or
    RegistryUnavailable (retried). The password never appears in the message."""
    message = redact(message.strip(), *hidden_values(request))
    if is_auth_error(message):
        if request.credentials is None or request.credentials_registry != registry:
            hint = "no credentials are configured for it (REGISTRY_USERNAME, REGISTRY_PASSWORD)"
        else:
            hint = (
                f"check REGISTRY_USERNAME (now {request.credentials.username!r}) "
                "and REGISTRY_PASSWORD"
            )
        return RegistryAuthError(
            f"registry {registry} refused to {action}: {message}; {hint}", registry=registry
        )
    if _NO_ANSWER.search(message):
        return RegistryUnavailable(
            f"registry {registry} is unreachable, so it could not {action}: {message}",
            registry=registry,
        )
    return RegistryUnavailable(
        f"registry {registry} failed to {action}: {message}", registry=registry
    )


def failure_from_build(
    failed: FailedStep | None, overall: str, request: BuildRequest, detail: str = ""
) -> ClickDeployError:
    """A failed build → the error to raise. A base image whose registry is down or refuses
    the credentials is a registry error; everything else is the user's BuildFailed."""
    blamed = failed.error if failed else overall
    pulling = (
        failed is None
        or failed.name.startswith(METADATA_PREFIX)
        or " FROM " in (f" {failed.name} ")
    )
    if pulling and (is_unreachable_error(blamed) or is_auth_error(blamed)):
        registry = (
            failed.name.removeprefix(METADATA_PREFIX).split("/", 1)[0]
            if failed and failed.name.startswith(METADATA_PREFIX)
            else request.registry
        )
        return registry_error("serve a base image", registry, blamed, request)
    exporting = failed is not None and failed.name.startswith(("exporting", "pushing"))
    if exporting and (is_unreachable_error(blamed) or is_auth_error(blamed)):
        return registry_error(f"accept {request.image}", request.registry, blamed, request)
    hidden = hidden_values(request)
    if failed is not None:
        failed = replace(
            failed,
            error=redact(failed.error, *hidden),
            log_tail=tuple(redact(line, *hidden) for line in failed.log_tail),
        )
    return build_failure(failed, redact(overall, *hidden), redact(detail, *hidden))
