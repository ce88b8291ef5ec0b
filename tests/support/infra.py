"""The real build infrastructure the pipeline tests use, started by `scripts/infra up`.

A Docker engine (Debian docker.io 20.10, embedded BuildKit, host networking only) on
DOCKER_HOST, a mirror registry holding the base images under MIRROR/library/…, and a target
registry with Basic auth. The session fixtures check that each part answers and, when one
does not, run `scripts/infra up` once; a part still down afterwards fails the test (these are
real parts of the system under test: they are never skipped).

Use them from a test module with `pytest_plugins = ["tests.support.infra"]`, or import the
helpers (`docker`, `run_container_and_get`) directly.
(PYTEST_DONT_REWRITE: test modules import the helpers before pytest loads the fixtures
as a plugin; the helpers raise their own AssertionErrors.)
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA_SCRIPT = REPO_ROOT / "scripts" / "infra"

DOCKER_SOCKET = "/run/cd-docker.sock"
DOCKER_HOST = f"unix://{DOCKER_SOCKET}"
# The Debian client (20.10): a newer `docker` first on PATH refuses BuildKit builds without
# the buildx plugin.
DOCKER_CLI = "/usr/bin/docker"

MIRROR = "localhost:5000"
MIRROR_URL = "http://127.0.0.1:5000"
TARGET_REGISTRY = "localhost:5001"
TARGET_REGISTRY_URL = "http://127.0.0.1:5001"
TARGET_USER = "ci"
TARGET_PASSWORD = "ci-registry-secret-5001"

# Every image `scripts/infra up` puts in the mirror, as the planner names them.
BASE_IMAGES: tuple[str, ...] = (
    f"{MIRROR}/library/debian:bookworm",
    f"{MIRROR}/library/debian:bookworm-slim",
    f"{MIRROR}/library/debian:trixie",
    f"{MIRROR}/library/node:18-bookworm-slim",
    f"{MIRROR}/library/node:20-bookworm-slim",
    f"{MIRROR}/library/node:22-bookworm-slim",
    f"{MIRROR}/library/node:24-bookworm-slim",
    f"{MIRROR}/oven/bun:1-slim",
    f"{MIRROR}/library/python:3.11-slim-bookworm",
    f"{MIRROR}/library/python:3.11-slim",
    f"{MIRROR}/library/python:3.13-slim",
    f"{MIRROR}/library/golang:1.19-bookworm",
    f"{MIRROR}/library/golang:1.27-bookworm",
    f"{MIRROR}/library/php:8.2-cli-bookworm",
    f"{MIRROR}/library/php:8.2-cli",
    f"{MIRROR}/library/php:8.4-cli",
    f"{MIRROR}/library/composer:2",
    f"{MIRROR}/library/ruby:3.1-slim-bookworm",
    f"{MIRROR}/library/caddy:2",
)

MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    )
)


@dataclass(frozen=True)
class TargetRegistry:
    """The registry deployments push to: HTTP, Basic auth."""

    url: str = TARGET_REGISTRY_URL
    host: str = TARGET_REGISTRY
    user: str = TARGET_USER
    password: str = TARGET_PASSWORD


# ------------------------------------------------------------------------- probes


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._unix_path)
        self.sock = sock


def docker_engine_answers(timeout: float = 3.0, path: str = DOCKER_SOCKET) -> bool:
    """The engine answers its /_ping on the socket (the shared engine's by default)."""
    connection = _UnixHTTPConnection(path, timeout)
    try:
        connection.request("GET", "/_ping")
        response = connection.getresponse()
        return response.status == 200 and response.read().strip() == b"OK"
    except OSError:
        return False
    finally:
        connection.close()


def http_status(
    url: str,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    timeout: float = 3.0,
) -> int:
    """The HTTP status of a request (0 when nothing answers)."""
    request = urllib.request.Request(url, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        with error:
            return int(error.code)
    except (OSError, http.client.HTTPException):
        return 0


def mirror_image_exists(reference: str) -> bool:
    """The mirror holds `localhost:5000/REPO:TAG`."""
    name, _, tag = reference.removeprefix(f"{MIRROR}/").rpartition(":")
    url = f"{MIRROR_URL}/v2/{name}/manifests/{tag}"
    return http_status(url, method="HEAD", headers={"Accept": MANIFEST_ACCEPT}) == 200


def mirror_answers() -> bool:
    return http_status(f"{MIRROR_URL}/v2/") == 200


def mirror_complete() -> bool:
    return mirror_answers() and all(mirror_image_exists(image) for image in BASE_IMAGES)


def target_answers() -> bool:
    return http_status(f"{TARGET_REGISTRY_URL}/v2/") == 401


# ------------------------------------------------------------------------- infra up

_infra_lock = threading.Lock()
_infra_result: subprocess.CompletedProcess[str] | None = None


def run_infra_up() -> subprocess.CompletedProcess[str]:
    """Run `scripts/infra up` once per test session (later calls return the first result)."""
    global _infra_result
    with _infra_lock:
        if _infra_result is None:
            _infra_result = subprocess.run(
                ["bash", str(INFRA_SCRIPT), "up"],
                capture_output=True,
                text=True,
                timeout=3600,
                check=False,
            )
        return _infra_result


def ensure_part(name: str, answers: Callable[[], bool]) -> None:
    """Make sure a part answers, running `scripts/infra up` when it does not; fail if it
    still does not (in CI and on a developer's machine alike: never skip a real part)."""
    if answers():
        return
    result = run_infra_up()
    if answers():
        return
    output = (result.stdout + result.stderr).strip().splitlines()
    tail = "\n".join(output[-30:])
    where = "CI" if os.environ.get("CI") == "true" else "this machine"
    pytest.fail(
        f"{name} does not answer on {where}, even after `scripts/infra up` "
        f"(exit {result.returncode}). Run `sudo scripts/infra up` and read its output:\n{tail}",
        pytrace=False,
    )


def ensure_tool(name: str, executable: str) -> str:
    """The path of a program a test needs (chromium, npm, docker-registry): installed by
    `scripts/infra up` when missing; a failure, never a skip, when it is still missing."""
    ensure_part(f"{name} ({executable})", lambda: shutil.which(executable) is not None)
    found = shutil.which(executable)
    assert found is not None
    return found


@pytest.fixture(scope="session")
def docker_engine() -> str:
    """The Docker engine's DOCKER_HOST (unix socket), answering."""
    ensure_part(f"the Docker engine on {DOCKER_HOST}", docker_engine_answers)
    return DOCKER_HOST


@pytest.fixture(scope="session")
def mirror_registry() -> str:
    """The mirror prefix (localhost:5000), answering and holding every base image."""
    ensure_part(f"the mirror registry {MIRROR_URL} with its base images", mirror_complete)
    return MIRROR


@pytest.fixture(scope="session")
def target_registry() -> TargetRegistry:
    """The target registry (Basic auth), answering."""
    ensure_part(f"the target registry {TARGET_REGISTRY_URL}", target_answers)
    return TargetRegistry()


# ------------------------------------------------------------------------- helpers


# Settings that would point the CLI at another engine.
_FOREIGN_DOCKER_ENV = frozenset(
    ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_TLS")
)


def docker_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for the Debian CLI against the cd-docker engine."""
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_DOCKER_ENV}
    env["DOCKER_HOST"] = DOCKER_HOST
    env.update(extra or {})
    return env


def docker(
    *args: str,
    check: bool = False,
    timeout: float = 600,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the Debian docker CLI against the cd-docker engine; output captured as text."""
    result = subprocess.run(
        [DOCKER_CLI, "-H", DOCKER_HOST, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        env=docker_env(env),
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_container_and_get(
    image: str,
    port: int | None = None,
    path: str = "/",
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> tuple[int, str]:
    """Run IMAGE detached with host networking and PORT set, GET http://127.0.0.1:PORT/PATH
    until it answers, and return (status, body). The container is always removed."""
    port = port or free_port()
    args = ["run", "-d", "--network", "host", "-e", f"PORT={port}"]
    for key, value in (env or {}).items():
        args += ["-e", f"{key}={value}"]
    started = docker(*args, image, timeout=120)
    if started.returncode != 0:
        raise AssertionError(f"docker run {image} failed: {started.stderr.strip()}")
    container = started.stdout.strip()
    url = f"http://127.0.0.1:{port}{path}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    return int(response.status), response.read().decode("utf-8", "replace")
            except urllib.error.HTTPError as error:
                with error:
                    return int(error.code), error.read().decode("utf-8", "replace")
            except (OSError, http.client.HTTPException):
                pass
            running = docker("inspect", "-f", "{{.State.Running}}", container).stdout.strip()
            if running != "true" or time.monotonic() > deadline:
                logs = docker("logs", "--tail", "50", container)
                state = "exited" if running != "true" else f"no answer after {timeout} s"
                raise AssertionError(
                    f"container of {image} ({state}) did not answer on {url}; its logs:\n"
                    f"{logs.stdout}{logs.stderr}"
                )
            time.sleep(0.2)
    finally:
        docker("rm", "-f", "-v", container, timeout=60)
