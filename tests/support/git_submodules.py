"""Submodules for clone tests: a gitlink and its .gitmodules entry, committed directly
(the submodule's repository need not be reachable, or even valid, from the superproject)."""

from __future__ import annotations

from pathlib import Path

from tests.support.gitserver import git


def add_submodule(repo: Path, path: str, url: str, commit: str) -> str:
    """Commit a gitlink to COMMIT at PATH, with URL in .gitmodules; return the new SHA."""
    git("config", "-f", ".gitmodules", f"submodule.{path}.path", path, cwd=repo)
    git("config", "-f", ".gitmodules", f"submodule.{path}.url", url, cwd=repo)
    git("update-index", "--add", "--cacheinfo", f"160000,{commit},{path}", cwd=repo)
    git("add", ".gitmodules", cwd=repo)
    git("commit", "-q", "-m", f"submodule {path}", cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo).stdout.strip()
