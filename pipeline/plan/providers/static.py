"""A static site: index.html, public/, or a Staticfile (`root: dist`), served by Caddy."""

from __future__ import annotations

import re

from pipeline.plan.app import App
from pipeline.plan.context import Layout, PlanContext, RuntimeStage, Step

SITE = "/site"
# Files that configure the deploy and should not be served.
NOT_SERVED = ("Staticfile", "click-deploy.toml", "Procfile", ".dockerignore")
CADDY_ENV = {"XDG_CONFIG_HOME": "/home/app/.config", "XDG_DATA_HOME": "/home/app/.local/share"}


def staticfile_root(text: str) -> str | None:
    match = re.search(r"^root\s*:\s*['\"]?([^'\"#\s]+)", text, re.MULTILINE)
    return match.group(1).strip("/") if match else None


class StaticProvider:
    name = "static"
    looks_for = ("index.html", "public/", "Staticfile")
    start_help = "add an index.html"

    def detect(self, app: App) -> bool:
        return app.has_any("index.html", "Staticfile") or app.has_dir("public")

    def plan(self, app: App, ctx: PlanContext) -> None:
        root = "."
        staticfile = app.read_optional("Staticfile")
        if staticfile is not None:
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
        ctx.layout = Layout(
            image=ctx.image("caddy"),
            stage="site",
            workdir=SITE,
            build=Step(f"rm -f {' '.join(NOT_SERVED)}") if root == "." else None,
            runtime=RuntimeStage(
                image=ctx.image("caddy"), copies=[(source, "/srv")], workdir="/srv", apt=False
            ),
            runtime_env=dict(CADDY_ENV),
            start="caddy file-server --root /srv --listen :$PORT",
            apt=False,
        )
