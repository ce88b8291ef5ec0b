"""pipeline/service_config.py: the one model of a service's `config`. Every key the bot
reads is in it; unknown keys get "did you mean"; types are strict; the store refuses a bad
config; a bad config stored before (written straight to the table) refuses deploys and
says so in the log."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import asyncpg
import pytest
from structlog.testing import capture_logs

from bot.cli_format import service_details
from pipeline import service_config
from pipeline.deploy import StepError, plan_service, repository_url
from pipeline.errors import InvalidValue
from pipeline.models import Service
from pipeline.plan import BaseImages
from pipeline.plan.config import PROVIDER_NAMES, BuilderName, BuildSettings
from pipeline.queue.queue import Queue
from pipeline.service_config import ConfigInvalid, ServiceConfig, config_reference, parse_config
from pipeline.settings import Settings
from pipeline.store import NewService, Store

GOOD: list[dict[str, Any]] = [
    {},
    {"previews": True, "protected": False, "submodules": True},
    {"allow": ["jsmith", "@octo-org/ops", "@group", "@group/sub/team"], "protected": True},
    {"watch": ["shared", "libs/common"]},
    {"url": "https://web.example.com", "preview_url": "https://{environment}.{service}.test"},
    {"slack_channel": "C0DEPLOY"},
    {"slack": {"users": ["U0ALICE", "W0BOB"], "usergroups": ["S0OPS"], "channels": ["C0X"]}},
    {"slack": {}},
    {"build": {"dockerfile": "deploy/Dockerfile", "target": "prod", "build_args": {"A": "1"}}},
    {"build": {"provider": "python", "install": "pip install .", "apt_packages": ["libpq5"]}},
    {"build": {"env": {"NODE_ENV": "production"}, "start": "node server.js"}},
]

BAD: list[tuple[dict[str, Any], str]] = [
    # The example: a string where a list belongs let everyone deploy.
    ({"slack": {"users": "U0ALLOWED"}}, "config.slack.users: Input should be a valid list"),
    ({"slack": {"users": ["#deploys"]}}, "config.slack.users.0: '#deploys' is not a Slack user"),
    ({"slack": {"users": ["C0CHANNEL"]}}, "not a Slack user id (U… or W…)"),
    ({"slack": {"channels": "C0X"}}, "config.slack.channels: Input should be a valid list"),
    (
        {"slack": {"user": ["U0ALICE"]}},
        "config.slack.user: is not a known key (did you mean users?)",
    ),
    ({"slack": ["U0ALICE"]}, "config.slack: Input should be a valid dictionary"),
    ({"slak": {}}, "config.slak: is not a known key (did you mean slack?)"),
    ({"protect": True}, "did you mean protected?"),
    ({"whatever": 1}, "is not a known key (known keys: allow, build,"),
    ({"protected": "yes"}, "config.protected: Input should be a valid boolean (got a string)"),
    ({"previews": 1}, "config.previews: Input should be a valid boolean (got a number)"),
    ({"submodules": "false"}, "config.submodules: Input should be a valid boolean"),
    ({"allow": "jsmith"}, "config.allow: Input should be a valid list (got a string)"),
    ({"allow": ["j smith"]}, "is neither a login nor a team"),
    ({"allow": ["@"]}, "is neither a login nor a team"),
    ({"allow": ["@ops/"]}, "is neither a login nor a team"),
    ({"allow": [7]}, "config.allow.0: Input should be a valid string (got a number)"),
    ({"watch": "shared"}, "config.watch: Input should be a valid list"),
    ({"watch": ["../etc"]}, "config.watch.0: watch path '../etc' is not allowed"),
    ({"watch": ["/etc"]}, "relative"),
    ({"url": "javascript:alert(1)"}, "config.url: 'javascript:alert(1)' is not allowed"),
    ({"preview_url": "https://{env}.x.test"}, "the only placeholders are"),
    ({"preview_url": "https://{0}.x.test"}, "the only placeholders are"),
    ({"slack_channel": "deploys"}, "config.slack_channel: 'deploys' is not a Slack channel id"),
    ({"build": {"strat": "x"}}, "config.build.strat: is not a known key (did you mean start?)"),
    ({"build": {"root_dir": "web"}}, "config.build.root_dir: is not a known key"),
    ({"build": {"provider": "rust"}}, "config.build.provider"),
    ({"build": {"apt_packages": "libpq5"}}, "config.build.apt_packages"),
    ({"build": {"env": {"A B": "1"}}}, "config.build.env"),
    ({"build": {"install": "a\nb"}}, "config.build.install"),
    ({"build": "Dockerfile"}, "config.build: Input should be a valid dictionary"),
    ({"allow": ["x"] * 101}, "config.allow: List should have at most 100 items"),
    # PostgreSQL cannot store NUL: refused naming where, not by the database.
    ({"build": {"install": "a\x00b"}}, "config: build.install contains a NUL character"),
    ({"build": {"env": {"A": "\x00"}}}, "config: build.env.A contains a NUL character"),
    ({"k\x00": 1}, "config: a key in it contains a NUL character"),
]


@pytest.mark.parametrize("config", GOOD)
def test_good_configs_are_stored_as_given(config: dict[str, Any]) -> None:
    assert parse_config(config).stored() == config


@pytest.mark.parametrize(("config", "message"), BAD)
def test_bad_configs_are_refused_naming_the_key(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigInvalid) as refused:
        parse_config(config)
    assert message in str(refused.value)
    assert all(problem.location.startswith("config") for problem in refused.value.problems)


def test_not_an_object_is_refused() -> None:
    with pytest.raises(InvalidValue, match=r"config: must be an object \(got a list\)"):
        parse_config(["previews"])


def test_several_problems_are_all_named() -> None:
    with pytest.raises(ConfigInvalid) as refused:
        parse_config({"previews": "yes", "slack": {"users": "U0X"}, "slak": 1})
    assert [problem.location for problem in refused.value.problems] == [
        "config.previews",
        "config.slack.users",
        "config.slak",
    ]


def test_values_are_stored_normalized() -> None:
    assert parse_config({"watch": ["./shared/", "a//b"]}).stored() == {"watch": ["shared", "a/b"]}


def test_every_key_the_bot_reads_is_in_the_model() -> None:
    assert set(ServiceConfig.model_fields) == {
        "build",
        "submodules",
        "watch",
        "previews",
        "protected",
        "allow",
        "url",
        "preview_url",
        "slack_channel",
        "slack",
        "release",
    }


def test_the_configuration_page_has_the_reference_table_made_from_the_model() -> None:
    readme = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    assert config_reference() in readme
    for key in ServiceConfig.model_fields:
        assert f"| `{key}` |" in config_reference()


def test_the_build_key_lists_every_build_setting_and_choice() -> None:
    described = ServiceConfig.model_fields["build"].description or ""
    for name in BuildSettings.model_fields:
        assert f"`{name}`" in described
    for choice in (*PROVIDER_NAMES, *get_args(BuilderName)):
        assert re.search(rf"[ (]{re.escape(choice)}[,;)]", described), choice


# --- the store ---------------------------------------------------------------------------


async def test_the_store_refuses_a_bad_config_on_create_and_update(store: Store) -> None:
    with pytest.raises(ConfigInvalid, match=r"config\.slack\.users"):
        await store.create_service(
            NewService("web", "acme/web", "github", config={"slack": {"users": "U0ALLOWED"}})
        )
    assert await store.list_services() == []
    service = await store.create_service(
        NewService("web", "acme/web", "github", config={"protected": True})
    )
    with pytest.raises(ConfigInvalid, match="did you mean protected"):
        await store.update_service(service.id, config={"protectd": False})
    assert (await store.get_service(service.id)).config == {"protected": True}


async def test_the_store_checks_every_value(store: Store) -> None:
    for new, message in [
        (NewService("web", "acme/web", "github", root_dir="../../etc"), "root dir"),
        (NewService("web", "acme/web", "github", branch="-x"), "branch '-x'"),
        (NewService("web", "ext::sh -c x", "git"), "ext::"),
        (NewService("web", "acme/web", "git"), "local paths"),
        (NewService("Web", "acme/web", "github"), "service name"),
    ]:
        with pytest.raises(InvalidValue, match=message):
            await store.create_service(new)
    assert await store.list_services() == []
    created = await store.create_service(NewService("web", "acme/web", "github", root_dir="./a/"))
    assert created.root_dir == "a"
    for change, message in [
        ({"root_dir": "/etc"}, "relative"),
        ({"branch": "a..b"}, "'..'"),
        ({"provider": "git"}, "local paths"),  # acme/web is no clone URL
        ({"repository": "https://x/y.git"}, "GitHub repository"),  # still github
    ]:
        with pytest.raises(InvalidValue, match=message):
            await store.update_service(created.id, **change)
    moved = await store.update_service(
        created.id, provider="git", repository="https://git.example.com/web.git"
    )
    assert (moved.provider, moved.repository) == ("git", "https://git.example.com/web.git")


async def test_a_bad_config_stored_before_refuses_and_is_logged(
    store: Store, pool: asyncpg.Pool
) -> None:
    service = await store.create_service(NewService("web", "acme/web", "github"))
    # As a row written before validation existed: straight into the table.
    await pool.execute(
        "UPDATE services SET config = $2 WHERE id = $1",
        service.id,
        {"slack": {"users": "U0ALLOWED"}, "previews": True},
    )
    stored = await store.get_service(service.id)
    service_config._LOGGED.clear()  # another test may have logged this very problem
    with capture_logs() as logs:
        options = stored.options
    assert options.problem is not None and "config.slack.users" in options.problem
    assert options.protected and options.allow == [] and not options.previews
    assert any(
        entry["event"] == "service config is invalid; deploys are refused"
        and entry["service"] == "web"
        and entry["log_level"] == "warning"
        for entry in logs
    )
    assert stored.options is options  # read once per row
    with capture_logs() as again:
        assert (await store.get_service(service.id)).options.problem == options.problem
    assert again == []  # logged once per service and problem, not at every read


def _service(
    config: dict[str, Any],
    root_dir: str = ".",
    provider: str = "github",
    repository: str = "acme/web",
) -> Service:
    return Service.from_row(
        {
            "id": 1,
            "name": "web",
            "provider": provider,
            "repository": repository,
            "branch": "main",
            "root_dir": root_dir,
            "config": config,
            "created_at": datetime.now(UTC),
            "updated_at": datetime.now(UTC),
        }
    )


def test_a_bad_stored_config_fails_the_plan_naming_it(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("hi")
    images = BaseImages.from_settings(Settings())
    failed = plan_service(tmp_path, _service({"build": {"strat": "x"}}), images)
    assert not failed.ok
    assert failed.message == (
        "the service's config is not valid: config.build.strat: is not a known key "
        "(did you mean start?)"
    )
    outside = plan_service(tmp_path, _service({}, root_dir="../.."), images)
    assert not outside.ok and "root dir '../..' is not allowed" in (outside.message or "")
    planned = plan_service(tmp_path, _service({"build": {"provider": "static"}}), images)
    assert planned.ok and planned.plan is not None and planned.plan.runtime == "static"


def test_service_show_says_a_stored_config_is_not_valid() -> None:
    shown = service_details(_service({"slack": {"users": "U0ALLOWED"}}))
    assert "config is not valid" in shown and "config.slack.users" in shown
    assert "config is not valid" not in service_details(_service({"previews": True}))


@pytest.mark.parametrize(
    ("provider", "repository"),
    [("git", "ext::sh -c touch% /tmp/x"), ("git", "/srv/x.git"), ("github", "../x")],
)
def test_a_repository_stored_before_it_was_checked_is_never_cloned(
    provider: str, repository: str
) -> None:
    with pytest.raises(StepError, match=r"clone failed: repository .* is not"):
        repository_url(_service({}, provider=provider, repository=repository), Settings())
    assert repository_url(_service({}), Settings()).endswith("/acme/web.git")


def test_no_code_reads_the_stored_config_around_the_model() -> None:
    """Every read goes through `Service.options`: a `config.get("…")` elsewhere would
    trust a stored value the model refuses (as `slack.users` as a string once did)."""
    root = Path(__file__).parents[1]
    pattern = re.compile(r"\bconfig\.get\(|\bconfig\[[\"']|\.config\.(items|keys|values)\(")
    # These show the config as stored (the API with build values redacted below admin).
    allowed = {"bot/cli_format.py", "bot/api/schemas.py"}
    offenders = [
        f"{path.relative_to(root)}:{number}"
        for folder in ("bot", "pipeline")
        for path in sorted((root / folder).rglob("*.py"))
        if str(path.relative_to(root)) not in allowed and "plan" not in path.parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


async def test_the_queue_refuses_a_target_or_ref_nobody_could_deploy(
    queue: Queue, service: int, pool: asyncpg.Pool
) -> None:
    """Each entry point checks first; the queue checks again where deployments are
    stored, so a new entry point cannot forget it."""
    for kwargs, message in [
        ({"environment": "prod uction/../x"}, "environment 'prod uction/../x' is not allowed"),
        ({"environment": ""}, "environment '' is not allowed"),
        ({"ref": "-x"}, "ref '-x' is not a git branch or tag name"),
        ({"ref": "--upload-pack=touch /tmp/x"}, "not starting with '-'"),
    ]:
        with pytest.raises(InvalidValue, match=re.escape(message)):
            await queue.enqueue(service, **kwargs)  # type: ignore[arg-type]
    assert await pool.fetchval("SELECT count(*) FROM deployments") == 0
