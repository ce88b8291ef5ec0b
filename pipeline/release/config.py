"""The `release` key of a service's config: where a verified image goes into service.

Only the shape is checked here (strictly, as the rest of the config); what needs the bot's
settings (the webhook key, the secrets directory, a Docker engine) is checked when the
release runs, with one line naming what is missing.
"""

from __future__ import annotations

import json
import re
import string
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.errors import InvalidValue
from pipeline.values import shown

# A DNS name (RFC 1123 labels), lower case: web.example.com.
_HOST = re.compile(
    r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_ENGINE = re.compile(r"(unix:///\S+|tcp://[A-Za-z0-9.\-\[\]:]+:\d{1,5})")
_HTTP_URL = re.compile(r"https?://[^\s/?#]+[^\s]*")
HOST_PLACEHOLDERS = {"environment", "service"}


def _host_template(value: str) -> str:
    """A host name in which `{environment}` and `{service}` may be filled in."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
    except ValueError:
        names = {"?"}
    if names - HOST_PLACEHOLDERS:
        raise InvalidValue(
            f"{shown(value)}: the only placeholders of a host are {{environment}} and {{service}}"
        )
    sample = value.replace("{environment}", "pr-1").replace("{service}", "web")
    if not _HOST.fullmatch(sample):
        raise InvalidValue(
            f"{shown(value)} is not a host name: lower-case letters, digits, dashes and dots, "
            "e.g. web.example.com"
        )
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ReleaseConfig(_Strict):
    """How a verified image goes into service (`release.` keys)."""

    target: Literal["none", "docker", "swarm", "webhook"] = Field(
        default="none",
        description="where the image goes after verify: `none` (only the moving tag, for "
        "GitOps), `docker` (a container behind Caddy), `swarm` (a Swarm service) or "
        "`webhook` (a signed POST to `release.webhook_url`)",
    )
    webhook_url: str | None = Field(
        default=None,
        description="target `webhook`: the deploy hook that is sent the signed POST",
    )
    hosts: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="target `docker`: the Docker engines that run the service (unix:///… or "
        "tcp://host:port); empty: RELEASE_DOCKER_HOST",
    )
    domain: str | None = Field(
        default=None,
        description="targets `docker` and `swarm`: the host name production answers on "
        "(web.example.com)",
    )
    preview_domain: str | None = Field(
        default=None,
        description="the host name of a preview; `{environment}` and `{service}` are filled "
        "in (default `{environment}.` + `release.domain`)",
    )
    health_path: str | None = Field(
        default="/",
        description="the HTTP path a new version must answer with `release.health_status` "
        "before it gets traffic; null: the image's HEALTHCHECK (or an open port)",
    )
    health_status: int = Field(
        default=200, ge=100, le=599, description="the status the health path must answer"
    )
    health_timeout_seconds: float = Field(
        default=60.0, gt=0, le=3600, description="how long a new version has to become healthy"
    )
    drain_seconds: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="how long the old version keeps running after traffic has moved",
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        max_length=200,
        description="environment variables the service runs with (not secrets: they are "
        "stored in clear)",
    )
    secrets: list[str] = Field(
        default_factory=list,
        max_length=200,
        description="names of secret variables; each value is read from the file "
        "RELEASE_SECRETS_DIR/<service>/<NAME> when the service starts",
    )
    max_previews: int = Field(
        default=5, ge=1, le=100, description="live previews per service; the oldest is stopped"
    )
    replicas: int = Field(default=1, ge=1, le=100, description="target `swarm`: tasks to run")

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 2000 or not _HTTP_URL.fullmatch(value)):
            raise InvalidValue(f"{shown(value)} is not an http:// or https:// URL")
        return value

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        for host in value:
            if not _ENGINE.fullmatch(host):
                raise InvalidValue(
                    f"{shown(host)} is not a Docker engine address: unix:///path or tcp://host:port"
                )
        return value

    @field_validator("domain", "preview_domain")
    @classmethod
    def _domains(cls, value: str | None) -> str | None:
        return None if value is None else _host_template(value)

    @field_validator("health_path")
    @classmethod
    def _health_path(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or any(c.isspace() for c in value)):
            raise InvalidValue(f"{shown(value)} is not a path: start it with / and use no spaces")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            _env_name(name)
        return value

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, value: list[str]) -> list[str]:
        for name in value:
            _env_name(name)
        return value

    @model_validator(mode="after")
    def _target_needs(self) -> ReleaseConfig:
        if self.target == "webhook" and self.webhook_url is None:
            raise InvalidValue("target webhook needs `release.webhook_url`")
        if self.target in ("docker", "swarm") and self.domain is None:
            raise InvalidValue(f"target {self.target} needs `release.domain` (web.example.com)")
        clash = set(self.env) & set(self.secrets)
        if clash:
            raise InvalidValue(f"{', '.join(sorted(clash))}: in both `env` and `secrets`")
        return self

    def host_for(self, service: str, environment: str) -> str | None:
        """The host name an environment of the service answers on."""
        if self.domain is None:
            return None
        if environment == "production":
            return self.domain.replace("{service}", service).replace("{environment}", environment)
        template = self.preview_domain or "{environment}." + self.domain
        return template.replace("{service}", service).replace("{environment}", environment)


def _env_name(name: str) -> str:
    if not _ENV_NAME.fullmatch(name):
        raise InvalidValue(
            f"{shown(name)} is not a variable name: letters, digits and _, not first a digit"
        )
    return name


def release_reference() -> str:
    """docs/release.md's table of `release.` keys, made from the model (a test keeps them
    equal)."""
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    for key, info in ReleaseConfig.model_fields.items():
        default = info.get_default(call_default_factory=True)
        shown_default = "–" if default is None else f"`{json.dumps(default)}`"
        rows.append(f"| `release.{key}` | {shown_default} | {info.description or ''} |")
    return "\n".join(rows)
