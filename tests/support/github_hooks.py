"""Helpers for GitHub webhook tests: the real example payloads, signed deliveries, an
aiohttp app with only the GitHub feature, and an App private key."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import uuid
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

SECRET = "test-webhook-secret"


@cache
def private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@cache
def _examples(path: str) -> dict[str, list[dict[str, Any]]]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return {item["name"]: item["examples"] for item in data}


def example(path: Path, event: str, index: int = 0, **changes: Any) -> dict[str, Any]:
    """A deep copy of GitHub's example `index` of `event`, with top-level changes."""
    payload = copy.deepcopy(_examples(str(path))[event][index])
    payload.update(changes)
    return payload


def signed(
    event: str, payload: Any, *, delivery: str | None = None, secret: str = SECRET
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": f"sha256={signature}",
    }
