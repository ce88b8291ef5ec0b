"""Signed page links: deployment ids are sequential, so a link carries an HMAC of what it
opens, made with PAGE_SECRET (or a random key kept in DATA_DIR when that is unset)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
from functools import cache
from pathlib import Path

from pipeline.settings import Settings

SIGNATURE_PARAM = "s"


@cache
def _file_key(path: Path) -> bytes:
    """The key in `path`, created (0600) on first use; processes sharing DATA_DIR agree."""
    with contextlib.suppress(FileNotFoundError):
        key = path.read_bytes().strip()
        if len(key) >= 32:
            return key
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = secrets.token_hex(32).encode()
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(fresh)
    try:
        os.link(temporary, path)  # fails if another process made it first: use theirs
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return path.read_bytes().strip()


def signing_key(settings: Settings) -> bytes:
    if settings.page_secret is not None:
        return settings.page_secret.get_secret_value().encode()
    return _file_key(settings.data_dir / "page-secret")


def sign(settings: Settings, kind: str, object_id: int) -> str:
    digest = hmac.new(signing_key(settings), f"{kind}:{object_id}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()[:18]).decode()


def verify(settings: Settings, kind: str, object_id: int, signature: str | None) -> bool:
    if not signature:
        return False
    return hmac.compare_digest(sign(settings, kind, object_id), signature)


def signed_path(settings: Settings, kind: str, object_id: int) -> str:
    """`/deployments/7?s=…` (or without the signature when pages need a token)."""
    path = f"/{kind}s/{object_id}"
    if settings.pages_access == "link":
        path += f"?{SIGNATURE_PARAM}={sign(settings, kind, object_id)}"
    return path
