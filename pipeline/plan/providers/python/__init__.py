"""Python: pip, uv, poetry, pdm or pipenv into /opt/venv in a build stage; the venv and the
app are copied into a clean runtime stage. Django, FastAPI, FastHTML, Flask, Streamlit, a
console script, a main file, or a worker."""

from __future__ import annotations

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from pipeline.plan.app import App, InvalidFile
from pipeline.plan.context import Layout, PlanContext, RuntimeStage, Step
from pipeline.plan.providers.python.frameworks import find_start, script_start
from pipeline.plan.providers.python.package_manager import PIP_CACHE, VENV, detect_install
from pipeline.plan.system_packages import add_git, add_system_packages, python_matches
from pipeline.plan.versions import Version, lower_bound, nearest_available, resolve, to_precision

DEFAULT_PYTHON = "3.13"
PYTHON_ENV = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}


def _and_then(first: Step | None, second: Step) -> Step:
    if first is None:
        return second
    caches = tuple(dict.fromkeys((*first.caches, *second.caches)))
    return Step(f"{first.command} && {second.command}", caches)


def _project(app: App) -> tuple[dict[str, str], str | None]:
    """`[project.scripts]` and the project's name, from pyproject.toml."""
    if not app.has_file("pyproject.toml"):
        return {}, None
    project = app.read_toml("pyproject.toml").get("project")
    if not isinstance(project, dict):
        return {}, None
    scripts = project.get("scripts")
    name = project.get("name")
    found = {str(k): str(v) for k, v in scripts.items()} if isinstance(scripts, dict) else {}
    return found, str(name) if isinstance(name, str) else None


# Python minors with official images, newest first: what `requires-python` picks from
# when it excludes the default.
PYTHON_MINORS = ("3.14", "3.13", "3.12", "3.11", "3.10", "3.9", "3.8")


def _requires_python(app: App, default: Version) -> Version:
    """The default, unless pyproject.toml's `requires-python` excludes it: then the lowest
    version above the default it allows ("3.14" for `>=3.14`), else the newest below
    ("3.11" for `==3.11.*` or `<3.12`)."""
    if not app.has_file("pyproject.toml"):
        return default
    project = app.read_toml("pyproject.toml").get("project")
    spec = project.get("requires-python") if isinstance(project, dict) else None
    if not isinstance(spec, str):
        return default
    try:
        allowed = SpecifierSet(spec)
    except InvalidSpecifier:
        raise InvalidFile(
            f"pyproject.toml: requires-python {spec!r} is not a version specifier"
        ) from None
    if allowed.contains(f"{default.value}.0", prereleases=True):
        return default
    bound = lower_bound(spec)
    current = tuple(int(part) for part in default.value.split("."))
    if bound is not None and bound[:2] > current:
        return Version(
            to_precision(bound, default.value, 2), "pyproject.toml requires-python", spec
        )
    for minor in PYTHON_MINORS:
        if allowed.contains(f"{minor}.0", prereleases=True) or allowed.contains(
            f"{minor}.99", prereleases=True
        ):
            return Version(minor, "pyproject.toml requires-python", spec)
    return default


def _installs_project(layout: Layout) -> bool:
    """Whether a step installs the app's own project (uv sync does, unless told not to)."""
    steps = [*layout.after_source, *([layout.install] if layout.install else [])]
    return any(
        "pip install --no-deps ." in step.command
        or step.command.startswith("pip install .")
        or (step.command.startswith("uv sync") and "--no-install-project" not in step.command)
        for step in steps
    )


class PythonProvider:
    name = "python"
    looks_for = (
        "requirements.txt", "pyproject.toml", "uv.lock", "poetry.lock", "pdm.lock", "Pipfile",
        "setup.py", "main.py", "app.py", "bot.py",
    )  # fmt: skip
    start_help = (
        "add a main.py or app.py, a [project.scripts] entry in pyproject.toml, a Procfile "
        'with a web: line, or start = "…" under [build] in click-deploy.toml'
    )

    def detect(self, app: App) -> bool:
        return app.has_any(*self.looks_for, "worker.py")

    def _version(self, app: App, ctx: PlanContext) -> Version:
        """The version files, then requires-python, then the oldest image when older."""
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
        if version.source is None:
            version = _requires_python(app, version)
        asked = version
        if not ctx.images.is_overridden("python"):
            version, unavailable = nearest_available("python", version)
            if unavailable:
                ctx.warning(unavailable)
        said = version.evidence("python")
        if version is not asked:
            ctx.decided(
                asked.source or "",
                f"python {asked.value} asked for; {version.value} used, the oldest image",
            )
        elif said:
            ctx.decided(version.source or "", said.split(": ", 1)[1])
        else:
            ctx.info(
                "no python version given (.python-version, runtime.txt, mise.toml, "
                f".tool-versions, Pipfile requires, requires-python): using {version.value}"
            )
        return version

    def plan(self, app: App, ctx: PlanContext) -> None:
        version = self._version(app, ctx)
        ctx.runtime = "python"
        ctx.version = version.value

        install = detect_install(app, ctx)
        image = ctx.image("python", version.value)
        venv_env = {"VIRTUAL_ENV": VENV, "PATH": f"{VENV}/bin:$PATH"}
        # The build stage has the tools (uv, poetry, compilers); the app runs in a clean
        # image of the same Python that receives only the venv and the app.
        layout = Layout(
            image=image,
            stage="build",
            env={
                **PYTHON_ENV,
                "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "PIP_ROOT_USER_ACTION": "ignore",
                **venv_env,
                **install.env,
            },
            setup=list(install.setup),
            manifests=list(install.manifests),
            copy_source_first=install.copy_source_first,
            install=install.install,
            after_source=list(install.after_source),
            runtime=RuntimeStage(image=image, copies=[(VENV, VENV), ("/app", "/app")]),
            runtime_env={**PYTHON_ENV, **venv_env},
        )
        source = install.manifests[0] if install.manifests else "dependencies"
        matches = python_matches(
            install.dependencies,
            no_binary=install.no_binary,
            pins=install.pins,
            python=version.value,
        )
        add_system_packages(ctx, layout, matches, source)
        if install.from_git:
            add_git(ctx, layout, install.from_git)

        start = find_start(app, install.dependencies)
        scripts, project = _project(app)
        if start is None or start.framework.startswith(("a main file", "a worker")):
            script, undecided = script_start(app, scripts, project, install.dependencies)
            if script is not None:
                start = script
                if "build-system" not in app.read_toml("pyproject.toml"):
                    ctx.warning(
                        "pyproject.toml declares [project.scripts] but no [build-system], so "
                        "the project is not installed and the script may be missing: add one "
                        '(uv init --package writes it) or set start = "…"'
                    )
                elif not _installs_project(layout):
                    layout.after_source.append(Step("pip install --no-deps .", (PIP_CACHE,)))
                    ctx.decided("pyproject.toml", "the console script's project is installed")
            elif undecided is not None and start is None and ctx.start_override is None:
                ctx.fail(undecided)
                return
        if start is not None:
            layout.start = start.command
            layout.worker = start.worker
            if start.writable:
                layout.writable += start.writable
                ctx.decided(
                    start.source,
                    f"{start.framework} writes to {', '.join(start.writable)} at run time",
                )
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
