"""End-to-end deploy benchmark: click-deploy's pipeline against the same work done by hand.

Run:  .venv/bin/python bench/e2e.py [--runs N] [--redeploys N] [--apps A,B] [--json PATH]

Needs the real build infrastructure (`scripts/infra up`): the Docker engine on
unix:///run/cd-docker.sock (driven through /usr/bin/docker, the Debian 20.10 CLI, with
`-H`), the mirror registry localhost:5000 holding the base images, the target registry
127.0.0.1:5001 (Basic auth), and PostgreSQL. The bench creates its own database
(``cd_bench_e2e_<hex>``, migrated with ``pipeline.db.migrate.migrate`` and dropped
``WITH (FORCE)`` at the end) and its own temporary folder (git repositories, build dirs,
a throw-away DOCKER_CONFIG).

For each sample app (``tests/examples/python-pip-flask``, ``tests/examples/node-npm``) the
example is committed into a git repository served by a ``git daemon`` on 127.0.0.1, and a
service pointing at ``git://127.0.0.1:<port>/<app>`` is added. One real
``pipeline.queue.worker.Worker`` runs ``pipeline.deploy.deploy_pipeline(settings)`` in this
process (2 slots, ``queue_poll_seconds=60``: only NOTIFY wakes it), with settings like the
e2e tests' ``build_settings`` (engine builder, registry project ``bench``).

click-deploy, one sample
    ``perf_counter()`` just before ``Queue.enqueue(service, ref="main", commit_sha=…)`` to
    the first poll (every 10 ms) that reads the deployment back as ``succeeded``: claimed,
    cloned, planned, built and pushed through the engine's BuildKit, verified against the
    registry, recorded.

By hand, one sample
    What a person would type for the same result, timed end to end: ``git clone --depth 1
    --branch main`` of the repository from the same ``git daemon``; the ``.dockerignore``
    the plan generates written into the checkout (the repos have none, and the plan says
    to write it there); ``DOCKER_BUILDKIT=1 /usr/bin/docker -H … build --network host -f
    <Dockerfile> -t 127.0.0.1:5001/bench/<app>:hand-<sha> <checkout>`` with the Dockerfile
    the pipeline generates (``pipeline.deploy.plan_service`` on a checkout, written to a
    temporary file once); ``docker push`` of that tag. ``docker login`` into a temporary
    DOCKER_CONFIG happens once before, untimed (a person is logged in already; click-deploy
    sends its credentials with each request).

Cold-ish (a source change)
    Before each sample, a unique comment is appended to the app's source file (``app.py``,
    ``server.js``) and committed: the app's ``COPY . .`` layer and everything after it
    rebuild, while the base image and the dependency install layer come from the cache.
    Each side gets its own fresh commit. One untimed warm-up per side first fills the
    dependency layers of that side's cache. Samples alternate which side goes first.
    Target: click-deploy median ≤ 1.05 × by-hand median + 0.5 s.

Redeploy (nothing changed)
    ``Queue.enqueue`` of the commit click-deploy deployed last, again and again; every
    BuildKit step is cached and the registry already holds every blob. For context the same
    is timed by hand (clone + build + push of that unchanged commit). Target: click-deploy
    median ≤ 2 s.

Where click-deploy's time goes
    From ``Store.list_steps(deployment_id)``, the ``pipeline`` steps (clone, plan, build,
    verify; "push" happens inside build, in BuildKit's ``pushing …`` step, also shown), and
    the time in between: from the enqueue to the clone step's start (enqueue, NOTIFY, claim,
    ``Job.start``, the progress write), the gaps between steps (state changes, progress
    writes, the log flush after the build), and from the verify step's end until the bench
    sees ``succeeded`` (the final write plus up to one 10 ms poll). Medians per column, so
    the columns need not add up to the median total. A last table puts the work both sides
    do next to each other (clone, build without push, push) and sums what only click-deploy
    does. With ``--json``, every sample is kept, with BuildKit's steps of each deployment.

Everything runs on the one machine (2 cores here), the bench's worker in the bench process;
other users of the same engine add noise to both sides alike. Images tagged by the bench are
removed from the engine at the end (the registry keeps what was pushed).
"""

# Run as `python bench/e2e.py`, this file's folder comes first on sys.path, where
# bench/queue.py would shadow the standard library's `queue` (imported by asyncio's thread
# pool and asyncpg). The folder is dropped from sys.path before anything else is imported,
# hence E402 below.
# ruff: noqa: E402

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import platform
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import structlog
from pydantic import SecretStr

from pipeline.db.connect import create_pool
from pipeline.db.migrate import migrate
from pipeline.deploy import DeployPipeline, deploy_pipeline, plan_service
from pipeline.models import Deployment, Step
from pipeline.plan import BuildPlan
from pipeline.queue.queue import Queue
from pipeline.queue.worker import Worker
from pipeline.settings import Settings
from pipeline.states import FINAL, Status
from pipeline.store import NewService, Store

REPO_ROOT = _HERE.parent
EXAMPLES = REPO_ROOT / "tests" / "examples"

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DOCKER_CLI = "/usr/bin/docker"  # the Debian 20.10 client: BuildKit builds without buildx
DOCKER_HOST = "unix:///run/cd-docker.sock"
MIRROR = "localhost:5000"
REGISTRY_URL = "http://127.0.0.1:5001"
REGISTRY_HOST = "127.0.0.1:5001"
REGISTRY_USER = "ci"
REGISTRY_PASSWORD = "ci-registry-secret-5001"
PROJECT = "bench"

# The sample apps and the source file each sample changes (with its comment marker).
APPS: dict[str, tuple[str, str]] = {
    "python-pip-flask": ("app.py", "#"),
    "node-npm": ("server.js", "//"),
}
POLL_SECONDS = 0.01
DEPLOY_TIMEOUT_SECONDS = 600.0
PIPELINE_STEPS = ("clone", "plan", "build", "verify")

# Deterministic git: no user or system configuration.
GIT_ENV: dict[str, str] = {
    "GIT_AUTHOR_NAME": "click-deploy bench",
    "GIT_AUTHOR_EMAIL": "bench@click-deploy.invalid",
    "GIT_COMMITTER_NAME": "click-deploy bench",
    "GIT_COMMITTER_EMAIL": "bench@click-deploy.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
}
# Settings that would point the docker CLI at another engine.
_FOREIGN_DOCKER_ENV = ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")
_PUSH_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")


class BenchError(RuntimeError):
    """The benchmark could not measure what it set out to."""


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- commands ------------------------------------------------------------------------------


def git_env() -> dict[str, str]:
    return {**os.environ, **GIT_ENV}


def docker_env(docker_config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_DOCKER_ENV}
    env.update(DOCKER_BUILDKIT="1", DOCKER_CONFIG=str(docker_config))
    return env


def git_sync(*args: str, cwd: Path) -> str:
    """Run git (setup work, untimed); its stdout, or BenchError with its stderr."""
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=git_env(), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise BenchError(f"git {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result.stdout


async def run_command(
    *args: str, env: Mapping[str, str], cwd: Path | None = None, stdin: bytes | None = None
) -> str:
    """Run a command to completion (as a person would from a shell); its output, or
    BenchError with the end of it."""
    process = await asyncio.create_subprocess_exec(
        *args,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate(stdin)
    text = output.decode("utf-8", "replace")
    if process.returncode != 0:
        tail = "\n".join(text.strip().splitlines()[-20:])
        raise BenchError(f"{' '.join(args[:4])} … exited {process.returncode}:\n{tail}")
    return text


async def docker(*args: str, docker_config: Path, stdin: bytes | None = None) -> str:
    return await run_command(
        DOCKER_CLI, "-H", DOCKER_HOST, *args, env=docker_env(docker_config), stdin=stdin
    )


# --- git daemon ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GitDaemon:
    """`git daemon` serving ROOT/NAME (working repositories) as git://127.0.0.1:PORT/NAME,
    with fetch-by-SHA allowed (click-deploy fetches the exact commit)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    def url_for(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def start(self) -> GitDaemon:
        self.root.mkdir(parents=True, exist_ok=True)
        for _attempt in range(5):
            self.port = free_port()
            self._process = subprocess.Popen(
                [
                    "git",
                    "daemon",
                    "--reuseaddr",
                    "--export-all",
                    f"--base-path={self.root}",
                    "--listen=127.0.0.1",
                    f"--port={self.port}",
                    "--enable=upload-pack",
                ],
                env=git_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 10
            while self._process.poll() is None and time.monotonic() < deadline:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", self.port), timeout=1),
                ):
                    return self
                time.sleep(0.02)
            self.stop()
        raise BenchError("git daemon did not start")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def create_repo(self, name: str, source: Path) -> str:
        """A served repository NAME holding the files of SOURCE in one commit; its SHA."""
        path = self.root / name
        shutil.copytree(source, path)
        git_sync("init", "-q", "-b", "main", cwd=path)
        git_sync("config", "uploadpack.allowAnySHA1InWant", "true", cwd=path)
        return self._commit(path, "initial")

    def touch(self, name: str, source_file: str, marker: str) -> str:
        """Append a unique comment to SOURCE_FILE and commit it; the new SHA."""
        path = self.root / name
        with (path / source_file).open("a", encoding="utf-8") as file:
            file.write(f"\n{marker} bench change {uuid.uuid4()}\n")
        return self._commit(path, "bench: touch")

    def _commit(self, path: Path, message: str) -> str:
        git_sync("add", "-A", cwd=path)
        git_sync("commit", "-q", "-m", message, cwd=path)
        return git_sync("rev-parse", "HEAD", cwd=path).strip()


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CdRun:
    """One click-deploy deployment, timed from the enqueue call to `succeeded` seen."""

    deployment_id: int
    commit: str
    total: float
    queue: float  # enqueue call → clone step started (enqueue, NOTIFY, claim, start, progress)
    steps: dict[str, float]  # clone, plan, build, verify (their own seconds)
    push: float | None  # BuildKit's "pushing …" step, inside build
    gaps: float  # between the pipeline steps (state changes, progress writes, log flush)
    finish: float  # verify's end → `succeeded` seen (final write + poll)
    cached_build_steps: int
    build_steps: int
    # BuildKit's steps as recorded: (name, status, seconds from the build step's start to
    # this one's start, own seconds).
    build_detail: list[tuple[str, str, float, float | None]]


@dataclass(frozen=True)
class HandRun:
    """The same by hand: git clone + docker build + docker push."""

    commit: str
    total: float
    clone: float
    build: float
    push: float
    digest: str | None


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclass
class AppResult:
    app: str
    cold_click_deploy: list[CdRun] = field(default_factory=list)
    cold_by_hand: list[HandRun] = field(default_factory=list)
    redeploy_click_deploy: list[CdRun] = field(default_factory=list)
    redeploy_by_hand: list[HandRun] = field(default_factory=list)
    warmup: dict[str, float] = field(default_factory=dict)

    @property
    def hand_median(self) -> float:
        return median([run.total for run in self.cold_by_hand])

    @property
    def cd_median(self) -> float:
        return median([run.total for run in self.cold_click_deploy])

    @property
    def redeploy_median(self) -> float:
        return median([run.total for run in self.redeploy_click_deploy])

    @property
    def redeploy_hand_median(self) -> float:
        return median([run.total for run in self.redeploy_by_hand])

    @property
    def e2e_limit(self) -> float:
        return 1.05 * self.hand_median + 0.5

    @property
    def e2e_met(self) -> bool:
        return self.cd_median <= self.e2e_limit

    @property
    def redeploy_met(self) -> bool:
        return self.redeploy_median <= 2.0

    def summary(self) -> dict[str, Any]:
        return {
            "by_hand_median_s": self.hand_median,
            "click_deploy_median_s": self.cd_median,
            "ratio": self.cd_median / self.hand_median,
            "overhead_s": self.cd_median - self.hand_median,
            "e2e_limit_s": self.e2e_limit,
            "e2e_target_met": self.e2e_met,
            "redeploy_median_s": self.redeploy_median,
            "redeploy_by_hand_median_s": self.redeploy_hand_median,
            "redeploy_target_met": self.redeploy_met,
            "click_deploy_breakdown_median_s": breakdown(self.cold_click_deploy),
            "redeploy_breakdown_median_s": breakdown(self.redeploy_click_deploy),
            "by_hand_breakdown_median_s": hand_breakdown(self.cold_by_hand),
            "redeploy_by_hand_breakdown_median_s": hand_breakdown(self.redeploy_by_hand),
        }


def breakdown(runs: Sequence[CdRun]) -> dict[str, float]:
    """Median seconds of each part of click-deploy's runs."""
    parts: dict[str, list[float]] = {"queue → clone": [run.queue for run in runs]}
    for name in PIPELINE_STEPS:
        parts[name] = [run.steps.get(name, float("nan")) for run in runs]
        if name == "build":
            parts["  of which push"] = [run.push for run in runs if run.push is not None]
    parts["gaps between steps"] = [run.gaps for run in runs]
    parts["verify → succeeded seen"] = [run.finish for run in runs]
    parts["total"] = [run.total for run in runs]
    return {name: median(values) for name, values in parts.items()}


def hand_breakdown(runs: Sequence[HandRun]) -> dict[str, float]:
    return {
        "clone": median([run.clone for run in runs]),
        "build": median([run.build for run in runs]),
        "push": median([run.push for run in runs]),
        "total": median([run.total for run in runs]),
    }


# --- database ------------------------------------------------------------------------------


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@contextlib.asynccontextmanager
async def temporary_database(server_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database; yields its URL and drops it (forcefully) afterwards."""
    name = f"cd_bench_e2e_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        url = with_database(server_url, name)
        connection = await asyncpg.connect(url)
        try:
            await migrate(connection)
        finally:
            await connection.close()
        yield url
    finally:
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


# --- the two sides -------------------------------------------------------------------------


def bench_settings(database_url: str, workdir: Path) -> Settings:
    """As the e2e tests' `build_settings`, pushing to project `bench`."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=SecretStr(database_url),
        data_dir=workdir / "data",
        builder="docker",
        docker_host=DOCKER_HOST,
        build_network="host",  # the engine here has no bridge network
        build_dir=workdir / "builds",
        registry_url=REGISTRY_URL,
        registry_project=PROJECT,
        registry_username=REGISTRY_USER,
        registry_password=SecretStr(REGISTRY_PASSWORD),
        base_image_mirror=MIRROR,
        build_timeout_seconds=DEPLOY_TIMEOUT_SECONDS,
        worker_slots=2,
        worker_lease_seconds=30.0,
        worker_heartbeat_seconds=5.0,
        queue_poll_seconds=60.0,
    )


def _seconds_between(start: float, end: float) -> float:
    return max(0.0, end - start)


class ClickDeploy:
    """Deploys through the queue and the real worker running in this process."""

    def __init__(self, store: Store, queue: Queue) -> None:
        self.store = store
        self.queue = queue

    async def deploy(self, service_id: int, commit: str) -> CdRun:
        wall_before = time.time()
        before = time.perf_counter()
        made = await self.queue.enqueue(service_id, ref="main", commit_sha=commit)
        deadline = before + DEPLOY_TIMEOUT_SECONDS
        while True:
            done: Deployment = await self.store.get_deployment(made.id)
            if done.status in FINAL:
                break
            if time.perf_counter() > deadline:
                raise BenchError(f"deployment {made.id} still {done.status} after the timeout")
            await asyncio.sleep(POLL_SECONDS)
        total = time.perf_counter() - before
        if done.status != Status.SUCCEEDED:
            lines = (await self.store.read_logs(made.id, limit=10000)).items
            tail = "\n".join(line.line for line in lines[-30:])
            raise BenchError(f"deployment {made.id} {done.status}: {done.error}\n{tail}")
        return self._timings(done, commit, total, wall_before, await self.store.list_steps(made.id))

    @staticmethod
    def _timings(
        done: Deployment, commit: str, total: float, wall_before: float, steps: list[Step]
    ) -> CdRun:
        attempt = [step for step in steps if step.attempt == done.attempts]
        pipeline = {step.name: step for step in attempt if step.kind == "pipeline"}
        missing = [name for name in PIPELINE_STEPS if name not in pipeline]
        if missing or any(pipeline[name].finished_at is None for name in PIPELINE_STEPS):
            raise BenchError(f"deployment {done.id}: pipeline steps missing: {missing}")
        starts = {name: pipeline[name].started_at.timestamp() for name in PIPELINE_STEPS}
        ends = {
            name: finished.timestamp()
            for name in PIPELINE_STEPS
            if (finished := pipeline[name].finished_at) is not None
        }
        own = {name: pipeline[name].seconds or ends[name] - starts[name] for name in PIPELINE_STEPS}
        gaps = sum(
            _seconds_between(ends[earlier], starts[later])
            for earlier, later in itertools.pairwise(PIPELINE_STEPS)
        )
        build_steps = [step for step in attempt if step.kind == "build"]
        pushes = [s.seconds for s in build_steps if s.name.startswith("pushing ") and s.seconds]
        return CdRun(
            deployment_id=done.id,
            commit=commit,
            total=total,
            queue=_seconds_between(wall_before, starts["clone"]),
            steps=own,
            push=sum(pushes) if pushes else None,
            gaps=gaps,
            finish=_seconds_between(ends["verify"], wall_before + total),
            cached_build_steps=sum(1 for step in build_steps if step.status == "cached"),
            build_steps=len(build_steps),
            build_detail=[
                (
                    step.name,
                    step.status,
                    round(step.started_at.timestamp() - starts["build"], 4),
                    step.seconds,
                )
                for step in build_steps
            ],
        )


@dataclass
class ByHand:
    """The same work from a shell: git clone, docker build, docker push."""

    workdir: Path
    docker_config: Path
    dockerfile: Path
    dockerignore: str | None
    counter: int = 0

    async def deploy(self, url: str, commit: str, repository: str) -> HandRun:
        self.counter += 1
        checkout = self.workdir / f"hand-{self.counter}"
        image = f"{repository}:hand-{commit[:12]}"
        try:
            started = time.perf_counter()
            await run_command(
                "git",
                "clone",
                "-q",
                "--depth",
                "1",
                "--branch",
                "main",
                "--no-tags",
                url,
                str(checkout),
                env=git_env(),
            )
            cloned = time.perf_counter()
            if self.dockerignore is not None:
                await asyncio.to_thread(
                    write_if_missing, checkout / ".dockerignore", self.dockerignore
                )
            await docker(
                "build",
                "--network",
                "host",
                "-f",
                str(self.dockerfile),
                "-t",
                image,
                str(checkout),
                docker_config=self.docker_config,
            )
            built = time.perf_counter()
            pushed_output = await docker("push", image, docker_config=self.docker_config)
            pushed = time.perf_counter()
            head = await run_command("git", "rev-parse", "HEAD", env=git_env(), cwd=checkout)
        finally:
            await asyncio.to_thread(shutil.rmtree, checkout, True)
        if head.strip() != commit:
            raise BenchError(f"by hand: cloned {head}, expected {commit}")
        found = _PUSH_DIGEST.search(pushed_output)
        return HandRun(
            commit=commit,
            total=pushed - started,
            clone=cloned - started,
            build=built - cloned,
            push=pushed - built,
            digest=found.group(1) if found else None,
        )

    def use_plan(self, plan: BuildPlan) -> None:
        """Build with the plan's generated Dockerfile (written once) and .dockerignore."""
        self.dockerfile.write_text(plan.dockerfile, encoding="utf-8")
        self.dockerignore = plan.dockerignore


def write_if_missing(path: Path, text: str) -> None:
    if not path.exists():
        path.write_text(text, encoding="utf-8")


# --- one app -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    database_url: str
    apps: tuple[str, ...]
    runs: int
    redeploys: int
    json_path: Path | None


async def plan_like_the_pipeline(
    url: str, workdir: Path, service_id: int, store: Store, pipeline: DeployPipeline
) -> BuildPlan:
    """The plan the pipeline makes (its own `plan_service`), from a checkout of the repo."""
    checkout = workdir / "plan-checkout"
    await run_command("git", "clone", "-q", "--depth", "1", url, str(checkout), env=git_env())
    try:
        service = await store.get_service(service_id)
        result = await asyncio.to_thread(plan_service, checkout, service, pipeline.images)
    finally:
        await asyncio.to_thread(shutil.rmtree, checkout, True)
    if not result.ok or result.plan is None:
        raise BenchError(f"the plan failed: {result.message}")
    return result.plan


async def bench_app(
    app: str,
    options: Options,
    workdir: Path,
    daemon: GitDaemon,
    store: Store,
    click_deploy: ClickDeploy,
    pipeline: DeployPipeline,
    docker_config: Path,
) -> AppResult:
    source_file, marker = APPS[app]
    result = AppResult(app)
    await asyncio.to_thread(daemon.create_repo, app, EXAMPLES / app)
    url = daemon.url_for(app)
    service = await store.create_service(NewService(app, url, "git"))
    repository = f"{REGISTRY_HOST}/{PROJECT}/{app}"
    by_hand = ByHand(workdir, docker_config, workdir / f"{app}.Dockerfile", None)
    plan = await plan_like_the_pipeline(url, workdir, service.id, store, pipeline)
    await asyncio.to_thread(by_hand.use_plan, plan)
    progress(f"{app}: {plan.runtime} {plan.version or ''}, plan from pipeline.deploy.plan_service")

    async def touch() -> str:
        return await asyncio.to_thread(daemon.touch, app, source_file, marker)

    # Warm-up, untimed: each side fills its dependency layers once.
    first = await click_deploy.deploy(service.id, await touch())
    result.warmup["click_deploy_s"] = first.total
    hand_first = await by_hand.deploy(url, await touch(), repository)
    result.warmup["by_hand_s"] = hand_first.total
    progress(f"{app}: warm-up click-deploy {first.total:.2f} s, by hand {hand_first.total:.2f} s")

    for index in range(options.runs):
        order = ("cd", "hand") if index % 2 == 0 else ("hand", "cd")
        for side in order:
            commit = await touch()
            if side == "cd":
                run = await click_deploy.deploy(service.id, commit)
                result.cold_click_deploy.append(run)
                progress(f"{app}: cold {index + 1}/{options.runs} click-deploy {run.total:.2f} s")
            else:
                hand = await by_hand.deploy(url, commit, repository)
                result.cold_by_hand.append(hand)
                progress(f"{app}: cold {index + 1}/{options.runs} by hand {hand.total:.2f} s")

    # Redeploy, unchanged: the tip of main, which the side that went last just built; the
    # other side builds it once, untimed, so that both redeploy a commit they have built.
    tip = (await asyncio.to_thread(git_sync, "rev-parse", "HEAD", cwd=daemon.root / app)).strip()
    if result.cold_click_deploy[-1].commit != tip:
        await click_deploy.deploy(service.id, tip)
    if result.cold_by_hand[-1].commit != tip:
        await by_hand.deploy(url, tip, repository)
    for index in range(options.redeploys):
        run = await click_deploy.deploy(service.id, tip)
        result.redeploy_click_deploy.append(run)
        progress(f"{app}: redeploy {index + 1}/{options.redeploys} click-deploy {run.total:.2f} s")
    for index in range(options.redeploys):
        hand = await by_hand.deploy(url, tip, repository)
        result.redeploy_by_hand.append(hand)
        progress(f"{app}: redeploy {index + 1}/{options.redeploys} by hand {hand.total:.2f} s")
    return result


# --- the run -------------------------------------------------------------------------------


async def check_infrastructure(server_url: str, docker_config: Path) -> dict[str, Any]:
    version = await docker(
        "version",
        "--format",
        "{{.Server.Version}} (client {{.Client.Version}})",
        docker_config=docker_config,
    )
    connection = await asyncpg.connect(server_url)
    try:
        server = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    return {
        "docker_engine": version.strip(),
        "postgresql": server,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "git": (await run_command("git", "--version", env=git_env())).strip(),
    }


async def remove_bench_images(docker_config: Path, apps: Sequence[str]) -> int:
    """Remove the engine's images the bench tagged (127.0.0.1:5001/bench/<app>:…)."""
    listing = await docker(
        "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", docker_config=docker_config
    )
    ours = {f"{REGISTRY_HOST}/{PROJECT}/{app}" for app in apps}
    tags = [line for line in listing.split() if line.rpartition(":")[0] in ours]
    if tags:
        with contextlib.suppress(BenchError):
            await docker("image", "rm", *tags, docker_config=docker_config)
    return len(tags)


def quiet_logging() -> None:
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


async def run(options: Options) -> tuple[dict[str, Any], list[AppResult]]:
    results: list[AppResult] = []
    with tempfile.TemporaryDirectory(prefix="cd-bench-e2e-") as temporary:
        workdir = Path(temporary)
        docker_config = workdir / "docker-config"
        docker_config.mkdir()
        env = await check_infrastructure(options.database_url, docker_config)
        await docker(
            "login",
            REGISTRY_HOST,
            "--username",
            REGISTRY_USER,
            "--password-stdin",
            docker_config=docker_config,
            stdin=REGISTRY_PASSWORD.encode(),
        )
        daemon = GitDaemon(workdir / "git").start()
        try:
            async with temporary_database(options.database_url) as url:
                settings = bench_settings(url, workdir)
                pipeline = deploy_pipeline(settings)
                if not isinstance(pipeline, DeployPipeline):
                    raise BenchError(f"no build pipeline: {getattr(pipeline, 'reason', pipeline)}")
                pool = await create_pool(url, size=10)
                store = Store(pool)
                worker = Worker(settings, pool, url, pipeline, slots=2, worker_id="bench-e2e")
                task = asyncio.create_task(worker.run())
                try:
                    await asyncio.wait_for(worker.listener.connected.wait(), 10)
                    click_deploy = ClickDeploy(store, Queue(pool, settings))
                    for app in options.apps:
                        results.append(
                            await bench_app(
                                app,
                                options,
                                workdir,
                                daemon,
                                store,
                                click_deploy,
                                pipeline,
                                docker_config,
                            )
                        )
                finally:
                    worker.stop(now=True)
                    await asyncio.wait_for(task, 60)
                    await pool.close()
        finally:
            daemon.stop()
            removed = await remove_bench_images(docker_config, options.apps)
            progress(f"removed {removed} bench image tags from the engine")
    return env, results


# --- report --------------------------------------------------------------------------------


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


def summary_table(results: Sequence[AppResult]) -> str:
    lines = [
        "| app | by hand median (s) | click-deploy median (s) | ratio | overhead (s) "
        "| e2e target ≤ 1.05×hand + 0.5 s | redeploy median (s) | redeploy by hand (s) "
        "| redeploy target ≤ 2 s |",
        "|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.app} | {r.hand_median:.2f} | {r.cd_median:.2f} "
            f"| {r.cd_median / r.hand_median:.3f} | {r.cd_median - r.hand_median:+.2f} "
            f"| {yes_no(r.e2e_met)} (limit {r.e2e_limit:.2f}) | {r.redeploy_median:.2f} "
            f"| {r.redeploy_hand_median:.2f} | {yes_no(r.redeploy_met)} |"
        )
    return "\n".join(lines)


def breakdown_table(results: Sequence[AppResult]) -> str:
    columns: list[tuple[str, dict[str, float]]] = []
    for r in results:
        columns.append((f"{r.app} cold", breakdown(r.cold_click_deploy)))
        columns.append((f"{r.app} redeploy", breakdown(r.redeploy_click_deploy)))
    names = list(columns[0][1]) if columns else []
    lines = [
        "| click-deploy part (median s) | " + " | ".join(name for name, _ in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for name in names:
        lines.append(
            f"| {name} | " + " | ".join(f"{values[name]:.3f}" for _, values in columns) + " |"
        )
    lines += [
        "",
        "| by hand part (median s) | " + " | ".join(name for name, _ in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    hands: list[dict[str, float]] = []
    for r in results:
        hands.append(hand_breakdown(r.cold_by_hand))
        hands.append(hand_breakdown(r.redeploy_by_hand))
    for name in ("clone", "build", "push", "total"):
        lines.append(f"| {name} | " + " | ".join(f"{h[name]:.3f}" for h in hands) + " |")
    return "\n".join(lines)


def side_by_side_table(results: Sequence[AppResult]) -> str:
    """Cold-ish medians of the work both sides do, and what only click-deploy does."""
    lines = [
        "| cold-ish, median s | "
        + " | ".join(f"{r.app} hand | {r.app} click-deploy" for r in results)
        + " |",
        "|---|" + "---:|---:|" * len(results),
    ]
    rows: list[tuple[str, list[str]]] = [
        ("clone", []),
        ("build (without push)", []),
        ("push", []),
        ("click-deploy only: queue, plan, verify, gaps, finish", []),
        ("total", []),
    ]
    for r in results:
        hand = hand_breakdown(r.cold_by_hand)
        cd = r.cold_click_deploy
        extra = [
            run.queue + run.steps["plan"] + run.steps["verify"] + run.gaps + run.finish
            for run in cd
        ]
        pairs = [
            (hand["clone"], median([run.steps["clone"] for run in cd])),
            (hand["build"], median([run.steps["build"] - (run.push or 0.0) for run in cd])),
            (hand["push"], median([run.push or 0.0 for run in cd])),
            (0.0, median(extra)),
            (hand["total"], median([run.total for run in cd])),
        ]
        for (_, values), (by_hand, click) in zip(rows, pairs, strict=True):
            values += [f"{by_hand:.3f}", f"{click:.3f}"]
    lines += [f"| {name} | " + " | ".join(values) + " |" for name, values in rows]
    return "\n".join(lines)


def report(env: Mapping[str, Any], options: Options, results: Sequence[AppResult]) -> str:
    cache_notes = []
    for r in results:
        cold = [f"{run.cached_build_steps}/{run.build_steps}" for run in r.cold_click_deploy]
        again = [f"{run.cached_build_steps}/{run.build_steps}" for run in r.redeploy_click_deploy]
        cache_notes.append(
            f"- {r.app}: cached/all BuildKit steps, cold {', '.join(cold)}; "
            f"redeploy {', '.join(again)}; warm-up click-deploy "
            f"{r.warmup['click_deploy_s']:.2f} s, by hand {r.warmup['by_hand_s']:.2f} s"
        )
    return "\n".join(
        [
            "## End-to-end deploy: click-deploy vs by hand",
            "",
            f"Docker engine {env['docker_engine']}, PostgreSQL {env['postgresql']}, "
            f"Python {env['python']}, {env['git']}, {env['cpus']} CPUs. "
            f"Cold-ish: median of {options.runs} per side (fresh source commit each); "
            f"redeploy: median of {options.redeploys}.",
            "",
            summary_table(results),
            "",
            "### Where click-deploy's time goes",
            "",
            breakdown_table(results),
            "",
            side_by_side_table(results),
            "",
            *cache_notes,
        ]
    )


def to_json(
    env: Mapping[str, Any], options: Options, results: Sequence[AppResult], wall: float
) -> dict[str, Any]:
    return {
        "environment": dict(env),
        "options": {
            "apps": list(options.apps),
            "runs": options.runs,
            "redeploys": options.redeploys,
        },
        "results": {
            r.app: {
                "summary": r.summary(),
                "warmup_s": r.warmup,
                "cold_click_deploy": [asdict(run) for run in r.cold_click_deploy],
                "cold_by_hand": [asdict(run) for run in r.cold_by_hand],
                "redeploy_click_deploy": [asdict(run) for run in r.redeploy_click_deploy],
                "redeploy_by_hand": [asdict(run) for run in r.redeploy_by_hand],
            }
            for r in results
        },
        "wall_seconds": round(wall, 1),
    }


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL),
        help="server to use; the bench creates and drops its own database there "
        "(default: $DATABASE_URL, else %(default)s)",
    )
    parser.add_argument(
        "--apps",
        default=",".join(APPS),
        help="comma-separated sample apps (default: %(default)s)",
    )
    parser.add_argument("--runs", type=int, default=10, help="cold-ish samples per side and app")
    parser.add_argument("--redeploys", type=int, default=10, help="redeploy samples per app")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    apps = tuple(app.strip() for app in args.apps.split(",") if app.strip())
    unknown = [app for app in apps if app not in APPS]
    if unknown or not apps:
        parser.error(f"unknown app(s) {unknown}; choose from {', '.join(APPS)}")
    if args.runs < 1 or args.redeploys < 1:
        parser.error("need --runs >= 1 and --redeploys >= 1")
    return Options(
        database_url=args.database_url,
        apps=apps,
        runs=args.runs,
        redeploys=args.redeploys,
        json_path=args.json,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    quiet_logging()
    started = time.perf_counter()
    try:
        env, results = asyncio.run(run(options))
    except BenchError as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 1
    wall = time.perf_counter() - started
    print(report(env, options, results), flush=True)
    progress(f"done in {wall:.1f} s")
    if options.json_path is not None:
        text = json.dumps(to_json(env, options, results, wall), indent=2, ensure_ascii=False)
        options.json_path.write_text(text + "\n", encoding="utf-8")
        progress(f"results written to {options.json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
