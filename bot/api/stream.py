"""A deployment's log: a page of lines (JSON), or live as server-sent events or over a
WebSocket. Live viewers share this process's LogHub (bot/api/live.py)."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSMsgType, web

from bot.api import schemas as s
from bot.api.errors import ApiError
from bot.api.live import LogHub
from bot.api.log_messages import event_text, sse_chunk
from bot.api.operations import MAX_ID, operation, path_id
from bot.api.queries import LogsQuery, WatchQuery
from bot.api.routes import query, reply, runtime_of
from bot.api.tokens import Scope
from pipeline.errors import NotFound

HUB = web.AppKey("log_hub", LogHub)
KEEPALIVE_SECONDS = 15.0


def wants_stream(request: web.Request, follow: bool) -> bool:
    return follow or "text/event-stream" in request.headers.get("Accept", "")


def resume_cursor(request: web.Request, after: int) -> int:
    last = request.headers.get("Last-Event-ID")
    if last is None or not last.strip():
        return after
    if not last.strip().isdigit() or int(last) > MAX_ID:
        raise ApiError(422, "header Last-Event-ID: must be a log seq (a whole number)")
    return int(last)


@operation(
    "GET", "/deployments/{id}/logs",
    "Log lines after a cursor; with `Accept: text/event-stream` or `follow=1`, live as "
    "server-sent events (event `log` with id = seq, `status`, and `end` when final)",
    Scope.READ, query=LogsQuery, responses={200: s.LogPage}, errors=(404, 422),
    signed_link=True, streams=True,
)  # fmt: skip
async def deployment_logs(request: web.Request) -> web.StreamResponse:
    deployment_id = path_id(request)
    wanted = query(request, LogsQuery)
    store = runtime_of(request).store
    if wants_stream(request, wanted.follow):
        after = resume_cursor(request, wanted.after)
        await store.get_deployment(deployment_id)  # a 404 before the stream starts
        return await stream_sse(request, deployment_id, after)
    await store.get_deployment(deployment_id)
    page = await store.read_logs(deployment_id, after=wanted.after, limit=wanted.limit)
    items = [s.LogLineOut.of(line) for line in page.items]
    return reply(s.LogPage(items=items, next_cursor=page.next_cursor or wanted.after))


async def stream_sse(request: web.Request, deployment_id: int, after: int) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    await response.write(b"retry: 2000\n\n")
    with contextlib.suppress(ConnectionError, asyncio.CancelledError):
        try:
            async with request.app[HUB].watch(deployment_id, after) as viewer:
                while not viewer.finished:
                    events = await viewer.next(KEEPALIVE_SECONDS)
                    await response.write(sse_chunk(events) if events else b": keepalive\n\n")
        except NotFound:  # deleted while watched: the stream just ends
            await response.write(b'event: end\ndata: {"status": "deleted"}\n\n')
    return response


@operation(
    "GET", "/deployments/{id}/logs/ws",
    "Live log over a WebSocket: JSON messages of type log, status and end", Scope.READ,
    query=WatchQuery, responses={101: None}, errors=(404, 422), signed_link=True,
)  # fmt: skip
async def deployment_logs_ws(request: web.Request) -> web.StreamResponse:
    deployment_id = path_id(request)
    wanted = query(request, WatchQuery)
    await runtime_of(request).store.get_deployment(deployment_id)
    socket = web.WebSocketResponse(heartbeat=KEEPALIVE_SECONDS)
    await socket.prepare(request)
    closed = asyncio.Event()

    async def read_until_closed() -> None:
        async for message in socket:
            if message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break
        closed.set()

    reader = asyncio.create_task(read_until_closed())
    try:
        async with request.app[HUB].watch(deployment_id, wanted.after) as viewer:
            while not viewer.finished and not closed.is_set() and not socket.closed:
                for event in await viewer.next(1.0):
                    await socket.send_str(event_text(event))
        await socket.close()
    except NotFound:
        await socket.send_json({"type": "end", "status": "deleted"})
        await socket.close()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    return socket
