"""The one reader of checkout files: links out of the checkout, FIFOs, devices and huge
files are refused with one message naming the file, never its contents; the build context
sends links as links."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from pipeline.buildkit.context import ContextError, tar_chunks
from pipeline.checkout_files import CheckoutFileError, read_checkout_file, read_checkout_text
from pipeline.plan import BaseImages, BuildConfig, plan_app

OUTSIDE_TEXT = "root:$y$j9T$[not-a-pattern:0:0:the host's own file"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file of the build host, outside every checkout."""
    path = tmp_path / "host" / "shadow"
    path.parent.mkdir()
    path.write_text(OUTSIDE_TEXT + "\n")
    return path


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    (root / "web").mkdir(parents=True)
    (root / "web" / "app.txt").write_text("app\n")
    (root / "web" / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    return root


def names_in(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return {member.name: member for member in archive.getmembers()}


def test_a_dockerignore_linking_out_of_the_checkout_is_refused_unread(
    checkout: Path, outside: Path
) -> None:
    context = checkout / "web"
    (context / ".dockerignore").symlink_to(outside)
    with pytest.raises(ContextError) as caught:
        b"".join(tar_chunks(context, "FROM scratch\n", None, checkout))
    assert str(caught.value) == "`.dockerignore` is a link out of the repository; refused"
    assert "not-a-pattern" not in str(caught.value)


def test_a_dockerignore_linking_inside_the_checkout_is_read(checkout: Path) -> None:
    (checkout / "shared.ignore").write_text("app.txt\n")
    context = checkout / "web"
    (context / ".dockerignore").symlink_to("../shared.ignore")
    members = names_in(b"".join(tar_chunks(context, "FROM scratch\n", None, checkout)))
    assert "app.txt" not in members and "Dockerfile" in members


def test_a_dockerignore_that_is_a_fifo_is_refused_without_waiting(checkout: Path) -> None:
    context = checkout / "web"
    os.mkfifo(context / ".dockerignore")
    with pytest.raises(ContextError, match=r"^`\.dockerignore` is not a regular file"):
        b"".join(tar_chunks(context, "FROM scratch\n", None, checkout))


def test_the_reader_caps_the_size_and_refuses_devices(checkout: Path, outside: Path) -> None:
    (checkout / "big.txt").write_bytes(b"x" * 2048)
    with pytest.raises(CheckoutFileError, match=r"^`big\.txt` is too large to read \(2048"):
        read_checkout_file(checkout, "big.txt", max_bytes=1024)
    assert read_checkout_file(checkout, "big.txt", max_bytes=2048) == b"x" * 2048
    (checkout / "null").symlink_to("/dev/null")
    with pytest.raises(CheckoutFileError, match="link out of the repository"):
        read_checkout_file(checkout, "null")
    for path in ("../host/shadow", "/etc/passwd"):
        with pytest.raises(CheckoutFileError, match="link out of the repository; refused"):
            read_checkout_text(checkout, path)
    (checkout / "loop").symlink_to("loop")
    with pytest.raises(CheckoutFileError, match="refused"):
        read_checkout_text(checkout, "loop")


def test_links_in_the_context_are_sent_as_links_never_followed(
    checkout: Path, outside: Path
) -> None:
    context = checkout / "web"
    (context / "shadow").symlink_to(outside)
    (context / "hostdir").symlink_to(outside.parent, target_is_directory=True)
    os.mkfifo(context / "pipe")
    data = b"".join(tar_chunks(context, "FROM scratch\n", "", checkout))
    members = names_in(data)
    assert members["shadow"].issym() and members["shadow"].linkname == str(outside)
    assert members["hostdir"].issym()
    assert not any(name.startswith("hostdir/") for name in members)
    assert "pipe" not in members
    assert OUTSIDE_TEXT.encode() not in data


def test_the_planner_refuses_a_click_deploy_toml_linking_out(checkout: Path, outside: Path) -> None:
    (checkout / "web" / "click-deploy.toml").symlink_to(outside)
    result = plan_app(checkout, BuildConfig(root_dir="web"), BaseImages())
    assert not result.ok
    assert result.message == "`web/click-deploy.toml` is a link out of the app directory; refused"


def test_the_planner_refuses_a_dockerignore_linking_out(checkout: Path, outside: Path) -> None:
    (checkout / "web" / "Dockerfile").unlink()
    (checkout / "web" / "index.html").write_text("<p>hi</p>\n")
    (checkout / "web" / ".dockerignore").symlink_to(outside)
    result = plan_app(checkout, BuildConfig(root_dir="web"), BaseImages())
    assert not result.ok
    assert result.message == "`web/.dockerignore` is a link out of the app directory; refused"
    assert "not-a-pattern" not in (result.message or "")
