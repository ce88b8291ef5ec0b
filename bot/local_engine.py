"""The Docker engine on this machine: found at the default socket, or started the way
scripts/infra starts one (Debian's docker.io, embedded BuildKit, no bridge network), and
asked about the images it built (the `docker run` line that starts one)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from bot import local_install

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# The engine serve starts: one per machine, left running when serve stops (the containers
# of the images it built run there), found again by the next start.
ENGINE_SOCKET = Path("/run/click-deploy-docker.sock")
ENGINE_HOST = f"unix://{ENGINE_SOCKET}"
ENGINE_EXEC_ROOT = Path("/run/click-deploy-docker")
ENGINE_PIDFILE = Path("/run/click-deploy-docker.pid")
ENGINE_LOG = Path("/var/log/click-deploy-dockerd.log")
START_SECONDS = 90.0
DEFAULT_APP_PORT = 8080  # the $PORT of generated Dockerfiles (pipeline.plan.model)

INSTALL_HINT = (
    "install Docker and start it (on Debian, as root: apt-get install docker.io), or set "
    "DOCKER_HOST (a Docker engine) or BUILDKIT_ADDRESS (a buildkitd)"
)


class LocalEngineUnavailable(Exception):
    """No engine answers and none can be started here; the message says what to do."""


def _connector(docker_host: str) -> tuple[aiohttp.BaseConnector, str]:
    parts = urlsplit(docker_host)
    if parts.scheme == "unix":
        return aiohttp.UnixConnector(path=parts.path), "http://docker"
    return aiohttp.TCPConnector(), f"http://{parts.netloc}"


async def engine_get(docker_host: str, path: str, wait_seconds: float = 5.0) -> tuple[int, Any]:
    """GET `path` of the engine's API: (status, JSON body or None). (0, None) when nothing
    answers."""
    try:
        connector, base = _connector(docker_host)
    except ValueError:
        return 0, None
    try:
        async with (
            aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=wait_seconds)
            ) as session,
            session.get(base + path) as response,
        ):
            text = await response.text()
            try:
                return response.status, await response.json(content_type=None)
            except ValueError:
                return response.status, text
    except (aiohttp.ClientError, OSError, TimeoutError):
        return 0, None


async def engine_answers(docker_host: str) -> bool:
    status, body = await engine_get(docker_host, "/_ping", wait_seconds=3.0)
    return status == 200 and str(body).strip() == "OK"


def _pid_alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


async def ensure_engine(data_dir: Path, announce: Callable[[str], None]) -> str:
    """The DOCKER_HOST of an engine on this machine: the default socket's, the one started
    by an earlier serve, or a new one (dockerd installed first when missing)."""
    if await engine_answers(DEFAULT_DOCKER_HOST):
        announce(f"Docker engine: using the one at {DEFAULT_DOCKER_HOST}")
        return DEFAULT_DOCKER_HOST
    if await engine_answers(ENGINE_HOST):
        announce(f"Docker engine: using the one started earlier at {ENGINE_HOST}")
        return ENGINE_HOST
    if os.geteuid() != 0:
        raise LocalEngineUnavailable(
            f"no Docker engine answers at {DEFAULT_DOCKER_HOST}, and only root can start "
            f"one here: {INSTALL_HINT}"
        )
    dockerd = shutil.which("dockerd") or shutil.which("dockerd", path="/usr/sbin:/usr/bin")
    if dockerd is None:
        if not local_install.can_install():
            raise LocalEngineUnavailable(
                f"no Docker engine answers at {DEFAULT_DOCKER_HOST}: {INSTALL_HINT}"
            )
        announce("Docker engine: installing Debian's docker.io (apt-get)")
        try:
            await local_install.install("docker.io")
        except local_install.InstallFailed as error:
            raise LocalEngineUnavailable(f"{error}; {INSTALL_HINT}") from None
        dockerd = shutil.which("dockerd", path="/usr/sbin:/usr/bin")
        if dockerd is None:
            raise LocalEngineUnavailable(
                f"docker.io is installed but has no dockerd: {INSTALL_HINT}"
            )
    if not await asyncio.to_thread(_pid_alive, ENGINE_PIDFILE):
        await asyncio.to_thread(_start_dockerd, dockerd, data_dir / "docker")
    deadline = time.monotonic() + START_SECONDS
    while not await engine_answers(ENGINE_HOST):
        alive = await asyncio.to_thread(_pid_alive, ENGINE_PIDFILE)
        if time.monotonic() > deadline or not alive:
            raise LocalEngineUnavailable(
                f"the Docker engine started at {ENGINE_HOST} does not answer (its log: "
                f"{ENGINE_LOG}); {INSTALL_HINT}"
            )
        await asyncio.sleep(0.5)
    announce(
        f"Docker engine: started dockerd at {ENGINE_HOST} (data in {data_dir / 'docker'}, "
        f"log {ENGINE_LOG}); it keeps running after serve stops"
    )
    return ENGINE_HOST


def _start_dockerd(dockerd: str, data_root: Path) -> None:
    """dockerd in its own session (it outlives serve), with host networking only, as
    scripts/infra runs it: no bridge or iptables rules are made on this machine. Run in a
    thread: it waits for dockerd's pidfile, which the checks above follow."""
    data_root.mkdir(parents=True, exist_ok=True)
    ENGINE_LOG.parent.mkdir(parents=True, exist_ok=True)
    with ENGINE_LOG.open("ab") as log:
        subprocess.Popen(  # not waited for: dockerd outlives serve, its pidfile tracks it
            [
                dockerd,
                "--host",
                ENGINE_HOST,
                "--data-root",
                str(data_root),
                "--exec-root",
                str(ENGINE_EXEC_ROOT),
                "--pidfile",
                str(ENGINE_PIDFILE),
                "--iptables=false",
                "--bridge=none",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    for _ in range(100):
        if ENGINE_PIDFILE.exists():
            return
        time.sleep(0.1)


async def has_bridge(docker_host: str) -> bool:
    """Whether containers get the engine's bridge network (dockerd --bridge=none: not)."""
    status, _ = await engine_get(docker_host, "/networks/bridge")
    return status == 200


async def image_port(docker_host: str, image: str) -> tuple[int | None, bool]:
    """The port the image listens on, and whether it reads it from $PORT (so it can be
    given another): its $PORT, else its first exposed TCP port; (None, False) for an image
    with neither (a worker). The $PORT convention's 8080 when the engine cannot say."""
    status, body = await engine_get(docker_host, f"/images/{quote(image, safe='')}/json")
    if status != 200 or not isinstance(body, dict):
        return DEFAULT_APP_PORT, True
    image_config = body.get("Config") or {}
    for item in image_config.get("Env") or []:
        name, _, value = str(item).partition("=")
        if name == "PORT" and value.isdigit():
            return int(value), True
    for exposed in image_config.get("ExposedPorts") or {}:
        number, _, protocol = str(exposed).partition("/")
        if number.isdigit() and protocol in ("", "tcp"):
            return int(number), False
    return None, False


def free_host_port(first: int = 8000, last: int = 8999) -> int:
    """The first port from `first` that nothing listens on here (serve itself is on
    HTTP_PORT, 8080 by default: an app on the same port would not start)."""
    for port in range(first, last + 1):
        with (
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe,
            contextlib.suppress(OSError),
        ):
            probe.bind(("0.0.0.0", port))
            return port
    return 0


def _machine(docker_host: str) -> str:
    """Where the engine's containers answer: its host for tcp://, else this machine."""
    parts = urlsplit(docker_host)
    if parts.scheme in ("tcp", "http") and parts.hostname:
        return f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return "127.0.0.1"


async def run_line(docker_host: str, image: str) -> tuple[str, str | None]:
    """The `docker run` command that starts `image` on the engine that built it, and the
    URL it answers on (None for a worker)."""
    port, reads_port = await image_port(docker_host, image)
    docker = ["docker"] if docker_host == DEFAULT_DOCKER_HOST else ["docker", "-H", docker_host]
    argv = [*docker, "run", "--rm"]
    url = None
    machine = _machine(docker_host)
    if port is not None:
        if await has_bridge(docker_host):
            host_port = free_host_port()
            # On this machine, published on loopback only; on another, where it can be reached.
            published = f"127.0.0.1:{host_port}" if machine == "127.0.0.1" else str(host_port)
            argv += ["-p", f"{published}:{port}"]
        else:
            # No bridge (dockerd --bridge=none): the container shares this machine's
            # network, so the app itself listens on the host port.
            host_port = free_host_port() if reads_port else port
            argv += ["--network", "host"]
            if reads_port:
                argv += ["-e", f"PORT={host_port}"]
        url = f"http://{machine}:{host_port}/"
    argv.append(image)
    return shlex.join(argv), url
