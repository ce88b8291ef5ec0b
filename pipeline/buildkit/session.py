"""A BuildKit client session on a Docker engine, so a build can read secrets.

The Engine API's build cannot carry secrets by itself: BuildKit asks the *client* for a
`RUN --mount=type=secret` value, through a session the client opened beforehand
(`POST /session`, upgraded to HTTP/2, on which the engine is the gRPC client and we are
the server). Without one, such a step fails with "no active sessions". This module opens
that session and answers exactly two calls on it:

- `/moby.buildkit.secrets.v1.Secrets/GetSecret`: the value of a secret of this build
  (NOT_FOUND for any other id, which BuildKit treats as an absent optional secret);
- `/grpc.health.v1.Health/Check`: BuildKit drops a session that stops answering it.

Everything else (file sync, registry credentials, SSH) is UNIMPLEMENTED: the build context
still goes as the tar body, and registry credentials as before. A value sent this way is
only ever in the RUN step's tmpfs: not in the image, its history, the build cache or argv.
The messages are described from BuildKit's field numbers (`secrets.proto`, gRPC's
`health.proto`) and built at import time, as `trace` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from functools import cache
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import structlog
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from pipeline.buildkit.errors import BuilderUnavailable

log = structlog.get_logger(__name__)

GET_SECRET = "/moby.buildkit.secrets.v1.Secrets/GetSecret"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SESSION_NAME = "click-deploy"
# gRPC status codes (google.rpc.Code)
_OK, _NOT_FOUND, _INTERNAL, _UNIMPLEMENTED = 0, 5, 13, 12
_SERVING = 1
_READ_SIZE = 64 * 1024

Connect = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]

_F = descriptor_pb2.FieldDescriptorProto


@cache
def _messages() -> dict[str, Any]:
    """The three messages: GetSecretRequest, GetSecretResponse, HealthCheckResponse."""
    file = descriptor_pb2.FileDescriptorProto(
        name="click_deploy/buildkit_session.proto", package="click_deploy.session", syntax="proto3"
    )
    shapes = {
        "GetSecretRequest": ("ID", _F.TYPE_STRING),
        "GetSecretResponse": ("data", _F.TYPE_BYTES),
        "HealthCheckResponse": ("status", _F.TYPE_INT32),
    }
    for message_name, (field_name, kind) in shapes.items():
        message = file.message_type.add(name=message_name)
        message.field.add(name=field_name, number=1, type=kind, label=_F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"click_deploy.session.{name}")
        )
        for name in shapes
    }


def _frame(payload: bytes) -> bytes:
    """A gRPC length-prefixed message (uncompressed)."""
    return b"\0" + len(payload).to_bytes(4, "big") + payload


def answer(path: str, body: bytes, secrets: Mapping[str, bytes]) -> tuple[int, bytes | None]:
    """The gRPC status and the response message for one call (pure: tested alone)."""
    if path == HEALTH_CHECK:
        return _OK, _messages()["HealthCheckResponse"](status=_SERVING).SerializeToString()
    if path != GET_SECRET:
        return _UNIMPLEMENTED, None
    if len(body) < 5 or body[0] != 0:
        return _INTERNAL, None  # compressed or not framed: not what BuildKit sends
    try:
        request = _messages()["GetSecretRequest"].FromString(body[5:])
    except DecodeError:
        return _INTERNAL, None
    value = secrets.get(request.ID)
    if value is None:
        return _NOT_FOUND, None
    return _OK, _messages()["GetSecretResponse"](data=value).SerializeToString()


class _Server:
    """The HTTP/2 side of the session: requests in, gRPC answers out, flow control kept."""

    def __init__(self, secrets: Mapping[str, bytes]) -> None:
        self._secrets = secrets
        self.connection = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self._paths: dict[int, str] = {}
        self._bodies: dict[int, bytearray] = {}
        self._pending: dict[int, tuple[bytearray, list[tuple[str, str]]]] = {}

    def start(self) -> bytes:
        self.connection.initiate_connection()
        return self.connection.data_to_send()

    def receive(self, data: bytes) -> bytes:
        for event in self.connection.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                path = next((str(v) for k, v in event.headers if k in (":path", b":path")), "")
                self._paths[event.stream_id] = path
                self._bodies[event.stream_id] = bytearray()
            elif isinstance(event, h2.events.DataReceived):
                self._bodies.setdefault(event.stream_id, bytearray()).extend(event.data)
                self.connection.acknowledge_received_data(
                    event.flow_controlled_length, event.stream_id
                )
            elif isinstance(event, h2.events.StreamEnded):
                self._respond(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self._forget(event.stream_id)
        self._flush()
        return self.connection.data_to_send()

    def _forget(self, stream_id: int) -> None:
        self._paths.pop(stream_id, None)
        self._bodies.pop(stream_id, None)
        self._pending.pop(stream_id, None)

    def _respond(self, stream_id: int) -> None:
        path = self._paths.pop(stream_id, "")
        body = bytes(self._bodies.pop(stream_id, b""))
        status, message = answer(path, body, self._secrets)
        head = [(":status", "200"), ("content-type", "application/grpc")]
        trailers = [("grpc-status", str(status))]
        if message is None:  # trailers only
            self.connection.send_headers(stream_id, head + trailers, end_stream=True)
            return
        self.connection.send_headers(stream_id, head)
        self._pending[stream_id] = (bytearray(_frame(message)), trailers)

    def _flush(self) -> None:
        """Send what the peer's flow-control windows allow; trailers once a body is out."""
        for stream_id, (data, trailers) in list(self._pending.items()):
            while data:
                size = min(
                    self.connection.local_flow_control_window(stream_id),
                    self.connection.max_outbound_frame_size,
                    len(data),
                )
                if size <= 0:
                    break
                self.connection.send_data(stream_id, bytes(data[:size]))
                del data[:size]
            if not data:
                self.connection.send_headers(stream_id, trailers, end_stream=True)
                del self._pending[stream_id]


async def _upgrade(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session_id: str
) -> None:
    lines = [
        "POST /session HTTP/1.1",
        "Host: docker",
        "Upgrade: h2c",
        "Connection: Upgrade",
        "Content-Length: 0",
        f"X-Docker-Expose-Session-Uuid: {session_id}",
        f"X-Docker-Expose-Session-Name: {SESSION_NAME}",
        f"X-Docker-Expose-Session-Sharedkey: {session_id}",
        f"X-Docker-Expose-Session-Grpc-Method: {GET_SECRET}",
        f"X-Docker-Expose-Session-Grpc-Method: {HEALTH_CHECK}",
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        raise BuilderUnavailable("the Docker engine closed the build session at once") from None
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    if " 101 " not in f"{status_line} ":
        raise BuilderUnavailable(
            f"the Docker engine refused a build session (needed for build secrets): {status_line}"
        )


async def _serve(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: _Server
) -> None:
    writer.write(server.start())
    await writer.drain()
    try:
        while data := await reader.read(_READ_SIZE):
            writer.write(server.receive(data))
            await writer.drain()
    except (h2.exceptions.ProtocolError, ConnectionError) as error:
        log.warning("build session ended", error=type(error).__name__)


@contextlib.asynccontextmanager
async def secrets_session(connect: Connect, secrets: Mapping[str, bytes]) -> AsyncIterator[str]:
    """A session serving `secrets` (id → value) while the block runs; yields its id, the
    build's `session` parameter. Closed (and forgotten by the engine) on leaving."""
    session_id = uuid.uuid4().hex
    reader, writer = await connect()
    try:
        await _upgrade(reader, writer, session_id)
        serving = asyncio.create_task(_serve(reader, writer, _Server(dict(secrets))))
        try:
            yield session_id
        finally:
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
