"""Real git transports for tests: repositories made with real commits, served over
`git daemon` (git://) and over authenticated smart HTTP (`git http-backend` behind aiohttp).

Both servers lay repositories out as ROOT/NAME.git (a working repository, so tests can add
commits with `commit_files`), which `git daemon` finds for git://HOST/NAME and
`git http-backend` for http://HOST/NAME.git. Every served repository has
`uploadpack.allowAnySHA1InWant` so clients can fetch a commit by its SHA.

Use the fixtures from a test module with `pytest_plugins = ["tests.support.gitserver"]`.
(PYTEST_DONT_REWRITE: test modules import the helpers before pytest loads the fixtures
as a plugin; the helpers raise their own AssertionErrors.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import pytest
from aiohttp import BasicAuth, web

from tests.support.waiting import PATIENCE

# Deterministic commits: fixed identity and dates, no user or system git configuration.
GIT_ENV: dict[str, str] = {
    "GIT_AUTHOR_NAME": "Click Deploy Tests",
    "GIT_AUTHOR_EMAIL": "tests@click-deploy.invalid",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00+00:00",
    "GIT_COMMITTER_NAME": "Click Deploy Tests",
    "GIT_COMMITTER_EMAIL": "tests@click-deploy.invalid",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00+00:00",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
}

# Users the HTTP server accepts with the token as password: GitHub App installation tokens
# and GitLab tokens.
TOKEN_USERS: tuple[str, ...] = ("x-access-token", "oauth2")


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, **GIT_ENV}
    env.update(extra or {})
    return env


def git(
    *args: str, cwd: str | Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run git with the deterministic environment; raise with its output when it fails."""
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=git_env(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


def _write_files(root: Path, files: Mapping[str, str | bytes]) -> None:
    for name, content in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")


def make_repo(path: str | Path, files: Mapping[str, str | bytes], message: str = "initial") -> str:
    """Create a repository at PATH (branch main) with one commit of FILES; return its SHA."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    git("init", "-q", "-b", "main", str(path))
    git("config", "uploadpack.allowAnySHA1InWant", "true", cwd=path)
    return commit_files(path, files, message)


def commit_files(path: str | Path, files: Mapping[str, str | bytes], message: str) -> str:
    """Write FILES into the repository at PATH and commit them; return the new SHA."""
    path = Path(path)
    _write_files(path, files)
    git("add", "-A", cwd=path)
    git("commit", "-q", "--allow-empty", "-m", message, cwd=path)
    return git("rev-parse", "HEAD", cwd=path).stdout.strip()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _RepoRoot:
    """Repositories under ROOT, laid out as ROOT/NAME.git."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path_for(self, name: str) -> Path:
        return self.root / f"{name}.git"

    def create_repo(
        self, name: str, files: Mapping[str, str | bytes], message: str = "initial"
    ) -> str:
        """A new served repository NAME with one commit; returns its SHA."""
        return make_repo(self.path_for(name), files, message)

    def commit(self, name: str, files: Mapping[str, str | bytes], message: str) -> str:
        """A follow-up commit in the served repository NAME; returns its SHA."""
        return commit_files(self.path_for(name), files, message)


# ------------------------------------------------------------------------- git daemon


class GitDaemon(_RepoRoot):
    """`git daemon` on 127.0.0.1, serving ROOT over git:// (read-only, upload-pack)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    def url_for(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def start(self) -> GitDaemon:
        for _attempt in range(5):
            self.port = free_port()
            self._process = subprocess.Popen(
                [
                    "git",
                    "daemon",
                    "--reuseaddr",
                    "--export-all",
                    "--informative-errors",
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
            deadline = time.monotonic() + PATIENCE
            while self._process.poll() is None and time.monotonic() < deadline:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", self.port), timeout=1),
                ):
                    return self
                time.sleep(0.02)
            self.stop()  # the port was taken meanwhile, or it never answered: try another
        raise AssertionError("git daemon did not start")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> GitDaemon:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# ------------------------------------------------------------------------- smart HTTP


@dataclass(frozen=True)
class GitHttpRequest:
    """One request the HTTP server saw."""

    method: str
    path: str
    query: str
    user: str | None
    authorized: bool


@dataclass
class GitHttpServer(_RepoRoot):
    """`git http-backend` behind an aiohttp server on 127.0.0.1 that requires HTTP Basic
    auth: user `x-access-token` (GitHub) or `oauth2` (GitLab) with the token as password.
    Every request is recorded in `requests`. Runs its own event loop in a thread, so both
    blocking and asyncio clients can use it."""

    root: Path
    token: str = field(default_factory=lambda: "ghs_" + secrets.token_hex(16))
    requests: list[GitHttpRequest] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        _RepoRoot.__init__(self, self.root)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # URLs ----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_for(self, name: str) -> str:
        return f"{self.base_url}/{name}.git"

    def authed_url_for(
        self, name: str, user: str = "x-access-token", token: str | None = None
    ) -> str:
        """The URL with credentials in it, as a deploy bot would build it."""
        return f"http://{user}:{token or self.token}@127.0.0.1:{self.port}/{name}.git"

    # What was seen ---------------------------------------------------------

    def requests_for(self, name: str) -> list[GitHttpRequest]:
        prefix = f"/{name}.git/"
        return [r for r in self.requests if r.path.startswith(prefix)]

    def authorized_requests(self) -> list[GitHttpRequest]:
        return [r for r in self.requests if r.authorized]

    # Lifecycle ------------------------------------------------------------

    def start(self) -> GitHttpServer:
        ready = threading.Event()
        errors: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._start_site())
            except BaseException as error:
                errors.append(error)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._cleanup())
                loop.close()

        self._thread = threading.Thread(target=serve, name="git-http-server", daemon=True)
        self._thread.start()
        ready.wait(30)
        if errors:
            raise AssertionError(f"git HTTP server did not start: {errors[0]!r}")
        if not self.port:
            raise AssertionError("git HTTP server did not start in 30 s")
        return self

    async def _start_site(self) -> None:
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        address = self._runner.addresses[0]
        self.port = int(address[1])

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
        self._loop = None
        self._thread = None

    def __enter__(self) -> GitHttpServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # Serving --------------------------------------------------------------

    def _check_auth(self, header: str | None) -> tuple[str | None, bool]:
        if not header:
            return None, False
        try:
            auth = BasicAuth.decode(header)
        except ValueError:
            return None, False
        ok = auth.login in TOKEN_USERS and secrets.compare_digest(auth.password, self.token)
        return auth.login, ok

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        user, authorized = self._check_auth(request.headers.get("Authorization"))
        self.requests.append(
            GitHttpRequest(request.method, request.path, request.query_string, user, authorized)
        )
        if not authorized:
            return web.Response(
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="git"'},
                text="authentication required\n",
            )
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": f"HTTP/{request.version.major}.{request.version.minor}",
            "REQUEST_METHOD": request.method,
            "PATH_INFO": request.path,
            "QUERY_STRING": request.query_string,
            "REMOTE_USER": user or "",
            "REMOTE_ADDR": request.remote or "127.0.0.1",
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
        }
        if "Content-Length" in request.headers:
            env["CONTENT_LENGTH"] = request.headers["Content-Length"]
        if "Content-Encoding" in request.headers:
            env["HTTP_CONTENT_ENCODING"] = request.headers["Content-Encoding"]
        if "Git-Protocol" in request.headers:
            env["GIT_PROTOCOL"] = request.headers["Git-Protocol"]

        process = await asyncio.create_subprocess_exec(
            "git",
            "http-backend",
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdin is not None and process.stdout is not None
        assert process.stderr is not None
        stdin, stdout, stderr = process.stdin, process.stdout, process.stderr

        async def feed() -> None:
            try:
                async for chunk in request.content.iter_chunked(64 * 1024):
                    stdin.write(chunk)
                    await stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                stdin.close()

        feeder = asyncio.create_task(feed())
        errors = asyncio.create_task(stderr.read())
        try:
            status, headers = 200, dict[str, str]()
            while True:  # the CGI response headers, up to a blank line
                line = (await stdout.readline()).rstrip(b"\r\n")
                if not line:
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "status":
                    status = int(value.split()[0])
                else:
                    headers[name.strip()] = value.strip()
            response = web.StreamResponse(status=status, headers=headers)
            try:
                await response.prepare(request)
                while chunk := await stdout.read(64 * 1024):
                    await response.write(chunk)
                await response.write_eof()
            except ConnectionResetError:  # the client went away (it had what it wanted)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            return response
        finally:
            await feeder
            await process.wait()
            message = (await errors).decode("utf-8", "replace").strip()
            if process.returncode and message:
                print(f"git http-backend {request.path}: {message}")


# ------------------------------------------------------------------------- fixtures


@pytest.fixture
def git_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitDaemon]:
    """A `git daemon` serving a fresh root: `create_repo(name, files)`, `url_for(name)`."""
    with GitDaemon(tmp_path_factory.mktemp("git-daemon")) as daemon:
        yield daemon


@pytest.fixture
def git_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHttpServer]:
    """A smart-HTTP git server requiring the token `git_http.token` (Basic auth with user
    x-access-token or oauth2): `create_repo(name, files)`, `url_for(name)`, `requests`."""
    with GitHttpServer(tmp_path_factory.mktemp("git-http")) as server:
        yield server
