"""Clone: fetch exactly one commit, shallow, into a build directory.

Every git command runs as an asyncio subprocess: a fetch must be killable (on a cancel or
a timeout the git process is stopped at once), and every git process gets the minimal
environment (`pipeline.subprocess_env`), never the bot's own, with no user or system git
configuration, no hooks, and no protocol that runs commands or reads the bot host's files
for a submodule.

Credentials never touch the URL, `.git/config`, logs or messages, and only the service's
own host receives them (`pipeline.git_askpass`). Submodules are fetched here one by one
rather than by `git submodule update`, so each URL is checked before it is fetched and
each checkout is measured before anything is written: CLONE_MAX_MEGABYTES covers the
whole build directory, fetched data and checked-out files, submodules included.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from pipeline.errors import DeploymentFailure, TransientError
from pipeline.git_askpass import Askpass, GitAuth, askpass_for
from pipeline.subprocess_env import minimal_env

__all__ = [
    "CloneAccessDenied",
    "CloneFailed",
    "CloneRequest",
    "CloneUnavailable",
    "Cloned",
    "GitAuth",
    "classify_git_error",
    "clone",
    "display_url",
    "remove_build_dir",
    "submodule_url",
]

_SHA = re.compile(r"^[0-9a-f]{7,64}$")
# Submodules inside submodules: deeper than this is a loop or an attack, not a project.
_MAX_SUBMODULE_DEPTH = 8
_SUBMODULE_SCHEMES = ("https", "http", "git")

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


@dataclass
class Cloned:
    path: Path
    commit: str
    log: list[str] = field(default_factory=list)


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


def _directory_size(path: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def _megabytes(size: int) -> str:
    """Rounded up to a tenth, so a size over the limit never reads as the limit."""
    return f"{math.ceil(size * 10 / 1024**2) / 10:g}"


@dataclass(frozen=True)
class _TreeEntry:
    kind: str  # blob, tree or commit (a submodule)
    oid: str
    size: int
    path: str


class _Git:
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
        return await asyncio.to_thread(_directory_size, self.root)

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


async def clone(request: CloneRequest, dest: Path, log: Callable[[str], None]) -> Cloned:
    """Fetch `request.commit` (or the tip of `request.ref`) into `dest`, shallow."""
    if request.commit is not None and not _SHA.match(request.commit):
        raise CloneFailed(f"{request.commit!r} is not a commit id (7 to 64 hex digits)")
    for what, value in (("ref", request.ref), ("commit", request.commit)):
        if value is not None and (not value or value.startswith("-")):
            # git would read it as an option (--upload-pack=… runs a command).
            raise CloneFailed(f"{what} {value!r} is not a branch, tag or commit")
    with askpass_for(request.url, request.auth) as askpass:
        runner = _Git(request, dest, askpass)
        try:
            return await asyncio.wait_for(_clone(runner, dest, log), request.timeout_seconds)
        except TimeoutError:
            raise CloneFailed(
                f"cloning {display_url(request.url)} took longer than CLONE_TIMEOUT_SECONDS "
                f"({request.timeout_seconds:g} s)"
            ) from None


async def _clone(runner: _Git, dest: Path, log: Callable[[str], None]) -> Cloned:
    request = runner.request
    sha = await _fetch(runner, request, dest, log, submodule=False)
    entries = await _check_out(runner, request, dest, sha, "the checkout")
    if request.submodules:
        log("updating submodules")
        await _submodules(runner, request, dest, sha, entries, log, level=1)
    log(f"checked out {sha[:12]}")
    return Cloned(dest, sha)


async def _fetch(
    runner: _Git,
    request: CloneRequest,
    dest: Path,
    log: Callable[[str], None],
    *,
    submodule: bool,
) -> str:
    """Make DEST a repository holding REQUEST's commit (depth 1 where the server allows);
    return the commit's full id."""
    await asyncio.to_thread(dest.mkdir, parents=True, exist_ok=True)
    # No template: nothing (hooks included) is copied from the machine into the repository.
    await runner.run(dest, "init", "-q", "--template=", "-b", "main", action="prepare")
    await runner.run(dest, "remote", "add", "origin", request.url, action="prepare")
    where = display_url(request.url)

    async def fetch(*args: str) -> None:
        await runner.run(
            dest,
            "fetch",
            *args,
            "--no-tags",
            "--no-recurse-submodules",
            "--end-of-options",
            action="fetch",
            target=request,
            network=True,
            submodule=submodule,
        )

    commit = request.commit
    fetched = False
    if commit is not None:
        log(f"fetching commit {commit[:12]} from {where}")
        try:
            await fetch("--depth", "1", "origin", commit)
            fetched = True
        except CloneAccessDenied:
            raise
        except CloneFailed:
            if request.ref is None:
                raise
            # Some servers refuse to fetch by commit id: fetch the branch, then the commit.
            log(f"the server would not fetch by commit id; fetching {request.ref} instead")
    if not fetched:
        ref = request.ref or "HEAD"
        log(f"fetching {ref} from {where}")
        await fetch("--depth", "1", "origin", ref)
        if commit is not None and await _resolve(runner, dest, commit) is None:
            # The commit is older than the branch tip: deepen until it shows up.
            for depth in (50, 500):
                await fetch("--depth", str(depth), "origin", ref)
                if await _resolve(runner, dest, commit) is not None:
                    break
            else:
                raise CloneFailed(
                    f"commit {commit} is not within the last 500 commits of {ref} in {where}"
                )
    sha = await _resolve(runner, dest, commit or "FETCH_HEAD")
    if sha is None:
        wanted = commit or request.ref or "HEAD"
        raise CloneFailed(f"cannot check out {where}: {wanted} is not a commit")
    return sha


async def _resolve(runner: _Git, dest: Path, name: str) -> str | None:
    code, out = await runner.run(
        dest, "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}", action="read", check=False
    )
    return out.strip() if code == 0 and out.strip() else None


async def _check_out(
    runner: _Git, request: CloneRequest, dest: Path, sha: str, what: str
) -> list[_TreeEntry]:
    """Check SHA out into DEST if the files fit CLONE_MAX_MEGABYTES beside what the build
    directory already holds (measured from the tree before anything is written)."""
    _code, listing = await runner.run(
        dest, "ls-tree", "-r", "-l", "-z", "--full-tree", sha, action="read", target=request
    )
    entries = [_tree_entry(item) for item in listing.split("\0") if item]
    files = sum(entry.size for entry in entries)
    limit = request.max_bytes
    if (total := await runner.size() + files) > limit:
        raise CloneFailed(
            f"{what} is {_megabytes(total)} MB, over CLONE_MAX_MEGABYTES={runner.limit_text()} "
            f"({_megabytes(files)} MB of files in {sha[:12]} of {display_url(request.url)})"
        )
    await runner.run(
        dest, "checkout", "-q", "--detach", "--force", sha, action="check out", target=request
    )
    # Line-ending and encoding conversions can make files larger than their blobs.
    if (total := await runner.size()) > limit:
        raise CloneFailed(
            f"{what} is {_megabytes(total)} MB, over CLONE_MAX_MEGABYTES={runner.limit_text()}"
        )
    return entries


def _tree_entry(item: str) -> _TreeEntry:
    meta, _tab, path = item.partition("\t")
    _mode, kind, oid, size = meta.split()
    return _TreeEntry(kind, oid, int(size) if size.isdigit() else 0, path)


@dataclass(frozen=True)
class _Submodule:
    name: str
    url: str
    branch: str | None


async def _gitmodules(runner: _Git, dest: Path, sha: str) -> dict[str, _Submodule]:
    """`.gitmodules` of commit SHA, read from git's objects (never through the checkout,
    where a link could point elsewhere), by submodule path."""
    code, out = await runner.run(
        dest,
        "config",
        "-z",
        "--blob",
        f"{sha}:.gitmodules",
        "--get-regexp",
        r"^submodule\..*\.(path|url|branch)$",
        action="read .gitmodules of",
        check=False,
    )
    values: dict[str, dict[str, str]] = {}
    for item in out.split("\0") if code == 0 else []:
        key, _newline, value = item.partition("\n")
        name, _dot, variable = key.removeprefix("submodule.").rpartition(".")
        if name:
            values.setdefault(name, {})[variable] = value
    return {
        entry["path"].rstrip("/"): _Submodule(name, entry["url"], entry.get("branch"))
        for name, entry in values.items()
        if "path" in entry and "url" in entry
    }


def submodule_url(parent_url: str, url: str) -> str:
    """A submodule's URL as git resolves it: `./x` and `../x` against the parent's URL."""
    if url.startswith(("./", "../")):
        return urljoin(parent_url.rstrip("/") + "/", url)
    return url


def _submodule_scheme(url: str) -> str:
    try:
        return urlsplit(url).scheme.lower() if "://" in url else ""
    except ValueError:
        return ""


async def _submodules(
    runner: _Git,
    parent: CloneRequest,
    dest: Path,
    sha: str,
    entries: list[_TreeEntry],
    log: Callable[[str], None],
    level: int,
) -> None:
    links = [entry for entry in entries if entry.kind == "commit"]
    if not links:
        return
    if level > _MAX_SUBMODULE_DEPTH:
        raise CloneFailed(f"submodules nest deeper than {_MAX_SUBMODULE_DEPTH} levels")
    modules = await _gitmodules(runner, dest, sha)
    root = runner.root.resolve()
    for link in links:
        shown = (dest / link.path).relative_to(runner.root).as_posix()
        module = modules.get(link.path)
        if module is None:
            raise CloneFailed(f"submodule {shown} has no url in .gitmodules")
        url = submodule_url(parent.url, module.url)
        if _submodule_scheme(url) not in _SUBMODULE_SCHEMES:
            raise CloneFailed(
                f"submodule {shown}: {display_url(url)!r} is not an https, http or git:// "
                "URL; click-deploy fetches submodules over those only"
            )
        target = dest / link.path
        if target.is_symlink() or not target.resolve().is_relative_to(root):
            raise CloneFailed(f"submodule {shown}: its path leaves the checkout")
        request = CloneRequest(
            url=url,
            commit=link.oid,
            ref=module.branch or "HEAD",
            auth=parent.auth,
            submodules=True,
            timeout_seconds=parent.timeout_seconds,
            max_bytes=parent.max_bytes,
        )
        log(f"submodule {shown}:")
        commit = await _fetch(runner, request, target, log, submodule=True)
        inner = await _check_out(
            runner, request, target, commit, f"with submodule {shown}, the checkout"
        )
        await _submodules(runner, request, target, commit, inner, log, level + 1)


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
