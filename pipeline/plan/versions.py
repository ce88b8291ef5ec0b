"""Runtime versions from version files and constraints, reduced to an image tag's precision.

Exact files (`.nvmrc`, `.python-version`, `.ruby-version`, the go line of go.mod) name the
version to use. A constraint (`engines.node: ">=18"`, composer's `"php": "^8.2"`) gives its
lowest allowed version, so the image is the one the constraint was written against; where
it only names a major (`^8`, `>=3`), the default is used if it shares that major.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.plan.app import App, InvalidFile

_NUMBER = r"v?(\d+(?:\.(?:\d+|[xX*]))*)"
_COMPARATOR = re.compile(r"(>=|<=|==|~=|!=|===|>|<|=|\^|~)?\s*" + _NUMBER)

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
    text = app.read_optional(".tool-versions")
    if text is None:
        return None
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and fields[0] in names:
            return fields[1]
    return None


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
    """Find the version: exact files in order, then `.tool-versions`, then constraints
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
        try:
            raw_tool = tool_versions(app, tool_names)
        except InvalidFile:
            raw_tool = None
        if raw_tool is not None:
            value = from_exact(raw_tool, default, parts)
            if value is not None:
                return Version(value, ".tool-versions", raw_tool), notes
    for label, constraint in constraints:
        if not constraint:
            continue
        value = from_constraint(constraint, default, parts)
        if value is not None:
            return Version(value, label, constraint), notes
        notes.append(f"{label} {constraint!r} gives no lower bound; ignored")
    return Version(default, None), notes
