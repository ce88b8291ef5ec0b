"""`click-deploy service add|update|list|show|remove`. Every value is checked (by
pipeline/values.py and the config model) before the database is opened: a bad one is one
line and exit 2."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from bot import cli_format as fmt
from bot.cli_run import EXIT_USAGE, fail, settings_or_exit, with_runtime
from bot.runtime import Runtime
from pipeline import values
from pipeline.errors import ClickDeployError, InvalidValue
from pipeline.local_repository import local_source, looks_local
from pipeline.release import ReleaseStore, observe
from pipeline.service_config import parse_config
from pipeline.store import NewService

T = TypeVar("T")


def refuse(message: str) -> None:
    """One line on stderr and the exit code of a bad command line."""
    fail(message, EXIT_USAGE)


@click.group()
def service() -> None:
    """Add, change, list, show and remove services."""


def config_option(help_text: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return click.option(
        "--config",
        "config_text",
        metavar="JSON",
        help=help_text
        + " A JSON object, or @FILE to read one (see docs/configuration.md: service config).",
    )


def read_config(text: str | None) -> dict[str, Any] | None:
    """`--config`: JSON text or @FILE, checked as a service config; a bad one ends the
    command with one line (exit 2)."""
    if text is None:
        return None
    where = "--config"
    if text.startswith("@"):
        where = text[1:]
        try:
            text = Path(where).read_text(encoding="utf-8")
        except (OSError, UnicodeError) as error:
            refuse(f"--config: cannot read {where}: {error}")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as error:
        what = "--config" if where == "--config" else f"--config: {where}"
        refuse(f"{what} is not JSON: {error}")
    return usage_checked(lambda: parse_config(data).stored())


def usage_checked(check: Callable[[], T]) -> T:
    """The value `check` answers, or one line and exit 2 when it refuses it."""
    try:
        return check()
    except InvalidValue as error:
        refuse(str(error))
        raise AssertionError("unreachable") from None


REPO_HELP = "owner/name on a forge, a clone URL, or a folder on this machine."


def local_repository(
    name: str, repository: str, branch: str | None, root_dir: str
) -> tuple[str, str, str, str] | None:
    """`--repo PATH` of a folder here (provider git): the repository, branch and root dir
    to store, and what a deploy builds; None when REPOSITORY is no folder."""
    if not looks_local(repository):
        return None
    usage_checked(lambda: values.service_name(name))
    source = usage_checked(lambda: local_source(repository, name, settings_or_exit().data_dir))
    inside = usage_checked(lambda: values.root_dir(root_dir))
    folder = posixpath.normpath(posixpath.join(source.root_dir, inside))
    return source.repository, branch or source.branch, folder, source.note


@service.command("add")
@click.argument("name")
@click.option("--repo", "repository", required=True, help=REPO_HELP)
@click.option(
    "--provider", type=click.Choice(["github", "gitlab", "git"]), default="git", show_default=True
)
@click.option("--branch", help="Pushes here deploy to production [main; a folder's: its branch].")
@click.option(
    "--root-dir", default=".", show_default=True, help="The service's folder in the repo."
)
@config_option("The service's config.")
def service_add(
    name: str,
    repository: str,
    provider: str,
    branch: str | None,
    root_dir: str,
    config_text: str | None,
) -> None:
    """Add a service called NAME (its examples: bot/cli_examples.py)."""
    config = read_config(config_text)
    note = None
    local = provider == "git" and local_repository(name, repository, branch, root_dir)
    if local:
        repository, branch, root_dir, note = local
    new = NewService(
        name, repository, provider, branch or "main", root_dir, config, local=bool(local)
    )
    checked = usage_checked(new.checked)

    async def action(runtime: Runtime) -> None:
        created = await runtime.store.create_service(checked)
        click.echo(f"added service {created.name} (id {created.id})")
        if note:
            click.echo(f"  {note}")

    with_runtime(action)


@service.command("update")
@click.argument("name")
@click.option("--repo", "repository", help=REPO_HELP)
@click.option("--provider", type=click.Choice(["github", "gitlab", "git"]))
@click.option("--branch", help="Pushes here deploy to production.")
@click.option("--root-dir", help="The service's folder in the repo.")
@config_option("Replaces the whole config.")
def service_update(
    name: str,
    repository: str | None,
    provider: str | None,
    branch: str | None,
    root_dir: str | None,
    config_text: str | None,
) -> None:
    """Change a service (by name or id): only the options given."""
    config = read_config(config_text)
    given_branch, given_root = branch, root_dir
    if given_branch is not None:
        usage_checked(lambda: values.branch(given_branch))
    if given_root is not None:
        usage_checked(lambda: values.root_dir(given_root))
    note = None
    local = (
        repository is not None
        and provider in (None, "git")
        and local_repository(name, repository, branch, root_dir or ".")
    )
    if local:
        repository, branch, root_dir, note = local
    elif repository is not None and provider is not None:
        given_provider, given_repository = provider, repository
        usage_checked(lambda: values.repository(given_provider, given_repository))

    async def action(runtime: Runtime) -> None:
        found = await runtime.store.find_service(name)
        updated = await runtime.store.update_service(
            found.id,
            repository=repository,
            provider=provider,
            branch=branch,
            root_dir=root_dir,
            config=config,
            local=bool(local),
        )
        click.echo(f"updated service {updated.name} (id {updated.id})")
        if note:
            click.echo(f"  {note}")

    with_runtime(action)


@service.command("list")
def service_list() -> None:
    """List the services."""

    async def action(runtime: Runtime) -> None:
        click.echo(fmt.services_table(await runtime.store.list_services()))

    with_runtime(action)


@service.command("show")
@click.argument("name")
@click.option("--limit", default=10, show_default=True, help="Recent deployments to list.")
def service_show(name: str, limit: int) -> None:
    """Show a service (by name or id) and its recent deployments."""

    async def action(runtime: Runtime) -> None:
        found = await runtime.store.find_service(name)
        click.echo(fmt.service_details(found))
        click.echo()
        click.echo(
            fmt.releases_table(
                await observe(await ReleaseStore(runtime.store.pool).live_for_service(found.id))
            )
        )
        page = await runtime.store.list_deployments(found.id, limit=limit)
        click.echo()
        click.echo(fmt.deployments_table(page.items))

    with_runtime(action)


@service.command("remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def service_remove(name: str, yes: bool) -> None:
    """Remove a service and its deployment history."""

    async def action(runtime: Runtime) -> None:
        found = await runtime.store.find_service(name)
        if not yes and not click.confirm(
            f"Remove service {found.name} and all its deployments?", default=False
        ):
            raise ClickDeployError("nothing removed")
        await runtime.store.delete_service(found.id)
        click.echo(f"removed service {found.name}")

    with_runtime(action)
