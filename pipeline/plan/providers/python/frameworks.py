"""The start command of a Python web app: Django → gunicorn, FastAPI → uvicorn,
Flask → gunicorn, else a main file."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pipeline.plan.app import App

MAIN_FILES = ("main.py", "app.py", "server.py", "run.py", "wsgi.py", "application.py")
_CANDIDATES = (
    "main.py", "app.py", "server.py", "application.py", "wsgi.py", "asgi.py", "api.py", "run.py",
    "app/main.py", "app/app.py", "app/__init__.py", "app/server.py", "api/main.py",
    "src/main.py", "src/app.py", "src/app/main.py", "src/app/__init__.py",
)  # fmt: skip


@dataclass
class Start:
    command: str
    framework: str
    source: str  # the file that decided it
    needs: list[str] = field(default_factory=list)  # server packages the app must have
    build: str | None = None


def _module(path: str) -> tuple[str, str | None]:
    """ "app/main.py" → ("app.main", None); "src/app.py" → ("app", "src")."""
    root = None
    if path.startswith("src/"):
        root, path = "src", path.removeprefix("src/")
    module = path.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
    return module, root


def _candidates(app: App) -> list[str]:
    extra = [path for path in app.glob("*/main.py") if not path.startswith((".", "tests/"))]
    return [path for path in (*_CANDIDATES, *extra) if app.has_file(path)]


def _find_app(app: App, constructor: str) -> tuple[str, str] | None:
    """(file, target) for `x = Flask(…)` / `x = FastAPI(…)`, or a `create_app` factory."""
    assignment = re.compile(rf"^(\w+)\s*(?::\s*\w+\s*)?=\s*(?:\w+\.)?{constructor}\(", re.MULTILINE)
    factory = re.compile(r"^def (create_app|make_app)\(", re.MULTILINE)
    for path in dict.fromkeys(_candidates(app)):
        text = app.read_text(path)
        match = assignment.search(text)
        if match:
            return path, match.group(1)
        made = factory.search(text)
        if made and constructor in text:
            return path, f"{made.group(1)}()"
    return None


def _django(app: App) -> Start | None:
    manage = app.read_optional("manage.py")
    if manage is None:
        return None
    settings_module = None
    match = re.search(r"DJANGO_SETTINGS_MODULE['\"]\s*,\s*['\"]([\w.]+)['\"]", manage)
    if match:
        settings_module = match.group(1)
    package = settings_module.split(".")[0] if settings_module else None
    wsgi = None
    if package and app.has_file(f"{package}/wsgi.py"):
        wsgi = f"{package}.wsgi"
    else:
        for path in app.glob("*/wsgi.py"):
            if "get_wsgi_application" in app.read_text(path):
                wsgi = _module(path)[0]
                break
    if wsgi is None:
        return None
    start = Start(
        command=f"gunicorn {wsgi}:application --bind 0.0.0.0:$PORT",
        framework="Django",
        source="manage.py",
        needs=["gunicorn"],
    )
    settings_file = (
        settings_module.replace(".", "/") + ".py" if settings_module else f"{package}/settings.py"
    )
    settings = app.read_optional(settings_file) or ""
    if re.search(r"^\s*STATIC_ROOT\s*=", settings, re.MULTILINE):
        start.build = "python manage.py collectstatic --noinput"
    return start


def find_start(app: App, dependencies: dict[str, set[str]]) -> Start | None:
    if "django" in dependencies or app.has_file("manage.py"):
        django = _django(app)
        if django is not None:
            return django
    if "fastapi" in dependencies:
        found = _find_app(app, "FastAPI")
        if found is not None:
            path, target = found
            module, root = _module(path)
            app_dir = f" --app-dir {root}" if root else ""
            factory = " --factory" if target.endswith("()") else ""
            target = target.removesuffix("()")
            standard = "standard" in dependencies.get("fastapi", set())
            return Start(
                command=f"uvicorn {module}:{target} --host 0.0.0.0 --port $PORT{app_dir}{factory}",
                framework="FastAPI",
                source=path,
                needs=[] if standard else ["uvicorn"],
            )
    if "flask" in dependencies:
        found = _find_app(app, "Flask")
        if found is not None:
            path, target = found
            module, root = _module(path)
            chdir = f" --chdir {root}" if root else ""
            quoted = f"'{module}:{target}'" if target.endswith("()") else f"{module}:{target}"
            return Start(
                command=f"gunicorn {quoted} --bind 0.0.0.0:$PORT{chdir}",
                framework="Flask",
                source=path,
                needs=["gunicorn"],
            )
    for path in MAIN_FILES:
        if app.has_file(path):
            return Start(command=f"python {path}", framework="a main file", source=path)
    return None
