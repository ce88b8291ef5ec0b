"""The corpus: every app under tests/apps/ built through a real worker, run and checked.

Run:  scripts/corpus [--only NAME[,NAME…]] [--jobs N] [--no-docs] [--json PATH]

Needs the real build infrastructure (`scripts/infra up`) and PostgreSQL, like bench/e2e.py,
whose pieces it uses: its own database (created, migrated, dropped), a `git daemon` on
127.0.0.1 serving each app as a repository, one real `pipeline.queue.worker.Worker` in this
process running `pipeline.deploy.deploy_pipeline(settings)` (clone, plan, BuildKit build
through the engine, push to the target registry 127.0.0.1:5001, verify).

For each app (its `check.json` says how to check it, tests/apps/README.md):

1. cold build: the app's files in one commit, deployed; seconds from the enqueue to the
   final state. The dependency manifests are made unique first (a comment, or an unused
   field in package.json), so the install runs however often the machine built the app;
   base images and package-manager cache mounts are as the machine has them.
2. run: `docker run --network host` of the pushed image with PORT set to a free port; every
   `http` check's path must answer 200 with each `expect` text in the body (a worker's
   `logs` texts must appear in its output instead).
3. warm rebuild: a source-only change (a new file committed), deployed again; the step that
   installs the dependencies (the plan's install command) must come from BuildKit's cache.
4. image size: the engine's size of the pushed image.

With --jobs N, N apps build at once (the worker has N slots). Results are printed as a
markdown table and, unless --no-docs, written into docs/building.md between its corpus
markers, with the date and the machine. With --only, only those apps' rows are rewritten
(every other app keeps its recorded row) and a line says which rows ran when.
"""

# Run as a script, this file's folder would come first on sys.path, where bench/queue.py
# shadows the standard library's `queue`: it is replaced by the repository root.
# ruff: noqa: E402

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if __name__ == "__main__":
    sys.path[:] = [str(_HERE.parent)] + [
        entry for entry in sys.path if Path(entry or ".").resolve() != _HERE
    ]

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass

from pydantic import BaseModel, ConfigDict, Field

from bench.e2e import (
    DEFAULT_DATABASE_URL,
    REGISTRY_HOST,
    REGISTRY_PASSWORD,
    REGISTRY_USER,
    BenchError,
    GitDaemon,
    bench_settings,
    check_infrastructure,
    docker,
    free_port,
    progress,
    quiet_logging,
    temporary_database,
)
from pipeline.db.connect import create_pool
from pipeline.deploy import DeployPipeline, deploy_pipeline, plan_service
from pipeline.models import Deployment, Service
from pipeline.queue.queue import Queue
from pipeline.queue.worker import Worker
from pipeline.states import FINAL, Status
from pipeline.store import NewService, Store

REPO_ROOT = _HERE.parent
APPS_DIR = REPO_ROOT / "tests" / "apps"
DOCS = REPO_ROOT / "docs" / "building.md"
TABLE_START = "<!-- corpus table: written by scripts/corpus, do not edit by hand -->"
TABLE_END = "<!-- end of corpus table -->"
PROJECT = "corpus"
DEPLOY_TIMEOUT_SECONDS = 900.0
START_TIMEOUT_SECONDS = 120.0
POLL_SECONDS = 0.25
CHANGE_FILE = "corpus-change.txt"
_NOT_YET = (0, 502, 503, 504)  # nothing answers yet, or a proxy in front of the app waits
# Install commands, for a plan that names none (its `install` is the first choice).
_INSTALL = re.compile(
    r"\b(npm (ci|install)|yarn( install)?\b|pnpm (i|install)|bun install|pip install|uv sync"
    r"|uv pip install|poetry install|pdm (install|sync)|pipenv (install|sync)|bundle install"
    r"|composer install|go mod download)"
)
_STEP = re.compile(r"^\[(\S+ )?\d+/\d+\] RUN ")


# --- the apps ------------------------------------------------------------------------------


class HttpCheck(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str = Field(pattern=r"^/")
    expect: tuple[str, ...] = Field(min_length=1)


class Check(BaseModel):
    """An app's check.json."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    family: int = Field(ge=0, le=8)
    proves: str
    http: tuple[HttpCheck, ...] = ()
    logs: tuple[str, ...] = ()


@dataclass(frozen=True)
class App:
    name: str
    path: Path
    check: Check


def load_apps(root: Path = APPS_DIR) -> list[App]:
    """Every app folder under ROOT with its check (a folder without check.json is an error:
    an app nobody checks proves nothing)."""
    apps = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        check_file = folder / "check.json"
        if not check_file.is_file():
            raise BenchError(f"{folder} has no check.json")
        check = Check.model_validate_json(check_file.read_text(encoding="utf-8"))
        if bool(check.http) == bool(check.logs):
            raise BenchError(f"{check_file}: give either http checks or logs texts")
        apps.append(App(folder.name, folder, check))
    return apps


# --- one app's outcome ---------------------------------------------------------------------


@dataclass
class Outcome:
    app: str
    family: int
    runtime: str = "–"
    passed: bool = False
    reason: str = ""
    cold_seconds: float | None = None
    warm_seconds: float | None = None
    install_cached: bool | None = None  # None: the plan has no install step
    image_mb: float | None = None
    log_tail: str = ""  # the end of the failed deployment's log (in --json output)


def one_line(text: str | None, limit: int = 160) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class Session:
    """A worker, a store and a git daemon, ready to build apps."""

    def __init__(
        self,
        store: Store,
        queue: Queue,
        daemon: GitDaemon,
        pipeline: DeployPipeline,
        docker_config: Path,
    ) -> None:
        self.store = store
        self.queue = queue
        self.daemon = daemon
        self.pipeline = pipeline
        self.docker_config = docker_config

    async def deploy(self, service_id: int, commit: str) -> tuple[Deployment, float]:
        """Deploy COMMIT; the final deployment and the seconds it took."""
        started = time.perf_counter()
        made = await self.queue.enqueue(service_id, ref="main", commit_sha=commit)
        while True:
            done = await self.store.get_deployment(made.id)
            if done.status in FINAL:
                return done, time.perf_counter() - started
            if time.perf_counter() - started > DEPLOY_TIMEOUT_SECONDS:
                raise BenchError(f"deployment {made.id} still {done.status} after the timeout")
            await asyncio.sleep(POLL_SECONDS)

    async def failure(self, done: Deployment, outcome: Outcome) -> str:
        """The deployment's error (or its last log line); the log's end into OUTCOME."""
        lines = [item.line for item in (await self.store.read_logs(done.id, limit=10000)).items]
        outcome.log_tail = "\n".join(lines[-25:])
        if done.error:
            return one_line(done.error)
        return one_line(lines[-1] if lines else f"deployment {done.status}")

    async def check_app(self, app: App) -> Outcome:
        """Build, run, check, rebuild after a source-only change, measure."""
        outcome = Outcome(app.name, app.check.family)
        repo = f"{app.name}-{uuid.uuid4().hex[:6]}"
        commit = await asyncio.to_thread(self._create_repo, repo, app.path)
        service = await self.store.create_service(
            NewService(repo, self.daemon.url_for(repo), "git")
        )
        install = await asyncio.to_thread(self._plan, app, service, outcome)
        done, outcome.cold_seconds = await self.deploy(service.id, commit)
        if done.status != Status.SUCCEEDED or done.image is None:
            outcome.reason = f"build: {await self.failure(done, outcome)}"
            return outcome
        outcome.image_mb = await self._image_mb(done.image)
        problem = await self._run_and_check(app, done.image)
        change = await asyncio.to_thread(self.daemon.touch, repo, CHANGE_FILE, "#")
        again, outcome.warm_seconds = await self.deploy(service.id, change)
        if again.status != Status.SUCCEEDED:
            outcome.reason = f"rebuild: {await self.failure(again, outcome)}"
            return outcome
        if install is not None:
            steps = [s for s in await self.store.list_steps(again.id) if s.kind == "build"]
            installs = [s for s in steps if _STEP.match(s.name) and install.search(s.name)]
            outcome.install_cached = bool(installs) and all(s.status == "cached" for s in installs)
            if not outcome.install_cached and problem is None:
                problem = "the dependency install re-ran after a source-only change"
        outcome.passed = problem is None
        outcome.reason = problem or "ok"
        return outcome

    def _create_repo(self, repo: str, source: Path) -> str:
        """A served repository REPO with SOURCE's files, its dependency manifests made
        unique (a comment or an unused field) so that the first build installs them."""
        with tempfile.TemporaryDirectory(prefix="cd-corpus-src-") as temporary:
            copy = Path(temporary) / repo
            shutil.copytree(source, copy)
            make_install_cold(copy, repo)
            return self.daemon.create_repo(repo, copy)

    def _plan(self, app: App, service: Service, outcome: Outcome) -> re.Pattern[str] | None:
        """The plan's runtime into OUTCOME; a pattern naming its install step (None: none)."""
        with tempfile.TemporaryDirectory(prefix="cd-corpus-plan-") as temporary:
            checkout = Path(temporary) / app.name
            shutil.copytree(app.path, checkout)
            result = plan_service(checkout, service, self.pipeline.images)
        if not result.ok or result.plan is None:
            return None
        plan = result.plan
        outcome.runtime = f"{plan.runtime} {plan.version}" if plan.version else plan.runtime
        if plan.install:
            return re.compile(re.escape(plan.install.strip()[:40]))
        return _INSTALL if _INSTALL.search(plan.dockerfile) else None

    async def _image_mb(self, image: str) -> float | None:
        with contextlib.suppress(BenchError, ValueError):
            size = await docker(
                "image", "inspect", "-f", "{{.Size}}", image, docker_config=self.docker_config
            )
            return int(size.strip()) / 1_000_000
        return None

    async def _run_and_check(self, app: App, image: str) -> str | None:
        """Run IMAGE and check it; None when every check passed, else what failed."""
        port = free_port()
        name = f"cd-corpus-{uuid.uuid4().hex[:10]}"
        await docker(
            "run", "-d", "--name", name, "--network", "host", "-e", f"PORT={port}", image,
            docker_config=self.docker_config,
        )  # fmt: skip
        try:
            if app.check.logs:
                return await self._wait_for_logs(name, app.check.logs)
            for check in app.check.http:
                problem = await self._wait_for_http(name, port, check)
                if problem is not None:
                    return problem
            return None
        finally:
            with contextlib.suppress(BenchError):
                await docker("rm", "-f", name, docker_config=self.docker_config)

    async def _logs(self, name: str) -> str:
        return await docker("logs", name, docker_config=self.docker_config)

    async def _running(self, name: str) -> bool:
        state = await docker(
            "inspect", "-f", "{{.State.Running}}", name, docker_config=self.docker_config
        )
        return state.strip() == "true"

    async def _wait_for_logs(self, name: str, texts: Sequence[str]) -> str | None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            logs = await self._logs(name)
            missing = [text for text in texts if text not in logs]
            if not missing:
                return None
            if not await self._running(name) or time.monotonic() > deadline:
                return f"run: {missing[0]!r} not in its output: {one_line(logs[-300:])}"
            await asyncio.sleep(POLL_SECONDS)

    async def _wait_for_http(self, name: str, port: int, check: HttpCheck) -> str | None:
        url = f"http://127.0.0.1:{port}{check.path}"
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            status, body = await asyncio.to_thread(http_get, url)
            if status == 200:
                missing = [text for text in check.expect if text not in body]
                if not missing:
                    return None
                return f"GET {check.path}: 200 without {missing[0]!r}"
            # A server that answers is up: only a gateway still waiting for the app behind
            # it may answer otherwise later.
            if status not in _NOT_YET:
                return f"GET {check.path}: HTTP {status}"
            if not await self._running(name) or time.monotonic() > deadline:
                logs = one_line((await self._logs(name))[-300:])
                if status:
                    return f"GET {check.path}: HTTP {status} until the timeout: {logs}"
                return f"run: nothing answered on PORT: {logs}"
            await asyncio.sleep(POLL_SECONDS)


# Dependency manifests and how to add a line to each without changing what it asks for.
_MANIFEST_COMMENTS = {
    "requirements.txt": "#",
    "pyproject.toml": "#",
    "Pipfile": "#",
    "go.mod": "//",
    "go.work": "//",
    "Gemfile": "#",
}


def make_install_cold(root: Path, marker: str) -> None:
    """Change every dependency manifest at ROOT's top without changing its meaning: the
    layer that copies it, and the install after it, miss BuildKit's cache, so the first
    build of a run is cold however often the machine built the app before."""
    for name, comment in _MANIFEST_COMMENTS.items():
        path = root / name
        if path.is_file():
            with path.open("a", encoding="utf-8") as file:
                file.write(f"\n{comment} corpus run {marker}\n")
    for name in ("package.json", "composer.json"):
        path = root / name
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                data["corpusRun"] = marker
                path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def http_get(url: str) -> tuple[int, str]:
    """Status and body of a GET (0 when nothing answers)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        with error:
            return int(error.code), ""
    except OSError:
        return 0, ""


@contextlib.asynccontextmanager
async def session(database_url: str, workdir: Path, slots: int = 1) -> AsyncIterator[Session]:
    """A database, a git daemon, a logged-in docker config and a running worker in WORKDIR."""
    docker_config = workdir / "docker-config"
    docker_config.mkdir(parents=True)
    await docker(
        "login", REGISTRY_HOST, "--username", REGISTRY_USER, "--password-stdin",
        docker_config=docker_config, stdin=REGISTRY_PASSWORD.encode(),
    )  # fmt: skip
    daemon = GitDaemon(workdir / "git").start()
    try:
        async with temporary_database(database_url) as url:
            settings = bench_settings(url, workdir).model_copy(
                update={"registry_project": PROJECT, "worker_slots": slots}
            )
            pipeline = deploy_pipeline(settings)
            if not isinstance(pipeline, DeployPipeline):
                raise BenchError(f"no build pipeline: {getattr(pipeline, 'reason', pipeline)}")
            pool = await create_pool(url, size=4 + 2 * slots)
            worker = Worker(settings, pool, url, pipeline, slots=slots, worker_id="corpus")
            task = asyncio.create_task(worker.run())
            try:
                await asyncio.wait_for(worker.listener.connected.wait(), 10)
                yield Session(Store(pool), Queue(pool, settings), daemon, pipeline, docker_config)
            finally:
                worker.stop(now=True)
                await asyncio.wait_for(task, 60)
                await pool.close()
    finally:
        daemon.stop()


# --- the run -------------------------------------------------------------------------------


async def run(
    apps: Sequence[App], database_url: str, jobs: int, verbose: bool = False
) -> tuple[dict[str, object], list[Outcome]]:
    with tempfile.TemporaryDirectory(prefix="cd-corpus-") as temporary:
        workdir = Path(temporary)
        async with session(database_url, workdir, slots=jobs) as built:
            env = await check_infrastructure(database_url, built.docker_config)
            limit = asyncio.Semaphore(jobs)

            async def one(app: App) -> Outcome:
                async with limit:
                    progress(f"{app.name}: building")
                    try:
                        outcome = await built.check_app(app)
                    except BenchError as error:
                        outcome = Outcome(app.name, app.check.family, reason=one_line(str(error)))
                    progress(f"{app.name}: {'pass' if outcome.passed else 'FAIL'} {outcome.reason}")
                    if verbose and outcome.log_tail:
                        progress(f"{app.name}: the log ends with\n{outcome.log_tail}")
                    return outcome

            outcomes = await asyncio.gather(*(one(app) for app in apps))
            with contextlib.suppress(BenchError):
                await remove_images(built.docker_config)
    return env, list(outcomes)


async def remove_images(docker_config: Path) -> None:
    listing = await docker(
        "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", docker_config=docker_config
    )
    ours = [line for line in listing.split() if line.startswith(f"{REGISTRY_HOST}/{PROJECT}/")]
    if ours:
        await docker("image", "rm", *ours, docker_config=docker_config)


def seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


TABLE_HEADER = (
    "| app | family | runtime | result | cold build (s) | warm rebuild (s) "
    "| install cached | image (MB) |",
    "|---|---:|---|---|---:|---:|---|---:|",
)
_RERUN = re.compile(r"^Rows of (?P<apps>\S+(?:, \S+)*) re-run (?P<rest>.+)$")


def row(o: Outcome) -> str:
    cached = {None: "–", True: "yes", False: "no"}[o.install_cached]
    result = "pass" if o.passed else f"fail: {one_line(o.reason, 110).replace('|', '/')}"
    size = "–" if o.image_mb is None else f"{o.image_mb:.0f}"
    return (
        f"| {o.app} | {o.family} | {o.runtime} | {result} | {seconds(o.cold_seconds)} "
        f"| {seconds(o.warm_seconds)} | {cached} | {size} |"
    )


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def table_of_rows(rows: Sequence[str]) -> str:
    passed = sum(_cells(line)[3] == "pass" for line in rows)
    return "\n".join([*TABLE_HEADER, *rows, "", f"{passed} of {len(rows)} apps pass."])


def table(outcomes: Sequence[Outcome]) -> str:
    return table_of_rows([row(o) for o in outcomes])


def machine(env: dict[str, object]) -> str:
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GB memory"
    # Other work on the machine slows the builds down: the load says how busy it was.
    load = env.get("load_average")
    busy = f", load average {load:.1f} at the start" if isinstance(load, float) else ""
    return (
        f"{platform.system()} {platform.release()}, {env['cpus']} CPUs{memory}{busy}; "
        f"Docker engine {env['docker_engine']}; PostgreSQL {env['postgresql']}"
    )


def _when(env: dict[str, object], jobs: int, wall: float) -> str:
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{date} on {machine(env)}; `--jobs {jobs}`, {wall / 60:.0f} min in all."


def section(env: dict[str, object], outcomes: Sequence[Outcome], jobs: int, wall: float) -> str:
    """The docs section of a run of the whole corpus."""
    return "\n".join([TABLE_START, f"Run {_when(env, jobs, wall)}", "", table(outcomes), TABLE_END])


@dataclass(frozen=True)
class Recorded:
    """A corpus section as the docs hold it: the lines saying when it ran (the whole run,
    then the runs of some apps only) and one table row per app."""

    runs: tuple[str, ...]
    rows: dict[str, str]


def read_section(text: str) -> Recorded | None:
    """The corpus section of a docs page's TEXT; None when it has none."""
    if TABLE_START not in text or TABLE_END not in text:
        return None
    body = text.partition(TABLE_START)[2].partition(TABLE_END)[0]
    runs: list[str] = []
    rows: dict[str, str] = {}
    in_table = False
    for line in body.strip("\n").splitlines():
        if line.startswith("|"):
            in_table = True
            if line not in TABLE_HEADER:
                rows[_cells(line)[0]] = line
        elif not in_table and line.strip():
            runs.append(line)
    return Recorded(tuple(runs), rows)


def merged_section(
    recorded: Recorded | None,
    env: dict[str, object],
    outcomes: Sequence[Outcome],
    apps: Sequence[App],
    jobs: int,
    wall: float,
) -> str:
    """RECORDED with the rows of a run of some apps only (OUTCOMES) put in place: every
    other app keeps its row, an app gone from tests/apps loses it, and a line says which
    rows this run wrote and when (an earlier such line no longer names them)."""
    fresh = {o.app: row(o) for o in outcomes}
    old = recorded or Recorded((), {})
    runs: list[str] = []
    for line in old.runs:
        match = _RERUN.match(line)
        if match is None:
            runs.append(line)
            continue
        left = [name for name in match["apps"].split(", ") if name not in fresh]
        if left:
            runs.append(f"Rows of {', '.join(left)} re-run {match['rest']}")
    runs.append(f"Rows of {', '.join(sorted(fresh))} re-run {_when(env, jobs, wall)}")
    rows = []
    for app in apps:
        kept = fresh.get(app.name) or old.rows.get(app.name)
        rows.append(kept or f"| {app.name} | {app.check.family} | – | not run | – | – | – | – |")
    return "\n".join([TABLE_START, *runs, "", table_of_rows(rows), TABLE_END])


def write_docs(text: str, path: Path = DOCS) -> None:
    """Replace the corpus section of PATH (between the markers) with TEXT."""
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    if TABLE_START in current and TABLE_END in current:
        before, _, rest = current.partition(TABLE_START)
        _, _, after = rest.partition(TABLE_END)
        path.write_text(before + text + after, encoding="utf-8")
    else:
        path.write_text(
            current.rstrip("\n") + ("\n\n" if current else "") + text + "\n", encoding="utf-8"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument(
        "--only",
        help="comma-separated app names (default: every app); only their rows of the table "
        "in docs/building.md are rewritten",
    )
    parser.add_argument("--jobs", type=int, default=1, help="apps built at once (default 1)")
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/building.md")
    parser.add_argument("--json", type=Path, help="also write the outcomes as JSON here")
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL),
        help="server to use; a database is created and dropped there",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_logging()
    try:
        apps = load_apps()
    except (BenchError, ValueError) as error:
        print(f"corpus: {error}", file=sys.stderr)
        return 2
    chosen = apps
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(wanted) - {app.name for app in apps})
        if unknown:
            print(f"corpus: no app {', '.join(unknown)} under {APPS_DIR}", file=sys.stderr)
            return 2
        chosen = [app for app in apps if app.name in wanted]
    started, load = time.perf_counter(), os.getloadavg()[0]
    try:
        env, outcomes = asyncio.run(run(chosen, args.database_url, args.jobs, bool(args.only)))
    except BenchError as error:
        print(f"corpus: {one_line(str(error), 400)}", file=sys.stderr)
        return 1
    env["load_average"] = load
    wall = time.perf_counter() - started
    text = section(env, outcomes, args.jobs, wall)
    print(text)
    if not args.no_docs:
        if args.only:
            current = DOCS.read_text(encoding="utf-8") if DOCS.exists() else ""
            text = merged_section(read_section(current), env, outcomes, apps, args.jobs, wall)
        write_docs(text)
        progress(f"table written to {DOCS}" + (" (the rows of these apps)" if args.only else ""))
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=2) + "\n")
    return 0 if all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
