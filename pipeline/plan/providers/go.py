"""Go: a static binary (CGO_ENABLED=0) built from the main package at the root or the first
`cmd/*`, copied into a small Debian runtime image. A workspace (`go.work` without a root
go.mod) builds the module of its `use` list that has a main package."""

from __future__ import annotations

import re

from pipeline.plan.app import App
from pipeline.plan.context import Layout, PlanContext, RuntimeStage, Step
from pipeline.plan.versions import from_exact, resolve

DEFAULT_GO = "1.27"
MOD_CACHE = "/go/pkg/mod"
BUILD_CACHE = "/root/.cache/go-build"
BINARY = "/app/server"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

_PACKAGE_MAIN = re.compile(r"^package\s+main\b", re.MULTILINE)
_GO_LINE = re.compile(r"^go\s+(\d+(?:\.\d+)*)\s*$", re.MULTILINE)
_MODULE = re.compile(r"^module\s+(\S+)", re.MULTILINE)
_REQUIRE = re.compile(r"^require\b", re.MULTILINE)
_USE_BLOCK = re.compile(r"^use\s*\(([^)]*)\)", re.MULTILINE)
_USE_LINE = re.compile(r"^use\s+(\S+)", re.MULTILINE)


def workspace_modules(gowork: str) -> list[str]:
    """The directories of go.work's `use` directives, as "./api"."""
    found = [line for block in _USE_BLOCK.findall(gowork) for line in block.splitlines()]
    found += _USE_LINE.findall(gowork)
    modules = []
    for item in found:
        cleaned = item.split("//", 1)[0].strip().strip('"')
        if cleaned and cleaned != "(":
            path = "./" + cleaned.removeprefix("./").rstrip("/") if cleaned != "." else "."
            if path not in modules:
                modules.append(path)
    return modules


def _is_main_package(app: App, directory: str) -> bool:
    pattern = "*.go" if directory == "." else f"{directory}/*.go"
    for path in app.glob(pattern):
        if path.endswith("_test.go"):
            continue
        if _PACKAGE_MAIN.search(app.read_text(path)):
            return True
    return False


def main_package(app: App, module: str = ".") -> str | None:
    """ "." for the root, "./cmd/api" for the first `cmd/*` with a main package (inside
    `module`, a workspace member such as "./api")."""
    base = module.removeprefix("./")
    prefix = "" if base in ("", ".") else f"{base}/"
    if _is_main_package(app, base or "."):
        return "." if not prefix else f"./{base}"
    for name in app.list_dir(f"{prefix}cmd"):
        if app.has_dir(f"{prefix}cmd/{name}") and _is_main_package(app, f"{prefix}cmd/{name}"):
            return f"./{prefix}cmd/{name}"
    return None


class GoProvider:
    name = "go"
    looks_for = ("go.mod", "go.work")
    start_help = (
        'put a main package at the root or in cmd/<name>/, or set start = "…" under '
        "[build] in click-deploy.toml"
    )

    def detect(self, app: App) -> bool:
        return app.has_any("go.mod", "go.work")

    def _workspace(self, app: App, ctx: PlanContext) -> tuple[str, list[str]] | None:
        """(main package, manifests) of a go.work workspace, or None after ctx.fail."""
        modules = [m for m in workspace_modules(app.read_text("go.work")) if app.has_dir(m)]
        ctx.decided("go.work", f"workspace of {len(modules)} module(s): {', '.join(modules)}")
        mains = [(module, found) for module in modules if (found := main_package(app, module))]
        if not mains:
            ctx.fail(
                f"go.work in {ctx.location}/ uses {', '.join(modules) or 'no modules'}, none "
                "with a main package: " + self.start_help
            )
            return None
        if len(mains) > 1:
            others = ", ".join(found for _, found in mains[1:])
            ctx.warning(
                f"go.work: {len(mains)} modules have a main package; building {mains[0][1]} "
                f'(the first in go.work). To build another ({others}), set build = "go build '
                f'-o {BINARY} <package>" under [build] in click-deploy.toml'
            )
        manifests = ["go.work"] + (["go.work.sum"] if app.has_file("go.work.sum") else [])
        for module in modules:
            base = module.removeprefix("./").removeprefix(".")
            prefix = f"{base}/" if base else ""
            manifests += [
                f"{prefix}{name}"
                for name in ("go.mod", "go.sum")
                if app.has_file(f"{prefix}{name}")
            ]
        return mains[0][1], manifests

    def plan(self, app: App, ctx: PlanContext) -> None:
        workspace = app.has_file("go.work")  # go builds in workspace mode whenever it is there
        gomod = app.read_text("go.work" if workspace else "go.mod")
        go_line = _GO_LINE.search(gomod)
        version, notes = resolve(
            app,
            "go",
            default=DEFAULT_GO,
            parts=2,
            exact_files=(".go-version",),
            tool_names=("golang", "go"),
        )
        manifest = "go.work" if workspace else "go.mod"
        if go_line and (value := from_exact(go_line.group(1), DEFAULT_GO, 2)):
            ctx.decided(
                manifest,
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
                ctx.info(f"{manifest} has no go line: using go {version.value}")
            ctx.version = version.value
        ctx.runtime = "go"
        module = _MODULE.search(gomod)
        if module:
            ctx.decided("go.mod", f"module {module.group(1)}")

        if workspace:
            found = self._workspace(app, ctx)
            if found is None:
                return
            member, members = found
            ctx.decided("go.work", f"main package {member}")
            # `go mod download` in a workspace asks the module proxy for members that require
            # each other (`require example.com/lib v0.0.0`); `go build` resolves them from
            # the workspace and downloads the rest into the module cache mount.
            ctx.decided("go.work", "modules are downloaded by go build, into the module cache")
            self._layout(app, ctx, member, members, None)
            return
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
        self._layout(app, ctx, package, manifests, install)

    def _layout(
        self, app: App, ctx: PlanContext, package: str, manifests: list[str], install: Step | None
    ) -> None:
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
