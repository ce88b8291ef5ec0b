"""The few Docker Engine API calls a release makes: pull by digest, run a container on the
host network, inspect it, read its last log lines, stop and remove it.

An engine that cannot be reached is `EngineUnavailable` (transient: the deployment is
tried again); what the engine refuses is `EngineRefused` with its own message.
"""

from __future__ import annotations

import base64
import contextlib
import json
import struct
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from pipeline.errors import TransientError
from pipeline.release.base import ReleaseFailed

API = "/v1.41"
LABEL = "click-deploy"  # every label this module sets starts with it


class EngineUnavailable(TransientError):
    """The Docker engine did not answer."""


class EngineRefused(ReleaseFailed):
    """The Docker engine answered with an error."""


class Engine:
    """One Docker engine, at `unix:///…` or `tcp://host:port`."""

    def __init__(self, address: str, *, timeout: float = 60.0) -> None:
        self.address = address
        parts = urlsplit(address)
        if parts.scheme == "unix":
            self._socket: str | None = parts.path
            self._base = "http://docker"
            self.host = "127.0.0.1"  # a local engine's host network is this machine's
        elif parts.scheme in ("tcp", "http") and parts.hostname:
            self._socket = None
            self._base = f"http://{parts.netloc}"
            self.host = parts.hostname
        else:
            raise ValueError(f"not a Docker engine address: {address!r}")
        self._timeout = timeout

    @property
    def local(self) -> bool:
        return self._socket is not None

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[aiohttp.ClientSession]:
        connector: aiohttp.BaseConnector = (
            aiohttp.UnixConnector(path=self._socket)
            if self._socket is not None
            else aiohttp.TCPConnector()
        )
        async with aiohttp.ClientSession(
            base_url=self._base,
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._timeout, sock_connect=10),
        ) as session:
            with self._errors():
                yield session

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as error:
            raise EngineUnavailable(
                f"cannot reach the Docker engine {self.address}: {error}"
            ) from None
        except (aiohttp.ClientError, TimeoutError) as error:
            reason = "it did not answer in time" if isinstance(error, TimeoutError) else str(error)
            raise EngineUnavailable(f"lost the Docker engine {self.address}: {reason}") from None

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        ok: tuple[int, ...] = (200, 201, 204, 304),
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        async with (
            self._session() as session,
            session.request(
                method, API + path, params=params, json=body, headers=headers
            ) as response,
        ):
            text = await response.text()
            if response.status not in ok:
                raise EngineRefused(
                    f"the Docker engine {self.address} refused: {_message(text, response.status)}"
                )
            return json.loads(text) if text.strip().startswith(("{", "[")) else None

    async def ping(self) -> None:
        async with self._session() as session, session.get("/_ping") as response:
            if response.status != 200:
                raise EngineUnavailable(
                    f"the Docker engine {self.address} answered {response.status}"
                )

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        ok: tuple[int, ...] = (200, 201, 204, 304),
        auth: Mapping[str, str] | None = None,
    ) -> Any:
        """Any other Engine API call (Swarm's services and tasks); `auth` becomes its
        X-Registry-Auth."""
        headers = {"X-Registry-Auth": auth_header(auth)} if auth is not None else None
        return await self._call(method, path, params=params, body=body, ok=ok, headers=headers)

    async def pull(self, reference: str, auth: Mapping[str, str] | None) -> None:
        """Pull `repository@sha256:…`; the engine's error, if any, as EngineRefused."""
        repository, _, digest = reference.partition("@")
        header = auth_header(auth)
        async with (
            self._session() as session,
            session.post(
                f"{API}/images/create",
                params={"fromImage": repository, "tag": digest},
                headers={"X-Registry-Auth": header},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300),
            ) as response,
        ):
            if response.status >= 400:
                text = await response.text()
                raise EngineRefused(
                    f"{reference} could not be pulled: {_message(text, response.status)}"
                )
            async for line in response.content:
                if line.strip():
                    item = json.loads(line)
                    if item.get("error"):
                        raise EngineRefused(f"{reference} could not be pulled: {item['error']}")

    async def run(
        self,
        name: str,
        image: str,
        *,
        env: Mapping[str, str],
        labels: Mapping[str, str],
    ) -> str:
        """Create and start a container on the host network; its id."""
        created = await self._call(
            "POST",
            "/containers/create",
            params={"name": name},
            body={
                "Image": image,
                "Env": [f"{key}={value}" for key, value in env.items()],
                "Labels": dict(labels),
                "HostConfig": {
                    "NetworkMode": "host",
                    # docker-init as PID 1 passes SIGTERM on: an app that sets no handler of
                    # its own stops at once instead of after the stop timeout.
                    "Init": True,
                    "RestartPolicy": {"Name": "unless-stopped"},
                    "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m"}},
                },
            },
        )
        container = str(created["Id"])
        try:
            await self._call("POST", f"/containers/{container}/start")
        except BaseException:
            with contextlib.suppress(EngineRefused, EngineUnavailable):
                await self.remove(container)
            raise
        return container

    async def inspect(self, container: str) -> dict[str, Any] | None:
        """The container's state and config; None when there is no such container."""
        found = await self._call("GET", f"/containers/{container}/json", ok=(200, 404))
        if not isinstance(found, dict) or "Id" not in found:
            return None
        return found

    async def image_healthcheck(self, image: str) -> list[str] | None:
        """The image's HEALTHCHECK test, None when it has none."""
        found = await self._call("GET", f"/images/{image}/json")
        test = ((found or {}).get("Config") or {}).get("Healthcheck") or {}
        command = test.get("Test")
        if not command or command == ["NONE"]:
            return None
        return list(command)

    async def containers(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """Containers (running or not) that carry all of `labels`."""
        filters = json.dumps({"label": [f"{key}={value}" for key, value in labels.items()]})
        found = await self._call("GET", "/containers/json", params={"all": "1", "filters": filters})
        return list(found or [])

    async def raw_get(self, path: str, params: Mapping[str, str]) -> bytes:
        """The body of a GET as bytes (log streams)."""
        async with self._session() as session, session.get(API + path, params=params) as response:
            body = await response.read()
            if response.status != 200:
                raise EngineRefused(
                    f"the Docker engine {self.address} refused: "
                    f"{_message(body.decode('utf-8', 'replace'), response.status)}"
                )
            return body

    async def logs(self, container: str, lines: int = 20) -> list[str]:
        """The container's last `lines` lines of output (stdout and stderr)."""
        try:
            raw = await self.raw_get(
                f"/containers/{container}/logs",
                {"stdout": "1", "stderr": "1", "tail": str(lines)},
            )
        except EngineRefused:
            return []
        return demultiplex(raw)[-lines:]

    async def stop(self, container: str, grace_seconds: int = 10) -> None:
        await self._call(
            "POST",
            f"/containers/{container}/stop",
            params={"t": str(grace_seconds)},
            ok=(204, 304, 404),
        )

    async def remove(self, container: str) -> None:
        await self._call("DELETE", f"/containers/{container}", params={"force": "1"}, ok=(204, 404))


def auth_header(auth: Mapping[str, str] | None) -> str:
    """X-Registry-Auth: base64url JSON {username, password, serveraddress}, `{}` for none."""
    return base64.urlsafe_b64encode(json.dumps(dict(auth or {})).encode()).decode()


def demultiplex(raw: bytes) -> list[str]:
    """Lines of the engine's log stream: frames of an 8-byte header (stream, size) and the
    payload when the container has no TTY; plain bytes when it has one."""
    chunks: list[bytes] = []
    offset = 0
    while (
        offset + 8 <= len(raw)
        and raw[offset] in (0, 1, 2)
        and raw[offset + 1 : offset + 4] == b"\0\0\0"
    ):
        (size,) = struct.unpack(">I", raw[offset + 4 : offset + 8])
        chunks.append(raw[offset + 8 : offset + 8 + size])
        offset += 8 + size
    if offset < len(raw):
        chunks.append(raw[offset:])
    return b"".join(chunks).decode("utf-8", "replace").splitlines()


def _message(text: str, status: int) -> str:
    try:
        message = json.loads(text).get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message or text.strip() or f"HTTP {status}")[:500]
