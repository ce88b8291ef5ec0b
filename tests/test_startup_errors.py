"""A wrong setting stops `click-deploy` at start-up with one line naming the variable.

Every case runs the real `click-deploy` as a subprocess (real PostgreSQL for the settings
the server itself refuses) and asserts the exit code (3: bad configuration, 4: the database
cannot be reached) and that stderr is exactly that one line: no traceback, no log lines.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from pipeline.settings import Settings
from tests.conftest import REPO_ROOT
from tests.support.github_hooks import private_key_pem

EXIT_CONFIG = 3
EXIT_UNAVAILABLE = 4

NOT_A_KEY = "-----BEGIN RSA PRIVATE KEY-----\nbm90IGEga2V5\n-----END RSA PRIVATE KEY-----\n"


@dataclass(frozen=True)
class Case:
    name: str
    env: dict[str, str]  # "{db}" in a value: the test's own database URL
    variable: str  # the line names it
    code: int = EXIT_CONFIG
    command: tuple[str, ...] = ("serve",)
    also: tuple[str, ...] = field(default=())  # more words the line holds


CASES = [
    # DATABASE_URL: refused before connecting ...
    Case("db-scheme", {"DATABASE_URL": "mysql://app@db/app"}, "DATABASE_URL", also=("mysql",)),
    Case("db-scheme-sqlalchemy", {"DATABASE_URL": "postgresql+asyncpg://a@db/x"}, "DATABASE_URL"),
    Case("db-host", {"DATABASE_URL": "postgresql://postgres@[::1/postgres"}, "DATABASE_URL"),
    Case("db-port-text", {"DATABASE_URL": "postgresql://p@127.0.0.1:abc/x"}, "DATABASE_URL"),
    Case("db-port-range", {"DATABASE_URL": "postgresql://p@127.0.0.1:99999/x"}, "DATABASE_URL"),
    Case(
        "db-sslmode", {"DATABASE_URL": "{db}?sslmode=sometimes"}, "DATABASE_URL", also=("sslmode",)
    ),
    Case("db-not-a-url", {"DATABASE_URL": "db.internal:5432"}, "DATABASE_URL"),
    # ... or by the server itself
    Case("db-parameter", {"DATABASE_URL": "{db}?no_such_parameter=1"}, "DATABASE_URL"),
    Case("db-role", {"DATABASE_URL": "{db:role=no_such_role}"}, "DATABASE_URL", also=("role",)),
    Case("db-database", {"DATABASE_URL": "{db:name=no_such_db}"}, "DATABASE_URL"),
    Case(
        "db-target-session",
        {"DATABASE_URL": "{db}?target_session_attrs=whichever"},
        "DATABASE_URL",
    ),
    Case(
        "db-unreachable",
        {"DATABASE_URL": "postgresql://postgres@127.0.0.1:9/postgres"},
        "DATABASE_URL",
        code=EXIT_UNAVAILABLE,
        also=("cannot reach PostgreSQL",),
    ),
    # Building
    Case("docker-host-bracket", {"DOCKER_HOST": "tcp://[::1"}, "DOCKER_HOST"),
    Case("docker-host-scheme", {"DOCKER_HOST": "ssh://builder"}, "DOCKER_HOST"),
    Case("buildkitd-no-address", {"BUILDER": "buildkitd"}, "BUILDKIT_ADDRESS"),
    Case(
        "buildkitd-tls-file",
        {
            "BUILDER": "buildkitd",
            "BUILDKIT_ADDRESS": "tcp://buildkitd:1234",
            "BUILDKIT_TLS_CA": "/nonexistent/ca.pem",
        },
        "BUILDKIT_TLS_CA",
    ),
    Case("builder-kind", {"BUILDER": "podman"}, "BUILDER"),
    Case("worker-pipeline-form", {"WORKER_PIPELINE": "pipeline.deploy"}, "WORKER_PIPELINE"),
    Case("worker-pipeline-module", {"WORKER_PIPELINE": "no_such.module:f"}, "WORKER_PIPELINE"),
    # Registry
    Case("registry-scheme", {"REGISTRY_URL": "ftp://registry.example.com"}, "REGISTRY_URL"),
    Case("registry-no-scheme", {"REGISTRY_URL": "localhost:5000"}, "REGISTRY_URL"),
    Case("registry-port", {"REGISTRY_URL": "http://localhost:50a0"}, "REGISTRY_URL"),
    Case("registry-project", {"REGISTRY_PROJECT": "My Project"}, "REGISTRY_PROJECT"),
    Case(
        "registry-password-alone",
        {"REGISTRY_URL": "https://harbor.example.com", "REGISTRY_PASSWORD": "pw-x"},
        "REGISTRY_USERNAME",
    ),
    Case("base-image", {"BASE_IMAGE_NODE": "node 18"}, "BASE_IMAGE_NODE"),
    Case("base-image-scheme", {"BASE_IMAGE_PYTHON": "https://x/python:3"}, "BASE_IMAGE_PYTHON"),
    Case("base-image-mirror-tag", {"BASE_IMAGE_MIRROR": "harbor/x:1"}, "BASE_IMAGE_MIRROR"),
    # GitHub App
    Case(
        "github-key-path",
        {"GITHUB_APP_ID": "12345", "GITHUB_PRIVATE_KEY": "/etc/click-deploy/app.pem"},
        "GITHUB_PRIVATE_KEY",
    ),
    Case(
        "github-key-text",
        {"GITHUB_APP_ID": "12345", "GITHUB_PRIVATE_KEY": "not a key at all"},
        "GITHUB_PRIVATE_KEY",
    ),
    Case(
        "github-key-garbled",
        {"GITHUB_APP_ID": "12345", "GITHUB_PRIVATE_KEY": NOT_A_KEY},
        "GITHUB_PRIVATE_KEY",
    ),
    Case("github-key-alone", {"GITHUB_APP_ID": "12345"}, "GITHUB_PRIVATE_KEY"),
    Case(
        "github-app-id",
        {"GITHUB_APP_ID": "my-app", "GITHUB_PRIVATE_KEY": "{key}"},
        "GITHUB_APP_ID",
    ),
    Case("github-api-url", {"GITHUB_API_URL": "api.github.com"}, "GITHUB_API_URL"),
    Case("slack-token-alone", {"SLACK_SIGNING_SECRET": "s3cret"}, "SLACK_BOT_TOKEN"),
    Case("public-url", {"PUBLIC_URL": "deploy.example.com"}, "PUBLIC_URL"),
    # Where it runs and writes
    Case("http-port-in-use", {"HTTP_PORT": "{busy_port}"}, "HTTP_PORT", also=("in use",)),
    Case("http-port-text", {"HTTP_PORT": "eighty"}, "HTTP_PORT"),
    Case("http-host-unknown", {"HTTP_HOST": "no-such-host.invalid"}, "HTTP_HOST"),
    Case("http-host-foreign", {"HTTP_HOST": "192.0.2.1"}, "HTTP_HOST"),
    Case("data-dir-unwritable", {"DATA_DIR": "{a_file}/data"}, "DATA_DIR"),
    Case("build-dir-unwritable", {"BUILD_DIR": "{a_file}"}, "BUILD_DIR"),
    # Numbers and choices
    Case("slots", {"WORKER_SLOTS": "lots"}, "WORKER_SLOTS"),
    Case("timeout-infinite", {"BUILD_TIMEOUT_SECONDS": "inf"}, "BUILD_TIMEOUT_SECONDS"),
    Case("timeout-nan", {"CLONE_TIMEOUT_SECONDS": "nan"}, "CLONE_TIMEOUT_SECONDS"),
    Case("log-level", {"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
    Case(
        "heartbeat-lease",
        {"WORKER_LEASE_SECONDS": "5", "WORKER_HEARTBEAT_SECONDS": "9"},
        "WORKER_HEARTBEAT_SECONDS",
    ),
    # Other commands read the same settings and answer the same way.
    Case("worker-data-dir", {"DATA_DIR": "{a_file}/d"}, "DATA_DIR", command=("worker",)),
    Case("worker-docker", {"DOCKER_HOST": "tcp://[::1"}, "DOCKER_HOST", command=("worker",)),
    Case("migrate-scheme", {"DATABASE_URL": "mysql://x@y/z"}, "DATABASE_URL", command=("migrate",)),
    Case(
        "list-role",
        {"DATABASE_URL": "{db:role=no_such_role}"},
        "DATABASE_URL",
        command=("service", "list"),
    ),
    Case("plan-registry", {"REGISTRY_URL": "ftp://r"}, "REGISTRY_URL", command=("plan", ".")),
    Case(
        "token-key",
        {"GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY": "key.pem"},
        "GITHUB_PRIVATE_KEY",
        command=("token", "list"),
    ),
]


def clean_environment(tmp_path: Path) -> dict[str, str]:
    """The test process's environment without any click-deploy setting, and a fresh
    DATA_DIR; no .env is read (the working directory is tmp_path)."""
    settings = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in settings}
    env.update(PYTHONPATH=str(REPO_ROOT), DATA_DIR=str(tmp_path / "data"), HTTP_PORT="0")
    return env


def run_click_deploy(
    command: tuple[str, ...], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    # A case that wrongly starts would serve for ever: the timeout makes that a failure.
    script = Path(sys.executable).with_name("click-deploy")  # the installed console script
    program = [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]
    return subprocess.run(
        [*program, *command],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _with(url: str, *, role: str | None = None, name: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if role is not None:
        netloc = f"{role}@{netloc.rpartition('@')[2]}"
    path = f"/{name}" if name is not None else parts.path
    return urlunsplit(parts._replace(netloc=netloc, path=path))


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield int(listener.getsockname()[1])


@pytest.fixture
def fill_in(
    database_url: str, busy_port: int, tmp_path: Path
) -> Callable[[dict[str, str]], dict[str, str]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory\n")
    values = {
        # "{db}?k=v": the URL with one more parameter; the embedded server's URL has a query
        # of its own (?host=SOCKET_DIR), so the next one is joined with "&".
        "{db}?": database_url + ("&" if "?" in database_url else "?"),
        "{db}": database_url,
        "{db:role=no_such_role}": _with(database_url, role="no_such_role"),
        "{db:name=no_such_db}": _with(database_url, name=f"no_such_db_{uuid.uuid4().hex[:8]}"),
        "{busy_port}": str(busy_port),
        "{key}": private_key_pem(),
    }

    def fill(env: dict[str, str]) -> dict[str, str]:
        filled = {}
        for name, value in env.items():
            for placeholder, real in values.items():
                value = value.replace(placeholder, real)
            filled[name] = value.replace("{a_file}", str(a_file))
        return filled

    return fill


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_wrong_setting_is_one_line_naming_it(
    case: Case,
    database_url: str,
    fill_in: Callable[[dict[str, str]], dict[str, str]],
    tmp_path: Path,
) -> None:
    env = clean_environment(tmp_path)
    env["DATABASE_URL"] = database_url  # the rest is right: only the case's values are wrong
    env.update(fill_in(case.env))

    result = run_click_deploy(case.command, env, tmp_path)

    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("click-deploy: "), line
    assert case.variable in line
    for word in case.also:
        assert word in line
    assert result.returncode == case.code, line
    assert result.stdout == ""
    for secret in ("pw-x", "s3cret", "BEGIN"):
        assert secret not in line


def test_an_empty_database_url_is_the_embedded_database_not_libpqs_defaults(
    server_url: str, tmp_path: Path
) -> None:
    """DATABASE_URL= once meant libpq's defaults (PGHOST, PGDATABASE, ...), and `migrate`
    migrated whatever database those found. Empty is unset: the embedded database."""
    bystander = f"cd_bystander_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{bystander}"'))
    try:
        parts = urlsplit(server_url)
        env = clean_environment(tmp_path)
        # As root the embedded server runs as another user: its DATA_DIR must be reachable
        # for it, which pytest's private tmp_path is not.
        data_dir = Path(tempfile.mkdtemp(prefix="cd-embedded-"))
        data_dir.chmod(0o755)
        env.update(
            DATA_DIR=str(data_dir),
            DATABASE_URL="",
            PGHOST=parts.hostname or "127.0.0.1",
            PGPORT=str(parts.port or 5432),
            PGUSER=parts.username or "postgres",
            PGDATABASE=bystander,
        )
        result = run_click_deploy(("migrate",), env, tmp_path)
        assert result.returncode == 0, result.stderr
        assert "DATABASE_URL is not set: using the embedded PostgreSQL" in result.stderr
        assert result.stdout.startswith("applied ")
        assert (data_dir / "postgres").is_dir()
        assert asyncio.run(_tables(_with(server_url, name=bystander))) == []
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
        asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{bystander}" WITH (FORCE)'))


async def _admin(url: str, statement: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _tables(url: str) -> list[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        )
        return [row["tablename"] for row in rows]
    finally:
        await connection.close()
