"""Live logs for any number of viewers in one process, of builds run by any worker.

One LISTEN connection per process (`LogHub`) hears `click_deploy_logs` ("id:seq", sent
with every batch of lines a worker stores) and `click_deploy_status` (any state or
progress change, migration 0005). For each deployment someone watches, one `Feed` reads
the new lines once and offers them to each viewer's bounded queue. A viewer whose queue is
full is marked lagging and dropped from the fan-out until it has re-read, from its own
cursor, what it missed: a slow viewer never slows the build, the feed or other viewers.

Observers (the Centrifugo publisher, bot/centrifugo) hear every notification of the same
connection, for every deployment, watched or not.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import structlog

from pipeline.models import Deployment, LogLine, Step
from pipeline.queue.listener import Listener
from pipeline.queue.queue import LOGS_CHANNEL
from pipeline.store import Store

log = structlog.get_logger(__name__)

STATUS_CHANNEL = "click_deploy_status"
PAGE_LINES = 1000
SAFETY_POLL_SECONDS = 5.0  # NOTIFY is the signal; this only covers a lost one


@dataclass(eq=False)
class Lines:
    lines: list[LogLine]
    # Made of these lines to send them (bot/api/log_messages.py) and kept: the feed offers
    # one Lines to every viewer and the publisher, so each is made once.
    encoded: list[str] | None = None  # each line's JSON
    sse: bytes | None = None  # as server-sent events


@dataclass(frozen=True)
class StatusChange:
    deployment: Deployment
    steps: list[Step]


@dataclass(frozen=True)
class End:
    deployment: Deployment


Event = Lines | StatusChange | End


class HubObserver(Protocol):
    """Told of every notification the hub hears; each call must return at once."""

    def logs_stored(self, deployment_id: int) -> None: ...

    def status_changed(self, deployment_id: int) -> None: ...

    def notices_missed(self) -> None:
        """After a (re)connect, and at each safety poll: notifications may be lost."""


class Viewer:
    """One person watching one deployment: lines after `cursor`, in order, exactly once;
    status changes; and, once the deployment is final, its last lines, status and End."""

    def __init__(self, store: Store, deployment_id: int, after: int, buffer: int) -> None:
        self.store = store
        self.deployment_id = deployment_id
        self.cursor = max(after, 0)
        self.queue: asyncio.Queue[Lines | StatusChange] = asyncio.Queue(maxsize=buffer)
        self.lagging = False
        self.finished = False
        self.dropped = 0  # times this viewer fell behind (for tests and the benchmark)
        self._catching_up: Deployment | None = None  # status read when a catch-up began
        self._needs_catch_up = True
        self._last_update: datetime | None = None

    def offer(self, item: Lines | StatusChange) -> None:
        """From the feed; never blocks. A full queue marks the viewer lagging."""
        if self.lagging or self.finished:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.lagging = True
            self.dropped += 1

    async def next(self, wait: float) -> list[Event]:
        """The next events, or [] when nothing happened for `wait` seconds."""
        if self.finished:
            return []
        if self.lagging and self.queue.empty():
            self.lagging = False
            self._needs_catch_up = True
        if self._needs_catch_up or self._catching_up is not None:
            return await self._catch_up()
        try:
            item = await asyncio.wait_for(self.queue.get(), wait)
        except TimeoutError:
            return []
        if isinstance(item, Lines):
            fresh = [line for line in item.lines if line.seq > self.cursor]
            if not fresh:
                return []
            if fresh[0].seq != self.cursor + 1:  # a gap: read it from the table
                self._needs_catch_up = True
                return await self._catch_up()
            self.cursor = fresh[-1].seq
            return [item if len(fresh) == len(item.lines) else Lines(fresh)]
        if item.deployment.status.is_final:
            self._needs_catch_up = True  # its last lines are stored: read them, then end
            return await self._catch_up()
        if self._last_update is not None and item.deployment.updated_at <= self._last_update:
            return []
        self._last_update = item.deployment.updated_at
        return [item]

    async def _catch_up(self) -> list[Event]:
        """Read from the table after the cursor, a page per call. The status is read
        before the lines: if it is final, every line is already stored."""
        if self._catching_up is None:
            self._needs_catch_up = False
            self._catching_up = await self.store.get_deployment(self.deployment_id)
        status = self._catching_up
        page = await self.store.read_logs(self.deployment_id, after=self.cursor, limit=PAGE_LINES)
        events: list[Event] = []
        if page.items:
            self.cursor = page.items[-1].seq
            events.append(Lines(page.items))
            if len(page.items) == PAGE_LINES:
                return events  # more to read: the next call goes on
        self._catching_up = None
        if self._last_update is None or status.updated_at > self._last_update:
            self._last_update = status.updated_at
            events.append(StatusChange(status, await self.store.list_steps(self.deployment_id)))
        if status.status.is_final:
            self.finished = True
            events.append(End(status))
        return events


@dataclass(eq=False)
class Feed:
    """The lines and status changes of one watched deployment, read once per process."""

    deployment_id: int
    viewers: set[Viewer] = field(default_factory=set)
    cursor: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    status_dirty: bool = True
    task: asyncio.Task[None] | None = None


class LogHub:
    def __init__(self, url: str, store: Store, buffer: int = 256) -> None:
        self.url = url
        self.store = store
        self.buffer = buffer
        self.feeds: dict[int, Feed] = {}
        self.observers: list[HubObserver] = []
        self.listener = Listener(
            url,
            {LOGS_CHANNEL: self._on_logs, STATUS_CHANNEL: self._on_status},
            on_connect=self._wake_all,
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self.listener.run(), name="log-hub-listener"),
            asyncio.create_task(self._poll(), name="log-hub-poll"),
        ]

    async def stop(self) -> None:
        self.listener.stop()
        tasks = self._tasks + [feed.task for feed in self.feeds.values() if feed.task]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.feeds.clear()

    @asynccontextmanager
    async def watch(self, deployment_id: int, after: int = 0) -> AsyncIterator[Viewer]:
        """A viewer of `deployment_id` from the line after `after`, for the block's life."""
        viewer = Viewer(self.store, deployment_id, after, self.buffer)
        feed = self.feeds.get(deployment_id)
        if feed is None:
            feed = self.feeds[deployment_id] = Feed(deployment_id)
            feed.task = asyncio.create_task(self._run_feed(feed), name=f"feed-{deployment_id}")
        feed.viewers.add(viewer)
        try:
            yield viewer
        finally:
            feed.viewers.discard(viewer)
            if not feed.viewers and self.feeds.get(deployment_id) is feed:
                del self.feeds[deployment_id]
                if feed.task is not None:
                    feed.task.cancel()

    def _on_logs(self, payload: str) -> None:
        deployment_id, _, _seq = payload.partition(":")
        if not deployment_id.isdigit():
            return
        for observer in self.observers:
            observer.logs_stored(int(deployment_id))
        feed = self.feeds.get(int(deployment_id))
        if feed is not None:
            feed.wake.set()

    def _on_status(self, payload: str) -> None:
        if not payload.isdigit():
            return
        for observer in self.observers:
            observer.status_changed(int(payload))
        feed = self.feeds.get(int(payload))
        if feed is not None:
            feed.status_dirty = True
            feed.wake.set()

    def _wake_all(self) -> None:
        """After a (re)connect: notifications may have been missed."""
        for observer in self.observers:
            observer.notices_missed()
        for feed in self.feeds.values():
            feed.status_dirty = True
            feed.wake.set()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(SAFETY_POLL_SECONDS)
            self._wake_all()

    async def _run_feed(self, feed: Feed) -> None:
        try:
            feed.cursor = await self.store.last_log_seq(feed.deployment_id)
            while True:
                await feed.wake.wait()
                feed.wake.clear()
                try:
                    await self._read(feed)
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # the database went away: viewers wait
                    log.warning("live log feed read failed", error=str(error) or repr(error))
                    await asyncio.sleep(1)
                    feed.wake.set()
        except asyncio.CancelledError:
            pass

    async def _read(self, feed: Feed) -> None:
        while True:
            page = await self.store.read_logs(
                feed.deployment_id, after=feed.cursor, limit=PAGE_LINES
            )
            if page.items:
                feed.cursor = page.items[-1].seq
                batch = Lines(page.items)
                for viewer in list(feed.viewers):
                    viewer.offer(batch)
            if len(page.items) < PAGE_LINES:
                break
        if feed.status_dirty:
            feed.status_dirty = False
            deployment = await self.store.get_deployment(feed.deployment_id)
            change = StatusChange(deployment, await self.store.list_steps(feed.deployment_id))
            for viewer in list(feed.viewers):
                viewer.offer(change)
