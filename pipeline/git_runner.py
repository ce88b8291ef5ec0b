"""Running git for one clone: the environment, the configuration, the credentials, the
size limit and cancellation of every git process, and what git's errors mean to a person.

Every git command runs as an asyncio subprocess: a fetch must be killable (on a cancel or a
timeout the git process is stopped at once), and every git process gets the minimal
environment (`pipeline.subprocess_env`), never the bot's own, with no user or system git
configuration, no hooks, and no protocol that runs commands or reads the bot host's files
for a submodule.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import DeploymentFailure, TransientError
from pipeline.git_askpass import Askpass, GitAuth
from pipeline.subprocess_env import minimal_env

# Given to every git command, after any configuration file: no credential helper, no hooks,
# no extra headers, no fsmonitor command; only network protocols, except that a local path
# or ssh works for the service's own URL (the operator wrote it) and never for a submodule
# (submodule fetches run with GIT_PROTOCOL_FROM_USER=0); `ext::` never.
_GIT_CONFIG = (
    "credential.helper=",
    "core.askPass=",
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "http.extraHeader=",
    "protocol.allow=never",
    "protocol.https.allow=always",
    "protocol.http.allow=always",
    "protocol.git.allow=always",
    "protocol.file.allow=user",
    "protocol.ssh.allow=user",
    "protocol.ext.allow=never",
    "submodule.recurse=false",
    "fetch.recurseSubmodules=false",
    "advice.detachedHead=false",
)
# Not read: the system's /etc/gitconfig, the user's ~/.gitconfig (HOME is empty anyway).
_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "LC_ALL": "C",  # git's messages in English: classify_git_error reads them
}

# Phrases in git's stderr, mapped to what a person should do about them.
_AUTH_FAILURES = (
    "authentication failed",
    "could not read username",
    "could not read password",
    "http basic: access denied",
    "the requested url returned error: 401",
    "the requested url returned error: 403",
    "permission denied",
)
_NOT_FOUND = ("repository not found", "does not appear to be a git repository", "not found")
_NETWORK = (
    "could not resolve host",
    "connection refused",
    "connection timed out",
    "failed to connect",
    "unable to connect",
    "operation timed out",
    "the remote end hung up unexpectedly",
    "early eof",
    "the requested url returned error: 5",
    "tls",
)
_NO_SUCH_COMMIT = (
    "not our ref",
    "couldn't find remote ref",
    "unadvertised object",
    "no such remote ref",
    "reference is not a tree",
    "unable to read tree",
)


@dataclass(frozen=True)
class CloneRequest:
    url: str
    commit: str | None = None  # exact commit; None: the tip of `ref`
    ref: str | None = None  # branch or tag that holds the commit
    auth: GitAuth | None = None
    submodules: bool = False
    timeout_seconds: float = 300.0
    max_bytes: int = 2 * 1024**3


class CloneFailed(DeploymentFailure):
    """The repository, the credentials or the commit are wrong: retrying will not help."""


class CloneAccessDenied(CloneFailed):
    """The server refused the credentials, or the bot withheld them from a server."""


class CloneUnavailable(TransientError):
    """The git server could not be reached; retried."""


def _redact(text: str, auth: GitAuth | None) -> str:
    if auth is not None:
        secret = auth.password.get_secret_value()
        if secret:
            text = text.replace(secret, "***")
    # Any credentials someone put into a URL anyway.
    return re.sub(r"(\w+://)[^/@\s]+@", r"\1***@", text)


def display_url(url: str) -> str:
    return _redact(url, None)


def classify_git_error(stderr: str, request: CloneRequest, action: str) -> Exception:
    """Turn git's stderr into an error a person can act on (pure; tested as a table)."""
    text = stderr.lower()
    where = display_url(request.url)
    detail = _redact(stderr.strip().splitlines()[-1] if stderr.strip() else "", request.auth)
    if any(phrase in text for phrase in _AUTH_FAILURES):
        who = f" as {request.auth.username}" if request.auth else " without credentials"
        return CloneAccessDenied(
            f"cannot {action} {where}: the server refused access{who}; check the token or "
            "the service's repository permissions"
        )
    if any(phrase in text for phrase in _NO_SUCH_COMMIT):
        wanted = request.commit or request.ref or "the default branch"
        return CloneFailed(f"cannot {action} {where}: {wanted} does not exist there ({detail})")
    if any(phrase in text for phrase in _NETWORK):
        return CloneUnavailable(f"cannot reach {where} to {action}: {detail}")
    if any(phrase in text for phrase in _NOT_FOUND):
        return CloneFailed(f"cannot {action} {where}: no such repository ({detail})")
    return CloneFailed(f"cannot {action} {where}: {detail or 'git failed'}")


_BLOCK = 4096


def disk_footprint(size: int) -> int:
    """What a file of SIZE bytes takes on disk: whole blocks, and one even when empty
    (a million empty files fill a disk's inodes as surely as big files fill its blocks)."""
    return max(_BLOCK, -(-size // _BLOCK) * _BLOCK)


def directory_size(path: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += disk_footprint(os.lstat(os.path.join(folder, name)).st_size)
    return total


def megabytes(size: int) -> str:
    """Rounded up to a tenth, so a size over the limit never reads as the limit."""
    return f"{math.ceil(size * 10 / 1024**2) / 10:g}"


class GitRunner:
    """Runs git for one clone: minimal environment, the clone's askpass, its size limit
    (over the whole build directory, ROOT) and cancellation."""

    def __init__(self, request: CloneRequest, root: Path, askpass: Askpass) -> None:
        self.request = request
        self.root = root
        self.askpass = askpass
        self.too_big = False

    def env(self, *, network: bool, submodule: bool) -> dict[str, str]:
        extra: dict[str, str] = dict(_GIT_ENV)
        if network:
            extra.update(self.askpass.env(self.request.auth))
        if submodule:
            # git's own rule for URLs a repository chose: no local paths, no ssh.
            extra["GIT_PROTOCOL_FROM_USER"] = "0"
        return minimal_env(extra)

    async def run(
        self,
        cwd: Path,
        *args: str,
        action: str,
        target: CloneRequest | None = None,
        network: bool = False,
        submodule: bool = False,
        check: bool = True,
    ) -> tuple[int, str]:
        """Run `git ARGS` in CWD; return (exit code, stdout). A failure raises when CHECK,
        described for TARGET (the repository being fetched; the service's by default)."""
        target = target or self.request
        config = [item for pair in (("-c", value) for value in _GIT_CONFIG) for item in pair]
        refused_before = len(self.askpass.refused())
        process = await asyncio.create_subprocess_exec(
            "git",
            *config,
            *args,
            cwd=cwd,
            env=self.env(network=network, submodule=submodule),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        watcher = asyncio.create_task(self._watch_size(process)) if network else None
        try:
            stdout, stderr = await process.communicate()
        except BaseException:
            await _kill(process)
            raise
        finally:
            if watcher is not None:
                watcher.cancel()
        # A fetch that finished between two looks is measured once more.
        if network and (self.too_big or await self.size() > self.request.max_bytes):
            raise CloneFailed(
                f"fetching {display_url(target.url)} took the clone over "
                f"CLONE_MAX_MEGABYTES={self.limit_text()}; clone stopped"
            )
        if process.returncode != 0 and check:
            refused = self.askpass.refused()[refused_before:]
            if refused and self.request.auth is not None:
                raise self._withheld(refused[0], target, action)
            raise classify_git_error(stderr.decode(errors="replace"), target, action)
        return process.returncode or 0, stdout.decode(errors="replace")

    def _withheld(self, prompt: str, target: CloneRequest, action: str) -> CloneFailed:
        asked = prompt.partition("'")[2].rpartition("'")[0] or "the server"
        if self.askpass.origin is None:
            why = (
                "click-deploy sends credentials only over https (or plain http to a "
                f"loopback address), and {display_url(self.request.url)} is neither"
            )
        else:
            why = (
                f"click-deploy sends the service's credentials only to {self.askpass.origin}, "
                "the host of its repository"
            )
        return CloneAccessDenied(
            f"cannot {action} {display_url(target.url)}: {display_url(asked)} asked for "
            f"credentials; {why}"
        )

    def limit_text(self) -> str:
        return f"{self.request.max_bytes / 1024**2:g}"

    async def size(self) -> int:
        return await asyncio.to_thread(directory_size, self.root)

    async def _watch_size(self, process: asyncio.subprocess.Process) -> None:
        while process.returncode is None:
            await asyncio.sleep(0.5)
            if await self.size() > self.request.max_bytes:
                self.too_big = True
                await _kill(process)
                return


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(process.wait(), 5)
