"""Clone over real git transports: exact commit, shallow, credentials kept out of reach."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr

from pipeline.clone import (
    CloneFailed,
    CloneRequest,
    CloneUnavailable,
    GitAuth,
    classify_git_error,
    clone,
    remove_build_dir,
)

ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "PATH": "/usr/bin:/bin",
}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    repo = tmp_path / "origin"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "uploadpack.allowAnySHA1InWant", "true")
    for number in range(3):
        (repo / "app.txt").write_text(f"version {number}\n")
        git(repo, "add", "app.txt")
        git(repo, "commit", "-q", "-m", f"commit {number}")
    return repo


async def test_clones_exactly_the_commit_shallow(origin: Path, tmp_path: Path) -> None:
    middle = git(origin, "rev-parse", "HEAD~1")
    lines: list[str] = []
    cloned = await clone(
        CloneRequest(url=f"file://{origin}", commit=middle, ref="main"),
        tmp_path / "build",
        lines.append,
    )
    assert cloned.commit == middle
    assert (cloned.path / "app.txt").read_text() == "version 1\n"
    assert git(cloned.path, "rev-list", "--count", "HEAD") == "1"  # depth 1
    assert lines[0].startswith(f"fetching commit {middle[:12]}")
    assert lines[-1] == f"checked out {middle[:12]}"


async def test_falls_back_to_the_branch_when_fetch_by_sha_is_refused(
    origin: Path, tmp_path: Path
) -> None:
    # A server fetches only full ids it knows; a short id makes it refuse, like an old
    # server refusing any id: the clone fetches the branch and deepens to the commit.
    oldest = git(origin, "rev-parse", "HEAD~2")
    lines: list[str] = []
    cloned = await clone(
        CloneRequest(url=f"file://{origin}", commit=oldest[:10], ref="main"),
        tmp_path / "build",
        lines.append,
    )
    assert cloned.commit == oldest
    assert (cloned.path / "app.txt").read_text() == "version 0\n"
    assert any("would not fetch by commit id" in line for line in lines)


async def test_branch_tip_when_no_commit_given(origin: Path, tmp_path: Path) -> None:
    cloned = await clone(CloneRequest(url=f"file://{origin}", ref="main"), tmp_path / "b", print)
    assert cloned.commit == git(origin, "rev-parse", "HEAD")


async def test_a_commit_that_does_not_exist_fails_clearly(origin: Path, tmp_path: Path) -> None:
    with pytest.raises(CloneFailed, match=r"does not exist there|not within the last"):
        await clone(
            CloneRequest(url=f"file://{origin}", commit="0" * 40, ref="main"),
            tmp_path / "build",
            print,
        )


async def test_a_missing_repository_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(CloneFailed, match="cannot fetch"):
        await clone(CloneRequest(url=f"file://{tmp_path}/nope", ref="main"), tmp_path / "b", print)


async def test_an_unreachable_server_is_transient(tmp_path: Path) -> None:
    with pytest.raises(CloneUnavailable, match="cannot reach"):
        await clone(
            CloneRequest(url="http://127.0.0.1:9/acme/web.git", ref="main"), tmp_path / "b", print
        )


async def test_bad_commit_ids_are_refused_before_any_network(tmp_path: Path) -> None:
    with pytest.raises(CloneFailed, match="is not a commit id"):
        await clone(CloneRequest(url="file:///x", commit="main; rm -rf /"), tmp_path / "b", print)


async def test_clone_timeout_and_size_limit(origin: Path, tmp_path: Path) -> None:
    (origin / "big.bin").write_bytes(os.urandom(8 * 1024 * 1024))  # incompressible
    git(origin, "add", "big.bin")
    git(origin, "commit", "-q", "-m", "big")
    with pytest.raises(CloneFailed, match="CLONE_MAX_MEGABYTES"):
        await clone(
            CloneRequest(url=f"file://{origin}", ref="main", max_bytes=1024),
            tmp_path / "build",
            print,
        )
    with pytest.raises(CloneFailed, match="CLONE_TIMEOUT_SECONDS"):
        await clone(
            CloneRequest(url=f"file://{origin}", ref="main", timeout_seconds=0.001),
            tmp_path / "build2",
            print,
        )


@pytest.mark.parametrize(
    ("stderr", "kind", "words"),
    [
        ("fatal: Authentication failed for 'https://h/x.git/'", CloneFailed, "refused access"),
        ("remote: HTTP Basic: Access denied", CloneFailed, "refused access"),
        (
            "fatal: could not read Username for 'https://h': terminal prompts disabled",
            CloneFailed,
            "refused access",
        ),
        (
            "fatal: unable to access 'https://h/': Could not resolve host: h",
            CloneUnavailable,
            "cannot reach",
        ),
        (
            "fatal: unable to access 'https://h/': The requested URL returned error: 502",
            CloneUnavailable,
            "cannot reach",
        ),
        ("fatal: remote error: upload-pack: not our ref 0000", CloneFailed, "does not exist"),
        ("fatal: couldn't find remote ref nope", CloneFailed, "does not exist"),
        ("remote: Repository not found.", CloneFailed, "no such repository"),
    ],
)
def test_git_errors_are_classified(stderr: str, kind: type, words: str) -> None:
    request = CloneRequest(url="https://h/x.git", ref="main")
    error = classify_git_error(stderr, request, "fetch")
    assert isinstance(error, kind) and words in str(error)


def test_error_messages_never_carry_the_token() -> None:
    auth = GitAuth("x-access-token", SecretStr("ghs_supersecret"))
    request = CloneRequest(url="https://user:pw@h/x.git", ref="main", auth=auth)
    error = classify_git_error("fatal: bad thing with ghs_supersecret in it", request, "fetch")
    assert "ghs_supersecret" not in str(error) and "user:pw" not in str(error)


def test_remove_build_dir_handles_read_only_files(tmp_path: Path) -> None:
    folder = tmp_path / "build" / "objects"
    folder.mkdir(parents=True)
    (folder / "pack").write_text("x")
    (folder / "pack").chmod(0o444)
    folder.chmod(0o555)
    remove_build_dir(tmp_path / "build")
    assert not (tmp_path / "build").exists()


@pytest.mark.parametrize(
    ("ref", "commit"),
    [("--upload-pack=touch {marker}", None), ("main", "--upload-pack=touch {marker}")],
)
async def test_a_ref_or_commit_git_would_read_as_an_option_is_refused(
    origin: Path, tmp_path: Path, ref: str, commit: str | None
) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(CloneFailed, match=r"is not a (branch, tag or commit|commit id)"):
        await clone(
            CloneRequest(
                url=f"file://{origin}",
                ref=ref.format(marker=marker),
                commit=commit.format(marker=marker) if commit else None,
            ),
            tmp_path / "b",
            print,
        )
    assert not marker.exists()
    assert not (tmp_path / "b").exists()
