"""The version of the package manager itself: the one the lockfile was written with.

In order: `packageManager` (exact), `engines.<tool>` (the lockfile's version when it fits
the range, else the range's lowest major), mise (`mise.toml`, `.tool-versions`), the
lockfile's format (a Yarn 3 lockfile installed by Yarn 4 "would have been modified"), then
a default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pipeline.plan.app import App, InvalidFile
from pipeline.plan.context import PlanContext
from pipeline.plan.providers.node.manifest import Manifest
from pipeline.plan.providers.node.semver import lowest_major, major_satisfies
from pipeline.plan.versions import declared_tool_version

ManagerName = Literal["npm", "pnpm", "yarn", "berry", "bun"]

DEFAULTS: dict[str, str] = {"pnpm": "9", "yarn": "1.22.22", "berry": "4", "bun": "1"}
# yarn.lock `__metadata: version:` → the yarn release that writes that format.
BERRY_BY_LOCKFILE = {"4": "2.4.3", "5": "3.1.1", "6": "3.8.7", "7": "4", "8": "4"}
# pnpm-lock.yaml `lockfileVersion:` → pnpm major.
PNPM_BY_LOCKFILE = {"5.3": "6", "5.4": "7", "6": "8", "7": "9", "9": "9"}
# The npm each Node.js major ships with.
NPM_BUNDLED = {18: 10, 20: 10, 22: 10, 24: 11}


@dataclass(frozen=True)
class ToolVersion:
    version: str | None  # None: nothing to install (npm: the image's own)
    source: str | None  # what decided it, for the evidence


def _engines_key(name: ManagerName) -> str:
    return "yarn" if name == "berry" else name


def _from_lockfile(app: App, name: ManagerName, lock: str | None) -> ToolVersion | None:
    if lock is None:
        return None
    head = (app.read_optional(lock) or "")[:2000] if not lock.endswith(".lockb") else ""
    if name == "pnpm":
        match = re.search(r"^lockfileVersion:\s*['\"]?(\d+)(?:\.(\d+))?", head, re.MULTILINE)
        if match:
            major, minor = match.group(1), match.group(2)
            key = f"{major}.{minor}" if major == "5" else major
            found = PNPM_BY_LOCKFILE.get(key)
            if found:
                label = major + (f".{minor}" if minor else "")
                return ToolVersion(found, f"{lock} lockfileVersion {label}")
    if name == "berry":
        match = re.search(r"^__metadata:\s*\n\s+version:\s*['\"]?(\d+)", head, re.MULTILINE)
        if match and match.group(1) in BERRY_BY_LOCKFILE:
            return ToolVersion(
                BERRY_BY_LOCKFILE[match.group(1)], f"{lock} __metadata version {match.group(1)}"
            )
    return None


def _tool_pin(app: App, name: ManagerName) -> ToolVersion | None:
    """The version mise's `mise.toml` or `.tool-versions` pins for the tool."""
    try:
        found = declared_tool_version(app, _engines_key(name))
    except InvalidFile:
        return None
    if found is None or not found.value:
        return None
    return ToolVersion(found.value, found.source)


def _npm(manifest: Manifest, declared: str | None, node_major: str) -> ToolVersion:
    if declared:
        return ToolVersion(declared, f"{manifest.file} packageManager")
    spec = manifest.engine("npm")
    if spec is None:
        return ToolVersion(None, None)
    bundled = NPM_BUNDLED.get(int(node_major)) if node_major.isdigit() else None
    if bundled is not None and major_satisfies(spec, bundled):
        return ToolVersion(None, f"{manifest.file} engines.npm {spec}: node {node_major}'s npm")
    major = lowest_major(spec)
    if major is None:
        return ToolVersion(None, None)
    return ToolVersion(str(major), f"{manifest.file} engines.npm {spec}")


def manager_version(
    app: App,
    manifest: Manifest,
    name: ManagerName,
    lock: str | None,
    ctx: PlanContext,
    node_major: str,
) -> ToolVersion:
    declared_tool, _, declared_rest = (manifest.string("packageManager") or "").partition("@")
    declared = declared_rest.split("+", 1)[0].strip() or None
    if declared_tool.strip() != _engines_key(name):
        declared = None
    if name == "npm":
        return _npm(manifest, declared, node_major)
    if declared:
        return ToolVersion(declared, f"{manifest.file} packageManager")
    from_lock = _from_lockfile(app, name, lock)
    spec = manifest.engine(_engines_key(name))
    if spec is not None:
        if from_lock is not None and from_lock.version is not None:
            lock_major = int(re.match(r"\d+", from_lock.version).group(0))  # type: ignore[union-attr]
            if major_satisfies(spec, lock_major):
                return ToolVersion(
                    from_lock.version, f"{from_lock.source}, within engines.{_engines_key(name)}"
                )
        major = lowest_major(spec)
        if major is not None:
            return ToolVersion(str(major), f"{manifest.file} engines.{_engines_key(name)} {spec}")
        ctx.warning(
            f"{manifest.file} engines.{_engines_key(name)} {spec!r} names no version; ignored"
        )
    pinned = _tool_pin(app, name)
    if pinned is not None:
        return pinned
    if from_lock is not None:
        return ToolVersion(from_lock.version, from_lock.source)
    return ToolVersion(DEFAULTS[name], None)
