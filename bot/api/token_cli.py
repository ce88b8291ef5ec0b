"""`click-deploy token create|list|revoke`: API tokens, shown once, stored as a hash."""

from __future__ import annotations

import click
from tabulate import tabulate

from bot.api.tokens import Scope, TokenStore
from bot.cli_run import with_runtime
from bot.runtime import Runtime


def _local(moment: object) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment is not None else "-"


@click.group()
def token() -> None:
    """Create, list and revoke REST API tokens."""


@token.command("create")
@click.option("--name", required=True, help="Who or what uses it (unique).")
@click.option(
    "--scope",
    type=click.Choice(["read", "deploy", "admin"]),
    default="read",
    show_default=True,
    help="read < deploy < admin.",
)
def token_create(name: str, scope: str) -> None:
    """Create a token and print it, once: only its hash is kept."""

    async def action(runtime: Runtime) -> str:
        _created, clear = await TokenStore(runtime.pool).create(name, Scope.parse(scope))
        return clear

    clear = with_runtime(action)
    click.echo(clear)
    click.echo(f"token {name!r} ({scope}); this is the only time it is shown", err=True)


@token.command("list")
def token_list() -> None:
    """List tokens (never their values)."""

    async def action(runtime: Runtime) -> None:
        rows = [
            [
                one.name,
                str(one.scope),
                one.token_prefix + "…",
                _local(one.created_at),
                _local(one.last_used_at),
                "revoked " + _local(one.revoked_at) if one.revoked_at else "active",
            ]
            for one in await TokenStore(runtime.pool).list()
        ]
        headers = ["name", "scope", "starts with", "created", "last used", "state"]
        click.echo(tabulate(rows, headers) if rows else "no tokens")

    with_runtime(action)


@token.command("revoke")
@click.argument("name")
def token_revoke(name: str) -> None:
    """Revoke the token called NAME, at once."""

    async def action(runtime: Runtime) -> None:
        await TokenStore(runtime.pool).revoke(name)
        click.echo(f"revoked token {name!r}")

    with_runtime(action)
