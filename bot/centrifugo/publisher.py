"""Every deployment's log lines and status changes, published to its Centrifugo channel.

One publisher per `serve` process follows deployments as a viewer of the process's LogHub
(bot/api/live.py): the LISTEN connection and the feeds the SSE and WebSocket viewers use,
so a deployment's new lines are read once per process and encoded once for its viewers and
for Centrifugo. Only one publisher publishes: the one holding a PostgreSQL advisory lock
(session-level, on a connection of its own), so a line goes out once however many
processes run; when that process goes, its lock goes with its connection and another
takes over, publishing what is running from its first line.

Publishing never slows a build: workers only write PostgreSQL, and what the publisher reads
goes to the sender's bounded queue (bot/centrifugo/sender.py), which drops for Centrifugo
only and tells subscribers where to re-read.

A channel's messages have the WebSocket viewer's JSON (bot/api/log_messages.py): `log`
(lines with their `seq`), `status`, `end`, and `gap`. A subscriber takes each line once by
`seq`: after a change of publisher, lines of a running build may come again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict

import asyncpg
import structlog

from bot.api.live import End, Event, Lines, LogHub
from bot.api.log_messages import compact, encoded_lines, event_text, log_message
from bot.centrifugo.sender import Publication, PublisherStats, Sender, chunks
from bot.configured import secret
from pipeline.db.connect import connect
from pipeline.db.queries import q
from pipeline.errors import NotFound
from pipeline.settings import Settings

log = structlog.get_logger(__name__)

LEADER_RETRY_SECONDS = 2.0  # a process that is not the publisher asks for the lock again
LEADER_CHECK_SECONDS = 5.0  # the publisher's lock connection is checked this often
FOLLOW_WAIT_SECONDS = 5.0  # a follower looks up from its viewer this often
FINISHED_MEMORY = 10_000  # final deployments remembered, so a late notice is not news


def configured(settings: Settings) -> bool:
    key = secret(settings.centrifugo_api_key)
    return settings.centrifugo_api_url is not None and key is not None


class Publisher:
    """The hub's observer: a notice of a deployment it does not follow yet starts a
    follower, which watches it through the hub until it is final."""

    def __init__(self, settings: Settings, hub: LogHub, url: str) -> None:
        if not configured(settings):
            raise ValueError("CENTRIFUGO_API_URL and CENTRIFUGO_API_KEY are not set")
        self.settings = settings
        self.hub = hub
        self.url = url
        self.stats = PublisherStats()
        self.sender = Sender(settings, self.stats)
        self.leading = asyncio.Event()
        self.cursors: dict[int, int] = {}  # deployment -> last seq handed to the sender
        self._following: dict[int, asyncio.Task[None]] = {}
        self._noticed: set[int] = set()
        self._finished: OrderedDict[int, None] = OrderedDict()
        self._rediscover = True
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def queue(self) -> asyncio.Queue[Publication]:
        return self.sender.queue

    def caught_up(self) -> bool:
        return self.sender.caught_up()

    # --- the hub's observer (bot/api/live.py): never blocks ------------------------------

    def logs_stored(self, deployment_id: int) -> None:
        self._notice(deployment_id)

    def status_changed(self, deployment_id: int) -> None:
        self._notice(deployment_id)

    def notices_missed(self) -> None:
        self._rediscover = True
        self._wake.set()

    def _notice(self, deployment_id: int) -> None:
        if (
            self.leading.is_set()
            and deployment_id not in self._following
            and deployment_id not in self._finished
        ):
            self._noticed.add(deployment_id)
            self._wake.set()

    # --- life ---------------------------------------------------------------------------

    async def start(self) -> None:
        self.sender.open()
        self._tasks = [
            asyncio.create_task(self._lead(), name="centrifugo-leader"),
            asyncio.create_task(self._discover_loop(), name="centrifugo-discover"),
            asyncio.create_task(self.sender.run(self._pause), name="centrifugo-sender"),
        ]

    async def stop(self) -> None:
        self._stopping.set()
        tasks = self._tasks + list(self._following.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.sender.close()

    async def _pause(self, seconds: float) -> None:
        """Sleep, cut short by stop(). (Not wait_for: on Python 3.11 it swallows a
        cancellation that comes as the event is set, as stop() does.)"""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    # --- leadership ---------------------------------------------------------------------

    async def _lead(self) -> None:
        """Hold the publisher lock while this process is the publisher; ask again otherwise."""
        while not self._stopping.is_set():
            connection: asyncpg.Connection | None = None
            try:
                connection = await connect(self.url)
                while not await connection.fetchval(q("centrifugo_publisher_lock")):
                    await self._pause(LEADER_RETRY_SECONDS)
                    if self._stopping.is_set():
                        return
                self._take_office()
                while not self._stopping.is_set():
                    await self._pause(LEADER_CHECK_SECONDS)
                    await asyncio.wait_for(connection.execute("SELECT 1"), LEADER_CHECK_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the lock's connection is gone: so is the lock
                log.warning(
                    "Centrifugo publisher: lost its database connection",
                    error=str(error) or type(error).__name__,
                )
            finally:
                self._leave_office()
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(connection.close(), 2)
            await self._pause(LEADER_RETRY_SECONDS)

    def _take_office(self) -> None:
        self.leading.set()
        self.stats.leader = True
        self._rediscover = True
        self._wake.set()
        log.info("Centrifugo publisher: this process publishes live logs")

    def _leave_office(self) -> None:
        if self.leading.is_set():
            log.info("Centrifugo publisher: this process no longer publishes")
        self.leading.clear()
        self.stats.leader = False
        # The next publisher starts each running deployment from its first line.
        for task in self._following.values():
            task.cancel()
        self._following.clear()
        self._noticed.clear()
        self.cursors.clear()

    # --- following deployments ----------------------------------------------------------

    async def _discover_loop(self) -> None:
        """Start a follower for each deployment noticed, and, after notices may have been
        missed, for each running one."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self.leading.is_set():
                continue
            if self._rediscover:
                self._rediscover = False
                try:
                    rows = await self.hub.store.pool.fetch(q("deployments_running_ids"))
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # the database went away: try again shortly
                    log.warning(
                        "Centrifugo publisher: listing running deployments failed",
                        error=str(error) or type(error).__name__,
                    )
                    await self._pause(1.0)
                    self.notices_missed()
                    continue
                self._noticed |= {int(row["id"]) for row in rows}
            noticed, self._noticed = self._noticed, set()
            for deployment_id in sorted(noticed):
                if deployment_id not in self._following and deployment_id not in self._finished:
                    self._following[deployment_id] = asyncio.create_task(
                        self._follow(deployment_id), name=f"centrifugo-follow-{deployment_id}"
                    )

    async def _follow(self, deployment_id: int) -> None:
        """Publish the deployment's lines and status changes until it is final (or this
        process stops publishing); a failed read is taken up again from the cursor."""
        try:
            while self.leading.is_set():
                try:
                    await self._watch(deployment_id)
                    return
                except NotFound:  # deleted
                    end = compact({"type": "end", "status": "deleted"})
                    after = self.cursors.get(deployment_id, 0)
                    self.sender.offer(Publication(deployment_id, end, after, end=True))
                    self._forget(deployment_id)
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # the database went away: try again shortly
                    log.warning(
                        "Centrifugo publisher: reading the log failed",
                        deployment=deployment_id,
                        error=str(error) or type(error).__name__,
                    )
                    await self._pause(1.0)
        finally:
            if self._following.get(deployment_id) is asyncio.current_task():
                del self._following[deployment_id]

    async def _watch(self, deployment_id: int) -> None:
        after = self.cursors.get(deployment_id, 0)
        async with self.hub.watch(deployment_id, after) as viewer:
            while not viewer.finished and self.leading.is_set():
                for event in await viewer.next(FOLLOW_WAIT_SECONDS):
                    self._publish(deployment_id, event)
        if viewer.finished:
            self._forget(deployment_id)

    def _publish(self, deployment_id: int, event: Event) -> None:
        cursor = self.cursors.get(deployment_id, 0)
        if isinstance(event, Lines):
            encoded = encoded_lines(event)
            for part in chunks(encoded):
                lines = event.lines[part]
                text = log_message(encoded[part])
                self.sender.offer(Publication(deployment_id, text, cursor, len(lines)))
                cursor = lines[-1].seq
            self.cursors[deployment_id] = cursor
            return
        end = isinstance(event, End)
        self.sender.offer(Publication(deployment_id, event_text(event), cursor, end=end))

    def _forget(self, deployment_id: int) -> None:
        self.cursors.pop(deployment_id, None)
        self._finished[deployment_id] = None
        while len(self._finished) > FINISHED_MEMORY:
            self._finished.popitem(last=False)
