"""The CLI refuses a bad value (the issue's examples among them) with one line naming it
and exit 2, before anything is stored; `service update` and `--config` go through the same
checks as the REST API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import EXIT_USAGE, main


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LOG_FORMAT", "json")
    monkeypatch.chdir(tmp_path)
    return CliRunner()


ADD = ["service", "add", "web", "--repo", "acme/web", "--provider", "github"]


def one_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("click-deploy: ") and "Traceback" not in output
    return lines[0]


@pytest.mark.parametrize(
    ("arguments", "phrase"),
    [
        ([*ADD, "--root-dir", "../../etc"], "root dir '../../etc' is not allowed: use a folder"),
        ([*ADD, "--root-dir", "/etc"], "relative"),
        ([*ADD, "--branch", "-x"], "branch '-x' is not a git branch or tag name: use 1-255"),
        (["service", "add", "Web App", "--repo", "acme/web"], "service name 'Web App'"),
        (["service", "add", "web", "--repo", "ext::sh -c x"], "ext:: are not allowed"),
        (["service", "add", "web", "--repo", "-oProxyCommand=x"], "starts with '-'"),
        (["service", "add", "web", "--repo", "acme/web"], "local paths are not allowed"),
        ([*ADD, "--config", '{"slack": {"users": "U0ALLOWED"}}'], "config.slack.users: Input"),
        ([*ADD, "--config", '{"protectd": true}'], "config.protectd: is not a known key (did"),
        ([*ADD, "--config", '{"previews": "yes"}'], "config.previews: Input should be a valid"),
        ([*ADD, "--config", "[1]"], "config: must be an object (got a list)"),
        ([*ADD, "--config", '{"build": {"install": "a\\u0000b"}}'], "build.install contains a NUL"),
        ([*ADD, "--config", "{nope"], "--config is not JSON: Expecting"),
        ([*ADD, "--config", "@missing.json"], "--config: cannot read missing.json"),
    ],
)
def test_bad_service_values_are_one_line_and_exit_2(
    cli: CliRunner, arguments: list[str], phrase: str
) -> None:
    result = cli.invoke(main, arguments)
    assert result.exit_code == EXIT_USAGE, result.output
    assert phrase in one_line(result.output)
    listed = cli.invoke(main, ["service", "list"])
    assert "acme/web" not in listed.output


@pytest.mark.parametrize(
    ("arguments", "phrase"),
    [
        (["--env", "prod uction/../x"], "environment 'prod uction/../x' is not allowed: use 1-63"),
        (["--ref", "-x"], "ref '-x' is not a git branch or tag name"),
        (["--ref", "a..b"], "ref 'a..b'"),
        (["--commit", "abc1234"], "commit 'abc1234' is not a commit id: use the full id"),
        (["--commit", "x" * 40], "hexadecimal"),
    ],
)
def test_bad_deploy_values_are_one_line_and_exit_2(
    cli: CliRunner, arguments: list[str], phrase: str
) -> None:
    assert cli.invoke(main, ADD).exit_code == 0
    result = cli.invoke(main, ["deploy", "web", *arguments])
    assert result.exit_code == EXIT_USAGE, result.output
    assert phrase in one_line(result.output)
    assert cli.invoke(main, ["deployments", "web"]).output.strip() == "No deployments."


def test_rollback_checks_the_environment(cli: CliRunner) -> None:
    assert cli.invoke(main, ADD).exit_code == 0
    result = cli.invoke(main, ["rollback", "web", "--env", "../x"])
    assert result.exit_code == EXIT_USAGE
    assert "environment '../x' is not allowed" in one_line(result.output)


def test_service_update_changes_only_what_is_given_and_checks_it(
    cli: CliRunner, tmp_path: Path
) -> None:
    config = {"protected": True, "allow": ["@acme/ops"], "slack": {"users": ["U0ALLOWED"]}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert cli.invoke(main, [*ADD, "--root-dir", "./web/"]).exit_code == 0
    result = cli.invoke(main, ["service", "update", "web", "--config", "@config.json"])
    assert result.exit_code == 0 and result.output.startswith("updated service web (id ")
    shown = cli.invoke(main, ["service", "show", "web"]).output
    assert "config.protected" in shown and "U0ALLOWED" in shown
    assert " web" in shown  # the root dir, stored normalized

    for arguments, phrase in [
        (["--config", '{"slack": {"users": "U0ALLOWED"}}'], "config.slack.users"),
        (["--branch", "-x"], "branch '-x'"),
        (["--root-dir", "../../etc"], "root dir '../../etc'"),
        (["--provider", "git"], "repository 'acme/web' is not allowed: local paths"),
        (["--repo", "https://x.example/y.git"], "is not a GitHub repository"),
    ]:
        result = cli.invoke(main, ["service", "update", "web", *arguments])
        assert result.exit_code == EXIT_USAGE, result.output
        assert phrase in one_line(result.output)
    assert cli.invoke(main, ["service", "show", "web"]).output == shown

    moved = cli.invoke(
        main,
        ["service", "update", "web", "--provider", "git", "--repo", "git@git.example.com:a/w.git"],
    )
    assert moved.exit_code == 0, moved.output
    assert "git@git.example.com:a/w.git" in cli.invoke(main, ["service", "show", "web"]).output
