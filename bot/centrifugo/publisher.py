"""Every deployment's log lines and status changes, published to its Centrifugo channel.

One publisher per `serve` process hears the notifications of the process's LogHub (the
LISTEN connection viewers use, bot/api/live.py). Only one of them publishes: the one
holding a PostgreSQL advisory lock (session-level, on a connection of its own), so a line
goes out once however many processes run; when that process goes, its lock goes with its
connection and another takes over, publishing what is running from its first line.

Publishing never slows a build: workers only write PostgreSQL; the publisher reads what
they stored into a bounded queue that one sender drains in batches (Centrifugo's `batch`
method). When Centrifugo is slow or down, what does not fit or fails is dropped for
Centrifugo only (the history stays in PostgreSQL), counted, logged once per outage, and
once Centrifugo answers again each affected channel gets a `gap` message naming where to
re-read: `GET /api/v1/deployments/{id}/logs?after=SEQ`. A channel's gap message comes after
every line up to SEQ and before any line above it (until it is sent, the channel's newer
publications are dropped too, covered by it), so a subscriber that skips what it has shown
loses nothing.

A channel's messages have the WebSocket viewer's JSON (bot/api/stream.py): `log` (lines
with their `seq`), `status`, `end`, and `gap`. A subscriber takes each line once by `seq`:
after a change of publisher, lines of a running build may come again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import asyncpg
import structlog
from cent import AsyncClient, BatchRequest, BatchResult, PublishRequest, PublishResult, Response
from cent.dto import CentResult
from cent.exceptions import (
    CentApiResponseError,
    CentDecodeError,
    CentError,
    CentNetworkError,
    CentTimeoutError,
    CentTransportError,
    CentUnauthorizedError,
)

from bot.api.live import PAGE_LINES, StatusChange
from bot.api.stream import line_json, status_json
from bot.centrifugo.token import channel_of
from bot.configured import secret
from pipeline.db.connect import connect
from pipeline.db.queries import q
from pipeline.errors import NotFound
from pipeline.models import LogLine
from pipeline.settings import Settings
from pipeline.store import Store

log = structlog.get_logger(__name__)

UNKNOWN_CHANNEL = 102  # Centrifugo's error code for a namespace it does not know
LEADER_RETRY_SECONDS = 2.0  # a process that is not the publisher asks for the lock again
LEADER_CHECK_SECONDS = 5.0  # the publisher's lock connection is checked this often
FINISHED_MEMORY = 10_000  # final deployments remembered, so a late notice is not news
# One publication stays well below Centrifugo's default message limit (65536 bytes).
LINES_PER_PUBLICATION = 200
BYTES_PER_PUBLICATION = 48_000
MAX_BACKOFF_SECONDS = 5.0
# The sender waits this long after a first publication for more to share its request:
# fewer requests cost the process less (a worker flushes every LOG_FLUSH_SECONDS anyway).
LINGER_SECONDS = 0.05


def configured(settings: Settings) -> bool:
    key = secret(settings.centrifugo_api_key)
    return settings.centrifugo_api_url is not None and key is not None


@dataclass(frozen=True)
class Publication:
    deployment_id: int
    data: dict[str, Any]
    after: int  # the seq before its first line: where to re-read from if it is lost
    lines: int  # log lines it carries
    serial: int = 0  # the order publications were offered in (all channels)


@dataclass
class Gap:
    """What a channel lost: re-read after `after`; every publication of the channel offered
    since `since` (a serial) is covered; `end`, when the `end` message was lost too (it goes
    again right after the gap message)."""

    after: int
    since: int
    end: dict[str, Any] | None = None


@dataclass
class PublisherStats:
    """This process's figures, for /metrics."""

    publications: int = 0  # accepted by Centrifugo
    lines: int = 0  # log lines in them
    dropped_publications: int = 0
    dropped_lines: int = 0
    failed_batches: int = 0
    outages: int = 0
    gap_messages: int = 0
    leader: bool = False
    up: bool = True  # the last batch went through


def chunks(lines: Sequence[LogLine]) -> Iterator[list[LogLine]]:
    """Lines cut into publications of at most LINES_PER_PUBLICATION lines and about
    BYTES_PER_PUBLICATION bytes (one longer line goes alone)."""
    chunk: list[LogLine] = []
    size = 0
    for line in lines:
        length = len(line.line) + 80  # the line's JSON around it
        if chunk and (len(chunk) >= LINES_PER_PUBLICATION or size + length > BYTES_PER_PUBLICATION):
            yield chunk
            chunk, size = [], 0
        chunk.append(line)
        size += length
    if chunk:
        yield chunk


def gap_message(settings: Settings, deployment_id: int, after: int) -> dict[str, Any]:
    base = f"{settings.public_url.rstrip('/')}/api/v1/deployments/{deployment_id}"
    return {"type": "gap", "after": after, "logs": f"{base}/logs?after={after}", "deployment": base}


class PublishBatch(BatchRequest):
    """cent's batch request, with its answer read here: cent builds two pydantic
    TypeAdapters for every answer (a fifth of the publisher's CPU, measured), and takes a
    reply that holds an error for an undecodable answer instead of reporting the error."""

    def parse_response(self, content: str) -> Response[CentResult]:
        try:
            body = json.loads(content)
            error = body.get("error")
            replies = body["replies"] if error is None else []
        except (ValueError, AttributeError, KeyError, TypeError) as failure:
            raise CentDecodeError from failure
        if error is None:
            errors = [r["error"] for r in replies if isinstance(r, dict) and "error" in r]
            error = errors[0] if errors else None
        if error is not None:
            raise CentApiResponseError(int(error.get("code", 0)), str(error.get("message", "")))
        if len(replies) != len(self.requests):
            raise CentDecodeError
        result = BatchResult.model_construct(replies=[PublishResult() for _ in replies])
        return Response[CentResult](result=result)


class Publisher:
    def __init__(self, settings: Settings, store: Store, url: str) -> None:
        if not configured(settings):
            raise ValueError("CENTRIFUGO_API_URL and CENTRIFUGO_API_KEY are not set")
        self.settings = settings
        self.store = store
        self.url = url
        self.queue: asyncio.Queue[Publication] = asyncio.Queue(settings.centrifugo_queue_size)
        self.stats = PublisherStats()
        self.leading = asyncio.Event()
        self.cursors: dict[int, int] = {}  # deployment -> last seq handed to the queue
        # A channel's gap is sent after the publications queued before its first drop, in
        # the same request as the last of them; until then (and while it is on its way) the
        # channel takes nothing else: what it loses meanwhile the gap covers. So a subscriber
        # has every line up to `after` when the gap comes, and nothing above it live before.
        self.gaps: dict[int, Gap] = {}  # deployment -> its gap, not yet sent
        self._gaps_sending: dict[int, Gap] = {}  # in the request on its way
        self._queued: Counter[int] = Counter()  # deployment -> its publications in the queue
        self._sending = 0  # publications in the request on its way
        self._ready = asyncio.Event()  # something to send: a publication or a gap
        self._serials = itertools.count(1)
        self._lines_dirty: set[int] = set()
        self._status_dirty: set[int] = set()
        self._finished: OrderedDict[int, None] = OrderedDict()
        self._rediscover = True
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._outage: dict[str, Any] | None = None  # since when, how much was dropped
        self._client: AsyncClient | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # --- the hub's observer (bot/api/live.py): never blocks ------------------------------

    def logs_stored(self, deployment_id: int) -> None:
        if self.leading.is_set() and deployment_id not in self._finished:
            self._lines_dirty.add(deployment_id)
            self._wake.set()

    def status_changed(self, deployment_id: int) -> None:
        if self.leading.is_set() and deployment_id not in self._finished:
            self._status_dirty.add(deployment_id)
            self._wake.set()

    def notices_missed(self) -> None:
        self._rediscover = True
        self._wake.set()

    # --- life ---------------------------------------------------------------------------

    async def start(self) -> None:
        session = aiohttp.ClientSession()
        key = secret(self.settings.centrifugo_api_key) or ""
        assert self.settings.centrifugo_api_url is not None
        self._client = AsyncClient(
            self.settings.centrifugo_api_url,
            key,
            timeout=self.settings.centrifugo_timeout_seconds,
            session=session,
        )
        self._tasks = [
            asyncio.create_task(self._lead(), name="centrifugo-leader"),
            asyncio.create_task(self._read_loop(), name="centrifugo-reader"),
            asyncio.create_task(self._send_loop(), name="centrifugo-sender"),
        ]

    async def stop(self) -> None:
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._client is not None:
            await self._client.close()

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
        self.cursors.clear()
        self._lines_dirty.clear()
        self._status_dirty.clear()

    # --- reading what workers stored ----------------------------------------------------

    async def _read_loop(self) -> None:
        while not self._stopping.is_set():
            await self._wake.wait()
            self._wake.clear()
            if not self.leading.is_set():
                continue
            try:
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the database went away: try again shortly
                log.warning(
                    "Centrifugo publisher: reading the log failed",
                    error=str(error) or type(error).__name__,
                )
                await self._pause(1.0)
                self._rediscover = True
                self._wake.set()

    async def _read(self) -> None:
        if self._rediscover:
            self._rediscover = False
            rows = await self.store.pool.fetch(q("deployments_running_ids"))
            running = {int(row["id"]) for row in rows}
            self._lines_dirty |= running | set(self.cursors)
            self._status_dirty |= running - set(self.cursors)
        while self._lines_dirty or self._status_dirty:
            if not self.leading.is_set():
                return
            deployment_id = min(self._lines_dirty | self._status_dirty)
            with_status = deployment_id in self._status_dirty
            self._lines_dirty.discard(deployment_id)
            self._status_dirty.discard(deployment_id)
            try:
                await self._publish(deployment_id, with_status)
            except BaseException:
                self._lines_dirty.add(deployment_id)
                if with_status:
                    self._status_dirty.add(deployment_id)
                raise

    async def _publish(self, deployment_id: int, with_status: bool) -> None:
        """The deployment's new lines, then (when it changed, or is new here) its status;
        the status is read first: when it is final, every line is already stored."""
        if deployment_id in self._finished:
            return
        known = deployment_id in self.cursors
        change: StatusChange | None = None
        if with_status or not known:
            try:
                deployment = await self.store.get_deployment(deployment_id)
            except NotFound:  # deleted
                self._offer(Publication(deployment_id, {"type": "end", "status": "deleted"}, 0, 0))
                self._forget(deployment_id)
                return
            change = StatusChange(deployment, await self.store.list_steps(deployment_id))
        cursor = self.cursors.get(deployment_id, 0)
        while True:
            page = await self.store.read_logs(deployment_id, after=cursor, limit=PAGE_LINES)
            for chunk in chunks(page.items):
                data = {"type": "log", "lines": [line_json(line) for line in chunk]}
                self._offer(Publication(deployment_id, data, cursor, len(chunk)))
                cursor = chunk[-1].seq
            if len(page.items) < PAGE_LINES:
                break
        self.cursors[deployment_id] = cursor
        if change is None:
            return
        status = {"type": "status", "deployment": status_json(change)}
        self._offer(Publication(deployment_id, status, cursor, 0))
        if change.deployment.status.is_final:
            end = {"type": "end", "status": str(change.deployment.status)}
            self._offer(Publication(deployment_id, end, cursor, 0))
            self._forget(deployment_id)

    def _forget(self, deployment_id: int) -> None:
        self.cursors.pop(deployment_id, None)
        self._finished[deployment_id] = None
        while len(self._finished) > FINISHED_MEMORY:
            self._finished.popitem(last=False)

    # --- sending ------------------------------------------------------------------------

    def caught_up(self) -> bool:
        """Nothing waits to be sent, and nothing is on its way."""
        return self.queue.empty() and not (self.gaps or self._gaps_sending or self._sending)

    def _offer(self, publication: Publication) -> None:
        publication = replace(publication, serial=next(self._serials))
        deployment_id = publication.deployment_id
        if deployment_id in self.gaps or deployment_id in self._gaps_sending:
            self._drop([publication], "covered by a gap message not yet sent")
            return
        try:
            self.queue.put_nowait(publication)
        except asyncio.QueueFull:
            self._drop([publication], "the queue to Centrifugo is full (CENTRIFUGO_QUEUE_SIZE)")
            return
        self._queued[deployment_id] += 1
        self._ready.set()

    def _drop(self, publications: Sequence[Publication], reason: str) -> None:
        self.stats.dropped_publications += len(publications)
        self.stats.dropped_lines += sum(p.lines for p in publications)
        for publication in publications:
            gap = self.gaps.setdefault(
                publication.deployment_id, Gap(publication.after, publication.serial)
            )
            gap.after = min(gap.after, publication.after)
            gap.since = min(gap.since, publication.serial)
            if publication.data.get("type") == "end":
                gap.end = publication.data
        self._ready.set()
        if self._outage is None:
            self.stats.outages += 1
            self._outage = {"since": time.monotonic(), "lines": 0, "publications": 0}
            log.warning(
                "Centrifugo publishing: dropping lines for Centrifugo only; subscribers "
                "will be told where to re-read",
                reason=reason,
            )
        self._outage["lines"] += sum(p.lines for p in publications)
        self._outage["publications"] += len(publications)

    async def _send_loop(self) -> None:
        backoff = 0.0
        size = self.settings.centrifugo_batch_size
        while not self._stopping.is_set():
            if self.queue.empty() and not self._sendable_gaps():
                self._ready.clear()
                await self._ready.wait()
                continue
            if 0 < self.queue.qsize() < size:
                await asyncio.sleep(LINGER_SECONDS)
            batch: list[Publication] = []
            while len(batch) < size and not self.queue.empty():
                publication = self.queue.get_nowait()
                self._unqueued(publication.deployment_id)
                gap = self.gaps.get(publication.deployment_id)
                if gap is not None and publication.serial > gap.since:
                    # Offered after what a failed request lost: it must not come before
                    # the gap message, which covers it.
                    self._drop([publication], "covered by a gap message not yet sent")
                    continue
                batch.append(publication)
            gaps = self._sendable_gaps()[: max(size - len(batch), 1)]
            if not batch and not gaps:  # all it took was covered by gaps still waiting
                continue
            self._gaps_sending = {
                deployment_id: self.gaps.pop(deployment_id) for deployment_id in gaps
            }
            failure = await self._send_with_gaps(batch)
            if failure is None:
                backoff = 0.0
                self._end_outage()
            else:
                backoff = min(max(backoff * 2, 0.1), MAX_BACKOFF_SECONDS)
                await self._pause(backoff)

    def _unqueued(self, deployment_id: int) -> None:
        self._queued[deployment_id] -= 1
        if self._queued[deployment_id] <= 0:
            del self._queued[deployment_id]

    def _sendable_gaps(self) -> list[int]:
        """Deployments whose gap can go: nothing of theirs is left in the queue."""
        return sorted(d for d in self.gaps if not self._queued[d])

    async def _send_with_gaps(self, batch: list[Publication]) -> str | None:
        """`batch`, then the gap messages of `_gaps_sending`, in one request (Centrifugo
        runs a batch's commands in order); on a failure the batch is dropped and the gaps
        wait for the next attempt."""
        messages = list(batch)
        for deployment_id, gap in self._gaps_sending.items():
            data = gap_message(self.settings, deployment_id, gap.after)
            messages.append(Publication(deployment_id, data, gap.after, 0))
            if gap.end is not None:
                messages.append(Publication(deployment_id, gap.end, gap.after, 0))
        self._sending = len(messages)
        try:
            failure = await self._send(messages)
        finally:
            self._sending = 0
            sent, self._gaps_sending = self._gaps_sending, {}
        if failure is None:
            self.stats.publications += len(messages) - len(sent)
            self.stats.lines += sum(p.lines for p in batch)
            self.stats.gap_messages += len(sent)
            return None
        for deployment_id, gap in sent.items():  # they go with the next request
            later = self.gaps.setdefault(deployment_id, gap)
            later.after = min(later.after, gap.after)
            later.since = min(later.since, gap.since)
            later.end = later.end or gap.end
        if batch:
            self._drop(batch, failure)
        return failure

    async def _send(self, batch: Sequence[Publication]) -> str | None:
        """Publish `batch` in one request; None when Centrifugo took all of it, else why not."""
        assert self._client is not None
        request = PublishBatch(
            requests=[
                PublishRequest(channel=channel_of(self.settings, p.deployment_id), data=p.data)
                for p in batch
            ]
        )
        try:
            await self._client.batch(request)
        except CentUnauthorizedError:
            failure = "Centrifugo refused CENTRIFUGO_API_KEY (401)"
        except CentTransportError as error:
            failure = f"Centrifugo answered HTTP {error.status_code}"
        except (CentNetworkError, CentTimeoutError) as error:
            failure = f"Centrifugo is unreachable ({error})"
        except CentApiResponseError as error:
            failure = f"Centrifugo refused publications: error {error.code} ({error.message})"
            if error.code == UNKNOWN_CHANNEL:
                failure += (
                    "; the namespace of CENTRIFUGO_CHANNEL_PREFIX="
                    f"{self.settings.centrifugo_channel_prefix!r} must exist in its configuration"
                )
        except CentDecodeError:
            failure = "Centrifugo's answer to a batch was not what its API describes"
        except CentError as error:
            failure = f"Centrifugo request failed ({error})"
        else:
            self.stats.up = True
            return None
        self.stats.up = False
        self.stats.failed_batches += 1
        return failure

    def _end_outage(self) -> None:
        if self._outage is None or self.gaps:
            return
        outage, self._outage = self._outage, None
        log.info(
            "Centrifugo publishing: caught up; subscribers were told where to re-read",
            seconds=round(time.monotonic() - outage["since"], 1),
            dropped_lines=outage["lines"],
            dropped_publications=outage["publications"],
        )


def encoded_size(data: dict[str, Any]) -> int:
    """A publication's JSON size in bytes (for tests of the limit)."""
    return len(json.dumps(data, separators=(",", ":")).encode())
