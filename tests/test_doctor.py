"""`click-deploy doctor` as a person runs it: the real command as a subprocess, against the
real PostgreSQL, the real Docker engine and the real registries of `scripts/infra`, and the
GitHub, GitLab and Slack doubles (GitHub's checks requests against its OpenAPI description;
GET /app verifies the App's JWT with the App's public key)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from openapi_core import OpenAPI

from tests.conftest import REPO_ROOT
from tests.support import fake_github, fake_gitlab, fake_slack
from tests.support.fake_github import FakeGitHub
from tests.support.fake_gitlab import FakeGitLab
from tests.support.fake_slack import FakeSlack
from tests.support.github_hooks import private_key_pem
from tests.support.infra import TargetRegistry, free_port
from tests.support.npm_cache import OPENAPI, npm_file
from tests.support.registry_server import RegistryProcess, start_registry
from tests.support.waiting import PATIENCE

APP_ID = "4711"
SIGNING_SECRET = "slack-signing-secret-for-doctor"


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def line(self, name: str) -> str:
        """The line of the check `name` (its first line: the fix may follow)."""
        found = self.lines(name)
        assert found, f"no {name} line in:\n{self.out}"
        return found[0]

    def lines(self, name: str) -> list[str]:
        """The lines `MARK NAME DETAIL` of the check `name` (fix lines are indented)."""
        return [
            line
            for line in self.out.splitlines()
            if not line.startswith(" ") and line.split(None, 2)[1:2] == [name]
        ]

    def fix(self, name: str) -> str:
        lines = self.out.splitlines()
        index = lines.index(self.line(name))
        follower = lines[index + 1].strip() if index + 1 < len(lines) else ""
        assert follower.startswith("fix: "), f"no fix after the {name} line:\n{self.out}"
        return follower.removeprefix("fix: ")


@dataclass
class Doubles:
    github: FakeGitHub
    gitlab: FakeGitLab
    slack: FakeSlack
    app_key: str  # the App's private key (PEM): GitHub holds its public half


def new_private_key() -> str:
    """A fresh RSA key, PEM (github_hooks.private_key_pem is one key per session)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture(scope="session")
def github_openapi() -> OpenAPI:
    return fake_github.build_validator(str(npm_file(*OPENAPI)))


@pytest.fixture
async def doubles(github_openapi: OpenAPI) -> AsyncIterator[Doubles]:
    app_key = private_key_pem()
    public = (
        serialization.load_pem_private_key(app_key.encode(), password=None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    github = FakeGitHub(github_openapi, app_keys={APP_ID: (public, "click-deploy")})
    gitlab, slack = FakeGitLab(), FakeSlack()
    runners = [
        await fake_github.start(github),
        await fake_gitlab.start(gitlab),
        await fake_slack.start(slack),
    ]
    yield Doubles(github, gitlab, slack, app_key)
    for runner in runners:
        await runner.cleanup()
    assert not github.invalid and not gitlab.invalid, (github.invalid, gitlab.invalid)


def everything(
    database_url: str, docker_engine: str, target: TargetRegistry, doubles: Doubles
) -> dict[str, str]:
    """Every dependency configured, each with working credentials."""
    return {
        "DATABASE_URL": database_url,
        "DOCKER_HOST": docker_engine,
        "REGISTRY_URL": target.url,
        "REGISTRY_USERNAME": target.user,
        "REGISTRY_PASSWORD": target.password,
        "GITHUB_APP_ID": APP_ID,
        "GITHUB_PRIVATE_KEY": doubles.app_key,
        "GITHUB_API_URL": doubles.github.url,
        "GITLAB_TOKEN": fake_gitlab.TOKEN,
        "GITLAB_API_URL": doubles.gitlab.url,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_BOT_TOKEN": fake_slack.TOKEN,
        "SLACK_API_URL": doubles.slack.api_url,
    }


async def doctor(tmp_path: Path, env: dict[str, str], *args: str) -> Run:
    """`click-deploy doctor ARGS` in an empty folder (no .env) with exactly `env`."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "doctor",
        *args,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(REPO_ROOT),
            "LANG": "C.UTF-8",
            "DATA_DIR": str(tmp_path / "data"),
            **env,
        },
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), PATIENCE)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


def assert_no_secrets(run: Run, *secrets: str) -> None:
    shown = run.out + run.err
    assert "Traceback" not in shown, shown
    for secret in secrets:
        for part in [secret, *(line for line in secret.splitlines() if len(line) > 16)]:
            assert part not in shown, f"a secret is shown:\n{shown}"


CHECKS = [
    "settings",
    "database",
    "migrations",
    "builder",
    "registry",
    "github",
    "gitlab",
    "slack",
    "centrifugo",
]


async def test_every_dependency_reached_passes_with_exit_0(
    tmp_path: Path,
    database_url: str,
    docker_engine: str,
    target_registry: TargetRegistry,
    doubles: Doubles,
) -> None:
    env = everything(database_url, docker_engine, target_registry, doubles)
    run = await doctor(tmp_path, env)
    assert run.code == 0, run.out + run.err
    for name in CHECKS[:-1]:
        assert run.line(name).startswith("✓ "), run.out
    assert run.line("centrifugo").startswith("- "), run.out  # optional: not configured here
    assert "current (" in run.line("migrations")
    assert run.line("builder").endswith(f"docker engine at {docker_engine}: OK")
    assert "as ci: pushed a test blob to click-deploy/" in run.line("registry")
    assert run.line("registry").endswith("and deleted it")
    assert f"App click-deploy (id {APP_ID})" in run.line("github")
    assert f"token of {fake_gitlab.BOT['username']}" in run.line("gitlab")
    assert "bot " in run.line("slack")
    assert run.out.rstrip().endswith(f"all {len(CHECKS)} checks passed")
    assert_no_secrets(run, target_registry.password, doubles.app_key, SIGNING_SECRET)
    # Each vendor was asked its one question, with the configured credentials.
    assert [call.status for call in doubles.github.calls("GET", "/app")] == [200]
    assert len(doubles.gitlab.calls("GET", "/user")) == 1
    assert [call.method for call in doubles.slack.calls] == ["auth.test"]

    as_json = await doctor(tmp_path, env, "--json")
    assert as_json.code == 0
    document = json.loads(as_json.out)
    assert document["ok"] is True
    assert [check["name"] for check in document["checks"]] == CHECKS
    statuses = {check["name"]: check["status"] for check in document["checks"]}
    assert statuses.pop("centrifugo") == "not configured"
    assert set(statuses.values()) == {"pass"}


async def test_wrong_credentials_fail_each_with_its_fix(
    tmp_path: Path,
    database_url: str,
    docker_engine: str,
    target_registry: TargetRegistry,
    doubles: Doubles,
) -> None:
    other_key = new_private_key()  # not the App's: GitHub cannot verify the JWT
    gone = f"unix://{tmp_path}/no-engine.sock"
    wrong_password = "not-the-registry-password"
    env = everything(database_url, docker_engine, target_registry, doubles) | {
        "DOCKER_HOST": f"{docker_engine},{gone}",
        "REGISTRY_PASSWORD": wrong_password,
        "GITHUB_PRIVATE_KEY": other_key,
        "GITLAB_TOKEN": "glpat-not-the-token",
        "SLACK_BOT_TOKEN": "xoxb-not-the-token",
    }
    run = await doctor(tmp_path, env)
    assert run.code == 1, run.out + run.err
    assert run.line("database").startswith("✓ ") and run.line("migrations").startswith("✓ ")

    builders = run.lines("builder")
    assert builders[0] == f"✓ builder     docker engine at {docker_engine}: OK"
    assert builders[1].startswith(f"✗ builder     docker engine at {gone}: "), run.out
    assert "start the Docker engine, or correct DOCKER_HOST" in run.out

    assert run.line("registry").startswith("✗ ")
    assert "refused the credentials of user ci" in run.line("registry")
    assert run.fix("registry") == "correct REGISTRY_USERNAME/REGISTRY_PASSWORD"

    assert run.line("github").startswith("✗ ")
    assert "refused the App's token (401" in run.line("github")
    assert "GITHUB_PRIVATE_KEY" in run.fix("github")
    assert [call.status for call in doubles.github.calls("GET", "/app")] == [401]

    assert run.line("gitlab").startswith("✗ ") and "refused GITLAB_TOKEN (401)" in run.out
    assert run.line("slack").startswith("✗ ")
    assert "refused SLACK_BOT_TOKEN (invalid_auth)" in run.line("slack")
    assert "SLACK_BOT_TOKEN" in run.fix("slack")

    assert run.out.rstrip().endswith(f"5 of {len(CHECKS) + 1} checks failed")
    assert_no_secrets(run, wrong_password, other_key, "glpat-not-the-token", "xoxb-not-the-token")

    document = json.loads((await doctor(tmp_path, env, "--json")).out)
    failing = [check["name"] for check in document["checks"] if not check["ok"]]
    assert document["ok"] is False
    assert failing == ["builder", "registry", "github", "gitlab", "slack"]
    assert all(check["fix"] for check in document["checks"] if not check["ok"])


async def test_nothing_listening_is_unreachable_not_a_crash(
    tmp_path: Path, docker_engine: str
) -> None:
    dead_database, dead_registry = free_port(), free_port()
    password = "database-password-never-shown"
    env = {
        "DATABASE_URL": f"postgresql://app:{password}@127.0.0.1:{dead_database}/app",
        "DOCKER_HOST": docker_engine,
        "REGISTRY_URL": f"http://127.0.0.1:{dead_registry}",
        "REGISTRY_USERNAME": "ci",
        "REGISTRY_PASSWORD": "registry-password-never-shown",
    }
    run = await doctor(tmp_path, env)
    assert run.code == 1, run.out + run.err
    assert run.line("database").startswith(
        f"✗ database    PostgreSQL at 127.0.0.1:{dead_database}/app: unreachable: "
    )
    assert "DATABASE_URL" in run.fix("database")
    assert run.line("migrations") == "✗ migrations  unknown: the database is unreachable"
    assert run.line("registry").startswith(f"✗ registry    registry 127.0.0.1:{dead_registry} ")
    assert "unreachable" in run.line("registry")
    assert run.fix("registry") == "start the registry, or correct REGISTRY_URL"
    # Not configured is not a failure, and says how to use it.
    assert run.line("github") == (
        "- github      not configured (set GITHUB_APP_ID and GITHUB_PRIVATE_KEY to use GitHub)"
    )
    assert run.out.rstrip().endswith(f"3 of {len(CHECKS)} checks failed")
    assert_no_secrets(run, password, "registry-password-never-shown")


@pytest.fixture
def no_delete_registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    registry = start_registry(tmp_path / "registry", delete=False)
    yield registry
    registry.stop()


async def test_a_registry_that_refuses_delete_is_a_warning(
    tmp_path: Path,
    database_url: str,
    docker_engine: str,
    no_delete_registry: RegistryProcess,
) -> None:
    env = {
        "DATABASE_URL": database_url,
        "DOCKER_HOST": docker_engine,
        "REGISTRY_URL": no_delete_registry.url,
    }
    run = await doctor(tmp_path, env)
    assert run.code == 0, run.out + run.err
    line = run.line("registry")
    assert line.startswith(f"! registry    {no_delete_registry.host}: pushed a test blob"), line
    assert "could not delete it" in line and "405" in line
    assert "storage.delete.enabled" in run.fix("registry")
    assert run.out.rstrip().endswith(f"all {len(CHECKS)} checks passed (1 warned)")
    document = json.loads((await doctor(tmp_path, env, "--json")).out)
    registry = next(check for check in document["checks"] if check["name"] == "registry")
    assert (registry["status"], registry["ok"]) == ("warn", True)


async def test_bad_settings_exit_3_with_one_line_and_nothing_else_checked(
    tmp_path: Path,
) -> None:
    env = {"WORKER_SLOTS": "many", "REGISTRY_PASSWORD": "lonely-password-never-shown"}
    run = await doctor(tmp_path, env)
    assert run.code == 3, run.out + run.err
    lines = run.out.splitlines()
    assert lines[0].startswith("✗ settings  invalid configuration: WORKER_SLOTS: ")
    assert lines[1].strip().startswith("fix: correct the variable it names")
    assert lines[-1] == "1 of 1 checks failed"
    assert_no_secrets(run, "lonely-password-never-shown")
    assert run.err == ""

    as_json = await doctor(tmp_path, env, "--json")
    assert as_json.code == 3
    assert json.loads(as_json.out)["checks"][0]["name"] == "settings"


async def test_a_fresh_machine_checks_the_embedded_database(tmp_path: Path) -> None:
    """Nothing configured: the embedded PostgreSQL `serve` would use is started and checked;
    its schema is not there yet, which `serve` fixes at start: a warning."""
    gone = f"unix://{tmp_path}/no-engine.sock"
    run = await doctor(tmp_path, {"DOCKER_HOST": gone})
    assert run.code == 1, run.out + run.err  # the builder: nothing answers on DOCKER_HOST
    embedded = f"embedded PostgreSQL in {tmp_path / 'data' / 'postgres'}"
    assert run.line("database") == f"✓ database    {embedded}: reachable", run.out
    assert run.line("migrations") == "! migrations  no schema_migrations table"
    assert run.fix("migrations").startswith("run click-deploy migrate")
    assert run.line("builder").startswith(f"✗ builder     docker engine at {gone}: ")
    assert run.line("registry") == "- registry    not configured (set REGISTRY_URL to push images)"
    assert run.out.rstrip().endswith(f"1 of {len(CHECKS)} checks failed")


async def test_an_output_without_unicode_gets_plain_marks(
    tmp_path: Path, database_url: str
) -> None:
    env = {"DATABASE_URL": database_url, "SLACK_SIGNING_SECRET": SIGNING_SECRET}
    env |= {"SLACK_BOT_TOKEN": "xoxb-not-the-token"}
    env |= {"SLACK_API_URL": f"http://127.0.0.1:{free_port()}/api/", "PYTHONIOENCODING": "ascii"}
    run = await doctor(tmp_path, env | {"DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    assert run.code == 1 and "Traceback" not in run.err, run.out + run.err
    assert run.line("slack").startswith("XX slack ")
    assert run.line("registry").startswith("-- registry ")
    as_json = await doctor(tmp_path, env, "--json")
    assert as_json.out, as_json.err
    json.loads(as_json.out)  # escaped, not refused

    run = await doctor(tmp_path, {"WORKER_SLOTS": "many", "PYTHONIOENCODING": "ascii"})
    assert run.code == 3, run.out + run.err
    assert run.out.splitlines()[0].startswith("XX settings  invalid configuration: WORKER_SLOTS")


async def test_each_buildkitd_address_is_its_own_line(tmp_path: Path, database_url: str) -> None:
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    up, down = listening.getsockname()[1], free_port()
    try:
        env = {
            "DATABASE_URL": database_url,
            "BUILDER": "buildkitd",
            "BUILDKIT_ADDRESS": f"tcp://127.0.0.1:{up},tcp://127.0.0.1:{down}",
        }
        run = await doctor(tmp_path, env)
    finally:
        listening.close()
    assert run.code == 1, run.out + run.err
    assert run.lines("builder")[0] == (
        f"✓ builder     buildkitd at tcp://127.0.0.1:{up}: accepts connections"
    )
    assert run.lines("builder")[1].startswith(
        f"✗ builder     buildkitd at tcp://127.0.0.1:{down}: "
    )
    assert "start buildkitd, or correct BUILDKIT_ADDRESS" in run.out
