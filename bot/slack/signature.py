"""Slack's request signature, as pure functions: raw headers and body in, nothing out,
`InvalidSignature` when the request is not Slack's (or is a replay).

`check_headers` needs only the headers, so an unsigned or stale request is refused before
its body is read; `new_mac` is then fed the body chunk by chunk as it arrives."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

MAX_AGE_SECONDS = 300  # Slack's advice: refuse timestamps more than five minutes off


class InvalidSignature(Exception):
    """Not signed by Slack with our secret, or too old (or too far ahead) to trust."""


def expected_signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = new_mac(secret, timestamp)
    mac.update(body)
    return "v0=" + mac.hexdigest()


def new_mac(secret: str, timestamp: str) -> hmac.HMAC:
    """HMAC-SHA256 of `v0:timestamp:` so far: update it with the body."""
    mac = hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha256)
    mac.update(b"v0:" + timestamp.encode("ascii") + b":")
    return mac


def check_headers(
    headers: Mapping[str, str], secret: str, now: float | None = None
) -> tuple[str, str]:
    """`X-Slack-Request-Timestamp` (within five minutes of `now`) and `X-Slack-Signature`,
    before the body is read."""
    if not secret:
        raise InvalidSignature("no signing secret is configured")
    lowered = {key.lower(): value for key, value in headers.items()}
    timestamp = lowered.get("x-slack-request-timestamp", "")
    signature = lowered.get("x-slack-signature", "")
    if not timestamp or not signature:
        raise InvalidSignature("the request is not signed")
    try:
        if not timestamp.isascii():  # int() reads other scripts' digits too
            raise ValueError(timestamp)
        sent_at = int(timestamp)
    except ValueError:
        raise InvalidSignature("the request timestamp is not a number") from None
    current = time.time() if now is None else now
    if abs(current - sent_at) > MAX_AGE_SECONDS:
        raise InvalidSignature("the request timestamp is more than five minutes off")
    return timestamp, signature


def check_mac(mac: hmac.HMAC, signature: str) -> None:
    """The body's HMAC against `X-Slack-Signature`, in constant time."""
    expected = "v0=" + mac.hexdigest()
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii", "replace")):
        raise InvalidSignature("the signature does not match")


def verify(headers: Mapping[str, str], body: bytes, secret: str, now: float | None = None) -> None:
    """Check `X-Slack-Signature` (HMAC-SHA256 of `v0:timestamp:body`, compared in constant
    time) and that `X-Slack-Request-Timestamp` is within five minutes of `now`."""
    timestamp, signature = check_headers(headers, secret, now)
    mac = new_mac(secret, timestamp)
    mac.update(body)
    check_mac(mac, signature)
