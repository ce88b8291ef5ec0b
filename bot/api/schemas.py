"""The API's request and response bodies. The same models validate requests and make the
OpenAPI document (bot/api/openapi.py), so the two cannot drift apart."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from pipeline import values
from pipeline.models import Deployment, LogLine, Service, ServiceImage, Step
from pipeline.release import Observed
from pipeline.service_config import ServiceConfig
from pipeline.states import Status

# PostgreSQL text cannot hold NUL; refusing it here makes it a 422 rather than a fault.
_NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, StringConstraints(max_length=1000, pattern=_NO_NUL)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=_NO_NUL)]
# Input values: the shared validators (pipeline/values.py), whose schemas accept what
# they accept.
GitRef = values.RefText
Branch = values.BranchText
ServiceName = values.ServiceNameText
Environment = values.EnvironmentText
CommitSha = values.CommitText
RootDir = values.RootDirText
Provider = Literal["github", "gitlab", "git"]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- requests ---------------------------------------------------------------------------


class DeployRequest(Model):
    """What to deploy. Without `ref` the service's branch; `commit` pins an exact commit."""

    ref: GitRef | None = None
    commit: CommitSha | None = None
    environment: Environment = "production"


class RollbackRequest(Model):
    """Re-tag the previous successful image of an environment as its current one."""

    environment: Environment = "production"
    to: Annotated[int, Field(ge=1, le=2**63 - 1)] | None = None  # a deployment id


class ServiceCreate(Model):
    name: ServiceName
    provider: Provider = "git"
    repository: ShortText = Field(
        description="owner/name (github), group/project (gitlab), or a clone URL (git): "
        "https://, http://, ssh://, git:// or user@host:path"
    )
    branch: Branch = "main"
    root_dir: RootDir = "."
    config: ServiceConfig = Field(default_factory=ServiceConfig)

    @field_validator("repository")
    @classmethod
    def _repository(cls, value: str, info: ValidationInfo) -> str:
        return values.repository(info.data.get("provider", "git"), value)


class ServiceUpdate(Model):
    """Only the fields given change; `config` replaces the whole config."""

    repository: ShortText | None = Field(
        None, description="checked against the provider, the new one or the stored one"
    )
    provider: Provider | None = None
    branch: Branch | None = None
    root_dir: RootDir | None = None
    config: ServiceConfig | None = None


# --- responses --------------------------------------------------------------------------


class ErrorDetail(Model):
    code: str
    message: str


class ErrorBody(Model):
    error: ErrorDetail


# Build variables and build args may hold credentials: below admin only their names show.
REDACTED = "<redacted>"
SECRET_MAPS = ("env", "build_args")  # under config.build


def names_only(config: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """`config` with the values of `build.env` and `build.build_args` replaced by REDACTED,
    and whether anything was."""
    build = config.get("build")
    if not isinstance(build, dict) or not any(key in build for key in SECRET_MAPS):
        return config, False
    shown = dict(build)
    for key in SECRET_MAPS:
        if key in shown:
            values = shown[key]
            shown[key] = (
                {name: REDACTED for name in values} if isinstance(values, dict) else REDACTED
            )
    return {**config, "build": shown}, True


class ServiceOut(Model):
    id: int
    name: str
    provider: Provider
    repository: str
    branch: str
    root_dir: str
    config: dict[str, Any] = Field(
        description=f"below an admin token, the values of `build.env` and `build.build_args` "
        f"are {REDACTED!r} (their names show)"
    )
    redacted: bool = Field(default=False, description="true when values in `config` are withheld")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, service: Service, *, reveal: bool = True) -> ServiceOut:
        """The service; with `reveal` false, `config` shows setting names, not values."""
        out = cls.model_validate(service, from_attributes=True)
        if reveal:
            return out
        config, redacted = names_only(service.config)
        return out.model_copy(update={"config": config, "redacted": redacted})


class ReleaseOut(Model):
    """What runs for one environment of a service (targets docker, swarm, webhook)."""

    environment: str
    deployment_id: int | None
    target: str
    image: str
    digest: str
    runs_as: str = Field(description="the container ids, the Swarm service, or the hook")
    url: str | None = Field(description="where it answers (docker, swarm)")
    healthy: bool = Field(
        description="it passed its health check at the switch and, as looked at now, still runs"
    )
    state: str = Field(
        description="looked at now: running, degraded, unhealthy, not running, unknown (the "
        "engine did not answer) or not checked (target webhook)"
    )
    state_detail: str = Field(description="what was seen, e.g. `1 of 1 container running`")
    since: datetime

    @classmethod
    def of(cls, observed: Observed) -> ReleaseOut:
        release = observed.record
        return cls(
            environment=release.environment,
            deployment_id=release.deployment_id,
            target=release.target,
            image=release.image,
            digest=release.digest,
            runs_as=release.runs_as,
            url=release.url,
            healthy=observed.healthy,
            state=observed.state,
            state_detail=observed.detail,
            since=release.started_at,
        )


class ServiceDetail(ServiceOut):
    releases: list[ReleaseOut] = Field(
        default_factory=list, description="what runs now, per environment"
    )


class ServiceList(Model):
    items: list[ServiceOut]


class DeploymentOut(Model):
    id: int
    service_id: int
    service_name: str | None
    environment: str
    ref: str | None
    commit: str | None
    status: Status
    source: str | None = Field(description="where the request came from: cli, api, github…")
    actor: str | None
    attempts: int
    max_attempts: int
    phase: str | None
    step: int | None
    steps_total: int | None
    progress_message: str | None
    cancel_requested: bool
    superseded_by: int | None
    image: str | None
    digest: str | None
    live_url: str | None = Field(
        default=None, description="where its release answers, once healthy (docker, swarm)"
    )
    error: str | None
    error_kind: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    @classmethod
    def of(cls, deployment: Deployment) -> DeploymentOut:
        # The trigger's `answer` (where forges and chat are answered) stays private.
        trigger = deployment.trigger if isinstance(deployment.trigger, dict) else {}
        return cls(
            id=deployment.id,
            service_id=deployment.service_id,
            service_name=deployment.service_name,
            environment=deployment.environment,
            ref=deployment.ref,
            commit=deployment.commit_sha,
            status=deployment.status,
            source=_str_or_none(trigger.get("source")),
            actor=_str_or_none(trigger.get("actor")),
            attempts=deployment.attempts,
            max_attempts=deployment.max_attempts,
            phase=deployment.phase,
            step=deployment.step,
            steps_total=deployment.steps_total,
            progress_message=deployment.progress_message,
            cancel_requested=deployment.cancel_requested,
            superseded_by=deployment.superseded_by,
            image=deployment.image,
            digest=deployment.digest,
            live_url=deployment.live_url,
            error=deployment.error,
            error_kind=deployment.error_kind,
            created_at=deployment.created_at,
            started_at=deployment.started_at,
            finished_at=deployment.finished_at,
            updated_at=deployment.updated_at,
        )


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


class DeploymentList(Model):
    items: list[DeploymentOut]
    next_cursor: int | None = Field(description="pass as `before` for the next, older page")


class LogLineOut(Model):
    seq: int
    at: datetime
    stream: str
    line: str

    @classmethod
    def of(cls, line: LogLine) -> LogLineOut:
        return cls(seq=line.seq, at=line.at, stream=line.stream, line=line.line)


class LogPage(Model):
    items: list[LogLineOut]
    next_cursor: int = Field(description="pass as `after` for the lines that follow")


class StepOut(Model):
    attempt: int
    seq: int
    kind: str
    name: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    seconds: float | None
    detail: str | None

    @classmethod
    def of(cls, step: Step) -> StepOut:
        return cls.model_validate(step, from_attributes=True)


class DeploymentDetail(DeploymentOut):
    steps: list[StepOut]


class CancelOut(Model):
    outcome: Literal["cancelled", "requested"]
    deployment: DeploymentOut


class ImageOut(Model):
    environment: str
    deployment_id: int
    image: str
    digest: str | None
    updated_at: datetime

    @classmethod
    def of(cls, image: ServiceImage) -> ImageOut:
        return cls.model_validate(image, from_attributes=True)


class RollbackOut(Model):
    image: str
    digest: str
    from_deployment: int
