"""The GitHub App created from the manifest at /github/setup: stored in PostgreSQL, its
secrets (private key, webhook secret, OAuth client secret) as one Fernet token made with
SECRETS_KEY, and handed to the one settings object at start-up.

Why the database and not a file under DATA_DIR: every `serve` and `worker` of an install
shares the database, not always a disk; the key stays outside it (the environment), so a
copy of the database alone reveals no secret.

GITHUB_APP_ID in the environment wins: a stored App is then left unused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass

import asyncpg
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from pipeline.db.queries import q
from pipeline.errors import ConfigError
from pipeline.setting_checks import FERNET_KEY_HINT
from pipeline.settings import Settings


@dataclass(frozen=True)
class AppCredentials:
    """What GitHub answers once, when the manifest's code is converted."""

    app_id: int
    slug: str
    name: str
    owner: str  # the account or organization that owns the App
    html_url: str
    client_id: str
    private_key: SecretStr  # PEM
    webhook_secret: SecretStr
    client_secret: SecretStr


def _keys(settings: Settings) -> list[bytes]:
    if settings.secrets_key is None:
        raise ConfigError(
            "SECRETS_KEY is not set: click-deploy keeps the GitHub App's private key "
            f"encrypted with it; {FERNET_KEY_HINT}, set SECRETS_KEY and restart"
        )
    return [key.encode() for key in settings.secrets_key.get_secret_value().split(",")]


def cipher(settings: Settings) -> MultiFernet:
    """Encrypts with the first key of SECRETS_KEY, decrypts with any (ConfigError: unset)."""
    return MultiFernet([Fernet(key) for key in _keys(settings)])


def derived_key(settings: Settings, purpose: str) -> bytes:
    """A key for `purpose` (signing a link, a state) derived from the first SECRETS_KEY, so
    every process of an install agrees on it without one more setting."""
    return hmac.new(_keys(settings)[0], f"click-deploy {purpose}".encode(), hashlib.sha256).digest()


def _secrets_json(app: AppCredentials) -> bytes:
    return json.dumps(
        {
            "private_key": app.private_key.get_secret_value(),
            "webhook_secret": app.webhook_secret.get_secret_value(),
            "client_secret": app.client_secret.get_secret_value(),
        }
    ).encode()


async def store_app(pool: asyncpg.Pool, settings: Settings, app: AppCredentials) -> bool:
    """Keep `app` (its secrets encrypted); False when an App is stored already."""
    token = cipher(settings).encrypt(_secrets_json(app))
    stored = await pool.fetchval(
        q("github_app_insert"),
        app.app_id,
        app.slug,
        app.name,
        app.owner,
        app.html_url,
        app.client_id,
        token,
    )
    return stored is not None


async def app_stored(pool: asyncpg.Pool) -> bool:
    return bool(await pool.fetchval(q("github_app_exists")))


async def stored_app(pool: asyncpg.Pool, settings: Settings) -> AppCredentials | None:
    """The stored App, decrypted; None when there is none. ConfigError when SECRETS_KEY is
    unset or none of its keys is the one the App was stored with."""
    row = await pool.fetchrow(q("github_app_get"))
    if row is None:
        return None
    try:
        secrets = json.loads(cipher(settings).decrypt(bytes(row["secrets"])))
    except InvalidToken:
        raise ConfigError(
            f"SECRETS_KEY: the stored GitHub App ({row['slug']}, id {row['app_id']}) was "
            "encrypted with another key; set SECRETS_KEY to that key (a new one goes first, "
            "comma-separated, to rotate)"
        ) from None
    return AppCredentials(
        app_id=row["app_id"],
        slug=row["slug"],
        name=row["name"],
        owner=row["owner"],
        html_url=row["html_url"],
        client_id=row["client_id"],
        private_key=SecretStr(secrets["private_key"]),
        webhook_secret=SecretStr(secrets["webhook_secret"]),
        client_secret=SecretStr(secrets["client_secret"]),
    )


def adopt(settings: Settings, app: AppCredentials) -> None:
    """Make `app` the GitHub App of this process. The one settings object is changed in
    place, on purpose: the webhook, the API clients, the clone credentials and the
    reporter all read it (a copy would reach only some of them)."""
    settings.github_app_id = str(app.app_id)
    settings.github_private_key = app.private_key
    settings.github_webhook_secret = app.webhook_secret
    settings.github_app_slug = app.slug


async def use_stored_app(settings: Settings, pool: asyncpg.Pool) -> AppCredentials | None:
    """At start-up (serve, worker): the stored App becomes this process's App unless the
    environment names one (GITHUB_APP_ID)."""
    if settings.github_app_id:
        return None
    app = await stored_app(pool, settings) if await app_stored(pool) else None
    if app is not None:
        adopt(settings, app)
    return app
