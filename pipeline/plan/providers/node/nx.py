"""Nx workspaces: which app to build and start, from the projects' `project.json`.

The app is the only `projectType: application` project, or the one `NX_APP` names (in the
service's env or build args). The build is `nx build <app>`; its output path and executor
say how it runs: a Node bundle starts with `node <outputPath>/main.js`, a browser build is
served as static files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.plan.app import App
from pipeline.plan.context import PlanContext

NX_APP = "NX_APP"
NODE_EXECUTORS = ("@nx/webpack:webpack", "@nx/esbuild:esbuild", "@nx/js:tsc", "@nx/js:swc",
                  "@nx/rollup:rollup", "@nrwl/webpack:webpack", "@nrwl/node:webpack",
                  "@nrwl/js:tsc", "@nrwl/esbuild:esbuild")  # fmt: skip
STATIC_EXECUTORS = ("@nx/vite:build", "@nx/web:webpack", "@nx/angular:application",
                    "@angular-devkit/build-angular:application",
                    "@angular-devkit/build-angular:browser", "@nrwl/web:webpack",
                    "@nrwl/vite:build")  # fmt: skip


@dataclass(frozen=True)
class NxApp:
    name: str
    project_file: str
    kind: str  # "node", "static" or "unknown"
    output: str | None


def _projects(app: App) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in app.glob("**/project.json"):
        if "node_modules" in path.split("/"):
            continue
        data = app.read_json_object(path)
        found.append((path, data))
    return found


def _describe(path: str, data: dict[str, Any]) -> NxApp:
    name = str(data.get("name") or path.rsplit("/", 2)[-2] if "/" in path else "app")
    targets = data.get("targets") or {}
    build = targets.get("build") if isinstance(targets, dict) else None
    executor = str(build.get("executor", "")) if isinstance(build, dict) else ""
    options = (build.get("options") or {}) if isinstance(build, dict) else {}
    output = options.get("outputPath") if isinstance(options, dict) else None
    if isinstance(output, dict):
        output = output.get("base")
    kind = "unknown"
    if executor in NODE_EXECUTORS and str(options.get("target", "node")) == "node":
        kind = "node"
    elif executor in STATIC_EXECUTORS or executor in NODE_EXECUTORS:
        kind = "static"
    return NxApp(name, path, kind, str(output).removeprefix("./") if output else None)


def nx_app(app: App, ctx: PlanContext) -> NxApp | None:
    """The Nx app to deploy; None (after `ctx.fail`) when it cannot be chosen."""
    apps = [
        _describe(path, data)
        for path, data in _projects(app)
        if data.get("projectType", "application") == "application"
        and not path.rsplit("/", 2)[-2].endswith("-e2e")
    ]
    wanted = ctx.config.env.get(NX_APP) or ctx.config.build_args.get(NX_APP)
    if wanted:
        chosen = [item for item in apps if wanted in (item.name, item.project_file)]
        if not chosen:
            names = ", ".join(item.name for item in apps) or "none"
            ctx.fail(f"{NX_APP}={wanted} names no Nx application (applications: {names})")
            return None
        ctx.decided(f"{NX_APP} (service env)", f"Nx app {chosen[0].name}")
        return chosen[0]
    if len(apps) == 1:
        ctx.decided(apps[0].project_file, f"the workspace's only Nx application: {apps[0].name}")
        return apps[0]
    names = ", ".join(item.name for item in apps) or "none with a project.json"
    ctx.fail(
        f"nx.json: an Nx workspace with {len(apps)} applications ({names}): set {NX_APP}=<name> "
        "in the service's env to choose the one to deploy, or add build and start scripts to "
        "package.json"
    )
    return None
