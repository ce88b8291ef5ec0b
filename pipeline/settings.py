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

    # --- database -------------------------------------------------------------------------
    database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL URL (postgresql://user:password@host:5432/db); unset, an "
        "embedded PostgreSQL is started under DATA_DIR.",
    )
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Folder for the embedded database, the page-link key and, unless "
        "BUILD_DIR is set, the build folders.",
    )
    database_pool_size: int = Field(
        default=10, ge=2, le=200, description="PostgreSQL connections each process keeps."
    )

    # --- building -------------------------------------------------------------------------
    # Either transport may list several daemons, comma-separated: each service builds on the
    # same one (cache affinity), and the next takes over when it is down (pipeline.buildkit.pool).
    builder: Literal["docker", "buildkitd"] = Field(
        default="docker",
        description="How images are built: `docker` uses a Docker engine's BuildKit at "
        "DOCKER_HOST; `buildkitd` runs buildctl against BUILDKIT_ADDRESS.",
    )
    docker_host: str = Field(
        default="unix:///var/run/docker.sock",
        description="The Docker engine (unix:///… or tcp://host:2375), or several separated "
        "by commas; each service always builds on the same one.",
    )
    buildkit_address: str | None = Field(
        default=None,
        description="The buildkitd for BUILDER=buildkitd (unix:///run/buildkit/buildkitd.sock "
        "or tcp://host:1234), or several separated by commas.",
    )
    buildkit_tls_ca: Path | None = Field(
        default=None, description="CA certificate file that buildkitd's TLS is checked against."
    )
    buildkit_tls_cert: Path | None = Field(
        default=None, description="Client certificate file presented to buildkitd over TLS."
    )
    buildkit_tls_key: Path | None = Field(
        default=None, description="Private key file of BUILDKIT_TLS_CERT."
    )
    build_cache: bool = Field(
        default=False,
        description="With BUILDER=buildkitd, export and import a registry build cache "
        "(the service's image repository, tag buildcache).",
    )
    build_dir: Path | None = Field(
        default=None,
        description="Where each deployment gets its own folder while it builds (always "
        "removed after); unset, DATA_DIR/builds.",
    )
    # --- Slack (bot/slack) ----------------------------------------------------------------
    slack_signing_secret: SecretStr | None = Field(
        default=None,
        description="The Slack app's signing secret, which checks Slack's requests; goes "
        "with SLACK_BOT_TOKEN (without both, the Slack routes are off).",
    )
    slack_bot_token: SecretStr | None = Field(
        default=None,
        description="The Slack app's bot token (xoxb-…) that posts and edits messages; goes "
        "with SLACK_SIGNING_SECRET.",
    )
    slack_api_url: str = Field(
        default="https://slack.com/api/",
        description="Where Slack's Web API answers; change it only to point at a test double.",
    )

    # --- cloning --------------------------------------------------------------------------
    # GitHub App installation tokens use the user "x-access-token", GitLab tokens "oauth2".
    github_url: str = Field(
        default="https://github.com",
        description="Where services of provider github are cloned from (your GitHub "
        "Enterprise address, if you use one).",
    )
    gitlab_url: str = Field(
        default="https://gitlab.com",
        description="Where services of provider gitlab are cloned from, and GitLab's API "
        "unless GITLAB_API_URL is set (a self-managed instance's address).",
    )
    git_username: str = Field(
        default="x-access-token",
        description="User name sent with GIT_TOKEN over HTTPS (GitLab tokens: oauth2).",
    )
    git_token: SecretStr | None = Field(
        default=None,
        description="HTTPS clone token for services of provider git; sent only to the "
        "service's own host, never written to disk.",
    )
    clone_timeout_seconds: float = Field(
        default=300.0, gt=0, description="Longest a whole clone (submodules included) may take."
    )
    clone_max_megabytes: int = Field(
        default=2048,
        ge=1,
        description="Largest a checkout may be (fetched data plus files, submodules "
        "included), checked before a file is written.",
    )

    # --- base images of generated Dockerfiles -----------------------------------------------
    # BASE_IMAGE_<RUNTIME> replaces one image outright; "{version}" in it is filled with the
    # detected version.
    base_image_mirror: str | None = Field(
        default=None,
        description="Registry prefix the official base images are pulled through (a Harbor "
        "proxy-cache project, an air-gapped registry), e.g. harbor.example.com/dockerhub.",
    )
    base_image_node: str | None = Field(
        default=None,
        description="Node.js base image instead of node:{version}-bookworm-slim; {version} "
        "is filled in.",
    )
    base_image_bun: str | None = Field(
        default=None, description="Bun base image instead of oven/bun:{version}-slim."
    )
    base_image_python: str | None = Field(
        default=None, description="Python base image instead of python:{version}-slim."
    )
    base_image_golang: str | None = Field(
        default=None, description="Go build image instead of golang:{version}-bookworm."
    )
    base_image_php: str | None = Field(
        default=None, description="PHP base image instead of php:{version}-cli."
    )
    base_image_composer: str | None = Field(
        default=None, description="Composer image PHP apps install with instead of composer:2."
    )
    base_image_ruby: str | None = Field(
        default=None, description="Ruby base image instead of ruby:{version}-slim-bookworm."
    )
    base_image_caddy: str | None = Field(
        default=None, description="Image static sites are served with instead of caddy:2."
    )
    base_image_runtime: str | None = Field(
        default=None,
        description="Plain image of Go binaries and shell apps instead of debian:bookworm-slim.",
    )

    # --- GitLab (bot/gitlab) ----------------------------------------------------------------
    gitlab_webhook_secret: SecretStr | None = Field(
        default=None,
        description="The GitLab webhook's secret token (sent as X-Gitlab-Token); unset or "
        "empty, every GitLab delivery is refused.",
    )
    gitlab_token: SecretStr | None = Field(
        default=None,
        description="A GitLab project, group or personal access token with the api scope: "
        "statuses, MR notes, member checks, and clones (user oauth2) of provider gitlab.",
    )
    gitlab_api_url: str | None = Field(
        default=None,
        description="Where GitLab's API answers when it is not GITLAB_URL (a test double).",
    )
    gitlab_bot_username: str | None = Field(
        default=None,
        description="The GitLab user whose notes are the bot's own (ignored as commands); "
        "unset, asked of GitLab (GET /user).",
    )

    # --- registry: images go to REGISTRY_URL/REGISTRY_PROJECT/<service>:<tag> ---------------
    registry_url: str | None = Field(
        default=None,
        description="The registry images are pushed to (https://harbor.example.com, "
        "http://localhost:5000).",
    )
    registry_project: str = Field(
        default="click-deploy",
        description="Project (path) in the registry that holds every service's images.",
    )
    registry_username: str | None = Field(
        default=None,
        description="Registry user (a Harbor robot account, say); goes with REGISTRY_PASSWORD.",
    )
    registry_password: SecretStr | None = Field(
        default=None, description="Password of REGISTRY_USERNAME (Basic or Bearer-token auth)."
    )

    # --- worker and queue timings, in seconds ----------------------------------------------
    worker_slots: int = Field(
        default=2, ge=1, le=64, description="Deployments one worker process runs at once."
    )
    worker_lease_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A worker not heard from for this long loses its deployments to another.",
    )
    worker_heartbeat_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often a worker renews its leases; must be shorter than "
        "WORKER_LEASE_SECONDS.",
    )
    queue_poll_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Safety-net poll of the queue; NOTIFY wakes workers at once anyway.",
    )
    reaper_interval_seconds: float = Field(
        default=5.0, gt=0, description="How often workers look for expired leases."
    )
    shutdown_grace_seconds: float = Field(
        default=30.0,
        ge=0,
        description="How long the first SIGTERM lets running deployments finish before "
        "handing them back to the queue.",
    )
    build_timeout_seconds: float = Field(
        default=1800.0, gt=0, description="A deployment running longer is stopped and failed."
    )

    # --- retries of transient failures: attempt n waits base * 2**(n-1), capped ------------
    retry_max_attempts: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Attempts a deployment gets for transient failures and lost workers.",
    )
    retry_backoff_seconds: float = Field(
        default=5.0,
        ge=0,
        description="Wait before the first retry; each later one waits twice as long.",
    )
    retry_backoff_max_seconds: float = Field(
        default=300.0, ge=0, description="Longest wait between two attempts."
    )

    worker_pipeline: str = Field(
        default="pipeline.deploy:deploy_pipeline",
        description="`module:factory` of the pipeline a worker runs claimed deployments "
        "through; change it only to plug in your own.",
    )

    # --- GitHub App (bot/github, bot/reporting) ---------------------------------------------
    github_webhook_secret: SecretStr | None = Field(
        default=None,
        description="The GitHub App's webhook secret (checks X-Hub-Signature-256); unset or "
        "empty, every GitHub delivery is refused.",
    )
    github_app_id: str | None = Field(
        default=None,
        description="The GitHub App's numeric ID (its settings page); goes with "
        "GITHUB_PRIVATE_KEY.",
    )
    github_private_key: SecretStr | None = Field(
        default=None,
        description="The GitHub App's private key: the PEM text itself, not a path; goes "
        "with GITHUB_APP_ID.",
    )
    github_api_url: str = Field(
        default="https://api.github.com",
        description="GitHub's API: https://HOST/api/v3 for GitHub Enterprise Server.",
    )
    github_app_slug: str = Field(
        default="click-deploy",
        description="The App's slug; comments from <slug>[bot] are the bot's own and ignored.",
    )
    webhook_max_bytes: int = Field(
        default=25 * 1024 * 1024,
        ge=1024,
        description="Largest webhook body accepted (GitHub and GitLab); larger gets a 413.",
    )
    # --- reporting back from the outbox ----------------------------------------------------
    report_poll_seconds: float = Field(
        default=1.0, gt=0, description="How often the reporter looks for reports that are due."
    )
    report_throttle_seconds: float = Field(
        default=3.0,
        ge=0,
        description="Least time between two updates of one deployment's reports (the final "
        "state always goes out).",
    )
    report_max_attempts: int = Field(
        default=8, ge=1, description="Attempts before a report to a forge or Slack is given up."
    )

    # --- HTTP (serve) -----------------------------------------------------------------------
    http_host: str = Field(
        default="127.0.0.1",
        description="Address `serve` listens on (0.0.0.0 for every interface).",
    )
    http_port: int = Field(default=8080, ge=0, le=65535, description="Port `serve` listens on.")
    public_url: str = Field(
        default="http://127.0.0.1:8080",
        description="How people and forges reach this bot: links in check runs, comments and "
        "Slack, and the base of the webhook URLs.",
    )

    # --- REST API and pages -----------------------------------------------------------------
    pages_access: Literal["link", "token"] = Field(
        default="link",
        description="`link`: a page opens for whoever has its signed link; `token`: pages "
        "and their live logs need a read API token.",
    )
    page_secret: SecretStr | None = Field(
        default=None,
        description="Key that signs page links, at least 32 bytes; unset, a random key kept "
        "in DATA_DIR/page-secret (set it when several machines serve pages).",
    )
    log_viewer_buffer: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="Batches of log lines a live viewer may lag before it re-reads from its "
        "cursor.",
    )

    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Least severe log lines written to stderr."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto",
        description="Format of the log lines; `auto`: JSON unless stderr is a terminal.",
    )

    # --- build isolation -----------------------------------------------------------------
    build_network: Literal["default", "host", "none"] = Field(
        default="default",
        description="Network of a build's RUN steps: `default` (the engine's own, which "
        "cannot reach the build host's loopback), `host` (needs buildkitd's network.host; "
        "for dockerd --bridge=none), `none`.",
    )

    # --- Railpack --------------------------------------------------------------------------
    railpack_path: str = Field(
        default="railpack",
        description='The railpack CLI used for services with builder = "railpack" and for '
        "apps the planner finds no runtime in: a name looked up on PATH, or a full path.",
    )
    railpack_timeout_seconds: float = Field(
        default=120.0,
        gt=0,
        description="How long `railpack prepare` may take to plan one app before the plan fails.",
    )
    railpack_builder_image: str | None = Field(
        default=None,
        description="The image used wherever a Railpack plan names "
        "ghcr.io/railwayapp/railpack-builder (any tag): set it where ghcr.io cannot be reached.",
    )
    railpack_runtime_image: str | None = Field(
        default=None,
        description="The image used wherever a Railpack plan names "
        "ghcr.io/railwayapp/railpack-runtime (any tag): set it where ghcr.io cannot be reached.",
    )
    railpack_image_mirror: str | None = Field(
        default=None,
        description="A registry prefix that replaces ghcr.io in the other images of Railpack "
        "plans (a Harbor proxy-cache project such as harbor.example.com/ghcr).",
    )

    # --- release (pipeline/release): putting a verified image into service -------------
    release_webhook_secret: SecretStr | None = Field(
        default=None,
        description="the key that signs release webhooks (header X-Click-Deploy-Signature: "
        "sha256=<HMAC-SHA256 of the body>); services with release target webhook need it.",
    )
    release_webhook_attempts: int = Field(
        default=5,
        ge=1,
        le=20,
        description="how often a release webhook is tried before the "
        "deployment fails at step release.",
    )
    release_webhook_backoff_seconds: float = Field(
        default=1.0,
        ge=0,
        le=600,
        description="the wait before the second try of a release "
        "webhook; it doubles with every try.",
    )
    release_webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, le=600, description="how long one try of a release webhook may take."
    )
    release_docker_host: str | None = Field(
        default=None,
        description="the Docker engine that runs services of target docker or swarm when "
        "their config names none (unix:///… or tcp://host:port); unset: DOCKER_HOST.",
    )
    release_ports: str = Field(
        default="20000-29999",
        description="the host ports (FIRST-LAST) given to released containers, which run on "
        "the engine's host network and are told theirs in $PORT.",
    )
    release_secrets_dir: Path | None = Field(
        default=None,
        description="a directory of secret values for released services: the file "
        "<service>/<NAME> holds the value of NAME (keep it readable by click-deploy only).",
    )
    caddy_admin_url: str = Field(
        default="http://127.0.0.1:2019",
        description="Caddy's admin API, through which the routes to released containers "
        "are changed.",
    )
    caddy_listen: str = Field(
        default=":443",
        description="the address Caddy's click-deploy server listens on for the services' "
        "traffic (:443 with automatic HTTPS, or e.g. :8000).",
    )
    caddy_automatic_https: bool = Field(
        default=True,
        description="let Caddy get certificates for the services' host names; turn off for "
        "plain HTTP behind another proxy.",
    )
    caddy_public_url: str = Field(
        default="https://{host}",
        description="the live URL people are given; {host} is the release's host name "
        "(e.g. http://{host}:8000 for a plain HTTP listener).",
    )
    caddy_retry_seconds: float = Field(
        default=10.0,
        ge=0,
        le=300,
        description="how long Caddy holds a request that no instance of a service accepts "
        "and tries again (a Swarm task being replaced); 0 answers 502 at once.",
    )

    # --- services started on this machine (bot/local_services.py) -----------------------
    local_services: bool = Field(
        default=True,
        description="With the default WORKER_PIPELINE, `serve` starts what is not configured "
        "on this machine: a Docker engine when DOCKER_HOST and BUILDKIT_ADDRESS are unset and "
        "none answers at the default socket, a registry when REGISTRY_URL is unset; set false "
        "to start nothing.",
    )
    local_registry_port: int = Field(
        default=5050,
        ge=1,
        le=65535,
        description="The port on 127.0.0.1 of the registry `serve` starts when REGISTRY_URL "
        "is unset; change it when another program uses it.",
    )

    # --- Centrifugo (bot/centrifugo) ---------------------------------------------------
    centrifugo_api_url: str | None = Field(
        default=None,
        description="Centrifugo's server HTTP API (e.g. http://centrifugo:8000/api); set "
        "with CENTRIFUGO_API_KEY to publish every deployment's log lines and status changes "
        "to its channel.",
    )
    centrifugo_api_key: SecretStr | None = Field(
        default=None,
        description="The key of Centrifugo's HTTP API (its http_api.key), sent as X-API-Key.",
    )
    centrifugo_channel_prefix: str = Field(
        default="deployments:",
        description="A deployment's channel is this prefix and its id; a namespace in it "
        "(the part before ':') must exist in Centrifugo's configuration.",
    )
    centrifugo_token_hmac_secret: SecretStr | None = Field(
        default=None,
        description="Centrifugo's HMAC secret for tokens (client.token.hmac_secret_key); "
        "set it to issue subscription tokens at GET /api/v1/deployments/{id}/logs/subscription.",
    )
    centrifugo_token_ttl_seconds: int = Field(
        default=3600,
        ge=60,
        le=7 * 24 * 3600,
        description="How long a subscription token is valid; Centrifugo asks the browser "
        "for a fresh one when it expires.",
    )
    centrifugo_queue_size: int = Field(
        default=2000,
        ge=10,
        le=1_000_000,
        description="Publications waiting for Centrifugo; beyond this (Centrifugo slow or "
        "down) lines are dropped for Centrifugo only and subscribers told where to re-read.",
    )
    centrifugo_batch_size: int = Field(
        default=100,
        ge=1,
        le=1000,
        description="Publications sent in one batch request to Centrifugo.",
    )
    centrifugo_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="How long one request to Centrifugo may take before it counts as failed.",
    )

    # --- GitHub App from a manifest (bot/github/manifest.py, pipeline/app_credentials.py) --
    secrets_key: SecretStr | None = Field(
        default=None,
        description=(
            "The key that encrypts the GitHub App created at /github/setup in the database: "
            "a Fernet key (32 random bytes, URL-safe base64; github-app.md shows how to make "
            "one); several, comma-separated, to rotate (the first encrypts, all decrypt). "
            "Keep it outside the database."
        ),
    )

    @field_validator("secrets_key")
    @classmethod
    def _secrets_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        return SecretStr(check.check_fernet_keys(value.get_secret_value()))

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

    @field_validator("centrifugo_api_url")
    @classmethod
    def _centrifugo_api_url(cls, value: str | None) -> str | None:
        return value and check.check_http_url(value, "http://centrifugo:8000/api").rstrip("/")

    @field_validator("centrifugo_channel_prefix")
    @classmethod
    def _centrifugo_channel_prefix(cls, value: str) -> str:
        if not value or len(value) > 200 or any(c.isspace() for c in value):
            raise ValueError(
                f"must be a channel name prefix without spaces, e.g. deployments: (got {value!r})"
            )
        return value

    @field_validator("centrifugo_token_hmac_secret")
    @classmethod
    def _centrifugo_token_hmac_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and 0 < len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters: HS256 needs a 256-bit key")
        return value

    @model_validator(mode="after")
    def _centrifugo_pair(self) -> Settings:
        url, key = self.centrifugo_api_url, self.centrifugo_api_key
        if (url is None) != (key is None):
            missing = "CENTRIFUGO_API_KEY" if key is None else "CENTRIFUGO_API_URL"
            raise ValueError(
                f"{missing} is not set: CENTRIFUGO_API_URL and CENTRIFUGO_API_KEY go together"
            )
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
