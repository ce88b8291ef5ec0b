"""What one build cannot take from the bot or from another build: secret values stay out
of the pushed image, argv and buildctl's environment; cache mounts are the service's own;
builds get the engine's default network unless BUILD_NETWORK=host.

The engine tests build on the real Docker engine and push to the real registry (the
fixtures of test_buildkit: they skip, or fail under CI=true, without `scripts/infra up`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from pipeline.buildkit import BuildFailed, BuildRequest, RegistryCredentials
from pipeline.buildkit.engine import EngineBuilder
from pipeline.buildkit.session import GET_SECRET, HEALTH_CHECK, answer
from pipeline.deploy import plan_service
from pipeline.models import Service
from pipeline.plan import BaseImages
from pipeline.plan.context import Layout, Step
from pipeline.plan.dockerfile import render
from pipeline.queue.queue import Queue
from pipeline.registry.reference import parse_reference
from pipeline.states import Status
from pipeline.store import Store
from tests.support.github_hooks import private_key_pem
from tests.support.gitserver import GitDaemon
from tests.support.waiting import wait_for_status
from tests.test_buildkit import (
    DOCKER_HOST,
    TARGET,
    TARGET_PASSWORD,
    TARGET_USER,
    base_image,
    buildctl_builder,
    engine,
    exists,
    fake_buildctl,
    read_json,
    stub_request,
    target_registry,
    unique_image,
)
from tests.test_deploy_e2e import StartDeployer, add_service, build_settings, deployer

__all__ = [  # fixtures
    "base_image",
    "build_settings",
    "deployer",
    "engine",
    "fake_buildctl",
    "target_registry",
]

EXAMPLES = Path(__file__).resolve().parent / "examples"
AUTH = aiohttp.BasicAuth(TARGET_USER, TARGET_PASSWORD)
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.oci.image.manifest.v1+json"
)


def service(service_id: int, name: str, build: dict[str, Any] | None = None) -> Service:
    now = datetime.now(UTC)
    config = {"build": build} if build else {}
    return Service(service_id, name, "git", f"/srv/{name}", "main", ".", config, now, now)


def secret_dockerfile(base: str, names: list[str], command: str) -> str:
    """A generated Dockerfile (the planner's renderer) whose install step is `command`."""
    layout = Layout(image=base, install=Step(command), start="true")
    return render(layout, header="test", secret_names=names)


async def registry_get(session: aiohttp.ClientSession, path: str, accept: str = "") -> bytes:
    headers = {"Accept": accept} if accept else {}
    async with session.get(f"http://{TARGET}/v2/{path}", headers=headers) as response:
        assert response.status == 200, (path, response.status)
        return await response.read()


async def pushed_blobs(image: str) -> tuple[dict[str, Any], list[bytes]]:
    """The pushed image's config (parsed) and every layer, uncompressed, from the registry."""
    reference = parse_reference(image)
    async with aiohttp.ClientSession(auth=AUTH) as session:
        raw = await registry_get(
            session, f"{reference.repository}/manifests/{reference.tag}", MANIFEST_TYPES
        )
        manifest = json.loads(raw)
        config_raw = await registry_get(
            session, f"{reference.repository}/blobs/{manifest['config']['digest']}"
        )
        layers = []
        for layer in manifest["layers"]:
            blob = await registry_get(session, f"{reference.repository}/blobs/{layer['digest']}")
            layers.append(blob)
            layers.append(gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob)
    return json.loads(config_raw) | {"_raw": config_raw.decode()}, [raw, *layers]


# ------------------------------------------------------------------ secrets: the real engine


async def test_a_secret_build_value_reaches_the_step_but_not_the_pushed_image(
    engine: EngineBuilder,
    base_image: str,
    target_registry: RegistryCredentials,
    tmp_path: Path,
) -> None:
    secret = f"https://user:tok-{uuid.uuid4().hex}@pypi.internal/simple"
    digest = hashlib.sha256(secret.encode()).hexdigest()
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "app.txt").write_text("app\n")
    dockerfile = secret_dockerfile(
        base_image,
        ["PIP_INDEX_URL"],
        # BuildKit leaves secrets out of the cache key: a fresh command, so the step runs
        f'printf %s "$PIP_INDEX_URL" | sha256sum > /index.sha256 && echo "using $PIP_INDEX_URL"'
        f" # {uuid.uuid4().hex}",
    )
    assert "ARG" not in dockerfile
    request = BuildRequest(
        context_dir=context,
        dockerfile=dockerfile,
        image=unique_image("secret"),
        credentials=target_registry,
        secrets={"PIP_INDEX_URL": SecretStr(secret)},
    )
    events: list[Any] = []
    built = await engine.build(request, events.append)

    # The step had the value: the hash it wrote is in a pushed layer.
    config, blobs = await pushed_blobs(built.reference)
    assert any(f"{digest}  -".encode() in blob for blob in blobs)
    # ... and nothing pushed holds the value: not the manifest, config, history or a layer.
    history = json.dumps(config.get("history", []))
    assert "export PIP_INDEX_URL" in history  # the step is there, by name
    assert secret not in config["_raw"] and secret not in history
    for blob in blobs:
        assert secret.encode() not in blob
    # The step's output echoed it: what the build reports shows *** instead.
    shown = json.dumps([getattr(event, "line", "") for event in events])
    assert "using ***" in shown and secret not in shown


async def test_a_missing_secret_fails_the_step_naming_it(
    engine: EngineBuilder, base_image: str, tmp_path: Path
) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    request = BuildRequest(
        context_dir=context,
        dockerfile=secret_dockerfile(base_image, ["TOKEN"], f"echo {uuid.uuid4().hex}"),
        image=unique_image("secret-missing"),
        secrets={"OTHER": SecretStr("other-value-123")},  # a session, but not this secret
    )
    with pytest.raises(BuildFailed, match="TOKEN"):
        await engine.build(request, lambda event: None)


def test_the_session_answers_only_its_secrets_and_the_health_check() -> None:
    from pipeline.buildkit.session import _messages

    request = _messages()["GetSecretRequest"](ID="TOKEN").SerializeToString()
    framed = b"\0" + len(request).to_bytes(4, "big") + request
    status, body = answer(GET_SECRET, framed, {"TOKEN": b"v4lue"})
    assert status == 0 and body is not None
    assert _messages()["GetSecretResponse"].FromString(body).data == b"v4lue"
    assert answer(GET_SECRET, framed, {"OTHER": b"x"}) == (5, None)  # NOT_FOUND
    assert answer(GET_SECRET, b"\1" + framed[1:], {"TOKEN": b"v"}) == (13, None)
    assert answer("/moby.filesync.v1.Auth/Credentials", b"", {"TOKEN": b"v"}) == (12, None)
    assert answer(HEALTH_CHECK, b"", {})[0] == 0


# ------------------------------------------------------------------ buildctl (the stub)


async def test_buildctl_gets_secrets_as_files_and_a_minimal_environment(
    tmp_path: Path, fake_buildctl: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Real-looking values: the settings are read (and checked) from this environment.
    monkeypatch.setenv("REGISTRY_USERNAME", "robot")
    monkeypatch.setenv("GITHUB_APP_ID", "3")
    bot_secrets = {
        "REGISTRY_PASSWORD": "registry-pw-0001",
        "GITHUB_WEBHOOK_SECRET": "hook-secret-0002",
        "GITHUB_PRIVATE_KEY": private_key_pem(),
        "DATABASE_URL": "postgresql://u:db-pw-0004@h/d",
        "GIT_TOKEN": "git-token-0005",
    }
    for name, value in bot_secrets.items():
        monkeypatch.setenv(name, value)
    record = fake_buildctl("success-fresh")
    value = f"npm-token-{uuid.uuid4().hex}"
    request = stub_request(
        tmp_path, secrets={"NPM_TOKEN": SecretStr(value)}, build_args={"GIT_SHA": "abc"}
    )
    builder = buildctl_builder()
    builder.network = "host"
    await builder.build(request, lambda event: None)
    seen = read_json(record)

    everything = json.dumps([seen["argv"], seen["environ"]])
    assert value not in everything
    for leaked in (*bot_secrets.values(), "s3cret-pw"):  # s3cret-pw: the registry password
        assert leaked not in everything
    assert not set(bot_secrets) & set(seen["environ"])
    secret_option = next(arg for arg in seen["argv"] if arg.startswith("id=NPM_TOKEN,"))
    assert seen["argv"][seen["argv"].index(secret_option) - 1] == "--secret"
    assert seen["secrets"]["NPM_TOKEN"]["content"] == value
    assert seen["secrets"]["NPM_TOKEN"]["mode"] == "0o600"
    assert not exists(seen["secrets"]["NPM_TOKEN"]["path"])  # removed afterwards
    assert "build-arg:GIT_SHA=abc" in seen["argv"]  # a plain build arg stays one
    argv = seen["argv"]
    assert argv[argv.index("force-network-mode=host") - 1] == "--opt"
    assert argv[argv.index("network.host") - 1] == "--allow"


async def test_buildctl_uses_its_sandbox_network_by_default(
    tmp_path: Path, fake_buildctl: Callable[[str], Path]
) -> None:
    record = fake_buildctl("success-fresh")
    await buildctl_builder().build(stub_request(tmp_path), lambda event: None)
    argv = read_json(record)["argv"]
    assert not any("network" in arg for arg in argv)
    builder = buildctl_builder()
    builder.network = "none"
    await builder.build(stub_request(tmp_path), lambda event: None)
    assert "force-network-mode=none" in read_json(record)["argv"]


# ------------------------------------------------------------------ cache mounts


def test_two_services_get_their_own_cache_ids() -> None:
    images = BaseImages(mirror="localhost:5000")
    checkout = EXAMPLES / "python-pip-flask"
    first = plan_service(checkout, service(1, "web"), images)
    second = plan_service(checkout, service(2, "api"), images)
    assert first.plan is not None and second.plan is not None
    first_line = next(line for line in first.plan.dockerfile.splitlines() if "pip install" in line)
    second_line = next(
        line for line in second.plan.dockerfile.splitlines() if "pip install" in line
    )
    assert "--mount=type=cache,id=service-1/root/.cache/pip,target=/root/.cache/pip " in first_line
    assert "--mount=type=cache,id=service-2/root/.cache/pip,target=/root/.cache/pip " in second_line


def cache_dockerfile(base: str, namespace: str, command: str) -> str:
    layout = Layout(image=base, install=Step(command, caches=("/cache",)), start="true")
    return render(layout, header="cache test", cache_namespace=namespace)


async def test_a_file_in_one_services_cache_is_not_in_anothers(
    engine: EngineBuilder, base_image: str, target_registry: RegistryCredentials, tmp_path: Path
) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    run = uuid.uuid4().hex[:8]
    marker = f"planted-{run}"

    async def build(namespace: str, command: str) -> list[str]:
        lines: list[str] = []
        request = BuildRequest(
            context_dir=context,
            dockerfile=cache_dockerfile(base_image, namespace, command),
            image=unique_image("cache"),
            credentials=target_registry,
        )
        built = engine.build(request, lambda e: lines.append(getattr(e, "line", "")))
        await built
        return lines

    # service A plants a file in its cache; service B looks at "the same" cache directory
    await build(f"a-{run}", f"echo {marker} > /cache/marker; echo planted {uuid.uuid4().hex}")
    seen_by_b = await build(f"b-{run}", f"cat /cache/marker || echo absent-{uuid.uuid4().hex}")
    assert not any(marker in line for line in seen_by_b)
    assert any(line.startswith("absent-") for line in seen_by_b)
    # ... while A's next build finds it (the cache is kept, only not shared)
    seen_by_a = await build(f"a-{run}", f"cat /cache/marker; echo again {uuid.uuid4().hex}")
    assert marker in seen_by_a


# ------------------------------------------------------------------ the build network


async def test_builds_cannot_reach_the_hosts_loopback_unless_build_network_is_host(
    base_image: str, target_registry: RegistryCredentials, tmp_path: Path
) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    server.setblocking(False)
    context = tmp_path / "ctx"
    context.mkdir()

    def request() -> BuildRequest:
        probe = f"echo {uuid.uuid4().hex} > /dev/tcp/127.0.0.1/{port}"
        return BuildRequest(
            context_dir=context,
            dockerfile=f"FROM {base_image}\nRUN bash -c '{probe}'\n",
            image=unique_image("network"),
            credentials=target_registry,
        )

    async def connections() -> int:
        count = 0
        while True:
            try:
                client, _ = server.accept()
            except BlockingIOError:
                return count
            client.close()
            count += 1

    try:
        # default: the engine's own network (this engine has no bridge: the step fails)
        with pytest.raises(BuildFailed):
            await EngineBuilder(DOCKER_HOST).build(request(), lambda event: None)
        assert await connections() == 0
        await EngineBuilder(DOCKER_HOST, network="host").build(request(), lambda event: None)
        assert await connections() == 1
    finally:
        server.close()


# ------------------------------------------------------------------ the whole pipeline


async def test_a_deployment_passes_the_services_build_env_as_secrets(
    git_daemon: GitDaemon, store: Store, queue: Queue, deployer: StartDeployer
) -> None:
    secret = f"tok-{uuid.uuid4().hex}"
    name = f"secret-{uuid.uuid4().hex[:8]}"
    dockerfile = (
        "FROM localhost:5000/library/debian:bookworm\n"
        f"RUN --mount=type=secret,id=TOKEN echo {uuid.uuid4().hex} "
        '&& echo "token-$(cat /run/secrets/TOKEN)" '
        "&& sha256sum /run/secrets/TOKEN > /token.sha256\n"
    )
    commit = git_daemon.create_repo(name, {"Dockerfile": dockerfile})
    service_id = await add_service(
        store, name, git_daemon.url_for(name), build={"env": {"TOKEN": secret}}
    )
    await deployer()
    deployment = await queue.enqueue(service_id, ref="main", commit_sha=commit)
    done = await wait_for_status(store, deployment.id, Status.SUCCEEDED, Status.FAILED, timeout=120)
    logs = "\n".join(line.line for line in (await store.read_logs(done.id, limit=10000)).items)
    assert done.status == Status.SUCCEEDED, f"{done.error}\n{logs[-3000:]}"
    assert "token-***" in logs and secret not in logs
    assert done.image is not None
    _config, blobs = await pushed_blobs(done.image)
    assert hashlib.sha256(secret.encode()).hexdigest().encode() in b"".join(blobs)
    assert all(secret.encode() not in blob for blob in blobs)
