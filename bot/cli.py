"""`click-deploy`: the command line for people."""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import json
import sys
from functools import partial
from pathlib import Path
from typing import TypeVar, get_args

import click

from bot import cli_format as fmt
from bot.api.token_cli import token
from bot.cli_examples import add_examples
from bot.cli_run import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    fail,
    run,
    settings_or_exit,
    with_runtime,
)
from bot.cli_service import service, usage_checked
from bot.follow import follow_logs
from bot.local_engine import run_line
from bot.local_services import recorded_services, run_engine, start_local_services
from bot.runtime import (
    Runtime,
    announce,
    apply_migrations,
    check_work_dirs,
    open_runtime,
    resolve_database_url,
)
from bot.serve import bind_http, run_server, run_worker
from pipeline import values
from pipeline.errors import ConfigError
from pipeline.job import load_pipeline
from pipeline.plan.config import PROVIDER_NAMES, BuilderName
from pipeline.queue.queue import CancelOutcome
from pipeline.rollback import enqueue_rollback
from pipeline.states import Status
from pipeline.trigger import Trigger

T = TypeVar("T")

EPILOG = """\b
Configuration comes from environment variables (or a .env file): DATABASE_URL,
WORKER_SLOTS, BUILD_DIR, REGISTRY_URL, ... (see docs/configuration.md). Without
DATABASE_URL an embedded PostgreSQL is started under DATA_DIR.
\b
Exit codes: 0 ok; 1 not found, refused or failed; 2 bad command line;
3 bad configuration; 4 database unreachable.
"""


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="click-deploy")
def main() -> None:
    """click-deploy: a self-hosted deploy bot. A push, a /deploy comment, a Slack command
    or a REST call builds a commit into an image and pushes it to your registry."""


@main.command()
def migrate() -> None:
    """Bring the database schema up to date (also done at every start)."""
    settings = settings_or_exit()

    async def action() -> list[str]:
        return await apply_migrations(resolve_database_url(settings))

    applied = run(action())
    click.echo(f"applied {', '.join(applied)}" if applied else "database is up to date")


@main.command()
@click.option("--slots", type=click.IntRange(1, 64), help="Deployments run at once [WORKER_SLOTS].")
def worker(slots: int | None) -> None:
    """Run deployments from the queue until SIGTERM (then finish or hand back)."""
    settings = settings_or_exit()

    async def main() -> None:
        # Checked before the database, in the order a newcomer would fix them.
        load_pipeline(settings)  # WORKER_PIPELINE, BUILDER and its addresses
        check_work_dirs(settings)
        async with open_runtime(settings, pool_size=settings.database_pool_size) as runtime:
            local = recorded_services(settings, announce)  # what serve started here
            pipeline = load_pipeline(local)
            await run_worker(dataclasses.replace(runtime, settings=local), pipeline, slots)

    run(main())


@main.command()
@click.option("--slots", type=click.IntRange(1, 64), help="Deployments run at once [WORKER_SLOTS].")
def serve(slots: int | None) -> None:
    """Run the workers and the HTTP endpoints (GET /healthz) on HTTP_HOST:HTTP_PORT.

    What is not configured runs on this machine: PostgreSQL without DATABASE_URL, a Docker
    engine without DOCKER_HOST or BUILDKIT_ADDRESS (when none answers at the default
    socket), a registry on 127.0.0.1:LOCAL_REGISTRY_PORT without REGISTRY_URL. It prints
    what it started and where.
    """
    settings = settings_or_exit()

    async def main() -> None:
        load_pipeline(settings)  # WORKER_PIPELINE, BUILDER and its addresses: checked first
        check_work_dirs(settings)
        listener = bind_http(settings)  # HTTP_HOST, HTTP_PORT
        try:
            async with open_runtime(settings, pool_size=settings.database_pool_size) as runtime:
                # After the database, so a wrong setting stops serve before anything starts.
                local = await start_local_services(settings, announce)
                try:
                    pipeline = load_pipeline(local.settings)
                    served = dataclasses.replace(runtime, settings=local.settings)
                    await run_server(served, listener, pipeline, slots)
                finally:
                    await local.stop()
        finally:
            listener.close()

    run(main())


@main.command()
@click.option("--json", "json_output", is_flag=True, help="Print the checks as JSON.")
@click.option(
    "--timeout",
    "patience",
    type=click.FloatRange(0.1, 300),
    default=10.0,
    show_default=True,
    help="Seconds each request of a check may take.",
)
def doctor(json_output: bool, patience: float) -> None:
    """Check every setting and reach every configured dependency: PostgreSQL and its
    migrations, each builder, the registry (push and delete a tiny blob), the GitHub App,
    the GitLab token, the Slack token. One line per check with the fix. Exit 0 when all
    pass, 1 when one fails, 3 when the settings are invalid.
    """
    from bot.doctor import doctor as run_doctor

    try:
        code = run_doctor(click.echo, json_output=json_output, patience=patience)
    except KeyboardInterrupt:
        fail("interrupted", 130)
        return
    sys.exit(code)


# --- deployments ------------------------------------------------------------------------


@main.command()
@click.argument("service_name", metavar="SERVICE")
@click.option("--ref", help="Branch or tag to deploy [the service's branch].")
@click.option("--commit", "commit_sha", help="Exact commit to deploy (its full id).")
@click.option("--env", "environment", default="production", show_default=True)
@click.option(
    "--follow",
    is_flag=True,
    help="Follow it until it ends (a live display on a terminal, plain lines when piped).",
)
def deploy(
    service_name: str, ref: str | None, commit_sha: str | None, environment: str, follow: bool
) -> None:
    """Queue a deployment of SERVICE (name or id). With --follow, a deployment that
    succeeds ends with the `docker run` line that starts its image.
    """
    usage_checked(lambda: values.environment(environment))
    if ref is not None:
        usage_checked(lambda: values.ref(ref))
    if commit_sha is not None:
        commit_sha = usage_checked(partial(values.commit, commit_sha))

    async def action(runtime: Runtime) -> int:
        found = await runtime.store.find_service(service_name)
        trigger = Trigger(
            source="cli",
            actor=getpass.getuser(),
            environment=environment,
            ref=ref or found.branch,
            commit_sha=commit_sha,
            reason="click-deploy deploy",
        )
        deployment = await runtime.queue.enqueue(
            found.id,
            environment=environment,
            ref=trigger.ref,
            commit_sha=commit_sha,
            trigger=trigger.to_json(),
        )
        click.echo(f"queued deployment {deployment.id} of {found.name} ({environment})")
        if follow:
            code = await follow_logs(runtime, deployment.id, click.echo)
            if code == EXIT_OK:
                await show_run_line(runtime, deployment.id)
            return code
        return EXIT_OK

    sys.exit(with_runtime(action))


async def show_run_line(runtime: Runtime, deployment_id: int) -> None:
    """After a deployment succeeded: the `docker run` line that starts its image on the
    engine that built it, and where the app then answers."""
    image = (await runtime.store.get_deployment(deployment_id)).image
    if not image:
        return
    line, url = await run_line(run_engine(runtime.settings), image)
    click.echo("-- start it with:")
    click.echo(line)
    if url:
        click.echo(f"-- then open {url}")


@main.command()
@click.argument("deployment_id", type=int)
def status(deployment_id: int) -> None:
    """Show a deployment."""

    async def action(runtime: Runtime) -> None:
        click.echo(fmt.deployment_details(await runtime.store.get_deployment(deployment_id)))

    with_runtime(action)


@main.command("deployments")
@click.argument("service_name", metavar="SERVICE")
@click.option("--limit", default=20, show_default=True)
@click.option("--status", "state", type=click.Choice([str(s) for s in Status]))
def deployments(service_name: str, limit: int, state: str | None) -> None:
    """List a service's deployments, newest first."""

    async def action(runtime: Runtime) -> None:
        found = await runtime.store.find_service(service_name)
        page = await runtime.store.list_deployments(
            found.id, limit=limit, status=Status(state) if state else None
        )
        click.echo(fmt.deployments_table(page.items))

    with_runtime(action)


@main.command()
@click.argument("deployment_id", type=int)
@click.option(
    "-f",
    "--follow",
    is_flag=True,
    help="Follow it until it ends (a live display on a terminal, plain lines when piped).",
)
def logs(deployment_id: int, follow: bool) -> None:
    """Print a deployment's build log. With --follow the exit code is 0 only if it
    succeeded."""

    async def action(runtime: Runtime) -> int:
        if follow:
            return await follow_logs(runtime, deployment_id, click.echo)
        await runtime.store.get_deployment(deployment_id)
        cursor = 0
        while True:
            page = await runtime.store.read_logs(deployment_id, after=cursor)
            if not page.items:
                return EXIT_OK
            for line in page.items:
                click.echo(fmt.log_line(line))
            cursor = page.next_cursor or cursor

    sys.exit(with_runtime(action))


@main.command()
@click.argument("service_name", metavar="SERVICE")
@click.option("--env", "environment", default="production", show_default=True)
@click.option("--to", "to", type=int, help="Deployment whose image to restore [the previous one].")
@click.option(
    "--follow",
    is_flag=True,
    help="Follow it until it ends (a live display on a terminal, plain lines when piped).",
)
def rollback(service_name: str, environment: str, to: int | None, follow: bool) -> None:
    """Put SERVICE's previous image back (re-tagged in the registry, no rebuild)."""
    usage_checked(lambda: values.environment(environment))

    async def action(runtime: Runtime) -> int:
        found = await runtime.store.find_service(service_name)
        trigger = Trigger(source="cli", actor=getpass.getuser(), reason="click-deploy rollback")
        deployment = await enqueue_rollback(
            runtime.store, runtime.queue, found, environment, trigger=trigger, to=to
        )
        click.echo(
            f"queued deployment {deployment.id}: {found.name} ({environment}) back to "
            f"deployment {deployment.trigger.get('rollback_to')}"
        )
        if follow:
            return await follow_logs(runtime, deployment.id, click.echo)
        return EXIT_OK

    sys.exit(with_runtime(action))


@main.command()
@click.argument("deployment_id", type=int)
def cancel(deployment_id: int) -> None:
    """Cancel a deployment: at once if queued, within a second if running."""

    async def action(runtime: Runtime) -> int:
        result = await runtime.queue.cancel(deployment_id)
        if result.outcome is CancelOutcome.CANCELLED:
            click.echo(f"cancelled deployment {deployment_id}")
        elif result.outcome is CancelOutcome.REQUESTED:
            click.echo(
                f"deployment {deployment_id} is {result.deployment.status}: its worker "
                "was told to stop"
            )
        else:
            click.echo(
                f"deployment {deployment_id} already {result.deployment.status}; nothing to cancel",
                err=True,
            )
            return EXIT_FAILED
        return EXIT_OK

    sys.exit(with_runtime(action))


# --- planning (files only, no database) ---------------------------------------------------


@main.command()
@click.argument("path", default=".", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--root-dir", default=".", show_default=True, help="The service's folder in the repo."
)
@click.option(
    "--provider",
    type=click.Choice(PROVIDER_NAMES),
    help="Skip detection (and the repo's Dockerfile).",
)
@click.option(
    "--builder",
    type=click.Choice(get_args(BuilderName)),
    help="Who plans the build, as the service's build.builder would (default: the app's "
    "click-deploy.toml, else auto: Railpack only when click-deploy finds no runtime).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(
    path: str, root_dir: str, provider: str | None, builder: str | None, as_json: bool
) -> None:
    """Show how the checkout at PATH would be built: the builder (click-deploy's planner or
    Railpack) and why, runtime, version, evidence, commands and the Dockerfile. Runs no
    build and needs no database. Exit 1 when it cannot be planned."""
    from pipeline.plan import BaseImages, format_plan, parse_build_config, plan_app
    from pipeline.railpack.choose import choose
    from pipeline.railpack.summary import summary_lines

    settings = settings_or_exit()
    options: dict[str, str] = {"root_dir": root_dir}
    if provider:
        options["provider"] = provider
    if builder:
        options["builder"] = builder
    try:
        config = parse_build_config(options, source="options")
    except ConfigError as error:
        fail(str(error), EXIT_USAGE)
        return
    checkout, images = Path(path), BaseImages.from_settings(settings)
    chosen = asyncio.run(
        choose(
            checkout,
            config.root_dir,
            config,
            settings,
            partial(plan_app, checkout, config, images),
            cache_namespace=None,
            own="given with --builder",
        )
    )
    result = chosen.result
    who = f"{chosen.builder} ({chosen.reason})"
    if as_json:
        railpack = (
            chosen.railpack.plan.model_dump(mode="json", by_alias=True) if chosen.railpack else None
        )
        data = {"builder": {"name": chosen.builder, "reason": chosen.reason}, "railpack": railpack}
        click.echo(json.dumps({**result.to_dict(), **data}, indent=2))
    elif result.ok:
        details = summary_lines(chosen.railpack) if chosen.railpack else ()
        click.echo(format_plan(result, builder=who, details=details), nl=False)
    if not result.ok:
        if not as_json:
            click.echo(f"builder:    {who}", err=True)
        fail(result.message or "cannot plan", EXIT_FAILED)


main.add_command(service)
main.add_command(token)
add_examples(main)  # last: every command registered above gets its examples

if __name__ == "__main__":  # pragma: no cover
    main()
