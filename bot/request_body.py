"""Bodies of requests from outside (the forges' webhooks, Slack). Whatever the headers
already refuse is refused before a byte of the body is read: a missing signature, a
content type no sender uses, a Content-Length over the limit. What is read is read in
chunks, each fed to the signature check as it arrives, and reading stops at the limit,
so an unsigned or oversized body costs a bounded amount of memory and time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping

from aiohttp import HttpVersion11, web

CHUNK_BYTES = 64 * 1024
Precheck = Callable[[web.Request], object]  # a web.Response refuses, anything else passes


class BodyRefused(Exception):
    """The request is answered with `status` and `message` (in the front end's shape)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def media_type(headers: Mapping[str, str]) -> str:
    """The Content-Type without its parameters, lower-cased ("" when there is none).
    `headers`: aiohttp's (any case) or a dict with lower-cased names."""
    return headers.get("content-type", "").split(";")[0].strip().lower()


def check_before_reading(
    request: web.Request, limit: int, types: Collection[str], expected: str
) -> None:
    """415 for a Content-Type outside `types` (`expected` names what is), 413 for a
    Content-Length over `limit`: answered before the body is read."""
    if media_type(request.headers) not in types:
        raise BodyRefused(415, f"expected Content-Type {expected}")
    if request.content_length is not None and request.content_length > limit:
        raise BodyRefused(413, f"body larger than {limit} bytes")


async def read_capped(
    request: web.Request, limit: int, feed: Callable[[bytes], object] | None = None
) -> bytes:
    """The body, at most `limit` bytes (413 once it goes past, without reading on); each
    chunk goes to `feed` (an HMAC's update) as it arrives. 400 when it cannot be read (a
    Content-Encoding it is not in, say)."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.content.iter_chunked(CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                raise BodyRefused(413, f"body larger than {limit} bytes")
            if feed is not None:
                feed(chunk)
            chunks.append(chunk)
    except web.RequestPayloadError:
        raise BodyRefused(400, "the body could not be read (its Content-Encoding?)") from None
    return b"".join(chunks)


def unread(response: web.Response) -> web.Response:
    """A refusal sent while the body may be unread: the connection is not kept for another
    request (the sender would have to send the rest first)."""
    response.force_close()
    return response


def answer_expect(precheck: Precheck) -> Callable[[web.Request], Awaitable[web.Response | None]]:
    """An expect handler (aiohttp's `expect_handler`): a sender waiting for `100 Continue`
    before it sends the body gets the refusal instead, when the headers already refuse."""

    async def expect(request: web.Request) -> web.Response | None:
        refused = precheck(request)
        if isinstance(refused, web.Response):
            return unread(refused)
        if request.version == HttpVersion11:
            if request.headers.get("Expect", "").lower() != "100-continue":
                raise web.HTTPExpectationFailed(text="only Expect: 100-continue is known")
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return None

    return expect
