"""The registry `serve` starts when REGISTRY_URL is unset: Debian's docker-registry
(distribution) on 127.0.0.1:LOCAL_REGISTRY_PORT, images under DATA_DIR/registry/data,
Basic auth with a generated password (bcrypt in an htpasswd file); both files 0600.

It runs as a child of serve and stops with it (on Linux even when serve is killed)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import bcrypt
from pydantic import SecretStr

from bot import local_install

USER = "click-deploy"
START_SECONDS = 30.0
PROGRAMS = ("docker-registry", "registry")  # Debian's name, then upstream's
INSTALL_HINT = (
    "install a registry (on Debian, as root: apt-get install docker-registry), or set "
    "REGISTRY_URL, REGISTRY_USERNAME and REGISTRY_PASSWORD"
)


class LocalRegistryUnavailable(Exception):
    """No registry can be started here; the message says what to do."""


@dataclass(frozen=True)
class LocalRegistry:
    url: str
    username: str
    password: SecretStr
    process: asyncio.subprocess.Process | None  # None: one started earlier still runs

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by this user only, never briefly by others."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    temporary.replace(path)


def credentials(directory: Path) -> SecretStr:
    """The registry's password, made on first use and kept in DIRECTORY/credentials.json;
    the htpasswd file beside it holds its bcrypt hash."""
    stored = directory / "credentials.json"
    password: str | None = None
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        password = str(json.loads(stored.read_text(encoding="utf-8"))["password"])
    if not password:
        password = secrets.token_urlsafe(24)
        _write_private(stored, json.dumps({"username": USER, "password": password}) + "\n")
    htpasswd = directory / "htpasswd"
    current = ""
    with contextlib.suppress(OSError):
        current = htpasswd.read_text(encoding="utf-8")
    name, _, hashed = current.strip().partition(":")
    if name != USER or not hashed or not bcrypt.checkpw(password.encode(), hashed.encode()):
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()
        _write_private(htpasswd, f"{USER}:{hashed}\n")
    return SecretStr(password)


def _config(directory: Path, port: int) -> str:
    # JSON is YAML: no YAML writer needed, and every path is quoted.
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(directory / "data")},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "http": {
            "addr": f"127.0.0.1:{port}",
            "secret": secrets.token_urlsafe(24),
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
        "auth": {"htpasswd": {"realm": "click-deploy", "path": str(directory / "htpasswd")}},
    }
    return json.dumps(config, indent=2) + "\n"


async def _status(url: str, password: SecretStr | None) -> int:
    """The status of GET URL/v2/ (0 when nothing answers)."""
    headers = {}
    if password is not None:
        token = base64.b64encode(f"{USER}:{password.get_secret_value()}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session,
            session.get(f"{url}/v2/", headers=headers) as response,
        ):
            return response.status
    except (aiohttp.ClientError, OSError, TimeoutError):
        return 0


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


# Looked up before any fork: the child of a process with threads only calls prctl.
_LIBC = _libc()
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when serve goes, however it goes (Linux)."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


async def _program() -> str:
    for name in PROGRAMS:
        found = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin")
        if found:
            return found
    if not local_install.can_install():
        raise LocalRegistryUnavailable(
            f"REGISTRY_URL is not set and no registry is installed: {INSTALL_HINT}"
        )
    try:
        await local_install.install("docker-registry")
    except local_install.InstallFailed as error:
        raise LocalRegistryUnavailable(f"{error}; {INSTALL_HINT}") from None
    found = shutil.which("docker-registry", path="/usr/bin:/usr/sbin")
    if found is None:
        raise LocalRegistryUnavailable(
            f"docker-registry is installed but cannot be found: {INSTALL_HINT}"
        )
    return found


def _prepare(directory: Path, port: int) -> Path:
    """The config file of a registry on PORT, its storage made."""
    config = directory / "config.yml"
    _write_private(config, _config(directory, port))
    (directory / "data").mkdir(parents=True, exist_ok=True)
    return config


def _log_tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        return " / ".join(path.read_text("utf-8", "replace").strip().splitlines()[-3:])
    return ""


async def start_registry(data_dir: Path, port: int) -> LocalRegistry:
    """The local registry, answering with its credentials (started unless one started
    by an earlier serve of this DATA_DIR still runs on the port)."""
    directory = data_dir / "registry"
    password = await asyncio.to_thread(credentials, directory)
    url = f"http://127.0.0.1:{port}"
    if await _status(url, password) == 200:
        return LocalRegistry(url, USER, password, None)
    if await _status(url, None) != 0:
        raise LocalRegistryUnavailable(
            f"LOCAL_REGISTRY_PORT: {port} on 127.0.0.1 is used by another program; set "
            "LOCAL_REGISTRY_PORT to a free port, or REGISTRY_URL to your registry"
        )
    program = await _program()
    config = await asyncio.to_thread(_prepare, directory, port)
    log_path = directory / "registry.log"
    log = await asyncio.to_thread(log_path.open, "ab")
    try:
        process = await asyncio.create_subprocess_exec(
            program,
            "serve",
            str(config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            preexec_fn=_die_with_parent,  # only prctl, before exec
        )
    finally:
        log.close()
    registry = LocalRegistry(url, USER, password, process)
    deadline = time.monotonic() + START_SECONDS
    while await _status(url, password) != 200:
        if process.returncode is not None or time.monotonic() > deadline:
            await registry.stop()
            tail = await asyncio.to_thread(_log_tail, log_path)
            raise LocalRegistryUnavailable(
                f"the registry started on 127.0.0.1:{port} did not answer "
                f"({tail or 'no output'}; log {log_path}); {INSTALL_HINT}"
            )
        await asyncio.sleep(0.2)
    return registry
