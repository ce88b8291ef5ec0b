"""The bot's own image (Dockerfile) built with the local Docker engine from the mirror's
base image and run against the test PostgreSQL; docker-compose.yml parsed and checked.
Docker Hub is not reachable here, so compose itself is never started."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.support.infra import docker, free_port

pytestmark = pytest.mark.slow

IMAGE = "click-deploy-ops-test:latest"


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return int(error.code), error.read().decode()


def test_the_bot_image_builds_runs_as_non_root_and_answers_healthz(
    docker_engine: str, mirror_registry: str, database_url: str
) -> None:
    started = time.monotonic()
    built = docker(
        "build",
        "--network",
        "host",
        "--build-arg",
        f"BASE={mirror_registry}/library/python:3.11-slim-bookworm",
        "-t",
        IMAGE,
        str(REPO_ROOT),
        env={"DOCKER_BUILDKIT": "1"},
        timeout=600,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    build_seconds = time.monotonic() - started
    config: dict[str, Any] = json.loads(docker("inspect", IMAGE, check=True).stdout)[0]["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["click-deploy"] and config["Cmd"] == ["serve"]
    assert "/healthz" in " ".join(config["Healthcheck"]["Test"])
    tools = docker("run", "--rm", "--network", "host", "--entrypoint", "git", IMAGE, "--version")
    assert tools.returncode == 0 and tools.stdout.startswith("git version"), tools.stderr

    port = free_port()
    run = docker(
        "run",
        "-d",
        "--network",
        "host",
        "--health-interval",
        "1s",
        "--health-start-period",
        "1s",
        "-e",
        f"DATABASE_URL={database_url}",
        "-e",
        f"HTTP_PORT={port}",
        "-e",
        "HTTP_HOST=127.0.0.1",
        IMAGE,
        "serve",
        check=True,
    )
    container = run.stdout.strip()
    try:
        deadline = time.monotonic() + 30
        status, body = 0, ""
        while time.monotonic() < deadline:
            try:
                status, body = get(f"http://127.0.0.1:{port}/healthz")
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        logs = docker("logs", container)
        assert status == 200, f"/healthz: {status} {body}\n{logs.stdout}{logs.stderr}"
        assert json.loads(body)["status"] == "ok"
        # Migrated by the container at start; no BuildKit in reach of it, and it says so.
        status, body = get(f"http://127.0.0.1:{port}/readyz")
        checks = json.loads(body)["checks"]
        assert checks["database"]["ok"] and checks["migrations"]["ok"], body
        assert (status, json.loads(body)["not_ready"]) == (503, ["buildkit"])
        status, body = get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "click_deploy_database_up 1.0" in body
        # The image's own HEALTHCHECK passes.
        health = ""
        while time.monotonic() < deadline + 15:
            health = docker("inspect", "-f", "{{.State.Health.Status}}", container).stdout.strip()
            if health == "healthy":
                break
            time.sleep(0.5)
        assert health == "healthy"
        # Logs are JSON lines, without tracebacks.
        output = docker("logs", container)
        lines = [line for line in (output.stdout + output.stderr).splitlines() if line.strip()]
        assert lines and all(json.loads(line)["event"] for line in lines)
        assert "Traceback" not in output.stdout + output.stderr
    finally:
        docker("rm", "-f", "-v", container, timeout=60)
    print(f"bot image: built in {build_seconds:.1f} s, served and healthy")


def test_the_compose_example_is_valid_and_complete() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "buildkitd", "registry", "bot", "worker"} <= set(services)
    bot = services["bot"]
    environment = bot["environment"]
    assert environment["BUILDER"] == "buildkitd"
    assert environment["BUILDKIT_ADDRESS"] == "tcp://buildkitd:1234"
    assert "@postgres:5432/" in environment["DATABASE_URL"]
    assert environment["REGISTRY_URL"] == "http://registry:5000"
    assert bot["build"]["target"] == "buildctl" and bot["command"] == ["serve"]
    assert services["worker"]["command"] == ["worker"]
    assert services["buildkitd"]["command"][:2] == ["--addr", "tcp://0.0.0.0:1234"]
    assert set(bot["depends_on"]) == {"postgres", "buildkitd", "registry"}
    for name, service in services.items():
        assert "image" in service or "build" in service, name
    # The Dockerfile has the stage compose builds.
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert (
        "AS buildctl" in dockerfile and "HEALTHCHECK" in dockerfile and "USER 10001" in dockerfile
    )
