"""Clone: fetch exactly one commit, shallow, into a build directory.

Credentials never touch the URL, `.git/config`, logs or messages, and only the service's
own host receives them (`pipeline.git_askpass`); every git process runs through
`pipeline.git_runner` (minimal environment, no hooks, no machine configuration, killable).
Submodules are fetched here one by one rather than by `git submodule update`, so each URL
is checked before it is fetched and each checkout is measured before anything is written:
CLONE_MAX_MEGABYTES covers the whole build directory, fetched data and checked-out files,
submodules included.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from pipeline.git_askpass import GitAuth, askpass_for
from pipeline.git_runner import (
    CloneAccessDenied,
    CloneFailed,
    CloneRequest,
    CloneUnavailable,
    GitRunner,
    classify_git_error,
    disk_footprint,
    display_url,
    megabytes,
)

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


@dataclass
class Cloned:
    path: Path
    commit: str
    log: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _TreeEntry:
    kind: str  # blob, tree or commit (a submodule)
    oid: str
    size: int
    path: str


async def clone(request: CloneRequest, dest: Path, log: Callable[[str], None]) -> Cloned:
    """Fetch `request.commit` (or the tip of `request.ref`) into `dest`, shallow."""
    if request.commit is not None and not _SHA.match(request.commit):
        raise CloneFailed(f"{request.commit!r} is not a commit id (7 to 64 hex digits)")
    for what, value in (("ref", request.ref), ("commit", request.commit)):
        if value is not None and (not value or value.startswith("-")):
            # git would read it as an option (--upload-pack=… runs a command).
            raise CloneFailed(f"{what} {value!r} is not a branch, tag or commit")
    with askpass_for(request.url, request.auth) as askpass:
        runner = GitRunner(request, dest, askpass)
        try:
            return await asyncio.wait_for(_clone(runner, dest, log), request.timeout_seconds)
        except TimeoutError:
            raise CloneFailed(
                f"cloning {display_url(request.url)} took longer than CLONE_TIMEOUT_SECONDS "
                f"({request.timeout_seconds:g} s)"
            ) from None


async def _clone(runner: GitRunner, dest: Path, log: Callable[[str], None]) -> Cloned:
    request = runner.request
    sha = await _fetch(runner, request, dest, log, submodule=None)
    entries = await _check_out(runner, request, dest, sha, "the checkout")
    if request.submodules:
        log("updating submodules")
        await _submodules(runner, request, dest, sha, entries, log, level=1)
    log(f"checked out {sha[:12]}")
    return Cloned(dest, sha)


async def _fetch(
    runner: GitRunner,
    request: CloneRequest,
    dest: Path,
    log: Callable[[str], None],
    *,
    submodule: str | None,
) -> str:
    """Make DEST a repository holding REQUEST's commit (depth 1 where the server allows);
    return the commit's full id. SUBMODULE: the submodule's path, when it is one."""
    action = "fetch" if submodule is None else f"fetch submodule {submodule} from"
    await asyncio.to_thread(dest.mkdir, parents=True, exist_ok=True)
    # No template: nothing (hooks included) is copied from the machine into the repository.
    await runner.run(dest, "init", "-q", "--template=", "-b", "main", action="prepare")
    await runner.run(
        dest, "remote", "add", "--end-of-options", "origin", request.url, action="prepare"
    )
    where = display_url(request.url)

    async def fetch(*args: str) -> None:
        await runner.run(
            dest,
            "fetch",
            *args,
            "--no-tags",
            "--no-recurse-submodules",
            "--end-of-options",
            action=action,
            target=request,
            network=True,
            submodule=submodule is not None,
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


async def _resolve(runner: GitRunner, dest: Path, name: str) -> str | None:
    code, out = await runner.run(
        dest, "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}", action="read", check=False
    )
    return out.strip() if code == 0 and out.strip() else None


async def _check_out(
    runner: GitRunner, request: CloneRequest, dest: Path, sha: str, what: str
) -> list[_TreeEntry]:
    """Check SHA out into DEST if the files fit CLONE_MAX_MEGABYTES beside what the build
    directory already holds (measured from the tree before anything is written)."""
    _code, listing = await runner.run(
        dest, "ls-tree", "-r", "-l", "-z", "--full-tree", sha, action="read", target=request
    )
    entries = [_tree_entry(item) for item in listing.split("\0") if item]
    files = sum(disk_footprint(entry.size) for entry in entries if entry.kind == "blob")
    limit = request.max_bytes
    if (total := await runner.size() + files) > limit:
        raise CloneFailed(
            f"{what} is {megabytes(total)} MB, over CLONE_MAX_MEGABYTES={runner.limit_text()} "
            f"({megabytes(files)} MB of files in {sha[:12]} of {display_url(request.url)})"
        )
    await runner.run(
        dest, "checkout", "-q", "--detach", "--force", sha, action="check out", target=request
    )
    # Line-ending and encoding conversions can make files larger than their blobs.
    if (total := await runner.size()) > limit:
        raise CloneFailed(
            f"{what} is {megabytes(total)} MB, over CLONE_MAX_MEGABYTES={runner.limit_text()}"
        )
    return entries


def _tree_entry(item: str) -> _TreeEntry:
    meta, _tab, path = item.partition("\t")
    _mode, kind, oid, size = meta.split()
    return _TreeEntry(kind, oid, int(size) if size.isdigit() else 0, path)


@dataclass(frozen=True)
class _Submodule:
    name: str
    url: str | None
    branch: str | None
    skipped: bool  # `update = none`: git leaves it out, and so does the clone


async def _gitmodules(runner: GitRunner, dest: Path, sha: str) -> dict[str, _Submodule]:
    """`.gitmodules` of commit SHA, read from git's objects (never through the checkout,
    where a link could point elsewhere), by submodule path."""
    code, out = await runner.run(
        dest,
        "config",
        "-z",
        "--blob",
        f"{sha}:.gitmodules",
        "--get-regexp",
        r"^submodule\..*\.(path|url|branch|update)$",
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
        entry["path"].rstrip("/"): _Submodule(
            name,
            entry.get("url"),
            # "." is "the superproject's branch": the fallback fetches the default instead.
            entry["branch"] if entry.get("branch", ".") != "." else None,
            entry.get("update") == "none",
        )
        for name, entry in values.items()
        if "path" in entry
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
    runner: GitRunner,
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
        if module is not None and module.skipped:
            log(f"submodule {shown}: skipped (update = none)")
            continue
        if module is None or module.url is None:
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
        commit = await _fetch(runner, request, target, log, submodule=shown)
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
