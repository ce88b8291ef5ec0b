"""Go: a static binary (CGO_ENABLED=0) built from the main package at the root or the first
`cmd/*`, copied into a small Debian runtime image."""

from __future__ import annotations

import re

from pipeline.plan.app import App
from pipeline.plan.context import Layout, PlanContext, RuntimeStage, Step
from pipeline.plan.versions import from_exact, resolve

DEFAULT_GO = "1.23"
MOD_CACHE = "/go/pkg/mod"
BUILD_CACHE = "/root/.cache/go-build"
BINARY = "/app/server"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

_PACKAGE_MAIN = re.compile(r"^package\s+main\b", re.MULTILINE)
_GO_LINE = re.compile(r"^go\s+(\d+(?:\.\d+)*)\s*$", re.MULTILINE)
_MODULE = re.compile(r"^module\s+(\S+)", re.MULTILINE)
_REQUIRE = re.compile(r"^require\b", re.MULTILINE)


def _is_main_package(app: App, directory: str) -> bool:
    pattern = "*.go" if directory == "." else f"{directory}/*.go"
    for path in app.glob(pattern):
        if path.endswith("_test.go"):
            continue
        if _PACKAGE_MAIN.search(app.read_text(path)):
            return True
    return False


def main_package(app: App) -> str | None:
    """ "." for the root, "./cmd/api" for the first `cmd/*` with a main package."""
    if _is_main_package(app, "."):
        return "."
    for name in app.list_dir("cmd"):
        if app.has_dir(f"cmd/{name}") and _is_main_package(app, f"cmd/{name}"):
            return f"./cmd/{name}"
    return None


class GoProvider:
    name = "go"
    looks_for = ("go.mod",)
    start_help = (
        'put a main package at the root or in cmd/<name>/, or set start = "…" under '
        "[build] in click-deploy.toml"
    )

    def detect(self, app: App) -> bool:
        return app.has_file("go.mod")

    def plan(self, app: App, ctx: PlanContext) -> None:
        gomod = app.read_text("go.mod")
        go_line = _GO_LINE.search(gomod)
        version, notes = resolve(
            app,
            "go",
            default=DEFAULT_GO,
            parts=2,
            exact_files=(".go-version",),
            tool_names=("golang", "go"),
        )
        if go_line and (value := from_exact(go_line.group(1), DEFAULT_GO, 2)):
            ctx.decided(
                "go.mod",
                f"go {value}" + (f" ({go_line.group(1)})" if go_line.group(1) != value else ""),
            )
            ctx.version = value
        else:
            for note in notes:
                ctx.warning(note)
            said = version.evidence("go")
            if said:
                ctx.decided(version.source or "", said.split(": ", 1)[1])
            else:
                ctx.info(f"go.mod has no go line: using go {version.value}")
            ctx.version = version.value
        ctx.runtime = "go"
        module = _MODULE.search(gomod)
        if module:
            ctx.decided("go.mod", f"module {module.group(1)}")

        package = main_package(app)
        if package is None:
            ctx.fail(
                f"go.mod found in {ctx.location}/ but no main package at the root or in "
                "cmd/*: " + self.start_help
            )
            return
        ctx.decided(
            "main.go" if package == "." and app.has_file("main.go") else package.removeprefix("./"),
            f"main package {package}",
        )

        manifests = ["go.mod"]
        install: Step | None = Step("go mod download", (MOD_CACHE,))
        if app.has_file("go.sum"):
            manifests.append("go.sum")
        elif _REQUIRE.search(gomod):
            ctx.warning("go.mod requires modules but there is no go.sum; the build may fail")
        if app.has_file("vendor/modules.txt"):
            ctx.decided("vendor/modules.txt", "vendored modules: nothing to download")
            install = None
        build = Step(
            f'go build -trimpath -ldflags="-s -w" -o {BINARY} {package}', (MOD_CACHE, BUILD_CACHE)
        )
        ctx.layout = Layout(
            image=ctx.image("golang", ctx.version),
            stage="build",
            workdir="/src",
            env={
                "CGO_ENABLED": "0",
                "GOPATH": "/go",
                "GOMODCACHE": MOD_CACHE,
                "GOCACHE": BUILD_CACHE,
                "GOTOOLCHAIN": "local",
            },
            manifests=manifests,
            install=install,
            build=build,
            runtime=RuntimeStage(
                image=ctx.image("runtime"),
                copies=[(BINARY, BINARY), (CA_BUNDLE, CA_BUNDLE)],
            ),
            start=BINARY,
        )
