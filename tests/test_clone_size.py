"""CLONE_MAX_MEGABYTES holds for what a clone writes, not only for what it fetches: a
small, highly compressible repository whose checkout would be large is refused before a
file is written, submodules included. Real git, real repositories."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.clone import CloneFailed, CloneRequest, clone
from tests.support.git_submodules import add_submodule
from tests.support.gitserver import GitDaemon, git

pytest_plugins = ["tests.support.gitserver"]

MB = 1024**2
ZEROS = bytes(3 * MB)  # compresses to a few kB


def folder_size(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


async def test_a_large_file_in_a_small_repository_is_refused_before_checkout(
    git_daemon: GitDaemon, tmp_path: Path
) -> None:
    commit = git_daemon.create_repo("zip-bomb", {"app.txt": "app\n", "big.bin": ZEROS})
    build = tmp_path / "build"
    with pytest.raises(CloneFailed) as failure:
        await clone(
            CloneRequest(url=git_daemon.url_for("zip-bomb"), commit=commit, max_bytes=1 * MB),
            build,
            print,
        )
    message = str(failure.value)
    assert message.startswith("the checkout is 3.1 MB, over CLONE_MAX_MEGABYTES=1 ")
    assert folder_size(build / ".git") < MB  # the fetch itself was within the limit
    assert not (build / "big.bin").exists() and not (build / "app.txt").exists()


async def test_the_limit_counts_submodules(git_daemon: GitDaemon, tmp_path: Path) -> None:
    lib = git_daemon.create_repo("lib", {"big.bin": ZEROS})
    git_daemon.create_repo("app", {"app.txt": "app\n"})
    commit = add_submodule(git_daemon.path_for("app"), "lib", git_daemon.url_for("lib"), lib)
    build = tmp_path / "build"
    with pytest.raises(CloneFailed, match=r"^with submodule lib, the checkout is 3\.1 MB, over "):
        await clone(
            CloneRequest(
                url=git_daemon.url_for("app"), commit=commit, submodules=True, max_bytes=MB
            ),
            build,
            print,
        )
    assert (build / "app.txt").exists() and not (build / "lib" / "big.bin").exists()


async def test_a_checkout_within_the_limit_is_whole(git_daemon: GitDaemon, tmp_path: Path) -> None:
    commit = git_daemon.create_repo("fits", {"big.bin": ZEROS})
    cloned = await clone(
        CloneRequest(url=git_daemon.url_for("fits"), commit=commit, max_bytes=4 * MB),
        tmp_path / "build",
        print,
    )
    assert (cloned.path / "big.bin").read_bytes() == ZEROS


async def test_many_empty_files_count_as_the_disk_they_take(
    git_daemon: GitDaemon, tmp_path: Path
) -> None:
    # 2,000 empty files: no bytes, but 2,000 inodes and blocks (4 kB each) once written.
    files: dict[str, str | bytes] = {f"empty/{number}": b"" for number in range(2000)}
    commit = git_daemon.create_repo("inodes", files)
    build = tmp_path / "build"
    with pytest.raises(
        CloneFailed, match=r"^the checkout is 7\.\d MB, over CLONE_MAX_MEGABYTES=1 "
    ):
        await clone(
            CloneRequest(url=git_daemon.url_for("inodes"), commit=commit, max_bytes=MB),
            build,
            print,
        )
    assert not (build / "empty").exists()


async def test_a_submodule_marked_update_none_is_left_out(
    git_daemon: GitDaemon, tmp_path: Path
) -> None:
    lib = git_daemon.create_repo("lib", {"big.bin": ZEROS})
    git_daemon.create_repo("app", {"app.txt": "app\n"})
    app = git_daemon.path_for("app")
    git("config", "-f", ".gitmodules", "submodule.lib.update", "none", cwd=app)
    commit = add_submodule(app, "lib", git_daemon.url_for("lib"), lib)
    cloned = await clone(
        CloneRequest(url=git_daemon.url_for("app"), commit=commit, submodules=True, max_bytes=MB),
        tmp_path / "build",
        print,
    )
    assert (cloned.path / "app.txt").exists() and list((cloned.path / "lib").iterdir()) == []
