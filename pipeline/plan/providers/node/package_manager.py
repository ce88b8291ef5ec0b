"""Which package manager installs a Node app: `packageManager` first, then lockfiles.

Tools are installed with `npm install -g` (pinned to the `packageManager` version when it
names one), never corepack: both the official images and the Debian-packaged ones have
npm, and only npm.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.plan.app import App
from pipeline.plan.context import PlanContext, Step

ManagerName = Literal["npm", "pnpm", "yarn", "berry", "bun"]

NPM_CACHE = "/root/.npm"
YARN_CACHE = "/root/.cache/yarn"
LOCKFILES: tuple[tuple[str, ManagerName], ...] = (
    ("bun.lock", "bun"),
    ("bun.lockb", "bun"),
    ("pnpm-lock.yaml", "pnpm"),
    ("yarn.lock", "yarn"),
    ("package-lock.json", "npm"),
    ("npm-shrinkwrap.json", "npm"),
)
# Files the install reads, copied with package.json before the source.
CONFIG_FILES = (".npmrc", ".yarnrc", ".yarnrc.yml", "pnpm-workspace.yaml", "bunfig.toml")
CONFIG_DIRS = (".yarn/releases", ".yarn/plugins", ".yarn/patches", "patches")

DEFAULT_VERSIONS: dict[ManagerName, str] = {
    "pnpm": "9",
    "yarn": "1.22.22",
    "berry": "4",
    "bun": "1",
}
_PNPM_BY_LOCKFILE = {"9": "9", "6": "8", "5": "7"}


@dataclass(frozen=True)
class PackageManager:
    name: ManagerName
    version: str | None  # pinned tool version, None for npm
    lockfile: str | None
    pnp: bool = False  # yarn berry Plug'n'Play: node needs `yarn node`

    @property
    def label(self) -> str:
        if self.name == "berry":
            return f"yarn {self.version}" if self.version else "yarn (berry)"
        return f"{self.name} {self.version}" if self.version else self.name

    @property
    def command(self) -> str:
        return "yarn" if self.name in ("yarn", "berry") else self.name

    @property
    def env(self) -> dict[str, str]:
        return {"YARN_CACHE_FOLDER": YARN_CACHE} if self.name == "yarn" else {}

    def run(self, script: str) -> str:
        return f"{self.command} run {script}"

    def node(self, file: str) -> str:
        """Run a JavaScript file with this manager's runtime."""
        if self.name == "bun":
            return f"bun {file}"
        if self.pnp:
            return f"yarn node {file}"
        return f"node {file}"

    def setup(self) -> Step | None:
        """Install the tool itself (`--force`: the official image ships a yarn 1 binary)."""
        package = {
            "npm": None,
            "pnpm": "pnpm",
            "yarn": "yarn",
            "berry": "@yarnpkg/cli-dist",
            "bun": "bun",
        }[self.name]
        if package is None:
            return None
        version = self.version or DEFAULT_VERSIONS[self.name]
        return Step(f"npm install -g --force {package}@{version}", (NPM_CACHE,))

    def install(self) -> Step:
        locked = self.lockfile is not None
        if self.name == "npm":
            return Step("npm ci" if locked else "npm install", (NPM_CACHE,))
        if self.name == "pnpm":
            frozen = " --frozen-lockfile" if locked else ""
            return Step(f"pnpm install{frozen}", ("/root/.local/share/pnpm/store",))
        if self.name == "yarn":
            frozen = " --frozen-lockfile" if locked else ""
            return Step(f"yarn install{frozen}", (YARN_CACHE,))
        if self.name == "berry":
            immutable = " --immutable" if locked else ""
            return Step(f"yarn install{immutable}", ("/root/.yarn/berry/cache",))
        frozen = " --frozen-lockfile" if locked else ""
        return Step(f"bun install{frozen}", ("/root/.bun/install/cache",))


def _parse_package_manager(value: str) -> tuple[str, str | None]:
    name, _, rest = value.partition("@")
    version = rest.split("+", 1)[0].strip() or None
    return name.strip(), version


def _is_berry(app: App) -> bool:
    if app.has_file(".yarnrc.yml"):
        return True
    head = (app.read_optional("yarn.lock") or "")[:2000]
    return "__metadata:" in head


def _pnp(app: App) -> bool:
    text = app.read_optional(".yarnrc.yml") or ""
    match = re.search(r"^nodeLinker:\s*['\"]?([\w-]+)", text, re.MULTILINE)
    return match is None or match.group(1) == "pnp"


def _pnpm_version_from_lockfile(app: App) -> str | None:
    head = (app.read_optional("pnpm-lock.yaml") or "")[:500]
    match = re.search(r"^lockfileVersion:\s*['\"]?(\d+)", head, re.MULTILINE)
    return _PNPM_BY_LOCKFILE.get(match.group(1)) if match else None


def detect_package_manager(app: App, package: dict[str, Any], ctx: PlanContext) -> PackageManager:
    lockfile = next(((name, manager) for name, manager in LOCKFILES if app.has_file(name)), None)
    declared = package.get("packageManager")
    if isinstance(declared, str) and declared.strip():
        tool, version = _parse_package_manager(declared)
        name: ManagerName | None = None
        if tool == "yarn":
            major = re.match(r"\d+", version or "")
            name = "berry" if (major and int(major.group(0)) >= 2) or _is_berry(app) else "yarn"
        elif tool in ("npm", "pnpm", "bun"):
            name = tool  # type: ignore[assignment]
        if name is not None:
            lock = lockfile[0] if lockfile else None
            if lockfile and lockfile[1] != ("yarn" if name == "berry" else name):
                ctx.warning(
                    f"package.json says packageManager {declared} but {lockfile[0]} is a "
                    f"{lockfile[1]} lockfile; installing with {tool} without a lockfile"
                )
                lock = None
            pinned = None if name == "npm" else version
            manager = PackageManager(name, pinned, lock, pnp=name == "berry" and _pnp(app))
            ctx.decided("package.json", f"packageManager {declared} → {manager.label}")
            if name == "npm" and version:
                ctx.info(f"packageManager npm@{version}: the image's own npm is used")
            return manager
        ctx.warning(f"package.json: packageManager {declared!r} is not one I know; ignored")
    if lockfile is None:
        ctx.info("no lockfile: dependencies are resolved at build time (npm install)")
        ctx.suggestion("commit a lockfile (package-lock.json) for repeatable builds")
        return PackageManager("npm", None, None)
    file, name = lockfile
    if name == "yarn" and _is_berry(app):
        manager = PackageManager("berry", None, file, pnp=_pnp(app))
    elif name == "pnpm":
        manager = PackageManager("pnpm", _pnpm_version_from_lockfile(app), file)
    else:
        manager = PackageManager(name, None, file)
    ctx.decided(file, f"{manager.label} installs the dependencies")
    return manager
