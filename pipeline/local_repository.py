"""A folder on this machine as a service's repository (`click-deploy service add NAME
--repo PATH`; the command line only, see pipeline.values.repository).

A folder inside a git repository is deployed from that repository: its `file://` URL, the
folder as the root dir, the branch checked out there; a deploy builds what is committed.
Any other folder (or one whose files are not committed) is copied into a git repository
under DATA_DIR/local-repositories/NAME, committed, and deployed from there; adding or
updating the service again takes a new copy.

Runs git directly and synchronously: the command line calls it before its event loop
starts, on the operator's own folders.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pipeline import values
from pipeline.errors import InvalidValue

SNAPSHOTS = "local-repositories"
_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "LC_ALL": "C",
    "GIT_AUTHOR_NAME": "click-deploy",
    "GIT_AUTHOR_EMAIL": "click-deploy@localhost",
    "GIT_COMMITTER_NAME": "click-deploy",
    "GIT_COMMITTER_EMAIL": "click-deploy@localhost",
}


@dataclass(frozen=True)
class LocalSource:
    repository: str  # file:///…
    root_dir: str
    branch: str
    note: str  # what a deploy of it builds, for the person who added it


def looks_local(value: str) -> bool:
    """Whether `--repo VALUE` names a folder on this machine (and not a URL)."""
    return "://" not in value and Path(value).is_dir()


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **_GIT_ENV}
    return subprocess.run(
        ["git", "-C", str(cwd), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def _committed(top: Path, branch: str, folder: str) -> bool:
    listing = _git(top, "ls-tree", "--name-only", branch, "--", folder)
    return listing.returncode == 0 and bool(listing.stdout.strip())


def _from_git(folder: Path) -> LocalSource | None:
    found = _git(folder, "rev-parse", "--show-toplevel")
    if found.returncode != 0:
        return None
    top = Path(found.stdout.strip()).resolve()
    branch = _git(top, "symbolic-ref", "--quiet", "--short", "HEAD").stdout.strip()
    relative = folder.relative_to(top).as_posix() or "."
    if not branch or not values.valid_ref(branch) or not _committed(top, branch, relative):
        return None  # a detached HEAD, or files not in the branch: a copy instead
    note = f"deploys build {relative} as committed on branch {branch} of {top}"
    if _git(top, "status", "--porcelain", "--", relative).stdout.strip():
        note += " (its uncommitted changes are not deployed)"
    return LocalSource(f"{values.LOCAL_SCHEME}{top}", relative, branch, note)


def _ignored(directory: str, names: list[str]) -> set[str]:
    return {".git"} & set(names)


def _snapshot(folder: Path, into: Path) -> LocalSource:
    """Copy FOLDER's files into the repository INTO (made on first use) and commit them."""
    if not any(name != ".git" for name in os.listdir(folder)):
        raise InvalidValue(f"--repo {values.shown(str(folder))}: the folder is empty")
    into.mkdir(parents=True, exist_ok=True)
    if not (into / ".git").is_dir():
        _check(_git(into, "init", "-q", "--template=", "-b", "main"), into)
    for entry in into.iterdir():
        if entry.name != ".git":
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    shutil.copytree(folder, into, symlinks=True, ignore=_ignored, dirs_exist_ok=True)
    _check(_git(into, "add", "-A"), into)
    if _git(into, "status", "--porcelain").stdout.strip():
        _check(_git(into, "commit", "-q", "--no-verify", "-m", f"copy of {folder}"), into)
    note = f"deploys build a copy of {folder} taken now (in {into}); add it again for a new one"
    return LocalSource(f"{values.LOCAL_SCHEME}{into}", ".", "main", note)


def _check(result: subprocess.CompletedProcess[str], where: Path) -> None:
    if result.returncode != 0:
        reason = (result.stderr or result.stdout).strip().splitlines()
        raise InvalidValue(f"cannot make a git repository in {where}: {' '.join(reason[-2:])}")


def local_source(path: str, service: str, data_dir: Path) -> LocalSource:
    """Where a deploy of the folder PATH is cloned from (see the module's docstring)."""
    folder = Path(path).resolve()
    if not folder.is_dir():
        raise InvalidValue(f"--repo {values.shown(path)} is not a folder on this machine")
    if shutil.which("git") is None:
        raise InvalidValue("--repo PATH needs git on this machine (Debian: apt-get install git)")
    try:
        return _from_git(folder) or _snapshot(folder, data_dir / SNAPSHOTS / service)
    except OSError as error:
        raise InvalidValue(f"--repo {values.shown(path)}: {error.strerror or error}") from None
