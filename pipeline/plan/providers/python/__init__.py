"""Python: pip, uv, poetry or pipenv into /opt/venv; Django, FastAPI, Flask or a main file."""

from __future__ import annotations

from pipeline.plan.app import App
from pipeline.plan.context import Layout, PlanContext, Step
from pipeline.plan.providers.python.frameworks import find_start
from pipeline.plan.providers.python.package_manager import VENV, detect_install
from pipeline.plan.versions import nearest_available, resolve

DEFAULT_PYTHON = "3.12"
# Packages whose build needs system libraries the slim image lacks.
NATIVE_BUILD_DEPS = {
    "psycopg2": ["gcc", "libc6-dev", "libpq-dev"],
    "mysqlclient": ["gcc", "libc6-dev", "pkg-config", "default-libmysqlclient-dev"],
}


def _and_then(first: Step | None, second: Step) -> Step:
    if first is None:
        return second
    caches = tuple(dict.fromkeys((*first.caches, *second.caches)))
    return Step(f"{first.command} && {second.command}", caches)


class PythonProvider:
    name = "python"
    looks_for = (
        "requirements.txt", "pyproject.toml", "uv.lock", "poetry.lock", "Pipfile", "setup.py",
        "main.py", "app.py",
    )  # fmt: skip
    start_help = (
        'add a main.py or app.py, a Procfile with a web: line, or start = "…" under '
        "[build] in click-deploy.toml"
    )

    def detect(self, app: App) -> bool:
        return app.has_any(*self.looks_for)

    def plan(self, app: App, ctx: PlanContext) -> None:
        pipfile_version = None
        if app.has_file("Pipfile"):
            requires = app.read_toml("Pipfile").get("requires")
            if isinstance(requires, dict):
                value = requires.get("python_full_version") or requires.get("python_version")
                pipfile_version = str(value) if value else None
        version, notes = resolve(
            app,
            "python",
            default=DEFAULT_PYTHON,
            parts=2,
            exact_files=(".python-version", "runtime.txt"),
            tool_names=("python",),
            constraints=(("Pipfile", pipfile_version or ""),),
        )
        for note in notes:
            ctx.warning(note)
        if not ctx.images.is_overridden("python"):
            version, unavailable = nearest_available("python", version)
            if unavailable:
                ctx.warning(unavailable)
        said = version.evidence("python")
        if said:
            ctx.decided(version.source or "", said.split(": ", 1)[1])
        else:
            ctx.info(
                "no python version given (.python-version, runtime.txt, mise.toml, "
                ".tool-versions, Pipfile requires): "
                f"using {version.value}"
            )
        ctx.runtime = "python"
        ctx.version = version.value

        install = detect_install(app, ctx)
        layout = Layout(
            image=ctx.image("python", version.value),
            env={
                "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONUNBUFFERED": "1",
                "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "PIP_ROOT_USER_ACTION": "ignore",
                "VIRTUAL_ENV": VENV,
                "PATH": f"{VENV}/bin:$PATH",
                **install.env,
            },
            setup=list(install.setup),
            manifests=list(install.manifests),
            copy_source_first=install.copy_source_first,
            install=install.install,
            after_source=list(install.after_source),
        )
        for package, packages in NATIVE_BUILD_DEPS.items():
            if package in install.dependencies:
                layout.apt_packages += [p for p in packages if p not in layout.apt_packages]
                ctx.decided(
                    install.manifests[0] if install.manifests else "dependencies",
                    f"{package} is compiled: apt installs {', '.join(packages)}",
                )

        start = find_start(app, install.dependencies)
        if start is not None:
            layout.start = start.command
            ctx.decided(start.source, f"{start.framework} → {start.command}")
            if ctx.start_override is None:
                for needed in start.needs:
                    if needed not in install.dependencies:
                        layout.install = _and_then(layout.install, install.add_package(needed))
                        ctx.suggestion(
                            f"add {needed} to your dependencies; it is installed separately for now"
                        )
            if start.build:
                layout.build = Step(start.build)
                ctx.decided(start.source, f"STATIC_ROOT is set → {start.build}")
        ctx.layout = layout
