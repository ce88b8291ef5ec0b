"""Finding the database: DATABASE_URL, or an embedded PostgreSQL (pgserver) under DATA_DIR."""

from __future__ import annotations

import json
import subprocess
import warnings
from collections.abc import Callable
from typing import Any

import asyncpg
import structlog

from pipeline.errors import ClickDeployError, ConfigError, TransientError
from pipeline.settings import Settings

log = structlog.get_logger(__name__)

# Keep the embedded server object alive for the life of the process; pgserver stops the
# server when the last process using it lets go.
_embedded: dict[str, Any] = {}


def embedded_database_url(settings: Settings) -> str:
    """Start (or join) the embedded PostgreSQL under DATA_DIR and return its URL."""
    data_dir = settings.data_dir / "postgres"
    key = str(data_dir)
    if key not in _embedded:
        with warnings.catch_warnings():
            # pgserver's platformdirs warns about XDG_RUNTIME_DIR on servers; not ours to fix.
            warnings.simplefilter("ignore")
            import pgserver  # imported lazily: production sets DATABASE_URL

        data_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            _embedded[key] = pgserver.get_server(  # type: ignore[attr-defined]
                data_dir, cleanup_mode="stop"
            )
        except (OSError, subprocess.SubprocessError) as error:
            # As root, pgserver runs PostgreSQL as another user, who must be able to reach
            # DATA_DIR; its own error is pages of initdb output.
            raise ConfigError(
                f"DATA_DIR: the embedded PostgreSQL cannot start in {data_dir} "
                f"({type(error).__name__}; set DATABASE_URL, or a DATA_DIR every user can "
                "reach)"
            ) from None
    return str(_embedded[key].get_uri())


def database_url(settings: Settings, announce: Callable[[str], None] | None = None) -> str:
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    if announce is not None:
        announce(
            f"DATABASE_URL is not set: using the embedded PostgreSQL in "
            f"{settings.data_dir / 'postgres'} (set DATABASE_URL in production)"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return embedded_database_url(settings)


# SQLSTATE classes of a refusal that may pass by itself: connection exception, insufficient
# resources (too many connections), operator intervention (starting up, shutting down).
_TRANSIENT_CLASSES = ("08", "53", "57")


# What asyncpg raises when a connection cannot be made: the network, the server's refusal,
# or its own refusal of the URL (a parameter value it does not know, a port out of range).
CONNECT_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    ValueError,
    OverflowError,
)


def connect_error(error: BaseException) -> ClickDeployError:
    """What a failed connection attempt means, as one line: PostgreSQL is away (transient),
    or DATABASE_URL is wrong (the server refused its role, database, password or a
    parameter, or asyncpg refused the URL: their messages name the parameter, never the
    password)."""
    if isinstance(error, OSError | TimeoutError):
        if "SSL" in str(error):  # sslmode=require against a server without SSL
            return ConfigError(f"DATABASE_URL: {error} (check sslmode)")
        return TransientError(f"cannot reach PostgreSQL at DATABASE_URL: {error}")
    if isinstance(error, asyncpg.PostgresError):
        sqlstate = str(getattr(error, "sqlstate", "") or "")
        if sqlstate[:2] in _TRANSIENT_CLASSES:
            return TransientError(f"cannot reach PostgreSQL at DATABASE_URL: {error}")
        if isinstance(error, asyncpg.InvalidPasswordError):
            return ConfigError("DATABASE_URL: PostgreSQL refused the user or password")
        return ConfigError(f"DATABASE_URL: PostgreSQL refused the connection: {error}")
    return ConfigError(f"DATABASE_URL: {error}")


async def _init_connection(connection: asyncpg.Connection) -> None:
    # jsonb in and out as Python values.
    await connection.set_type_codec(
        "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
    )


async def connect(url: str) -> asyncpg.Connection:
    """One plain connection (used for LISTEN and migrations)."""
    try:
        connection = await asyncpg.connect(url, timeout=10)
    except CONNECT_ERRORS as error:
        raise connect_error(error) from None
    await _init_connection(connection)
    return connection


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """Pool connections hold no session state (LISTEN has its own connection, advisory
    locks are per transaction), so asyncpg's reset query on every release is skipped. An
    open transaction is still rolled back by asyncpg itself."""


async def create_pool(url: str, size: int = 10) -> asyncpg.Pool:
    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=1,
            max_size=size,
            init=_init_connection,
            reset=_keep_session,
            timeout=10,
        )
    except CONNECT_ERRORS as error:
        raise connect_error(error) from None
    assert pool is not None
    return pool
