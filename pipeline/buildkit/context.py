"""The build context as a tar stream, filtered by .dockerignore as Docker filters it.

Matching follows moby's `patternmatcher` (what `docker build` uses): patterns are cleaned
like Go's `filepath.Clean` and anchored at the context root, `*` and `?` never match a
`/`, `**` matches any number of directories, a later `!pattern` re-includes, and a path
is excluded when it or one of its parent directories matches. Like the Docker CLI, an
excluded directory is only walked into when an exception pattern starts with its path.

The generated Dockerfile is added as `DOCKERFILE_NAME`, a path that cannot clash with the
context: a context entry at that path is left out. Nothing is written into the context.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import stat
import tarfile
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.checkout_files import CheckoutFileError, CheckoutFileMissing, read_checkout_text

DOCKERFILE_DIR = ".click-deploy"
DOCKERIGNORE = ".dockerignore"
DOCKERIGNORE_MAX_BYTES = 1024 * 1024
DOCKERFILE_NAME = f"{DOCKERFILE_DIR}/Dockerfile"
CHUNK_SIZE = 256 * 1024
_BLOCK = tarfile.BLOCKSIZE
_ESCAPE = frozenset(".+()|{}$")


class DockerignoreError(ValueError):
    """A .dockerignore pattern Docker would refuse."""


def clean_path(path: str) -> str:
    """Go's `path.Clean`: collapse slashes, drop `.`, resolve `..` lexically."""
    if not path:
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append(part)
            continue
        parts.append(part)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def parse_dockerignore(text: str) -> list[str]:
    """The patterns of a .dockerignore file, normalised as BuildKit's `ReadAll` does."""
    patterns: list[str] = []
    for number, raw in enumerate(text.splitlines()):
        line = raw.removeprefix("\ufeff") if number == 0 else raw
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = clean_path(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        patterns.append("!" + line if invert else line)
    return patterns


@dataclass(frozen=True, slots=True)
class _Pattern:
    text: str  # cleaned, without the "!"
    exclusion: bool
    kind: str  # "exact" | "prefix" | "suffix" | "regexp"
    regexp: re.Pattern[str] | None

    def match(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            if path.endswith(suffix):
                return True
            return suffix.startswith("/") and path == suffix[1:]
        assert self.regexp is not None
        return self.regexp.match(path) is not None


def _compile(text: str, exclusion: bool) -> _Pattern:
    regexp = "^"
    kind = "exact"
    index = 0
    position = 0
    while position < len(text):
        char = text[position]
        position += 1
        if char == "*":
            if position < len(text) and text[position] == "*":
                position += 1
                if position < len(text) and text[position] == "/":
                    position += 1
                if position >= len(text):
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        regexp += ".*"
                        kind = "regexp"
                else:
                    regexp += "(.*/)?"
                    kind = "regexp"
                if index == 0:
                    kind = "suffix"
            else:
                regexp += "[^/]*"
                kind = "regexp"
        elif char == "?":
            regexp += "[^/]"
            kind = "regexp"
        elif char in _ESCAPE:
            regexp += "\\" + char
        elif char == "\\":
            if position < len(text):
                regexp += "\\" + text[position]
                position += 1
                kind = "regexp"
            else:
                regexp += "\\\\"
        elif char in "[]":
            regexp += char
            kind = "regexp"
        else:
            regexp += char
        index += 1
    if kind != "regexp":
        return _Pattern(text, exclusion, kind, None)
    try:
        compiled = re.compile(regexp + "$", re.DOTALL)
    except re.error as error:
        raise DockerignoreError(f"bad .dockerignore pattern {text!r}: {error}") from None
    return _Pattern(text, exclusion, "regexp", compiled)


class PatternMatcher:
    """Docker's .dockerignore matcher (moby/patternmatcher)."""

    def __init__(self, patterns: list[str]):
        self.patterns: list[_Pattern] = []
        for raw in patterns:
            pattern = raw.strip()
            if not pattern:
                continue
            pattern = clean_path(pattern)
            exclusion = pattern.startswith("!")
            if exclusion:
                if len(pattern) == 1:
                    raise DockerignoreError('illegal exclusion pattern: "!"')
                pattern = pattern[1:]
            self.patterns.append(_compile(pattern, exclusion))
        self.has_exclusions = any(p.exclusion for p in self.patterns)

    @classmethod
    def from_dockerignore(cls, text: str) -> PatternMatcher:
        return cls(parse_dockerignore(text))

    def matches(self, path: str) -> bool:
        """True when `path` (relative, `/`-separated) is excluded from the context."""
        path = clean_path(path)
        parent = path.rsplit("/", 1)[0] if "/" in path else "."
        parents = parent.split("/") if parent != "." else []
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path)
            if not hit:
                for depth in range(1, len(parents) + 1):
                    if pattern.match("/".join(parents[:depth])):
                        hit = True
                        break
            if hit:
                matched = not pattern.exclusion
        return matched

    def must_walk(self, directory: str) -> bool:
        """Whether an excluded directory may still hold re-included paths."""
        if not self.has_exclusions:
            return False
        prefix = directory + "/"
        return any(p.exclusion and (p.text + "/").startswith(prefix) for p in self.patterns)


def context_files(context_dir: Path, matcher: PatternMatcher) -> Iterator[tuple[str, Path]]:
    """(relative path, absolute path) of every entry the context sends, sorted, parents
    before children; symlinks are not followed."""

    def walk(directory: Path, prefix: str) -> Iterator[tuple[str, Path]]:
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError as error:
            raise ContextError(f"cannot read {directory}: {error.strerror}") from None
        for entry in entries:
            relative = f"{prefix}{entry.name}"
            is_dir = entry.is_dir(follow_symlinks=False)
            if relative in (DOCKERFILE_DIR, DOCKERFILE_NAME) and not (
                is_dir and relative == DOCKERFILE_DIR
            ):
                continue  # our Dockerfile's place
            if matcher.matches(relative):
                if is_dir and matcher.must_walk(relative):
                    yield from walk(Path(entry.path), relative + "/")
                continue
            if relative != DOCKERFILE_DIR:
                yield relative, Path(entry.path)
            if is_dir:
                yield from walk(Path(entry.path), relative + "/")

    yield from walk(context_dir, "")


class ContextError(ValueError):
    """The context directory cannot be read."""


def _header(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _padding(size: int) -> bytes:
    remainder = size % _BLOCK
    return b"\0" * (_BLOCK - remainder) if remainder else b""


def _entry(relative: str, path: Path) -> Iterator[bytes]:
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return  # removed while we walked
    info = tarfile.TarInfo(relative)
    info.mode = stat.S_IMODE(status.st_mode)
    info.mtime = int(status.st_mtime)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if stat.S_ISDIR(status.st_mode):
        info.type = tarfile.DIRTYPE
        yield _header(info)
    elif stat.S_ISLNK(status.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)
        yield _header(info)
    elif stat.S_ISREG(status.st_mode):
        try:
            file = open(path, "rb")  # noqa: SIM115 - closed below, around the yields
        except OSError as error:
            raise ContextError(f"cannot read {relative}: {error.strerror}") from None
        with file:
            size = os.fstat(file.fileno()).st_size
            info.size = size
            yield _header(info)
            left = size
            while left > 0:
                chunk = file.read(min(CHUNK_SIZE, left))
                if not chunk:  # truncated while we read: keep the tar well formed
                    chunk = b"\0" * min(CHUNK_SIZE, left)
                left -= len(chunk)
                yield chunk
            yield _padding(size)
    # sockets, fifos and devices are not part of a build context


def _generated(name: str, data: bytes, mode: int = 0o644, directory: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.mtime = 0  # fixed, so an unchanged Dockerfile keeps the cache
    if directory:
        info.type = tarfile.DIRTYPE
        return _header(info)
    info.size = len(data)
    return _header(info) + data + _padding(len(data))


def read_dockerignore(context_dir: Path, checkout_dir: Path | None = None) -> str:
    """The context's own .dockerignore ("" when it has none), through the one checkout
    reader: a link leading out of the checkout, a FIFO or a huge file is refused."""
    path = context_dir / DOCKERIGNORE
    if not path.is_symlink() and not path.exists():
        return ""
    root = (checkout_dir or context_dir).resolve()
    try:
        inside = context_dir.resolve().relative_to(root).as_posix()
    except ValueError:
        raise ContextError(f"build context {context_dir} is outside {root}") from None
    relative = DOCKERIGNORE if inside == "." else f"{inside}/{DOCKERIGNORE}"
    try:
        return read_checkout_text(
            root, relative, display=DOCKERIGNORE, max_bytes=DOCKERIGNORE_MAX_BYTES
        )
    except CheckoutFileMissing:
        return ""  # a broken link inside the checkout: no ignore file, as Docker reads it
    except CheckoutFileError as error:
        raise ContextError(str(error)) from None


def tar_chunks(
    context_dir: Path,
    dockerfile: str,
    dockerignore: str | None,
    checkout_dir: Path | None = None,
) -> Generator[bytes, None, None]:
    """The context as tar bytes, in chunks: the generated Dockerfile first, then every
    entry .dockerignore (`dockerignore` if given, else the context's own) keeps. Links are
    sent as links, never followed; FIFOs, sockets and devices are left out."""
    if not context_dir.is_dir():
        raise ContextError(f"build context {context_dir} is not a directory")
    if dockerignore is None:
        dockerignore = read_dockerignore(context_dir, checkout_dir)
    matcher = PatternMatcher.from_dockerignore(dockerignore)
    yield _generated(DOCKERFILE_DIR, b"", 0o755, directory=True)
    yield _generated(DOCKERFILE_NAME, dockerfile.encode())
    pending = bytearray()
    for relative, path in context_files(context_dir, matcher):
        for piece in _entry(relative, path):
            pending += piece
            if len(pending) >= CHUNK_SIZE:
                yield bytes(pending)
                pending.clear()
    pending += b"\0" * (2 * _BLOCK)  # end of archive
    yield bytes(pending)


async def stream_tar(
    context_dir: Path,
    dockerfile: str,
    dockerignore: str | None,
    checkout_dir: Path | None = None,
) -> AsyncIterator[bytes]:
    """`tar_chunks` with its file reads in a thread, for an HTTP request body."""
    chunks = tar_chunks(context_dir, dockerfile, dockerignore, checkout_dir)
    try:
        while True:
            chunk = await asyncio.to_thread(next, chunks, None)
            if chunk is None:
                return
            yield chunk
    finally:
        with contextlib.suppress(ValueError):  # still running in its thread: it ends there
            chunks.close()
