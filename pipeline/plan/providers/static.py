"""A static site: index.html, public/, or a Staticfile (`root: dist`), served by Caddy.

The Staticfile settings of Cloud Foundry's staticfile buildpack are honoured: `root`,
`pushstate: enabled` (a single-page app: unknown paths answer index.html; also written
`index_fallback: true` or `spa: true`) and `directory: visible` (listings). A repository
`Caddyfile` is used as Caddy's configuration instead, listening where it says (`:{$PORT}`).
"""

from __future__ import annotations

import re

from pipeline.plan.app import App
from pipeline.plan.context import Layout, PlanContext, RuntimeStage, Step

SITE = "/site"
CADDYFILE = "/etc/caddy/Caddyfile"
# Files that configure the deploy and should not be served.
NOT_SERVED = ("Staticfile", "click-deploy.toml", "Procfile", ".dockerignore", "Caddyfile")
CADDY_ENV = {"XDG_CONFIG_HOME": "/home/app/.config", "XDG_DATA_HOME": "/home/app/.local/share"}
_ENABLED = {"enabled", "true", "yes", "on", "1", "visible"}


def staticfile_settings(text: str) -> dict[str, str]:
    """`key: value` lines of a Staticfile (YAML of one level), keys lower-cased."""
    settings = {}
    for line in text.splitlines():
        match = re.match(r"^\s*([A-Za-z_]+)\s*:\s*['\"]?([^'\"#]*?)['\"]?\s*(?:#.*)?$", line)
        if match:
            settings[match.group(1).lower()] = match.group(2).strip()
    return settings


def staticfile_root(text: str) -> str | None:
    root = staticfile_settings(text).get("root")
    return root.strip("/") or "." if root else None


def _caddyfile(lines: list[str]) -> str:
    quoted = " ".join(f"'{line}'" for line in lines)
    return f"mkdir -p /etc/caddy && printf '%s\\n' {quoted} > {CADDYFILE}"


class StaticProvider:
    name = "static"
    looks_for = ("index.html", "public/", "Staticfile", "Caddyfile")
    start_help = "add an index.html"

    def detect(self, app: App) -> bool:
        return app.has_any("index.html", "Staticfile", "Caddyfile") or app.has_dir("public")

    def plan(self, app: App, ctx: PlanContext) -> None:
        root = "."
        settings: dict[str, str] = {}
        staticfile = app.read_optional("Staticfile")
        if staticfile is not None:
            settings = staticfile_settings(staticfile)
            configured = staticfile_root(staticfile)
            if configured and configured != ".":
                if ".." in configured.split("/") or not app.has_dir(configured):
                    ctx.fail(f"Staticfile: root {configured}/ is not a directory in the app")
                    return
                root = configured
            ctx.decided("Staticfile", f"serves {root}/" if root != "." else "serves the app root")
        elif app.has_file("index.html"):
            ctx.decided("index.html", "serves the app root")
        elif app.has_dir("public"):
            root = "public"
            ctx.decided("public/", "serves public/")
        if not app.has_file("index.html" if root == "." else f"{root}/index.html"):
            ctx.warning(f"{root}/ has no index.html; / will list nothing")
        ctx.runtime = "static"
        ctx.version = None
        source = SITE if root == "." else f"{SITE}/{root}"
        runtime = RuntimeStage(
            image=ctx.image("caddy"), copies=[(source, "/srv")], workdir="/srv", apt=False
        )
        layout = Layout(
            image=ctx.image("caddy"),
            stage="site",
            workdir=SITE,
            runtime=runtime,
            runtime_env=dict(CADDY_ENV),
            start="caddy file-server --root /srv --listen :$PORT",
            apt=False,
        )
        commands = []
        if app.has_file("Caddyfile"):
            commands.append(f"mkdir -p /etc/caddy && mv Caddyfile {CADDYFILE}")
            runtime.copies.append((CADDYFILE, CADDYFILE))
            layout.start = f"caddy run --config {CADDYFILE} --adapter caddyfile"
            ctx.decided("Caddyfile", "the repository's Caddyfile configures Caddy")
            text = app.read_text("Caddyfile")
            if "{$PORT}" not in text and "{env.PORT}" not in text:
                ctx.warning(
                    "Caddyfile does not listen on {$PORT}: the service's port is $PORT "
                    "(8080); write the site address as :{$PORT}"
                )
            if staticfile is not None:
                ctx.info("Staticfile settings other than root are ignored: the Caddyfile decides")
        else:
            spa = any(
                settings.get(key, "").lower() in _ENABLED
                for key in ("pushstate", "index_fallback", "spa")
            )
            browse = settings.get("directory", "").lower() in _ENABLED
            if spa or browse:
                lines = [":{$PORT}", "root * /srv", "encode gzip"]
                if spa:
                    lines.append("try_files {path} /index.html")
                    ctx.decided("Staticfile", "pushstate: unknown paths answer /index.html")
                lines.append("file_server browse" if browse else "file_server")
                if browse:
                    ctx.decided("Staticfile", "directory: visible → listings")
                runtime.run.append(_caddyfile(lines))
                layout.start = f"caddy run --config {CADDYFILE} --adapter caddyfile"
        if root == ".":
            commands.append(f"rm -f {' '.join(NOT_SERVED)}")
        if commands:
            layout.build = Step(" && ".join(commands))
        ctx.layout = layout
