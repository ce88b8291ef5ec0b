"""Frontend frameworks whose build is a folder of static files (served by Caddy when the
app has no server of its own to start)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pipeline.plan.app import App


@dataclass(frozen=True)
class StaticOutput:
    framework: str
    output: str  # the build's output folder, relative to the app
    source: str  # the file that decided it
    dev_commands: tuple[str, ...] = ()  # start scripts that only run a dev/preview server

    def is_dev_server(self, script: str) -> bool:
        words = script.strip().split()
        for command in self.dev_commands:
            expected = command.split()
            if words[: len(expected)] == expected:
                return True
        return False


def dependencies(package: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for key in ("dependencies", "devDependencies"):
        section = package.get(key)
        if isinstance(section, dict):
            found.update({name: str(value) for name, value in section.items()})
    return found


def config_text(app: App, stem: str) -> tuple[str | None, str]:
    for extension in ("ts", "mts", "js", "mjs", "cjs"):
        name = f"{stem}.{extension}"
        if app.has_file(name):
            return name, app.read_text(name)
    return None, ""


def string_option(text: str, key: str) -> str | None:
    match = re.search(rf"\b{key}\s*:\s*['\"`]([^'\"`]+)['\"`]", text)
    return match.group(1) if match else None


def sveltekit_adapter(app: App, deps: dict[str, str]) -> tuple[str, str]:
    """(adapter name, the file that says so): the adapter svelte.config (or, in newer
    projects, vite.config) imports, else the one in the dependencies, else auto."""
    for stem in ("svelte.config", "vite.config"):
        source, text = config_text(app, stem)
        match = re.search(r"['\"]@sveltejs/adapter-([\w-]+)['\"]", text)
        if source and match:
            return match.group(1), source
    for name in ("node", "static", "auto"):
        if f"@sveltejs/adapter-{name}" in deps:
            return name, "package.json"
    return "auto", "package.json"


def _angular(app: App, deps: dict[str, str]) -> StaticOutput | None:
    if "@angular/ssr" in deps or "@nguniversal/express-engine" in deps:
        return None  # a server: see servers.angular_ssr
    if not app.has_file("angular.json"):
        return None
    data = app.read_json_object("angular.json")
    projects = data.get("projects")
    if not isinstance(projects, dict) or not projects:
        return None
    name = data.get("defaultProject")
    if not isinstance(name, str) or name not in projects:
        applications = [
            key
            for key, value in projects.items()
            if isinstance(value, dict) and value.get("projectType", "application") == "application"
        ]
        name = applications[0] if applications else next(iter(projects))
    project = projects.get(name) or {}
    build = ((project.get("architect") or project.get("targets") or {}).get("build")) or {}
    options = build.get("options") or {}
    output = options.get("outputPath") or f"dist/{name}"
    if isinstance(output, dict):  # {"base": "dist/app", "browser": ""}
        base = str(output.get("base") or f"dist/{name}")
        browser = str(output.get("browser", "browser"))
        output = f"{base}/{browser}".rstrip("/")
    elif str(build.get("builder", "")).endswith(":application"):
        output = f"{output}/browser"
    return StaticOutput("Angular", str(output), "angular.json", ("ng serve",))


def static_output(app: App, package: dict[str, Any]) -> StaticOutput | None:
    """The static build output of a known frontend framework, or None when the app is not
    one (or is configured to run its own server)."""
    deps = dependencies(package)
    if "@angular/core" in deps:
        return _angular(app, deps)
    if "next" in deps:
        source, text = config_text(app, "next.config")
        if source and re.search(r"\boutput\s*:\s*['\"]export['\"]", text):
            out = string_option(text, "distDir") or "out"
            # `next start` refuses to serve an export: the files are the site.
            return StaticOutput("Next.js (static export)", out, source, ("next dev", "next start"))
        build = str((package.get("scripts") or {}).get("build", ""))
        if re.search(r"\bnext export\b", build):
            return StaticOutput(
                "Next.js (next export)", "out", "package.json", ("next dev", "next start")
            )
        return None
    if "nuxt" in deps:
        build = str((package.get("scripts") or {}).get("build", ""))
        if "nuxt generate" in build or "nuxi generate" in build:
            return StaticOutput(
                "Nuxt (generate)", ".output/public", "package.json", ("nuxt dev", "nuxi dev")
            )
        return None
    if "@sveltejs/kit" in deps:
        adapter, source = sveltekit_adapter(app, deps)
        if adapter != "static":
            return None
        text = app.read_text(source) if source != "package.json" else ""
        pages = (string_option(text, "pages") or "build").removeprefix("./").rstrip("/")
        return StaticOutput(
            "SvelteKit (adapter-static)", pages, source, ("vite dev", "vite preview", "vite")
        )
    if "astro" in deps:
        source, text = config_text(app, "astro.config")
        server = re.search(r"\boutput\s*:\s*['\"](server|hybrid)['\"]", text) or any(
            name.startswith("@astrojs/")
            and name
            in ("@astrojs/node", "@astrojs/vercel", "@astrojs/netlify", "@astrojs/cloudflare")
            for name in deps
        )
        if server:
            return None
        out = string_option(text, "outDir") or "dist"
        return StaticOutput(
            "Astro",
            out.removeprefix("./"),
            source or "package.json",
            ("astro dev", "astro preview"),
        )
    if "react-scripts" in deps:
        return StaticOutput("Create React App", "build", "package.json", ("react-scripts start",))
    if "@vue/cli-service" in deps:
        return StaticOutput("Vue CLI", "dist", "package.json", ("vue-cli-service serve",))
    if "gatsby" in deps:
        return StaticOutput("Gatsby", "public", "package.json", ("gatsby develop", "gatsby serve"))
    if "@react-router/dev" in deps:
        source, text = config_text(app, "react-router.config")
        if source and re.search(r"\bssr\s*:\s*false\b", text):
            return StaticOutput(
                "React Router (ssr: false)",
                "build/client",
                source,
                ("react-router dev", "vite preview"),
            )
        return None
    server_frameworks = ("@remix-run/dev", "@react-router/dev", "@solidjs/start", "vike")
    if "vite" in deps and not any(name in deps for name in server_frameworks):
        source, text = config_text(app, "vite.config")
        out = string_option(text, "outDir") or "dist"
        return StaticOutput(
            "Vite",
            out.removeprefix("./"),
            source or "package.json",
            ("vite", "vite dev", "vite serve", "vite preview"),
        )
    return None
