"""The one way the bot reads a file of a checkout (the planner's App view, the build
context's .dockerignore, the repo's Dockerfile, click-deploy.toml).

A repository is written by someone else: its files may be symlinks to anything on the
build host (`.dockerignore -> /etc/shadow`), FIFOs that block a reader for ever, devices,
or very large. `read_checkout_file` refuses a path that leads out of the root (after
following every link), anything that is not a regular file, and files over a size cap,
each with one message naming the file. It never shows what a refused file holds.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

MAX_READ_BYTES = 8 * 1024 * 1024


class CheckoutFileError(ValueError):
    """A file of the checkout that is missing, refused or unreadable. The message is for a
    person and starts with the file's path (as `display` gave it)."""


class CheckoutFileMissing(CheckoutFileError):
    """There is no such file (a broken link is missing too)."""


def resolve_inside(root: Path, relative: str) -> Path | None:
    """`relative` (POSIX, relative) under `root` with every link followed, or None when it
    is not a path inside `root` (absolute, `..`, or a link leading out)."""
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts:
        return None
    base = root.resolve()
    try:
        resolved = base.joinpath(*pure.parts).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return None
    return resolved if resolved == base or resolved.is_relative_to(base) else None


def read_checkout_file(
    root: Path,
    relative: str,
    *,
    display: str | None = None,
    max_bytes: int = MAX_READ_BYTES,
    where: str = "the repository",
) -> bytes:
    """The bytes of `relative` under `root`; `CheckoutFileError` when it leads out of the
    root, is not a regular file, is larger than `max_bytes` or cannot be read."""
    shown = f"`{display or relative}`"
    path = resolve_inside(root, relative)
    if path is None:
        raise CheckoutFileError(f"{shown} is a link out of {where}; refused")
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOFOLLOW: the path is
        # resolved already, a link appearing now is refused rather than followed.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise CheckoutFileMissing(f"{shown}: not found") from None
    except OSError as error:
        raise CheckoutFileError(f"{shown}: cannot be read ({error.strerror})") from None
    with os.fdopen(descriptor, "rb") as file:
        status = os.fstat(file.fileno())
        if stat.S_ISDIR(status.st_mode):
            raise CheckoutFileError(f"{shown} is a directory, not a file")
        if not stat.S_ISREG(status.st_mode):
            raise CheckoutFileError(
                f"{shown} is not a regular file (a device, FIFO or socket); refused"
            )
        if status.st_size > max_bytes:
            raise CheckoutFileError(
                f"{shown} is too large to read ({status.st_size} bytes, at most {max_bytes})"
            )
        try:
            data = file.read(max_bytes + 1)
        except OSError as error:
            raise CheckoutFileError(f"{shown}: cannot be read ({error.strerror})") from None
    if len(data) > max_bytes:  # grew while we looked
        raise CheckoutFileError(f"{shown} is too large to read (more than {max_bytes} bytes)")
    return data


def read_checkout_text(
    root: Path,
    relative: str,
    *,
    display: str | None = None,
    max_bytes: int = MAX_READ_BYTES,
    where: str = "the repository",
) -> str:
    """`read_checkout_file` as UTF-8 text (a leading BOM dropped)."""
    data = read_checkout_file(root, relative, display=display, max_bytes=max_bytes, where=where)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CheckoutFileError(f"`{display or relative}`: not UTF-8 text") from None
