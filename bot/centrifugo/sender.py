"""What goes to Centrifugo, and what is dropped for it: a bounded queue of publications that
one sender drains in `batch` requests (Centrifugo runs a batch's commands in order).

When Centrifugo is slow or down, what does not fit or fails is dropped for Centrifugo only
(the history stays in PostgreSQL), counted, logged once per outage, and once Centrifugo
answers again each affected channel gets a `gap` message naming where to re-read:
`GET /api/v1/deployments/{id}/logs?after=SEQ`. A channel's gap message comes after every
line up to SEQ and before any line above it (until it is sent, the channel's newer
publications are dropped too, covered by it), so a subscriber that skips what it has shown
loses nothing.

A publication's JSON is made before it is queued (lines encoded once for every viewer,
bot/api/log_messages.py) and a request's body is joined from them: cent sends it, and
its answer is read here.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import structlog
from cent import AsyncClient, BatchRequest, BatchResult, PublishResult, Response
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

from bot.api.log_messages import compact
from bot.centrifugo.token import channel_of
from bot.configured import secret
from pipeline.settings import Settings

log = structlog.get_logger(__name__)

UNKNOWN_CHANNEL = 102  # Centrifugo's error code for a namespace it does not know
# One publication stays well below Centrifugo's default message limit (65536 bytes).
LINES_PER_PUBLICATION = 200
BYTES_PER_PUBLICATION = 48_000
MAX_BACKOFF_SECONDS = 5.0
# At most one request this often, unless a batch is full: under load the publications of
# that time share one request (fewer requests cost the process less; a worker flushes its
# lines every LOG_FLUSH_SECONDS, 0.2 s, anyway), and after a quiet spell one goes at once.
REQUEST_INTERVAL_SECONDS = 0.1


@dataclass(frozen=True)
class Publication:
    deployment_id: int
    text: str  # the JSON published
    after: int  # the seq before its first line: where to re-read from if it is lost
    lines: int = 0  # log lines it carries
    end: bool = False  # the channel's last message
    serial: int = 0  # the order publications were offered in (all channels)


@dataclass
class Gap:
    """What a channel lost: re-read after `after`; every publication of the channel offered
    since `since` (a serial) is covered; `end`, when the `end` message was lost too (it goes
    again right after the gap message)."""

    after: int
    since: int
    end: str | None = None


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


def chunks(encoded: Sequence[str]) -> Iterator[slice]:
    """Encoded lines cut into publications of at most LINES_PER_PUBLICATION lines and about
    BYTES_PER_PUBLICATION bytes (one longer line goes alone)."""
    start = size = 0
    for index, text in enumerate(encoded):
        length = len(text) + 1
        if index > start and (
            index - start >= LINES_PER_PUBLICATION or size + length > BYTES_PER_PUBLICATION
        ):
            yield slice(start, index)
            start, size = index, 0
        size += length
    if start < len(encoded):
        yield slice(start, len(encoded))


def gap_message(settings: Settings, deployment_id: int, after: int) -> str:
    base = f"{settings.public_url.rstrip('/')}/api/v1/deployments/{deployment_id}"
    return compact(
        {"type": "gap", "after": after, "logs": f"{base}/logs?after={after}", "deployment": base}
    )


class PreparedBody:
    """A request body already encoded: the session's JSON serializer sends it as it is."""

    def __init__(self, text: str) -> None:
        self.text = text


def serialize(value: Any) -> str:
    return value.text if isinstance(value, PreparedBody) else json.dumps(value)


class PublishBatch(BatchRequest):
    """cent's batch request of publications whose JSON is made (`requests`: pairs of
    channel and data, encoded). Its answer is read here: cent builds two pydantic
    TypeAdapters for every answer (a fifth of the publisher's CPU, measured), and takes a
    reply that holds an error for an undecodable answer instead of reporting the error."""

    @property
    def api_payload(self) -> Any:
        commands = ",".join(
            f'{{"publish":{{"channel":{compact(channel)},"data":{data}}}}}'
            for channel, data in self.requests
        )
        return PreparedBody(f'{{"commands":[{commands}],"parallel":false}}')

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


class Sender:
    def __init__(self, settings: Settings, stats: PublisherStats) -> None:
        self.settings = settings
        self.stats = stats
        self.queue: asyncio.Queue[Publication] = asyncio.Queue(settings.centrifugo_queue_size)
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
        self._outage: dict[str, Any] | None = None  # since when, how much was dropped
        self._client: AsyncClient | None = None

    def open(self) -> None:
        assert self.settings.centrifugo_api_url is not None
        self._client = AsyncClient(
            self.settings.centrifugo_api_url,
            secret(self.settings.centrifugo_api_key) or "",
            timeout=self.settings.centrifugo_timeout_seconds,
            session=aiohttp.ClientSession(json_serialize=serialize),
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    def caught_up(self) -> bool:
        """Nothing waits to be sent, and nothing is on its way."""
        return self.queue.empty() and not (self.gaps or self._gaps_sending or self._sending)

    def offer(self, publication: Publication) -> None:
        """Queue it, or drop it (for Centrifugo only); never blocks."""
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
            if publication.end:
                gap.end = publication.text
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

    async def run(self, pause: Callable[[float], Awaitable[None]]) -> None:
        """Send until cancelled; `pause(seconds)` waits between failed attempts."""
        backoff = 0.0
        size = self.settings.centrifugo_batch_size
        loop = asyncio.get_running_loop()
        last_request = -REQUEST_INTERVAL_SECONDS
        while True:
            if self.queue.empty() and not self._sendable_gaps():
                self._ready.clear()
                await self._ready.wait()
                continue
            wait = last_request + REQUEST_INTERVAL_SECONDS - loop.time()
            if wait > 0 and self.queue.qsize() < size:
                await asyncio.sleep(wait)
            last_request = loop.time()
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
                await pause(backoff)

    def _unqueued(self, deployment_id: int) -> None:
        self._queued[deployment_id] -= 1
        if self._queued[deployment_id] <= 0:
            del self._queued[deployment_id]

    def _sendable_gaps(self) -> list[int]:
        """Deployments whose gap can go: nothing of theirs is left in the queue."""
        return sorted(d for d in self.gaps if not self._queued[d])

    async def _send_with_gaps(self, batch: list[Publication]) -> str | None:
        """`batch`, then the gap messages of `_gaps_sending`, in one request; on a failure
        the batch is dropped and the gaps wait for the next attempt."""
        messages = list(batch)
        for deployment_id, gap in self._gaps_sending.items():
            text = gap_message(self.settings, deployment_id, gap.after)
            messages.append(Publication(deployment_id, text, gap.after))
            if gap.end is not None:
                messages.append(Publication(deployment_id, gap.end, gap.after, end=True))
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
            requests=[(channel_of(self.settings, p.deployment_id), p.text) for p in batch]
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
