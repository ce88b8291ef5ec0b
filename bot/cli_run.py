"""How every click-deploy command runs: its settings, its coroutine, its exit codes. Errors a
person can act on become one line and an exit code, never a traceback."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import click

from bot.runtime import Runtime, open_runtime
from pipeline.errors import ClickDeployError, ConfigError, InvalidValue, TransientError
from pipeline.settings import Settings, load_settings

T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILED = 1  # not found, refused, or the deployment followed did not succeed
EXIT_USAGE = 2  # click's own code for a bad command line
EXIT_CONFIG = 3
EXIT_UNAVAILABLE = 4  # the database cannot be reached


def fail(message: str, code: int) -> None:
    click.echo(f"click-deploy: {message}", err=True)
    sys.exit(code)


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as error:
        fail(str(error), EXIT_CONFIG)
        raise AssertionError("unreachable") from None


def run(work: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; errors a person can act on become one line and an exit
    code, never a traceback."""
    try:
        return asyncio.run(work)
    except ConfigError as error:
        fail(str(error), EXIT_CONFIG)
    except InvalidValue as error:  # a value the store refuses: the command line's
        fail(str(error), EXIT_USAGE)
    except TransientError as error:
        fail(str(error), EXIT_UNAVAILABLE)
    except ClickDeployError as error:
        fail(str(error), EXIT_FAILED)
    except OSError as error:  # PostgreSQL's are TransientErrors by now: shown as it is
        fail(str(error), EXIT_FAILED)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    raise AssertionError("unreachable")


def with_runtime(action: Callable[[Runtime], Awaitable[T]], *, pool_size: int | None = 3) -> T:
    settings = settings_or_exit()

    async def main() -> T:
        async with open_runtime(settings, pool_size=pool_size) as runtime:
            return await action(runtime)

    return run(main())
