"""Clone: fetch exactly one commit, shallow, into a build directory.

Local repository work goes through GitPython in a thread. The network operations (fetch,
submodules) run as asyncio subprocesses instead, because a fetch must be killable: on a
cancel or a timeout the git process is stopped at once, not left running in a thread.

Credentials never touch the URL, `.git/config`, logs or messages: git asks a one-off
GIT_ASKPASS script, which reads them from the environment of that one git process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import git
from pydantic import SecretStr

from pipeline.errors import DeploymentFailure, TransientError

_SHA = re.compile(r"^[0-9a-f]{7,64}$")

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

_ASKPASS = """#!/bin/sh
case "$1" in
  Username*|username*) printf '%s\\n' "$CLICK_DEPLOY_GIT_USERNAME" ;;
  *) printf '%s\\n' "$CLICK_DEPLOY_GIT_PASSWORD" ;;
esac
"""


@dataclass(frozen=True)
class GitAuth:
    """HTTPS credentials: a GitHub App installation token is ("x-access-token", token), a
    GitLab token ("oauth2", token), or any username and password."""

    username: str
    password: SecretStr


@dataclass(frozen=True)
class CloneRequest:
    url: str
    commit: str | None = None  # exact commit; None: the tip of `ref`
    ref: str | None = None  # branch or tag that holds the commit
    auth: GitAuth | None = None
    submodules: bool = False
    timeout_seconds: float = 300.0
    max_bytes: int = 2 * 1024**3


@dataclass
class Cloned:
    path: Path
    commit: str
    log: list[str] = field(default_factory=list)


class CloneFailed(DeploymentFailure):
    """The repository, the credentials or the commit are wrong: retrying will not help."""


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
        return CloneFailed(
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


def _directory_size(path: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


class _Git:
    """Runs network git commands with the request's credentials, limits and cancellation."""

    def __init__(self, request: CloneRequest, workdir: Path, askpass: Path) -> None:
        self.request = request
        self.workdir = workdir
        self.too_big = False
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("GIT_", "CLICK_DEPLOY_GIT_"))
        }
        self.env.update(
            GIT_TERMINAL_PROMPT="0",
            GIT_ASKPASS=str(askpass),
            GIT_CONFIG_NOSYSTEM="1",
            CLICK_DEPLOY_GIT_USERNAME=request.auth.username if request.auth else "",
            CLICK_DEPLOY_GIT_PASSWORD=(
                request.auth.password.get_secret_value() if request.auth else ""
            ),
        )

    async def run(self, *args: str, action: str) -> str:
        process = await asyncio.create_subprocess_exec(
            "git",
            # No helper may store or offer credentials; nothing is written to config.
            "-c",
            "credential.helper=",
            "-c",
            "core.askPass=",
            *args,
            cwd=self.workdir,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        watcher = asyncio.create_task(self._watch_size(process))
        try:
            stdout, stderr = await process.communicate()
        except BaseException:
            await _kill(process)
            raise
        finally:
            watcher.cancel()
        too_big = self.too_big
        if not too_big and process.returncode == 0:
            # A fetch that finished between two looks is measured once more.
            too_big = (
                await asyncio.to_thread(_directory_size, self.workdir) > self.request.max_bytes
            )
        if too_big:
            raise CloneFailed(
                f"the repository is larger than CLONE_MAX_MEGABYTES "
                f"({self.request.max_bytes // 1024**2} MB); clone stopped"
            )
        if process.returncode != 0:
            raise classify_git_error(stderr.decode(errors="replace"), self.request, action)
        return stdout.decode(errors="replace")

    async def _watch_size(self, process: asyncio.subprocess.Process) -> bool:
        while process.returncode is None:
            await asyncio.sleep(0.5)
            size = await asyncio.to_thread(_directory_size, self.workdir)
            if size > self.request.max_bytes:
                self.too_big = True
                await _kill(process)
                return True
        return False


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(process.wait(), 5)


def _init(path: Path, url: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    repo = git.Repo.init(path, initial_branch="main")
    with repo.config_writer() as config:
        config.set_value("advice", "detachedHead", "false")
    repo.create_remote("origin", url)


def _checkout(path: Path, commit: str) -> str:
    repo = git.Repo(path)
    repo.git.checkout("--detach", "--force", commit)
    return str(repo.head.commit.hexsha)


def _resolve(path: Path, name: str) -> str | None:
    repo = git.Repo(path)
    try:
        return str(repo.git.rev_parse("--verify", "--quiet", f"{name}^{{commit}}"))
    except git.GitCommandError:
        return None


async def clone(request: CloneRequest, dest: Path, log: Callable[[str], None]) -> Cloned:
    """Fetch `request.commit` (or the tip of `request.ref`) into `dest`, shallow."""
    if request.commit is not None and not _SHA.match(request.commit):
        raise CloneFailed(f"{request.commit!r} is not a commit id (7 to 64 hex digits)")
    async with _askpass_script() as askpass:
        try:
            return await asyncio.wait_for(
                _clone(request, dest, log, askpass), request.timeout_seconds
            )
        except TimeoutError:
            raise CloneFailed(
                f"cloning {display_url(request.url)} took longer than CLONE_TIMEOUT_SECONDS "
                f"({request.timeout_seconds:g} s)"
            ) from None


async def _clone(
    request: CloneRequest, dest: Path, log: Callable[[str], None], askpass: Path
) -> Cloned:
    for what, value in (("ref", request.ref), ("commit", request.commit)):
        if value is not None and (not value or value.startswith("-")):
            # git would read it as an option (--upload-pack=… runs a command).
            raise CloneFailed(f"{what} {value!r} is not a branch, tag or commit")
    await asyncio.to_thread(_init, dest, request.url)
    runner = _Git(request, dest, askpass)
    where = display_url(request.url)
    commit = request.commit
    fetched = False
    if commit is not None:
        log(f"fetching commit {commit[:12]} from {where}")
        try:
            await runner.run(
                "fetch",
                "--depth",
                "1",
                "--no-tags",
                "--end-of-options",
                "origin",
                commit,
                action="fetch",
            )
            fetched = True
        except CloneFailed as error:
            if "refused access" in str(error) or request.ref is None:
                raise
            # Some servers refuse to fetch by commit id: fetch the branch, then the commit.
            log(f"the server would not fetch by commit id; fetching {request.ref} instead")
    if not fetched:
        ref = request.ref or "HEAD"
        log(f"fetching {ref} from {where}")
        await runner.run(
            "fetch", "--depth", "1", "--no-tags", "--end-of-options", "origin", ref, action="fetch"
        )
        if commit is not None and await asyncio.to_thread(_resolve, dest, commit) is None:
            # The commit is older than the branch tip: deepen until it shows up.
            for depth in (50, 500):
                await runner.run(
                    "fetch",
                    "--depth",
                    str(depth),
                    "--no-tags",
                    "--end-of-options",
                    "origin",
                    ref,
                    action="fetch",
                )
                if await asyncio.to_thread(_resolve, dest, commit) is not None:
                    break
            else:
                raise CloneFailed(
                    f"commit {commit} is not within the last 500 commits of {ref} in {where}"
                )
    target = commit or "FETCH_HEAD"
    try:
        sha = await asyncio.to_thread(_checkout, dest, target)
    except git.GitCommandError as error:
        raise classify_git_error(str(error.stderr), request, "check out") from None
    if request.submodules:
        log("updating submodules")
        await runner.run(
            "submodule",
            "update",
            "--init",
            "--recursive",
            "--depth",
            "1",
            action="fetch submodules of",
        )
    log(f"checked out {sha[:12]}")
    return Cloned(dest, sha)


@contextlib.asynccontextmanager
async def _askpass_script() -> AsyncIterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="click-deploy-askpass-"))
    script = folder / "askpass"
    script.write_text(_ASKPASS)
    script.chmod(stat.S_IRWXU)
    try:
        yield script
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_build_dir(path: Path) -> None:
    """Remove a build directory, even where a step left read-only files behind."""

    def make_writable_and_retry(
        function: Callable[[str], object], name: str, _info: object
    ) -> None:
        with contextlib.suppress(OSError):
            os.chmod(name, stat.S_IRWXU)
            function(name)

    if path.exists():
        shutil.rmtree(path, onerror=make_writable_and_retry)
