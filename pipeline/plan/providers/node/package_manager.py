"""Which package manager installs a Node app, how, and what it leaves in the image.

`packageManager` first, then lockfiles. Tools are installed with `npm install -g` (pinned
to the version found), never corepack: both the official images and the Debian-packaged
ones have npm, and only npm.

What a cache mount may hold: only what can be thrown away. npm's, pnpm's, yarn 1's and
bun's download caches are copied into node_modules, so they are mounts. Yarn berry's
Plug'n'Play runs from its cache (the zip archives), so with PnP the cache is the project's
own `.yarn/cache`, in the image. Settings pointing into /root are given to the commands
that use them, never left in the image's environment (the app runs as another user).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.plan.app import App
from pipeline.plan.context import PlanContext, Step
from pipeline.plan.providers.node.manifest import Manifest
from pipeline.plan.providers.node.tool_versions import ManagerName, ToolVersion, manager_version

NPM_CACHE = "/root/.npm"
YARN_CACHE = "/root/.cache/yarn"
BERRY_GLOBAL_CACHE = "/root/.yarn/berry/cache"
PNPM_STORE = "/root/.local/share/pnpm/store"
BUN_CACHE = "/root/.bun/install/cache"
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
TOOL_PACKAGES: dict[ManagerName, str] = {
    "npm": "npm",
    "pnpm": "pnpm",
    "yarn": "yarn",
    "berry": "@yarnpkg/cli-dist",
    "bun": "bun",
}


def _warn_and(fallback: str, failed: str, lockfile: str) -> str:
    """`failed || { warning; fallback; }`: the warning lands in the build log."""
    warning = (
        f"click-deploy: {lockfile} does not match package.json: '{fallback}' instead "
        "(commit an updated lockfile)"
    )
    return f'{failed} || {{ echo "{warning}" >&2; {fallback}; }}'


@dataclass(frozen=True)
class PackageManager:
    name: ManagerName
    version: str | None  # the tool version to install; None: the image's own (npm)
    lockfile: str | None
    pnp: bool = False  # yarn berry Plug'n'Play: node needs `yarn node`
    yarn_path: str | None = None  # .yarnrc.yml yarnPath: that release runs every yarn command
    on_bun_image: bool = False  # bun apps run on oven/bun, where bun itself is there

    @property
    def label(self) -> str:
        tool = "yarn" if self.name == "berry" else self.name
        if self.version:
            return f"{tool} {self.version}"
        return "yarn (berry)" if self.name == "berry" else tool

    @property
    def command(self) -> str:
        return "yarn" if self.name in ("yarn", "berry") else self.name

    @property
    def uses_node_modules(self) -> bool:
        return not self.pnp

    def run(self, script: str) -> str:
        return f"{self.command} run {script}"

    def node(self, file: str) -> str:
        """Run a JavaScript (or, with bun, TypeScript) file with this manager's runtime."""
        if self.name == "bun":
            return f"bun {file}"
        if self.pnp:
            return f"yarn node {file}"
        return f"node {file}"

    def bin(self, command: str) -> str:
        """Run an installed package's binary (`next start -p $PORT`)."""
        if self.pnp:
            return f"yarn {command}"
        if self.name == "bun":
            return f"bunx {command}"
        return f"node_modules/.bin/{command}"

    def setup(self) -> Step | None:
        """Install the tool itself (`--force`: the official image ships a yarn 1 binary)."""
        if self.on_bun_image or (self.name == "npm" and self.version is None):
            return None
        version = self.version or "latest"
        return Step(f"npm install -g --force {TOOL_PACKAGES[self.name]}@{version}", (NPM_CACHE,))

    def install(self) -> Step:
        lock = self.lockfile
        if self.name == "npm":
            if lock is None:
                return Step("npm install", (NPM_CACHE,))
            return Step(_warn_and("npm install", "npm ci", lock), (NPM_CACHE,))
        if self.name == "pnpm":
            if lock is None:
                return Step("pnpm install", (PNPM_STORE,))
            command = _warn_and(
                "pnpm install --no-frozen-lockfile", "pnpm install --frozen-lockfile", lock
            )
            return Step(command, (PNPM_STORE,))
        if self.name == "yarn":
            env = f"YARN_CACHE_FOLDER={YARN_CACHE} "
            if lock is None:
                return Step(f"{env}yarn install", (YARN_CACHE,))
            command = _warn_and(f"{env}yarn install", f"{env}yarn install --frozen-lockfile", lock)
            return Step(command, (YARN_CACHE,))
        if self.name == "berry":
            # PnP runs from the archives: they go to .yarn/cache, in the image.
            env = "YARN_ENABLE_GLOBAL_CACHE=false " if self.pnp else ""
            caches = () if self.pnp else (BERRY_GLOBAL_CACHE,)
            if lock is None:
                return Step(f"{env}yarn install", caches)
            command = _warn_and(
                f"{env}yarn install --no-immutable", f"{env}yarn install --immutable", lock
            )
            return Step(command, caches)
        if lock is None:
            return Step("bun install", (BUN_CACHE,))
        return Step(_warn_and("bun install", "bun install --frozen-lockfile", lock), (BUN_CACHE,))

    def prune(self) -> Step | None:
        """Remove the dev dependencies after the build, or None where that is not safe."""
        if self.name == "npm":
            return Step("npm prune --omit=dev --ignore-scripts", (NPM_CACHE,))
        if self.name == "pnpm":
            # --ignore-scripts came with pnpm 8.15.6
            old = re.match(r"[678]\b", self.version or "") is not None
            flags = "--prod" if old else "--prod --ignore-scripts"
            return Step(f"pnpm prune {flags}", (PNPM_STORE,))
        if self.name == "yarn":
            # Yarn 1 has no prune: a production install removes the dev dependencies.
            return Step(
                f"YARN_CACHE_FOLDER={YARN_CACHE} yarn install --production --prefer-offline",
                (YARN_CACHE,),
            )
        if self.name == "berry" and not self.pnp:
            # `workspaces focus` is built into Yarn 4 (a plugin fetched from the network
            # before); --production keeps only the dependencies, for every workspace. Not
            # with Plug'n'Play: the app then runs through yarn, which the image lacks.
            major = re.match(r"(\d+)", self.version or "")
            if major is None or int(major.group(1)) < 4:
                return None
            return Step("yarn workspaces focus --all --production", (BERRY_GLOBAL_CACHE,))
        if self.name == "bun":
            # bun install --production leaves what is installed in place: a fresh one from
            # the lockfile (and the download cache) is the prune.
            return Step(
                "rm -rf node_modules && bun install --production --frozen-lockfile", (BUN_CACHE,)
            )
        return None


def _parse_package_manager(value: str) -> tuple[str, str | None]:
    name, _, rest = value.partition("@")
    version = rest.split("+", 1)[0].strip() or None
    return name.strip(), version


def yarnrc_setting(app: App, key: str) -> str | None:
    text = app.read_optional(".yarnrc.yml") or ""
    match = re.search(rf"^{key}:\s*['\"]?([^'\"#\n]+?)['\"]?\s*(#.*)?$", text, re.MULTILINE)
    return match.group(1).strip() if match else None


def _is_berry(app: App) -> bool:
    if app.has_file(".yarnrc.yml"):
        return True
    head = (app.read_optional("yarn.lock") or "")[:2000]
    return "__metadata:" in head


def _pnp(app: App) -> bool:
    linker = yarnrc_setting(app, "nodeLinker")
    return linker is None or linker == "pnp"


def _declared(manifest: Manifest, ctx: PlanContext) -> tuple[ManagerName, str, str | None] | None:
    declared = manifest.string("packageManager")
    if declared is None:
        return None
    tool, version = _parse_package_manager(declared)
    if tool == "yarn":
        major = re.match(r"\d+", version or "")
        berry = major is not None and int(major.group(0)) >= 2
        return ("berry" if berry else "yarn"), declared, version
    if tool in ("npm", "pnpm", "bun"):
        return tool, declared, version  # type: ignore[return-value]
    ctx.warning(f"{manifest.file}: packageManager {declared!r} is not one I know; ignored")
    return None


def detect_package_manager(
    app: App, manifest: Manifest, ctx: PlanContext, *, node_major: str
) -> PackageManager:
    lockfile = next(((name, manager) for name, manager in LOCKFILES if app.has_file(name)), None)
    declared = _declared(manifest, ctx)
    name: ManagerName
    lock: str | None
    if declared is not None:
        name, text, _ = declared
        if name == "yarn" and _is_berry(app) and not re.match(r"yarn@1\b", text):
            name = "berry"
        lock = lockfile[0] if lockfile else None
        lock_family = lockfile[1] if lockfile else None
        if lockfile and lock_family != ("yarn" if name == "berry" else name):
            ctx.warning(
                f"{manifest.file} says packageManager {text} but {lockfile[0]} is a "
                f"{lock_family} lockfile; installing with {name if name != 'berry' else 'yarn'}"
                " without a lockfile"
            )
            lock = None
    elif lockfile is not None:
        lock, name = lockfile
        if name == "yarn" and _is_berry(app):
            name = "berry"
    else:
        lock, name = None, "npm"
        ctx.info("no lockfile: dependencies are resolved at build time")
        ctx.suggestion("commit a lockfile (package-lock.json) for repeatable builds")
    if manifest.pnpm_only and name != "pnpm":
        ctx.decided(manifest.file, "only pnpm reads this manifest: pnpm installs")
        name, lock = "pnpm", lock if lock == "pnpm-lock.yaml" else None
    return _with_version(app, manifest, ctx, name, lock, node_major)


def _with_version(
    app: App,
    manifest: Manifest,
    ctx: PlanContext,
    name: ManagerName,
    lock: str | None,
    node_major: str,
) -> PackageManager:
    yarn_path = yarnrc_setting(app, "yarnPath") if name in ("yarn", "berry") else None
    if yarn_path is not None:
        if not app.has_file(yarn_path.removeprefix("./")):
            ctx.fail(
                f"{app.display('.yarnrc.yml')}: yarnPath {yarn_path} does not exist in the "
                "repository: commit that file (yarn set version writes it) or remove yarnPath"
            )
        ctx.decided(".yarnrc.yml", f"yarnPath {yarn_path}: that yarn release runs the install")
        if name == "yarn":
            name = "berry"
    found: ToolVersion = manager_version(app, manifest, name, lock, ctx, node_major)
    pnp = name == "berry" and _pnp(app)
    manager = PackageManager(
        name,
        found.version,
        lock,
        pnp=pnp,
        yarn_path=yarn_path.removeprefix("./") if yarn_path else None,
    )
    where = f" ({found.source})" if found.source else ""
    if lock is not None:
        ctx.decided(lock, f"{manager.label}{where} installs the dependencies")
    else:
        ctx.decided(manifest.file, f"{manager.label}{where} installs the dependencies")
    if pnp:
        ctx.decided(
            ".yarnrc.yml",
            "Plug'n'Play (no nodeLinker: node-modules): the package archives go to "
            ".yarn/cache in the image, not to a build cache",
        )
    return manager
