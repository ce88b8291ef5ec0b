"""Frameworks with a production server of their own: how each starts, on $PORT and all
interfaces, and which files the started server needs.

Each function returns None when the app is not that framework (or the framework builds
static files: see `frameworks.static_output`), and may `ctx.fail` when the configuration
cannot run in a container (a Vercel-only adapter).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pipeline.plan.app import App
from pipeline.plan.context import PlanContext
from pipeline.plan.providers.node.frameworks import config_text, string_option, sveltekit_adapter
from pipeline.plan.providers.node.manifest import Manifest
from pipeline.plan.providers.node.package_manager import PackageManager

ALL_INTERFACES = "0.0.0.0"


@dataclass
class ServerStart:
    framework: str
    source: str  # the file that decided it
    start: str
    env: dict[str, str] = field(default_factory=dict)  # in the running image
    build_env: dict[str, str] = field(default_factory=dict)
    # Only these (build stage path, image path) are needed at run time: a self-contained
    # output. None: the app directory with its production dependencies.
    copies: list[tuple[str, str]] | None = None
    writable: list[str] = field(default_factory=list)
    build_caches: tuple[str, ...] = ()  # the framework's build cache: a mount, not the image
    notes: list[str] = field(default_factory=list)


def _port_is_fixed(script: str) -> bool:
    return re.search(r"(?:-p|--port)[\s=]+\d+", script) is not None


def _keeps_script(script: str | None, *dev_commands: str) -> bool:
    """A start script worth keeping: it exists and is not a dev or preview server."""
    if not script:
        return False
    return not any(re.search(rf"\b{re.escape(command)}\b", script) for command in dev_commands)


# Lockfiles: where one is, Next traces the standalone output from (its tracing root).
_LOCKFILES = ("package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml", "bun.lock")


def _next_standalone(
    source: str, text: str, app: App, build_env: dict[str, str], *, automatic: bool
) -> ServerStart:
    dist = string_option(text, "distDir") or ".next"
    copies = [
        (f"/app/{dist}/standalone", "/app"),
        (f"/app/{dist}/static", f"/app/{dist}/static"),
    ]
    if app.has_dir("public"):
        copies.append(("/app/public", "/app/public"))
    notes = [f"{dist}/standalone holds the server and the dependencies it traces"]
    if automatic:
        notes.insert(
            0,
            f"{source} sets no output: standalone output is made (NEXT_PRIVATE_STANDALONE=1, "
            "read by Next's default config), so the image holds only the traced server; "
            "set output in the Next config to decide yourself",
        )
    return ServerStart(
        "Next.js (standalone)",
        source,
        "node server.js",
        env={"HOSTNAME": ALL_INTERFACES},
        build_env=build_env,
        copies=copies,
        writable=[f"{dist}/cache"],
        build_caches=(f"/app/{dist}/cache",),
        notes=notes,
    )


def _standalone_by_default(app: App, manifest: Manifest, text: str) -> bool:
    """Whether Next can be asked for standalone output without changing the app: the
    config leaves `output` to the default (NEXT_PRIVATE_STANDALONE sets it, Next 12.2 and
    later), the build is `next build`, the start plain `next start` (no custom server),
    and the lockfile is in the app's folder (in a workspace Next traces from the
    workspace root, and the server lands elsewhere in the output)."""
    if re.search(r"\boutput\s*:", text):
        return False
    scripts = manifest.scripts()
    if not re.fullmatch(r"\s*next build\s*", scripts.get("build", "")):
        return False
    start = scripts.get("start")
    if start is not None and not re.fullmatch(r"\s*next start\s*", start):
        return False
    if not any(app.has_file(name) for name in _LOCKFILES):
        return False
    version = re.search(r"(\d+)(?:\.(\d+))?", manifest.dependencies().get("next", ""))
    if version is not None:
        major, minor = int(version.group(1)), int(version.group(2) or 0)
        if (major, minor) < (12, 2):
            return False
    return True


def next_js(app: App, manifest: Manifest, manager: PackageManager) -> ServerStart | None:
    if not manifest.has("next"):
        return None
    source, text = config_text(app, "next.config")
    build_env = {"NEXT_TELEMETRY_DISABLED": "1"}
    if source and re.search(r"\boutput\s*:\s*['\"]standalone['\"]", text):
        return _next_standalone(source, text, app, build_env, automatic=False)
    if _standalone_by_default(app, manifest, text):
        return _next_standalone(
            source or manifest.file,
            text,
            app,
            {**build_env, "NEXT_PRIVATE_STANDALONE": "1"},
            automatic=True,
        )
    script = manifest.scripts().get("start")
    if _keeps_script(script, "next dev") and not _port_is_fixed(script or ""):
        start = manager.run("start")
    else:
        start = manager.bin("next start -p $PORT")
    return ServerStart(
        "Next.js",
        source or manifest.file,
        start,
        build_env=build_env,
        writable=[".next/cache"],
        build_caches=("/app/.next/cache",),
        notes=[
            f"output: 'standalone' in {source or 'next.config.js'} would make the image much "
            "smaller (only the server and the files it uses)"
        ],
    )


def nuxt(manifest: Manifest, manager: PackageManager) -> ServerStart | None:
    if not manifest.has("nuxt"):
        return None
    script = manifest.scripts().get("start")
    env = {"HOST": ALL_INTERFACES, "NITRO_HOST": ALL_INTERFACES}
    if _keeps_script(script, "nuxt dev", "nuxi dev", "nuxt preview", "nuxi preview"):
        return ServerStart("Nuxt", manifest.file, manager.run("start"), env=env)
    return ServerStart(
        "Nuxt",
        manifest.file,
        "node .output/server/index.mjs",
        env=env,
        copies=[("/app/.output", "/app/.output")],
        notes=[".output/ is self-contained (Nitro bundles the dependencies it needs)"],
    )


def sveltekit(
    app: App, manifest: Manifest, manager: PackageManager, ctx: PlanContext
) -> ServerStart | None:
    if not manifest.has("@sveltejs/kit"):
        return None
    adapter, source = sveltekit_adapter(app, manifest.dependencies())
    if adapter == "static":
        return None
    env = {"HOST": ALL_INTERFACES}
    if adapter not in ("node", "auto"):
        ctx.fail(
            f"{app.display(source)} uses @sveltejs/adapter-{adapter}, which builds for that "
            "platform only: use @sveltejs/adapter-node (a server) or adapter-static (files)"
        )
        return None
    out = string_option(app.read_text(source) if source != manifest.file else "", "out")
    out = (out or "build").removeprefix("./").rstrip("/")
    build_env: dict[str, str] = {}
    notes = []
    if adapter == "auto":
        # adapter-auto picks adapter-node (installing it if needed) under this variable.
        build_env["GCP_BUILDPACKS"] = "true"
        notes.append(
            "adapter-auto finds no platform in a container and would build nothing: "
            "GCP_BUILDPACKS=true makes it build with adapter-node (use adapter-node in "
            "svelte.config.js to choose it yourself)"
        )
    script = manifest.scripts().get("start")
    start = (
        manager.run("start")
        if _keeps_script(script, "vite dev", "vite preview")
        else manager.node(out)
    )
    return ServerStart(
        f"SvelteKit (adapter-{adapter})", source, start, env=env, build_env=build_env, notes=notes
    )


def astro(
    app: App, manifest: Manifest, manager: PackageManager, ctx: PlanContext
) -> ServerStart | None:
    if not manifest.has("astro"):
        return None
    source, text = config_text(app, "astro.config")
    adapter = re.search(r"['\"]@astrojs/(node|vercel|netlify|cloudflare)['\"]", text)
    name = adapter.group(1) if adapter else None
    if name is None:
        for candidate in ("node", "vercel", "netlify", "cloudflare"):
            if manifest.has(f"@astrojs/{candidate}"):
                name = candidate
    server_output = re.search(r"\boutput\s*:\s*['\"](server|hybrid)['\"]", text) is not None
    if name is None and not server_output:
        return None  # static
    where = app.display(source or manifest.file)
    if name != "node":
        ctx.fail(
            f"{where}: an Astro server needs an adapter that runs here: add @astrojs/node "
            "(adapter: node({ mode: 'standalone' })), or remove output: 'server' for a static "
            "site"
        )
        return None
    if re.search(r"mode\s*:\s*['\"]middleware['\"]", text):
        script = manifest.scripts().get("start")
        if _keeps_script(script, "astro dev", "astro preview"):
            return ServerStart(
                "Astro (@astrojs/node middleware)",
                source or manifest.file,
                manager.run("start"),
                env={"HOST": ALL_INTERFACES},
            )
        ctx.fail(
            f"{where}: @astrojs/node in middleware mode needs your own server: add a start "
            "script that runs it, or use mode: 'standalone'"
        )
        return None
    out = (string_option(text, "outDir") or "dist").removeprefix("./").rstrip("/")
    return ServerStart(
        "Astro (@astrojs/node standalone)",
        source or manifest.file,
        manager.node(f"{out}/server/entry.mjs"),
        env={"HOST": ALL_INTERFACES},
    )


def react_router(app: App, manifest: Manifest, manager: PackageManager) -> ServerStart | None:
    """React Router framework mode (and Remix on Vite); ssr: false is static (frameworks)."""
    if not manifest.has("@react-router/dev", "@remix-run/dev"):
        return None
    script = manifest.scripts().get("start")
    rr = manifest.has("@react-router/dev")
    framework = "React Router" if rr else "Remix"
    source = (config_text(app, "react-router.config")[0] if rr else None) or manifest.file
    env = {"HOST": ALL_INTERFACES}
    if _keeps_script(script, "react-router dev", "remix dev", "vite dev"):
        return ServerStart(framework, source, manager.run("start"), env=env)
    if rr:
        serve = "react-router-serve ./build/server/index.js"
    else:
        vite = config_text(app, "vite.config")[0] is not None
        serve = "remix-serve ./build/server/index.js" if vite else "remix-serve ./build/index.js"
    return ServerStart(framework, source, manager.bin(serve), env=env)


def angular_ssr(app: App, manifest: Manifest, manager: PackageManager) -> ServerStart | None:
    if not manifest.has("@angular/ssr", "@nguniversal/express-engine"):
        return None
    scripts = manifest.scripts()
    serve = next((name for name in scripts if name.startswith("serve:ssr")), None)
    if serve is not None:
        return ServerStart("Angular SSR", manifest.file, manager.run(serve))
    name = manifest.string("name") or "app"
    if app.has_file("angular.json"):
        projects = app.read_json_object("angular.json").get("projects")
        if isinstance(projects, dict) and projects:
            name = next(iter(projects))
    return ServerStart(
        "Angular SSR", "angular.json", manager.node(f"dist/{name}/server/server.mjs")
    )


def nestjs(manifest: Manifest, manager: PackageManager) -> ServerStart | None:
    if not manifest.has("@nestjs/core"):
        return None
    scripts = manifest.scripts()
    if "start:prod" in scripts:
        return ServerStart("NestJS", manifest.file, manager.run("start:prod"))
    script = scripts.get("start")
    if _keeps_script(script, "nest start"):
        return ServerStart("NestJS", manifest.file, manager.run("start"))
    return ServerStart("NestJS", manifest.file, manager.node("dist/main"))


def server_start(
    app: App, manifest: Manifest, manager: PackageManager, ctx: PlanContext
) -> ServerStart | None:
    """The production start of a known server framework, or None."""
    return (
        next_js(app, manifest, manager)
        or nuxt(manifest, manager)
        or sveltekit(app, manifest, manager, ctx)
        or astro(app, manifest, manager, ctx)
        or react_router(app, manifest, manager)
        or angular_ssr(app, manifest, manager)
        or nestjs(manifest, manager)
    )
