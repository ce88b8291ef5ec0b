"""BuildKit through a standalone buildkitd and the `buildctl` binary (BUILDER=buildkitd).

`buildctl build --progress=rawjson` writes one JSON SolveStatus a line to stderr and,
when it fails, its plain-text error after them; the pushed image's digest is in the
`--metadata-file`. Registry credentials reach buildctl through a temporary DOCKER_CONFIG
that is deleted afterwards, and BuildKit secrets as `--secret id=…,src=FILE` from 0600 files
beside it (never a value on the command line); buildctl gets a minimal environment, not
the bot's. The Dockerfile text goes into a temporary directory served as
the `dockerfile` local, with `Dockerfile.dockerignore` beside it when the request brings
its own ignore rules (BuildKit's Dockerfile-specific ignore file), so nothing is written
into the context. Cancelling sends SIGTERM (buildctl then cancels the solve on the
daemon), and SIGKILL if it has not exited after a grace period. A buildkitd that cannot be
reached, or goes away during the build, is `BuilderUnavailable` (retried), not the user's
`BuildFailed`; the steps it left open are reported failed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.buildkit.builder import BuildRequest, BuiltImage, OpenSteps
from pipeline.buildkit.errors import BuilderUnavailable, BuildTimedOut
from pipeline.buildkit.events import BuildEvent, ProgressTracker
from pipeline.buildkit.failures import (
    failure_from_build,
    hidden_values,
    is_auth_error,
    is_unreachable_error,
    registry_error,
)
from pipeline.buildkit.rawjson import RawJsonDecodeError, decode_rawjson_line
from pipeline.errors import ConfigError, DeploymentFailure
from pipeline.registry.reference import parse_reference
from pipeline.subprocess_env import minimal_env

STDERR_LINE_LIMIT = 16 * 1024 * 1024
TRAILING_TEXT_LINES = 200
DIGEST_KEY = "containerimage.digest"
_DAEMON_UNREACHABLE = (
    "connection error",
    "failed to dial",
    "error while dialing",
    "Unavailable",
    "connect: connection refused",
    "connect: no such file or directory",
    "listing workers",
)
# A daemon that went away mid-build: its stream breaks off, or it cancels what it ran.
_DAEMON_LOST = (
    "error reading from server",
    "transport is closing",
    "code = Unavailable",
    "client connection is closing",
)


def find_buildctl(name: str = "buildctl") -> str:
    """The buildctl executable, or a ConfigError naming BUILDER."""
    found = shutil.which(name)
    if found is None:
        raise ConfigError(
            f"BUILDER=buildkitd needs the {name!r} binary on PATH (from moby/buildkit releases)"
        )
    return found


@dataclass(frozen=True, slots=True)
class _Workspace:
    root: Path
    dockerfile_dir: Path
    metadata_file: Path
    docker_config: Path | None
    secret_files: dict[str, Path]  # secret id → a 0600 file holding its value


def _private_file(path: Path, data: bytes) -> None:
    """Write a file only this user can read (it is created so, never widened later)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


def _prepare(root: Path, request: BuildRequest) -> _Workspace:
    dockerfile_dir = root / "dockerfile"
    dockerfile_dir.mkdir()
    (dockerfile_dir / "Dockerfile").write_text(request.dockerfile, "utf-8")
    if request.dockerignore is not None:
        (dockerfile_dir / "Dockerfile.dockerignore").write_text(request.dockerignore, "utf-8")
    docker_config = None
    credentials = request.credentials
    if credentials is not None:
        docker_config = root / "docker-config"
        docker_config.mkdir(mode=0o700)
        secret = f"{credentials.username}:{credentials.password.get_secret_value()}"
        auth = base64.b64encode(secret.encode()).decode()
        config = {"auths": {request.credentials_registry: {"auth": auth}}}
        _private_file(docker_config / "config.json", json.dumps(config).encode())
    secret_files: dict[str, Path] = {}
    if request.secrets:
        secrets_dir = root / "secrets"
        secrets_dir.mkdir(mode=0o700)
        for number, (name, value) in enumerate(sorted(request.secrets.items())):
            path = secrets_dir / str(number)  # the id is the option's, not the file name's
            _private_file(path, value.get_secret_value().encode())
            secret_files[name] = path
    return _Workspace(root, dockerfile_dir, root / "metadata.json", docker_config, secret_files)


class BuildctlBuilder:
    """Builds and pushes with `buildctl` against BUILDKIT_ADDRESS."""

    def __init__(
        self,
        address: str,
        *,
        tls_ca: Path | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        buildctl: str = "buildctl",
        timeout: float | None = None,
        kill_grace_seconds: float = 5.0,
        network: str = "default",
    ) -> None:
        self.address = address
        self.network = network  # BUILD_NETWORK: "default" is buildkitd's sandbox network
        self._tls = [
            (flag, path)
            for flag, path in (
                ("--tlscacert", tls_ca),
                ("--tlscert", tls_cert),
                ("--tlskey", tls_key),
            )
            if path is not None
        ]
        self._buildctl = buildctl
        self._timeout = timeout
        self._kill_grace = kill_grace_seconds

    def command(self, request: BuildRequest, workspace: _Workspace) -> list[str]:
        argv = [self._buildctl, "--addr", self.address]
        for flag, path in self._tls:
            argv += [flag, str(path)]
        insecure = ",registry.insecure=true" if request.insecure_registry else ""
        argv += [
            "build",
            "--frontend",
            "dockerfile.v0",
            "--local",
            f"context={request.context_dir}",
            "--local",
            f"dockerfile={workspace.dockerfile_dir}",
            "--output",
            f"type=image,name={request.image},push=true{insecure}",
            "--metadata-file",
            str(workspace.metadata_file),
            "--progress=rawjson",
        ]
        if request.target:
            argv += ["--opt", f"target={request.target}"]
        if self.network == "host":
            argv += ["--opt", "force-network-mode=host", "--allow", "network.host"]
        elif self.network == "none":
            argv += ["--opt", "force-network-mode=none"]
        for key, value in request.build_args.items():
            argv += ["--opt", f"build-arg:{key}={value}"]
        for name, path in workspace.secret_files.items():
            argv += ["--secret", f"id={name},src={path}"]  # the value stays in the file
        if request.cache_ref:
            argv += [
                "--export-cache",
                f"type=registry,ref={request.cache_ref},mode=max{insecure}",
                "--import-cache",
                f"type=registry,ref={request.cache_ref}{insecure}",
            ]
        return argv

    async def build(
        self, request: BuildRequest, on_event: Callable[[BuildEvent], None]
    ) -> BuiltImage:
        reference = parse_reference(request.image)
        if reference.digest:
            raise DeploymentFailure(f"cannot push by digest: {request.image}")
        if not request.context_dir.is_dir():
            raise DeploymentFailure(f"build context {request.context_dir} is not a directory")
        root = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="click-deploy-buildctl-"))
        deadline = asyncio.timeout(self._timeout)
        steps = OpenSteps(on_event, hidden_values(request))
        try:
            workspace = await asyncio.to_thread(_prepare, root, request)
            async with deadline:
                return await self._run(request, workspace, steps)
        except TimeoutError:
            if not deadline.expired():
                raise
            steps.interrupt("timed out")
            raise BuildTimedOut(
                f"the build took longer than BUILD_TIMEOUT_SECONDS={self._timeout:g} "
                "and was stopped"
            ) from None
        except asyncio.CancelledError:
            steps.interrupt("cancelled")
            raise
        except Exception as error:
            steps.interrupt(str(error))
            raise
        finally:
            # The credentials and the Dockerfile go, however the build ended.
            await asyncio.shield(asyncio.to_thread(shutil.rmtree, root, True))

    async def _run(
        self,
        request: BuildRequest,
        workspace: _Workspace,
        on_event: OpenSteps,
    ) -> BuiltImage:
        # Not the bot's environment (REGISTRY_PASSWORD, webhook secrets, the App key…):
        # only what buildctl needs, and the credentials of this build's registry.
        extra = {}
        if workspace.docker_config is not None:
            extra["DOCKER_CONFIG"] = str(workspace.docker_config)
        env = minimal_env(extra)
        try:
            process = await asyncio.create_subprocess_exec(
                *self.command(request, workspace),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                limit=STDERR_LINE_LIMIT,
                start_new_session=True,  # its own process group, to signal it whole
            )
        except OSError as error:
            raise DeploymentFailure(
                f"cannot run {self._buildctl} (BUILDER=buildkitd): {error.strerror}"
            ) from None
        tracker = ProgressTracker()
        text: deque[str] = deque(maxlen=TRAILING_TEXT_LINES)
        try:
            assert process.stderr is not None
            async for raw in process.stderr:
                try:
                    status = decode_rawjson_line(raw)
                except RawJsonDecodeError:
                    status = None
                if status is None:
                    line = raw.decode("utf-8", "replace").rstrip()
                    if line:
                        text.append(line)
                    continue
                for event in tracker.feed(status):
                    on_event(event)
            returncode = await process.wait()
        except BaseException:
            await self._stop(process)
            raise
        for event in tracker.flush():
            on_event(event)
        if returncode != 0:
            raise self._failure(request, tracker, list(text), returncode, started=on_event.seen)
        digest = await asyncio.to_thread(_read_digest, workspace.metadata_file)
        if digest is None:
            raise BuilderUnavailable(f"buildctl finished without {DIGEST_KEY} in its metadata file")
        return BuiltImage(request.image, digest)

    async def _stop(self, process: asyncio.subprocess.Process) -> None:
        """SIGTERM the process group, SIGKILL it after the grace period; reap it."""
        if process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.shield(asyncio.wait_for(process.wait(), self._kill_grace))
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await asyncio.shield(process.wait())

    def _failure(
        self,
        request: BuildRequest,
        tracker: ProgressTracker,
        text: list[str],
        returncode: int,
        *,
        started: bool = False,
    ) -> Exception:
        errors = [line.removeprefix("error: ") for line in text if line.startswith("error: ")]
        overall = errors[-1] if errors else (text[-1] if text else f"exit status {returncode}")
        detail = "\n".join(text)
        failed = tracker.failed_step()
        blamed = failed.error if failed else overall
        lost = any(hint in overall for hint in _DAEMON_LOST) and any(
            hint in blamed for hint in _DAEMON_LOST
        )
        if lost or (failed is None and any(hint in overall for hint in _DAEMON_UNREACHABLE)):
            if started:
                return BuilderUnavailable(
                    f"lost buildkitd at BUILDKIT_ADDRESS={self.address} during the build: {overall}"
                )
            return BuilderUnavailable(
                f"cannot reach buildkitd at BUILDKIT_ADDRESS={self.address}: {overall}"
            )
        if failed is None:
            registry = parse_reference(request.image).host
            if ("push" in overall or "export" in overall) and (
                is_auth_error(overall) or is_unreachable_error(overall)
            ):
                return registry_error(f"accept {request.image}", registry, overall, request)
        return failure_from_build(failed, overall, request, detail)


def _read_digest(path: Path) -> str | None:
    try:
        metadata = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    digest = metadata.get(DIGEST_KEY) if isinstance(metadata, dict) else None
    return str(digest) if digest else None
