"""The environment every subprocess the bot starts gets: an allowlist, never the bot's own.

The bot's environment holds its secrets (REGISTRY_PASSWORD, webhook secrets, the GitHub App
key, DATABASE_URL...). A child process (git, buildctl) gets only what it needs to run: a
PATH, a locale, the CA bundle and proxy settings the operator gave the bot, and a HOME of
its own that is empty, so no user configuration (~/.gitconfig, ~/.docker/config.json,
~/.netrc) of the machine reaches it either. Callers add what their tool needs in `extra`.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from collections.abc import Mapping

# Passed through when set: where programs are, how text is encoded, which CA bundle to
# trust and which proxy to use (all of them settings the operator made for the bot).
PASSED_THROUGH: tuple[str, ...] = (
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
)


@functools.cache
def private_home() -> str:
    """An empty directory only this process can read, removed when the process ends."""
    home = tempfile.mkdtemp(prefix="click-deploy-home-")
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    return home


def minimal_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a subprocess: the allowlisted variables of this process, HOME
    set to an empty private directory, then `extra` (which may override HOME)."""
    env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    env.setdefault("PATH", os.defpath)
    env["HOME"] = private_home()
    env.update(extra or {})
    return env
