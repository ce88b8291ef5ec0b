"""API tokens: created once and shown once; only their SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum

import asyncpg

from pipeline.db.queries import q
from pipeline.errors import Conflict, NotFound

TOKEN_PREFIX = "cdt_"
TOUCH_SECONDS = 60.0  # last_used_at is written at most this often per token


class Scope(IntEnum):
    """read < deploy < admin: a token may do what its scope and every lower one allow."""

    READ = 1
    DEPLOY = 2
    ADMIN = 3

    @classmethod
    def parse(cls, name: str) -> Scope:
        try:
            return cls[name.upper()]
        except KeyError:
            raise Conflict(f"scope {name!r} is unknown; use read, deploy or admin") from None

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class ApiToken:
    id: int
    name: str
    scope: Scope
    token_prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ApiToken:
        return cls(
            id=row["id"],
            name=row["name"],
            scope=Scope.parse(row["scope"]),
            token_prefix=row["token_prefix"],
            created_at=row["created_at"],
            last_used_at=row["last_used_at"],
            revoked_at=row["revoked_at"],
        )


def hash_token(token: str) -> bytes:
    """Tokens carry 256 random bits, so a plain SHA-256 cannot be brute-forced."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class TokenStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._touched: dict[int, float] = {}

    async def create(self, name: str, scope: Scope) -> tuple[ApiToken, str]:
        """A new token; the clear text is returned here and never again."""
        name = name.strip()
        if not name or len(name) > 100:
            raise Conflict("a token name must be 1-100 characters")
        token = new_token()
        try:
            row = await self.pool.fetchrow(
                q("api_token_insert"),
                name,
                str(scope),
                hash_token(token),
                token[: len(TOKEN_PREFIX) + 6],
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(f"a token named {name!r} already exists") from None
        assert row is not None
        return ApiToken.from_row(row), token

    async def list(self) -> list[ApiToken]:
        return [ApiToken.from_row(row) for row in await self.pool.fetch(q("api_tokens_list"))]

    async def revoke(self, name: str) -> None:
        if await self.pool.fetchval(q("api_token_revoke"), name) is None:
            raise NotFound(f"there is no active token named {name!r}")

    async def verify(self, token: str) -> ApiToken | None:
        """The token's record if it is valid and not revoked; notes when it was used."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        row = await self.pool.fetchrow(q("api_token_by_hash"), hash_token(token))
        if row is None:
            return None
        found = ApiToken.from_row(row)
        now = time.monotonic()
        if now - self._touched.get(found.id, -TOUCH_SECONDS) >= TOUCH_SECONDS:
            self._touched[found.id] = now
            await self.pool.execute(q("api_token_touch"), found.id)
        return found
