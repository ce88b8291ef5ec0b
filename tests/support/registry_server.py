"""Real registries for tests: Debian's `docker-registry` (distribution 2.8) on a free
loopback port, with no auth, htpasswd (Basic) or token auth (Bearer, as Harbor does) with
a token server run here.

For fixtures: `plain_registry_running`, `basic_registry_running`, `token_registry_running`
(context managers that stop the registry, and the token server, on exit) and
`started_registry`. A registry that cannot start fails the test, on any machine (with what
to install). Ports 5000 and 5001 are never used (ephemeral ports only).
Needs Debian's docker-registry and apache2-utils (htpasswd), and PyPI's pyjwt and
cryptography.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import gzip
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import jwt
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pipeline.registry import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, RegistryClient, digest_of
from pipeline.registry.auth import normalize_scope
from pipeline.registry.manifest import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    OCI_CONFIG,
    OCI_LAYER_GZIP,
)
from tests.support.infra import ensure_tool
from tests.support.waiting import PATIENCE

SERVICE = "click-deploy-test-registry"
ISSUER = "click-deploy-test-token-issuer"
RESERVED_PORTS = {5000, 5001}  # another engineer's registries


def registry_binary() -> str | None:
    """DOCKER_REGISTRY_BIN, else docker-registry on PATH or in /usr/bin (Debian's)."""
    for candidate in (
        os.environ.get("DOCKER_REGISTRY_BIN"),
        shutil.which("docker-registry"),
        "/usr/bin/docker-registry",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def cannot_start(reason: str) -> NoReturn:
    """A missing or broken registry is a failure, on any machine (tests/support/infra.py's
    rule: `scripts/infra up` installs docker-registry)."""
    pytest.fail(f"{reason} (scripts/infra up installs docker-registry)", pytrace=False)


class RegistryStartError(RuntimeError):
    """The registry process exited or never answered."""


def free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in RESERVED_PORTS:
            return port


@dataclass
class RegistryProcess:
    """One running `docker-registry serve`."""

    url: str  # http://127.0.0.1:PORT
    host: str  # 127.0.0.1:PORT
    directory: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    config_path: Path | None = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def restart(self, timeout: float = PATIENCE) -> None:
        """Start the stopped registry again: the same port, config and storage."""
        assert self.config_path is not None and not self.running
        binary = registry_binary()
        if binary is None:
            raise RegistryStartError("docker-registry is no longer installed")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "serve", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        try:
            _wait_ready(self, timeout)
        except RegistryStartError:
            self.stop()
            raise


def _config(
    directory: Path, port: int, auth: dict[str, Any] | None, delete: bool = True
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": "warn", "formatter": "text", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(directory / "data")},
            "delete": {"enabled": delete},
            "cache": {"blobdescriptor": "inmemory"},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
        "health": {"storagedriver": {"enabled": False}},
    }
    if auth:
        config["auth"] = auth
    return config


def _wait_ready(registry: RegistryProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not registry.running:
            raise RegistryStartError(
                f"docker-registry exited with {registry.process.returncode}:\n{registry.log_tail()}"
            )
        try:
            with urllib.request.urlopen(f"{registry.url}/v2/", timeout=1) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as error:
            if error.code == 401:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RegistryStartError(
        f"docker-registry did not answer on {registry.url} within {timeout} s:\n"
        f"{registry.log_tail()}"
    )


def start_registry(
    directory: Path,
    *,
    auth: dict[str, Any] | None = None,
    timeout: float = PATIENCE,
    delete: bool = True,
) -> RegistryProcess:
    """Start `docker-registry serve` with a generated config under `directory`
    (`delete=False`: one that refuses deletes, as distribution does by default)."""
    binary = registry_binary()
    if binary is None:
        raise RegistryStartError(
            "docker-registry is not installed: apt-get install -y docker-registry"
        )
    directory.mkdir(parents=True, exist_ok=True)
    last_error: RegistryStartError | None = None
    for attempt in range(3):  # a port taken between probing and binding: try another
        port = free_port()
        config_path = directory / f"config-{attempt}.yml"
        config_path.write_text(json.dumps(_config(directory, port, auth, delete), indent=2))
        log_path = directory / f"registry-{attempt}.log"
        with log_path.open("wb") as log:
            try:
                process = subprocess.Popen(
                    [binary, "serve", str(config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=directory,
                )
            except OSError as error:
                raise RegistryStartError(f"cannot run {binary}: {error}") from error
        registry = RegistryProcess(
            url=f"http://127.0.0.1:{port}",
            host=f"127.0.0.1:{port}",
            directory=directory,
            log_path=log_path,
            process=process,
            config_path=config_path,
        )
        try:
            _wait_ready(registry, timeout)
        except RegistryStartError as error:
            registry.stop()
            last_error = error
            if "address already in use" not in str(error):
                raise
            continue
        return registry
    assert last_error is not None
    raise last_error


def htpasswd_line(username: str, password: str) -> str:
    """An htpasswd entry distribution accepts (bcrypt only), made by apache2-utils."""
    binary = shutil.which("htpasswd")
    if binary is None:
        raise RegistryStartError("htpasswd is not installed: apt-get install -y apache2-utils")
    result = subprocess.run(
        [binary, "-nbBC", "5", username, password],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RegistryStartError(f"htpasswd failed: {result.stderr.strip()}")
    return result.stdout.strip()


# Token auth.


@dataclass(frozen=True)
class Issuer:
    """The token signing key and its self-signed certificate (the registry's root bundle)."""

    key: ec.EllipticCurvePrivateKey
    certificate_path: Path
    x5c: tuple[str, ...]


def make_issuer(directory: Path) -> Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "token-issuer.pem"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    der = certificate.public_bytes(serialization.Encoding.DER)
    return Issuer(key=key, certificate_path=path, x5c=(base64.b64encode(der).decode(),))


@dataclass(frozen=True)
class IssuedToken:
    username: str | None
    scopes: tuple[str, ...]
    access: tuple[tuple[str, str, tuple[str, ...]], ...]  # (type, name, actions)
    token: str = field(repr=False, default="")


@dataclass
class TokenServer:
    """A token server like Harbor's: Basic credentials in, an ES256 JWT out.

    Users in `writers` get every action they ask for, `readers` only pull, anonymous
    callers nothing. `style` "harbor" answers `{"token", "access_token": "", "expires_in"}`;
    "oauth" answers only `access_token`. Every issued token is recorded in `issued`.
    """

    issuer: Issuer
    writers: dict[str, str]
    readers: dict[str, str] = field(default_factory=dict)
    service: str = SERVICE
    expires_in: int = 300
    style: str = "harbor"
    issued: list[IssuedToken] = field(default_factory=list)
    refused: int = 0
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def issued_for(self, *scopes: str) -> int:
        """How many tokens were issued for exactly these scopes, in any order (distribution
        lists a challenge's actions in random order: `push,pull` or `pull,push`)."""
        wanted = sorted(normalize_scope(scope) for scope in scopes)
        with self._lock:
            return sum(
                1
                for token in self.issued
                if sorted(normalize_scope(scope) for scope in token.scopes) == wanted
            )

    def count(self) -> int:
        with self._lock:
            return len(self.issued)

    def _user(self, request: web.Request) -> tuple[bool, str | None]:
        header = request.headers.get("Authorization", "")
        if not header:
            return True, None
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False, None
        try:
            username, _, password = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False, None
        known = self.writers.get(username, self.readers.get(username))
        if known is None or not secrets.compare_digest(known, password):
            return False, None
        return True, username

    def _grant(self, username: str | None, scopes: tuple[str, ...]) -> list[dict[str, Any]]:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = [action for action in actions.split(",") if action]
            if username in self.writers:
                granted = wanted
            elif username in self.readers:
                granted = [action for action in wanted if action == "pull"]
            else:
                granted = []
            access.append({"type": kind, "name": name, "actions": granted})
        return access

    async def _token(self, request: web.Request) -> web.Response:
        valid, username = self._user(request)
        if not valid:
            with self._lock:
                self.refused += 1
            return web.json_response(
                {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="click-deploy-test"'},
            )
        if request.query.get("service") != self.service:
            return web.json_response(
                {"errors": [{"code": "DENIED", "message": "unknown service"}]}, status=400
            )
        scopes = tuple(request.query.getall("scope", []))
        access = self._grant(username, scopes)
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": username or "",
            "aud": self.service,
            "exp": now + self.expires_in,
            "nbf": now - 5,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        token = jwt.encode(
            claims, self.issuer.key, algorithm="ES256", headers={"x5c": list(self.issuer.x5c)}
        )
        with self._lock:
            self.issued.append(
                IssuedToken(
                    username,
                    scopes,
                    tuple((a["type"], a["name"], tuple(a["actions"])) for a in access),
                    token,
                )
            )
        if self.style == "oauth":
            body: dict[str, Any] = {"access_token": token, "expires_in": self.expires_in}
        else:
            body = {
                "token": token,
                "access_token": "",
                "expires_in": self.expires_in,
                "issued_at": datetime.datetime.fromtimestamp(now, datetime.UTC).isoformat(),
            }
        return web.json_response(body)

    async def _start(self, sock: socket.socket) -> None:
        app = web.Application()
        app.router.add_get("/token", self._token)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    def start(self) -> TokenServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="token-server", daemon=True
        )
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(sock), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = None


# Running registries, for fixtures: each context manager stops what it started.


@dataclass(frozen=True)
class BasicRegistry:
    registry: RegistryProcess
    username: str
    password: str


@dataclass(frozen=True)
class TokenRegistry:
    registry: RegistryProcess
    tokens: TokenServer
    username: str  # may push, pull and delete
    password: str
    reader: str  # may only pull
    reader_password: str


def started_registry(directory: Path, auth: dict[str, Any] | None = None) -> RegistryProcess:
    """A running registry, or (inside a test or fixture) a failure."""
    ensure_tool("docker-registry", "docker-registry")
    try:
        return start_registry(directory, auth=auth)
    except RegistryStartError as error:
        cannot_start(f"cannot start a docker-registry for the tests: {error}")


@contextmanager
def plain_registry_running(directory: Path) -> Iterator[RegistryProcess]:
    """A registry without auth."""
    registry = started_registry(directory)
    try:
        yield registry
    finally:
        registry.stop()


@contextmanager
def basic_registry_running(directory: Path) -> Iterator[BasicRegistry]:
    """A registry with htpasswd (Basic) auth; user `ci` with a random password."""
    directory.mkdir(parents=True, exist_ok=True)
    password = f"pw-{secrets.token_urlsafe(12)}"
    try:
        line = htpasswd_line("ci", password)
    except RegistryStartError as error:
        cannot_start(f"cannot start a docker-registry with Basic auth: {error}")
    (directory / "htpasswd").write_text(line + "\n")
    auth = {"htpasswd": {"realm": "click-deploy-test", "path": str(directory / "htpasswd")}}
    registry = started_registry(directory, auth)
    try:
        yield BasicRegistry(registry, "ci", password)
    finally:
        registry.stop()


@contextmanager
def token_registry_running(directory: Path) -> Iterator[TokenRegistry]:
    """A registry with token auth and its token server: `ci` writes, `viewer` reads."""
    issuer = make_issuer(directory)
    password = f"pw-{secrets.token_urlsafe(12)}"
    reader_password = f"pw-{secrets.token_urlsafe(12)}"
    tokens = TokenServer(issuer, writers={"ci": password}, readers={"viewer": reader_password})
    tokens.start()
    try:
        registry = started_registry(directory, token_auth(tokens.realm, issuer))
        try:
            yield TokenRegistry(registry, tokens, "ci", password, "viewer", reader_password)
        finally:
            registry.stop()
    finally:
        tokens.stop()


def token_auth(realm: str, issuer: Issuer) -> dict[str, Any]:
    """The registry's `auth.token` section for a token server at `realm`."""
    return {
        "token": {
            "realm": realm,
            "service": SERVICE,
            "issuer": ISSUER,
            "rootcertbundle": str(issuer.certificate_path),
        }
    }


# A small real image, pushed by hand through the client.


@dataclass(frozen=True)
class PushedImage:
    repository: str
    tag: str
    digest: str
    media_type: str
    manifest: bytes
    config_digest: str
    layer_digest: str


def make_layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A gzipped tar layer (reproducible) and its diff id (digest of the plain tar)."""
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w") as archive:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            info.mtime = 0
            archive.addfile(info, io.BytesIO(content))
    tar = plain.getvalue()
    return gzip.compress(tar, mtime=0), digest_of(tar)


async def push_test_image(
    client: RegistryClient,
    repository: str,
    tag: str,
    *,
    media_type: str = DOCKER_MANIFEST,
    content: bytes | None = None,
    architecture: str = "amd64",
) -> PushedImage:
    """Upload a config and a one-file layer, then put a Docker v2 or OCI manifest."""
    oci = media_type == OCI_MANIFEST
    layer, diff_id = make_layer(
        {"app/hello.txt": content if content is not None else secrets.token_bytes(64)}
    )
    config = json.dumps(
        {
            "architecture": architecture,
            "os": "linux",
            "config": {"Cmd": ["cat", "/app/hello.txt"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        },
        sort_keys=True,
    ).encode()
    config_digest = await client.upload_blob(repository, config)
    layer_digest = await client.upload_blob(repository, layer)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {
                "mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": OCI_LAYER_GZIP if oci else DOCKER_LAYER_GZIP,
                    "digest": layer_digest,
                    "size": len(layer),
                }
            ],
        },
        indent=3,
    ).encode()
    digest = await client.put_manifest(repository, tag, manifest, media_type)
    return PushedImage(repository, tag, digest, media_type, manifest, config_digest, layer_digest)


async def push_test_index(
    client: RegistryClient, repository: str, tag: str
) -> tuple[str, list[PushedImage]]:
    """An OCI index of two single-platform images (amd64, arm64); returns its digest."""
    images = []
    for architecture in ("amd64", "arm64"):
        image = await push_test_image(
            client,
            repository,
            f"{tag}-{architecture}",
            media_type=OCI_MANIFEST,
            architecture=architecture,
        )
        images.append(image)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": image.digest,
                    "size": len(image.manifest),
                    "platform": {"architecture": arch, "os": "linux"},
                }
                for image, arch in zip(images, ("amd64", "arm64"), strict=True)
            ],
        }
    ).encode()
    digest = await client.put_manifest(repository, tag, index, OCI_INDEX)
    return digest, images
