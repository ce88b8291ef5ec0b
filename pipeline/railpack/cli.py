"""Running `railpack prepare`: its plan and build info, or its own error as one message.

`railpack prepare DIR --plan-out plan.json --info-out info.json` plans without building.
It prints its result (logs, packages, steps) to stdout; when it cannot plan the app it
exits 1 before writing either file, and its error lines start with "✖" (warnings "⚠").
The process gets the allowlisted environment (pipeline.subprocess_env), writes into a
private directory, is killed at the timeout, and its output is read within a cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.railpack.plan import RailpackError, RailpackInfo, RailpackPlan, parse_info, parse_plan
from pipeline.subprocess_env import minimal_env

OUTPUT_LIMIT = 1024 * 1024  # stdout kept for messages
FILE_LIMIT = 8 * 1024 * 1024  # plan.json / info.json
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass(frozen=True)
class Prepared:
    plan: RailpackPlan
    info: RailpackInfo
    output: str  # what railpack printed, without colours


def find_railpack(configured: str) -> str | None:
    """The railpack executable: `configured` as a path, or looked up on PATH."""
    if "/" in configured:
        path = Path(configured)
        return str(path) if path.is_file() and shutil.which(str(path)) else None
    return shutil.which(configured)


def plain(text: str) -> str:
    return _ANSI.sub("", text).replace("\r", "")


def failure_message(output: str, code: int | None) -> str:
    """Railpack's own words: its error lines (✖ and the lines under them), then the
    warnings that explain them; else the last lines it printed."""
    errors: list[str] = []
    warnings: list[str] = []
    lines = plain(output).splitlines()
    for index, line in enumerate(lines):
        text = line.strip()
        if text.startswith("✖"):
            block = [text.removeprefix("✖").strip()]
            for following in lines[index + 1 :]:
                if not following.startswith("  ") or not following.strip():
                    break
                block.append(following.strip())
            errors.append(" ".join(block))
        elif text.startswith("⚠"):
            warnings.append(text.removeprefix("⚠").strip())
    if errors:
        message = "; ".join(errors)
        if warnings:
            message += f" ({'; '.join(warnings)})"
        return message
    tail = [line.strip() for line in lines if line.strip()][-3:]
    exit_text = f"exited {code}" if code is not None else "was stopped"
    return f"railpack {exit_text}" + (f": {' / '.join(tail)}" if tail else " without output")


def _read_capped(path: Path, what: str) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(FILE_LIMIT + 1)
    except FileNotFoundError:
        raise RailpackError(f"railpack exited 0 but wrote no {what}") from None
    if len(data) > FILE_LIMIT:
        raise RailpackError(f"railpack's {what} is larger than {FILE_LIMIT // 1024**2} MB")
    return data.decode("utf-8", "replace")


async def _drain(stream: asyncio.StreamReader) -> bytes:
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) < OUTPUT_LIMIT:
            kept += chunk[: OUTPUT_LIMIT - len(kept)]
    return bytes(kept)


async def prepare(
    railpack: str,
    app_dir: Path,
    *,
    start: str | None = None,
    build: str | None = None,
    timeout_seconds: float = 120.0,
) -> Prepared:
    """Plan the app in `app_dir` with Railpack. Raises RailpackError with Railpack's own
    message when it cannot."""
    workspace = Path(tempfile.mkdtemp(prefix="click-deploy-railpack-"))
    try:
        plan_out, info_out = workspace / "plan.json", workspace / "info.json"
        args = [
            railpack,
            "prepare",
            str(app_dir),
            "--plan-out",
            str(plan_out),
            "--info-out",
            str(info_out),
            "--error-missing-start",
        ]
        if start is not None:
            args += ["--start-cmd", start]
        if build is not None:
            args += ["--build-cmd", build]
        try:
            process = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=workspace,
                env=minimal_env({"NO_COLOR": "1"}),
                start_new_session=True,
            )
        except OSError as error:
            raise RailpackError(f"railpack ({railpack}) could not be started: {error}") from None
        assert process.stdout is not None
        reading = asyncio.ensure_future(_drain(process.stdout))
        try:
            await asyncio.wait_for(process.wait(), timeout_seconds)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            reading.cancel()
            raise RailpackError(
                f"railpack prepare took longer than {timeout_seconds:g} s "
                "(RAILPACK_TIMEOUT_SECONDS)"
            ) from None
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            reading.cancel()
            raise
        output = plain((await reading).decode("utf-8", "replace"))
        if process.returncode != 0:
            raise RailpackError(
                "railpack could not plan the app: " + failure_message(output, process.returncode)
            )
        plan_text = await asyncio.to_thread(_read_capped, plan_out, "plan")
        info_text = await asyncio.to_thread(_read_capped, info_out, "build info")
        return Prepared(parse_plan(plan_text), parse_info(info_text), output)
    finally:
        await asyncio.to_thread(shutil.rmtree, workspace, True)
