"""A read-only view of an app's directory. Providers see the app only through it.

Paths are relative, POSIX-style (`"cmd/api/main.go"`). Nothing outside the root is
visible: absolute paths and `..` are refused, and a symlink that points outside the root
reads as absent. Reading goes through `pipeline.checkout_files` (the one reader of
checkout files): a file that is missing, broken, a link out, not a regular file or too
large raises `InvalidFile`, whose message names the file; the planner turns it into a
failed plan, never a traceback.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.checkout_files import MAX_READ_BYTES, CheckoutFileError, read_checkout_text

__all__ = ["MAX_READ_BYTES", "App", "InvalidFile"]


class InvalidFile(ValueError):
    """A file the plan depends on is missing, unreadable or does not parse. The message is
    for a person and starts with the file's path."""


class App:
    """The directory a service is built from, read-only."""

    def __init__(self, root: Path, label: str = ".") -> None:
        self.root = root.resolve()
        self.label = label.strip("/") or "."  # where it is in the repository, for messages

    def __repr__(self) -> str:
        return f"App({str(self.root)!r})"

    def display(self, relative: str) -> str:
        """`relative` as a person finds it in the repository: "web/package.json"."""
        return relative if self.label == "." else f"{self.label}/{relative}"

    # --- paths ---------------------------------------------------------------------------

    def _inside(self, path: Path) -> bool:
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            return False
        return resolved == self.root or resolved.is_relative_to(self.root)

    def _path(self, relative: str) -> Path | None:
        """The absolute path of `relative`, or None when it is not a path inside the root."""
        pure = PurePosixPath(relative)
        if pure.is_absolute() or ".." in pure.parts:
            return None
        path = self.root.joinpath(*pure.parts) if pure.parts else self.root
        return path if self._inside(path) else None

    def has_file(self, relative: str) -> bool:
        path = self._path(relative)
        return path is not None and path.is_file()

    def present(self, relative: str) -> bool:
        """Something is at `relative`, even a link leading out of the root (which
        `read_text` then refuses, saying so) or a broken one."""
        pure = PurePosixPath(relative)
        if pure.is_absolute() or ".." in pure.parts:
            return False
        return self.root.joinpath(*pure.parts).is_symlink() or self.has_file(relative)

    def has_dir(self, relative: str) -> bool:
        path = self._path(relative)
        return path is not None and path.is_dir()

    def has_any(self, *relatives: str) -> bool:
        return any(self.has_file(relative) for relative in relatives)

    def first_file(self, *relatives: str) -> str | None:
        """The first of `relatives` that is a file, or None."""
        return next((relative for relative in relatives if self.has_file(relative)), None)

    def glob(self, pattern: str) -> list[str]:
        """Relative paths matching `pattern` (pathlib syntax), sorted, inside the root."""
        pure = PurePosixPath(pattern)
        if pure.is_absolute() or ".." in pure.parts:
            return []
        found = []
        for path in self.root.glob(pattern):
            if self._inside(path):
                found.append(path.relative_to(self.root).as_posix())
        return sorted(found)

    def list_dir(self, relative: str = ".") -> list[str]:
        """Names in a directory (sorted), or an empty list if it is not one."""
        path = self._path(relative)
        if path is None or not path.is_dir():
            return []
        return sorted(child.name for child in path.iterdir() if self._inside(child))

    # --- reading -------------------------------------------------------------------------

    def read_text(self, relative: str) -> str:
        """The file's text, through the one checkout reader: a link out of the app
        directory, a FIFO or device, or a file over MAX_READ_BYTES is refused."""
        try:
            return read_checkout_text(
                self.root,
                relative,
                display=self.display(relative),
                max_bytes=MAX_READ_BYTES,
                where="the app directory" if self.label != "." else "the repository",
            )
        except CheckoutFileError as error:
            raise InvalidFile(str(error)) from None

    def read_optional(self, relative: str) -> str | None:
        """The file's text, or None when there is no such file."""
        return self.read_text(relative) if self.has_file(relative) else None

    def read_json(self, relative: str) -> Any:
        text = self.read_text(relative)
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise InvalidFile(
                f"{self.display(relative)}: invalid JSON at line {error.lineno}, "
                f"column {error.colno}: {error.msg}"
            ) from None

    def read_json_object(self, relative: str) -> dict[str, Any]:
        data = self.read_json(relative)
        if not isinstance(data, dict):
            raise InvalidFile(f"{self.display(relative)}: expected a JSON object at the top level")
        return data

    def read_toml(self, relative: str) -> dict[str, Any]:
        text = self.read_text(relative)
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise InvalidFile(f"{self.display(relative)}: invalid TOML: {error}") from None
