"""Build overrides: a service's own config, and an optional `click-deploy.toml` in the app.

The service config is flat (`BuildConfig`); the repo file has sections:

    provider = "python"            # skip detection (and the repo's Dockerfile)
    builder = "railpack"           # plan with Railpack ("auto" / "click-deploy")
    [build]
    install = "pip install -r requirements/prod.txt"
    build = "python manage.py collectstatic --noinput"
    start = "gunicorn mysite.wsgi --bind 0.0.0.0:$PORT"
    apt_packages = ["libpq5"]        # the app needs them at run time
    apt_build_packages = ["libpq-dev"]  # only the build needs them (compilers, headers)
    kind = "worker"                 # no port, no HTTP check ("web" by default)
    env = { DJANGO_SETTINGS_MODULE = "mysite.settings" }   # build-time only
    [docker]
    dockerfile = "deploy/Dockerfile"   # relative to the app directory
    context = "."
    target = "production"
    args = { GIT_SHA = "abc" }

The repo file is merged under the service config: the service wins, key by key.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.errors import ConfigError
from pipeline.values import RootDirText

REPO_CONFIG_FILE = "click-deploy.toml"

ProviderName = Literal["node", "python", "go", "php", "ruby", "static", "shell"]
PROVIDER_NAMES: tuple[str, ...] = ("node", "python", "go", "php", "ruby", "static", "shell")
Kind = Literal["web", "worker"]
# Who plans the build: click-deploy's planner, Railpack (`railpack prepare`), or "auto":
# the planner, and Railpack when the planner finds no runtime and railpack is installed.
BuilderName = Literal["auto", "click-deploy", "railpack"]

_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
# A Debian package name, optionally pinned (`libpq5=15.*`): nothing a shell would expand.
_APT_PATTERN = r"^[a-z0-9][a-z0-9+.\-]*(=[A-Za-z0-9.+~:*\-]+)?$"


def _check_relative(value: str | None) -> str | None:
    if value is None:
        return None
    cleaned = value.strip()
    if not cleaned:
        raise ValueError("must not be empty")
    if cleaned.startswith("/"):
        raise ValueError("must be a path relative to the app directory")
    return cleaned


def _check_command(value: str | None) -> str | None:
    if value is None:
        return None
    cleaned = value.strip()
    if not cleaned:
        raise ValueError("must not be empty")
    if "\n" in cleaned or "\r" in cleaned:
        raise ValueError("must be one line (join commands with &&)")
    return cleaned


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


EnvMap = dict[str, str]


def _check_names(value: Mapping[str, str]) -> dict[str, str]:
    for key in value:
        if not re.match(_NAME_PATTERN, key):
            raise ValueError(f"{key!r} is not a valid variable name")
    return dict(value)


def _check_apt(value: Sequence[str]) -> tuple[str, ...]:
    for item in value:
        if not re.match(_APT_PATTERN, item):
            raise ValueError(f"{item!r} is not a Debian package name")
    return tuple(dict.fromkeys(value))


class BuildSettings(_Strict):
    """A service's build overrides (`config.build`). Every field is optional; unset means
    "detect"."""

    provider: ProviderName | None = None  # force a provider, skipping the repo's Dockerfile
    builder: BuilderName | None = None  # None: the repo's click-deploy.toml, else "auto"
    install: str | None = None
    build: str | None = None
    start: str | None = None
    apt_packages: tuple[str, ...] = ()  # at run time (and in the build stage of one-stage images)
    apt_build_packages: tuple[str, ...] = ()  # the build stage only
    kind: Kind | None = None  # web (a port, an HTTP check) or worker; None: detect
    env: EnvMap = Field(default_factory=dict)  # build-time variables, as BuildKit secrets
    dockerfile: str | None = None  # relative to the app directory
    context: str | None = None  # relative to the app directory; "." by default
    target: str | None = None
    build_args: EnvMap = Field(default_factory=dict)

    _relative = field_validator("dockerfile", "context")(_check_relative)
    _commands = field_validator("install", "build", "start")(_check_command)
    _names = field_validator("env", "build_args")(_check_names)
    _apt = field_validator("apt_packages", "apt_build_packages")(_check_apt)


class BuildConfig(BuildSettings):
    """What the planner is given: the build overrides and the service's folder."""

    root_dir: RootDirText = "."  # the service's folder in the repository


class RepoBuildSection(_Strict):
    install: str | None = None
    build: str | None = None
    start: str | None = None
    apt_packages: tuple[str, ...] = ()
    apt_build_packages: tuple[str, ...] = ()
    kind: Kind | None = None
    env: EnvMap = Field(default_factory=dict)

    _commands = field_validator("install", "build", "start")(_check_command)
    _names = field_validator("env")(_check_names)
    _apt = field_validator("apt_packages", "apt_build_packages")(_check_apt)


class RepoDockerSection(_Strict):
    dockerfile: str | None = None
    context: str | None = None
    target: str | None = None
    args: EnvMap = Field(default_factory=dict)

    _relative = field_validator("dockerfile", "context")(_check_relative)
    _names = field_validator("args")(_check_names)


class RepoConfig(_Strict):
    """`click-deploy.toml`."""

    provider: ProviderName | None = None
    builder: BuilderName | None = None
    build: RepoBuildSection = Field(default_factory=RepoBuildSection)
    docker: RepoDockerSection = Field(default_factory=RepoDockerSection)


# --- errors that name the key ------------------------------------------------------------


def _model_at(model: type[BaseModel], path: Sequence[str | int]) -> type[BaseModel] | None:
    current: type[BaseModel] = model
    for part in path:
        info = current.model_fields.get(str(part))
        annotation = info.annotation if info is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        current = annotation
    return current


def describe_errors(error: ValidationError, model: type[BaseModel], source: str) -> str:
    """One readable line per problem: `source: build.strat is not a known key (did you mean
    start?)`."""
    lines = []
    for item in error.errors():
        location = [part for part in item.get("loc", ())]
        dotted = ".".join(str(part) for part in location)
        kind = item.get("type", "")
        if kind == "extra_forbidden":
            parent = _model_at(model, location[:-1])
            known = sorted(parent.model_fields) if parent is not None else []
            close = difflib.get_close_matches(str(location[-1]), known, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            if not close and known:
                hint = f" (known keys: {', '.join(known)})"
            lines.append(f"{source}: {dotted} is not a known key{hint}")
            continue
        message = str(item.get("msg", "invalid value")).removeprefix("Value error, ")
        if kind == "literal_error" and location and location[-1] == "provider":
            given = str(item.get("input", ""))
            close = difflib.get_close_matches(given, PROVIDER_NAMES, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]}?)" if close else ""
            message = f"{given!r} is not a provider; use one of {', '.join(PROVIDER_NAMES)}{hint}"
        lines.append(f"{source}: {dotted}: {message}" if dotted else f"{source}: {message}")
    return "; ".join(lines)


def parse_build_config(data: Mapping[str, Any], source: str = "service config") -> BuildConfig:
    """Validate a service's build settings (a dict from the store, the CLI, an API body).
    Raises `ConfigError` naming each bad key."""
    try:
        return BuildConfig.model_validate(dict(data))
    except ValidationError as error:
        raise ConfigError(describe_errors(error, BuildConfig, source)) from None


def parse_repo_config(data: Mapping[str, Any], source: str = REPO_CONFIG_FILE) -> RepoConfig:
    """Validate a parsed `click-deploy.toml`. Raises `ConfigError` naming each bad key."""
    try:
        return RepoConfig.model_validate(dict(data))
    except ValidationError as error:
        raise ConfigError(describe_errors(error, RepoConfig, source)) from None


def merge_configs(service: BuildConfig, repo: RepoConfig | None) -> BuildConfig:
    """The repo file under the service config: a field the service sets wins; maps are
    merged key by key (service wins); apt packages are combined."""
    if repo is None:
        return service
    explicit = service.model_fields_set
    from_repo: dict[str, Any] = {
        "provider": repo.provider,
        "builder": repo.builder,
        "install": repo.build.install,
        "build": repo.build.build,
        "start": repo.build.start,
        "kind": repo.build.kind,
        "dockerfile": repo.docker.dockerfile,
        "context": repo.docker.context,
        "target": repo.docker.target,
    }
    merged = service.model_dump()
    for key, value in from_repo.items():
        if value is not None and (key not in explicit or merged[key] is None):
            merged[key] = value
    merged["env"] = {**repo.build.env, **service.env}
    merged["build_args"] = {**repo.docker.args, **service.build_args}
    merged["apt_packages"] = tuple(dict.fromkeys((*repo.build.apt_packages, *service.apt_packages)))
    merged["apt_build_packages"] = tuple(
        dict.fromkeys((*repo.build.apt_build_packages, *service.apt_build_packages))
    )
    return BuildConfig.model_validate(merged)


def repo_config_evidence(repo: RepoConfig) -> list[str]:
    """What the repo file set, one line per key, for the plan's evidence."""
    lines = []
    for key, value in repo.model_dump(exclude_defaults=True).items():
        if isinstance(value, dict):
            for sub, subvalue in value.items():
                if isinstance(subvalue, dict):
                    lines.append(f"{key}.{sub}: {', '.join(sorted(subvalue))}")
                elif isinstance(subvalue, list | tuple):
                    lines.append(f"{key}.{sub} = {', '.join(str(item) for item in subvalue)}")
                else:
                    lines.append(f"{key}.{sub} = {subvalue!r}")
        else:
            lines.append(f"{key} = {value!r}")
    return lines
