"""Several BuildKit daemons with cache affinity (pipeline.buildkit.pool), and a Docker
engine stopped in the middle of a build.

Unit level: the rendezvous order, failover on an unreachable daemon (never on a failed
build), the time a failed daemon is skipped, the configuration, /readyz's check of every
daemon, and a Docker engine that drops the connection mid-build (BuilderUnavailable, not
the user's BuildFailed). Real: the shared Docker engine and a private one
(tests.support.second_engine) behind one worker, and the private one stopped mid-build.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from pydantic import SecretStr

from bot.ops.health import check_buildkit
from pipeline.buildkit import (
    BuilderUnavailable,
    BuildEvent,
    BuildFailed,
    BuildLog,
    BuildRequest,
    BuildWarning,
    BuiltImage,
    StepDone,
    StepFailed,
    StepStarted,
    make_builder,
)
from pipeline.buildkit.buildctl import BuildctlBuilder
from pipeline.buildkit.engine import EngineBuilder
from pipeline.buildkit.pool import (
    BUILDER_STEP_ID,
    BuilderPool,
    builder_step_name,
    rendezvous_order,
)
from pipeline.errors import ConfigError
from pipeline.models import Deployment, Step
from pipeline.queue.queue import Queue
from pipeline.registry import RegistryClient
from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import Store
from tests.support.gitserver import GitDaemon
from tests.support.infra import (
    DOCKER_HOST,
    MIRROR,
    TARGET_PASSWORD,
    TARGET_REGISTRY_URL,
    TARGET_USER,
    docker,
    free_port,
    run_container_and_get,
)
from tests.support.second_engine import PrivateEngine, private_engine
from tests.support.waiting import wait_for_status
from tests.test_deploy_e2e import StartDeployer, add_service, build_settings, deployer

__all__ = ["build_settings", "deployer"]  # fixtures, used by name

REPO = Path(__file__).resolve().parents[1]
ENGINE_FIXTURES = REPO / "tests" / "fixtures" / "docker-engine-build"
PYTHON_BASE = f"{MIRROR}/library/python:3.11-slim-bookworm"
BUILD_TIMEOUT = 240.0
ACTIVE = (Status.CLONING, Status.BUILDING, Status.PUSHING)


def stub_request(tmp_path: Path, key: str | None = "web") -> BuildRequest:
    context = tmp_path / "context"
    context.mkdir(exist_ok=True)
    return BuildRequest(
        context_dir=context,
        dockerfile="FROM scratch\n",
        image="localhost:5001/pool/web:1",
        affinity_key=key,
    )


# ------------------------------------------------------------------ rendezvous order

DAEMONS = ["tcp://build-a:2375", "tcp://build-b:2375", "tcp://build-c:2375"]
KEYS = [f"service-{i}" for i in range(600)]


def test_the_order_is_stable_and_the_same_everywhere() -> None:
    for key in KEYS[:50]:
        order = rendezvous_order(DAEMONS, key)
        assert sorted(order) == sorted(DAEMONS)
        # Whatever order the daemons are configured in, and however often it is asked.
        assert rendezvous_order(list(reversed(DAEMONS)), key) == order
        assert BuilderPool({a: FakeBuilder(a) for a in DAEMONS}).order(key) == order
    # Fixed values: the hash is part of where every service's cache lives; changing it
    # would move them all (it must not depend on Python's per-process hash()).
    a, b, c = DAEMONS
    assert rendezvous_order(DAEMONS, "alpha") == [c, a, b]
    assert rendezvous_order(DAEMONS, "beta") == [a, b, c]
    assert rendezvous_order(DAEMONS, "auth") == [b, c, a]


def test_services_spread_over_the_daemons() -> None:
    counts = {address: 0 for address in DAEMONS}
    for key in KEYS:
        counts[rendezvous_order(DAEMONS, key)[0]] += 1
    share = len(KEYS) / len(DAEMONS)
    assert all(0.8 * share < count < 1.2 * share for count in counts.values()), counts


def test_removing_or_adding_a_daemon_moves_only_its_services() -> None:
    before = {key: rendezvous_order(DAEMONS, key) for key in KEYS}
    removed = "tcp://build-b:2375"
    remaining = [a for a in DAEMONS if a != removed]
    moved = 0
    for key, order in before.items():
        now = rendezvous_order(remaining, key)[0]
        if order[0] == removed:
            moved += 1
            assert now == order[1]  # its next choice, which the pool fails over to as well
        else:
            assert now == order[0]
    assert moved > 0

    added = "tcp://build-d:2375"
    gained = 0
    for key, order in before.items():
        now = rendezvous_order([*DAEMONS, added], key)[0]
        assert now in (order[0], added)
        gained += now == added
    assert 0.15 * len(KEYS) < gained < 0.35 * len(KEYS)


# ------------------------------------------------------------------ failover, with fakes


class FakeBuilder:
    """A daemon that is reachable (builds), unreachable, lost mid-build, or fails the
    user's build."""

    def __init__(self, address: str, outcome: str = "ok") -> None:
        self.address = address
        self.outcome = outcome
        self.calls = 0

    async def build(
        self, request: BuildRequest, on_event: Callable[[BuildEvent], None]
    ) -> BuiltImage:
        self.calls += 1
        if self.outcome == "unreachable":
            raise BuilderUnavailable(f"cannot reach {self.address}: connection refused")
        on_event(StepStarted("run", "[2/2] RUN make"))
        on_event(BuildLog("run", "[2/2] RUN make", "stdout", f"on {self.address}"))
        if self.outcome == "lost":
            raise BuilderUnavailable(f"lost {self.address} during the build")
        if self.outcome == "failed":
            on_event(StepFailed("run", "[2/2] RUN make", "exit code: 2"))
            raise BuildFailed("step [2/2] RUN make failed: exit code: 2")
        on_event(StepDone("run", "[2/2] RUN make", 0.1))
        return BuiltImage(request.image, "sha256:" + "0" * 64)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fake_pool(
    key: str = "web", skip_seconds: float = 30.0
) -> tuple[BuilderPool, list[FakeBuilder], Clock]:
    """A pool of three fake daemons, listed in the order `key` tries them."""
    clock = Clock()
    builders = {a: FakeBuilder(a) for a in DAEMONS}
    pool = BuilderPool(builders, kind="docker engine", skip_seconds=skip_seconds, timer=clock)
    return pool, [builders[a] for a in pool.order(key)], clock


async def test_a_build_goes_to_the_first_daemon_of_its_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pool's log as the worker's is configured: the task's context merged in.
    output = io.StringIO()
    logger = structlog.wrap_logger(
        structlog.PrintLogger(output),
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.JSONRenderer()],
    )
    monkeypatch.setattr("pipeline.buildkit.pool.log", logger)
    pool, (first, second, third), _ = fake_pool()
    events: list[BuildEvent] = []
    with structlog.contextvars.bound_contextvars(deployment_id=7, service="web"):
        await pool.build(stub_request(tmp_path), events.append)
    assert (first.calls, second.calls, third.calls) == (1, 0, 0)
    # The build shows where it ran: a step naming the daemon, before the daemon's own.
    name = builder_step_name("docker engine", first.address)
    assert events[:2] == [StepStarted(BUILDER_STEP_ID, name), StepDone(BUILDER_STEP_ID, name, 0.0)]
    assert f"on {first.address}" in [e.line for e in events if isinstance(e, BuildLog)]
    # And the log says which daemon built it, for which deployment.
    logged = [json.loads(line) for line in output.getvalue().splitlines()]
    assert [(e["event"], e["builder"], e["deployment_id"], e["affinity"]) for e in logged] == [
        ("built", first.address, 7, "web")
    ]


async def test_an_unreachable_daemon_hands_over_and_is_skipped_for_a_while(
    tmp_path: Path,
) -> None:
    pool, (first, second, third), clock = fake_pool(skip_seconds=30)
    first.outcome = "unreachable"
    events: list[BuildEvent] = []
    await pool.build(stub_request(tmp_path), events.append)
    assert (first.calls, second.calls, third.calls) == (1, 1, 0)
    warnings = [e.message for e in events if isinstance(e, BuildWarning)]
    assert warnings == [
        f"docker engine {first.address} did not answer (cannot reach {first.address}: "
        f"connection refused); building on {second.address} instead"
    ]
    assert StepStarted(BUILDER_STEP_ID, builder_step_name("docker engine", second.address)) in (
        events
    )
    assert pool.is_skipped(first.address)

    # The next builds do not knock on the failed daemon again while it is marked down...
    await pool.build(stub_request(tmp_path), lambda e: None)
    assert (first.calls, second.calls) == (1, 2)
    # ...and after the skip time it is the service's daemon again.
    first.outcome = "ok"
    clock.now += 31
    assert not pool.is_skipped(first.address)
    await pool.build(stub_request(tmp_path), lambda e: None)
    assert (first.calls, second.calls) == (2, 2)


async def test_a_failed_build_is_not_tried_elsewhere(tmp_path: Path) -> None:
    pool, (first, second, third), _ = fake_pool()
    first.outcome = "failed"
    with pytest.raises(BuildFailed, match="exit code: 2"):
        await pool.build(stub_request(tmp_path), lambda e: None)
    assert (first.calls, second.calls, third.calls) == (1, 0, 0)
    assert not pool.is_skipped(first.address)


async def test_a_daemon_lost_mid_build_is_retried_by_the_worker_on_the_next(
    tmp_path: Path,
) -> None:
    pool, (first, second, _third), _ = fake_pool()
    first.outcome = "lost"
    with pytest.raises(BuilderUnavailable, match="during the build"):
        await pool.build(stub_request(tmp_path), lambda e: None)
    assert (first.calls, second.calls) == (1, 0)  # no second build inside one attempt
    await pool.build(stub_request(tmp_path), lambda e: None)  # the retry
    assert (first.calls, second.calls) == (1, 1)


async def test_every_daemon_down_names_each_and_a_skipped_one_is_tried_last(
    tmp_path: Path,
) -> None:
    pool, builders, _ = fake_pool()
    for builder in builders:
        builder.outcome = "unreachable"
    with pytest.raises(BuilderUnavailable) as caught:
        await pool.build(stub_request(tmp_path), lambda e: None)
    assert str(caught.value).startswith("none of the 3 docker engines answers: ")
    assert all(b.address in str(caught.value) for b in builders)
    # All marked down: still tried (last resort) rather than refused; one is back.
    builders[2].outcome = "ok"
    await pool.build(stub_request(tmp_path), lambda e: None)
    assert [b.calls for b in builders] == [2, 2, 2]
    assert not pool.is_skipped(builders[2].address)


async def test_without_an_affinity_key_the_image_repository_decides(tmp_path: Path) -> None:
    pool, _, _ = fake_pool()
    ran_on = []
    for _ in range(3):
        events: list[BuildEvent] = []
        await pool.build(stub_request(tmp_path, key=None), events.append)
        ran_on += [e.line for e in events if isinstance(e, BuildLog)]
    assert ran_on == [f"on {pool.order('localhost:5001/pool/web')[0]}"] * 3


# ------------------------------------------------------------------ configuration


def test_one_address_is_one_builder_and_a_list_is_a_pool() -> None:
    single = make_builder(Settings(_env_file=None, docker_host=DOCKER_HOST))  # type: ignore[call-arg]
    assert isinstance(single, EngineBuilder) and single.docker_host == DOCKER_HOST
    pooled = make_builder(
        Settings(_env_file=None, docker_host=" unix:///run/a.sock, tcp://b:2375 ,")  # type: ignore[call-arg]
    )
    assert isinstance(pooled, BuilderPool) and pooled.kind == "docker engine"
    assert pooled.addresses == ["unix:///run/a.sock", "tcp://b:2375"]
    assert all(isinstance(b, EngineBuilder) for b in pooled.builders.values())


def test_every_listed_address_is_checked(tmp_path: Path) -> None:
    def settings(**values: Any) -> Settings:
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    with pytest.raises(ConfigError, match=r"DOCKER_HOST must look like .*got '/var/run/d.sock'"):
        make_builder(settings(docker_host="unix:///run/a.sock,/var/run/d.sock"))
    with pytest.raises(ConfigError, match="DOCKER_HOST must look like"):
        make_builder(settings(docker_host=" , "))
    with pytest.raises(ConfigError, match="DOCKER_HOST names tcp://b:2375 twice"):
        make_builder(settings(docker_host="tcp://b:2375,tcp://b:2375"))
    with pytest.raises(ConfigError, match=r"BUILDKIT_ADDRESS must look like .*got 'b:1234'"):
        make_builder(settings(builder="buildkitd", buildkit_address="tcp://a:1234,b:1234"))
    ca = tmp_path / "ca.pem"
    ca.write_text("ca")
    with pytest.raises(ConfigError, match="BUILDKIT_TLS_\\* only apply to a tcp://"):
        make_builder(
            settings(
                builder="buildkitd",
                buildkit_address="tcp://a:1234,unix:///run/b.sock",
                buildkit_tls_ca=ca,
            ),
            buildctl="true",
        )
    pooled = make_builder(
        settings(builder="buildkitd", buildkit_address="tcp://a:1234,tcp://b:1234"),
        buildctl="true",
    )
    assert isinstance(pooled, BuilderPool) and pooled.kind == "buildkitd"
    assert all(isinstance(b, BuildctlBuilder) for b in pooled.builders.values())


# ------------------------------------------------------------------ /readyz


async def test_readiness_checks_every_daemon(docker_engine: str, tmp_path: Path) -> None:
    missing = f"unix://{tmp_path}/gone.sock"
    base = Settings(_env_file=None)  # type: ignore[call-arg]

    one = await check_buildkit(base.model_copy(update={"docker_host": docker_engine}))
    assert (one.ok, one.detail) == (True, f"docker engine at {docker_engine}: OK")

    some = await check_buildkit(
        base.model_copy(update={"docker_host": f"{docker_engine},{missing}"})
    )
    assert some.ok, some.detail
    assert some.detail.startswith(f"1 of 2 answer; down: docker engine at {missing}: ")
    assert f"up: docker engine at {docker_engine}: OK" in some.detail

    other = f"unix://{tmp_path}/also-gone.sock"
    none = await check_buildkit(base.model_copy(update={"docker_host": f"{missing},{other}"}))
    assert not none.ok
    assert none.detail.startswith("0 of 2 answer; down: ")
    assert missing in none.detail and other in none.detail

    bad = await check_buildkit(base.model_copy(update={"docker_host": "nonsense"}))
    assert not bad.ok and "DOCKER_HOST must look like" in bad.detail


# ------------------------------------------------------------------ a buildkitd that goes away


async def test_buildkitd_lost_mid_build_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """buildctl's own words when buildkitd goes away during a solve."""
    script = tmp_path / "buildctl"
    status = {
        "vertexes": [
            {
                "digest": "sha256:" + "aa" * 32,
                "name": "[2/2] RUN sleep 600",
                "started": "2026-11-27T08:39:36.1Z",
            }
        ]
    }
    script.write_text(
        "#!/bin/sh\n"
        f"echo '{json.dumps(status)}' >&2\n"
        "echo 'error: failed to receive status: rpc error: code = Unavailable desc = "
        "error reading from server: EOF' >&2\n"
        "exit 1\n"
    )
    script.chmod(0o755)
    events: list[BuildEvent] = []
    builder = BuildctlBuilder("tcp://buildkitd.test:1234", buildctl=str(script))
    with pytest.raises(BuilderUnavailable) as caught:
        await builder.build(stub_request(tmp_path), events.append)
    assert str(caught.value).startswith(
        "lost buildkitd at BUILDKIT_ADDRESS=tcp://buildkitd.test:1234 during the build: "
    )
    assert [(type(e).__name__, e.name) for e in events if not isinstance(e, BuildLog)] == [
        ("StepStarted", "[2/2] RUN sleep 600"),
        ("StepFailed", "[2/2] RUN sleep 600"),
    ]


# ------------------------------------------------------------------ real: two engines


@pytest.fixture(scope="module")
def second_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateEngine]:
    """A private dockerd beside the shared one, for this module; removed afterwards."""
    with private_engine("pool", tmp_path_factory.mktemp("engine-logs")) as engine:
        yield engine


@pytest.fixture
async def engine_up(second_engine: PrivateEngine) -> PrivateEngine:
    """The private engine, running (a test before may have stopped it)."""
    if not second_engine.running:
        await asyncio.to_thread(second_engine.start)
    return second_engine


def test_two_engines_coexist(engine_up: PrivateEngine, docker_engine: str) -> None:
    """Nothing shared but the read-only /etc/docker/key.json (the engine ID, on 20.10 not
    configurable): own root, own containerd (socket and state), both answer."""
    ours = json.loads(engine_up.docker("info", "--format", "{{json .}}", check=True).stdout)
    theirs = json.loads(docker("info", "--format", "{{json .}}", check=True).stdout)
    assert ours["DockerRootDir"] == str(engine_up.data_root)
    assert theirs["DockerRootDir"] != ours["DockerRootDir"]
    config = (engine_up.exec_root / "containerd" / "containerd.toml").read_text()
    assert f'address = "{engine_up.exec_root}/containerd/containerd.sock"' in config
    assert f'root = "{engine_up.data_root}/containerd/daemon"' in config
    assert f'state = "{engine_up.exec_root}/containerd/daemon"' in config
    assert Path(f"{engine_up.exec_root}/containerd/containerd.sock").is_socket()


def app_files(name: str, marker: str, extra: str = "") -> dict[str, str | bytes]:
    """A repository whose Dockerfile has a RUN step unique to this run (so no earlier cache
    can serve it) and whose image answers HTTP with its name."""
    dockerfile = (
        f"FROM {PYTHON_BASE}\n"
        f'RUN echo "{marker}" > /built-by.txt\n'
        f"{extra}"
        "WORKDIR /srv\n"
        "COPY index.html ./\n"
        'CMD ["sh", "-c", "exec python3 -m http.server --bind 127.0.0.1 ${PORT:-8080}"]\n'
    )
    return {"Dockerfile": dockerfile, "index.html": f"<h1>{name}</h1>\n"}


def build_cache(engine_docker: Callable[..., Any], marker: str) -> list[int]:
    """The usage counts of the engine's build-cache records made by the RUN step that
    wrote `marker`: what the daemon itself knows about that step."""
    result = engine_docker("system", "df", "-v", "--format", "{{json .BuildCache}}", check=True)
    records = json.loads(result.stdout) or []
    return [int(r["UsageCount"]) for r in records if marker in r.get("Description", "")]


def images(engine_docker: Callable[..., Any]) -> set[str]:
    listed = engine_docker("images", "--format", "{{.Repository}}:{{.Tag}}", check=True)
    return set(listed.stdout.split())


async def build_steps(store: Store, deployment: Deployment) -> list[Step]:
    return [s for s in await store.list_steps(deployment.id) if s.kind == "build"]


def builder_of(steps: list[Step]) -> list[str]:
    return [
        s.name.removeprefix("builder: docker engine ")
        for s in steps
        if s.name.startswith("builder: ")
    ]


async def succeeded(store: Store, made: Deployment) -> Deployment:
    done = await wait_for_status(
        store, made.id, Status.SUCCEEDED, Status.FAILED, timeout=BUILD_TIMEOUT
    )
    if done.status != Status.SUCCEEDED:
        lines = (await store.read_logs(done.id, limit=10000)).items
        raise AssertionError(f"{done.error}\n" + "\n".join(line.line for line in lines[-40:]))
    return done


@pytest.mark.slow
async def test_each_service_builds_on_its_daemon_and_moves_when_that_daemon_stops(
    engine_up: PrivateEngine,
    git_daemon: GitDaemon,
    store: Store,
    queue: Queue,
    deployer: StartDeployer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shared, private = DOCKER_HOST, engine_up.host
    daemons = [shared, private]
    on_engine = {shared: docker, private: engine_up.docker}
    run = uuid.uuid4().hex[:8]
    # One service whose affinity is the shared engine, one whose is the private one.
    names: dict[str, str] = {}
    for i in range(100):
        name = f"pool-{run}-{i}"
        names.setdefault(rendezvous_order(daemons, name)[0], name)
        if len(names) == 2:
            break
    services = {}
    for daemon, name in names.items():
        marker = f"{name} {uuid.uuid4()}"
        commit = git_daemon.create_repo(name, app_files(name, marker))
        services[daemon] = (
            name,
            marker,
            commit,
            await add_service(store, name, git_daemon.url_for(name)),
        )
    # A failed daemon stays skipped for the whole test, however slow the machine.
    monkeypatch.setattr("pipeline.buildkit.pool.SKIP_SECONDS", 3600.0)
    _worker, pipeline = await deployer(docker_host=f"{shared},{private}")
    pool = pipeline.builder
    assert isinstance(pool, BuilderPool)

    # First builds: each on its own daemon, which now holds the image and the step's cache.
    first = {
        daemon: await queue.enqueue(service_id, commit_sha=commit, ref="main")
        for daemon, (_n, _m, commit, service_id) in services.items()
    }
    first = {daemon: await succeeded(store, made) for daemon, made in first.items()}
    for daemon, (_name, marker, _commit, _id) in services.items():
        other = next(d for d in daemons if d != daemon)
        done = first[daemon]
        assert builder_of(await build_steps(store, done)) == [daemon]
        assert done.image in images(on_engine[daemon])
        assert done.image not in images(on_engine[other])
        assert build_cache(on_engine[daemon], marker) == [1]
        assert build_cache(on_engine[other], marker) == []
        lines = [line.line for line in (await store.read_logs(done.id, limit=10000)).items]
        assert any(line.endswith(f"builder: docker engine {daemon}") for line in lines)

    # Rebuilds: the same daemon, and its cache serves the step (the daemon counts the use).
    again = {
        daemon: await succeeded(
            store, await queue.enqueue(service_id, commit_sha=commit, ref="main")
        )
        for daemon, (_n, _m, commit, service_id) in services.items()
    }
    for daemon, (_name, marker, _commit, _id) in services.items():
        steps = await build_steps(store, again[daemon])
        assert builder_of(steps) == [daemon]
        run_steps = [s for s in steps if "RUN echo" in s.name]
        assert run_steps and all(s.status == "cached" for s in run_steps), run_steps
        assert build_cache(on_engine[daemon], marker) == [2]
        assert again[daemon].digest == first[daemon].digest

    # The private engine stops: its service builds on the shared one, saying so.
    await asyncio.to_thread(engine_up.stop)
    name, marker, commit, service_id = services[private]
    moved = await succeeded(store, await queue.enqueue(service_id, commit_sha=commit, ref="main"))
    assert builder_of(await build_steps(store, moved)) == [shared]
    lines = [line.line for line in (await store.read_logs(moved.id, limit=10000)).items]
    assert any(
        line.startswith(f"warning: docker engine {private} did not answer (cannot reach")
        and line.endswith(f"building on {shared} instead")
        for line in lines
    ), lines
    assert moved.image in images(docker)
    assert build_cache(docker, marker) == [1]  # built there now, from scratch
    assert pool.is_skipped(private)
    # While it is marked down, the next build goes straight to the shared engine.
    changed = git_daemon.commit(name, {"index.html": f"<h1>{name} again</h1>\n"}, "again")
    direct = await succeeded(store, await queue.enqueue(service_id, commit_sha=changed, ref="main"))
    assert builder_of(await build_steps(store, direct)) == [shared]
    lines = [line.line for line in (await store.read_logs(direct.id, limit=10000)).items]
    assert not any(line.startswith("warning: docker engine") for line in lines)


# ------------------------------------------------------------------ real: engine stopped


class Gate:
    """An HTTP gate a RUN step waits on (builds use the host's network): closed, the step
    loops; `reached` is set by the first knock, so the test knows the step is running."""

    def __init__(self) -> None:
        self.open = False
        self.knocks = 0
        self.reached = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.knocks += 1
        self.reached.set()
        return web.Response(status=200 if self.open else 503, text="gate\n")


@pytest.fixture
async def gate() -> AsyncIterator[tuple[Gate, int]]:
    state = Gate()
    app = web.Application()
    app.router.add_get("/gate", state.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield state, port
    await runner.cleanup()


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
async def test_stopping_the_engine_mid_build_requeues_and_the_retry_succeeds(
    how: signal.Signals,
    engine_up: PrivateEngine,
    gate: tuple[Gate, int],
    git_daemon: GitDaemon,
    store: Store,
    queue: Queue,
    deployer: StartDeployer,
    tmp_path: Path,
) -> None:
    state, port = gate
    name = f"stopped-{uuid.uuid4().hex[:8]}"
    waiting = (
        'RUN echo waiting for the gate && until python3 -c "import urllib.request as u; '
        f"u.urlopen('http://127.0.0.1:{port}/gate', timeout=5)\" 2>/dev/null; "
        "do sleep 0.2; done\n"
    )
    commit = git_daemon.create_repo(name, app_files(name, f"{name} {uuid.uuid4()}", waiting))
    service_id = await add_service(store, name, git_daemon.url_for(name))
    await deployer(
        docker_host=engine_up.host, retry_backoff_seconds=2.0, retry_backoff_max_seconds=4.0
    )
    made = await queue.enqueue(service_id, commit_sha=commit, ref="main", max_attempts=8)

    # The build is in its long RUN step: stop the engine under it.
    await asyncio.wait_for(state.reached.wait(), BUILD_TIMEOUT)
    assert (await store.get_deployment(made.id)).status == Status.BUILDING
    await asyncio.to_thread(engine_up.stop, how)

    # An infrastructure fault: back to the queue with a backoff, not failed.
    handed = await wait_for_status(
        store, made.id, Status.QUEUED, Status.FAILED, Status.SUCCEEDED, timeout=60
    )
    assert handed.status == Status.QUEUED, handed.error
    assert handed.error_kind == "transient" and handed.attempts == 1
    assert handed.error == (
        f"lost the Docker engine at DOCKER_HOST={engine_up.host} during the build: the "
        "connection broke off (the engine stopped or restarted)"
    )
    assert handed.run_at > handed.updated_at  # the backoff
    active = await store.pool.fetchval(
        "SELECT count(*) FROM deployments WHERE status = ANY($1::text[])", [str(s) for s in ACTIVE]
    )
    assert active == 0
    steps = await store.list_steps(made.id)
    assert [s for s in steps if s.status == "running"] == []
    assert any(s.name == "build" and s.status == "failed" for s in steps)
    lines = [line.line for line in (await store.read_logs(made.id, limit=10000)).items]
    assert any("during the build" in line and "retrying in" in line for line in lines), lines

    # The engine comes back; the retry builds (the step passes now) and pushes.
    state.open = True
    await asyncio.to_thread(engine_up.start)
    done = await succeeded(store, made)
    assert done.attempts >= 2
    steps = await store.list_steps(made.id)
    assert [s for s in steps if s.status == "running"] == []
    async with RegistryClient(
        TARGET_REGISTRY_URL, TARGET_USER, SecretStr(TARGET_PASSWORD)
    ) as registry:
        repository, _, tag = (done.image or "").removeprefix("127.0.0.1:5001/").partition(":")
        assert await registry.manifest_digest(repository, tag) == done.digest
    # It runs and answers: pulled from the registry onto the shared engine (which did not
    # build it), with a login kept in a configuration of this test's own.
    assert done.image is not None
    await asyncio.to_thread(pull_from_target, done.image, tmp_path / "docker-config")
    try:
        status, body = await asyncio.to_thread(run_container_and_get, done.image, timeout=60)
    finally:
        docker("rmi", done.image)
    assert status == 200 and name in body


def pull_from_target(image: str, config: Path) -> None:
    config.mkdir(mode=0o700)
    env = {"DOCKER_CONFIG": str(config)}
    host = image.split("/", 1)[0]
    docker(
        "login",
        "-u",
        TARGET_USER,
        "--password-stdin",
        host,
        input=TARGET_PASSWORD,
        env=env,
        check=True,
    )
    docker("pull", image, env=env, check=True)
