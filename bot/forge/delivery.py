"""Reading a webhook delivery, the pure part (as gidgethub's `Event.from_http`): headers
and bytes in, a verified `Delivery` or a typed `Refusal` out. No aiohttp here; a forge
plugs in only how it authenticates, how it names the event and the delivery, and how its
body carries JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from bot.payload import loads
from bot.request_body import media_type

ID_MAX = 200  # delivery ids are UUIDs; a longer one could not even be indexed


@dataclass(frozen=True)
class Delivery:
    """A verified delivery: its event name, its id and its JSON object."""

    event: str
    delivery_id: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Refusal:
    """Why a delivery is not taken, as the HTTP status and one sentence for the sender."""

    status: int
    message: str


class BodyCheck(Protocol):
    """Authentication that needs the body (an HMAC): fed chunk by chunk while it is read."""

    def update(self, chunk: bytes, /) -> None: ...

    def refusal(self) -> Refusal | None: ...


class ForgeAuth(Protocol):
    """What a forge plugs into reading: its authentication and how it names things."""

    source: str
    media_types: tuple[str, ...]  # the first one is named when another is sent
    id_header: str  # named when the delivery id is not one

    def refuse_headers(self, headers: Mapping[str, str]) -> Refusal | None:
        """What the headers alone refuse (no secret here, none or a wrong one sent)."""

    def body_check(self, headers: Mapping[str, str]) -> BodyCheck:
        """Authentication of the body, after `refuse_headers` passed."""

    def identify(self, headers: Mapping[str, str], body: bytes) -> tuple[str, str] | Refusal:
        """The event's name and the delivery's id, or the refusal naming what is missing."""

    def decode(self, content_type: str, body: bytes) -> Any:
        """The JSON the body carries; ValueError (or RecursionError) when there is none."""


def plain_id(value: str) -> bool:
    """A delivery id we can store and index: printable ASCII, not too long (a UUID)."""
    return len(value) <= ID_MAX and value.isascii() and value.isprintable()


def decode_json(body: bytes) -> Any:
    """A UTF-8 JSON body (the forges send UTF-8)."""
    return loads(body.decode("utf-8"))


def read_delivery(
    forge: ForgeAuth, headers: Mapping[str, str], body: bytes, check: BodyCheck | None = None
) -> Delivery | Refusal:
    """Authenticate, then parse. `headers` with lower-cased names; `check`: the body's
    check when it was fed while reading (else it is fed here)."""
    refused = forge.refuse_headers(headers)
    if refused is not None:
        return refused
    if check is None:
        check = forge.body_check(headers)
        check.update(body)
    refused = check.refusal()
    if refused is not None:
        return refused
    content_type = media_type(headers)
    if content_type not in forge.media_types:
        return Refusal(415, f"expected Content-Type {forge.media_types[0]}")
    named = forge.identify(headers, body)
    if isinstance(named, Refusal):
        return named
    event, delivery_id = named
    if not plain_id(delivery_id):
        return Refusal(400, f"{forge.id_header} is not an id (at most {ID_MAX} ASCII characters)")
    try:
        data = forge.decode(content_type, body)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested too deep
        return Refusal(400, "the body is not valid JSON")
    if not isinstance(data, dict):
        return Refusal(400, "the body is not a JSON object")
    return Delivery(event, delivery_id, data)
