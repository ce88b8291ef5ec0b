"""Workspaces: each member's package.json is copied before install, with the root's."""

from __future__ import annotations

import re
from typing import Any

from pipeline.plan.app import App


def _pnpm_patterns(text: str) -> list[str]:
    patterns = []
    in_packages = False
    for line in text.splitlines():
        if re.match(r"^packages\s*:", line):
            in_packages = True
            continue
        if in_packages:
            item = re.match(r"^\s+-\s*['\"]?([^'\"#]+?)['\"]?\s*(#.*)?$", line)
            if item:
                patterns.append(item.group(1).strip())
            elif line.strip() and not line.startswith((" ", "\t")):
                in_packages = False
    return patterns


def workspace_patterns(app: App, package: dict[str, Any]) -> list[str]:
    declared = package.get("workspaces")
    if isinstance(declared, dict):
        declared = declared.get("packages")
    patterns = (
        [item for item in declared if isinstance(item, str)] if isinstance(declared, list) else []
    )
    text = app.read_optional("pnpm-workspace.yaml")
    if text is not None:
        patterns += _pnpm_patterns(text)
    return patterns


def workspace_manifests(app: App, patterns: list[str]) -> list[str]:
    """The package.json of every workspace member, sorted, without the root's."""
    found: set[str] = set()
    excluded: set[str] = set()
    for pattern in patterns:
        negated = pattern.startswith("!")
        cleaned = pattern.lstrip("!").strip().rstrip("/").removeprefix("./")
        if not cleaned or cleaned.startswith("/") or ".." in cleaned.split("/"):
            continue
        matches = {
            path
            for path in app.glob(f"{cleaned}/package.json")
            if "node_modules" not in path.split("/")
        }
        (excluded if negated else found).update(matches)
    return sorted(found - excluded - {"package.json"})
