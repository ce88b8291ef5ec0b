"""Just enough of npm's semver ranges to ask "does major N satisfy this range?"."""

from __future__ import annotations

import re

from pipeline.plan.versions import lower_bound

_PART = re.compile(r"(>=|<=|>|<|=|\^|~)?\s*v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?")


def _comparator_allows(operator: str, numbers: tuple[int | None, ...], major: int) -> bool:
    wanted, minor = numbers[0], numbers[1]
    if wanted is None:  # "*", "x"
        return True
    if operator in ("", "=", "^", "~"):
        return major == wanted
    if operator == ">=":
        return major >= wanted
    if operator == ">":
        return major > wanted if minor is None else major >= wanted
    if operator == "<":
        return major < wanted if not minor else major <= wanted
    return major <= wanted  # "<="


def _alternative_allows(alternative: str, major: int) -> bool:
    hyphen = re.match(r"^\s*v?(\d+)\S*\s+-\s+v?(\d+)", alternative)
    if hyphen:
        return int(hyphen.group(1)) <= major <= int(hyphen.group(2))
    comparators = _PART.findall(alternative)
    if not comparators:
        return True
    for operator, *parts in comparators:
        numbers = tuple(int(part) if part.isdigit() else None for part in parts)
        if not _comparator_allows(operator, numbers, major):
            return False
    return True


def major_satisfies(spec: str, major: int) -> bool:
    """Whether some version with this major is allowed by `spec` (`^8`, `>=7 <9`, `8.x`,
    `7 || 8`, `latest` and other tags allow anything)."""
    if not re.search(r"\d", spec):
        return True
    return any(_alternative_allows(part, major) for part in re.split(r"\|\|", spec))


def lowest_major(spec: str) -> int | None:
    bound = lower_bound(spec)
    return bound[0] if bound else None
