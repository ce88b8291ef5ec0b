"""A newcomer's first run, on a fresh clone of this repository: the run command
(`scripts/serve`) in the background, then the first deploy as the docs give it
(`click-deploy service add hello --repo examples/hello`, `click-deploy deploy hello
--follow`), then the `docker run` line that prints, and an HTTP GET of the app.

Real parts throughout: `scripts/serve` makes its own virtualenv in the clone (pip), starts a
registry of its own (docker-registry, generated credentials under DATA_DIR), builds on the
Docker engine of scripts/infra (the "Docker engine on this machine" here: DOCKER_HOST) with
the base images of its mirror, found by serve itself. The database is the test server's
(a fresh database), as the embedded one would run as another user outside tmp_path.
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import os
import shlex
import signal
import socketserver
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot import local_engine
from bot.cli import main
from bot.local_registry import LocalRegistryUnavailable, start_registry
from bot.local_services import recorded_services, start_local_services
from pipeline.clone import CloneRequest, clone
from pipeline.deploy import repository_url
from pipeline.errors import InvalidValue
from pipeline.local_repository import local_source
from pipeline.models import Service
from pipeline.settings import Settings
from pipeline.store import NewService
from tests.support.infra import DOCKER_HOST, REPO_ROOT, docker, free_port, http_status

pytest_plugins = ["tests.support.infra"]

BOOTSTRAP_SECONDS = 900  # a first `scripts/serve` makes a virtualenv and installs into it
DEPLOY_SECONDS = 900
APP_SECONDS = 120


def fresh_checkout(tmp_path: Path) -> Path:
    """A clone of this repository's committed state, as a newcomer gets it."""
    checkout = tmp_path / "click-deploy"
    subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(REPO_ROOT), str(checkout)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return checkout


def newcomer_env(database_url: str, data_dir: Path) -> dict[str, str]:
    """No click-deploy setting but those a test machine needs: its database, its engine
    (DOCKER_HOST), ports nobody else uses. The registry and base images are serve's own."""
    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    for inherited in ("PYTHONPATH", "VIRTUAL_ENV", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY"):
        env.pop(inherited, None)
    env.update(
        DATABASE_URL=database_url,
        DATA_DIR=str(data_dir),
        DOCKER_HOST=DOCKER_HOST,
        HTTP_PORT=str(free_port()),
        LOCAL_REGISTRY_PORT=str(free_port()),
        LOG_FORMAT="console",
        PATH="/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",  # a newcomer's shell
    )
    return env


@pytest.fixture
def serve(
    tmp_path: Path, database_url: str, docker_engine: str, mirror_registry: str
) -> Iterator[tuple[Path, dict[str, str], Path]]:
    """`scripts/serve` running in a fresh checkout: (checkout, environment, its log)."""
    checkout = fresh_checkout(tmp_path)
    env = newcomer_env(database_url, tmp_path / "data")
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["scripts/serve"],
            cwd=checkout,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stopped whole, by its id
        )
    try:
        healthz = f"http://127.0.0.1:{env['HTTP_PORT']}/healthz"
        deadline = time.monotonic() + BOOTSTRAP_SECONDS
        while http_status(healthz) != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"scripts/serve did not answer {healthz} (exit {process.poll()}):\n"
                    + log_path.read_text(errors="replace")[-4000:]
                )
            time.sleep(1)
        yield checkout, env, log_path
    finally:
        with_group = process.poll() is None
        if with_group:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)


def shell(command: str, checkout: Path, env: dict[str, str], timeout: float) -> str:
    """Run COMMAND as written, in the checkout; its output (stdout and stderr)."""
    result = subprocess.run(
        ["bash", "-c", command],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{output}"
    return output


def get_when_up(url: str, process: subprocess.Popen[bytes], log: Path) -> tuple[int, str]:
    deadline = time.monotonic() + APP_SECONDS
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status), response.read().decode()
        except (OSError, urllib.error.URLError):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the app did not answer {url}:\n{log.read_text(errors='replace')}")
            time.sleep(0.5)


def registry_tags(registry_url: str, repository: str, user: str, password: str) -> list[str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(
        f"{registry_url}/v2/{repository}/tags/list", headers={"Authorization": f"Basic {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return list(json.load(response).get("tags") or [])


def test_a_fresh_checkout_serves_deploys_examples_hello_and_the_printed_line_runs_it(
    serve: tuple[Path, dict[str, str], Path], tmp_path: Path
) -> None:
    checkout, env, serve_log = serve
    started = serve_log.read_text(errors="replace")
    registry_url = f"http://127.0.0.1:{env['LOCAL_REGISTRY_PORT']}"
    assert f"registry: started on {registry_url}" in started, started
    assert "base images: from the mirror on localhost:5000" in started, started

    # The registry's credentials: generated, readable by this user only.
    data = Path(env["DATA_DIR"]) / "registry"
    for private in ("credentials.json", "htpasswd"):
        assert stat.S_IMODE((data / private).stat().st_mode) == 0o600, private
    credentials = json.loads((data / "credentials.json").read_text())
    password = credentials["password"]
    assert len(password) >= 24
    assert (data / "htpasswd").read_text().startswith(f"{credentials['username']}:$2")
    assert http_status(f"{registry_url}/v2/") == 401  # not without them

    # docs/first-deploy.md's commands, as written there.
    activate = ". .venv/bin/activate && "
    added = shell(
        activate + "click-deploy service add hello --repo examples/hello", checkout, env, 300
    )
    assert "added service hello" in added
    deployed = shell(activate + "click-deploy deploy hello --follow", checkout, env, DEPLOY_SECONDS)
    lines = deployed.rstrip().splitlines()
    assert lines[-4].startswith("-- deployment 1 succeeded"), deployed
    assert lines[-3] == "-- start it with:", deployed
    run_line, opened = lines[-2], lines[-1]
    assert opened.startswith("-- then open http://127.0.0.1:"), deployed
    url = opened.removeprefix("-- then open ")

    # Pushed to serve's own registry, under the tag the run line names.
    image = shlex.split(run_line)[-1]
    assert image.startswith(f"127.0.0.1:{env['LOCAL_REGISTRY_PORT']}/click-deploy/hello:")
    tags = registry_tags(registry_url, "click-deploy/hello", credentials["username"], password)
    assert image.rpartition(":")[2] in tags and "production" in tags

    # The password went nowhere it could be read.
    for text in (started, serve_log.read_text(errors="replace"), added, deployed):
        assert password not in text

    app_log = tmp_path / "app.log"
    with app_log.open("wb") as log:
        app = subprocess.Popen(
            shlex.split(run_line), cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        status, body = get_when_up(url, app, app_log)
        assert (status, body) == (200, "Hello from click-deploy!\n")
    finally:
        app.terminate()
        try:
            app.wait(30)
        except subprocess.TimeoutExpired:
            app.kill()
        running = docker("ps", "-q", "--filter", f"ancestor={image}").stdout.split()
        if running:
            docker("rm", "-f", *running)
        docker("rmi", image)


# --- a folder on this machine as the repository (pipeline/local_repository.py) -----------


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(cwd), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


async def test_a_folder_inside_a_git_repository_deploys_from_that_repository(
    tmp_path: Path,
) -> None:
    top = tmp_path / "repo"
    (top / "apps" / "hello").mkdir(parents=True)
    (top / "apps" / "hello" / "app.py").write_text("print('hi')\n")
    git(top, "init", "-q", "-b", "trunk")
    git(top, "add", "-A")
    git(top, "commit", "-q", "-m", "one")
    (top / "apps" / "hello" / "app.py").write_text("print('changed')\n")

    source = local_source(str(top / "apps" / "hello"), "hello", tmp_path / "data")
    assert (source.repository, source.root_dir, source.branch) == (
        f"file://{top.resolve()}",
        "apps/hello",
        "trunk",
    )
    assert "uncommitted changes are not deployed" in source.note
    assert not (tmp_path / "data").exists()  # no copy: the repository itself is cloned

    # What a deploy clones: the committed file, not the change.
    service = _service(source.repository)
    url = repository_url(service, Settings(data_dir=tmp_path / "data"))
    cloned = await clone(CloneRequest(url=url, ref=source.branch), tmp_path / "build", print)
    assert (cloned.path / "apps" / "hello" / "app.py").read_text() == "print('hi')\n"


async def test_a_folder_outside_git_is_copied_into_a_repository_under_data_dir(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "index.html").write_text("<h1>one</h1>\n")
    data_dir = tmp_path / "data"

    source = local_source(str(folder), "site", data_dir)
    copy = data_dir / "local-repositories" / "site"
    assert (source.repository, source.root_dir, source.branch) == (f"file://{copy}", ".", "main")
    cloned = await clone(CloneRequest(url=source.repository, ref="main"), tmp_path / "b1", print)
    assert (cloned.path / "index.html").read_text() == "<h1>one</h1>\n"

    # Adding it again takes a new copy: a changed file, a removed one.
    (folder / "index.html").write_text("<h1>two</h1>\n")
    (folder / "extra.txt").write_text("x")
    local_source(str(folder), "site", data_dir)
    (folder / "extra.txt").unlink()
    again = local_source(str(folder), "site", data_dir)
    cloned = await clone(CloneRequest(url=again.repository, ref="main"), tmp_path / "b2", print)
    assert (cloned.path / "index.html").read_text() == "<h1>two</h1>\n"
    assert not (cloned.path / "extra.txt").exists()


def test_a_local_folder_is_refused_everywhere_but_the_command_line(tmp_path: Path) -> None:
    """The API, chat and forges store services through NewService without `local`: a
    folder of the bot's machine (as a file:// URL or a path) is refused there."""
    for repository in (f"file://{tmp_path}", str(tmp_path)):
        with pytest.raises(InvalidValue, match="not allowed"):
            NewService("web", repository).checked()
    assert NewService("web", f"file://{tmp_path}", local=True).checked().repository == (
        f"file://{tmp_path}"
    )
    with pytest.raises(InvalidValue, match="empty"):
        empty = tmp_path / "empty"
        empty.mkdir()
        local_source(str(empty), "web", tmp_path / "data")


def _service(repository: str) -> Service:
    return Service(
        id=1,
        name="hello",
        provider="git",
        repository=repository,
        branch="trunk",
        root_dir="apps/hello",
        config={},
        created_at=datetime.now(UTC),
        updated_at=datetime.now(UTC),
    )


# --- the parts serve starts (bot/local_registry.py, bot/local_engine.py) -----------------


async def test_the_local_registry_keeps_its_credentials_private_and_stops_with_serve(
    tmp_path: Path,
) -> None:
    port = free_port()
    registry = await start_registry(tmp_path, port)
    try:
        assert registry.process is not None
        url = f"http://127.0.0.1:{port}"
        assert registry.url == url
        assert await asyncio.to_thread(http_status, f"{url}/v2/") == 401
        password = registry.password.get_secret_value()
        token = base64.b64encode(f"{registry.username}:{password}".encode()).decode()
        signed_in = {"Authorization": f"Basic {token}"}
        assert await asyncio.to_thread(http_status, f"{url}/v2/", headers=signed_in) == 200
        for private in ("credentials.json", "htpasswd", "config.yml"):
            mode = (tmp_path / "registry" / private).stat().st_mode
            assert stat.S_IMODE(mode) == 0o600, private
        assert password not in (tmp_path / "registry" / "htpasswd").read_text()

        # A second start (serve restarted while it still runs) finds it, same password.
        again = await start_registry(tmp_path, port)
        assert again.process is None and again.password == registry.password
    finally:
        await registry.stop()
    assert await asyncio.to_thread(http_status, f"http://127.0.0.1:{port}/v2/") == 0


async def test_a_port_taken_by_another_program_is_one_line_naming_the_setting(
    tmp_path: Path,
) -> None:
    with socketserver.TCPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler) as other:
        threading.Thread(target=other.serve_forever, daemon=True).start()
        try:
            with pytest.raises(LocalRegistryUnavailable, match="LOCAL_REGISTRY_PORT: ") as refused:
                await start_registry(tmp_path, other.server_address[1])
        finally:
            other.shutdown()
    assert "REGISTRY_URL" in str(refused.value)


async def test_without_an_engine_or_root_serve_says_what_to_install_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nowhere = f"unix://{tmp_path / 'no-engine.sock'}"
    monkeypatch.setattr(local_engine, "DEFAULT_DOCKER_HOST", nowhere)
    monkeypatch.setattr(local_engine, "ENGINE_HOST", nowhere)
    monkeypatch.setattr(local_engine.os, "geteuid", lambda: 1000)
    said: list[str] = []
    settings = Settings(
        data_dir=tmp_path, registry_url="http://registry.example:5000", base_image_mirror="m:5"
    )
    started = await start_local_services(settings, said.append)
    assert started.settings.docker_host == settings.docker_host  # nothing to use instead
    [engine] = [line for line in said if line.startswith("Docker engine")]
    assert "apt-get install docker.io" in engine and "DOCKER_HOST" in engine, engine
    assert "registry: REGISTRY_URL=http://registry.example:5000 (configured)" in said


async def test_nothing_is_started_for_another_pipeline_or_when_turned_off(
    tmp_path: Path,
) -> None:
    for settings in (
        Settings(data_dir=tmp_path, local_services=False),
        Settings(data_dir=tmp_path, worker_pipeline="tests.support.pipelines:scripted"),
    ):
        said: list[str] = []
        started = await start_local_services(settings, said.append)
        assert (started.settings, started.registry, said) == (settings, None, [])
    assert not (tmp_path / "registry").exists()


def test_the_local_registry_goes_when_serve_is_killed(tmp_path: Path) -> None:
    port = free_port()
    program = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from bot.local_registry import start_registry\n"
        "async def main():\n"
        f"    await start_registry(Path({str(tmp_path)!r}), {port})\n"
        "    print('up', flush=True)\n"
        "    await asyncio.sleep(3600)\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    owner = subprocess.Popen(
        [sys.executable, "-c", program], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "up"
        assert http_status(f"http://127.0.0.1:{port}/v2/") == 401
    finally:
        owner.kill()  # SIGKILL: no cleanup code of its own runs
        owner.wait(30)
    deadline = time.monotonic() + 60
    while http_status(f"http://127.0.0.1:{port}/v2/") != 0:
        assert time.monotonic() < deadline, "the registry outlived the process that started it"
        time.sleep(0.2)


def test_service_add_and_update_take_a_folder_and_say_what_deploys_build(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LOG_FORMAT", "json")
    monkeypatch.chdir(tmp_path)
    site = tmp_path / "site"
    (site / "public").mkdir(parents=True)
    (site / "public" / "index.html").write_text("<h1>hi</h1>\n")
    cli = CliRunner()

    added = cli.invoke(main, ["service", "add", "site", "--repo", "site", "--root-dir", "public"])
    assert added.exit_code == 0, added.output
    assert "deploys build a copy of" in added.output
    copy = tmp_path / "data" / "local-repositories" / "site"
    shown = cli.invoke(main, ["service", "show", "site"])
    assert f"file://{copy}" in shown.output and "public" in shown.output, shown.output

    # update --repo takes a new copy of the folder.
    (site / "public" / "index.html").write_text("<h1>two</h1>\n")
    updated = cli.invoke(main, ["service", "update", "site", "--repo", "site"])
    assert updated.exit_code == 0, updated.output
    assert git(copy, "show", "HEAD:public/index.html") == "<h1>two</h1>"

    # A folder that is not there is a clone URL git cannot use: refused, one line.
    missing = cli.invoke(main, ["service", "add", "gone", "--repo", "no/such/folder"])
    assert missing.exit_code == 2 and "local paths are not allowed" in missing.output
    # A bad name is refused before anything is copied under DATA_DIR.
    bad = cli.invoke(main, ["service", "add", "../up", "--repo", "site"])
    assert bad.exit_code == 2 and "service name" in bad.output
    assert sorted(p.name for p in (tmp_path / "data" / "local-repositories").iterdir()) == ["site"]


async def test_the_run_line_names_the_engine_and_where_the_app_answers(
    docker_engine: str,
) -> None:
    # The engine of this machine's infra has no bridge network: host networking, $PORT.
    line, url = await local_engine.run_line(docker_engine, "localhost:5000/library/none:here")
    port = url.rsplit(":", 1)[1].rstrip("/") if url else ""
    assert line == (
        f"docker -H {docker_engine} run --rm --network host -e PORT={port} "
        "localhost:5000/library/none:here"
    )
    assert url == f"http://127.0.0.1:{port}/"
    # An engine elsewhere: its containers answer on its host, not this machine's loopback.
    _, elsewhere = await local_engine.run_line("tcp://build-host.invalid:2375", "x:1")
    assert elsewhere is not None and elsewhere.startswith("http://build-host.invalid:")


async def test_a_worker_beside_serve_uses_what_serve_started(
    tmp_path: Path, docker_engine: str, mirror_registry: str
) -> None:
    port = free_port()
    configured = {"data_dir": tmp_path, "docker_host": docker_engine}
    said: list[str] = []
    started = await start_local_services(
        Settings(**configured, local_registry_port=port), said.append
    )
    try:
        assert started.registry is not None, said
        worker = recorded_services(Settings(**configured), said.append)
        assert worker.registry_url == f"http://127.0.0.1:{port}"
        assert worker.registry_username == started.registry.username
        assert worker.registry_password == started.registry.password
        assert worker.base_image_mirror == mirror_registry
        assert worker.build_network == "host"  # the infra engine has no bridge network
        assert worker.docker_host == docker_engine
        # The password is in the registry's own 0600 file only, not in the record.
        record = (tmp_path / "local-services.json").read_text()
        assert started.registry.password.get_secret_value() not in record
        # Configured values win.
        mine = recorded_services(
            Settings(**configured, registry_url="https://harbor.example.com"), said.append
        )
        assert (mine.registry_url, mine.registry_password) == ("https://harbor.example.com", None)
    finally:
        await started.stop()
