"""Installing a Debian package for a service `serve` starts on this machine, as
scripts/infra does: only as root on Debian, without letting the package start its own
daemon (serve starts it with its own configuration)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path

POLICY_RC = Path("/usr/sbin/policy-rc.d")


def can_install() -> bool:
    """Root on a Debian-like system with apt-get: packages can be installed here."""
    return (
        os.geteuid() == 0 and Path("/etc/debian_version").exists() and bool(shutil.which("apt-get"))
    )


class InstallFailed(Exception):
    """apt-get failed; the message ends with the tail of its output."""


async def _apt(*args: str) -> tuple[int, str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    process = await asyncio.create_subprocess_exec(
        "apt-get",
        "-o",
        "DPkg::Lock::Timeout=600",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode("utf-8", "replace")


def _forbid_daemons() -> bool:
    """policy-rc.d exit 101 ("action forbidden"): the package's daemon is not started for
    us. True when this call made the file (and so removes it after)."""
    if POLICY_RC.exists():
        return False
    POLICY_RC.write_text("#!/bin/sh\nexit 101\n")
    POLICY_RC.chmod(0o755)
    return True


def _allow_daemons() -> None:
    with contextlib.suppress(OSError):
        POLICY_RC.unlink()


async def install(package: str) -> None:
    """`apt-get install PACKAGE` (after `apt-get update` when the first try fails)."""
    made_policy = await asyncio.to_thread(_forbid_daemons)
    try:
        code, output = await _apt("install", "-y", "-qq", "--no-install-recommends", package)
        if code != 0:
            await _apt("update", "-qq")
            code, output = await _apt("install", "-y", "-qq", "--no-install-recommends", package)
        if code != 0:
            tail = " / ".join(output.strip().splitlines()[-3:])
            raise InstallFailed(f"apt-get install {package} failed: {tail}")
    finally:
        if made_policy:
            await asyncio.to_thread(_allow_daemons)
