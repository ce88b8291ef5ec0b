"""The planner: every example app planned and snapshotted, plus targeted cases.

Snapshots live in tests/snapshots/plan/<example>.json; `UPDATE_SNAPSHOTS=1` rewrites them.
A missing snapshot is a failure otherwise.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import ConfigError
from pipeline.plan import (
    App,
    BaseImages,
    BuildConfig,
    BuildPlan,
    InvalidFile,
    PlanResult,
    format_plan,
    merge_configs,
    parse_build_config,
    parse_repo_config,
    plan_app,
)
from pipeline.plan.dockerfile import DEFAULT_DOCKERIGNORE
from pipeline.settings import Settings

HERE = Path(__file__).resolve().parent
EXAMPLES_DIR = HERE / "examples"
SNAPSHOTS_DIR = HERE / "snapshots" / "plan"
EXAMPLES = sorted(path.name for path in EXAMPLES_DIR.iterdir() if path.is_dir())
MIRROR = "localhost:5000"  # what the test infrastructure serves the base images from

REQUIRED_EXAMPLES = {
    "node-npm", "node-pnpm", "node-yarn-berry", "node-bun", "node-vite-spa",
    "python-pip-flask", "python-django", "python-fastapi-uv", "python-poetry",
    "go-root", "go-cmd", "php-composer", "php-plain", "ruby-rack", "ruby-plain",
    "static-index", "static-public", "procfile", "dockerfile-own", "with-click-deploy-toml",
    "unknown",
}  # fmt: skip


def plan_example(name: str, config: BuildConfig | None = None) -> PlanResult:
    return plan_app(EXAMPLES_DIR / name, config or BuildConfig(), BaseImages(mirror=MIRROR))


def make_app(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def plan_files(
    tmp_path: Path,
    files: dict[str, str],
    config: BuildConfig | None = None,
    images: BaseImages | None = None,
) -> PlanResult:
    make_app(tmp_path, files)
    return plan_app(tmp_path, config or BuildConfig(), images or BaseImages())


def planned(result: PlanResult) -> BuildPlan:
    assert result.ok, result.message
    assert result.plan is not None
    return result.plan


def snapshot_form(data: dict[str, Any], root: Path) -> Any:
    """The result as stored: any absolute path of the checkout replaced (there should be
    none), and the Dockerfile and .dockerignore as lists of lines, so diffs are readable."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    stored: dict[str, Any] = json.loads(text.replace(str(root), "<root>"))
    plan = stored.get("plan")
    if isinstance(plan, dict):
        for key in ("dockerfile", "dockerignore"):
            if isinstance(plan.get(key), str):
                plan[key] = plan[key].splitlines()
    return stored


# --- every example, snapshotted ---------------------------------------------------------------


def test_every_required_example_exists() -> None:
    assert set(EXAMPLES) >= REQUIRED_EXAMPLES


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_matches_snapshot(name: str) -> None:
    result = plan_example(name)
    actual = snapshot_form(result.to_dict(), EXAMPLES_DIR / name)
    json.dumps(actual)  # serializable
    snapshot = SNAPSHOTS_DIR / f"{name}.json"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        snapshot.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n")
    assert snapshot.exists(), f"no snapshot {snapshot}: run with UPDATE_SNAPSHOTS=1"
    assert json.loads(snapshot.read_text()) == actual


def test_only_unknown_cannot_be_planned() -> None:
    failed = [name for name in EXAMPLES if not plan_example(name).ok]
    assert failed == ["unknown"]


def generated_examples() -> list[str]:
    names = []
    for name in EXAMPLES:
        result = plan_example(name)
        if result.ok and result.plan is not None and result.plan.generated:
            names.append(name)
    return names


# The app, or its framework's server (Next standalone, Nitro, SvelteKit's adapter-node), reads
# PORT from the environment.
APPS_READING_PORT_THEMSELVES = (
    "go-cmd", "go-root", "go-workspace", "node-bun", "node-bun-module", "node-next-standalone",
    "node-npm", "node-nuxt", "node-nx", "node-pnpm", "node-pnpm-json5", "node-prisma",
    "node-sveltekit-auto", "node-yarn-berry", "node-yarn-pnp", "node-yarn4-pnp", "ruby-plain",
    "shell-start", "static-caddyfile", "with-click-deploy-toml",
)  # fmt: skip


@pytest.mark.parametrize("name", generated_examples())
def test_generated_dockerfile_conventions(name: str) -> None:
    plan = planned(plan_example(name))
    text = plan.dockerfile
    lines = text.splitlines()
    assert not any(line.lstrip().lower().startswith("# syntax") for line in lines)
    assert "curl " not in text and "wget " not in text
    assert "useradd" not in text and "groupadd" not in text
    assert "ENV " in text and "PORT=8080" in text
    assert lines[-1].startswith('CMD ["/bin/sh", "-c", ')
    # The start command passes $PORT on, unless the app reads PORT from its environment
    # itself (its own start script or code). A bare "PORT" would always be there: the ENV
    # line above has it.
    # A worker has no port at all.
    if plan.kind == "worker":
        assert "EXPOSE" not in text
    else:
        assert "$PORT" in text or name in APPS_READING_PORT_THEMSELVES
    final_stage = text.rsplit("\nFROM ", 1)[-1]
    assert "USER 10001:10001" in final_stage
    for line in lines:
        if line.startswith("FROM "):
            assert line.split()[1].startswith((f"{MIRROR}/library/", f"{MIRROR}/oven/")), line


@pytest.mark.parametrize("name", generated_examples())
def test_source_is_copied_after_the_install(name: str) -> None:
    plan = planned(plan_example(name))
    lines = plan.dockerfile.splitlines()
    source = lines.index("COPY . .")
    if plan.install is not None:
        install = next(i for i, line in enumerate(lines) if plan.install in line)
        assert install < source, "the install must not depend on the source"
        copies = [i for i, line in enumerate(lines[:install]) if line.startswith("COPY ")]
        assert copies, "the manifests are copied before the install"


def test_dockerfile_own_is_used_as_is() -> None:
    plan = planned(plan_example("dockerfile-own"))
    example = EXAMPLES_DIR / "dockerfile-own"
    assert plan.runtime == "dockerfile"
    assert plan.dockerfile_path == "Dockerfile"
    assert plan.dockerfile == (example / "Dockerfile").read_text()
    assert plan.dockerignore is None  # the repo has its own


# --- version detection ------------------------------------------------------------------------

VERSION_CASES: list[tuple[dict[str, str], str, str]] = [
    ({"package.json": "{}"}, "node", "22"),
    ({"package.json": "{}", ".nvmrc": "v18.17.1\n"}, "node", "18"),
    ({"package.json": "{}", ".nvmrc": "lts/hydrogen"}, "node", "18"),
    ({"package.json": "{}", ".nvmrc": "lts/*"}, "node", "22"),
    ({"package.json": "{}", ".node-version": "20.11.0"}, "node", "20"),
    ({"package.json": '{"engines": {"node": ">=18 <21"}}'}, "node", "18"),
    # An open range takes the default (Node 18 is past its end of life).
    ({"package.json": '{"engines": {"node": ">=18"}}'}, "node", "22"),
    ({"package.json": '{"engines": {"node": ">=20.9.0"}}'}, "node", "22"),
    ({"package.json": '{"engines": {"node": "^18"}}'}, "node", "18"),
    ({"package.json": '{"engines": {"node": ">=24"}}'}, "node", "24"),
    ({"package.json": '{"engines": {"node": "^16 || ^20"}}'}, "node", "20"),
    ({"package.json": "{}", ".tool-versions": "python 3.11\nnodejs 20.1.0\n"}, "node", "20"),
    ({"package.json": "{}", ".nvmrc": "18", ".tool-versions": "nodejs 20"}, "node", "18"),
    ({"requirements.txt": ""}, "python", "3.13"),
    ({"requirements.txt": "", ".python-version": "3.11.4\n"}, "python", "3.11"),
    ({"requirements.txt": "", "runtime.txt": "python-3.10.12"}, "python", "3.10"),
    ({"requirements.txt": "", ".tool-versions": "python 3.9.18"}, "python", "3.9"),
    ({"Pipfile": '[requires]\npython_version = "3.11"\n'}, "python", "3.11"),
    ({"go.mod": "module x\n\ngo 1.21.5\n", "main.go": "package main\n"}, "go", "1.21"),
    ({"go.mod": "module x\n", "main.go": "package main\n"}, "go", "1.27"),
    ({"go.mod": "module x\n", "main.go": "package main\n", ".tool-versions": "golang 1.20"},
     "go", "1.20"),
    ({"composer.json": '{"require": {"php": "^8.1"}}', "index.php": ""}, "php", "8.1"),
    ({"composer.json": '{"require": {"php": "^7.4|^8.2"}}', "index.php": ""}, "php", "8.2"),
    ({"composer.json": '{"require": {"php": ">=8"}}', "index.php": ""}, "php", "8.4"),
    ({"index.php": ""}, "php", "8.4"),
    ({"Gemfile": "", "app.rb": ""}, "ruby", "3.3"),
    ({"Gemfile": "", "app.rb": "", ".ruby-version": "ruby-3.2.2"}, "ruby", "3.2"),
    ({"Gemfile": 'ruby "~> 3.1"\n', "app.rb": ""}, "ruby", "3.1"),
]  # fmt: skip


@pytest.mark.parametrize(("files", "runtime", "version"), VERSION_CASES)
def test_version_detection(
    tmp_path: Path, files: dict[str, str], runtime: str, version: str
) -> None:
    if runtime == "node" and "start" not in files["package.json"]:
        files = {**files, "index.js": ""}
    if runtime == "python":
        files = {**files, "main.py": ""}
    plan = planned(plan_files(tmp_path, files))
    assert (plan.runtime, plan.version) == (runtime, version)


def test_version_tags_in_images(tmp_path: Path) -> None:
    images = BaseImages(mirror=MIRROR)
    cases = {
        "node": ({"package.json": "{}", "index.js": "", ".nvmrc": "18"}, "node:18-bookworm-slim"),
        "python": (
            {"main.py": "", ".python-version": "3.11"},
            "python:3.11-slim",
        ),
        "php": ({"index.php": "", ".tool-versions": "php 8.2.1"}, "php:8.2-cli"),
        "ruby": ({"Gemfile": "", "app.rb": "", ".ruby-version": "3.1"}, "ruby:3.1-slim-bookworm"),
    }
    for runtime, (files, tag) in cases.items():
        root = make_app(tmp_path / runtime, files)
        plan = planned(plan_app(root, BuildConfig(), images))
        assert f"FROM {MIRROR}/library/{tag}" in plan.dockerfile, runtime


def test_unusable_version_file_is_a_warning(tmp_path: Path) -> None:
    plan = planned(plan_files(tmp_path, {"main.py": "", ".python-version": "pypy3.9-7.3"}))
    assert plan.version == "3.13"
    assert any(m.level == "warning" and ".python-version" in m.text for m in plan.messages)


# --- base images --------------------------------------------------------------------------------


def test_official_names_without_a_mirror() -> None:
    images = BaseImages()
    assert images.image("node", "18") == "node:18-bookworm-slim"
    assert images.image("python", "3.11") == "python:3.11-slim"
    assert images.image("golang", "1.19") == "golang:1.19-bookworm"
    assert images.image("runtime") == "debian:bookworm-slim"
    assert images.image("php", "8.2") == "php:8.2-cli"
    assert images.image("composer") == "composer:2"
    assert images.image("ruby", "3.1") == "ruby:3.1-slim-bookworm"
    assert images.image("caddy") == "caddy:2"


def test_mirror_replaces_docker_io() -> None:
    images = BaseImages(mirror="https://harbor.example.com/dockerhub/")
    assert (
        images.image("node", "18") == "harbor.example.com/dockerhub/library/node:18-bookworm-slim"
    )
    assert BaseImages(mirror="localhost:5000").image("golang", "1.19") == (
        "localhost:5000/library/golang:1.19-bookworm"
    )


def test_override_replaces_the_image_and_fills_the_version() -> None:
    images = BaseImages(
        mirror="localhost:5000",
        overrides={"node": "registry.local/base/node:{version}-alpine", "caddy": "my/caddy"},
    )
    assert images.image("node", "20") == "registry.local/base/node:20-alpine"
    assert images.image("caddy") == "my/caddy"
    assert images.image("python", "3.12") == "localhost:5000/library/python:3.12-slim"


def test_images_from_settings() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        base_image_mirror="mirror.example.com",
        base_image_python="py.example.com/python:{version}",
        base_image_runtime="gcr.io/distroless/static",
    )
    images = BaseImages.from_settings(settings)
    assert images.image("python", "3.11") == "py.example.com/python:3.11"
    assert images.image("runtime") == "gcr.io/distroless/static"
    assert images.image("ruby", "3.1") == "mirror.example.com/library/ruby:3.1-slim-bookworm"


def test_go_uses_the_runtime_image(tmp_path: Path) -> None:
    files = {"go.mod": "module x\n\ngo 1.19\n", "main.go": "package main\n"}
    plan = planned(plan_files(tmp_path, files, images=BaseImages(mirror=MIRROR)))
    froms = [line for line in plan.dockerfile.splitlines() if line.startswith("FROM ")]
    assert froms == [
        f"FROM {MIRROR}/library/golang:1.19-bookworm AS build",
        f"FROM {MIRROR}/library/debian:bookworm-slim AS runtime",
    ]
    assert "CGO_ENABLED=0" in plan.dockerfile


# --- click-deploy.toml and the service config -----------------------------------------------


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[build]\nstrat = 'x'\n",
            "click-deploy.toml: build.strat is not a known key (did you mean start?)",
        ),
        ("[biuld]\nstart = 'x'\n", "biuld is not a known key (did you mean build?)"),
        ("[docker]\ntraget = 'x'\n", "docker.traget is not a known key (did you mean target?)"),
        ("provider = 'nodejs'\n", "did you mean node?"),
        ("[build]\napt_packages = 'libpq5'\n", "click-deploy.toml: build.apt_packages:"),
        ("[build]\napt_packages = ['libpq5; rm -rf /']\n", "is not a Debian package name"),
        ("[build]\nenv = { 'BAD NAME' = 'x' }\n", "'BAD NAME' is not a valid variable name"),
        ("[build]\nstart = \n", "click-deploy.toml: invalid TOML"),
    ],
)  # fmt: skip
def test_repo_config_errors_name_the_key(tmp_path: Path, toml: str, message: str) -> None:
    result = plan_files(tmp_path, {"click-deploy.toml": toml, "index.html": ""})
    assert not result.ok
    assert message in (result.message or "")


def test_repo_config_error_names_the_root_dir(tmp_path: Path) -> None:
    files = {"web/click-deploy.toml": "[build]\nstrat = 'x'\n", "web/index.html": ""}
    result = plan_files(tmp_path, files, BuildConfig(root_dir="web"))
    assert result.message == (
        "web/click-deploy.toml: build.strat is not a known key (did you mean start?)"
    )


def test_service_config_errors_raise_config_error() -> None:
    with pytest.raises(
        ConfigError, match=r"service config: strat is not a known key \(did you mean start\?\)"
    ):
        parse_build_config({"strat": "x"})
    with pytest.raises(ConfigError, match=r"root_dir: root dir '\.\./elsewhere' is not allowed"):
        parse_build_config({"root_dir": "../elsewhere"})
    config = parse_build_config({"start": "node x.js", "apt_packages": ["libpq5"]})
    assert config.start == "node x.js" and config.apt_packages == ("libpq5",)


def test_service_config_wins_over_the_repo_file() -> None:
    repo = parse_repo_config(
        {
            "build": {"start": "from-repo", "build": "repo build", "env": {"A": "1", "B": "1"}},
            "docker": {"args": {"X": "repo"}},
        }
    )
    service = BuildConfig(start="from-service", env={"B": "2"}, build_args={"X": "service"})
    merged = merge_configs(service, repo)
    assert merged.start == "from-service"
    assert merged.build == "repo build"
    assert merged.env == {"A": "1", "B": "2"}
    assert merged.build_args == {"X": "service"}


def test_with_click_deploy_toml_example() -> None:
    plan = planned(plan_example("with-click-deploy-toml"))
    assert plan.start == "node dist/server.js"
    assert plan.build == "node build.js"
    # the build env is a BuildKit secret: passed to the steps that build, never an ARG
    assert plan.secrets == {"GREETING": "hello from with-click-deploy-toml"}
    assert plan.build_args == {}
    assert "ARG GREETING" not in plan.dockerfile
    build_line = next(line for line in plan.dockerfile.splitlines() if "node build.js" in line)
    assert "--mount=type=secret,id=GREETING,required=true " in build_line
    assert 'export GREETING="$(cat /run/secrets/GREETING)"; node build.js' in build_line
    assert "hello from" not in plan.dockerfile  # never baked in
    assert plan.to_dict()["secrets"] == ["GREETING"]  # names only
    assert "hello from" not in json.dumps(plan.to_dict())
    assert "procps" in plan.dockerfile
    overridden = plan_example("with-click-deploy-toml", BuildConfig(start="node other.js"))
    assert planned(overridden).start == "node other.js"


def test_custom_install_copies_the_source_first(tmp_path: Path) -> None:
    files = {"requirements.txt": "", "main.py": ""}
    plan = planned(plan_files(tmp_path, files, BuildConfig(install="pip install -e .")))
    lines = plan.dockerfile.splitlines()
    assert lines.index("COPY . .") < next(
        i for i, line in enumerate(lines) if "pip install -e ." in line
    )
    assert any("custom install command" in m.text for m in plan.messages)


def test_apt_packages_go_to_the_runtime_stage(tmp_path: Path) -> None:
    files = {"go.mod": "module x\n\ngo 1.19\n", "main.go": "package main\n"}
    plan = planned(plan_files(tmp_path, files, BuildConfig(apt_packages=("tzdata",))))
    build, runtime = plan.dockerfile.split("\nFROM ", 2)[1:]
    assert "tzdata" not in build and "apt-get install" in runtime and "tzdata" in runtime


def test_forced_provider_skips_detection_and_the_dockerfile(tmp_path: Path) -> None:
    files = {"Dockerfile": "FROM scratch\n", "index.html": "", "package.json": "{}"}
    plan = planned(plan_files(tmp_path, files, BuildConfig(provider="static")))
    assert plan.runtime == "static" and plan.generated
    assert any("Dockerfile: not used" in line for line in plan.evidence)


# --- Dockerfiles: configured, found, missing ---------------------------------------------------


def test_configured_dockerfile_with_context_target_and_args(tmp_path: Path) -> None:
    dockerfile = "FROM alpine AS base\nFROM base AS prod\nARG GIT_SHA\n"
    files = {"services/api/deploy/Dockerfile.prod": dockerfile, "services/api/x.txt": ""}
    config = BuildConfig(
        root_dir="services/api",
        dockerfile="deploy/Dockerfile.prod",
        context="..",
        target="prod",
        build_args={"GIT_SHA": "abc"},
    )
    plan = planned(plan_files(tmp_path, files, config))
    assert plan.dockerfile_path == "services/api/deploy/Dockerfile.prod"
    assert plan.context_dir == "services"
    assert plan.target == "prod"
    assert plan.build_args == {"GIT_SHA": "abc"}
    assert plan.dockerfile == dockerfile


def test_configured_dockerfile_missing_is_an_error(tmp_path: Path) -> None:
    result = plan_files(tmp_path, {"index.html": ""}, BuildConfig(dockerfile="Dockerfile.prod"))
    assert not result.ok
    assert (
        result.message
        == "dockerfile Dockerfile.prod was configured but does not exist in the repository"
    )


def test_configured_dockerfile_outside_the_repo_is_refused(tmp_path: Path) -> None:
    result = plan_files(tmp_path, {"a": ""}, BuildConfig(dockerfile="../../etc/Dockerfile"))
    assert not result.ok and "outside the repository" in (result.message or "")


def test_unknown_target_names_the_stages(tmp_path: Path) -> None:
    files = {"Dockerfile": "FROM alpine AS base\nFROM base AS prod\n"}
    result = plan_files(tmp_path, files, BuildConfig(target="production"))
    assert result.message == "Dockerfile has no stage named 'production' (stages: base, prod)"


def test_dockerfile_in_root_dir_wins_over_detection(tmp_path: Path) -> None:
    files = {"web/Dockerfile": "FROM node:20\n", "web/package.json": "{}", "package.json": "{}"}
    plan = planned(plan_files(tmp_path, files, BuildConfig(root_dir="web")))
    assert plan.dockerfile_path == "web/Dockerfile" and plan.context_dir == "web"


def test_syntax_line_is_warned_about(tmp_path: Path) -> None:
    files = {"Dockerfile": "# syntax=docker/dockerfile:1\nFROM alpine\n", ".dockerignore": ""}
    plan = planned(plan_files(tmp_path, files))
    assert any("syntax=docker/dockerfile:1" in m.text for m in plan.messages)


def test_missing_root_dir(tmp_path: Path) -> None:
    result = plan_files(tmp_path, {"index.html": ""}, BuildConfig(root_dir="web"))
    assert result.message is not None and result.message.startswith("root dir web/ is not")


def test_unknown_message_lists_what_was_looked_for(tmp_path: Path) -> None:
    result = plan_files(tmp_path, {"web/README.md": ""}, BuildConfig(root_dir="web"))
    assert not result.ok and result.plan is None
    message = result.message or ""
    assert message.startswith("no Dockerfile and no known runtime in web/: looked for ")
    for name in ("package.json", "requirements.txt", "go.mod", "composer.json", "Gemfile"):
        assert name in message


# --- dockerignore ------------------------------------------------------------------------------


def test_default_dockerignore_only_without_the_repos_own(tmp_path: Path) -> None:
    plain = planned(plan_files(tmp_path / "a", {"index.html": ""}))
    assert plain.dockerignore == DEFAULT_DOCKERIGNORE
    for entry in (".git", "**/node_modules", "**/__pycache__", "**/.venv"):
        assert entry in DEFAULT_DOCKERIGNORE.splitlines()
    own = planned(plan_files(tmp_path / "b", {"index.html": "", ".dockerignore": "secret\n"}))
    assert own.dockerignore is None
    assert ".dockerignore: the repo's own is used" in own.evidence


# --- Procfile ----------------------------------------------------------------------------------


def test_procfile_web_overrides_the_detected_start(tmp_path: Path) -> None:
    files = {
        "package.json": '{"scripts": {"start": "node server.js"}}',
        "Procfile": "web: node --max-old-space-size=256 server.js\nworker: node worker.js\n",
    }
    plan = planned(plan_files(tmp_path, files))
    assert plan.start == "node --max-old-space-size=256 server.js"
    assert "Procfile: web: node --max-old-space-size=256 server.js" in plan.evidence
    assert any("worker:" in m.text for m in plan.messages)


def test_configured_start_wins_over_the_procfile(tmp_path: Path) -> None:
    files = {"main.py": "", "Procfile": "web: python main.py\n"}
    plan = planned(plan_files(tmp_path, files, BuildConfig(start="python -m app")))
    assert plan.start == "python -m app"


def test_procfile_gives_a_start_when_nothing_else_does(tmp_path: Path) -> None:
    files = {"package.json": "{}", "Procfile": "web: node lib/serve.js\n"}
    assert planned(plan_files(tmp_path, files)).start == "node lib/serve.js"


def test_procfile_example() -> None:
    plan = planned(plan_example("procfile"))
    assert plan.start == "python serve.py --port $PORT"


def test_no_start_command_says_how_to_add_one(tmp_path: Path) -> None:
    result = plan_files(tmp_path, {"package.json": '{"name": "x"}'})
    assert not result.ok
    assert "no start command for this node app in ./" in (result.message or "")
    assert '"start" script' in (result.message or "")


# --- node ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "install", "setup"),
    [
        ({"package-lock.json": "{}"}, "npm ci", None),
        ({}, "npm install", None),
        ({"yarn.lock": "# yarn lockfile v1\n"}, "yarn install --frozen-lockfile", "yarn@1.22.22"),
        ({"yarn.lock": "__metadata:\n", ".yarnrc.yml": ""}, "yarn install --immutable",
         "@yarnpkg/cli-dist@4"),
        ({"pnpm-lock.yaml": "lockfileVersion: '6.0'\n"}, "pnpm install --frozen-lockfile",
         "pnpm@8"),
        ({"bun.lockb": "\0"}, "bun install --frozen-lockfile", None),
    ],
)  # fmt: skip
def test_node_package_managers(
    tmp_path: Path, files: dict[str, str], install: str, setup: str | None
) -> None:
    files = {"package.json": '{"scripts": {"start": "node s.js"}}', **files}
    plan = planned(plan_files(tmp_path, files))
    assert install in (plan.install or "")
    if setup is not None:
        assert f"npm install -g --force {setup}" in plan.dockerfile
    assert "corepack" not in plan.dockerfile


def test_package_manager_field_pins_the_tool(tmp_path: Path) -> None:
    files = {"package.json": '{"packageManager": "yarn@1.22.19+sha512.abc", "main": "i.js"}',
             "yarn.lock": "", "i.js": ""}  # fmt: skip
    plan = planned(plan_files(tmp_path, files))
    assert "npm install -g --force yarn@1.22.19" in plan.dockerfile
    assert plan.start == "node i.js"


def test_node_static_frameworks(tmp_path: Path) -> None:
    cases = {
        "cra": ('{"dependencies": {"react-scripts": "5"}, "scripts": {"build": "react-scripts '
                'build", "start": "react-scripts start"}}', {}, "/app/build"),
        "vite-out": ('{"devDependencies": {"vite": "5"}, "scripts": {"build": "vite build"}}',
                     {"vite.config.js": "export default { build: { outDir: 'public_html' } }"},
                     "/app/public_html"),
        "angular": ('{"dependencies": {"@angular/core": "17"}, "scripts": {"build": "ng build"}}',
                    {"angular.json": json.dumps({"projects": {"shop": {"architect": {"build": {
                        "builder": "@angular-devkit/build-angular:application",
                        "options": {"outputPath": "dist/shop"}}}}}})},
                    "/app/dist/shop/browser"),
        "astro": ('{"dependencies": {"astro": "4"}, "scripts": {"build": "astro build"}}', {},
                  "/app/dist"),
    }  # fmt: skip
    for name, (package, extra, output) in cases.items():
        root = make_app(tmp_path / name, {"package.json": package, **extra})
        plan = planned(plan_app(root, BuildConfig(), BaseImages()))
        assert f"COPY --from=build {output} /srv" in plan.dockerfile, name
        assert "FROM caddy:2 AS runtime" in plan.dockerfile


def test_node_server_start_beats_static_output(tmp_path: Path) -> None:
    package = json.dumps(
        {
            "devDependencies": {"vite": "5"},
            "scripts": {"build": "vite build", "start": "node server.js"},
        }
    )
    plan = planned(plan_files(tmp_path, {"package.json": package}))
    assert plan.start == "npm run start" and "caddy" not in plan.dockerfile


def test_node_workspaces_copy_member_manifests(tmp_path: Path) -> None:
    files = {
        "package.json": '{"workspaces": ["packages/*"], "scripts": {"start": "node a.js"}}',
        "package-lock.json": "{}",
        "packages/a/package.json": "{}",
        "packages/b/package.json": "{}",
    }
    plan = planned(plan_files(tmp_path, files))
    assert "COPY packages/a/package.json packages/a/" in plan.dockerfile
    assert "COPY packages/b/package.json packages/b/" in plan.dockerfile


def test_broken_package_json_is_a_failed_result(tmp_path: Path) -> None:
    result = plan_files(tmp_path, {"package.json": '{"name": "x",\n  "scripts": }'})
    assert not result.ok
    assert (result.message or "").startswith("package.json: invalid JSON at line 2")


# --- python -------------------------------------------------------------------------------------


def test_python_requirements_includes_and_local_installs(tmp_path: Path) -> None:
    files = {"requirements.txt": "-r requirements/base.txt\n", "requirements/base.txt": "flask\n",
             "app.py": "from flask import Flask\napp = Flask(__name__)\n"}  # fmt: skip
    plan = planned(plan_files(tmp_path / "a", files))
    assert "COPY requirements.txt ./" in plan.dockerfile
    assert "COPY requirements/base.txt requirements/" in plan.dockerfile
    assert plan.start == "gunicorn app:app --bind 0.0.0.0:$PORT"
    assert plan.install == "pip install -r requirements.txt && pip install gunicorn"
    assert any(m.level == "suggestion" and "gunicorn" in m.text for m in plan.messages)

    local = planned(plan_files(tmp_path / "b", {"requirements.txt": "-e .\n", "main.py": ""}))
    lines = local.dockerfile.splitlines()
    assert lines.index("COPY . .") < lines.index(
        "RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt"
    )


def test_python_frameworks(tmp_path: Path) -> None:
    cases = {
        "factory": ({"requirements.txt": "flask\ngunicorn\n",
                     "app/__init__.py": "from flask import Flask\n"
                                        "def create_app():\n    return Flask(__name__)\n"},
                    "gunicorn 'app:create_app()' --bind 0.0.0.0:$PORT"),
        "fastapi-src": ({"requirements.txt": "fastapi[standard]\n",
                         "src/main.py": "from fastapi import FastAPI\napi = FastAPI()\n"},
                        "uvicorn main:api --host 0.0.0.0 --port $PORT --app-dir src"),
        "plain": ({"pyproject.toml": "[project]\nname = 'x'\nversion = '1'\n"
                                     "dependencies = ['httpx']\n",
                   "main.py": ""}, "python main.py"),
    }  # fmt: skip
    for name, (files, start) in cases.items():
        root = make_app(tmp_path / name, files)
        plan = planned(plan_app(root, BuildConfig(), BaseImages()))
        assert plan.start == start, name
    plain = planned(plan_app(tmp_path / "plain", BuildConfig(), BaseImages()))
    assert plain.install == "pip install httpx"


def test_python_native_packages_get_build_tools(tmp_path: Path) -> None:
    plan = planned(plan_files(tmp_path, {"requirements.txt": "psycopg2==2.9\n", "main.py": ""}))
    assert "apt-get install -y --no-install-recommends gcc libc6-dev libpq-dev" in plan.dockerfile


def test_python_tools_get_their_own_venv() -> None:
    uv = planned(plan_example("python-fastapi-uv"))
    assert "python3 -m venv /opt/uv && /opt/uv/bin/pip install uv" in uv.dockerfile
    assert "UV_PROJECT_ENVIRONMENT=/opt/venv" in uv.dockerfile
    poetry = planned(plan_example("python-poetry"))
    assert "/opt/poetry/bin/pip install poetry==2.5.1 poetry-plugin-export" in poetry.dockerfile
    assert "RUN python3 -m venv /opt/venv" in poetry.dockerfile


# --- go, php, ruby, static ------------------------------------------------------------------


def test_go_without_a_main_package_fails(tmp_path: Path) -> None:
    files = {"go.mod": "module x\n\ngo 1.22\n", "lib/lib.go": "package lib\n"}
    result = plan_files(tmp_path, files)
    assert not result.ok and "no main package" in (result.message or "")


def test_go_vendor_skips_the_download(tmp_path: Path) -> None:
    files = {"go.mod": "module x\n\ngo 1.22\n", "main.go": "// x\npackage main\n",
             "vendor/modules.txt": ""}  # fmt: skip
    plan = planned(plan_files(tmp_path, files))
    assert plan.install is None and "go mod download" not in plan.dockerfile


def test_php_with_packages_gets_a_composer_stage(tmp_path: Path) -> None:
    composer = '{"require": {"php": "^8.2", "monolog/monolog": "^3", "ext-gd": "*"}}'
    files = {"composer.json": composer, "composer.lock": "{}", "public/index.php": ""}
    plan = planned(plan_files(tmp_path, files))
    assert "FROM composer:2 AS composer" in plan.dockerfile
    assert "COPY --from=composer /app /app" in plan.dockerfile
    assert (plan.install or "").startswith("composer install --no-dev")
    assert plan.start == "php -S 0.0.0.0:$PORT -t public"
    assert any("ext-gd" in m.text for m in plan.messages)


def test_ruby_frameworks(tmp_path: Path) -> None:
    rails = {"Gemfile": 'gem "rails"\n', "config/application.rb": "", "app/assets/x.css": ""}
    plan = planned(plan_files(tmp_path / "rails", rails))
    assert plan.start == "bundle exec rails server -b 0.0.0.0 -p $PORT"
    assert plan.build == "bundle exec rails assets:precompile"
    assert "chown -R 10001:10001 tmp log storage" in plan.dockerfile
    sinatra = {"Gemfile": 'gem "sinatra"\n', "app.rb": ""}
    plan = planned(plan_files(tmp_path / "sinatra", sinatra))
    assert plan.start == "bundle exec ruby app.rb -o 0.0.0.0 -p $PORT"
    bare = plan_files(tmp_path / "bare", {"Gemfile": 'gem "json"\n', "config.ru": ""})
    assert not bare.ok and "neither puma nor rack" in (bare.message or "")


def test_staticfile_root(tmp_path: Path) -> None:
    files = {"Staticfile": "root: site\n", "site/index.html": ""}
    plan = planned(plan_files(tmp_path, files))
    assert "COPY --from=site /site/site /srv" in plan.dockerfile
    assert plan.start == "caddy file-server --root /srv --listen :$PORT"


# --- the App view ------------------------------------------------------------------------------


def test_app_refuses_paths_outside_the_root(tmp_path: Path) -> None:
    outside = make_app(tmp_path / "outside", {"package.json": "{}", "secret.txt": "s"})
    root = make_app(tmp_path / "app", {"README.md": ""})
    (root / "package.json").symlink_to(outside / "package.json")
    (root / "linked").symlink_to(outside)
    app = App(root)
    assert not app.has_file("package.json")
    assert not app.has_file("../outside/secret.txt")
    assert not app.has_file("/etc/passwd")
    assert app.glob("linked/*") == []
    with pytest.raises(
        InvalidFile, match=r"^`linked/secret\.txt` is a link out of the repository; refused$"
    ):
        app.read_text("linked/secret.txt")
    result = plan_app(root, BuildConfig(), BaseImages())
    assert not result.ok and "no known runtime" in (result.message or "")


def test_app_reads_inside_symlinks_and_toml(tmp_path: Path) -> None:
    root = make_app(tmp_path, {"real.toml": "a = 1\n", "data.json": "[1]"})
    (root / "link.toml").symlink_to(root / "real.toml")
    app = App(root)
    assert app.read_toml("link.toml") == {"a": 1}
    assert app.read_json("data.json") == [1]
    with pytest.raises(InvalidFile, match=r"data\.json: expected a JSON object"):
        app.read_json_object("data.json")


# --- format ------------------------------------------------------------------------------------


def test_format_plan_for_people() -> None:
    text = format_plan(plan_example("python-django"))
    assert text.startswith("runtime:    python 3.11\n")
    assert "start:      gunicorn mysite.wsgi:application --bind 0.0.0.0:$PORT" in text
    assert "evidence:\n  - .python-version: python 3.11" in text
    assert text.index("evidence:") < text.index("--- Dockerfile")
    assert "FROM localhost:5000/library/python:3.11-slim" in text
    failed = format_plan(plan_example("unknown"))
    assert failed.startswith("cannot plan: no Dockerfile and no known runtime in ./")


def test_plan_is_frozen_and_serializable() -> None:
    plan = planned(plan_example("node-npm"))
    with pytest.raises(AttributeError):
        plan.start = "x"  # type: ignore[misc]
    data = plan.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["port_env"] == "PORT"
    assert set(data) >= {"runtime", "version", "context_dir", "dockerfile", "dockerfile_path",
                         "target", "build_args", "dockerignore", "install", "build", "start",
                         "port_env", "evidence", "messages"}  # fmt: skip
    assert not re.search(r"(?m)^/(?:work|tmp|home)/", json.dumps(data))


# --- the CLI ------------------------------------------------------------------------------------


def test_cli_plan_prints_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from bot.cli import main

    for kind in ("node", "python", "golang", "php", "composer", "ruby", "caddy", "runtime"):
        monkeypatch.delenv(f"BASE_IMAGE_{kind.upper()}", raising=False)
    monkeypatch.setenv("BASE_IMAGE_MIRROR", MIRROR)
    result = CliRunner().invoke(main, ["plan", str(EXAMPLES_DIR / "go-cmd")])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        "builder:    click-deploy (auto: click-deploy's planner planned it)\nruntime:    go 1.19\n"
    )
    assert f"FROM {MIRROR}/library/golang:1.19-bookworm AS build" in result.stdout

    as_json = CliRunner().invoke(main, ["plan", "--json", str(EXAMPLES_DIR / "php-plain")])
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout)["plan"]["runtime"] == "php"


def test_cli_plan_exits_1_with_the_message(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from bot.cli import main

    result = CliRunner().invoke(main, ["plan", str(EXAMPLES_DIR / "unknown")])
    assert result.exit_code == 1
    assert "no Dockerfile and no known runtime in ./" in result.stderr
    make_app(tmp_path, {"web/main.py": ""})
    nested = CliRunner().invoke(main, ["plan", "--root-dir", "web", str(tmp_path)])
    assert nested.exit_code == 0 and "context:    web" in nested.stdout


def test_dockerfile_options_without_a_dockerfile_are_warned_about(tmp_path: Path) -> None:
    plan = planned(plan_files(tmp_path, {"index.html": ""}, BuildConfig(target="prod")))
    assert plan.target is None
    assert any("target ignored" in m.text for m in plan.messages)
