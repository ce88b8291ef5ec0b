"""The builder: BuildKit progress decoding, the tracker, .dockerignore, the buildctl
transport against a stub replaying recorded output, and real builds on a Docker engine.

Real-engine tests need `scripts/infra up` (dockerd on unix:///run/cd-docker.sock, the
mirror on 127.0.0.1:5000, the target registry on 127.0.0.1:5001). Without it they skip,
except under CI=true, where they fail.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import stat
import sys
import tarfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from pipeline.buildkit import (
    BuilderUnavailable,
    BuildEvent,
    BuildFailed,
    BuildLog,
    BuildRequest,
    BuildTimedOut,
    BuildWarning,
    ProgressTracker,
    RegistryCredentials,
    StepCached,
    StepDone,
    StepFailed,
    StepStarted,
    cache_ref_for,
    make_builder,
)
from pipeline.buildkit.buildctl import BuildctlBuilder
from pipeline.buildkit.context import (
    DOCKERFILE_NAME,
    ContextError,
    DockerignoreError,
    PatternMatcher,
    parse_dockerignore,
    stream_tar,
    tar_chunks,
)
from pipeline.buildkit.dockerfile import base_images
from pipeline.buildkit.engine import EngineBuilder
from pipeline.buildkit.rawjson import decode_rawjson_line
from pipeline.buildkit.status import SolveStatus, Vertex, VertexLog, VertexWarning
from pipeline.buildkit.trace import TRACE_ID, TraceDecodeError, decode_trace
from pipeline.errors import ConfigError, DeploymentFailure, TransientError
from pipeline.registry.errors import RegistryAuthError, RegistryUnavailable
from pipeline.registry.reference import parse_reference
from pipeline.settings import Settings
from tests.support.waiting import PATIENCE

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"  # recorded BuildKit output (tests/fixtures/README.md)
ENGINE_FIXTURES = FIXTURES / "docker-engine-build"
RAWJSON_FIXTURES = FIXTURES / "buildctl-rawjson"
FAKE_BUILDCTL = REPO / "tests" / "support" / "fake_buildctl.py"

DOCKER_HOST = os.environ.get("CD_TEST_DOCKER_HOST", "unix:///run/cd-docker.sock")
BUILD_NETWORK = "host"  # the test engine has no bridge network (dockerd --bridge=none)
MIRROR = "localhost:5000"
BASE_IMAGE = f"{MIRROR}/library/debian:bookworm"
TARGET = "localhost:5001"
TARGET_USER = "ci"
TARGET_PASSWORD = "ci-registry-secret-5001"

RUN_ECHO = '[2/4] RUN echo "step one output" && echo "to stderr" 1>&2'
RUN_LOOP = '[3/4] RUN for i in 1 2 3; do echo "line $i"; done'
COPY_APP = "[4/4] COPY app.txt /app.txt"


# ------------------------------------------------------------------ fixture replay


def engine_statuses(name: str) -> Iterator[SolveStatus]:
    for line in (ENGINE_FIXTURES / name).read_text().splitlines():
        item = json.loads(line)
        if item.get("id") == TRACE_ID:
            yield decode_trace(item["aux"])


def rawjson_statuses(name: str) -> Iterator[SolveStatus]:
    for line in (RAWJSON_FIXTURES / name).read_text().splitlines():
        status = decode_rawjson_line(line)
        if status is not None:
            yield status


def track(statuses: Iterator[SolveStatus]) -> tuple[ProgressTracker, list[BuildEvent]]:
    tracker = ProgressTracker()
    events: list[BuildEvent] = []
    for status in statuses:
        events += tracker.feed(status)
    events += tracker.flush()
    return tracker, events


def names(events: list[BuildEvent], kind: type) -> list[str]:
    return [str(getattr(e, "name", "")) for e in events if isinstance(e, kind)]


def lines(events: list[BuildEvent], step: str | None = None) -> list[tuple[str, str]]:
    return [
        (e.stream, e.line)
        for e in events
        if isinstance(e, BuildLog) and (step is None or e.name == step)
    ]


def assert_each_transition_once(events: list[BuildEvent]) -> None:
    started: list[str] = []
    finished: list[str] = []
    failed: list[str] = []
    for event in events:
        if isinstance(event, StepStarted):
            started.append(event.step_id)
        elif isinstance(event, StepDone | StepCached):
            finished.append(event.step_id)
        elif isinstance(event, StepFailed):
            failed.append(event.step_id)
    assert len(started) == len(set(started)), "a step started twice"
    assert len(finished) == len(set(finished)), "a step finished twice"
    assert len(failed) == len(set(failed)), "a step failed twice"


# ------------------------------------------------------------------ decoders


def test_engine_trace_success_fixture() -> None:
    _, events = track(engine_statuses("success.jsonl"))
    assert_each_transition_once(events)
    assert names(events, StepStarted)[:2] == [
        "[internal] load remote build context",
        "copy /context /",
    ]
    assert names(events, StepCached) == ["[1/4] FROM localhost:5000/library/debian:bookworm"]
    done = names(events, StepDone)
    for step in (RUN_ECHO, RUN_LOOP, COPY_APP, "exporting to image"):
        assert step in done
    assert names(events, StepFailed) == []
    assert sorted(lines(events, RUN_ECHO)) == [
        ("stderr", "to stderr"),
        ("stdout", "step one output"),
    ]
    assert lines(events, RUN_LOOP) == [("stdout", f"line {i}") for i in (1, 2, 3)]
    seconds = {e.name: e.seconds for e in events if isinstance(e, StepDone)}
    assert 0.0 < seconds[RUN_ECHO] < 1.0


def test_engine_trace_decodes_timestamps_and_ids() -> None:
    vertexes = [v for s in engine_statuses("success.jsonl") for v in s.vertexes]
    first_started = next(v for v in vertexes if v.started is not None)
    assert first_started.started is not None
    assert first_started.started.tzinfo is not None
    assert first_started.started.year == 2026
    assert all(v.digest.startswith("sha256:") for v in vertexes)
    run = next(v for v in vertexes if v.name == RUN_ECHO)
    assert run.inputs and run.inputs[0].startswith("sha256:")
    statuses = [st for s in engine_statuses("success.jsonl") for st in s.statuses]
    assert any(st.id.startswith("writing image sha256:") for st in statuses)


def test_engine_trace_failure_fixture() -> None:
    tracker, events = track(engine_statuses("failure-run-exit3.jsonl"))
    assert_each_transition_once(events)
    step = '[2/2] RUN echo "about to fail" && exit 3'
    assert names(events, StepFailed) == [step]
    failed = tracker.failed_step()
    assert failed is not None
    assert failed.name == step
    assert failed.error.endswith("exit code: 3")
    assert failed.log_tail == ("about to fail",)
    # logs come before the failure of their step
    kinds = [type(e) for e in events if getattr(e, "name", None) == step]
    assert kinds == [StepStarted, BuildLog, StepFailed]


def test_rawjson_success_fresh_fixture() -> None:
    _, events = track(rawjson_statuses("success-fresh.jsonl"))
    assert_each_transition_once(events)
    done = names(events, StepDone)
    for step in ("[internal] load build definition from Dockerfile", RUN_ECHO, RUN_LOOP, COPY_APP):
        assert step in done
    assert any(
        n.startswith("[1/4] FROM localhost:5000/library/debian:bookworm@sha256:")
        for n in names(events, StepStarted)
    )
    assert lines(events, RUN_ECHO) == [("stdout", "step one output"), ("stderr", "to stderr")]
    assert lines(events, RUN_LOOP) == [
        ("stdout", "line 1"),
        ("stdout", "line 2"),
        ("stdout", "line 3"),
    ]


def test_rawjson_success_cached_fixture() -> None:
    _, events = track(rawjson_statuses("success-cached.jsonl"))
    assert_each_transition_once(events)
    assert names(events, StepCached) == [RUN_ECHO, RUN_LOOP, COPY_APP]
    assert RUN_ECHO not in names(events, StepStarted)  # a cached step is only "cached"
    assert lines(events) == []


def test_rawjson_failure_run_exit3_fixture() -> None:
    tracker, _ = track(rawjson_statuses("failure-run-exit3.jsonl"))
    failed = tracker.failed_step()
    assert failed is not None
    assert failed.name == '[2/2] RUN echo "about to fail" && exit 3'
    assert failed.error == (
        'process "/bin/sh -c echo \\"about to fail\\" && exit 3" did not complete '
        "successfully: exit code: 3"
    )
    assert failed.log_tail == ("about to fail",)
    text = (RAWJSON_FIXTURES / "failure-run-exit3.jsonl").read_text().splitlines()
    trailing = [line for line in text if decode_rawjson_line(line) is None]
    assert trailing[0] == "Dockerfile:2"
    assert trailing[-1].startswith("error: failed to solve: process")


def test_rawjson_failure_missing_base_fixture() -> None:
    tracker, events = track(rawjson_statuses("failure-missing-base.jsonl"))
    failed = tracker.failed_step()
    assert failed is not None
    assert failed.name == "[internal] load metadata for localhost:5000/nope/missing:1"
    assert failed.error == "localhost:5000/nope/missing:1: not found"
    assert names(events, StepFailed) == [failed.name]


def test_decoders_refuse_garbage() -> None:
    with pytest.raises(TraceDecodeError):
        decode_trace("not base64!!")
    with pytest.raises(TraceDecodeError):
        decode_trace(base64.b64encode(b"\xff\xff\xff\xff").decode())
    assert decode_rawjson_line("error: failed to solve: nope") is None
    assert decode_rawjson_line("") is None
    status = decode_rawjson_line(
        json.dumps(
            {
                "warnings": [
                    {
                        "vertex": "v",
                        "level": 1,
                        "short": base64.b64encode(b"FROM uses latest").decode(),
                    }
                ]
            }
        )
    )
    assert status is not None
    assert status.warnings[0].short == b"FROM uses latest"


# ------------------------------------------------------------------ tracker

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def vertex(digest: str = "sha256:a", name: str = "[1/2] RUN x", **state: Any) -> SolveStatus:
    return SolveStatus(vertexes=(Vertex(digest=digest, name=name, **state),))


def log(data: bytes, digest: str = "sha256:a", stream: int = 1) -> SolveStatus:
    return SolveStatus(logs=(VertexLog(vertex=digest, stream=stream, data=data),))


def test_tracker_reports_each_transition_once() -> None:
    tracker = ProgressTracker()
    events: list[BuildEvent] = []
    events += tracker.feed(vertex())
    events += tracker.feed(vertex(started=T0))
    events += tracker.feed(vertex(started=T0))
    events += tracker.feed(vertex(started=T0, completed=T0 + timedelta(seconds=1.5)))
    events += tracker.feed(vertex(started=T0, completed=T0 + timedelta(seconds=1.5)))
    events += tracker.feed(vertex(started=T0 + timedelta(seconds=2)))  # restarted
    events += tracker.feed(vertex(started=T0, completed=T0, cached=True))  # cached afterwards
    assert events == [
        StepStarted("sha256:a", "[1/2] RUN x"),
        StepDone("sha256:a", "[1/2] RUN x", 1.5),
    ]


def test_tracker_cached_failed_and_late_failure() -> None:
    tracker = ProgressTracker()
    assert tracker.feed(vertex("sha256:c", "c", started=T0, completed=T0, cached=True)) == [
        StepCached("sha256:c", "c")
    ]
    assert tracker.feed(vertex("sha256:c", "c", cached=True)) == []
    events = tracker.feed(vertex("sha256:d", "d", started=T0, completed=T0))
    assert events == [StepStarted("sha256:d", "d"), StepDone("sha256:d", "d", 0.0)]
    # a failure after "done" is still reported, once
    failed = vertex("sha256:d", "d", started=T0, completed=T0, error="boom")
    assert tracker.feed(failed) == [StepFailed("sha256:d", "d", "boom")]
    assert tracker.feed(failed) == []


def test_tracker_blames_the_real_failure_not_the_cancelled_siblings() -> None:
    tracker = ProgressTracker()
    tracker.feed(vertex("sha256:1", "[a 2/2] RUN sleep", error="context canceled"))
    tracker.feed(vertex("sha256:2", "[b 2/2] RUN make", error="exit code: 2"))
    failed = tracker.failed_step()
    assert failed is not None and failed.name == "[b 2/2] RUN make"


def test_tracker_splits_lines_and_buffers_partial_ones() -> None:
    tracker = ProgressTracker()
    tracker.feed(vertex(started=T0))
    assert tracker.feed(log(b"hel")) == []
    assert tracker.feed(log(b"oops\n", stream=2)) == [
        BuildLog("sha256:a", "[1/2] RUN x", "stderr", "oops")
    ]
    events = tracker.feed(log(b"lo\nwor"))
    assert lines(events) == [("stdout", "hello")]
    # a multi-byte character split across chunks survives
    assert tracker.feed(log("ld \u00e9".encode()[:-1])) == []
    assert lines(tracker.feed(log("ld \u00e9".encode()[-1:] + b"\r\n"))) == [("stdout", "world é")]
    # a progress bar redrawn with \r shows its last state
    assert lines(tracker.feed(log(b"10%\r50%\r100%\n"))) == [("stdout", "100%")]
    # the step's end flushes its unfinished line
    tracker.feed(log(b"no newline"))
    events = tracker.feed(vertex(started=T0, completed=T0))
    assert lines(events) == [("stdout", "no newline")]
    assert isinstance(events[-1], StepDone)
    # flush() at the end of the build flushes the rest
    tracker.feed(log(b"tail", digest="sha256:b"))
    assert lines(tracker.flush()) == [("stdout", "tail")]
    assert tracker.flush() == []


def test_tracker_bounds_lines_and_keeps_a_tail() -> None:
    tracker = ProgressTracker(log_tail=3, max_line=10)
    tracker.feed(vertex(started=T0))
    assert lines(tracker.feed(log(b"x" * 25))) == [("stdout", "x" * 25)]
    tracker.feed(log(b"".join(b"%d\n" % i for i in range(10))))
    assert tracker.log_tail("sha256:a") == ("7", "8", "9")


def test_tracker_warnings_once() -> None:
    tracker = ProgressTracker()
    warning = SolveStatus(warnings=(VertexWarning("sha256:a", 1, b"legacy syntax", (), "u"),))
    assert tracker.feed(warning) == [BuildWarning("legacy syntax (u)")]
    assert tracker.feed(warning) == []


# ------------------------------------------------------------------ .dockerignore

IGNORE_CASES = [
    (["foo"], "foo", True),
    (["foo"], "foo/bar", True),
    (["foo"], "a/foo", False),
    (["*.md"], "README.md", True),
    (["*.md"], "docs/x.md", False),
    (["**/*.md"], "docs/x.md", True),
    (["**/*.md"], "x.md", True),
    (["**/node_modules"], "a/b/node_modules/x.js", True),
    (["**/node_modules"], "node_modules", True),
    (["docs/**"], "docs/a/b", True),
    (["*"], "a/b", True),
    (["*", "!keep.txt"], "keep.txt", False),
    (["*", "!keep.txt"], "other.txt", True),
    (["build", "!build/keep"], "build/keep/x", False),
    (["build", "!build/keep"], "build/other", True),
    (["!keep", "*"], "keep", True),  # order matters: the last match wins
    (["/abs"], "abs", True),
    (["a/../b"], "b", True),
    (["./c//d/"], "c/d", True),
    (["?.txt"], "a.txt", True),
    (["?.txt"], "ab.txt", False),
    (["*/temp*"], "somedir/temporary.txt", True),
    (["*/temp*"], "somedir/sub/temp", False),
    (["*/*/temp*"], "somedir/subdir/temporary.txt", True),
    (["[abc].txt"], "b.txt", True),
    (["[abc].txt"], "d.txt", False),
    (["\\*.txt"], "*.txt", True),
    (["\\*.txt"], "a.txt", False),
    (["**"], "any/thing", True),
    (["# a comment"], "# a comment", False),
    (["  spaced  "], "spaced", True),
    (["a.b"], "axb", False),
]


@pytest.mark.parametrize(("patterns", "path", "excluded"), IGNORE_CASES)
def test_dockerignore_rules(patterns: list[str], path: str, excluded: bool) -> None:
    matcher = PatternMatcher.from_dockerignore("\n".join(patterns))
    assert matcher.matches(path) is excluded


def test_dockerignore_parsing() -> None:
    text = "\ufeff# comment\n\n  node_modules/  \n!  /keep\n/abs/./x\n"
    assert parse_dockerignore(text) == ["node_modules", "!keep", "abs/x"]
    with pytest.raises(DockerignoreError):
        PatternMatcher(["!"])


def make_context(root: Path) -> Path:
    files = {
        "app.txt": "app\n",
        "secret.env": "TOKEN=1\n",
        "src/main.py": "print(1)\n",
        "src/cache.pyc": "x",
        "src/pkg/mod.pyc": "x",
        "build/out.bin": "x",
        "build/keep.txt": "kept\n",
        "node_modules/dep/index.js": "x",
        ".click-deploy/Dockerfile": "FROM evil\n",
        ".click-deploy/notes.txt": "theirs\n",
        ".dockerignore": "secret.env\n**/*.pyc\nbuild\n!build/keep.txt\nnode_modules\n",
    }
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "link").symlink_to("app.txt")
    return root


def read_tar(data: bytes) -> dict[str, tarfile.TarInfo | bytes]:
    members: dict[str, tarfile.TarInfo | bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for member in archive.getmembers():
            members[member.name] = member
            if member.isfile():
                extracted = archive.extractfile(member)
                assert extracted is not None
                members[member.name + "#data"] = extracted.read()
    return members


def test_context_tar_honours_dockerignore_and_adds_the_dockerfile(tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx")
    before = sorted(str(p.relative_to(context)) for p in context.rglob("*"))
    data = b"".join(tar_chunks(context, "FROM scratch\n", None))
    members = read_tar(data)
    names_ = {n for n in members if not n.endswith("#data")}
    assert names_ == {
        ".click-deploy",
        DOCKERFILE_NAME,
        ".click-deploy/notes.txt",
        ".dockerignore",
        "app.txt",
        "build/keep.txt",
        "link",
        "run.sh",
        "src",
        "src/main.py",
        "src/pkg",
    }
    assert members[DOCKERFILE_NAME + "#data"] == b"FROM scratch\n"  # ours, not the context's
    assert members["build/keep.txt#data"] == b"kept\n"
    run = members["run.sh"]
    assert isinstance(run, tarfile.TarInfo) and stat.S_IMODE(run.mode) == 0o755
    link = members["link"]
    assert isinstance(link, tarfile.TarInfo) and link.issym() and link.linkname == "app.txt"
    assert sorted(str(p.relative_to(context)) for p in context.rglob("*")) == before


def test_context_tar_with_given_dockerignore(tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx")
    data = b"".join(tar_chunks(context, "FROM scratch\n", "*\n!app.txt\n"))
    names_ = {n for n in read_tar(data) if not n.endswith("#data")}
    assert names_ == {".click-deploy", DOCKERFILE_NAME, "app.txt"}


async def test_context_stream_is_chunked(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "big.bin").write_bytes(os.urandom(700 * 1024))
    chunks = [chunk async for chunk in stream_tar(context, "FROM scratch\n", None)]
    assert len(chunks) > 2
    members = read_tar(b"".join(chunks))
    assert members["big.bin#data"] == (context / "big.bin").read_bytes()


# ------------------------------------------------------------------ small pure helpers


def test_base_images() -> None:
    dockerfile = (
        "# syntax=docker/dockerfile:1\n"
        "ARG BASE=localhost:5001/team/python\n"
        "ARG VERSION\n"
        "FROM ${BASE}:3.11 AS build\n"
        "RUN echo \\\n  continued\n"
        "FROM --platform=linux/amd64 build AS again\n"
        "FROM scratch\n"
        "FROM localhost:5000/library/debian:${VERSION:-bookworm}\n"
        "FROM $UNKNOWN\n"
    )
    assert base_images(dockerfile) == [
        "localhost:5001/team/python:3.11",
        "localhost:5000/library/debian:bookworm",
    ]
    assert base_images(dockerfile, {"VERSION": "trixie"})[1] == (
        "localhost:5000/library/debian:trixie"
    )


def test_image_references() -> None:
    ref = parse_reference("localhost:5001/click-deploy/web:abc123")
    assert (ref.host, ref.name, ref.repository, ref.tag) == (
        "localhost:5001",
        "localhost:5001/click-deploy/web",
        "click-deploy/web",
        "abc123",
    )
    assert parse_reference("python:3.11").host == "docker.io"
    assert parse_reference("harbor.example.com/p/web").tag is None
    assert cache_ref_for("localhost:5001/p/web:1") == "localhost:5001/p/web:buildcache"
    with pytest.raises(DeploymentFailure):
        parse_reference("localhost:5001/p/web:")


def test_make_builder_names_the_variables(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"BUILDER=buildkitd needs BUILDKIT_ADDRESS \(unix://"):
        make_builder(Settings(builder="buildkitd"))
    with pytest.raises(ConfigError, match="BUILDKIT_ADDRESS must look like"):
        make_builder(Settings(builder="buildkitd", buildkit_address="localhost:1234"))
    with pytest.raises(ConfigError, match="DOCKER_HOST must look like"):
        make_builder(Settings(builder="docker", docker_host="/var/run/docker.sock"))
    with pytest.raises(ConfigError, match="BUILDKIT_TLS_CA: no such file"):
        make_builder(
            Settings(
                builder="buildkitd",
                buildkit_address="tcp://b:1234",
                buildkit_tls_ca=tmp_path / "nope.pem",
            )
        )
    with pytest.raises(ConfigError, match="'no-such-buildctl' binary on PATH"):
        make_builder(
            Settings(builder="buildkitd", buildkit_address="tcp://b:1234"),
            buildctl="no-such-buildctl",
        )
    assert isinstance(make_builder(Settings(docker_host=DOCKER_HOST)), EngineBuilder)


# ------------------------------------------------------------------ buildctl (stub)


@pytest.fixture
def fake_buildctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """Put a `buildctl` replaying the recorded fixtures on PATH; returns a function that
    picks the scenario and gives the record file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "buildctl"
    record = tmp_path / "record.json"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    def use(scenario: str) -> Path:
        # buildctl gets a minimal environment, so the stub's settings are in its wrapper
        wrapper.write_text(
            "#!/bin/sh\n"
            f"export FAKE_BUILDCTL_FIXTURES='{RAWJSON_FIXTURES}'\n"
            f"export FAKE_BUILDCTL_RECORD='{record}'\n"
            f"export FAKE_BUILDCTL_SCENARIO='{scenario}'\n"
            f'exec "{sys.executable}" "{FAKE_BUILDCTL}" "$@"\n'
        )
        wrapper.chmod(0o755)
        return record

    use("success-fresh")
    return use


def buildctl_builder(**options: Any) -> BuildctlBuilder:
    settings = Settings(builder="buildkitd", buildkit_address="tcp://buildkitd.test:1234")
    builder = make_builder(settings)
    assert isinstance(builder, BuildctlBuilder)
    for name, value in options.items():
        setattr(builder, f"_{name}", value)
    return builder


def stub_request(tmp_path: Path, **changes: Any) -> BuildRequest:
    context = tmp_path / "ctx"
    context.mkdir(exist_ok=True)
    (context / "app.txt").write_text("app\n")
    fields: dict[str, Any] = {
        "context_dir": context,
        "dockerfile": "FROM localhost:5000/library/debian:bookworm\nRUN echo hi\n",
        "image": "registry.test:5443/click-deploy/web:abc123",
        "credentials": RegistryCredentials("ci", SecretStr("s3cret-pw")),
    }
    fields.update(changes)
    return BuildRequest(**fields)


def exists(path: str | Path) -> bool:
    return Path(path).exists()


def read_text(path: str | Path) -> str:
    return Path(path).read_text()


def read_json(path: str | Path) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(Path(path).read_text())
    return value


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def process_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


async def test_buildctl_success(tmp_path: Path, fake_buildctl: Callable[[str], Path]) -> None:
    record = fake_buildctl("success-fresh")
    request = stub_request(
        tmp_path,
        target="runtime",
        build_args={"VERSION": "1.2", "EMPTY": ""},
        cache_ref="registry.test:5443/click-deploy/web:buildcache",
        insecure_registry=True,
        dockerignore="*.log\n",
    )
    events: list[BuildEvent] = []
    built = await buildctl_builder().build(request, events.append)
    assert built.reference == request.image
    assert built.digest == "sha256:" + "ab" * 32
    assert built.pinned == "registry.test:5443/click-deploy/web@sha256:" + "ab" * 32
    assert_each_transition_once(events)
    assert lines(events, RUN_LOOP) == [("stdout", f"line {i}") for i in (1, 2, 3)]

    seen = read_json(record)
    argv = seen["argv"]
    assert argv[:3] == ["--addr", "tcp://buildkitd.test:1234", "build"]
    assert f"context={request.context_dir}" in argv
    assert "--progress=rawjson" in argv
    assert (
        "type=image,name=registry.test:5443/click-deploy/web:abc123,push=true,registry.insecure=true"
        in argv
    )
    assert argv[argv.index("target=runtime") - 1 : argv.index("target=runtime") + 1] == [
        "--opt",
        "target=runtime",
    ]
    assert "build-arg:VERSION=1.2" in argv and "build-arg:EMPTY=" in argv
    assert (
        "type=registry,ref=registry.test:5443/click-deploy/web:buildcache,mode=max,registry.insecure=true"
        in argv
    )
    assert (
        "type=registry,ref=registry.test:5443/click-deploy/web:buildcache,registry.insecure=true"
        in argv
    )
    assert seen["dockerfile"] == request.dockerfile
    assert seen["dockerignore"] == "*.log\n"
    auth = base64.b64encode(b"ci:s3cret-pw").decode()
    assert seen["docker_config"] == {
        "content": {"auths": {"registry.test:5443": {"auth": auth}}},
        "mode": "0o600",
    }
    # the credentials and the Dockerfile are gone afterwards; the context is untouched
    assert not exists(seen["docker_config_dir"])
    assert not exists(seen["dockerfile_dir"])
    assert listing(request.context_dir) == ["app.txt"]


async def test_buildctl_cached(tmp_path: Path, fake_buildctl: Callable[[str], Path]) -> None:
    record = fake_buildctl("success-cached")
    events: list[BuildEvent] = []
    request = stub_request(tmp_path, credentials=None)
    await buildctl_builder().build(request, events.append)
    assert names(events, StepCached) == [RUN_ECHO, RUN_LOOP, COPY_APP]
    seen = read_json(record)
    assert seen["docker_config"] is None
    assert not any(arg.startswith("--export-cache") for arg in seen["argv"])


async def test_buildctl_failing_run(tmp_path: Path, fake_buildctl: Callable[[str], Path]) -> None:
    fake_buildctl("failure-run-exit3")
    events: list[BuildEvent] = []
    with pytest.raises(BuildFailed) as caught:
        await buildctl_builder().build(stub_request(tmp_path), events.append)
    failure = caught.value
    step = '[2/2] RUN echo "about to fail" && exit 3'
    assert failure.step == step
    assert str(failure) == (
        f'step {step} failed: process "/bin/sh -c echo \\"about to fail\\" && exit 3" '
        "did not complete successfully: exit code: 3"
    )
    assert failure.log_tail == ("about to fail",)
    assert failure.detail.startswith("Dockerfile:2\n")
    assert "error: failed to solve" in failure.detail
    assert names(events, StepFailed) == [step]


async def test_buildctl_missing_base(tmp_path: Path, fake_buildctl: Callable[[str], Path]) -> None:
    fake_buildctl("failure-missing-base")
    with pytest.raises(BuildFailed) as caught:
        await buildctl_builder().build(stub_request(tmp_path), lambda e: None)
    assert str(caught.value) == (
        "base image localhost:5000/nope/missing:1 could not be pulled: "
        "localhost:5000/nope/missing:1: not found"
    )


async def test_buildctl_unreachable_daemon(
    tmp_path: Path, fake_buildctl: Callable[[str], Path]
) -> None:
    fake_buildctl("unreachable")
    with pytest.raises(BuilderUnavailable, match=r"BUILDKIT_ADDRESS=tcp://buildkitd\.test:1234"):
        await buildctl_builder().build(stub_request(tmp_path), lambda e: None)


async def test_buildctl_push_refused(tmp_path: Path, fake_buildctl: Callable[[str], Path]) -> None:
    fake_buildctl("push-unauthorized")
    with pytest.raises(RegistryAuthError) as caught:
        await buildctl_builder().build(stub_request(tmp_path), lambda e: None)
    message = str(caught.value)
    assert "registry registry.test:5443 refused" in message
    assert "401 Unauthorized" in message and "REGISTRY_USERNAME" in message
    assert "s3cret-pw" not in message


async def wait_started(record: Path) -> int:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        if exists(record):
            return int(read_json(record)["pid"])
        await asyncio.sleep(0.02)
    raise AssertionError("the stub buildctl never started")


async def test_buildctl_cancel_terminates(
    tmp_path: Path, fake_buildctl: Callable[[str], Path]
) -> None:
    record = fake_buildctl("hang")
    events: list[BuildEvent] = []
    task = asyncio.create_task(buildctl_builder().build(stub_request(tmp_path), events.append))
    pid = await wait_started(record)
    deadline = time.monotonic() + PATIENCE
    while not any(isinstance(e, StepStarted) for e in events):
        assert time.monotonic() < deadline, "no progress from the stub buildctl"
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not process_alive(pid)
    assert read_text(f"{record}.terminated") == "SIGTERM"
    assert not exists(read_json(record)["docker_config_dir"])


async def test_buildctl_cancel_kills_when_term_is_ignored(
    tmp_path: Path, fake_buildctl: Callable[[str], Path]
) -> None:
    record = fake_buildctl("hang-ignore-term")
    builder = buildctl_builder(kill_grace=0.5)
    events: list[BuildEvent] = []
    task = asyncio.create_task(builder.build(stub_request(tmp_path), events.append))
    pid = await wait_started(record)
    deadline = time.monotonic() + PATIENCE
    while not any(isinstance(e, StepStarted) for e in events):  # it ignores SIGTERM by now
        assert time.monotonic() < deadline, "no progress from the stub buildctl"
        await asyncio.sleep(0.02)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started > 0.4  # the grace was given before SIGKILL
    assert not process_alive(pid)


async def test_buildctl_timeout(tmp_path: Path, fake_buildctl: Callable[[str], Path]) -> None:
    record = fake_buildctl("hang")
    builder = buildctl_builder(timeout=1.0)
    with pytest.raises(BuildTimedOut, match="BUILD_TIMEOUT_SECONDS=1"):
        await builder.build(stub_request(tmp_path), lambda e: None)
    assert not process_alive(int(read_json(record)["pid"]))


# ------------------------------------------------------------------ the real engine


def _missing(reason: str) -> None:
    # A real part of the system under test: missing fails the run, here as in CI
    # (tests/support/infra.py's rule; its fixtures have run `scripts/infra up` already).
    pytest.fail(f"{reason}: run scripts/infra up", pytrace=False)


async def _registry_get(url: str, auth: aiohttp.BasicAuth | None = None) -> tuple[int, str]:
    accept = ", ".join(
        (
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.oci.image.manifest.v1+json",
        )
    )
    timeout = aiohttp.ClientTimeout(total=5)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(url, auth=auth, headers={"Accept": accept}) as response,
    ):
        return response.status, response.headers.get("Docker-Content-Digest", "")


@pytest.fixture(scope="module")
def engine(docker_engine: str, mirror_registry: str) -> EngineBuilder:
    builder = EngineBuilder(DOCKER_HOST, network=BUILD_NETWORK)
    try:
        asyncio.run(builder.ping())
    except BuilderUnavailable as error:
        _missing(f"no Docker engine: {error}")
    return builder


@pytest.fixture(scope="module")
def base_image(engine: EngineBuilder) -> str:
    try:
        status, _ = asyncio.run(
            _registry_get(f"http://{MIRROR}/v2/library/debian/manifests/bookworm")
        )
    except (aiohttp.ClientError, TimeoutError) as error:
        _missing(f"the mirror registry {MIRROR} is not answering: {error}")
    if status != 200:
        _missing(f"the mirror registry {MIRROR} has no library/debian:bookworm")
    return BASE_IMAGE


@pytest.fixture(scope="module")
def target_registry(engine: EngineBuilder) -> RegistryCredentials:
    try:
        status, _ = asyncio.run(_registry_get(f"http://{TARGET}/v2/"))
    except (aiohttp.ClientError, TimeoutError) as error:
        _missing(f"the target registry {TARGET} is not answering: {error}")
    if status != 401:
        _missing(f"the target registry {TARGET} does not ask for credentials (HTTP {status})")
    return RegistryCredentials(TARGET_USER, SecretStr(TARGET_PASSWORD))


def unique_image(name: str) -> str:
    return f"{TARGET}/cd-test/{name}:{uuid.uuid4().hex[:12]}"


def running_with(token: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if token.encode() in cmdline and process_alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


async def test_engine_builds_and_pushes(
    engine: EngineBuilder,
    base_image: str,
    target_registry: RegistryCredentials,
    tmp_path: Path,
) -> None:
    context = make_context(tmp_path / "ctx")
    token = uuid.uuid4().hex
    dockerfile = (
        f"FROM {base_image} AS base\n"
        "ARG GREETING\n"
        f'RUN echo "greeting $GREETING {token}" && echo "to stderr" >&2\n'
        "COPY . /ctx/\n"
        "RUN cd /ctx && find . -type f | sort\n"
        "FROM base AS unused\n"
        "RUN exit 1\n"
    )
    request = BuildRequest(
        context_dir=context,
        dockerfile=dockerfile,
        image=unique_image("engine-ok"),
        target="base",
        build_args={"GREETING": "hello"},
        credentials=target_registry,
    )
    events: list[BuildEvent] = []
    started = time.monotonic()
    built = await engine.build(request, events.append)
    elapsed = time.monotonic() - started
    assert_each_transition_once(events)
    output = [line for _, line in lines(events)]
    assert f"greeting hello {token}" in output
    assert ("stderr", "to stderr") in lines(events)
    files = [line for line in output if line.startswith("./")]
    assert "./app.txt" in files and "./build/keep.txt" in files and "./src/main.py" in files
    assert "./secret.env" not in files and "./build/out.bin" not in files
    assert not any(f.endswith(".pyc") or "node_modules" in f for f in files)
    assert "./.click-deploy/notes.txt" in files  # the context's own files stay
    assert names(events, StepFailed) == []
    assert f"pushing {request.image}" in names(events, StepDone)
    assert built.digest.startswith("sha256:")
    reference = parse_reference(request.image)
    status, digest = await _registry_get(
        f"http://{TARGET}/v2/{reference.repository}/manifests/{reference.tag}",
        aiohttp.BasicAuth(TARGET_USER, TARGET_PASSWORD),
    )
    assert (status, digest) == (200, built.digest)
    print(f"engine build+push took {elapsed:.2f} s")

    # the same build again is cached
    events = []
    rebuilt = await engine.build(request, events.append)
    assert rebuilt.digest == built.digest
    assert any('RUN echo "greeting' in name for name in names(events, StepCached))


async def test_engine_failing_run(engine: EngineBuilder, base_image: str, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    step_command = 'for i in $(seq 1 60); do echo "out $i"; done; echo "about to fail" && exit 3'
    request = BuildRequest(
        context_dir=context,
        dockerfile=f"FROM {base_image}\nRUN echo {uuid.uuid4().hex}\nRUN {step_command}\n",
        image=unique_image("engine-fail"),
    )
    events: list[BuildEvent] = []
    with pytest.raises(BuildFailed) as caught:
        await engine.build(request, events.append)
    failure = caught.value
    assert failure.step == f"[3/3] RUN {step_command}"
    assert str(failure).startswith(f"step [3/3] RUN {step_command} failed: ")
    assert str(failure).endswith("exit code: 3")
    assert failure.log_tail[-1] == "about to fail"
    assert failure.log_tail[0] == "out 12"  # the last 50 lines
    assert len(failure.log_tail) == 50
    assert names(events, StepFailed) == [failure.step]


async def test_engine_missing_base_image(
    engine: EngineBuilder, base_image: str, tmp_path: Path
) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    request = BuildRequest(
        context_dir=context,
        dockerfile=f"FROM {MIRROR}/nope/missing-{uuid.uuid4().hex[:8]}:1\nRUN true\n",
        image=unique_image("engine-nobase"),
    )
    with pytest.raises(
        BuildFailed,
        match=r"^base image localhost:5000/nope/missing-\w+:1 could "
        r"not be pulled: .*not found",
    ):
        await engine.build(request, lambda e: None)


async def test_engine_cancel_stops_the_build(
    engine: EngineBuilder, base_image: str, tmp_path: Path
) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    token = uuid.uuid4().hex
    request = BuildRequest(
        context_dir=context,
        dockerfile=f"FROM {base_image}\nRUN echo {token} && sleep 60 && echo done-{token}\n",
        image=unique_image("engine-cancel"),
    )
    running = asyncio.Event()

    def on_event(event: BuildEvent) -> None:
        if isinstance(event, BuildLog) and event.line == token:
            running.set()

    task = asyncio.create_task(engine.build(request, on_event))
    await asyncio.wait_for(running.wait(), 60)
    assert running_with(token), "the RUN step's process should be running"
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    while running_with(token):
        assert time.monotonic() - started < PATIENCE, "the build kept running after the cancel"
        await asyncio.sleep(0.05)
    print(f"engine cancel: RUN process gone {time.monotonic() - started:.2f} s after cancel")


async def test_engine_timeout(engine: EngineBuilder, base_image: str, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    token = uuid.uuid4().hex
    request = BuildRequest(
        context_dir=context,
        dockerfile=f"FROM {base_image}\nRUN echo {token} && sleep 60\n",
        image=unique_image("engine-timeout"),
    )
    builder = EngineBuilder(DOCKER_HOST, timeout=3, network=BUILD_NETWORK)
    with pytest.raises(BuildTimedOut):
        await builder.build(request, lambda e: None)
    deadline = time.monotonic() + PATIENCE
    while running_with(token):
        assert time.monotonic() < deadline, "the build kept running after the timeout"
        await asyncio.sleep(0.05)


async def test_engine_unreachable(tmp_path: Path) -> None:
    request = BuildRequest(context_dir=tmp_path, dockerfile="FROM scratch\n", image="x/y:1")
    host = f"unix://{tmp_path}/no-docker.sock"
    with pytest.raises(BuilderUnavailable, match=f"DOCKER_HOST={host}") as caught:
        await EngineBuilder(host).build(request, lambda e: None)
    assert isinstance(caught.value, TransientError)
    with pytest.raises(BuilderUnavailable, match=r"DOCKER_HOST=tcp://127\.0\.0\.1:9"):
        await EngineBuilder("tcp://127.0.0.1:9").build(request, lambda e: None)


async def test_engine_push_with_wrong_password(
    engine: EngineBuilder, base_image: str, target_registry: RegistryCredentials, tmp_path: Path
) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    request = BuildRequest(
        context_dir=context,
        dockerfile=f"FROM {base_image}\nRUN echo {uuid.uuid4().hex}\n",
        image=unique_image("engine-badauth"),
        credentials=RegistryCredentials(TARGET_USER, SecretStr("wrong-password-123")),
    )
    with pytest.raises(RegistryAuthError) as caught:
        await engine.build(request, lambda e: None)
    message = str(caught.value)
    assert message.startswith(f"registry {TARGET} refused to accept {request.image}")
    assert "REGISTRY_USERNAME (now 'ci')" in message
    assert "wrong-password-123" not in message
    assert isinstance(caught.value, DeploymentFailure)


async def test_engine_push_to_unreachable_registry(
    engine: EngineBuilder, base_image: str, tmp_path: Path
) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    request = BuildRequest(
        context_dir=context,
        dockerfile=f"FROM {base_image}\nRUN echo {uuid.uuid4().hex}\n",
        image=f"localhost:9/cd-test/nowhere:{uuid.uuid4().hex[:8]}",
    )
    with pytest.raises(RegistryUnavailable, match="connection refused") as caught:
        await engine.build(request, lambda e: None)
    assert isinstance(caught.value, TransientError)


async def test_engine_private_base_image(
    engine: EngineBuilder, base_image: str, target_registry: RegistryCredentials, tmp_path: Path
) -> None:
    """A base image on the credentials' registry: BuildKit in the engine cannot log in
    by itself (no session), so the builder pulls it first."""
    context = tmp_path / "ctx"
    context.mkdir()
    private = unique_image("private-base")
    token = uuid.uuid4().hex
    first = BuildRequest(
        context_dir=context,
        dockerfile=f"FROM {base_image}\nRUN echo private-{token} > /marker\n",
        image=private,
        credentials=target_registry,
    )
    await engine.build(first, lambda e: None)
    reference = parse_reference(private)
    # forget the local copy so that the pull really happens
    socket = DOCKER_HOST.removeprefix("unix://")
    connector = aiohttp.UnixConnector(path=socket)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.delete(f"http://docker/v1.41/images/{private}") as response,
    ):
        assert response.status == 200, await response.text()
    request = BuildRequest(
        context_dir=context,
        dockerfile=f"FROM {private}\nRUN cat /marker\n",
        image=unique_image("from-private"),
        credentials=target_registry,
    )
    events: list[BuildEvent] = []
    await engine.build(request, events.append)
    assert f"pulling base image {private}" in names(events, StepDone)
    assert ("stdout", f"private-{token}") in lines(events)
    assert reference.tag


# ------------------------------------------------------------------ a recorded engine

PUSH_OK = [
    {"status": "The push refers to repository [localhost:5001/cd-test/web]"},
    {"status": "Pushed", "progressDetail": {}, "id": "4a4976b82fa0"},
    {"status": "abc: digest: sha256:" + "12" * 32 + " size: 527"},
    {"progressDetail": {}, "aux": {"Tag": "abc", "Digest": "sha256:" + "12" * 32, "Size": 527}},
]
PUSH_UNAUTHORIZED = [
    {"status": "The push refers to repository [localhost:5001/cd-test/web]"},
    {
        "errorDetail": {"message": "unauthorized: authentication required"},
        "error": "unauthorized: authentication required",
    },
]
PUSH_REFUSED = [
    {
        "errorDetail": {
            "message": 'Get "http://localhost:5001/v2/": dial tcp 127.0.0.1:5001: '
            "connect: connection refused"
        },
        "error": "connection refused",
    },
]


class RecordedEngine:
    """A Docker engine answering /build with a recorded body and /push with a given one."""

    def __init__(self, build_fixture: str, push: list[dict[str, Any]]) -> None:
        self.build_body = (ENGINE_FIXTURES / build_fixture).read_bytes()
        self.push = push
        self.requests: list[tuple[str, dict[str, str], dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append((request.path, dict(request.query), dict(request.headers), body))
        if request.path.endswith("/build"):
            return web.Response(body=self.build_body, content_type="application/json")
        if request.path.endswith("/push"):
            text = "".join(json.dumps(item) + "\n" for item in self.push)
            return web.Response(text=text, content_type="application/json")
        return web.Response(status=404, text='{"message": "page not found"}')


@pytest.fixture
async def recorded_engine(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    runners: list[web.AppRunner] = []

    async def start(build_fixture: str, push: list[dict[str, Any]]) -> tuple[RecordedEngine, str]:
        engine = RecordedEngine(build_fixture, push)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", engine.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        socket = tmp_path / f"engine-{len(runners)}.sock"
        await web.UnixSite(runner, str(socket)).start()
        runners.append(runner)
        return engine, f"unix://{socket}"

    yield start
    for runner in runners:
        await runner.cleanup()


def decode_header(value: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(value))


async def test_recorded_engine_success_and_request_shape(
    recorded_engine: Callable[..., Any], tmp_path: Path
) -> None:
    engine, host = await recorded_engine("success.jsonl", PUSH_OK)
    request = stub_request(
        tmp_path,
        image="localhost:5001/cd-test/web:abc",
        target="runtime",
        build_args={"A": "1"},
        credentials=RegistryCredentials("ci", SecretStr("pw-123")),
    )
    events: list[BuildEvent] = []
    built = await EngineBuilder(host).build(request, events.append)
    assert built.digest == "sha256:" + "12" * 32
    assert lines(events, RUN_LOOP) == [("stdout", f"line {i}") for i in (1, 2, 3)]
    assert names(events, StepDone)[-1] == "pushing localhost:5001/cd-test/web:abc"

    (build_path, query, headers, body), (push_path, push_query, push_headers, _) = engine.requests
    assert build_path == "/v1.41/build"
    assert query == {  # no networkmode: the engine's default network
        "version": "2",
        "t": "localhost:5001/cd-test/web:abc",
        "dockerfile": DOCKERFILE_NAME,
        "rm": "1",
        "target": "runtime",
        "buildargs": '{"A": "1"}',
    }
    assert headers["Content-Type"] == "application/x-tar"
    # the build gets no registry credentials at all (its BuildKit never reads them): the
    # push password goes with the push alone
    assert "X-Registry-Config" not in headers
    assert "pw-123" not in json.dumps(headers)
    members = read_tar(body)
    assert members[DOCKERFILE_NAME + "#data"] == request.dockerfile.encode()
    assert members["app.txt#data"] == b"app\n"
    assert push_path == "/v1.41/images/localhost:5001/cd-test/web/push"
    assert push_query == {"tag": "abc"}
    assert decode_header(push_headers["X-Registry-Auth"]) == {
        "username": "ci",
        "password": "pw-123",
        "serveraddress": "localhost:5001",
    }


async def test_recorded_engine_failure(recorded_engine: Callable[..., Any], tmp_path: Path) -> None:
    _, host = await recorded_engine("failure-run-exit3.jsonl", PUSH_OK)
    with pytest.raises(BuildFailed) as caught:
        await EngineBuilder(host).build(stub_request(tmp_path), lambda e: None)
    step = '[2/2] RUN echo "about to fail" && exit 3'
    assert caught.value.step == step
    assert str(caught.value) == (
        f'step {step} failed: executor failed running [/bin/sh -c echo "about to fail" '
        "&& exit 3]: exit code: 3"
    )
    assert caught.value.log_tail == ("about to fail",)


@pytest.mark.parametrize(
    ("push", "error", "text"),
    [
        (PUSH_UNAUTHORIZED, RegistryAuthError, "authentication required; check REGISTRY_USERNAME"),
        (PUSH_REFUSED, RegistryUnavailable, "connection refused"),
    ],
)
async def test_recorded_engine_push_errors(
    recorded_engine: Callable[..., Any],
    tmp_path: Path,
    push: list[dict[str, Any]],
    error: type[Exception],
    text: str,
) -> None:
    _, host = await recorded_engine("success.jsonl", push)
    request = stub_request(tmp_path, image="localhost:5001/cd-test/web:abc")
    with pytest.raises(error, match=text) as caught:
        await EngineBuilder(host).build(request, lambda e: None)
    assert "s3cret-pw" not in str(caught.value)


async def test_engine_context_read_error_is_reported(
    recorded_engine: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, host = await recorded_engine("failure-run-exit3.jsonl", PUSH_OK)

    async def broken(*args: Any) -> AsyncIterator[bytes]:
        yield b"\0" * 512
        raise ContextError("cannot read big.bin: Permission denied")

    monkeypatch.setattr("pipeline.buildkit.engine.stream_tar", broken)
    with pytest.raises(DeploymentFailure, match="cannot send the build context: cannot read big"):
        await EngineBuilder(host).build(stub_request(tmp_path), lambda e: None)
