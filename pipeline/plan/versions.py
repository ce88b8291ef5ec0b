"""Runtime versions from version files and constraints, reduced to an image tag's precision.

Exact files (`.nvmrc`, `.python-version`, `.ruby-version`, the go line of go.mod) name the
version to use; then mise's `mise.toml` (`[tools] python = "3.11"`), then `.tool-versions`.
A constraint (`engines.node: ">=18"`, composer's `"php": "^8.2"`) gives its lowest allowed
version, so the image is the one the constraint was written against; where it only names a
major (`^8`, `>=3`), the default is used if it shares that major. A version older than any
official image becomes the oldest one, with a warning (`nearest_available`).

`declared_tool_version(app, "pnpm")` reads the same files for a tool's version.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.plan.app import App, InvalidFile

_NUMBER = r"v?(\d+(?:\.(?:\d+|[xX*]))*)"
_COMPARATOR = re.compile(r"(>=|<=|==|~=|!=|===|>|<|=|\^|~)?\s*" + _NUMBER)

TOOL_VERSIONS = ".tool-versions"
# mise's config files, in the order mise prefers them within one directory.
MISE_FILES = ("mise.toml", ".mise.toml", ".config/mise.toml", ".mise/config.toml")
# The names a tool goes by in mise.toml and .tool-versions.
TOOL_ALIASES = {
    "node": ("node", "nodejs"),
    "go": ("go", "golang"),
    "python": ("python",),
}

NODE_LTS = {
    "argon": 4, "boron": 6, "carbon": 8, "dubnium": 10, "erbium": 12,
    "fermium": 14, "gallium": 16, "hydrogen": 18, "iron": 20, "jod": 22,
}  # fmt: skip


@dataclass(frozen=True)
class Version:
    value: str  # at image precision: "18", "3.11", "1.19"
    source: str | None  # the file it came from; None for the default
    raw: str | None = None  # what the file said

    def evidence(self, runtime: str) -> str | None:
        if self.source is None:
            return None
        said = f" ({self.raw})" if self.raw and self.raw != self.value else ""
        return f"{self.source}: {runtime} {self.value}{said}"


def _numbers(text: str) -> tuple[int, ...]:
    """The leading dotted numbers: "3.11.4rc1" → (3, 11, 4); "18.x" → (18,)."""
    match = re.match(r"\d+(?:\.\d+)*", text.strip())
    return tuple(int(part) for part in match.group(0).split(".")) if match else ()


def _lower_bound(alternative: str) -> tuple[int, ...] | None:
    hyphen = re.match(r"^\s*" + _NUMBER + r"\s+-\s+", alternative)
    if hyphen:
        return _numbers(hyphen.group(1))
    lows = []
    for operator, number in _COMPARATOR.findall(alternative):
        if operator in ("<", "<=", "!="):
            continue
        lows.append(_numbers(number))
    lows = [low for low in lows if low]
    return max(lows) if lows else None


def lower_bound(spec: str) -> tuple[int, ...] | None:
    """The lowest version a constraint allows (the newest alternative's, for `a || b`)."""
    bounds = [bound for part in re.split(r"\|\|?", spec) if (bound := _lower_bound(part))]
    return max(bounds) if bounds else None


def to_precision(numbers: tuple[int, ...], default: str, parts: int) -> str:
    """`(3, 11, 4)` → "3.11" at two parts. Too few parts: the default when it shares the
    given prefix, else padded with zeros."""
    if len(numbers) >= parts:
        return ".".join(str(number) for number in numbers[:parts])
    default_numbers = _numbers(default)
    if default_numbers[: len(numbers)] == numbers:
        return default
    return ".".join(str(number) for number in (*numbers, *([0] * (parts - len(numbers)))))


def from_exact(text: str, default: str, parts: int) -> str | None:
    """A version file's content ("v18.17.1", "3.11.4", "ruby-3.1.2", "python-3.11") at
    image precision, or None when it names no version."""
    cleaned = text.strip().lower()
    for prefix in ("ruby-", "python-", "go", "node-", "v"):
        cleaned = cleaned.removeprefix(prefix)
    numbers = _numbers(cleaned)
    if not numbers:
        return None
    return to_precision(numbers, default, parts)


def from_constraint(text: str, default: str, parts: int) -> str | None:
    bound = lower_bound(text)
    if not bound:
        return None
    return to_precision(bound, default, parts)


def node_alias(raw: str) -> str:
    """`lts/hydrogen` → "18"; other aliases (`node`, `lts/*`, `latest`) stay as they are and
    name no version."""
    name = raw.strip().lower().removeprefix("lts/")
    return str(NODE_LTS[name]) if name in NODE_LTS else raw


def first_line(text: str) -> str:
    for line in text.splitlines():
        stripped = line.split("#", 1)[0].strip()
        if stripped:
            return stripped
    return ""


def tool_versions(app: App, names: tuple[str, ...]) -> str | None:
    """The version `.tool-versions` (asdf, mise) gives the first of `names`."""
    text = app.read_optional(TOOL_VERSIONS)
    if text is None:
        return None
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and fields[0] in names:
            return fields[1]
    return None


def _mise_value(value: Any) -> str | None:
    """`"3.11"`, `["3.11", "3.12"]` (the first is the default) or `{ version = "3.11" }`."""
    if isinstance(value, list) and value:
        value = value[0]
    if isinstance(value, dict):
        value = value.get("version")
    if isinstance(value, str | int | float) and str(value).strip():
        return str(value).strip()
    return None


def mise_tools(app: App, names: tuple[str, ...]) -> tuple[str, str] | None:
    """(file, version) for the first of `names` under `[tools]` in mise's config files.
    A tool may be written with its backend (`"npm:pnpm"`, `"core:python"`)."""
    for file in MISE_FILES:
        if not app.has_file(file):
            continue
        tools = app.read_toml(file).get("tools")
        if not isinstance(tools, dict):
            continue
        by_name = {str(key).split(":", 1)[-1]: value for key, value in tools.items()}
        for name in names:
            if name in by_name and (raw := _mise_value(by_name[name])) is not None:
                return file, raw
    return None


def declared_tool_version(app: App, tool: str) -> Version | None:
    """The version of a tool (`pnpm`, `yarn`, `bun`, `uv`, `poetry`…) that mise's
    `mise.toml` or `.tool-versions` declares, as written ("9", "0.5.2", "latest"), or None.
    mise.toml wins over .tool-versions, as mise reads them."""
    names = TOOL_ALIASES.get(tool, (tool,))
    found = mise_tools(app, names)
    if found is not None:
        file, raw = found
        return Version(raw.removeprefix("v"), file, raw)
    raw_tool = tool_versions(app, names)
    if raw_tool is not None:
        return Version(raw_tool.removeprefix("v"), TOOL_VERSIONS, raw_tool)
    return None


@dataclass(frozen=True)
class Available:
    """The oldest version with an official image, and the setting that supplies another."""

    oldest: tuple[int, ...]
    image: str  # for messages: "python:*-slim-bookworm"
    setting: str


# Official images of the Debian release generated Dockerfiles use (bookworm) start here.
AVAILABLE: dict[str, Available] = {
    "python": Available((3, 8), "python:<version>-slim", "BASE_IMAGE_PYTHON"),
}


def nearest_available(runtime: str, version: Version) -> tuple[Version, str | None]:
    """`version`, or the oldest one with an image when `version` is older than that, with
    a warning that says what was picked, why, and what would decide otherwise."""
    known = AVAILABLE.get(runtime)
    numbers = _numbers(version.value)
    if known is None or not numbers or numbers >= known.oldest[: len(numbers)]:
        return version, None
    oldest = ".".join(str(number) for number in known.oldest)
    where = f" ({version.source})" if version.source else ""
    warning = (
        f"{runtime} {version.value}{where} is not available here: there is no "
        f"{known.image} image older than {oldest}, so {oldest} is used. Raise the pin in "
        f"{version.source or 'the version file'}, or set {known.setting} to an image with "
        f"{runtime} {version.value}"
    )
    return Version(oldest, version.source, version.raw), warning


def resolve(
    app: App,
    runtime: str,
    *,
    default: str,
    parts: int,
    exact_files: tuple[str, ...] = (),
    tool_names: tuple[str, ...] = (),
    constraints: tuple[tuple[str, str | None], ...] = (),
    normalize: Callable[[str], str] | None = None,
) -> tuple[Version, list[str]]:
    """Find the version: exact files in order, then mise.toml, then `.tool-versions`
    (`tool_names` are the names both use), then constraints
    (source label, constraint text). Returns the version and notes for people (a file
    that names no usable version)."""
    notes: list[str] = []
    for name in exact_files:
        text = app.read_optional(name)
        if text is None:
            continue
        raw = first_line(text)
        value = from_exact(normalize(raw) if normalize else raw, default, parts)
        if value is not None:
            return Version(value, name, raw), notes
        notes.append(f"{name} says {raw!r}, which names no {runtime} version; ignored")
    if tool_names:
        mise = mise_tools(app, tool_names)
        if mise is not None:
            file, raw_mise = mise
            value = from_exact(normalize(raw_mise) if normalize else raw_mise, default, parts)
            if value is not None:
                return Version(value, file, raw_mise), notes
            notes.append(f"{file} says {runtime} = {raw_mise!r}, which names no version; ignored")
        try:
            raw_tool = tool_versions(app, tool_names)
        except InvalidFile:
            raw_tool = None
        if raw_tool is not None:
            value = from_exact(raw_tool, default, parts)
            if value is not None:
                return Version(value, TOOL_VERSIONS, raw_tool), notes
    for label, constraint in constraints:
        if not constraint:
            continue
        value = from_constraint(constraint, default, parts)
        if value is not None:
            return Version(value, label, constraint), notes
        notes.append(f"{label} {constraint!r} gives no lower bound; ignored")
    return Version(default, None), notes
