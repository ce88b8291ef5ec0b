"""BuildKit through a Docker engine's API (BUILDER=docker, DOCKER_HOST).

`POST /build?version=2` with the context as a tar body runs the build on the engine's
embedded BuildKit; its progress comes back as `moby.buildkit.trace` lines. Then
`POST /images/{name}/push` pushes the tag. Closing the HTTP connection makes the engine
cancel the build, which is how cancellation and timeouts stop it.

The engine (20.10) only asks a client *session* for registry credentials during a
BuildKit build; without one, a base image from a registry that wants a login fails with
"no active sessions". So base images on the credentials' registry are pulled first with
`POST /images/create` and `X-Registry-Auth`; BuildKit then uses the local copy.

An engine that stops or restarts during a build cuts the response short (or, on newer
engines, ends the build with a cancellation error): that is `BuilderUnavailable`, retried,
never the user's `BuildFailed`; the steps it left open are reported failed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from pipeline.buildkit.builder import (
    BuildRequest,
    BuiltImage,
    OpenSteps,
)
from pipeline.buildkit.context import (
    DOCKERFILE_NAME,
    ContextError,
    DockerignoreError,
    PatternMatcher,
    stream_tar,
)
from pipeline.buildkit.dockerfile import base_images
from pipeline.buildkit.errors import BuilderUnavailable, BuildFailed, BuildTimedOut
from pipeline.buildkit.events import (
    BuildEvent,
    ProgressTracker,
    StepDone,
    StepFailed,
    StepStarted,
)
from pipeline.buildkit.failures import failure_from_build, hidden_values, registry_error
from pipeline.buildkit.session import secrets_session
from pipeline.buildkit.trace import TRACE_ID, TraceDecodeError, decode_trace
from pipeline.errors import DeploymentFailure
from pipeline.registry.reference import parse_reference

API_VERSION = "v1.41"
IMAGE_ID = "moby.image.id"
_DIGEST_IN_STATUS = re.compile(r"digest: (sha256:[0-9a-f]{64})")
# How a build ends when the engine (or its BuildKit) goes away rather than a step failing.
_ENGINE_LOST = re.compile(
    r"context canceled|context cancelled|transport is closing|code = Unavailable"
    r"|error reading from server|client connection is closing|connection closed before",
    re.IGNORECASE,
)

OnEvent = Callable[[BuildEvent], None]


def _encode_header(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def _auth_header(request: BuildRequest, registry: str) -> str:
    """X-Registry-Auth: base64url JSON {username, password, serveraddress}, `{}` if none."""
    credentials = request.credentials
    if credentials is None or request.credentials_registry != registry:
        return _encode_header({})
    return _encode_header(
        {
            "username": credentials.username,
            "password": credentials.password.get_secret_value(),
            "serveraddress": registry,
        }
    )


async def _json_lines(response: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """The engine's JSON-lines body, object by object, however long a line is."""
    buffer = bytearray()

    def parse(raw: bytes) -> dict[str, Any] | None:
        if not raw.strip():
            return None
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            return {"stream": raw.decode("utf-8", "replace")}
        return value if isinstance(value, dict) else None

    async for chunk in response.content.iter_any():
        buffer += chunk
        while (newline := buffer.find(b"\n")) >= 0:
            item = parse(bytes(buffer[:newline]))
            del buffer[: newline + 1]
            if item is not None:
                yield item
    item = parse(bytes(buffer))
    if item is not None:
        yield item


def _error_of(item: dict[str, Any]) -> str | None:
    if "error" not in item and "errorDetail" not in item:
        return None
    detail = item.get("errorDetail")
    if isinstance(detail, dict) and detail.get("message"):
        return str(detail["message"])
    return str(item.get("error") or "unknown error")


async def _http_error(response: aiohttp.ClientResponse) -> str:
    text = (await response.text()).strip()
    with contextlib.suppress(ValueError):
        body = json.loads(text)
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
    return text or f"HTTP {response.status}"


class EngineBuilder:
    """Builds with a Docker engine's BuildKit and pushes with the engine."""

    def __init__(
        self,
        docker_host: str,
        *,
        timeout: float | None = None,
        connect_timeout: float = 10.0,
        network: str = "default",
    ) -> None:
        self.docker_host = docker_host
        self.network = network  # BUILD_NETWORK: "default" leaves the engine's choice
        parts = urlsplit(docker_host)
        if parts.scheme == "unix":
            self._socket: str | None = parts.path
            self._base = "http://docker"
        elif parts.scheme in ("tcp", "http"):
            self._socket = None
            self._base = f"http://{parts.netloc}"
        else:
            raise ValueError(f"unsupported DOCKER_HOST {docker_host!r}")
        self._timeout = timeout
        self._connect_timeout = connect_timeout

    def _client(self) -> aiohttp.ClientSession:
        connector: aiohttp.BaseConnector
        if self._socket is not None:
            connector = aiohttp.UnixConnector(path=self._socket, force_close=True)
        else:
            connector = aiohttp.TCPConnector(force_close=True)
        return aiohttp.ClientSession(
            base_url=self._base,
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
        )

    async def _open_stream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A raw connection to the engine, for the build session."""
        async with asyncio.timeout(self._connect_timeout):
            if self._socket is not None:
                return await asyncio.open_unix_connection(self._socket)
            parts = urlsplit(self._base)
            return await asyncio.open_connection(parts.hostname, parts.port or 80)

    @contextlib.asynccontextmanager
    async def _session(self, request: BuildRequest) -> AsyncIterator[str | None]:
        """A BuildKit session serving the request's secrets, if it has any."""
        if not request.secrets:
            yield None
            return
        secrets = {
            name: value.get_secret_value().encode() for name, value in request.secrets.items()
        }
        try:
            async with secrets_session(self._open_stream, secrets) as session_id:
                yield session_id
        except (OSError, TimeoutError) as error:
            raise BuilderUnavailable(
                f"cannot open a build session on the Docker engine at "
                f"DOCKER_HOST={self.docker_host}: {error}"
            ) from None

    @contextlib.contextmanager
    def _engine_errors(self) -> Iterator[None]:
        where = f"the Docker engine at DOCKER_HOST={self.docker_host}"
        try:
            yield
        except aiohttp.ClientConnectorError as error:
            raise BuilderUnavailable(
                f"cannot reach {where}: {error.os_error.strerror or error.os_error}"
            ) from None
        except aiohttp.ServerDisconnectedError:
            raise BuilderUnavailable(
                f"lost {where}: it closed the connection (stopped or restarting?)"
            ) from None
        except aiohttp.ClientPayloadError:
            raise BuilderUnavailable(
                f"lost {where} during the build: the connection broke off "
                "(the engine stopped or restarted)"
            ) from None
        except aiohttp.ServerTimeoutError as error:
            raise BuilderUnavailable(f"{where} timed out: {error}") from None
        except aiohttp.ClientOSError as error:
            raise BuilderUnavailable(
                f"lost the connection to {where}: {error.strerror or error}"
            ) from None

    async def ping(self) -> str:
        """The engine's API version; BuilderUnavailable when it cannot be reached."""
        with self._engine_errors():
            async with (
                self._client() as session,
                session.get("/version", timeout=aiohttp.ClientTimeout(total=10)) as response,
            ):
                body = await response.json(content_type=None)
                return str(body.get("ApiVersion", ""))

    async def build(self, request: BuildRequest, on_event: OnEvent) -> BuiltImage:
        _check_request(request)
        steps = OpenSteps(on_event, hidden_values(request))
        deadline = asyncio.timeout(self._timeout)
        try:
            try:
                async with deadline:
                    with self._engine_errors():
                        async with self._client() as session:
                            await self._pull_bases(session, request, steps)
                            async with self._session(request) as session_id:
                                await self._build(session, request, steps, session_id)
                            digest = await self._push(session, request, steps)
            except TimeoutError:
                if not deadline.expired():
                    raise BuilderUnavailable(
                        f"the Docker engine at DOCKER_HOST={self.docker_host} timed out"
                    ) from None
                raise BuildTimedOut(
                    f"the build took longer than BUILD_TIMEOUT_SECONDS={self._timeout:g} "
                    "and was stopped"
                ) from None
        except asyncio.CancelledError:
            steps.interrupt("cancelled")
            raise
        except Exception as error:
            steps.interrupt(str(error))
            raise
        return BuiltImage(request.image, digest)

    async def _pull_bases(
        self, session: aiohttp.ClientSession, request: BuildRequest, on_event: OnEvent
    ) -> None:
        registry = request.credentials_registry
        if registry is None:
            return
        for image in base_images(request.dockerfile, request.build_args):
            try:
                reference = parse_reference(image)
            except DeploymentFailure:
                continue  # BuildKit will say what is wrong with it
            if reference.host != registry:
                continue
            step_id, name = f"pull:{image}", f"pulling base image {image}"
            started = time.monotonic()
            params = {
                "fromImage": reference.name,
                "tag": reference.digest or reference.tag or "latest",
            }
            headers = {"X-Registry-Auth": _auth_header(request, registry)}
            error = None
            async with session.post(
                f"/{API_VERSION}/images/create", params=params, headers=headers
            ) as response:
                # Only once the engine answered: an engine that cannot be reached has not
                # started anything (a builder pool then tries the next one).
                on_event(StepStarted(step_id, name))
                if response.status >= 400:
                    error = await _http_error(response)
                else:
                    async for item in _json_lines(response):
                        error = _error_of(item) or error
            if error is not None:
                on_event(StepFailed(step_id, name, error))
                if "not found" in error or "manifest unknown" in error:
                    raise BuildFailed(
                        f"base image {image} could not be pulled: {error}",
                        step=name,
                        error=error,
                    )
                raise registry_error(f"serve base image {image}", registry, error, request)
            on_event(StepDone(step_id, name, time.monotonic() - started))

    async def _build(
        self,
        session: aiohttp.ClientSession,
        request: BuildRequest,
        on_event: OnEvent,
        session_id: str | None,
    ) -> str:
        params = {
            "version": "2",
            "t": request.image,
            "dockerfile": DOCKERFILE_NAME,
            "rm": "1",
        }
        if self.network != "default":
            params["networkmode"] = self.network
        if session_id is not None:
            params["session"] = session_id
        if request.target:
            params["target"] = request.target
        if request.build_args:
            params["buildargs"] = json.dumps(dict(request.build_args))
        # No X-Registry-Config: the engine's BuildKit asks a session for registry
        # credentials, never that header, so it would only hand the push password to every
        # build. Base images behind the credentials were pulled before (_pull_bases); the
        # push sends X-Registry-Auth for its own registry alone.
        headers = {"Content-Type": "application/x-tar"}
        body = _ContextBody(request)
        tracker = ProgressTracker()
        image_id: str | None = None
        error: str | None = None
        async with session.post(
            f"/{API_VERSION}/build", params=params, data=body.chunks(), headers=headers
        ) as response:
            try:
                if response.status >= 500:
                    raise BuilderUnavailable(
                        f"the Docker engine at DOCKER_HOST={self.docker_host} could not "
                        f"start the build: {await _http_error(response)}"
                    )
                if response.status >= 400:
                    raise failure_from_build(None, await _http_error(response), request)
                async for item in _json_lines(response):
                    if item.get("id") == TRACE_ID:
                        try:
                            status = decode_trace(str(item.get("aux", "")))
                        except TraceDecodeError:
                            continue
                        for event in tracker.feed(status):
                            on_event(event)
                    elif item.get("id") == IMAGE_ID:
                        aux = item.get("aux")
                        if isinstance(aux, dict) and aux.get("ID"):
                            image_id = str(aux["ID"])
                    else:
                        error = _error_of(item) or error
            except BaseException:
                response.close()  # the engine cancels a build whose client went away
                raise
        for event in tracker.flush():
            on_event(event)
        if body.error is not None:
            raise DeploymentFailure(f"cannot send the build context: {body.error}")
        if error is not None:
            failed = tracker.failed_step()
            blamed = failed.error if failed else error
            if _ENGINE_LOST.search(error) and _ENGINE_LOST.search(blamed):
                raise BuilderUnavailable(
                    f"lost the Docker engine at DOCKER_HOST={self.docker_host} during the "
                    f"build: it stopped the build ({error.strip()})"
                )
            raise failure_from_build(failed, error, request)
        if image_id is None:
            raise BuilderUnavailable(
                f"the Docker engine at DOCKER_HOST={self.docker_host} ended the build "
                "without an image"
            )
        return image_id

    async def _push(
        self, session: aiohttp.ClientSession, request: BuildRequest, on_event: OnEvent
    ) -> str:
        reference = parse_reference(request.image)
        step_id, name = f"push:{request.image}", f"pushing {request.image}"
        on_event(StepStarted(step_id, name))
        started = time.monotonic()
        headers = {"X-Registry-Auth": _auth_header(request, reference.host)}
        digest: str | None = None
        error: str | None = None
        async with session.post(
            f"/{API_VERSION}/images/{reference.name}/push",
            params={"tag": reference.tag or "latest"},
            headers=headers,
        ) as response:
            try:
                if response.status >= 400:
                    error = await _http_error(response)
                else:
                    async for item in _json_lines(response):
                        error = _error_of(item) or error
                        aux = item.get("aux")
                        if isinstance(aux, dict) and aux.get("Digest"):
                            digest = str(aux["Digest"])
                        found = _DIGEST_IN_STATUS.search(str(item.get("status", "")))
                        if found and digest is None:
                            digest = found.group(1)
            except BaseException:
                response.close()
                raise
        if error is not None:
            failure = registry_error(f"accept {request.image}", reference.host, error, request)
            on_event(StepFailed(step_id, name, str(failure)))
            raise failure
        if digest is None:
            on_event(StepFailed(step_id, name, "no digest"))
            raise BuilderUnavailable(f"pushing {request.image} ended without a digest")
        on_event(StepDone(step_id, name, time.monotonic() - started))
        return digest


class _ContextBody:
    """The tar body; a context that cannot be read ends it early and is reported as the
    cause (the engine would only see a truncated tar)."""

    def __init__(self, request: BuildRequest) -> None:
        self._request = request
        self.error: Exception | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        request = self._request
        try:
            async for chunk in stream_tar(
                request.context_dir,
                request.dockerfile,
                request.dockerignore,
                request.checkout_dir,
            ):
                yield chunk
        except (ContextError, DockerignoreError, OSError) as error:
            self.error = error


def _check_request(request: BuildRequest) -> None:
    """Refuse a request BuildKit would refuse, before contacting anything."""
    reference = parse_reference(request.image)
    if reference.digest:
        raise DeploymentFailure(f"cannot push by digest: {request.image}")
    if not request.context_dir.is_dir():
        raise DeploymentFailure(f"build context {request.context_dir} is not a directory")
    try:
        if request.dockerignore is not None:
            PatternMatcher.from_dockerignore(request.dockerignore)
    except (DockerignoreError, ContextError) as error:
        raise DeploymentFailure(str(error)) from None
