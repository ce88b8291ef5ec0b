"""Signed page links: deployment ids are sequential, so a link carries an HMAC of what it
opens, made with PAGE_SECRET (or a random key kept in DATA_DIR when that is unset).

A key shorter than MIN_KEY_BYTES never signs: a configured one is a configuration error
(`check` at start-up), a stored one is replaced by a fresh key."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import os
import secrets
from functools import cache
from pathlib import Path

from bot.configured import secret
from pipeline.errors import ConfigError
from pipeline.settings import Settings

SIGNATURE_PARAM = "s"
MIN_KEY_BYTES = 32
KEY_FILE = "page-secret"


def _stored(path: Path) -> bytes | None:
    with contextlib.suppress(FileNotFoundError):
        key = path.read_bytes().strip()
        if len(key) >= MIN_KEY_BYTES:
            return key
    return None


@cache
def _file_key(path: Path) -> bytes:
    """The key in `path`, made (0600) on first use, or again when the file holds too short
    a key; processes sharing DATA_DIR agree (the lock serialises the making)."""
    key = _stored(path)
    if key is not None:
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = os.open(path.with_name(f".{path.name}.lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        key = _stored(path)  # another process may have made it meanwhile
        if key is not None:
            return key
        fresh = secrets.token_hex(32).encode()
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(fresh)
        os.replace(temporary, path)  # replaces an empty or short file too
        return fresh
    finally:
        os.close(lock)


def signing_key(settings: Settings) -> bytes:
    configured = secret(settings.page_secret)
    if configured is not None:
        key = configured.encode()
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(
                f"PAGE_SECRET: must be at least {MIN_KEY_BYTES} bytes (it has {len(key)}); "
                "unset it to use a random key kept in DATA_DIR"
            )
        return key
    return _file_key(settings.data_dir / KEY_FILE)


def check(settings: Settings) -> None:
    """At start-up: the key that will sign links is usable (ConfigError naming the setting
    otherwise), so a bad one stops the server rather than every page."""
    if secret(settings.page_secret) is not None or settings.pages_access == "link":
        try:
            signing_key(settings)
        except OSError as error:
            where = settings.data_dir / KEY_FILE
            raise ConfigError(
                f"DATA_DIR: cannot keep the page signing key in {where}: {error.strerror}"
            ) from None


def sign(settings: Settings, kind: str, object_id: int) -> str:
    digest = hmac.new(signing_key(settings), f"{kind}:{object_id}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()[:18]).decode()


def verify(settings: Settings, kind: str, object_id: int, signature: str | None) -> bool:
    if not signature:
        return False
    # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError).
    given = signature.encode("utf-8", "surrogateescape")
    return hmac.compare_digest(sign(settings, kind, object_id).encode(), given)


def signed_path(settings: Settings, kind: str, object_id: int) -> str:
    """`/deployments/7?s=…` (or without the signature when pages need a token)."""
    path = f"/{kind}s/{object_id}"
    if settings.pages_access == "link":
        path += f"?{SIGNATURE_PARAM}={sign(settings, kind, object_id)}"
    return path
