"""How a Python app's dependencies are installed: uv, poetry, pipenv, pip with a
requirements file, or a plain pyproject.toml.

The app's packages go to a virtualenv at /opt/venv (on PATH). Tools that the lockfile asks
for (uv, poetry, pipenv) are installed with pip into a venv of their own under /opt.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from pipeline.plan.app import App
from pipeline.plan.context import PlanContext, Step
from pipeline.plan.versions import declared_tool_version

VENV = "/opt/venv"
PIP_CACHE = "/root/.cache/pip"
UV_CACHE = "/root/.cache/uv"
POETRY_CACHE = "/root/.cache/pypoetry"
MAKE_VENV = Step(f"python3 -m venv {VENV}")

_VCS = re.compile(r"(?:^|@\s*)(?:git|hg|svn|bzr)\+")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> tuple[str, set[str]] | None:
    """`Flask[async]>=3` → ("flask", {"async"})."""
    match = _NAME.match(spec)
    if not match:
        return None
    extras = {normalize(item) for item in (match.group(2) or "").strip("[]").split(",") if item}
    return normalize(match.group(1)), extras


def _tool_setup(tool: str, packages: str, command: str | None = None) -> Step:
    """A venv of its own for a build tool, linked onto PATH."""
    target = command or tool
    quoted = " ".join(shlex.quote(package) for package in packages.split())
    return Step(
        f"python3 -m venv /opt/{tool} && /opt/{tool}/bin/pip install {quoted} "
        f"&& ln -sf /opt/{tool}/bin/{target} /usr/local/bin/{target}",
        (PIP_CACHE,),
    )


@dataclass
class Install:
    manager: str  # pip, uv, poetry, pipenv, or "none"
    manifests: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    setup: list[Step] = field(default_factory=list)
    install: Step | None = None
    after_source: list[Step] = field(default_factory=list)
    copy_source_first: bool = False
    dependencies: dict[str, set[str]] = field(default_factory=dict)  # name → extras
    from_git: str | None = None  # the file that fetches a dependency from git
    no_binary: set[str] = field(default_factory=set)  # compiled, not wheels (":all:")
    pins: dict[str, str] = field(default_factory=dict)  # name → version pinned with ==

    def add_package(self, package: str) -> Step:
        """A step installing one more package into the app's venv."""
        if self.manager == "uv":
            return Step(f"uv pip install {shlex.quote(package)}", (UV_CACHE,))
        return Step(f"pip install {shlex.quote(package)}", (PIP_CACHE,))


# --- reading dependency lists -----------------------------------------------------------------


@dataclass
class Requirements:
    files: list[str] = field(default_factory=list)  # the file and every -r/-c it includes
    names: dict[str, set[str]] = field(default_factory=dict)
    local: list[str] = field(default_factory=list)  # lines that need the source (-e ., ./pkg)
    from_git: bool = False
    no_binary: set[str] = field(default_factory=set)
    pins: dict[str, str] = field(default_factory=dict)


def read_requirements(app: App, file: str, found: Requirements | None = None) -> Requirements:
    found = found if found is not None else Requirements()
    if file in found.files or len(found.files) > 20:
        return found
    found.files.append(file)
    base = file.rsplit("/", 1)[0] + "/" if "/" in file else ""
    for raw in app.read_text(file).splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        include = re.match(r"^(?:-r|-c|--requirement|--constraint)[\s=]+(\S+)", line)
        if include:
            target = (base + include.group(1)).removeprefix("./")
            if app.has_file(target):
                read_requirements(app, target, found)
            continue
        if _VCS.search(line):
            found.from_git = True
        no_binary = re.match(r"^--no-binary[\s=]+(\S+)", line)
        if no_binary:
            found.no_binary.update(normalize(n) for n in no_binary.group(1).split(","))
            continue
        if line.startswith(("-e", "--editable")):
            found.local.append(line)
            continue
        if line.startswith("-"):
            continue  # --index-url and friends
        if _VCS.match(line):
            egg = re.search(r"#egg=([\w.-]+)", line)
            if egg:
                found.names.setdefault(normalize(egg.group(1)), set())
            continue
        if line.startswith((".", "/", "file:")) or re.match(r"^[\w.-]+\s*@\s*file:", line):
            found.local.append(line)
            continue
        parsed = requirement_name(line)
        if parsed:
            found.names.setdefault(parsed[0], set()).update(parsed[1])
            pin = re.search(r"==\s*(\d+(?:\.\d+)*)\s*(?:[;,#]|$)", line)
            if pin:
                found.pins[parsed[0]] = pin.group(1)
    return found


def _pyproject_dependencies(pyproject: dict[str, Any]) -> dict[str, set[str]]:
    names: dict[str, set[str]] = {}
    project = pyproject.get("project")
    if isinstance(project, dict):
        for spec in project.get("dependencies") or []:
            parsed = requirement_name(str(spec))
            if parsed:
                names.setdefault(parsed[0], set()).update(parsed[1])
    poetry = (pyproject.get("tool") or {}).get("poetry")
    if isinstance(poetry, dict):
        for key, value in (poetry.get("dependencies") or {}).items():
            if normalize(key) == "python":
                continue
            extras = set(value.get("extras") or []) if isinstance(value, dict) else set()
            names.setdefault(normalize(key), set()).update(normalize(item) for item in extras)
    return names


def _pipfile_packages(pipfile: dict[str, Any]) -> dict[str, Any]:
    packages = pipfile.get("packages")
    return packages if isinstance(packages, dict) else {}


def _pipfile_specs(packages: dict[str, Any]) -> list[str]:
    specs = []
    for name, value in packages.items():
        if isinstance(value, str):
            specs.append(name if value.strip() in ("*", "") else f"{name}{value.strip()}")
        elif isinstance(value, dict) and isinstance(value.get("version"), str):
            version = value["version"].strip()
            extras = value.get("extras")
            label = f"{name}[{','.join(extras)}]" if isinstance(extras, list) and extras else name
            specs.append(label if version in ("*", "") else f"{label}{version}")
        else:
            specs.append(name)
    return specs


# --- choosing -------------------------------------------------------------------------------


def pinned(package: str, declared: str) -> str:
    """A pip requirement for `package` at a version mise gives: "0.5" → `uv==0.5.*`,
    "0.5.4" → `uv==0.5.4`, "latest" → `uv`."""
    numbers = re.fullmatch(r"v?(\d+(?:\.\d+)*)", declared.strip())
    if numbers is None:
        return package
    value = numbers.group(1)
    return f"{package}=={value}" if value.count(".") >= 2 else f"{package}=={value}.*"


def _uv_package(app: App, pyproject: dict[str, Any], ctx: PlanContext) -> str:
    """uv at the version the project asks for: `[tool.uv] required-version`, else mise."""
    required = ((pyproject.get("tool") or {}).get("uv") or {}).get("required-version")
    if isinstance(required, str) and required.strip():
        spec = required.strip()
        package = f"uv{spec}" if spec[0] in "<>=!~" else f"uv=={spec}"
        ctx.decided("pyproject.toml", f"tool.uv.required-version → {package}")
        return package
    declared = declared_tool_version(app, "uv")
    if declared is not None:
        package = pinned("uv", declared.value)
        ctx.decided(declared.source or "", f"uv {declared.raw} → {package}")
        return package
    return "uv"


def _uv(app: App, pyproject: dict[str, Any], ctx: PlanContext) -> Install:
    package = _uv_package(app, pyproject, ctx)
    ctx.decided("uv.lock", "uv installs the locked dependencies, without dev ones")
    return Install(
        manager="uv",
        manifests=["pyproject.toml", "uv.lock"]
        + [f for f in (".python-version",) if app.has_file(f)],
        env={
            "UV_PROJECT_ENVIRONMENT": VENV,
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_LINK_MODE": "copy",
        },
        setup=[_tool_setup("uv", package)],
        install=Step("uv sync --frozen --no-dev --no-install-project", (UV_CACHE,)),
        after_source=[Step("uv sync --frozen --no-dev --inexact", (UV_CACHE,))],
        dependencies=_pyproject_dependencies(pyproject),
        from_git="uv.lock" if "git+" in app.read_text("uv.lock") else None,
    )


def _pdm(app: App, pyproject: dict[str, Any], ctx: PlanContext) -> Install:
    """pdm exports the lock without dev dependencies; pip installs the export."""
    ctx.decided("pdm.lock", "pdm exports the locked production dependencies; pip installs them")
    declared = declared_tool_version(app, "pdm")
    tool = pinned("pdm", declared.value) if declared is not None else "pdm"
    result = Install(
        manager="pdm",
        manifests=["pyproject.toml", "pdm.lock"],
        setup=[MAKE_VENV, _tool_setup("pdm", tool)],
        install=Step(
            "pdm export --prod --without-hashes --output /tmp/requirements.txt "
            "&& pip install -r /tmp/requirements.txt",
            (PIP_CACHE,),
        ),
        dependencies=_pyproject_dependencies(pyproject),
        from_git="pdm.lock" if "git = " in app.read_text("pdm.lock") else None,
    )
    if "build-system" in pyproject:
        result.after_source.append(Step("pip install --no-deps .", (PIP_CACHE,)))
    return result


def _poetry(app: App, pyproject: dict[str, Any], ctx: PlanContext) -> Install:
    """With a lock, poetry only exports it and pip installs the export: pip needs nothing
    but the package index's simple API."""
    manifests = ["pyproject.toml"] + [f for f in ("poetry.lock", "poetry.toml") if app.has_file(f)]
    env = {"POETRY_VIRTUALENVS_CREATE": "false", "POETRY_NO_INTERACTION": "1"}
    dependencies = _pyproject_dependencies(pyproject)
    if not app.has_file("poetry.lock"):
        ctx.decided("pyproject.toml", "[tool.poetry] without poetry.lock: poetry resolves at build")
        ctx.warning("no poetry.lock: dependency versions are resolved at build time")
        return Install(
            manager="poetry",
            manifests=manifests,
            env={**env, "POETRY_CACHE_DIR": POETRY_CACHE},
            setup=[MAKE_VENV, _tool_setup("poetry", "poetry")],
            install=Step("poetry install --no-root --only main", (POETRY_CACHE, PIP_CACHE)),
            dependencies=dependencies,
        )
    head = app.read_text("poetry.lock")[:300]
    match = re.search(r"@generated by Poetry (\d+(?:\.\d+)+)", head)
    version = match.group(1) if match else None
    numbers = tuple(int(part) for part in version.split(".")[:2]) if version else (2, 0)
    if numbers >= (2, 0):
        tools = (
            f"poetry=={version} poetry-plugin-export" if version else "poetry poetry-plugin-export"
        )
    else:
        tools = f"poetry=={version}"  # 1.2 to 1.8 bundle the export plugin
    groups = " --only main" if numbers >= (1, 2) else ""
    ctx.decided("poetry.lock", f"poetry {version or '(latest)'} exports the lock; pip installs it")
    return Install(
        manager="poetry",
        manifests=manifests,
        env=env,
        setup=[MAKE_VENV, _tool_setup("poetry", tools)],
        install=Step(
            f"poetry export --format requirements.txt{groups} --output /tmp/requirements.txt "
            "&& pip install -r /tmp/requirements.txt",
            (PIP_CACHE,),
        ),
        dependencies=dependencies,
        from_git="poetry.lock" if 'type = "git"' in app.read_text("poetry.lock") else None,
    )


def _pipenv(app: App, ctx: PlanContext) -> Install:
    pipfile = app.read_toml("Pipfile")
    packages = _pipfile_packages(pipfile)
    names: dict[str, set[str]] = {}
    for key in packages:
        names.setdefault(normalize(key), set())
    if app.has_file("Pipfile.lock"):
        app.read_json_object("Pipfile.lock")  # fail early, with the file's name, if broken
        ctx.decided("Pipfile.lock", "pipenv exports the locked dependencies for pip")
        return Install(
            manager="pipenv",
            manifests=["Pipfile", "Pipfile.lock"],
            setup=[MAKE_VENV, _tool_setup("pipenv", "pipenv")],
            install=Step(
                "pipenv requirements > /tmp/requirements.txt "
                "&& pip install -r /tmp/requirements.txt",
                (PIP_CACHE,),
            ),
            dependencies=names,
        )
    ctx.decided("Pipfile", "no Pipfile.lock: pip installs [packages] as written")
    ctx.warning("no Pipfile.lock: dependency versions are resolved at build time")
    specs = _pipfile_specs(packages)
    install = Step(f"pip install {' '.join(shlex.quote(s) for s in specs)}", (PIP_CACHE,))
    return Install(
        manager="pip",
        manifests=["Pipfile"],
        setup=[MAKE_VENV],
        install=install if specs else None,
        dependencies=names,
    )


def _pip_requirements(app: App, ctx: PlanContext) -> Install:
    found = read_requirements(app, "requirements.txt")
    ctx.decided("requirements.txt", "pip installs the requirements")
    result = Install(
        manager="pip",
        manifests=found.files,
        setup=[MAKE_VENV],
        install=Step("pip install -r requirements.txt", (PIP_CACHE,)),
        dependencies=found.names,
        from_git="requirements.txt" if found.from_git else None,
        no_binary=found.no_binary,
        pins=found.pins,
    )
    if found.local:
        result.copy_source_first = True
        ctx.info(
            f"requirements.txt installs local code ({found.local[0]}): the source is copied "
            "before the install"
        )
    return result


def _pyproject(pyproject: dict[str, Any], ctx: PlanContext) -> Install:
    project = pyproject.get("project") if isinstance(pyproject.get("project"), dict) else {}
    assert isinstance(project, dict)
    dynamic = project.get("dynamic") or []
    packaged = "build-system" in pyproject
    if "dependencies" in dynamic:
        ctx.decided("pyproject.toml", "dynamic dependencies: pip installs the project")
        return Install(
            manager="pip",
            manifests=["pyproject.toml"],
            setup=[MAKE_VENV],
            install=Step("pip install .", (PIP_CACHE,)),
            copy_source_first=True,
            dependencies={},
        )
    specs = [str(spec) for spec in project.get("dependencies") or []]
    ctx.decided("pyproject.toml", f"pip installs [project] dependencies ({len(specs)})")
    git = any(_VCS.search(spec) for spec in specs)
    install = Step(f"pip install {' '.join(shlex.quote(s) for s in specs)}", (PIP_CACHE,))
    result = Install(
        manager="pip",
        manifests=["pyproject.toml"],
        setup=[MAKE_VENV],
        install=install if specs else None,
        dependencies=_pyproject_dependencies(pyproject),
        from_git="pyproject.toml" if git else None,
    )
    if packaged:
        result.after_source.append(Step("pip install --no-deps .", (PIP_CACHE,)))
    return result


def detect_install(app: App, ctx: PlanContext) -> Install:
    pyproject = app.read_toml("pyproject.toml") if app.has_file("pyproject.toml") else {}
    if app.has_file("uv.lock"):
        return _uv(app, pyproject, ctx)
    if app.has_file("poetry.lock"):
        return _poetry(app, pyproject, ctx)
    if app.has_file("pdm.lock"):
        return _pdm(app, pyproject, ctx)
    if app.has_file("Pipfile"):
        return _pipenv(app, ctx)
    if app.has_file("requirements.txt"):
        return _pip_requirements(app, ctx)
    if pyproject:
        if isinstance((pyproject.get("tool") or {}).get("poetry"), dict) and not isinstance(
            pyproject.get("project"), dict
        ):
            return _poetry(app, pyproject, ctx)
        return _pyproject(pyproject, ctx)
    if app.has_file("setup.py"):
        ctx.decided("setup.py", "pip installs the project")
        return Install(
            manager="pip",
            setup=[MAKE_VENV],
            install=Step("pip install .", (PIP_CACHE,)),
            copy_source_first=True,
        )
    ctx.info("no requirements.txt, pyproject.toml or Pipfile: nothing to install")
    return Install(manager="none", setup=[MAKE_VENV])
