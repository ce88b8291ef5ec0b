"""End to end through the worker, with every part real: a git server, the planner, the
Docker engine's BuildKit, a registry with auth, and the built image run and asked over HTTP.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr

from pipeline.deploy import DeployPipeline, deploy_pipeline
from pipeline.models import Deployment
from pipeline.queue.queue import Queue
from pipeline.queue.worker import Worker
from pipeline.registry import RegistryClient
from pipeline.rollback import NothingToRollBack, enqueue_rollback
from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import NewService, Store
from tests.conftest import REPO_ROOT
from tests.support.gitserver import GitDaemon, GitHttpServer
from tests.support.infra import (
    DOCKER_HOST,
    MIRROR,
    TARGET_PASSWORD,
    TARGET_REGISTRY_URL,
    TARGET_USER,
    TargetRegistry,
    run_container_and_get,
)
from tests.support.progress import Progress, progress_seen
from tests.support.waiting import PATIENCE, wait_for_status

pytestmark = pytest.mark.slow

EXAMPLES = REPO_ROOT / "tests" / "examples"
# A Dockerfile instruction as BuildKit names it: "[3/7] RUN …" or "[stage-0 3/7] RUN …".
DOCKERFILE_STEP = re.compile(r"^\[(\S+ )?\d+/\d+\] ")
BUILD_TIMEOUT = 600.0

__all__ = ["progress_seen"]  # a fixture, used by name


def example_files(name: str) -> dict[str, str | bytes]:
    root = EXAMPLES / name
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def build_settings(
    settings: Settings,
    tmp_path: Path,
    docker_engine: str,
    mirror_registry: str,
    target_registry: TargetRegistry,
) -> Settings:
    return settings.model_copy(
        update={
            "builder": "docker",
            "docker_host": DOCKER_HOST,
            "build_dir": tmp_path / "builds",
            "registry_url": TARGET_REGISTRY_URL,
            "registry_project": "e2e",
            "registry_username": TARGET_USER,
            "registry_password": SecretStr(TARGET_PASSWORD),
            "base_image_mirror": MIRROR,
            "build_timeout_seconds": BUILD_TIMEOUT,
            "worker_lease_seconds": 30.0,
            "worker_heartbeat_seconds": 2.0,
        }
    )


StartDeployer = Callable[..., Awaitable[tuple[Worker, DeployPipeline]]]


@pytest.fixture
async def deployer(
    build_settings: Settings, pool: asyncpg.Pool, database_url: str, store: Store, queue: Queue
) -> AsyncIterator[StartDeployer]:
    started: list[tuple[Worker, asyncio.Task[None]]] = []

    async def start(**overrides: object) -> tuple[Worker, DeployPipeline]:
        worker_settings = build_settings.model_copy(
            update={
                key: SecretStr(value) if key == "git_token" and isinstance(value, str) else value
                for key, value in overrides.items()
            }
        )
        pipeline = deploy_pipeline(worker_settings)
        worker = Worker(worker_settings, pool, database_url, pipeline, slots=2)
        started.append((worker, asyncio.create_task(worker.run())))
        await asyncio.wait_for(worker.listener.connected.wait(), PATIENCE)
        return worker, pipeline

    yield start
    for worker, _task in started:
        worker.stop(now=True)
    await asyncio.wait_for(asyncio.gather(*(task for _w, task in started)), 60)


async def add_service(store: Store, name: str, url: str, **config: object) -> int:
    service = await store.create_service(NewService(name, url, "git", config=dict(config)))
    return service.id


async def assert_build_dir_gone(settings: Settings) -> None:
    builds = settings.effective_build_dir
    leftovers = list(builds.iterdir()) if builds.exists() else []
    assert leftovers == [], f"build directories left behind: {leftovers}"


# --- every runtime, built and run --------------------------------------------------------

APPS = [
    "node-npm",
    "node-pnpm",
    "node-yarn-pnp",
    "node-yarn4-pnp",
    "python-pip-flask",
    "python-fastapi-uv",
    "python-system-packages",  # compiled in the build stage, libraries in the image
    "go-cmd",
    "php-plain",
    "ruby-plain",
    "static-index",
    "dockerfile-own",
]


@pytest.mark.parametrize("app", APPS)
async def test_app_is_built_pushed_verified_and_runs(
    app: str,
    git_daemon: GitDaemon,
    store: Store,
    queue: Queue,
    build_settings: Settings,
    deployer: StartDeployer,
) -> None:
    commit = git_daemon.create_repo(app, example_files(app))
    service_id = await add_service(store, app, git_daemon.url_for(app))
    await deployer()
    deployment = await queue.enqueue(service_id, ref="main", commit_sha=commit)
    done = await wait_for_status(
        store, deployment.id, Status.SUCCEEDED, Status.FAILED, timeout=BUILD_TIMEOUT
    )
    logs = "\n".join(line.line for line in (await store.read_logs(done.id, limit=10000)).items)
    assert done.status == Status.SUCCEEDED, f"{done.error}\n{logs[-4000:]}"
    assert done.image == f"127.0.0.1:5001/e2e/{app}:{commit[:12]}"
    assert done.digest is not None and done.digest.startswith("sha256:")
    current = await store.current_image(service_id, "production")
    assert current is not None and current.digest == done.digest

    steps = await store.list_steps(done.id)
    assert [s.name for s in steps if s.kind == "pipeline"] == [
        "clone",
        "plan",
        "build",
        "verify",
    ]
    assert all(s.status == "done" for s in steps if s.kind == "pipeline")
    await assert_build_dir_gone(build_settings)

    status, body = await asyncio.to_thread(run_container_and_get, done.image, timeout=90)
    assert status == 200
    assert app in body


async def test_redeploy_is_cached_and_a_source_change_skips_the_install(
    git_daemon: GitDaemon,
    store: Store,
    queue: Queue,
    deployer: StartDeployer,
) -> None:
    app = "python-pip-flask"
    files = example_files(app)
    commit = git_daemon.create_repo("cache", files)
    service_id = await add_service(store, "cache", git_daemon.url_for("cache"))
    await deployer()

    async def deploy(sha: str) -> Deployment:
        made = await queue.enqueue(service_id, commit_sha=sha, ref="main")
        done = await wait_for_status(
            store, made.id, Status.SUCCEEDED, Status.FAILED, timeout=BUILD_TIMEOUT
        )
        assert done.status == Status.SUCCEEDED, done.error
        return done

    first = await deploy(commit)
    again = await deploy(commit)
    build_steps = [s for s in await store.list_steps(again.id) if s.kind == "build"]
    # Every instruction that does work (FROM only names the base) came from the cache.
    work = [s for s in build_steps if DOCKERFILE_STEP.match(s.name) and "] FROM " not in s.name]
    assert work and all(s.status == "cached" for s in work), [(s.name, s.status) for s in work]
    assert again.digest == first.digest

    source = next(name for name in files if name.endswith(".py"))
    changed = git_daemon.commit(
        # Unique per run, so BuildKit cannot have seen this source before.
        "cache",
        {source: files[source] + f"\n# change {uuid.uuid4()}\n".encode()},
        "touch",
    )
    third = await deploy(changed)
    steps = {s.name: s.status for s in await store.list_steps(third.id) if s.kind == "build"}
    install = [name for name in steps if "install" in name and DOCKERFILE_STEP.match(name)]
    assert install and all(steps[name] == "cached" for name in install), steps
    assert any(steps[name] == "done" and "COPY" in name for name in steps), steps


# --- bad input: a definite state, a message a person can act on, nothing left behind ----


def dockerfile_repo(git_daemon: GitDaemon, name: str, dockerfile: str) -> str:
    return git_daemon.create_repo(name, {"Dockerfile": dockerfile, "README.md": "test\n"})


async def fail_with(
    store: Store, queue: Queue, service_id: int, commit: str | None, **kwargs: object
) -> Deployment:
    made = await queue.enqueue(service_id, commit_sha=commit, ref="main", **kwargs)  # type: ignore[arg-type]
    done = await wait_for_status(
        store, made.id, Status.FAILED, Status.SUCCEEDED, Status.CANCELLED, timeout=BUILD_TIMEOUT
    )
    assert done.status == Status.FAILED, done
    return done


async def test_a_failing_run_fails_once_naming_the_step_with_its_output(
    git_daemon: GitDaemon,
    store: Store,
    queue: Queue,
    build_settings: Settings,
    deployer: StartDeployer,
) -> None:
    commit = dockerfile_repo(
        git_daemon,
        "failing",
        f"FROM {MIRROR}/library/debian:bookworm\nRUN echo about to fail && exit 3\n",
    )
    service_id = await add_service(store, "failing", git_daemon.url_for("failing"))
    await deployer()
    done = await fail_with(store, queue, service_id, commit)
    assert done.attempts == 1
    assert done.error is not None
    assert done.error.startswith("build failed: step [2/2] RUN echo about to fail && exit 3")
    assert "exit code: 3" in done.error
    lines = [line.line for line in (await store.read_logs(done.id)).items]
    assert "about to fail" in lines
    await assert_build_dir_gone(build_settings)


async def test_a_missing_base_image_names_the_image(
    git_daemon: GitDaemon,
    store: Store,
    queue: Queue,
    deployer: StartDeployer,
) -> None:
    commit = dockerfile_repo(git_daemon, "nobase", f"FROM {MIRROR}/nope/missing:1\n")
    service_id = await add_service(store, "nobase", git_daemon.url_for("nobase"))
    await deployer()
    done = await fail_with(store, queue, service_id, commit)
    assert done.error is not None
    assert f"base image {MIRROR}/nope/missing:1 could not be pulled" in done.error


async def test_an_unknown_runtime_says_what_was_looked_for(
    git_daemon: GitDaemon,
    store: Store,
    queue: Queue,
    deployer: StartDeployer,
) -> None:
    commit = git_daemon.create_repo("mystery", {"notes.txt": "nothing to run\n"})
    service_id = await add_service(store, "mystery", git_daemon.url_for("mystery"))
    await deployer()
    done = await fail_with(store, queue, service_id, commit)
    assert done.error is not None and done.error.startswith("plan failed:")
    assert done.attempts == 1


async def test_a_commit_that_does_not_exist(
    git_daemon: GitDaemon,
    store: Store,
    queue: Queue,
    build_settings: Settings,
    deployer: StartDeployer,
) -> None:
    git_daemon.create_repo("gone", example_files("static-index"))
    service_id = await add_service(store, "gone", git_daemon.url_for("gone"))
    await deployer()
    done = await fail_with(store, queue, service_id, "d" * 40)
    assert done.error is not None and done.error.startswith("clone failed:")
    assert "d" * 40 in done.error
    await assert_build_dir_gone(build_settings)


async def test_a_wrong_token_on_a_private_repository(
    git_http: GitHttpServer,
    store: Store,
    queue: Queue,
    build_settings: Settings,
    deployer: StartDeployer,
) -> None:
    commit = git_http.create_repo("private", example_files("static-index"))
    service_id = await add_service(store, "private", git_http.url_for("private"))
    await deployer(git_token="ghs_wrong_token_1234")
    done = await fail_with(store, queue, service_id, commit)
    assert done.error is not None and "refused access as x-access-token" in done.error
    assert "ghs_wrong_token_1234" not in done.error
    logs = " ".join(line.line for line in (await store.read_logs(done.id)).items)
    assert "ghs_wrong_token_1234" not in logs
    await assert_build_dir_gone(build_settings)


async def test_the_right_token_clones_a_private_repository_and_no_secret_leaks(
    git_http: GitHttpServer,
    store: Store,
    queue: Queue,
    build_settings: Settings,
    deployer: StartDeployer,
    capfd: pytest.CaptureFixture[str],
) -> None:
    commit = git_http.create_repo("private-ok", example_files("static-index"))
    service_id = await add_service(store, "private-ok", git_http.url_for("private-ok"))
    await deployer(git_token=git_http.token)
    made = await queue.enqueue(service_id, commit_sha=commit, ref="main")
    done = await wait_for_status(
        store, made.id, Status.SUCCEEDED, Status.FAILED, timeout=BUILD_TIMEOUT
    )
    assert done.status == Status.SUCCEEDED, done.error
    assert any(request.authorized for request in git_http.requests_for("private-ok"))

    # With real secrets configured and used (git token, registry password), none of them is
    # in the process's logs, the build output, the build directory or anywhere in the
    # database.
    secrets = [git_http.token, TARGET_PASSWORD]
    dump = await database_as_text(store)
    assert "private-ok" in dump and str(done.digest) in dump  # the dump has the data
    captured = capfd.readouterr()
    logs = captured.out + captured.err
    build_output = "\n".join(line.line for line in (await store.read_logs(done.id)).items)
    for secret in secrets:
        assert secret not in dump
        assert secret not in logs
        assert secret not in build_output
    await assert_build_dir_gone(build_settings)


async def database_as_text(store: Store) -> str:
    """Every row of every table, as text (what a dump would hold; no pg_dump needed)."""
    tables = await store.pool.fetch(
        "SELECT quote_ident(tablename) AS name FROM pg_tables WHERE schemaname = 'public'"
    )
    parts = []
    for table in tables:
        rows = await store.pool.fetch(f"SELECT t::text AS row FROM {table['name']} t")
        parts += [row["row"] for row in rows]
    return "\n".join(parts)


def sleeping_processes(marker: str) -> list[str]:
    found = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


async def wait_until_gone(marker: str, timeout: float = PATIENCE) -> None:
    deadline = time.monotonic() + timeout
    while sleeping_processes(marker):
        assert time.monotonic() < deadline, f"still running: {sleeping_processes(marker)}"
        await asyncio.sleep(0.2)


async def sleeping_service(
    git_daemon: GitDaemon, store: Store, name: str, marker: str
) -> tuple[int, str]:
    """A service whose build runs `marker` (a sleep) for minutes: something to stop."""
    commit = dockerfile_repo(
        git_daemon, name, f"FROM {MIRROR}/library/debian:bookworm\nRUN {marker}\n"
    )
    return await add_service(store, name, git_daemon.url_for(name)), commit


async def test_cancel_mid_build_stops_the_build(
    git_daemon: GitDaemon,
    store: Store,
    queue: Queue,
    build_settings: Settings,
    deployer: StartDeployer,
) -> None:
    marker = "sleep 417"
    service_id, commit = await sleeping_service(git_daemon, store, "slow", marker)
    await deployer()
    made = await queue.enqueue(service_id, commit_sha=commit, ref="main")
    deadline = time.monotonic() + 120
    while not sleeping_processes(marker):
        assert time.monotonic() < deadline, "the build never started its RUN step"
        await asyncio.sleep(0.2)
    await queue.cancel(made.id)
    done = await wait_for_status(store, made.id, Status.CANCELLED)
    assert done.error == "cancelled by request"
    await wait_until_gone(marker)
    await assert_build_dir_gone(build_settings)


async def test_a_build_over_the_timeout_is_stopped(
    git_daemon: GitDaemon,
    store: Store,
    queue: Queue,
    build_settings: Settings,
    deployer: StartDeployer,
) -> None:
    marker = "sleep 419"
    service_id, commit = await sleeping_service(git_daemon, store, "forever", marker)
    await deployer(build_timeout_seconds=8.0)
    done = await fail_with(store, queue, service_id, commit)
    assert done.error_kind == "timeout" and "BUILD_TIMEOUT_SECONDS" in (done.error or "")
    await wait_until_gone(marker)
    await assert_build_dir_gone(build_settings)


async def test_registry_down_is_retried_then_fails_with_a_clear_reason(
    git_daemon: GitDaemon,
    store: Store,
    queue: Queue,
    build_settings: Settings,
    deployer: StartDeployer,
) -> None:
    commit = git_daemon.create_repo("nowhere", example_files("static-index"))
    service_id = await add_service(store, "nowhere", git_daemon.url_for("nowhere"))
    await deployer(registry_url="http://127.0.0.1:9", retry_backoff_seconds=0.5)
    done = await fail_with(store, queue, service_id, commit, max_attempts=2)
    assert done.attempts == 2 and done.error_kind == "transient"
    assert "gave up after 2 attempts" in (done.error or "")
    assert "127.0.0.1:9" in (done.error or "")
    await assert_build_dir_gone(build_settings)


# --- rollback: an earlier image back, re-tagged, no rebuild -------------------------------


async def test_rollback_restores_the_previous_image_without_a_build(
    git_daemon: GitDaemon,
    store: Store,
    queue: Queue,
    target_registry: TargetRegistry,
    deployer: StartDeployer,
    progress_seen: dict[int, list[Progress]],
) -> None:
    files = example_files("static-index")
    first_commit = git_daemon.create_repo("back", files)
    service_id = await add_service(store, "back", git_daemon.url_for("back"))
    service = await store.get_service(service_id)
    await deployer()

    async def finished(made: Deployment) -> Deployment:
        done = await wait_for_status(
            store, made.id, Status.SUCCEEDED, Status.FAILED, timeout=BUILD_TIMEOUT
        )
        assert done.status == Status.SUCCEEDED, done.error
        return done

    with pytest.raises(NothingToRollBack, match="has never been deployed"):
        await enqueue_rollback(store, queue, service)
    first = await finished(await queue.enqueue(service_id, commit_sha=first_commit))
    # Target none: no release step, and no step counts one.
    assert [(step, total) for step, total, _ in progress_seen[first.id]] == [
        (1, 5),
        (2, 5),
        (3, 5),
        (4, 5),
        (5, 5),
    ]
    with pytest.raises(NothingToRollBack, match="no earlier successful image"):
        await enqueue_rollback(store, queue, service)

    second_commit = git_daemon.commit(
        "back", {"index.html": f"<h1>back {uuid.uuid4()}</h1>\n"}, "new page"
    )
    second = await finished(await queue.enqueue(service_id, commit_sha=second_commit))
    assert second.digest != first.digest

    rolled = await finished(await enqueue_rollback(store, queue, service))
    assert (rolled.image, rolled.digest) == (first.image, first.digest)
    assert rolled.trigger["rollback_to"] == first.id
    steps = [(s.name, s.kind) for s in await store.list_steps(rolled.id)]
    assert steps == [("rollback", "pipeline"), ("verify", "pipeline")]  # no clone, no build
    assert [(step, total) for step, total, _ in progress_seen[rolled.id]] == [(1, 2), (2, 2)]
    current = await store.current_image(service_id, "production")
    assert current is not None and (current.deployment_id, current.digest) == (
        rolled.id,
        first.digest,
    )
    # The registry's moving tag points at the restored image.
    async with RegistryClient(
        TARGET_REGISTRY_URL, TARGET_USER, SecretStr(TARGET_PASSWORD)
    ) as registry:
        assert await registry.manifest_digest("e2e/back", "production") == first.digest

    # Rolling back again goes to the newest other image: the second one.
    again = await finished(await enqueue_rollback(store, queue, service))
    assert again.digest == second.digest
    with pytest.raises(NothingToRollBack, match="did not succeed"):
        failed = await queue.enqueue(service_id, environment="pr-1")
        await queue.cancel(failed.id)
        await enqueue_rollback(store, queue, service, "pr-1", to=failed.id)
