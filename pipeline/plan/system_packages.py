"""Well-known packages that need Debian packages: to build them, and to run them.

One table per ecosystem: a Python or npm package's name → the Debian packages its build
needs (compilers, headers: the build stage only) and the ones it loads at run time (shared
libraries, programs it calls: the stage the app runs in). `add_system_packages` writes a
match into a layout and says why in the plan's evidence.

Packages that ship wheels (or prebuilt binaries) for linux x86_64 need nothing, unless the
build is told to compile them (`--no-binary`); those rows are marked `from_source`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.plan.context import Layout, PlanContext

CC = ("gcc", "libc6-dev")
NODE_GYP = ("python3", "make", "g++")


@dataclass(frozen=True)
class Needs:
    build: tuple[str, ...] = ()
    run: tuple[str, ...] = ()
    from_source: bool = False  # only when the package is compiled instead of a wheel


PYTHON: dict[str, Needs] = {
    "pycairo": Needs((*CC, "pkg-config", "libcairo2-dev"), ("libcairo2",)),
    "pygobject": Needs(
        (*CC, "pkg-config", "libcairo2-dev", "libgirepository1.0-dev"),
        ("libcairo2", "libgirepository-1.0-1", "gir1.2-glib-2.0"),
    ),
    "psycopg2": Needs((*CC, "libpq-dev"), ("libpq5",)),
    "psycopg": Needs((), ("libpq5",)),  # psycopg 3, pure Python: loads libpq at run time
    "psycopg-c": Needs((*CC, "libpq-dev"), ("libpq5",)),
    "mysqlclient": Needs((*CC, "pkg-config", "default-libmysqlclient-dev"), ("libmariadb3",)),
    "python-ldap": Needs((*CC, "libldap2-dev", "libsasl2-dev"), ("libldap-2.5-0", "libsasl2-2")),
    "pyaudio": Needs((*CC, "portaudio19-dev"), ("libportaudio2",)),
    "xmlsec": Needs(
        (*CC, "pkg-config", "libxmlsec1-dev", "libxml2-dev"),
        ("libxmlsec1", "libxmlsec1-openssl"),
    ),
    "pdf2image": Needs((), ("poppler-utils",)),
    "pydub": Needs((), ("ffmpeg",)),
    "ffmpeg-python": Needs((), ("ffmpeg",)),
    "moviepy": Needs((), ("ffmpeg",)),
    "openai-whisper": Needs((), ("ffmpeg",)),
    "pytesseract": Needs((), ("tesseract-ocr",)),
    "python-magic": Needs((), ("libmagic1",)),
    "weasyprint": Needs((), ("libpango-1.0-0", "libpangoft2-1.0-0", "libharfbuzz-subset0")),
    "cairosvg": Needs((), ("libcairo2",)),
    "pillow": Needs(
        (*CC, "zlib1g-dev", "libjpeg62-turbo-dev", "libfreetype-dev"),
        ("zlib1g", "libjpeg62-turbo", "libfreetype6"),
        from_source=True,
    ),
    "lxml": Needs((*CC, "libxml2-dev", "libxslt1-dev"), ("libxml2", "libxslt1.1"), True),
    "cryptography": Needs((*CC, "libssl-dev", "libffi-dev", "cargo"), ("libssl3",), True),
    "cffi": Needs((*CC, "libffi-dev"), ("libffi8",), True),
}

# The first release with manylinux wheels for a Python version: a pin older than that is
# compiled from source on that Python.
WHEELS_SINCE: dict[str, dict[str, tuple[int, ...]]] = {
    "pillow": {"3.11": (9, 3), "3.12": (10, 1), "3.13": (11, 0)},
}

# psycopg 3 with a bundled libpq, or compiled by psycopg-c (which has its own row).
_PSYCOPG_EXTRAS_WITH_THEIR_OWN = {"binary"}

NODE: dict[str, Needs] = {
    # Prebuilt binaries are downloaded from GitHub at install; when that fails the module
    # is compiled by node-gyp.
    "bcrypt": Needs(NODE_GYP),
    "better-sqlite3": Needs(NODE_GYP),
    "sqlite3": Needs(NODE_GYP),
    "node-gyp": Needs(NODE_GYP),
    "argon2": Needs(NODE_GYP),
    "canvas": Needs(
        (
            *NODE_GYP,
            "pkg-config",
            "libcairo2-dev",
            "libpango1.0-dev",
            "libjpeg-dev",
            "libgif-dev",
            "librsvg2-dev",
        ),
        (
            "libcairo2",
            "libpango-1.0-0",
            "libpangocairo-1.0-0",
            "libjpeg62-turbo",
            "libgif7",
            "librsvg2-2",
        ),
    ),
    "sharp": Needs(NODE_GYP, from_source=True),  # sharp < 0.33 without its libvips download
}


@dataclass(frozen=True)
class Match:
    package: str
    needs: Needs


def _compiled(name: str, pin: str | None, python: str | None) -> bool:
    """Whether pip compiles `name` at `pin` on `python` for want of a wheel."""
    since = WHEELS_SINCE.get(name, {}).get(python or "")
    if since is None or pin is None:
        return False
    return tuple(int(part) for part in pin.split(".")) < since


def python_matches(
    dependencies: Mapping[str, set[str]],
    *,
    no_binary: Iterable[str] = (),
    pins: Mapping[str, str] | None = None,
    python: str | None = None,
) -> list[Match]:
    """The rows for `dependencies` (normalized name → extras). `no_binary` names the
    packages the build compiles (":all:" for every one); `pins` (name → version) and the
    `python` version tell which pinned releases have no wheel for it."""
    compiled = set(no_binary)
    found = []
    for name, extras in dependencies.items():
        needs = PYTHON.get(name)
        if needs is None:
            continue
        from_source = ":all:" in compiled or name in compiled
        if needs.from_source and not from_source:
            from_source = _compiled(name, (pins or {}).get(name), python)
        if needs.from_source and not from_source:
            continue
        if name == "psycopg" and extras & _PSYCOPG_EXTRAS_WITH_THEIR_OWN:
            continue
        if name == "psycopg" and "c" in extras:
            needs = PYTHON["psycopg-c"]
        found.append(Match(name, needs))
    return found


def node_matches(package_json: Mapping[str, Any]) -> list[Match]:
    """The rows for package.json's dependencies and devDependencies (both are installed
    in the build stage, where native modules compile)."""
    dependencies: list[str] = []
    for key in ("dependencies", "devDependencies", "optionalDependencies"):
        section = package_json.get(key)
        if isinstance(section, dict):
            dependencies += [str(name) for name in section]
    return [
        Match(name, NODE[name])
        for name in dict.fromkeys(dependencies)
        if name in NODE and not NODE[name].from_source
    ]


def _extend(target: list[str], packages: Iterable[str]) -> None:
    target += [package for package in packages if package not in target]


def add_system_packages(
    ctx: PlanContext, layout: Layout, matches: list[Match], source: str
) -> None:
    """Build packages go to the build stage; run packages to the runtime stage when the
    layout has a Debian one, else to the one stage (where the build also sees them)."""
    for match in matches:
        _extend(layout.apt_packages, match.needs.build)
        runtime = layout.runtime
        if runtime is not None and runtime.apt:
            _extend(runtime.apt_packages, match.needs.run)
        elif match.needs.run:
            _extend(layout.apt_packages, match.needs.run)
        parts = []
        if match.needs.build:
            parts.append(f"build with {', '.join(match.needs.build)}")
        if match.needs.run:
            parts.append(f"run with {', '.join(match.needs.run)}")
        ctx.decided(source, f"{match.package} needs Debian packages: {'; '.join(parts)}")


def add_git(ctx: PlanContext, layout: Layout, source: str) -> None:
    """Dependencies fetched from git repositories need git in the build stage."""
    _extend(layout.apt_packages, ("git",))
    ctx.decided(source, "dependencies come from git: git in the build stage")
