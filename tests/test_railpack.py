"""Railpack as a builder (pipeline.railpack): its recorded plans translated into a
Dockerfile with the same graph, the CLI run and its errors, which builder a service gets,
and one recorded plan built for real by a worker through the Docker engine, pushed, and
its image asked over HTTP.

Railpack cannot be installed here: the `railpack` these tests run is
tests/support/fake_railpack.py replaying recorded output (tests/fixtures/railpack/).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from bot.cli import main
from pipeline.models import Service
from pipeline.plan import BaseImages, PlanResult, parse_build_config, plan_app
from pipeline.queue.queue import Queue
from pipeline.railpack import choose_plan, parse_info, parse_plan, render_plan
from pipeline.railpack.choose import image_map
from pipeline.railpack.cli import failure_message, prepare
from pipeline.railpack.plan import RailpackError
from pipeline.service_config import ConfigInvalid, parse_config
from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import Store
from tests.support import fake_railpack
from tests.support.fake_railpack import FIXTURES
from tests.support.gitserver import GitDaemon
from tests.support.infra import MIRROR, run_container_and_get
from tests.support.waiting import wait_for_status
from tests.test_deploy_e2e import (
    BUILD_TIMEOUT,
    StartDeployer,
    add_service,
    build_settings,
    deployer,
)

__all__ = ["build_settings", "deployer"]  # the end-to-end fixtures, used here too

CASES = ("shell-script", "python-flask", "node-npm")


def recorded(case: str, name: str) -> str:
    return (FIXTURES / case / name).read_text()


def render(case: str, **options: Any) -> str:
    plan = parse_plan(recorded(case, "plan.json"))
    settings = Settings(**options.pop("settings", {}))
    return render_plan(
        plan,
        images=image_map(settings),
        start=plan.deploy.start_command or "",
        header="test",
        **options,
    )


def stage(dockerfile: str, name: str) -> str:
    """The lines of one stage (from its FROM to the next blank line)."""
    match = re.search(rf"^FROM \S+ AS {re.escape(name)}\n(.*?)(?:\n\n|\Z)", dockerfile, re.S | re.M)
    assert match, f"no stage {name} in:\n{dockerfile}"
    return match.group(0)


# --- reading recorded plans ----------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_recorded_plans_and_infos_are_read(case: str) -> None:
    plan = parse_plan(recorded(case, "plan.json"))
    info = parse_info(recorded(case, "info.json"))
    assert plan.deploy.start_command
    assert plan.steps and all(step.name for step in plan.steps)
    assert info.success and info.detected_providers
    assert info.logs[0].msg.startswith("Detected ")


def test_short_forms_of_inputs_and_commands_are_read() -> None:
    plan = parse_plan(
        json.dumps(
            {
                "steps": [
                    {"name": "a", "inputs": [{"image": "debian"}], "commands": ["echo hi"]},
                    {"name": "b", "inputs": ["$a", "."]},
                ],
                "deploy": {"base": {"image": "debian"}, "inputs": ["$b"]},
            }
        )
    )
    assert plan.steps[0].commands[0].cmd == "echo hi"  # type: ignore[union-attr]
    assert plan.steps[1].inputs[0].step == "a"
    assert plan.steps[1].inputs[1].local and plan.steps[1].inputs[1].include == (".",)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("not json", "railpack wrote a plan that is not JSON"),
        ("[]", "railpack wrote a plan that is not a JSON object"),
        ('{"steps": [{"name": "a", "commands": [{"what": 1}]}]}', "unknown command with keys what"),
        ('{"caches": {"x": {"directory": "/c", "type": "odd"}}}', "caches.x.type"),
    ],
)
def test_a_plan_that_cannot_be_read_is_one_message(text: str, expected: str) -> None:
    with pytest.raises(RailpackError) as caught:
        parse_plan(text)
    assert expected in str(caught.value)


# --- the translation -----------------------------------------------------------------------


def test_the_python_plan_becomes_stages_with_railpacks_graph() -> None:
    dockerfile = render("python-flask", secret_names=(), cache_namespace="service-7")
    mise = stage(dockerfile, "rp-packages-mise")
    assert mise.startswith("FROM ghcr.io/railwayapp/railpack-builder:mise-2026.7.18 AS")
    assert 'MISE_DATA_DIR="/mise"' in mise
    assert 'ENV PATH="/mise/shims:/usr/local/sbin:' in mise
    assert 'RUN ["mise", "install"]' in mise  # exec form: Railpack runs it without a shell
    # The asset is written byte for byte.
    encoded = re.search(r"printf %s (\S+) \| base64 -d > /etc/mise/config.toml", mise)
    assert encoded and base64.b64decode(encoded.group(1)) == b"[generated-mise-toml]"

    install = stage(dockerfile, "rp-install")
    assert install.startswith("FROM rp-packages-mise AS rp-install")
    # Inherited from packages:mise, and its own.
    assert 'MISE_SHIMS_DIR="/mise/shims"' in install and 'VIRTUAL_ENV="/app/.venv"' in install
    assert (
        "RUN --mount=type=cache,id=service-7/opt/pip-cache,target=/opt/pip-cache,sharing=shared "
        '["pip", "install", "-r", "requirements.txt"]'
    ) in install
    assert 'COPY ["requirements.txt", "requirements.txt"]' in install
    assert 'ENV PATH="/app/.venv/bin:/mise/shims:' in install  # the newest path first

    build = stage(dockerfile, "rp-build")
    assert 'COPY [".", "/app"]' in build

    # The deploy image: the runtime, the mise install, the venv, the app without .venv.
    deploy = dockerfile.split("# railpack deploy\n", 1)[1]
    assert deploy.startswith("FROM ghcr.io/railwayapp/railpack-runtime:mise-2026.7.18 AS rp-deploy")
    assert 'COPY --from=rp-packages-mise ["/mise/install[s]", "/mise/installs"]' in deploy
    assert 'COPY --from=rp-build ["/app/.ven[v]", "/app/.venv"]' in deploy
    filtered = re.search(r'COPY --from=(rp-filter-\d+) \["/app", "/app"\]', deploy)
    assert filtered, deploy
    assert stage(dockerfile, filtered.group(1)).startswith(f"FROM rp-build AS {filtered.group(1)}")
    assert 'rm -rf -- /app/.venv"]' in stage(dockerfile, filtered.group(1))
    assert 'PYTHONHASHSEED="random"' in deploy and 'RAILPACK_VERSION="dev"' in deploy
    assert 'ENTRYPOINT ["/bin/bash", "-c"]' in deploy
    assert deploy.rstrip().endswith('CMD ["gunicorn --bind 0.0.0.0:${PORT:-8000} main:app"]')
    # Each stage is defined before it is read.
    defined: list[str] = []
    for line in dockerfile.splitlines():
        for used in re.findall(r"--from=(\S+)|^FROM (rp-\S+) AS", line):
            name = used[0] or used[1]
            assert name in defined, f"{name} read before it is defined"
        if found := re.match(r"FROM \S+ AS (\S+)", line):
            defined.append(found.group(1))


def test_the_npm_plan_deploys_from_a_step_with_locked_caches() -> None:
    dockerfile = render("node-npm", cache_namespace="service-3")
    apt = stage(dockerfile, "rp-packages-apt-runtime")
    assert "sharing=locked" in apt and "id=service-3/var/lib/apt/lists" in apt
    assert '["sh", "-c", "apt-get update && apt-get install -y libatomic1"]' in apt
    deploy = dockerfile.split("# railpack deploy\n", 1)[1]
    assert deploy.startswith("FROM rp-packages-apt-runtime AS rp-deploy")
    # node_modules and .yarn are left out of the copy of the app, /root/.cache may be absent.
    assert 'COPY --from=rp-build ["/app/node_module[s]", "/app/node_modules"]' in deploy
    filter_name = re.findall(r'COPY --from=(rp-filter-\d+) \["/root/.cach\[e\]"', deploy)
    assert filter_name, deploy
    removal = stage(dockerfile, filter_name[0])
    assert (
        "rm -rf -- /root/.cache/node_modules /app/node_modules /root/.cache/.yarn /app/.yarn"
        in removal
    )
    assert 'NODE_ENV="production"' in deploy


def test_build_values_are_secret_mounts_exported_by_the_command_never_arguments() -> None:
    dockerfile = render("python-flask", secret_names=("API_TOKEN",))
    run = next(line for line in dockerfile.splitlines() if '"pip", "install"' in line)
    assert "--mount=type=secret,id=API_TOKEN,required=true" in run
    assert 'export API_TOKEN=\\"$(cat /run/secrets/API_TOKEN)\\"; exec \\"$@\\"' in run
    assert "ARG" not in dockerfile


def test_images_go_through_the_configured_replacements() -> None:
    dockerfile = render(
        "python-flask",
        settings={
            "railpack_builder_image": "mirror.local/rp/builder:1",
            "railpack_runtime_image": "mirror.local/rp/runtime:1",
        },
    )
    assert "FROM mirror.local/rp/builder:1 AS rp-packages-mise" in dockerfile
    assert "FROM mirror.local/rp/runtime:1 AS rp-deploy" in dockerfile
    mapped = image_map(Settings(railpack_image_mirror="https://harbor.example/ghcr/"))
    assert mapped("ghcr.io/railwayapp/railpack-builder:x") == (
        "harbor.example/ghcr/railwayapp/railpack-builder:x"
    )
    assert mapped("debian:bookworm") == "debian:bookworm"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"exclude": ["$(reboot)"]}, "excludes '$(reboot)'"),
        ({"include": ["../etc"]}, "input path click-deploy cannot use"),
        ({"step": "nowhere"}, "the input step 'nowhere' is not in the plan"),
    ],
)
def test_a_plan_that_cannot_be_built_is_one_message(change: dict[str, Any], expected: str) -> None:
    data = json.loads(recorded("python-flask", "plan.json"))
    data["deploy"]["inputs"][2].update(change)
    with pytest.raises(RailpackError) as caught:
        render_plan(parse_plan(json.dumps(data)), images=str, start="x", header="t")
    assert expected in str(caught.value)


# --- the CLI -------------------------------------------------------------------------------


def app_copy(tmp_path: Path, case: str) -> Path:
    source = FIXTURES / case / "app"
    target = tmp_path / "checkout"
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        target.mkdir()
    return target


async def test_prepare_runs_the_cli_and_reads_what_it_wrote(tmp_path: Path) -> None:
    railpack = fake_railpack.install(tmp_path / "bin", "shell-script")
    prepared = await prepare(str(railpack), app_copy(tmp_path, "shell-script"), start="sh start.sh")
    assert prepared.plan.deploy.start_command == "sh start.sh"
    assert prepared.info.detected_providers == ("shell",)
    assert "Detected Shell" in prepared.output
    (argv,) = fake_railpack.calls(tmp_path / "bin")
    assert argv[:2] == ["prepare", str(tmp_path / "checkout")]
    assert "--error-missing-start" in argv and argv[argv.index("--start-cmd") + 1] == "sh start.sh"


async def test_railpacks_own_error_is_the_message(tmp_path: Path) -> None:
    railpack = fake_railpack.install(tmp_path / "bin", "no-provider")
    with pytest.raises(RailpackError) as caught:
        await prepare(str(railpack), app_copy(tmp_path, "no-provider"))
    assert str(caught.value) == (
        "railpack could not plan the app: Railpack could not determine how to build the app. "
        "(Script start.sh not found)"
    )


def test_output_without_an_error_line_names_the_exit_and_the_last_lines() -> None:
    assert failure_message("\x1b[31mpanic: boom\x1b[0m\n", 2) == "railpack exited 2: panic: boom"


async def test_a_railpack_that_hangs_is_stopped_at_the_timeout(tmp_path: Path) -> None:
    railpack = fake_railpack.install(tmp_path / "bin", "shell-script", delay_seconds=60)
    with pytest.raises(RailpackError) as caught:
        await prepare(str(railpack), app_copy(tmp_path, "shell-script"), timeout_seconds=1)
    assert "took longer than 1 s (RAILPACK_TIMEOUT_SECONDS)" in str(caught.value)


# --- which builder -------------------------------------------------------------------------


def service(config: dict[str, Any], root_dir: str = ".") -> Service:
    now = datetime.now(UTC)
    return Service(7, "svc", "git", "file:///x", "main", root_dir, config, now, now)


def planner(checkout: Path) -> Callable[[], PlanResult]:
    config = parse_build_config({"root_dir": "."})
    return lambda: plan_app(checkout, config, BaseImages(), cache_namespace="service-7")


async def choose(
    tmp_path: Path, case: str, config: dict[str, Any], files: dict[str, str] | None = None
) -> PlanResult:
    checkout = app_copy(tmp_path, case)
    for name, text in (files or {}).items():
        (checkout / name).write_text(text)
    railpack = fake_railpack.install(tmp_path / "bin", case)
    settings = Settings(railpack_path=str(railpack))
    return await choose_plan(
        checkout, service(config), settings, planner(checkout), cache_namespace="service-7"
    )


async def test_the_service_asks_for_railpack(tmp_path: Path) -> None:
    result = await choose(tmp_path, "shell-script", {"build": {"builder": "railpack"}})
    assert result.ok and result.plan is not None, result.message
    assert result.plan.runtime == "railpack" and result.plan.start == "sh start.sh"
    assert "railpack dev: detected shell" in result.plan.evidence
    assert ("info", "Detected Shell") in result.plan.messages
    assert result.plan.dockerignore is not None and ".git" in result.plan.dockerignore


async def test_build_values_never_reach_railpacks_command_line(tmp_path: Path) -> None:
    config = {"build": {"builder": "railpack", "env": {"API_TOKEN": "s3cret-value"}}}
    result = await choose(tmp_path, "shell-script", config)
    assert result.ok and result.plan is not None, result.message
    assert result.plan.secrets == {"API_TOKEN": "s3cret-value"}  # handed to BuildKit only
    assert "s3cret-value" not in json.dumps(fake_railpack.calls(tmp_path / "bin"))
    assert "s3cret-value" not in result.plan.dockerfile
    assert "--mount=type=secret,id=API_TOKEN,required=true" in result.plan.dockerfile


async def test_click_deploy_toml_asks_for_railpack(tmp_path: Path) -> None:
    result = await choose(
        tmp_path, "shell-script", {}, {"click-deploy.toml": 'builder = "railpack"\n'}
    )
    assert result.ok and result.plan is not None and result.plan.runtime == "railpack"


async def test_the_service_setting_wins_over_click_deploy_toml(tmp_path: Path) -> None:
    result = await choose(
        tmp_path,
        "shell-script",
        {"build": {"builder": "click-deploy"}},
        {"click-deploy.toml": 'builder = "railpack"\n'},
    )
    assert result.ok and result.plan is not None and result.plan.runtime == "static"
    assert fake_railpack.calls(tmp_path / "bin") == []


async def test_auto_uses_railpack_only_when_the_planner_finds_no_runtime(tmp_path: Path) -> None:
    known = await choose(tmp_path / "a", "shell-script", {})
    assert known.ok and known.plan is not None and known.plan.runtime == "static"
    assert fake_railpack.calls(tmp_path / "a" / "bin") == []

    # An app the planner knows nothing of; the recorded Railpack plan stands for what
    # Railpack would plan.
    checkout = app_copy(tmp_path / "b", "no-provider")
    railpack = fake_railpack.install(tmp_path / "b" / "bin", "shell-script")
    unknown = await choose_plan(
        checkout,
        service({}),
        Settings(railpack_path=str(railpack)),
        planner(checkout),
        cache_namespace=None,
    )
    assert unknown.ok and unknown.plan is not None, unknown.message
    assert unknown.plan.runtime == "railpack"
    assert unknown.plan.messages[0].text.startswith("click-deploy's planner found no runtime")


async def test_auto_without_railpack_keeps_the_planners_message(tmp_path: Path) -> None:
    checkout = app_copy(tmp_path, "no-provider")
    result = await choose_plan(
        checkout,
        service({}),
        Settings(railpack_path=str(tmp_path / "no-such-railpack")),
        planner(checkout),
        cache_namespace=None,
    )
    assert not result.ok and result.message is not None
    assert result.message.startswith("no Dockerfile and no known runtime")


async def test_when_neither_can_plan_both_reasons_are_given(tmp_path: Path) -> None:
    result = await choose(tmp_path, "no-provider", {})
    assert not result.ok and result.message is not None
    assert result.message.startswith("no Dockerfile and no known runtime in ./")
    assert "Railpack could not plan it either: railpack could not plan the app: Railpack" in (
        result.message
    )


async def test_railpack_asked_for_but_not_installed(tmp_path: Path) -> None:
    checkout = app_copy(tmp_path, "shell-script")
    result = await choose_plan(
        checkout,
        service({"build": {"builder": "railpack"}}),
        Settings(railpack_path="railpack-not-installed"),
        planner(checkout),
        cache_namespace=None,
    )
    assert result.message == (
        'builder = "railpack" but there is no railpack CLI (railpack-not-installed is not on '
        "PATH): install railpack on the worker, set RAILPACK_PATH, or remove the builder setting"
    )


def test_the_builder_key_is_checked() -> None:
    assert parse_config({"build": {"builder": "railpack"}}).build.builder == "railpack"
    with pytest.raises(ConfigInvalid) as caught:
        parse_config({"build": {"builder": "nixpacks"}})
    assert "build.builder" in str(caught.value)


# --- `click-deploy plan`: who plans it, and Railpack's plan ---------------------------------


def cli_plan(monkeypatch: pytest.MonkeyPatch, bin_dir: Path | None, *args: str) -> Result:
    """`click-deploy plan ARGS` with BIN_DIR (a fake railpack's) first on PATH."""
    monkeypatch.delenv("RAILPACK_PATH", raising=False)
    if bin_dir is not None:
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return CliRunner().invoke(main, ["plan", *args])


def test_plan_says_click_deploy_toml_asks_for_railpack_and_shows_its_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = app_copy(tmp_path, "shell-script")
    (checkout / "click-deploy.toml").write_text('builder = "railpack"\n')
    fake_railpack.install(tmp_path / "bin", "shell-script")
    result = cli_plan(monkeypatch, tmp_path / "bin", str(checkout))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        'builder:    railpack (builder = "railpack" in click-deploy.toml)\n'
        "runtime:    railpack dev\n"
    )
    assert "  - railpack dev: detected shell\n" in result.stdout
    summary = result.stdout.partition("railpack plan (shell):\n")[2].partition("\n\n")[0]
    assert summary.splitlines() == [
        "  step packages:mise (from ghcr.io/railwayapp/railpack-builder:mise-2026.7.18)",
        "  step build (from packages:mise, the app's files)",
        "    $ chmod +x start.sh",
        "  deploy on ghcr.io/railwayapp/railpack-runtime:mise-2026.7.18, with files of build",
        "    $ sh start.sh",
        "    variables: RAILPACK_VERSION",
    ]
    assert result.stdout.index("railpack plan") < result.stdout.index("--- Dockerfile")
    assert 'CMD ["sh start.sh"]' in result.stdout
    ((_, directory, *_),) = fake_railpack.calls(tmp_path / "bin")
    assert Path(directory) == checkout.resolve()


def test_plan_says_auto_chose_railpack_for_an_app_without_a_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = app_copy(tmp_path, "no-provider")
    railpack = fake_railpack.install(tmp_path / "bin", "node-npm")
    text = cli_plan(monkeypatch, tmp_path / "bin", str(checkout))
    assert text.exit_code == 0, text.output
    assert text.stdout.startswith(
        "builder:    railpack (auto: click-deploy's planner found no runtime, and railpack "
        f"is at {railpack})\n"
    )
    assert "  step install (from packages:mise)\n    $ mkdir -p /app/node_modules/.cache\n" in (
        text.stdout
    )
    assert "    $ npm ci\n    caches: npm-install\n" in text.stdout
    as_json = cli_plan(monkeypatch, None, "--json", str(checkout))
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert data["builder"]["name"] == "railpack"
    assert data["plan"]["runtime"] == "railpack"
    assert data["railpack"]["deploy"]["startCommand"] == "npm run start"
    assert [step["name"] for step in data["railpack"]["steps"]][:2] == ["packages:mise", "install"]


def test_plan_without_railpack_says_what_auto_would_have_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = app_copy(tmp_path, "no-provider")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    result = cli_plan(monkeypatch, None, str(checkout))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(
        "builder:    click-deploy (auto: click-deploy's planner found no runtime, and there "
        "is no railpack CLI to try instead (RAILPACK_PATH: railpack))\n"
        "click-deploy: no Dockerfile and no known runtime in ./"
    )
    asked = cli_plan(monkeypatch, None, "--builder", "railpack", str(checkout))
    assert asked.exit_code == 1
    assert 'builder:    railpack (builder = "railpack" given with --builder)\n' in asked.stderr
    assert "install railpack on the worker, set RAILPACK_PATH" in asked.stderr


def test_plan_of_an_app_click_deploy_knows_never_runs_railpack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = app_copy(tmp_path, "shell-script")
    (checkout / "click-deploy.toml").write_text('builder = "railpack"\n')
    fake_railpack.install(tmp_path / "bin", "shell-script")
    forced = cli_plan(monkeypatch, tmp_path / "bin", "--builder", "click-deploy", str(checkout))
    assert forced.exit_code == 0, forced.output
    assert forced.stdout.startswith(
        'builder:    click-deploy (builder = "click-deploy" given with --builder)\n'
        "runtime:    static\n"
    )
    assert "railpack plan" not in forced.stdout
    (checkout / "click-deploy.toml").unlink()
    auto = cli_plan(monkeypatch, None, "--provider", "shell", str(checkout))
    assert auto.exit_code == 0, auto.output
    assert auto.stdout.startswith(
        "builder:    click-deploy (auto: click-deploy's planner planned it)\nruntime:    shell"
    )
    assert fake_railpack.calls(tmp_path / "bin") == []


# --- for real: a worker builds a recorded plan, the image answers ------------------------


@pytest.mark.slow
async def test_a_recorded_plan_is_built_by_a_worker_and_its_image_answers(
    git_daemon: GitDaemon,
    store: Store,
    queue: Queue,
    deployer: StartDeployer,
    tmp_path: Path,
) -> None:
    railpack = fake_railpack.install(tmp_path / "bin", "shell-script")
    app = FIXTURES / "shell-script" / "app"
    files = {str(p.relative_to(app)): p.read_bytes() for p in sorted(app.rglob("*"))}
    commit = git_daemon.create_repo("rp-shell", files)
    service_id = await add_service(
        store, "rp-shell", git_daemon.url_for("rp-shell"), build={"builder": "railpack"}
    )
    # Railpack's images come from ghcr.io, which cannot be reached here: a local Debian
    # image with python3 stands in for both (RAILPACK_BUILDER_IMAGE / _RUNTIME_IMAGE).
    stand_in = f"{MIRROR}/library/python:3.13-slim"
    await deployer(
        railpack_path=str(railpack),
        railpack_builder_image=stand_in,
        railpack_runtime_image=stand_in,
    )
    deployment = await queue.enqueue(service_id, ref="main", commit_sha=commit)
    done = await wait_for_status(
        store, deployment.id, Status.SUCCEEDED, Status.FAILED, timeout=BUILD_TIMEOUT
    )
    logs = "\n".join(line.line for line in (await store.read_logs(done.id, limit=10000)).items)
    assert done.status == Status.SUCCEEDED, f"{done.error}\n{logs[-4000:]}"
    assert "runtime: railpack dev" in logs and "railpack dev: detected shell" in logs
    assert re.search(r"RUN \[\"chmod\", \"\+x\", \"start.sh\"\]", logs), logs[-3000:]
    status, body = await asyncio.to_thread(run_container_and_get, done.image, timeout=90)
    assert status == 200 and "railpack-shell-script answers" in body
