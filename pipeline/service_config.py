"""A service's `config`: every key click-deploy reads from it, as one strict model.

Checked wherever a config is written (the store, so the CLI and the REST API alike): an
unknown key is refused with "did you mean", a value of the wrong type is refused rather
than coerced (`"users": "U0ALLOWED"` is not a list). Code that reads a stored config reads
it through `Service.options` (`stored_options` below), which never trusts a row written
before these checks: a stored config that does not validate is logged and read as one that
refuses every deploy from chat and forges, never as one that allows everyone.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, get_args

import structlog
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from pipeline.errors import InvalidValue
from pipeline.explain import Problem, explain, kind_of
from pipeline.plan.config import PROVIDER_NAMES, BuilderName, BuildSettings
from pipeline.release.config import ReleaseConfig
from pipeline.values import WatchPathText, shown

log = structlog.get_logger(__name__)

LIST_MAX = 100

_SLACK_ID = {
    "user": (re.compile(r"[UW][A-Z0-9]{2,40}"), "U… or W…"),
    "user group": (re.compile(r"S[A-Z0-9]{2,40}"), "S…"),
    "channel": (re.compile(r"[CGD][A-Z0-9]{2,40}"), "C…, G… or D…"),
}
# A login (GitHub, GitLab) or "@org/team", "@group", "@group/subgroup".
_ALLOW_ENTRY = re.compile(
    r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}|@[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*"
)
_URL = re.compile(r"https?://[^\s/?#]+[^\s]*")
_PLACEHOLDERS = {"environment", "service"}


def _slack_id(kind: str, value: str) -> str:
    pattern, form = _SLACK_ID[kind]
    if not pattern.fullmatch(value):
        raise InvalidValue(
            f"{shown(value)} is not a Slack {kind} id ({form}): use the id Slack shows in the "
            "profile or channel details, not a name"
        )
    return value


def _slack_user(value: str) -> str:
    return _slack_id("user", value)


def _slack_group(value: str) -> str:
    return _slack_id("user group", value)


def _slack_channel(value: str) -> str:
    return _slack_id("channel", value)


def _allow_entry(value: str) -> str:
    if len(value) > 255 or not _ALLOW_ENTRY.fullmatch(value):
        raise InvalidValue(
            f"{shown(value)} is neither a login nor a team or group (@org/team, @group/subgroup)"
        )
    return value


def _url_template(value: str) -> str:
    """An http(s) URL; `{environment}` and `{service}` are filled in."""
    problem = None
    if len(value) > 2000 or not _URL.fullmatch(value):
        problem = "use an http:// or https:// URL without spaces"
    else:
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError:
            names = {"?"}
        if names - _PLACEHOLDERS:
            problem = "the only placeholders are {environment} and {service}"
    if problem is not None:
        raise InvalidValue(f"{shown(value)} is not allowed: {problem}")
    return value


SlackUser = Annotated[str, AfterValidator(_slack_user)]
SlackGroup = Annotated[str, AfterValidator(_slack_group)]
SlackChannel = Annotated[str, AfterValidator(_slack_channel)]
AllowEntry = Annotated[str, AfterValidator(_allow_entry)]
UrlTemplate = Annotated[str, AfterValidator(_url_template)]


class _Strict(BaseModel):
    # strict: a string is never read as a list, "yes" never as true.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SlackAccess(_Strict):
    """Who may deploy from Slack, and from where."""

    users: list[SlackUser] = Field(
        default_factory=list,
        max_length=LIST_MAX,
        description="Slack user ids (U…, W…) who may deploy; with `usergroups` empty too: "
        "anyone in the workspace",
    )
    usergroups: list[SlackGroup] = Field(
        default_factory=list,
        max_length=LIST_MAX,
        description="user group ids (S…) whose members may deploy",
    )
    channels: list[SlackChannel] = Field(
        default_factory=list,
        max_length=LIST_MAX,
        description="channel ids (C…, G…, D…) it may be deployed from; empty: any",
    )


def _choices(names: Sequence[str]) -> str:
    return ", ".join(names)


# Made from the model's own choices, so that a new provider or builder is listed at once.
BUILD_DESCRIPTION = (
    "build overrides (see Building): `builder` (who plans the build: "
    f"{_choices(get_args(BuilderName))}; auto is click-deploy's planner, and Railpack when it "
    f"finds no runtime and railpack is installed), `provider` ({_choices(PROVIDER_NAMES)}; "
    "skips detection and the repo's Dockerfile), `install`, `build`, `start` (one-line "
    "commands), `kind` (web or worker), `apt_packages` (at run time), `apt_build_packages` "
    "(the build only), `env` (build-time variables), `dockerfile`, `context`, `target`, "
    "`build_args`"
)


class ServiceConfig(_Strict):
    """A service's `config`. Every key is optional."""

    build: BuildSettings = Field(
        default_factory=BuildSettings,
        description=BUILD_DESCRIPTION,
    )
    submodules: bool = Field(default=False, description="also fetch the repository's submodules")
    watch: list[WatchPathText] = Field(
        default_factory=list,
        max_length=LIST_MAX,
        description="more folders (from the repository's top, no `..`) whose changes deploy "
        "the service on a push, besides its `root_dir`",
    )
    previews: bool = Field(
        default=False,
        description="deploy a preview (`pr-<n>`, `mr-<iid>`) of each pull or merge request",
    )
    protected: bool = Field(
        default=False,
        description="`/deploy` comments need a place in `allow`; Slack deploys and rollbacks "
        "ask for a confirmation",
    )
    allow: list[AllowEntry] = Field(
        default_factory=list,
        max_length=LIST_MAX,
        description="who may deploy a protected service from comments: logins, `@org/team` "
        "(GitHub), `@group` or `@group/subgroup` (GitLab)",
    )
    url: UrlTemplate | None = Field(
        default=None,
        description="where production can be seen: an http(s) URL; `{service}` is filled in",
    )
    preview_url: UrlTemplate | None = Field(
        default=None,
        description="where a preview can be seen; `{environment}` and `{service}` are filled in",
    )
    slack_channel: SlackChannel | None = Field(
        default=None,
        description="a Slack channel id (C…) told of every deployment, whoever started it",
    )
    slack: SlackAccess = Field(
        default_factory=SlackAccess,
        description="who may deploy from Slack, and from where: the `slack.` keys",
    )
    release: ReleaseConfig = Field(
        default_factory=ReleaseConfig,
        description="where a verified image goes into service: the `release.` keys (see "
        "docs/release.md); default: only the moving tag",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        """PostgreSQL cannot store NUL in text: refused here, naming where, rather than by
        the database."""
        where = _nul_at(data)
        if where is not None:
            raise InvalidValue(f"{where} contains a NUL character")
        return data

    # Set only on the stand-in for a stored config that does not validate (`refusing`).
    _problem: str | None = PrivateAttr(default=None)

    @property
    def problem(self) -> str | None:
        """Why this stored config could not be read; None when it is valid. Access checks
        refuse everyone while it is set."""
        return self._problem

    @classmethod
    def refusing(cls, problem: str) -> ServiceConfig:
        """The fail-closed stand-in for an invalid stored config: protected, nobody on any
        allowlist, no previews, no submodules."""
        config = cls(protected=True)
        config._problem = problem
        return config

    def stored(self) -> dict[str, Any]:
        """The form kept in the database: the keys given, values as validated."""
        return self.model_dump(mode="json", exclude_unset=True)


def _nul_at(value: Any) -> str | None:
    """Where the first NUL character in a JSON value is (`build.env.A`), if any."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return path
        elif isinstance(node, Mapping):
            for key, child in node.items():
                if isinstance(key, str) and "\x00" in key:
                    return f"a key in {path or 'it'}"
                stack.append((child, f"{path}.{key}".lstrip(".")))
        elif isinstance(node, list | tuple):
            stack.extend((child, f"{path}.{i}".lstrip(".")) for i, child in enumerate(node))
    return None


def refused_for_config(service_name: str) -> str:
    """The answer to a deploy of a service whose stored config is not valid. The problem
    itself is in the log, not in a chat or a pull request."""
    return (
        f"`{service_name}` cannot be deployed until an admin fixes its config (the bot's log "
        "names the problem). Nothing was queued."
    )


def config_reference() -> str:
    """The table of config keys in docs/configuration.md, made from the model (tested)."""
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for prefix, model in (("", ServiceConfig), ("slack.", SlackAccess)):
        schema = model.model_json_schema()
        for key, field in schema["properties"].items():
            info = model.model_fields[key]
            kind = _schema_kind(field)
            default = info.get_default(call_default_factory=True)
            if isinstance(default, BaseModel):
                default = "{}"
            shown_default = "–" if default is None else f"`{_json_text(default)}`"
            meaning = info.description or ""
            rows.append(f"| `{prefix}{key}` | {kind} | {shown_default} | {meaning} |")
    return "\n".join(rows)


def _schema_kind(field: Mapping[str, Any]) -> str:
    if "anyOf" in field:
        kinds = [_schema_kind(option) for option in field["anyOf"] if option.get("type") != "null"]
        return " or ".join(kinds)
    if "$ref" in field:
        return "object"
    kind = field.get("type")
    if kind == "array":
        return "list of strings"
    return {"boolean": "true/false", "string": "string", "object": "object"}.get(str(kind), "?")


def _json_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[]"
    return str(value)


# --- reading and explaining --------------------------------------------------------------


class ConfigInvalid(InvalidValue):
    """A service config that does not validate; `problems` name each bad key."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(str(problem) for problem in problems))
        self.problems = list(problems)


def parse_config(data: object, where: str = "config") -> ServiceConfig:
    """Validate a config about to be stored. Raises `ConfigInvalid`."""
    if not isinstance(data, Mapping):
        raise ConfigInvalid([Problem(where, f"must be an object (got {kind_of(data)})")])
    try:
        return ServiceConfig.model_validate(dict(data))
    except ValidationError as error:
        raise ConfigInvalid(explain(error, ServiceConfig, where)) from None


def stored_options(data: object, service: str) -> ServiceConfig:
    """A config read from the database, which may predate validation. When it does not
    validate: a log line, and the fail-closed stand-in."""
    try:
        return parse_config(data)
    except ConfigInvalid as error:
        problem = str(error)
        # Once per service and problem in this process: every report reads the service.
        if (service, problem) not in _LOGGED:
            if len(_LOGGED) > 1000:
                _LOGGED.clear()
            _LOGGED.add((service, problem))
            log.warning(
                "service config is invalid; deploys are refused", service=service, error=problem
            )
        return ServiceConfig.refusing(problem)


_LOGGED: set[tuple[str, str]] = set()
