"""One settings object, read from the environment and an optional `.env` file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline import setting_checks as check
from pipeline.errors import ConfigError

APP_NAME = "click-deploy"


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME))


class Settings(BaseSettings):
    """Every knob click-deploy has. Names are the environment variables, upper-cased."""

    # An empty variable is an unset one (DATABASE_URL= is the embedded database, not
    # libpq's defaults); inf and nan are no durations.
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        env_ignore_empty=True,
        allow_inf_nan=False,
    )

    # Where the truth lives. Unset: an embedded PostgreSQL under DATA_DIR.
    database_url: SecretStr | None = None
    data_dir: Path = Field(default_factory=_default_data_dir)
    database_pool_size: int = Field(default=10, ge=2, le=200)

    # Building. BUILDER picks the BuildKit transport: "docker" talks to a Docker engine's
    # embedded BuildKit at DOCKER_HOST; "buildkitd" runs buildctl against BUILDKIT_ADDRESS.
    # Either may list several daemons, comma-separated: each service builds on the same one
    # (cache affinity), and the next takes over when it is down (pipeline.buildkit.pool).
    builder: Literal["docker", "buildkitd"] = "docker"
    docker_host: str = "unix:///var/run/docker.sock"  # or "tcp://a:2375,tcp://b:2375"
    buildkit_address: str | None = None  # unix:///run/buildkit/buildkitd.sock, tcp://host:1234
    buildkit_tls_ca: Path | None = None
    buildkit_tls_cert: Path | None = None
    buildkit_tls_key: Path | None = None
    build_cache: bool = False  # export/import a registry cache (…:buildcache, mode=max)
    build_dir: Path | None = None
    # Slack app (bot/slack): the signing secret checks Slack's requests, the bot token
    # (xoxb-…) posts and edits messages; SLACK_API_URL points at a test double.
    slack_signing_secret: SecretStr | None = None
    slack_bot_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"

    # Cloning: forge URLs for services of provider github/gitlab, and HTTPS credentials.
    # GitHub App installation tokens use the user "x-access-token", GitLab tokens "oauth2".
    github_url: str = "https://github.com"
    gitlab_url: str = "https://gitlab.com"
    git_username: str = "x-access-token"
    git_token: SecretStr | None = None
    clone_timeout_seconds: float = Field(default=300.0, gt=0)
    clone_max_megabytes: int = Field(default=2048, ge=1)

    # Base images of generated Dockerfiles: official images, through an optional mirror
    # (a Harbor proxy-cache project, an air-gapped registry). BASE_IMAGE_<RUNTIME> replaces
    # one image outright; "{version}" in it is filled with the detected version.
    base_image_mirror: str | None = None
    base_image_node: str | None = None
    base_image_bun: str | None = None
    base_image_python: str | None = None
    base_image_golang: str | None = None
    base_image_php: str | None = None
    base_image_composer: str | None = None
    base_image_ruby: str | None = None
    base_image_caddy: str | None = None
    base_image_runtime: str | None = None

    # GitLab (bot/gitlab): GITLAB_WEBHOOK_SECRET is the webhook's secret token (sent as
    # X-Gitlab-Token); GITLAB_TOKEN a project, group or personal access token (api scope)
    # for commit statuses, MR notes and member checks, also the clone credentials (user
    # "oauth2") of provider-gitlab services. GITLAB_API_URL: where the API answers when it
    # is not GITLAB_URL (a test double). GITLAB_BOT_USERNAME: whose notes are the bot's own
    # (unset: asked of GitLab, GET /user).
    gitlab_webhook_secret: SecretStr | None = None
    gitlab_token: SecretStr | None = None
    gitlab_api_url: str | None = None
    gitlab_bot_username: str | None = None

    # Where images go: REGISTRY_URL/REGISTRY_PROJECT/<service>:<tag>.
    registry_url: str | None = None  # http://localhost:5000, https://harbor.example.com
    registry_project: str = "click-deploy"
    registry_username: str | None = None
    registry_password: SecretStr | None = None

    # Worker and queue timings, in seconds.
    worker_slots: int = Field(default=2, ge=1, le=64)
    worker_lease_seconds: float = Field(default=30.0, gt=0)
    worker_heartbeat_seconds: float = Field(default=5.0, gt=0)
    queue_poll_seconds: float = Field(default=10.0, gt=0)
    reaper_interval_seconds: float = Field(default=5.0, gt=0)
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    build_timeout_seconds: float = Field(default=1800.0, gt=0)

    # Retries of transient failures: attempt n waits base * 2**(n-1), capped.
    retry_max_attempts: int = Field(default=3, ge=1, le=100)
    retry_backoff_seconds: float = Field(default=5.0, ge=0)
    retry_backoff_max_seconds: float = Field(default=300.0, ge=0)

    # What runs a claimed deployment: "module:factory" returning a Pipeline.
    worker_pipeline: str = "pipeline.deploy:deploy_pipeline"

    # GitHub App and GitLab (bot/github, bot/gitlab, bot/reporting). The webhook secret and
    # the App's private key (PEM text) are secrets; GITHUB_API_URL points at GitHub
    # Enterprise (https://HOST/api/v3) or a test double.
    github_webhook_secret: SecretStr | None = None
    github_app_id: str | None = None
    github_private_key: SecretStr | None = None
    github_api_url: str = "https://api.github.com"
    github_app_slug: str = "click-deploy"  # its comments come from "<slug>[bot]"
    webhook_max_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    # Reporting back from the outbox: poll interval, least time between two updates of one
    # deployment (the final state always goes out), attempts before a report is given up.
    report_poll_seconds: float = Field(default=1.0, gt=0)
    report_throttle_seconds: float = Field(default=3.0, ge=0)
    report_max_attempts: int = Field(default=8, ge=1)

    # HTTP (serve).
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    # How people reach this bot (links in check runs, comments, Slack).
    public_url: str = "http://127.0.0.1:8080"

    # REST API and pages. PAGES_ACCESS "link": a page opens for whoever has its signed link
    # (HMAC with PAGE_SECRET; unset, a random key kept in DATA_DIR/page-secret, which
    # suits one machine); "token": pages and their live logs need a read API token.
    pages_access: Literal["link", "token"] = "link"
    page_secret: SecretStr | None = None
    # A viewer of a live log lagging this many batches behind re-reads from its cursor.
    log_viewer_buffer: int = Field(default=256, ge=1, le=100_000)

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"

    # --- build isolation -----------------------------------------------------------------
    # The network a build's RUN steps get. "default": the engine's default network (a
    # buildkitd's own sandbox network), so a repository's RUN cannot reach services that
    # listen on the build host's loopback; "host": the build host's network (only where
    # the engine has no other, e.g. dockerd --bridge=none; buildkitd must allow the
    # network.host entitlement); "none": no network at all.
    build_network: Literal["default", "host", "none"] = "default"

    # --- release (pipeline/release): putting a verified image into service -------------
    release_webhook_secret: SecretStr | None = Field(
        default=None,
        description="the key that signs release webhooks (header X-Click-Deploy-Signature: "
        "sha256=<HMAC-SHA256 of the body>); services with release target webhook need it",
    )
    release_webhook_attempts: int = Field(
        default=5,
        ge=1,
        le=20,
        description="how often a release webhook is tried before the "
        "deployment fails at step release",
    )
    release_webhook_backoff_seconds: float = Field(
        default=1.0,
        ge=0,
        le=600,
        description="the wait before the second try of a release "
        "webhook; it doubles with every try",
    )
    release_webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, le=600, description="how long one try of a release webhook may take"
    )
    release_docker_host: str | None = Field(
        default=None,
        description="the Docker engine that runs services of target docker or swarm when "
        "their config names none (unix:///… or tcp://host:port); unset: DOCKER_HOST",
    )
    release_ports: str = Field(
        default="20000-29999",
        description="the host ports (FIRST-LAST) given to released containers, which run on "
        "the engine's host network and are told theirs in $PORT",
    )
    release_secrets_dir: Path | None = Field(
        default=None,
        description="a directory of secret values for released services: the file "
        "<service>/<NAME> holds the value of NAME (keep it readable by click-deploy only)",
    )
    caddy_admin_url: str = Field(
        default="http://127.0.0.1:2019",
        description="Caddy's admin API, through which the routes to released containers "
        "are changed",
    )
    caddy_listen: str = Field(
        default=":443",
        description="the address Caddy's click-deploy server listens on for the services' "
        "traffic (:443 with automatic HTTPS, or e.g. :8000)",
    )
    caddy_automatic_https: bool = Field(
        default=True,
        description="let Caddy get certificates for the services' host names; turn off for "
        "plain HTTP behind another proxy",
    )
    caddy_public_url: str = Field(
        default="https://{host}",
        description="the live URL people are given; {host} is the release's host name "
        "(e.g. http://{host}:8000 for a plain HTTP listener)",
    )

    @model_validator(mode="after")
    def _heartbeat_inside_lease(self) -> Settings:
        if self.worker_heartbeat_seconds >= self.worker_lease_seconds:
            raise ValueError(
                "WORKER_HEARTBEAT_SECONDS must be shorter than WORKER_LEASE_SECONDS "
                f"(got {self.worker_heartbeat_seconds} and {self.worker_lease_seconds})"
            )
        return self

    # Every value is checked here, at start-up, so a wrong one stops the process with one
    # line naming it (pipeline/setting_checks.py) instead of failing later, or elsewhere.
    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        return SecretStr(check.check_database_url(value.get_secret_value()))

    @field_validator("registry_url")
    @classmethod
    def _registry_url(cls, value: str | None) -> str | None:
        return value and check.check_http_url(value, "https://harbor.example.com")

    @field_validator(
        "github_url", "gitlab_url", "github_api_url", "gitlab_api_url", "slack_api_url",
        "public_url",
    )  # fmt: skip
    @classmethod
    def _http_urls(cls, value: str | None) -> str | None:
        return value and check.check_http_url(value, "https://example.com")

    @field_validator("registry_project")
    @classmethod
    def _registry_project(cls, value: str) -> str:
        return check.check_registry_project(value)

    @field_validator("worker_pipeline")
    @classmethod
    def _worker_pipeline(cls, value: str) -> str:
        return check.check_pipeline_name(value)

    @field_validator(
        "base_image_node", "base_image_python", "base_image_golang", "base_image_php",
        "base_image_composer", "base_image_ruby", "base_image_caddy", "base_image_runtime",
    )  # fmt: skip
    @classmethod
    def _base_images(cls, value: str | None) -> str | None:
        return value and check.check_image_reference(value)

    @field_validator("base_image_mirror")
    @classmethod
    def _base_image_mirror(cls, value: str | None) -> str | None:
        return value and check.check_image_reference(value, mirror=True)

    @field_validator("github_private_key")
    @classmethod
    def _github_private_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check.check_github_private_key(value.get_secret_value())
        return value

    @field_validator("github_app_id")
    @classmethod
    def _github_app_id(cls, value: str | None) -> str | None:
        if value is not None and not value.strip().isdigit():
            raise ValueError(
                f"must be the App's numeric ID, shown on its settings page (got {value!r})"
            )
        return value and value.strip()

    @model_validator(mode="after")
    def _pairs_go_together(self) -> Settings:
        pairs = (
            ("GITHUB_APP_ID", self.github_app_id, "GITHUB_PRIVATE_KEY", self.github_private_key),
            (
                "SLACK_SIGNING_SECRET",
                self.slack_signing_secret,
                "SLACK_BOT_TOKEN",
                self.slack_bot_token,
            ),
            (
                "REGISTRY_USERNAME",
                self.registry_username,
                "REGISTRY_PASSWORD",
                self.registry_password,
            ),
        )
        for first, first_value, second, second_value in pairs:
            if (first_value is None) != (second_value is None):
                missing = second if second_value is None else first
                raise ValueError(f"{missing} is not set: {first} and {second} go together")
        return self

    @property
    def effective_build_dir(self) -> Path:
        return self.build_dir or self.data_dir / "builds"

    def backoff_seconds(self, attempt: int) -> float:
        """Delay before retrying after failed attempt number `attempt` (1-based)."""
        delay: float = self.retry_backoff_seconds * 2 ** max(attempt - 1, 0)
        return min(delay, self.retry_backoff_max_seconds)


def describe_validation_error(error: ValidationError) -> str:
    """One line per bad variable, naming it; never echoes the value of a secret."""
    lines = []
    for item in error.errors():
        location = [str(part) for part in item.get("loc", ())]
        name = location[0].upper() if location else ""
        message = str(item.get("msg", "invalid value"))
        message = message.removeprefix("Value error, ")
        if name:
            lines.append(f"{name}: {message}")
        else:
            lines.append(message)
    return "; ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning validation errors into one readable ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise ConfigError(f"invalid configuration: {describe_validation_error(error)}") from None
