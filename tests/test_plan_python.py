"""The Python provider: workers, console scripts, framework starts, system packages, tools'
versions, and the runtime stage without the build tools."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.plan import BuildConfig
from tests.test_plan import plan_files, planned

FLASK = "from flask import Flask\napp = Flask(__name__)\n"


def stages(dockerfile: str) -> tuple[str, str]:
    build, runtime = dockerfile.split("\nFROM ", 2)[1:]
    return build, runtime


# --- workers ---------------------------------------------------------------------------------


def test_a_bot_without_a_web_server_is_a_worker(tmp_path: Path) -> None:
    files = {
        "requirements.txt": "discord.py\n",
        "bot.py": "import discord, os\nclient = discord.Client()\nclient.run(os.environ['T'])\n",
    }
    plan = planned(plan_files(tmp_path, files))
    assert plan.start == "python bot.py"
    assert plan.kind == "worker" and plan.port is None
    assert plan.to_dict()["kind"] == "worker" and plan.to_dict()["port"] is None
    assert "EXPOSE" not in plan.dockerfile
    assert any("planned as a worker" in m.text and 'kind = "web"' in m.text for m in plan.messages)


def test_a_main_file_that_reads_the_port_is_web(tmp_path: Path) -> None:
    files = {"main.py": "import os\nport = int(os.environ['PORT'])\n"}
    plan = planned(plan_files(tmp_path, files))
    assert plan.kind == "web" and plan.port == 8080 and "kind" not in plan.to_dict()
    assert "EXPOSE 8080" in plan.dockerfile


def test_kind_setting_and_a_worker_only_procfile(tmp_path: Path) -> None:
    files = {"bot.py": "print('x')\n", "click-deploy.toml": '[build]\nkind = "web"\n'}
    assert planned(plan_files(tmp_path / "a", files)).kind == "web"
    procfile = {
        "requirements.txt": "flask\n",
        "app.py": FLASK,
        "Procfile": "worker: celery -A t w\n",
    }
    plan = planned(plan_files(tmp_path / "b", procfile))
    assert (plan.start, plan.kind) == ("celery -A t w", "worker")
    configured = plan_files(tmp_path / "c", {"app.py": FLASK}, BuildConfig(kind="worker"))
    assert planned(configured).kind == "worker"


# --- console scripts -----------------------------------------------------------------------

PACKAGE = """\
[project]
name = "hello-pkg"
version = "0.1.0"
dependencies = []
[project.scripts]
{scripts}
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"
"""


def test_a_console_script_is_the_start(tmp_path: Path) -> None:
    files = {
        "pyproject.toml": PACKAGE.format(scripts='hello-pkg = "hello_pkg:main"'),
        "src/hello_pkg/__init__.py": "def main():\n    print('Hello')\n",
    }
    plan = planned(plan_files(tmp_path, files))
    assert plan.start == "hello-pkg" and plan.kind == "worker"
    assert "pip install --no-deps ." in plan.dockerfile


def test_several_console_scripts_say_which_setting_decides(tmp_path: Path) -> None:
    scripts = 'serve = "hello_pkg:serve"\nmigrate = "hello_pkg:migrate"'
    files = {"pyproject.toml": PACKAGE.format(scripts=scripts)}
    result = plan_files(tmp_path / "a", files)
    assert not result.ok
    assert "[project.scripts] has 2 scripts (migrate, serve)" in (result.message or "")
    assert 'start = "<script>"' in (result.message or "")
    named = PACKAGE.format(scripts=f'{scripts}\nhello-pkg = "hello_pkg:web"')
    plan = planned(plan_files(tmp_path / "b", {"pyproject.toml": named}))
    assert plan.start == "hello-pkg"


# --- frameworks ----------------------------------------------------------------------------


def test_framework_production_starts(tmp_path: Path) -> None:
    cases = {
        "fasthtml": ({"requirements.txt": "python-fasthtml\n",
                      "main.py": "from fasthtml.common import *\napp, rt = fast_app()\nserve()\n"},
                     "uvicorn main:app --host 0.0.0.0 --port $PORT"),
        "streamlit": ({"requirements.txt": "streamlit\n",
                       "streamlit_app.py": "import streamlit as st\nst.write('hi')\n"},
                      "streamlit run streamlit_app.py --server.port $PORT "
                      "--server.address 0.0.0.0 --server.headless true"),
        "flask": ({"requirements.txt": "flask\ngunicorn\n", "app.py": FLASK},
                  "gunicorn app:app --bind 0.0.0.0:$PORT"),
    }  # fmt: skip
    for name, (files, start) in cases.items():
        plan = planned(plan_files(tmp_path / name, files))
        assert (plan.start, plan.kind) == (start, "web"), name
    # FastHTML writes its session key (.sesskey) next to the app when it starts
    fasthtml = planned(plan_files(tmp_path / "fasthtml", {}))
    runtime = stages(fasthtml.dockerfile)[1]
    assert "chown -R 10001:10001 /app" in runtime


# --- system packages -----------------------------------------------------------------------


def test_pycairo_builds_with_a_compiler_and_runs_with_the_library_only(tmp_path: Path) -> None:
    plan = planned(plan_files(tmp_path, {"requirements.txt": "pycairo==1.26\n", "main.py": ""}))
    build, runtime = stages(plan.dockerfile)
    assert "gcc libc6-dev pkg-config libcairo2-dev" in build
    assert "install -y --no-install-recommends libcairo2 &&" in runtime
    assert "gcc" not in runtime and "-dev" not in runtime
    assert any("pycairo needs Debian packages" in line for line in plan.evidence)


@pytest.mark.parametrize(
    ("requirement", "build", "run"),
    [
        ("psycopg[binary]>=3", None, None),
        ("psycopg>=3", None, "libpq5"),
        ("psycopg[c]", "libpq-dev", "libpq5"),
        ("psycopg2==2.9.9", "libpq-dev", "libpq5"),
        ("pdf2image", None, "poppler-utils"),
        ("pydub", None, "ffmpeg"),
        ("lxml", None, None),
        ("--no-binary lxml\nlxml", "libxslt1-dev", "libxslt1.1"),
        ("Pillow==11.1.0", None, None),
        ("Pillow==10.4.0", "libjpeg62-turbo-dev", "libjpeg62-turbo"),  # no cp313 wheels
        ("mysqlclient", "default-libmysqlclient-dev", "libmariadb3"),
        ("git+https://example.com/org/lib.git#egg=lib", "git", None),
        ("lib @ git+https://example.com/org/lib.git", "git", None),
    ],
)  # fmt: skip
def test_system_packages_table(
    tmp_path: Path, requirement: str, build: str | None, run: str | None
) -> None:
    plan = planned(plan_files(tmp_path, {"requirements.txt": requirement + "\n", "main.py": ""}))
    build_stage, runtime_stage = stages(plan.dockerfile)
    assert ("apt-get" in build_stage) == (build is not None)
    assert ("apt-get" in runtime_stage) == (run is not None)
    if build is not None:
        assert build in build_stage
    if run is not None:
        assert run in runtime_stage


def test_apt_settings_build_and_run_apart(tmp_path: Path) -> None:
    toml = '[build]\napt_packages = ["tzdata", "libxmlsec1-dev"]\napt_build_packages = ["swig"]\n'
    plan = planned(plan_files(tmp_path, {"main.py": "", "click-deploy.toml": toml}))
    build, runtime = stages(plan.dockerfile)
    assert "swig" in build and "swig" not in runtime
    assert "tzdata" in runtime and "tzdata" not in build
    assert "libxmlsec1-dev" in build and "libxmlsec1-dev" in runtime  # as with one stage
    assert any("apt_build_packages" in m.text for m in plan.messages)


# --- tools, dev dependencies, the runtime stage --------------------------------------------

UV_PROJECT = '[project]\nname = "x"\nversion = "1"\ndependencies = ["httpx"]\n'


@pytest.mark.parametrize(
    ("extra", "package"),
    [
        ({"pyproject.toml": UV_PROJECT + '[tool.uv]\nrequired-version = ">=0.5.2"\n'},
         "'uv>=0.5.2'"),
        ({"pyproject.toml": UV_PROJECT + '[tool.uv]\nrequired-version = "0.4.30"\n'},
         "uv==0.4.30"),
        ({"mise.toml": '[tools]\nuv = "0.5"\n'}, "'uv==0.5.*'"),
        ({"mise.toml": '[tools]\nuv = "latest"\n'}, "uv"),
    ],
)  # fmt: skip
def test_uv_installs_the_version_the_project_pins(
    tmp_path: Path, extra: dict[str, str], package: str
) -> None:
    files = {"pyproject.toml": UV_PROJECT, "uv.lock": "version = 1\n", "main.py": "", **extra}
    plan = planned(plan_files(tmp_path, files))
    assert f"/opt/uv/bin/pip install {package} &&" in plan.dockerfile


def test_pdm_installs_production_dependencies_only(tmp_path: Path) -> None:
    files = {"pyproject.toml": UV_PROJECT, "pdm.lock": "[metadata]\n", "main.py": ""}
    plan = planned(plan_files(tmp_path, files))
    assert (plan.install or "").startswith("pdm export --prod")
    assert "COPY pyproject.toml pdm.lock ./" in plan.dockerfile


def test_the_runtime_stage_has_the_venv_and_the_app_but_no_tools(tmp_path: Path) -> None:
    files = {"pyproject.toml": UV_PROJECT, "uv.lock": "version = 1\n", "main.py": ""}
    plan = planned(plan_files(tmp_path, files))
    build, runtime = stages(plan.dockerfile)
    assert "uv sync --frozen --no-dev" in build
    assert "/opt/uv" not in runtime and "uv " not in runtime
    assert "COPY --from=build /opt/venv /opt/venv" in runtime
    assert "COPY --from=build /app /app" in runtime
    assert "PATH=/opt/venv/bin:$PATH" in runtime
    assert json.dumps(plan.to_dict())


def test_format_plan_says_it_is_a_worker(tmp_path: Path) -> None:
    from pipeline.plan import format_plan

    text = format_plan(plan_files(tmp_path, {"bot.py": "print('working')\n"}))
    assert "kind:       worker (no port, no HTTP check)\n" in text
    assert "kind:" not in format_plan(plan_files(tmp_path / "web", {"app.py": FLASK}))


def test_port_in_a_comment_is_no_sign_of_a_server(tmp_path: Path) -> None:
    files = {
        "main.py": "import time\n# a worker: no port, no HTTP\nwhile True:\n    time.sleep(60)\n"
    }
    assert planned(plan_files(tmp_path, files)).kind == "worker"


def test_requires_python_above_the_default_decides(tmp_path: Path) -> None:
    toml = '[project]\nname = "x"\nversion = "1"\nrequires-python = ">=3.14"\ndependencies = []\n'
    plan = planned(plan_files(tmp_path / "a", {"pyproject.toml": toml, "main.py": ""}))
    assert plan.version == "3.14"
    assert "pyproject.toml requires-python: python 3.14 (>=3.14)" in plan.evidence
    low = toml.replace(">=3.14", ">=3.9")
    assert planned(plan_files(tmp_path / "b", {"pyproject.toml": low, "main.py": ""})).version == (
        "3.13"
    )


def test_a_configured_start_on_the_port_is_web(tmp_path: Path) -> None:
    start = "python -m http.server $PORT"
    plan = planned(plan_files(tmp_path, {"bot.py": "print(1)\n"}, BuildConfig(start=start)))
    assert (plan.start, plan.kind) == (start, "web")
    other = BuildConfig(start="python bot.py --verbose")
    assert planned(plan_files(tmp_path / "b", {"bot.py": "print(1)\n"}, other)).kind == "worker"


def test_build_settings_for_apt_and_kind_are_checked_and_merged() -> None:
    from pipeline.errors import ConfigError
    from pipeline.plan import merge_configs, parse_build_config, parse_repo_config

    with pytest.raises(ConfigError, match="kind: Input should be 'web' or 'worker'"):
        parse_build_config({"kind": "job"})
    with pytest.raises(ConfigError, match="is not a Debian package name"):
        parse_build_config({"apt_build_packages": ["gcc; rm -rf /"]})
    repo = parse_repo_config({"build": {"apt_build_packages": ["swig"], "kind": "worker"}})
    merged = merge_configs(BuildConfig(apt_build_packages=("gcc",)), repo)
    assert merged.apt_build_packages == ("swig", "gcc") and merged.kind == "worker"
    assert merge_configs(BuildConfig(kind="web"), repo).kind == "web"


def test_the_only_python_file_is_started(tmp_path: Path) -> None:
    files = {"requirements.txt": "aiogram\n", "telegram_bot.py": "import aiogram\n"}
    plan = planned(plan_files(tmp_path / "one", files))
    assert (plan.start, plan.kind) == ("python telegram_bot.py", "worker")
    two = plan_files(tmp_path / "two", {**files, "helpers.py": ""})
    assert not two.ok and "no start command for this python app" in (two.message or "")


def test_a_console_script_project_is_installed_whatever_installs_the_dependencies(
    tmp_path: Path,
) -> None:
    files = {
        "pyproject.toml": PACKAGE.format(scripts='hello-pkg = "hello_pkg:main"'),
        "requirements.txt": "httpx\n",
    }
    plan = planned(plan_files(tmp_path, files))
    build = stages(plan.dockerfile)[0]
    assert build.index("pip install -r requirements.txt") < build.index("pip install --no-deps .")
    assert build.count("pip install --no-deps .") == 1


@pytest.mark.parametrize(
    ("spec", "version"),
    [
        ("==3.11.*", "3.11"),
        ("<3.12", "3.11"),
        (">=3.9,<3.12", "3.11"),
        ("~=3.10.0", "3.10"),
        (">=3.8", "3.13"),
        (">=3.14", "3.14"),
    ],
)
def test_requires_python_below_the_default_decides_too(
    tmp_path: Path, spec: str, version: str
) -> None:
    """A project that excludes the default gets the newest version it allows (a pdm
    project made on Python 3.11 says `==3.11.*`)."""
    toml = f'[project]\nname = "x"\nversion = "1"\nrequires-python = "{spec}"\ndependencies = []\n'
    plan = planned(plan_files(tmp_path, {"pyproject.toml": toml, "main.py": ""}))
    assert plan.version == version


def test_a_requires_python_that_is_no_specifier_names_the_file(tmp_path: Path) -> None:
    toml = '[project]\nname = "x"\nversion = "1"\nrequires-python = "three"\ndependencies = []\n'
    result = plan_files(tmp_path, {"pyproject.toml": toml, "main.py": ""})
    assert not result.ok
    assert result.message is not None and "pyproject.toml: requires-python" in result.message
