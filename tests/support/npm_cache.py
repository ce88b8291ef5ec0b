"""GitHub's published descriptions from npm, fetched once into a cache directory with
`npm pack` (pinned versions) and reused. Never committed. A failed fetch fails the test,
on any machine (npm comes from `scripts/infra up`)."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.support.infra import ensure_tool

CACHE = Path(os.environ.get("CD_NPM_CACHE", "/var/cache/cd-npm"))
OPENAPI = ("@octokit/openapi", "23.0.2", "package/generated/api.github.com.json")
WEBHOOK_EXAMPLES = ("@octokit/webhooks-examples", "7.6.1", "package/api.github.com/index.json")


def _unavailable(message: str) -> None:
    # Never a skip (tests/support/infra.py's rule): a green run must have run these tests.
    pytest.fail(f"{message} (scripts/infra up installs npm)", pytrace=False)


def npm_file(package: str, version: str, member: str) -> Path:
    """The file `member` of the package's tarball, extracted under CACHE."""
    slug = package.lstrip("@").replace("/", "-")
    target = CACHE / f"{slug}-{version}" / member
    if target.exists():
        return target
    tarball = CACHE / f"{slug}-{version}.tgz"
    try:
        CACHE.mkdir(parents=True, exist_ok=True)
        if not tarball.exists():
            npm = ensure_tool("npm", "npm")
            subprocess.run(
                [npm, "pack", f"{package}@{version}", "--silent"],
                cwd=CACHE,
                check=True,
                capture_output=True,
                timeout=300,
            )
        # The member's bytes, written where we choose: no path from the archive is used, and
        # no `filter=` (Python 3.11 before 3.11.4, Debian 12's 3.11.2 among them, lacks it).
        with tarfile.open(tarball) as archive:
            source = archive.extractfile(member)
            if source is None:
                raise KeyError(f"{member} is not a regular file in {tarball.name}")
            data = source.read()
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        partial.write_bytes(data)
        partial.replace(target)  # concurrent sessions see the whole file or none
    except (OSError, subprocess.SubprocessError, tarfile.TarError, KeyError) as error:
        _unavailable(f"cannot fetch {package}@{version} from npm: {error}")
    return target
