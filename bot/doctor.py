"""`click-deploy doctor`: every setting checked and every configured dependency reached,
one line per check with what to do about a failure.

The checks are `bot.ops.checks` and `bot.ops.forge_checks` (the ones `/readyz` uses too),
all run at once. Exit 0 when nothing failed (warnings and "not configured" lines are no
failures), 1 when something did, 3 when the settings themselves are invalid (nothing else
can be checked then). Every line goes through the log redactor: no secret value is shown.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from bot.centrifugo.check import check_centrifugo
from bot.logs import configure_logging
from bot.ops.checks import (
    CheckResult,
    Level,
    check_builders,
    check_database_url,
    check_registry,
    check_settings,
    failed,
    fault,
    gather_checks,
)
from bot.ops.forge_checks import check_github, check_gitlab, check_slack
from bot.ops.redact import RedactSecrets
from bot.ops.release_checks import check_release_targets_at
from pipeline.db.connect import embedded_database_url
from pipeline.errors import ClickDeployError
from pipeline.settings import Settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 3

DEFAULT_PATIENCE = 10.0

SYMBOLS = {Level.PASS: "✓", Level.WARN: "!", Level.FAIL: "✗", Level.UNCONFIGURED: "-"}
ASCII_SYMBOLS = {Level.PASS: "ok", Level.WARN: "!!", Level.FAIL: "XX", Level.UNCONFIGURED: "--"}


async def check_configured_database(settings: Settings, patience: float) -> list[CheckResult]:
    """DATABASE_URL, or the embedded PostgreSQL under DATA_DIR that `serve` would start.

    Migrations not yet applied are a warning here, not a failure: `serve` and `worker`
    apply them when they start (for a process already running, /readyz fails on them)."""
    if settings.database_url is not None:
        results = await check_database_url(settings.database_url.get_secret_value(), patience)
    else:
        fix = "set DATABASE_URL, or a DATA_DIR every user can reach"
        try:
            url = await asyncio.to_thread(embedded_database_url, settings)
        except ClickDeployError as error:
            detail = str(error)
        except Exception as error:  # pgserver's own faults: an answer of the check too
            detail = f"the embedded PostgreSQL cannot start: {fault(error, patience)}"
        else:
            detail = ""
        if detail:
            return [
                failed("database", detail, fix),
                failed("migrations", "unknown: the database is unreachable", fix),
            ]
        where = f"embedded PostgreSQL in {settings.data_dir / 'postgres'}"
        results = await check_database_url(url, patience, label=where)
    if not results[0].ok:
        return results
    return [
        CheckResult(
            result.name,
            Level.WARN,
            result.detail.removesuffix(": run click-deploy migrate"),
            "run click-deploy migrate (serve and worker apply them when they start)",
        )
        if result.name == "migrations" and result.level is Level.FAIL
        else result
        for result in results
    ]


async def guarded(
    name: str, check: Awaitable[CheckResult | list[CheckResult]], patience: float
) -> CheckResult | list[CheckResult]:
    """A check that raised after all (they are written not to) is its own failed line, so
    the others are still shown and nothing prints a traceback."""
    try:
        return await check
    except Exception as error:
        return failed(name, f"the check itself failed: {fault(error, patience)}", "try again")


async def run_checks(settings: Settings, patience: float) -> list[CheckResult]:
    """Every check after the settings, at once, in the order a newcomer would fix them;
    then the release targets of the services in the database, when it answers."""
    results = await gather_checks(
        guarded("database", check_configured_database(settings, patience), patience),
        guarded("builder", check_builders(settings, patience), patience),
        guarded("registry", check_registry(settings, patience), patience),
        guarded("github", check_github(settings, patience), patience),
        guarded("gitlab", check_gitlab(settings, patience), patience),
        guarded("slack", check_slack(settings, patience), patience),
        guarded("centrifugo", check_centrifugo(settings, patience), patience),
    )
    database = next((result for result in results if result.name == "database"), None)
    if database is not None and database.ok:
        try:
            url = (
                settings.database_url.get_secret_value()
                if settings.database_url is not None
                else await asyncio.to_thread(embedded_database_url, settings)
            )
        except Exception:
            return results
        results += await check_release_targets_at(settings, url, patience)
    return results


def _unicode_output() -> bool:
    """Whether stdout can show ✓ and ✗ (not with PYTHONIOENCODING=ascii, say)."""
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "".join(SYMBOLS.values()).encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _shown(text: str) -> str:
    """The text as stdout can show it: what its encoding lacks becomes "?"."""
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        return text.encode(encoding, "replace").decode(encoding)
    except LookupError:
        return text.encode("ascii", "replace").decode("ascii")


def format_lines(results: list[CheckResult]) -> list[str]:
    """One line per check (a second one with the fix), then a summary line."""
    symbols = SYMBOLS if _unicode_output() else ASCII_SYMBOLS
    width = max(len(result.name) for result in results) + 2
    lines = []
    for result in results:
        if result.level is Level.UNCONFIGURED:  # not a problem: the fix is how to use it
            detail = f"not configured ({result.fix})" if result.fix else "not configured"
            lines.append(f"{symbols[result.level]} {result.name:<{width}}{detail}")
            continue
        lines.append(f"{symbols[result.level]} {result.name:<{width}}{result.detail}")
        if result.fix:
            lines.append(f"  {'':<{width}}fix: {result.fix}")
    failing = [result for result in results if result.level is Level.FAIL]
    warned = [result for result in results if result.level is Level.WARN]
    if failing:
        lines.append(f"{len(failing)} of {len(results)} checks failed")
    else:
        lines.append(
            f"all {len(results)} checks passed" + (f" ({len(warned)} warned)" if warned else "")
        )
    return lines


def as_json(results: list[CheckResult], *, unicode: bool = True) -> str:
    document: dict[str, Any] = {
        "ok": all(result.ok for result in results),
        "checks": [
            {
                "name": result.name,
                "status": str(result.level),
                "ok": result.ok,
                "detail": result.detail,
                "fix": result.fix,
            }
            for result in results
        ],
    }
    return json.dumps(document, indent=2, ensure_ascii=not unicode)


def doctor(echo: Callable[[str], None], *, json_output: bool, patience: float) -> int:
    """Run every check and print them; the exit code."""
    first, settings = check_settings()
    if settings is None:
        results = [first]
    else:
        configure_logging(settings)  # any log line goes to stderr, redacted
        results = [first, *asyncio.run(run_checks(settings, patience))]
        redact = RedactSecrets.from_settings(settings)
        results = [
            CheckResult(r.name, r.level, redact.text(r.detail), redact.text(r.fix)) for r in results
        ]
    if json_output:
        echo(as_json(results, unicode=_unicode_output()))
    else:
        for line in format_lines(results):
            echo(_shown(line))
    if settings is None:
        return EXIT_CONFIG
    return EXIT_OK if all(result.ok for result in results) else EXIT_FAILED
