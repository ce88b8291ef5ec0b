"""LISTEN on a dedicated connection that comes back by itself after the database restarts
or the connection is dropped."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

import asyncpg
import structlog

from pipeline.db.connect import connect

log = structlog.get_logger(__name__)

Handler = Callable[[str], None]

# Connecting, the connection's set-up queries and the LISTENs, together: a server that
# takes the connection and then stops answering must not hold the listener forever.
SETUP_SECONDS = 20.0


class Listener:
    """Calls `handlers[channel](payload)` for every notification. After each (re)connect it
    calls `on_connect`, since notifications sent while it was away are lost."""

    def __init__(
        self,
        url: str,
        handlers: Mapping[str, Handler],
        *,
        on_connect: Callable[[], None] | None = None,
        keepalive_seconds: float = 5.0,
        max_backoff_seconds: float = 5.0,
    ) -> None:
        self._url = url
        self._handlers = dict(handlers)
        self._on_connect = on_connect
        self._keepalive = keepalive_seconds
        self._max_backoff = max_backoff_seconds
        self._stopping = asyncio.Event()
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.backend_pid: int | None = None

    def stop(self) -> None:
        self._stopping.set()

    def _dispatch(self, _connection: object, _pid: int, channel: str, payload: object) -> None:
        handler = self._handlers.get(channel)
        if handler is not None:
            handler(str(payload))

    async def run(self) -> None:
        backoff = 0.05
        # Whether an attempt failed since the last connection: then the next one is "back",
        # also when the very first attempts failed (a process that starts, or is still
        # connecting, as the database goes away), or the warnings would have no end.
        failed = False
        while not self._stopping.is_set():
            connection: asyncpg.Connection | None = None
            try:
                dropped = asyncio.Event()
                async with asyncio.timeout(SETUP_SECONDS):
                    connection = await connect(self._url)
                    connection.add_termination_listener(lambda _c, event=dropped: event.set())
                    for channel in self._handlers:
                        await connection.add_listener(channel, self._dispatch)
                self.backend_pid = connection.get_server_pid()
                if failed:
                    self.reconnects += 1
                    log.info("LISTEN connection is back", reconnects=self.reconnects)
                failed = False
                backoff = 0.05
                self.connected.set()
                if self._on_connect is not None:
                    self._on_connect()
                await self._hold(connection, dropped)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any connection fault: wait, then connect again
                failed = True
                if not self._stopping.is_set():
                    log.warning("LISTEN connection lost", error=str(error) or type(error).__name__)
            finally:
                self.connected.clear()
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(connection.close(), 2)
            if not self._stopping.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, self._max_backoff)

    async def _hold(self, connection: asyncpg.Connection, dropped: asyncio.Event) -> None:
        """Wait until stopped or dropped; a periodic query finds half-open connections."""
        while not self._stopping.is_set():
            waiters = [
                asyncio.ensure_future(self._stopping.wait()),
                asyncio.ensure_future(dropped.wait()),
            ]
            done, pending = await asyncio.wait(
                waiters, timeout=self._keepalive, return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in pending:
                waiter.cancel()
            if dropped.is_set() or connection.is_closed():
                raise ConnectionError("the server closed the LISTEN connection")
            if not done:
                await asyncio.wait_for(connection.execute("SELECT 1"), self._keepalive)
