"""The start command of a Python app: Django → gunicorn, FastAPI and FastHTML → uvicorn,
Flask → gunicorn, Streamlit → `streamlit run`, else a main file or a `[project.scripts]`
console script. A main file that shows no sign of serving HTTP is a worker (a bot, a
queue consumer): no port, no HTTP check."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pipeline.plan.app import App

MAIN_FILES = (
    "main.py", "app.py", "server.py", "run.py", "wsgi.py", "application.py", "bot.py",
    "worker.py", "__main__.py",
)  # fmt: skip
STREAMLIT_FILES = ("streamlit_app.py", "app.py", "main.py", "Home.py", "src/app.py")
# Packages and words that show a program serves HTTP (or reads the port it is given).
WEB_PACKAGES = {
    "flask", "fastapi", "django", "starlette", "aiohttp", "tornado", "bottle", "sanic",
    "quart", "falcon", "uvicorn", "gunicorn", "hypercorn", "waitress", "streamlit", "gradio",
    "python-fasthtml", "litestar", "cherrypy", "pyramid", "dash", "panel", "nicegui",
    "werkzeug", "granian", "daphne", "flet", "reflex", "chainlit",
}  # fmt: skip
_WEB_WORDS = re.compile(
    r"\bPORT\b|http\.server|socketserver|wsgiref|aiohttp\.web|\bweb\.run_app|"
    r"\b(?:flask|fastapi|django|starlette|tornado|bottle|sanic|quart|falcon|uvicorn|"
    r"gunicorn|waitress|fasthtml|gradio|litestar|cherrypy|pyramid|dash|nicegui|werkzeug)\b"
    r"|\.listen\(|\.bind\(|serve_forever|run_app\(|\.run\(host",
)
_COMMENT = re.compile(r"#.*$", re.MULTILINE)
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
    worker: bool = False  # no port, no HTTP check
    writable: list[str] = field(default_factory=list)  # dirs the app writes at run time


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
    if "python-fasthtml" in dependencies:
        fasthtml = _fasthtml(app)
        if fasthtml is not None:
            return fasthtml
    if "streamlit" in dependencies:
        streamlit = _streamlit(app)
        if streamlit is not None:
            return streamlit
    only = [path for path in app.glob("*.py") if path not in ("setup.py", "conftest.py")]
    for path in (*MAIN_FILES, *(only if len(only) == 1 else [])):
        if app.has_file(path):
            worker = not serves_http(app.read_text(path), dependencies)
            return Start(
                command=f"python {path}",
                framework="a worker (no sign of an HTTP server)" if worker else "a main file",
                source=path,
                worker=worker,
            )
    return None


def serves_http(text: str, dependencies: dict[str, set[str]]) -> bool:
    """Whether a program looks like it serves HTTP: it reads a port, imports a web
    framework or server, or the project depends on one."""
    code = _COMMENT.sub("", text)
    return bool(_WEB_WORDS.search(code)) or bool(WEB_PACKAGES & set(dependencies))


def _fasthtml(app: App) -> Start | None:
    """`app, rt = fast_app()` (or `app = FastHTML()`): `python main.py` runs `serve()`,
    which does nothing unless the file is run as `__main__`, so uvicorn serves it."""
    pattern = re.compile(r"^(\w+)\s*(?:,\s*\w+\s*)*=\s*(?:fast_app|FastHTML)\(", re.MULTILINE)
    for path in dict.fromkeys(_candidates(app)):
        match = pattern.search(app.read_text(path))
        if match:
            module, root = _module(path)
            app_dir = f" --app-dir {root}" if root else ""
            return Start(
                command=f"uvicorn {module}:{match.group(1)} --host 0.0.0.0 --port $PORT{app_dir}",
                framework="FastHTML",
                source=path,
                # fast_app() writes its session key to .sesskey in the working directory
                writable=["/app"],
            )
    return None


def _streamlit(app: App) -> Start | None:
    for path in STREAMLIT_FILES:
        if app.has_file(path) and "streamlit" in app.read_text(path):
            return Start(
                command=(
                    f"streamlit run {path} --server.port $PORT --server.address 0.0.0.0 "
                    "--server.headless true"
                ),
                framework="Streamlit",
                source=path,
            )
    return None


def script_start(
    app: App, scripts: dict[str, str], project: str | None, dependencies: dict[str, set[str]]
) -> tuple[Start | None, str | None]:
    """The `[project.scripts]` console script to start: the only one, or the one named
    after the project. (start, None), or (None, why it cannot choose)."""
    if not scripts:
        return None, None
    names = sorted(scripts)
    chosen = names[0] if len(names) == 1 else None
    if chosen is None and project is not None:
        wanted = re.sub(r"[-_.]+", "-", project).lower()
        chosen = next((n for n in names if re.sub(r"[-_.]+", "-", n).lower() == wanted), None)
    if chosen is None:
        return None, (
            f"pyproject.toml [project.scripts] has {len(names)} scripts ({', '.join(names)}) "
            f'and none is named after the project: set start = "<script>" under [build] in '
            "click-deploy.toml, or a Procfile web: line"
        )
    module = scripts[chosen].split(":", 1)[0].strip()
    relative = module.replace(".", "/")
    texts = [
        app.read_text(path)
        for path in (
            f"{relative}.py", f"{relative}/__init__.py", f"{relative}/__main__.py",
            f"src/{relative}.py", f"src/{relative}/__init__.py", f"src/{relative}/__main__.py",
        )
        if app.has_file(path)
    ]  # fmt: skip
    worker = not serves_http("\n".join(texts), dependencies)
    return (
        Start(
            command=chosen,
            framework=f"the console script {chosen} ({scripts[chosen]})"
            + (", a worker (no sign of an HTTP server)" if worker else ""),
            source="pyproject.toml",
            worker=worker,
        ),
        None,
    )
