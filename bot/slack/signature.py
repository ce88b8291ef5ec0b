"""Slack's request signature, as a pure function: raw headers and body in, nothing out,
`InvalidSignature` when the request is not Slack's (or is a replay)."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

MAX_AGE_SECONDS = 300  # Slack's advice: refuse timestamps more than five minutes off


class InvalidSignature(Exception):
    """Not signed by Slack with our secret, or too old (or too far ahead) to trust."""


def expected_signature(secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode("ascii") + b":" + body
    return "v0=" + hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()


def verify(headers: Mapping[str, str], body: bytes, secret: str, now: float | None = None) -> None:
    """Check `X-Slack-Signature` (HMAC-SHA256 of `v0:timestamp:body`, compared in constant
    time) and that `X-Slack-Request-Timestamp` is within five minutes of `now`."""
    if not secret:
        raise InvalidSignature("no signing secret is configured")
    lowered = {key.lower(): value for key, value in headers.items()}
    timestamp = lowered.get("x-slack-request-timestamp", "")
    signature = lowered.get("x-slack-signature", "")
    if not timestamp or not signature:
        raise InvalidSignature("the request is not signed")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise InvalidSignature("the request timestamp is not a number") from None
    current = time.time() if now is None else now
    if abs(current - sent_at) > MAX_AGE_SECONDS:
        raise InvalidSignature("the request timestamp is more than five minutes off")
    expected = expected_signature(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii", "replace")):
        raise InvalidSignature("the signature does not match")
