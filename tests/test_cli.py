"""The CLI as a person uses it: real commands, real database, readable errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main
from tests.conftest import REPO_ROOT


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LOG_FORMAT", "json")
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def test_service_lifecycle_and_deployments(cli: CliRunner) -> None:
    result = cli.invoke(
        main, ["service", "add", "web", "--repo", "acme/web", "--provider", "github"]
    )
    assert result.exit_code == 0, result.output
    assert "added service web (id " in result.output

    result = cli.invoke(main, ["service", "list"])
    assert result.exit_code == 0
    assert "web" in result.output and "acme/web" in result.output and "github" in result.output

    # Upper case is accepted and stored in lower case.
    result = cli.invoke(main, ["deploy", "web", "--commit", "0123456789ABCDEF" * 2 + "01234567"])
    assert result.exit_code == 0, result.output
    first_id = int(result.output.split()[2])
    result = cli.invoke(main, ["deploy", "web", "--ref", "release"])
    second_id = int(result.output.split()[2])

    result = cli.invoke(main, ["status", str(first_id)])
    assert result.exit_code == 0
    assert "superseded" in result.output and f"superseded by  {second_id}" in result.output

    result = cli.invoke(main, ["deployments", "web"])
    lines = result.output.splitlines()
    assert lines[1].split()[0] == str(second_id) and "queued" in lines[1]
    assert "0123456789ab" in lines[2]

    result = cli.invoke(main, ["service", "remove", "web", "--yes"])
    assert result.exit_code == 1
    assert "queued or running; cancel them first" in result.output

    result = cli.invoke(main, ["cancel", str(second_id)])
    assert (result.exit_code, result.output.strip()) == (0, f"cancelled deployment {second_id}")
    result = cli.invoke(main, ["cancel", str(second_id)])
    assert result.exit_code == 1 and "already cancelled" in result.output

    result = cli.invoke(main, ["service", "show", "web"])
    assert result.exit_code == 0 and "acme/web" in result.output and "cancelled" in result.output
    result = cli.invoke(main, ["service", "remove", "web", "--yes"])
    assert result.exit_code == 0 and "removed service web" in result.output


def test_user_errors_are_one_line_with_an_exit_code(cli: CliRunner) -> None:
    result = cli.invoke(main, ["deploy", "nope"])
    assert (result.exit_code, result.output.strip()) == (
        1,
        "click-deploy: there is no service named 'nope'",
    )
    result = cli.invoke(main, ["status", "12345"])
    assert result.exit_code == 1 and "no deployment with id 12345" in result.output
    result = cli.invoke(main, ["service", "add", "Bad Name", "--repo", "x"])
    assert result.exit_code == 2 and "is not allowed" in result.output
    result = cli.invoke(main, ["status", "abc"])
    assert result.exit_code == 2  # click's usage error


def test_bad_configuration_exits_3_naming_the_variable(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKER_SLOTS", "many")
    result = cli.invoke(main, ["service", "list"])
    assert result.exit_code == 3
    assert result.output.startswith("click-deploy: invalid configuration: WORKER_SLOTS:")
    assert "Traceback" not in result.output


def test_unreachable_database_exits_4(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody:sekrit@127.0.0.1:1/none")
    result = cli.invoke(main, ["service", "list"])
    assert result.exit_code == 4
    assert "cannot reach PostgreSQL" in result.output and "sekrit" not in result.output


def test_logs_follow_ends_with_the_deployment(
    cli: CliRunner, database_url: str, tmp_path: Path
) -> None:
    added = cli.invoke(
        main, ["service", "add", "web", "--repo", "acme/web", "--provider", "github"]
    )
    assert added.exit_code == 0, added.output
    env = {
        "DATABASE_URL": database_url,
        "DATA_DIR": str(tmp_path / "d"),
        "PYTHONPATH": str(REPO_ROOT),
        "WORKER_PIPELINE": "tests.support.pipelines:scripted",
        "LOG_FORMAT": "json",
        "PATH": "/usr/bin:/bin",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "worker"],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        result = cli.invoke(main, ["deploy", "web", "--follow"])
        assert result.exit_code == 0, result.output
        assert "building main" in result.output
        lines = result.output.rstrip().splitlines()
        assert lines[-4].startswith("-- deployment 1 succeeded"), result.output
        # A deployment that succeeded ends with the line that starts its image.
        assert lines[-3] == "-- start it with:", result.output
        assert lines[-2].startswith("docker ") and " run --rm " in lines[-2], result.output
        assert lines[-2].endswith(" registry.test/web:1"), result.output
        result = cli.invoke(main, ["logs", "1"])
        assert result.exit_code == 0 and "building main" in result.output
    finally:
        worker.terminate()
        worker.wait(20)


def test_migrate_reports_what_it_did(cli: CliRunner) -> None:
    result = cli.invoke(main, ["migrate"])
    assert (result.exit_code, result.output.strip()) == (0, "database is up to date")


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(main, ["--help"])
    for command in (
        "migrate",
        "worker",
        "serve",
        "service",
        "deploy",
        "status",
        "logs",
        "cancel",
        "deployments",
    ):
        assert command in result.output
    assert "Exit codes" in result.output
