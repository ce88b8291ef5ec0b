"""Node.js: npm, yarn 1, yarn berry, pnpm or bun; a server, or a static frontend build
served by Caddy."""

from __future__ import annotations

from typing import Any

from pipeline.plan.app import App
from pipeline.plan.context import Layout, PlanContext, RuntimeStage, Step
from pipeline.plan.providers.node.frameworks import StaticOutput, static_output
from pipeline.plan.providers.node.package_manager import (
    CONFIG_DIRS,
    CONFIG_FILES,
    PackageManager,
    detect_package_manager,
)
from pipeline.plan.providers.node.workspaces import workspace_manifests, workspace_patterns
from pipeline.plan.system_packages import add_system_packages, node_matches
from pipeline.plan.versions import node_alias, resolve

DEFAULT_NODE = "22"
MAIN_FILES = ("server.js", "index.js", "main.js", "app.js", "server.mjs", "index.mjs")
CADDYFILE = "/etc/caddy/Caddyfile"
# Caddy serving a single-page app: unknown paths fall back to index.html.
SPA_CADDYFILE = (
    "mkdir -p /etc/caddy && printf '%s\\n' ':{$PORT}' 'root * /srv' 'encode gzip' "
    f"'try_files {{path}} /index.html' 'file_server' > {CADDYFILE}"
)
CADDY_ENV = {"XDG_CONFIG_HOME": "/home/app/.config", "XDG_DATA_HOME": "/home/app/.local/share"}


def _scripts(package: dict[str, Any]) -> dict[str, str]:
    scripts = package.get("scripts")
    if not isinstance(scripts, dict):
        return {}
    return {name: value for name, value in scripts.items() if isinstance(value, str)}


class NodeProvider:
    name = "node"
    looks_for = ("package.json",)
    start_help = (
        'add a "start" script (or "main") to package.json, a Procfile with a web: line, '
        'or start = "…" under [build] in click-deploy.toml'
    )

    def detect(self, app: App) -> bool:
        return app.has_file("package.json")

    def plan(self, app: App, ctx: PlanContext) -> None:
        package = app.read_json_object("package.json")
        manager = detect_package_manager(app, package, ctx)
        engines = package.get("engines")
        engines_node = engines.get("node") if isinstance(engines, dict) else None
        version, notes = resolve(
            app,
            "node",
            default=DEFAULT_NODE,
            parts=1,
            exact_files=(".nvmrc", ".node-version"),
            tool_names=("nodejs", "node"),
            constraints=(("package.json engines.node", str(engines_node or "")),),
            normalize=node_alias,
        )
        for note in notes:
            ctx.warning(note)
        said = version.evidence("node")
        if said:
            ctx.decided(version.source or "", said.split(": ", 1)[1])
        else:
            ctx.info(
                f"no node version given (.nvmrc, .node-version, engines.node, .tool-versions): "
                f"using {version.value}"
            )
        ctx.runtime = "node"
        ctx.version = version.value

        scripts = _scripts(package)
        manifests = ["package.json"]
        if manager.lockfile:
            manifests.append(manager.lockfile)
        manifests += [name for name in CONFIG_FILES if app.has_file(name)]
        manifests += [f"{name}/" for name in CONFIG_DIRS if app.has_dir(name)]
        patterns = workspace_patterns(app, package)
        if patterns:
            members = workspace_manifests(app, patterns)
            manifests += members
            ctx.decided("package.json", f"workspaces: {len(members)} member package(s)")

        layout = Layout(
            image=ctx.image("node", version.value),
            env={"NPM_CONFIG_UPDATE_NOTIFIER": "false", "NPM_CONFIG_FUND": "false", **manager.env},
            manifests=manifests,
            install=manager.install(),
            build_env={"NODE_ENV": "production"},
            runtime_env={"NODE_ENV": "production"},
        )
        add_system_packages(ctx, layout, node_matches(package), "package.json")
        setup = manager.setup()
        if setup is not None:
            layout.setup.append(setup)
        if "build" in scripts:
            layout.build = Step(manager.run("build"))
            ctx.decided("package.json", f"build script → {layout.build.command}")

        output = static_output(app, package)
        start_script = scripts.get("start")
        serves_itself = bool(start_script) and not (
            output is not None and output.is_dev_server(start_script or "")
        )
        if output is not None and not serves_itself and ctx.start_override is None:
            if layout.build is not None:
                self._static_site(ctx, layout, output)
                ctx.layout = layout
                return
            ctx.warning(
                f"{output.framework} detected but package.json has no build script; "
                "running it as a Node server"
            )
        self._server(app, ctx, layout, manager, package, scripts, output)
        ctx.layout = layout

    def _static_site(self, ctx: PlanContext, layout: Layout, output: StaticOutput) -> None:
        ctx.runtime = "node"
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

    def _server(
        self,
        app: App,
        ctx: PlanContext,
        layout: Layout,
        manager: PackageManager,
        package: dict[str, Any],
        scripts: dict[str, str],
        output: StaticOutput | None,
    ) -> None:
        start_script = scripts.get("start")
        if start_script:
            layout.start = manager.run("start")
            ctx.decided("package.json", f"start script → {layout.start}")
            if output is not None and output.is_dev_server(start_script):
                ctx.warning(
                    f"the start script ({start_script}) runs a development server; "
                    "production traffic deserves a real one"
                )
            return
        main = package.get("main")
        if isinstance(main, str) and main.strip() and app.has_file(main.strip().removeprefix("./")):
            layout.start = manager.node(main.strip())
            ctx.decided("package.json", f"main {main} → {layout.start}")
            return
        found = app.first_file(*MAIN_FILES)
        if found is not None:
            layout.start = manager.node(found)
            ctx.decided(found, f"no start script or main: {layout.start}")
            ctx.suggestion(f'add "start": "node {found}" to package.json scripts')
