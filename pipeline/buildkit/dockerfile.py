"""What the build needs to know about a Dockerfile before BuildKit reads it."""

from __future__ import annotations

import re
from collections.abc import Mapping

_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)
_DIRECTIVE = re.compile(r"^#\s*escape\s*=\s*(?P<char>[\\`])\s*$", re.IGNORECASE)


def _logical_lines(text: str) -> list[str]:
    """Instructions with their continuation lines joined and comments dropped."""
    escape = "\\"
    lines: list[str] = []
    current = ""
    in_directives = True
    for raw in text.splitlines():
        stripped = raw.strip()
        if in_directives:
            directive = _DIRECTIVE.match(stripped)
            if directive:
                escape = directive.group("char")
                continue
            if not (stripped.startswith("#") and "=" in stripped):
                in_directives = False
        if stripped.startswith("#") or (not stripped and current):
            continue
        if stripped.endswith(escape):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current.strip():
            lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def _expand(value: str, variables: Mapping[str, str]) -> str | None:
    unresolved = False

    def replace(match: re.Match[str]) -> str:
        nonlocal unresolved
        name = match.group("braced") or match.group("plain")
        if name in variables:
            return variables[name]
        if match.group("default") is not None:
            return match.group("default")
        unresolved = True
        return ""

    expanded = _VARIABLE.sub(replace, value)
    return None if unresolved else expanded


def base_images(dockerfile: str, build_args: Mapping[str, str] | None = None) -> list[str]:
    """The images the `FROM` lines pull, in order, without `scratch` and earlier stages.

    Global `ARG`s (before the first FROM) are substituted, overridden by `build_args`; a
    FROM that still refers to an unknown variable is left out.
    """
    variables: dict[str, str] = {}
    stages: set[str] = set()
    images: list[str] = []
    seen_from = False
    for line in _logical_lines(dockerfile):
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "ARG" and not seen_from:
            for item in rest.split():
                name, has_default, default = item.partition("=")
                if build_args and name in build_args:
                    variables[name] = build_args[name]
                elif has_default:
                    variables[name] = default.strip("\"'")
        elif instruction == "FROM":
            seen_from = True
            words = [word for word in rest.split() if not word.startswith("--")]
            if not words:
                continue
            image = _expand(words[0], variables)
            if len(words) >= 3 and words[1].lower() == "as":
                stages.add(words[2].lower())
            if image is None or image.lower() == "scratch" or image.lower() in stages:
                continue
            if image not in images:
                images.append(image)
    return images
