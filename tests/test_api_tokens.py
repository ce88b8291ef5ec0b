"""`click-deploy token create|list|revoke`, and the tokens it makes against the API."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import asyncpg
import pytest
from click.testing import CliRunner

from bot.api.tokens import TokenStore
from bot.cli import main


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def stored(database_url: str) -> list[dict[str, object]]:
    async def fetch() -> list[dict[str, object]]:
        connection = await asyncpg.connect(database_url)
        try:
            return [dict(row) for row in await connection.fetch("SELECT * FROM api_tokens")]
        finally:
            await connection.close()

    return asyncio.run(fetch())


def test_create_list_revoke(cli: CliRunner, database_url: str) -> None:
    created = cli.invoke(main, ["token", "create", "--name", "ci", "--scope", "deploy"])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert token.startswith("cdt_") and len(token) > 40
    assert "only time" in created.stderr
    rows = stored(database_url)
    assert len(rows) == 1 and rows[0]["scope"] == "deploy"
    assert bytes(rows[0]["token_hash"]) == hashlib.sha256(token.encode()).digest()  # type: ignore[arg-type]
    assert token not in repr(rows)

    async def verify() -> bool:
        connection_pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
        try:
            return await TokenStore(connection_pool).verify(token) is not None
        finally:
            await connection_pool.close()

    assert asyncio.run(verify())

    listed = cli.invoke(main, ["token", "list"])
    assert listed.exit_code == 0 and "ci" in listed.output and "deploy" in listed.output
    assert token not in listed.output and token[:10] in listed.output
    assert "active" in listed.output

    again = cli.invoke(main, ["token", "create", "--name", "ci"])
    assert again.exit_code == 1 and "already exists" in again.stderr

    revoked = cli.invoke(main, ["token", "revoke", "ci"])
    assert revoked.exit_code == 0, revoked.output
    assert not asyncio.run(verify())
    assert "revoked" in cli.invoke(main, ["token", "list"]).output
    missing = cli.invoke(main, ["token", "revoke", "ci"])
    assert missing.exit_code == 1 and "no active token" in missing.stderr


def test_bad_scope_is_a_usage_error(cli: CliRunner) -> None:
    result = cli.invoke(main, ["token", "create", "--name", "x", "--scope", "root"])
    assert result.exit_code == 2
