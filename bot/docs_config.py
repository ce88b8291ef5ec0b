"""`python -m bot.docs_config`: write docs/configuration.md from the models it documents.

The settings (`pipeline.settings.Settings`) and a service's config keys
(`pipeline.service_config`) are the truth; the page is made from their field descriptions so
that it can never miss a setting or keep one that is gone (tests/test_docs.py compares).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from pipeline.service_config import config_reference
from pipeline.settings import Settings

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


@dataclass(frozen=True)
class Group:
    title: str
    intro: str
    prefixes: tuple[str, ...] = ()
    names: tuple[str, ...] = ()

    def holds(self, name: str) -> bool:
        return name in self.names or name.startswith(self.prefixes)


# The page's sections, in order. A setting no group names lands in "Other settings", so a
# new one is documented even before it gets a section of its own.
GROUPS = (
    Group(
        "Database",
        "click-deploy keeps everything (services, deployments, logs, the outbox) in PostgreSQL.",
        names=("database_url", "data_dir", "database_pool_size"),
    ),
    Group(
        "Building",
        "Where and how images are built. See [building.md](building.md).",
        names=("builder", "build_cache", "build_dir", "build_network", "build_timeout_seconds"),
        prefixes=("docker_", "buildkit_"),
    ),
    Group(
        "Base images",
        "Images the generated Dockerfiles start from. Each override may hold `{version}`, "
        "which is filled with the detected version.",
        prefixes=("base_image_",),
    ),
    Group(
        "Services started on this machine",
        "What `serve` runs itself when it is not configured: a Docker engine and a registry. "
        "See [first-deploy.md](first-deploy.md).",
        prefixes=("local_",),
    ),
    Group(
        "Railpack",
        'Services planned by Railpack (`builder = "railpack"`). See [railpack.md](railpack.md).',
        prefixes=("railpack_",),
    ),
    Group(
        "Registry",
        "Images go to `REGISTRY_URL/REGISTRY_PROJECT/<service>:<commit>`.",
        prefixes=("registry_",),
    ),
    Group(
        "Cloning",
        "How commits are fetched.",
        names=("github_url", "gitlab_url"),
        prefixes=("git_", "clone_"),
    ),
    Group(
        "Queue and workers",
        "Timings are in seconds. Attempt n of a transient failure waits "
        "`RETRY_BACKOFF_SECONDS × 2^(n−1)`, at most `RETRY_BACKOFF_MAX_SECONDS`. See "
        "[queue.md](queue.md).",
        prefixes=("worker_", "queue_", "reaper_", "shutdown_", "retry_"),
    ),
    Group(
        "GitHub",
        "The GitHub App. See [github-gitlab.md](github-gitlab.md).",
        prefixes=("github_",),
        names=("webhook_max_bytes", "secrets_key"),
    ),
    Group(
        "GitLab",
        "The GitLab webhook and token. See [github-gitlab.md](github-gitlab.md).",
        prefixes=("gitlab_",),
    ),
    Group("Slack", "The Slack app. See [slack.md](slack.md).", prefixes=("slack_",)),
    Group(
        "Reporting",
        "How results go back to GitHub, GitLab and Slack (from the outbox).",
        prefixes=("report_",),
    ),
    Group(
        "HTTP, API and pages",
        "What `serve` listens on and how its pages are reached. See [api.md](api.md).",
        names=("http_host", "http_port", "public_url", "pages_access", "page_secret"),
        prefixes=("log_viewer_",),
    ),
    Group(
        "Logs",
        "click-deploy's own log lines. See [operations.md](operations.md#logs).",
        names=("log_level", "log_format"),
    ),
    Group(
        "Release",
        "Putting a verified image into service: deploy webhooks, Docker engines, Swarm and "
        "Caddy. See [release.md](release.md).",
        prefixes=("release_", "caddy_"),
    ),
    Group(
        "Centrifugo",
        "Live logs published to a Centrifugo a team already runs. See "
        "[centrifugo.md](centrifugo.md).",
        prefixes=("centrifugo_",),
    ),
)
OTHER = Group("Other settings", "Settings without a section of their own yet.")

# Defaults computed at start-up are shown as a reader would see them, not as they came out on
# the machine that wrote the page.
COMPUTED_DEFAULTS = {
    "data_dir": "`~/.local/share/click-deploy` (the user's data folder)",
}

INTRO = """\
# Configuration

<!-- written by `python -m bot.docs_config` from the settings model; do not edit by hand -->

click-deploy reads its settings from environment variables, or from a `.env` file in the
working directory (the environment wins). Names are case-insensitive. An empty variable
counts as unset (`DATABASE_URL=` is the embedded database).

Every value is checked when a command starts; a wrong one stops it with one line naming the
variable (exit 3), never a traceback. URLs must be `postgresql://` (`DATABASE_URL`, with valid
hosts, ports and `sslmode`) or http(s) (`REGISTRY_URL`, `PUBLIC_URL`, the API URLs); some
settings only work together (`GITHUB_APP_ID` and `GITHUB_PRIVATE_KEY`, `SLACK_SIGNING_SECRET`
and `SLACK_BOT_TOKEN`, `REGISTRY_USERNAME` and `REGISTRY_PASSWORD`). `serve` and `worker`
then check, before anything starts, the builder addresses and `WORKER_PIPELINE`, that
`DATA_DIR` and `BUILD_DIR` take files, and (`serve`) that `HTTP_HOST:HTTP_PORT` can be
listened on. A role, database or parameter PostgreSQL refuses is exit 3 naming
`DATABASE_URL`; a PostgreSQL that does not answer is exit 4.

Settings marked **secret** are never printed: not in errors, logs (their values are masked
as `***`), build output or the environment of git and buildctl.
"""

SERVICE_CONFIG = """\
## Service config

A service's `config` (`--config` of `click-deploy service add` and `service update`,
`config` in the REST API) is a JSON object with these keys, all optional. A key that is not
one of them is refused with "did you mean"; a value of another type is refused, never
converted (`"users": "U0ALLOWED"` is not a list, `"yes"` is not `true`). A stored config
that does not pass these checks (one written by an older version) refuses every deploy from
Slack and comments (the log line `service config is invalid` names the problem, and so does
`service show`) and fails its deployments' plan step until it is fixed.

{table}

For example: `click-deploy service update web --config '{{"protected": true, "allow":
["@acme/ops"], "slack": {{"channels": ["C0DEPLOYS"]}}}}'`.
"""


def env_name(name: str) -> str:
    return name.upper()


def is_secret(info: FieldInfo) -> bool:
    return SecretStr in (info.annotation, *get_args(info.annotation))


def shown_default(name: str, info: FieldInfo) -> str:
    if info.default_factory is not None:
        if name not in COMPUTED_DEFAULTS:
            raise LookupError(
                f"{env_name(name)} has a computed default: add it to COMPUTED_DEFAULTS"
            )
        return COMPUTED_DEFAULTS[name]
    value: Any = info.default
    if value is None:
        return "–"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`"


def allowed_values(info: FieldInfo) -> str:
    """What the type and its bounds allow, as a sentence ("" when anything of the type is)."""
    choices = [
        arg
        for candidate in (info.annotation, *get_args(info.annotation))
        if get_origin(candidate) is Literal
        for arg in get_args(candidate)
    ]
    if choices:
        return "One of " + ", ".join(f"`{choice}`" for choice in choices) + "."
    bounds = []
    for item in info.metadata:
        if isinstance(item, annotated_types.Gt):
            bounds.append(f"more than {item.gt}")
        elif isinstance(item, annotated_types.Ge):
            bounds.append(f"at least {item.ge}")
        elif isinstance(item, annotated_types.Le):
            bounds.append(f"at most {item.le}")
        elif isinstance(item, annotated_types.Lt):
            bounds.append(f"less than {item.lt}")
    return f"{', '.join(bounds).capitalize()}." if bounds else ""


def table(fields: Iterable[tuple[str, FieldInfo]]) -> str:
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, info in fields:
        if not info.description:
            raise LookupError(f"{env_name(name)} has no description: give its Field one")
        meaning = " ".join(
            part
            for part in (
                "**secret**." if is_secret(info) else "",
                info.description,
                allowed_values(info),
            )
            if part
        )
        rows.append(f"| `{env_name(name)}` | {shown_default(name, info)} | {meaning} |")
    return "\n".join(rows)


def group_of(name: str) -> Group:
    return next((group for group in GROUPS if group.holds(name)), OTHER)


def render() -> str:
    fields = list(Settings.model_fields.items())
    sections = [INTRO]
    for group in (*GROUPS, OTHER):
        members = [(name, info) for name, info in fields if group_of(name) is group]
        if members:
            sections.append(f"## {group.title}\n\n{group.intro}\n\n{table(members)}\n")
    sections.append(SERVICE_CONFIG.format(table=config_reference()))
    return "\n".join(sections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot.docs_config", description="Write docs/configuration.md."
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="only say whether the page is up to date (exit 1 if not)",
    )
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
        if current != text:
            print(f"{PAGE} is out of date: run python -m bot.docs_config", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
