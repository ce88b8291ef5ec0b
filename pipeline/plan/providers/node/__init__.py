"""Node.js and Bun: npm, yarn 1, yarn berry, pnpm or bun; a server (a framework's own
production start, or the app's start script), or a static frontend build served by Caddy.

Server apps whose start needs no dev dependency get a second stage: the build stage
installs everything, builds, then removes the dev dependencies; the image receives the
app directory (or, for self-contained outputs such as Next standalone and Nuxt, only that
output).
"""

from __future__ import annotations

from dataclasses import replace

from pipeline.plan.app import App
from pipeline.plan.context import Layout, PlanContext, RuntimeStage, Step
from pipeline.plan.providers.node.frameworks import StaticOutput, static_output
from pipeline.plan.providers.node.hooks import bun_for_scripts, defer_lifecycle, prisma_generate
from pipeline.plan.providers.node.manifest import (
    Manifest,
    find_manifest,
    read_manifest,
    script_words,
)
from pipeline.plan.providers.node.nx import NxApp, nx_app
from pipeline.plan.providers.node.package_manager import (
    CONFIG_DIRS,
    CONFIG_FILES,
    PackageManager,
    detect_package_manager,
)
from pipeline.plan.providers.node.semver import major_satisfies
from pipeline.plan.providers.node.servers import ServerStart, server_start
from pipeline.plan.providers.node.workspaces import workspace_manifests, workspace_patterns
from pipeline.plan.system_packages import add_system_packages, node_matches
from pipeline.plan.versions import Version, node_alias, resolve

DEFAULT_NODE = "22"
MAIN_FILES = ("server.js", "index.js", "main.js", "app.js", "server.mjs", "index.mjs")
TS_FILES = ("index.ts", "server.ts", "src/index.ts", "src/server.ts", "main.ts", "app.ts")
CADDYFILE = "/etc/caddy/Caddyfile"
# Caddy serving a single-page app: unknown paths fall back to index.html.
SPA_CADDYFILE = (
    "mkdir -p /etc/caddy && printf '%s\\n' ':{$PORT}' 'root * /srv' 'encode gzip' "
    f"'try_files {{path}} /index.html' 'file_server' > {CADDYFILE}"
)
CADDY_ENV = {"XDG_CONFIG_HOME": "/home/app/.config", "XDG_DATA_HOME": "/home/app/.local/share"}
# On oven/bun, package binaries with a `#!/usr/bin/env node` line run on bun.
BUN_AS_NODE = 'command -v node >/dev/null || ln -s "$(command -v bun)" /usr/local/bin/node'
# Binaries that come from these dev dependencies keep the dev dependencies in the image.
DEV_BINARIES = {
    "tsx": "tsx", "ts-node": "ts-node", "nodemon": "nodemon", "vite": "vite",
    "prisma": "prisma", "nest": "@nestjs/cli", "tsc": "typescript", "astro": "astro",
    "nuxt": "nuxt", "nuxi": "nuxi", "svelte-kit": "@sveltejs/kit", "remix": "@remix-run/dev",
    "react-router": "@react-router/dev", "ng": "@angular/cli", "concurrently": "concurrently",
}  # fmt: skip


def _node_version(app: App, manifest: Manifest) -> tuple[Version, list[str]]:
    """A version file decides; `engines.node` is a range, so it takes the default when the
    range allows it (`>=18` → 22: an end-of-life Node for an open range breaks apps whose
    dependencies ask for more), else its lowest major (`^18` → 18)."""
    label = f"{manifest.file} engines.node"
    engines = manifest.engine("node") or ""
    version, notes = resolve(
        app,
        "node",
        default=DEFAULT_NODE,
        parts=1,
        exact_files=(".nvmrc", ".node-version"),
        tool_names=("nodejs", "node"),
        constraints=((label, engines),),
        normalize=node_alias,
    )
    if version.source == label and major_satisfies(engines, int(DEFAULT_NODE)):
        version = Version(DEFAULT_NODE, label, engines)
    return version, notes


def _record_version(ctx: PlanContext, runtime: str, version: Version, notes: list[str]) -> None:
    for note in notes:
        ctx.warning(note)
    said = version.evidence(runtime)
    if said:
        ctx.decided(version.source or "", said.split(": ", 1)[1])
    else:
        ctx.info(
            f"no {runtime} version given (.nvmrc, .node-version, engines.node, .tool-versions):"
            f" using {version.value}"
        )


class NodeProvider:
    name = "node"
    looks_for = ("package.json",)  # package.json5 and package.yaml are rare
    start_help = (
        'add a "start" script (or "main" / "module") to package.json, a Procfile with a web: '
        'line, or start = "…" under [build] in click-deploy.toml'
    )

    def detect(self, app: App) -> bool:
        return find_manifest(app) is not None

    def plan(self, app: App, ctx: PlanContext) -> None:
        manifest = read_manifest(app)
        node, notes = _node_version(app, manifest)
        manager = detect_package_manager(app, manifest, ctx, node_major=node.value)
        if ctx.failed:
            return
        if manager.name == "bun":
            manager = replace(manager, on_bun_image=True)
            bun_major = (manager.version or "1").split(".", 1)[0]
            ctx.runtime, ctx.version = "bun", bun_major
            image = ctx.image("bun", bun_major)
            ctx.decided(
                manager.lockfile or manifest.file, f"a Bun app: the oven/bun:{bun_major} image"
            )
        else:
            _record_version(ctx, "node", node, notes)
            ctx.runtime, ctx.version = "node", node.value
            image = ctx.image("node", node.value)
        layout = self._layout(app, ctx, manifest, manager, image)
        self._start(app, ctx, layout, manifest, manager)
        # After the start: run packages go to the runtime stage when there is one.
        add_system_packages(ctx, layout, node_matches(manifest.data), manifest.file)
        if not ctx.failed:
            ctx.layout = layout

    # --- install, hooks and build ------------------------------------------------------

    def _layout(
        self, app: App, ctx: PlanContext, manifest: Manifest, manager: PackageManager, image: str
    ) -> Layout:
        manifests = [manifest.file]
        if manager.lockfile:
            manifests.append(manager.lockfile)
        manifests += [name for name in CONFIG_FILES if app.has_file(name)]
        manifests += [f"{name}/" for name in CONFIG_DIRS if app.has_dir(name)]
        if manager.yarn_path and not any(
            manager.yarn_path.startswith(name) for name in CONFIG_DIRS
        ):
            manifests.append(manager.yarn_path)
        patterns = workspace_patterns(app, manifest.data)
        if patterns:
            members = workspace_manifests(app, patterns)
            manifests += members
            ctx.decided(manifest.file, f"workspaces: {len(members)} member package(s)")

        install = manager.install()
        strip, deferred = (
            (None, []) if ctx.config.install else defer_lifecycle(manifest, manager, ctx)
        )
        if strip is not None:
            install = Step(f"{strip} && {{ {install.command}; }}", install.caches)
        layout = Layout(
            image=image,
            env={"NPM_CONFIG_UPDATE_NOTIFIER": "false", "NPM_CONFIG_FUND": "false"},
            manifests=manifests,
            install=install,
            build_env={"NODE_ENV": "production"},
            runtime_env={"NODE_ENV": "production"},
        )
        if manager.on_bun_image:
            layout.setup.append(Step(BUN_AS_NODE))
        for step in (manager.setup(), bun_for_scripts(manifest, manager, ctx)):
            if step is not None:
                layout.setup.append(step)
        layout.after_source += deferred
        generate = prisma_generate(app, manifest, manager, ctx, deferred)
        if generate is not None:
            layout.after_source.append(generate)
        if "build" in manifest.scripts():
            layout.build = Step(manager.run("build"))
            ctx.decided(manifest.file, f"build script → {layout.build.command}")
        return layout

    # --- what runs -------------------------------------------------------------------------

    def _start(
        self,
        app: App,
        ctx: PlanContext,
        layout: Layout,
        manifest: Manifest,
        manager: PackageManager,
    ) -> None:
        scripts = manifest.scripts()
        if (
            app.has_file("nx.json")
            and manifest.has("nx")
            and not ("build" in scripts and "start" in scripts)
        ):
            chosen = nx_app(app, ctx)
            if chosen is None:
                return
            self._nx(ctx, layout, manager, chosen)
            return
        output = static_output(app, manifest.data)
        start_script = scripts.get("start")
        serves_itself = bool(start_script) and not (
            output is not None and output.is_dev_server(start_script or "")
        )
        if output is not None and not serves_itself and ctx.start_override is None:
            if layout.build is not None:
                self._static_site(ctx, layout, output)
                return
            ctx.warning(
                f"{output.framework} detected but {manifest.file} has no build script; "
                "running it as a Node server"
            )
        server = server_start(app, manifest, manager, ctx)
        if ctx.failed:
            return
        if server is not None and ctx.start_override is None:
            self._framework_server(ctx, layout, server)
        else:
            self._plain_server(app, ctx, layout, manifest, manager)
            if layout.start is None and ctx.start_override is None:
                return
        self._image_stage(ctx, layout, manifest, manager, server)

    def _static_site(self, ctx: PlanContext, layout: Layout, output: StaticOutput) -> None:
        ctx.decided(output.source, f"{output.framework}: static files in {output.output}/")
        ctx.decided("package.json", "no server start script: Caddy serves the build")
        layout.stage = "build"
        layout.runtime_env = dict(CADDY_ENV)
        layout.runtime = RuntimeStage(
            image=ctx.image("caddy"),
            copies=[(f"/app/{output.output}", "/srv")],
            workdir="/srv",
            run=[SPA_CADDYFILE],
            apt=False,
        )
        layout.start = f"caddy run --config {CADDYFILE} --adapter caddyfile"

    def _framework_server(self, ctx: PlanContext, layout: Layout, server: ServerStart) -> None:
        layout.start = server.start
        if layout.build is not None and server.build_caches:
            layout.build = Step(layout.build.command, server.build_caches)
        layout.build_env.update(server.build_env)
        layout.runtime_env.update(server.env)
        layout.writable += server.writable
        ctx.decided(server.source, f"{server.framework} → {server.start}")
        for name, value in server.env.items():
            ctx.decided(
                server.source, f"{name}={value}: {server.framework} listens on all interfaces"
            )
        for note in server.notes:
            ctx.info(note)

    def _plain_server(
        self,
        app: App,
        ctx: PlanContext,
        layout: Layout,
        manifest: Manifest,
        manager: PackageManager,
    ) -> None:
        if "start" in manifest.scripts():
            layout.start = manager.run("start")
            ctx.decided(manifest.file, f"start script → {layout.start}")
            return
        for field in ("main", "module"):
            entry = manifest.string(field)
            if entry is None:
                continue
            path = entry.removeprefix("./")
            if not app.has_file(path):
                if "build" not in manifest.scripts():
                    ctx.warning(f"{manifest.file} {field} {entry} does not exist; ignored")
                    continue
                ctx.info(f"{manifest.file} {field} {entry} is expected from the build script")
            start = self._run_file(ctx, manifest, manager, path)
            if start is not None:
                layout.start = start
                ctx.decided(manifest.file, f"{field} {entry} → {start}")
                return
        candidates = (*TS_FILES, *MAIN_FILES) if manager.on_bun_image else (*MAIN_FILES, *TS_FILES)
        found = app.first_file(*candidates)
        if found is not None:
            start = self._run_file(ctx, manifest, manager, found)
            if start is not None:
                layout.start = start
                ctx.decided(found, f"no start script, main or module: {start}")
                ctx.suggestion(f'add "start": "{start}" to {manifest.file} scripts')

    def _run_file(
        self, ctx: PlanContext, manifest: Manifest, manager: PackageManager, path: str
    ) -> str | None:
        if not path.endswith((".ts", ".mts", ".tsx")) or manager.on_bun_image:
            return manager.node(path)
        if manifest.has("tsx"):
            return manager.bin(f"tsx {path}")
        if (ctx.version or "0").isdigit() and int(ctx.version or "0") >= 23:
            return manager.node(path)  # Node 23.6+ runs TypeScript itself
        ctx.fail(
            f"{manifest.file}: the entry {path} is TypeScript, which node {ctx.version} cannot "
            'run: add a build script that compiles it and a "start" script, add tsx to '
            "dependencies, or ask for node 24 in .nvmrc"
        )
        return None

    def _nx(self, ctx: PlanContext, layout: Layout, manager: PackageManager, chosen: NxApp) -> None:
        layout.build = Step(manager.bin(f"nx build {chosen.name}"))
        ctx.decided(chosen.project_file, f"build → {layout.build.command}")
        if chosen.output is None or chosen.kind == "unknown":
            ctx.fail(
                f"{chosen.project_file}: the build target's executor or outputPath is not one I "
                'know: add "build" and "start" scripts to package.json'
            )
            return
        if chosen.kind == "static":
            self._static_site(ctx, layout, StaticOutput("Nx", chosen.output, chosen.project_file))
            return
        layout.start = manager.node(f"{chosen.output}/main.js")
        ctx.decided(chosen.project_file, f"a Node bundle in {chosen.output}/ → {layout.start}")

    # --- the image ---------------------------------------------------------------------------

    def _image_stage(
        self,
        ctx: PlanContext,
        layout: Layout,
        manifest: Manifest,
        manager: PackageManager,
        server: ServerStart | None,
    ) -> None:
        """A runtime stage without dev dependencies where the start allows it."""
        if server is not None and server.copies is not None and ctx.start_override is None:
            layout.stage = "build"
            layout.runtime = RuntimeStage(image=layout.image, copies=list(server.copies))
            if manager.on_bun_image:
                layout.runtime.run.append(BUN_AS_NODE)
            kept = ", ".join(source.removeprefix("/app/") for source, _ in server.copies)
            ctx.decided(server.source, f"the image holds only {kept}")
            return
        if not manifest.section("devDependencies"):
            return  # nothing to remove
        keep = self._keeps_dev_dependencies(ctx, layout, manifest, manager)
        if keep is not None:
            ctx.info(f"dev dependencies stay in the image: {keep}")
            return
        prune = manager.prune()
        assert prune is not None  # _keeps_dev_dependencies checked
        layout.after_build.append(prune)
        layout.stage = "build"
        layout.runtime = RuntimeStage(image=layout.image, copies=[("/app", "/app")])
        if manager.on_bun_image:
            layout.runtime.run.append(BUN_AS_NODE)  # as in the build stage
        if (
            layout.start
            and manager.name in ("pnpm", "yarn", "berry")
            and layout.start.startswith(f"{manager.command} run ")
        ):
            # npm is in the image; the manager installed in the build stage is not.
            layout.start = "npm run " + layout.start.split(" run ", 1)[1]
        ctx.decided(
            manifest.file,
            f"dev dependencies removed after the build ({prune.command.split(' --')[0]}): "
            "the image gets the app with its production dependencies",
        )

    def _keeps_dev_dependencies(
        self, ctx: PlanContext, layout: Layout, manifest: Manifest, manager: PackageManager
    ) -> str | None:
        """Why the dev dependencies must stay, or None when they can go."""
        if manager.prune() is None:
            return f"{manager.label} has no prune that keeps what the build generated"
        if manager.name in ("bun", "berry") and manifest.has("prisma", "@prisma/client"):
            # Their prune installs node_modules anew: the client prisma generated into it
            # would be lost.
            return f"{manager.label} reinstalls node_modules to prune it, losing the Prisma client"
        start = ctx.start_override or layout.start or ""
        if start.startswith(f"{manager.command} run "):
            script = start.split(" run ", 1)[1].split()[0]
            words = script_words(manifest.scripts().get(script, ""))
        else:
            words = script_words(start)
        build_only = {"bun", "bunx", "pnpm", "yarn"}
        if manager.name == "bun" and manager.on_bun_image:
            build_only -= {"bun", "bunx"}  # the image's own runtime
        if any(word in build_only for word in words):
            return "the start command calls a tool installed for the build only"
        for word in words:
            name = word.removeprefix("node_modules/.bin/")
            package = DEV_BINARIES.get(name, name)
            if manifest.is_dev_only(package):
                return f"the start command runs {name}, from devDependencies ({package})"
        return None
