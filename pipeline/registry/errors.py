"""Registry errors, and the pure decision of which one a response means.

The type says who must act: `RegistryFailure` and its subclasses are final
(`DeploymentFailure`: a person must fix credentials, permissions or names);
`RegistryUnavailable` is a `TransientError` the worker retries. Messages name the registry
host and the repository; they never contain a password or a token.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.errors import ClickDeployError, DeploymentFailure, TransientError

CREDENTIALS_HINT = "check REGISTRY_USERNAME/REGISTRY_PASSWORD"


class InvalidReference(DeploymentFailure, ValueError):
    """An image name, tag, repository or digest that breaks the reference grammar."""


class RegistryError(ClickDeployError):
    """Something the registry (or its token server) answered, or failed to answer."""

    def __init__(
        self,
        message: str,
        *,
        registry: str,
        repository: str | None = None,
        status: int | None = None,
        codes: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.registry = registry
        self.repository = repository
        self.status = status
        self.codes = codes


class RegistryFailure(RegistryError, DeploymentFailure):
    """The registry refused for good (bad manifest, unsupported operation…); not retried."""


class RegistryAuthError(RegistryFailure):
    """The registry (or its token server) refused the credentials, or needs some."""


class RegistryForbidden(RegistryFailure):
    """The credentials are fine but do not allow this action on this repository."""


class RegistryNotFound(RegistryFailure):
    """No such repository, manifest, tag or blob."""


class ImmutableTag(RegistryFailure):
    """The tag is protected (Harbor's tag immutability rule answers 412)."""


class RegistryUnavailable(RegistryError, TransientError):
    """The registry is down, overloaded, rate limiting or unreachable; retried."""


@dataclass(frozen=True)
class ErrorDetail:
    """One entry of the distribution error body `{"errors": [{"code", "message"}]}`."""

    code: str
    message: str

    def __str__(self) -> str:
        if self.code and self.message:
            return f"{self.code}: {self.message}"
        return self.code or self.message


def parse_error_body(body: bytes) -> tuple[ErrorDetail, ...]:
    """The errors a registry put in a response body; () for anything else."""
    if not body:
        return ()
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ()
    if not isinstance(document, dict):
        return ()
    entries = document.get("errors")
    if not isinstance(entries, list):
        return ()
    details = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        code = entry.get("code")
        message = entry.get("message")
        details.append(
            ErrorDetail(
                code=code if isinstance(code, str) else "",
                message=message if isinstance(message, str) else "",
            )
        )
    return tuple(details)


def action_of(method: str) -> str:
    """The registry action a request method needs: pull, push or delete."""
    method = method.upper()
    if method in ("GET", "HEAD"):
        return "pull"
    if method == "DELETE":
        return "delete"
    return "push"


def _who(username: str | None) -> str:
    return f"user {username}" if username else "anonymous users"


def _details(details: tuple[ErrorDetail, ...]) -> str:
    described = [str(detail) for detail in details if str(detail)]
    return f" ({'; '.join(described)})" if described else ""


def _retry_after(headers: Mapping[str, str]) -> str:
    value = headers.get("Retry-After", "").strip()
    return f", retry after {value} s" if value.isdigit() else ""


def error_for_status(
    status: int,
    *,
    method: str,
    registry: str,
    repository: str | None,
    subject: str,
    username: str | None = None,
    reason: str = "",
    details: tuple[ErrorDetail, ...] = (),
    challenge_error: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> RegistryError | None:
    """The error a final response means, or None for a success (1xx-3xx).

    `subject` says what was asked for ("manifest abc123", "blob sha256:…"); `username` is
    who asked (None: anonymous); `challenge_error` is the `error` parameter of a 401's
    Bearer challenge (`insufficient_scope`: good credentials, missing rights).
    """
    if status < 400:
        return None
    headers = headers or {}
    action = action_of(method)
    where = f"{repository}" if repository else "the registry"
    codes = tuple(detail.code for detail in details if detail.code)
    extra = _details(details)

    def make(kind: type[RegistryError], message: str) -> RegistryError:
        return kind(message, registry=registry, repository=repository, status=status, codes=codes)

    if status == 401:
        if username is None:
            return make(
                RegistryAuthError,
                f"registry {registry} requires credentials to {action} {where}: "
                "set REGISTRY_USERNAME/REGISTRY_PASSWORD",
            )
        if challenge_error == "insufficient_scope":
            return make(
                RegistryForbidden,
                f"registry {registry} does not allow user {username} to {action} {where}: "
                "grant the user this right on the project (a push needs pull and push)",
            )
        return make(
            RegistryAuthError,
            f"registry {registry} refused the credentials of user {username} for {where}: "
            f"{CREDENTIALS_HINT}",
        )
    if status == 403:
        return make(
            RegistryForbidden,
            f"registry {registry} does not allow {_who(username)} to {action} {where}{extra}",
        )
    if status == 404:
        return make(RegistryNotFound, f"registry {registry} has no {subject} in {where}{extra}")
    if status == 412:
        if action == "pull":
            # Harbor answers 412 to pulls its policies block (vulnerabilities, signatures).
            return make(
                RegistryForbidden,
                f"registry {registry} refused to let {_who(username)} pull {subject} "
                f"from {where} by policy{extra}",
            )
        return make(
            ImmutableTag,
            f"registry {registry} refused to change {subject} in {where}: it is immutable "
            f"(a tag immutability rule protects it); deploy under a new tag{extra}",
        )
    if status == 429:
        return make(
            RegistryUnavailable,
            f"registry {registry} is rate limiting requests for {where} "
            f"(429{_retry_after(headers)}){extra}",
        )
    if status == 408 or status >= 500:
        text = f"{status} {reason}".strip()
        return make(
            RegistryUnavailable,
            f"registry {registry} failed to {action} {subject} in {where} ({text}){extra}",
        )
    text = f"{status} {reason}".strip()
    hint = ""
    if status == 405 and action == "delete":
        hint = ": deleting is disabled on this registry (storage.delete.enabled)"
    return make(
        RegistryFailure,
        f"registry {registry} refused to {action} {subject} in {where} ({text}){extra}{hint}",
    )


def error_for_token_status(
    status: int,
    *,
    registry: str,
    token_server: str,
    repository: str | None,
    username: str | None,
    reason: str = "",
    details: tuple[ErrorDetail, ...] = (),
) -> RegistryError | None:
    """The error a token server's answer means, or None for a success.

    401/403 with credentials: the token server refused them (Harbor answers 401 to a wrong
    password). Without credentials: some are needed. The rest as for the registry itself.
    """
    if status < 400:
        return None
    where = repository or "the registry"
    codes = tuple(detail.code for detail in details if detail.code)
    common: dict[str, Any] = {"registry": registry, "repository": repository, "status": status}
    if status in (401, 403):
        if username:
            return RegistryAuthError(
                f"registry {registry} refused the credentials of user {username} for "
                f"{where}: {CREDENTIALS_HINT}",
                codes=codes,
                **common,
            )
        return RegistryAuthError(
            f"registry {registry} requires credentials for {where}: "
            "set REGISTRY_USERNAME/REGISTRY_PASSWORD",
            codes=codes,
            **common,
        )
    error = error_for_status(
        status,
        method="GET",
        registry=registry,
        repository=repository,
        subject="a token",
        username=username,
        reason=reason,
        details=details,
    )
    assert error is not None
    return type(error)(f"token server {token_server}: {error}", codes=codes, **common)


def insecure_realm(registry_url: str, realm: str) -> bool:
    """True if credentials would go to the token realm over plain HTTP although the
    registry itself is HTTPS (a downgrade this client refuses)."""
    return registry_url.lower().startswith("https://") and not realm.lower().startswith("https://")
