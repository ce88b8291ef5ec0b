"""The registry client: pure parts without a server, the rest against real registries
(Debian's docker-registry: no auth, htpasswd, token auth with a token server of ours)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from pipeline.errors import DeploymentFailure, TransientError
from pipeline.registry import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    ImageReference,
    ImmutableTag,
    InvalidReference,
    RegistryAuthError,
    RegistryClient,
    RegistryFailure,
    RegistryForbidden,
    RegistryNotFound,
    RegistryUnavailable,
    TokenCache,
    digest_of,
    error_for_status,
    image_reference,
    parse_reference,
    parse_token_response,
    parse_www_authenticate,
    validate_tag,
)
from pipeline.registry.auth import (
    Challenge,
    Token,
    TokenResponseError,
    pick_challenge,
    scopes_for,
    token_key,
)
from pipeline.registry.errors import (
    ErrorDetail,
    RegistryError,
    error_for_token_status,
    insecure_realm,
    parse_error_body,
)
from pipeline.registry.manifest import Manifest, media_type_of
from pipeline.registry.reference import registry_host
from tests.support.registry_server import (
    SERVICE,
    BasicRegistry,
    RegistryProcess,
    TokenRegistry,
    basic_registry_running,
    free_port,
    make_issuer,
    plain_registry_running,
    push_test_image,
    push_test_index,
    started_registry,
    token_auth,
    token_registry_running,
)

# Real registries: one of each kind per session; `registry_factory` for those a test stops.


@pytest.fixture(scope="session")
def plain_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    with plain_registry_running(tmp_path_factory.mktemp("registry-plain")) as registry:
        yield registry


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BasicRegistry]:
    with basic_registry_running(tmp_path_factory.mktemp("registry-basic")) as registry:
        yield registry


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistry]:
    with token_registry_running(tmp_path_factory.mktemp("registry-token")) as registry:
        yield registry


@pytest.fixture
def registry_factory(tmp_path: Path) -> Iterator[Callable[..., RegistryProcess]]:
    started: list[RegistryProcess] = []

    def start(auth: dict[str, Any] | None = None) -> RegistryProcess:
        registry = started_registry(tmp_path / f"registry-{len(started)}", auth)
        started.append(registry)
        return registry

    yield start
    for registry in started:
        registry.stop()


def fresh_repository(name: str = "web") -> str:
    return f"click-deploy/{name}-{uuid.uuid4().hex[:10]}"


def secrets_absent(error: BaseException, *secrets: str) -> None:
    """No secret in the message, the repr or anything chained to the error."""
    seen: BaseException | None = error
    while seen is not None:
        for secret in secrets:
            assert secret not in str(seen)
            assert secret not in repr(seen)
            assert all(secret not in str(arg) for arg in seen.args)
        seen = seen.__cause__ or seen.__context__


# Image references (pure).


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("localhost:5001/click-deploy/web:abc123", "localhost:5001", "click-deploy/web",
         "abc123", None),
        ("nginx", None, "nginx", None, None),
        ("library/nginx:1.25-alpine", None, "library/nginx", "1.25-alpine", None),
        ("harbor.example.com/team/app", "harbor.example.com", "team/app", None, None),
        ("localhost/app:v1", "localhost", "app", "v1", None),
        ("[::1]:5000/app:v1", "[::1]:5000", "app", "v1", None),
        ("ghcr.io/a/b-c__d.e/f@sha256:" + "a" * 64, "ghcr.io", "a/b-c__d.e/f", None,
         "sha256:" + "a" * 64),
        ("r.io:443/x/y:T_1.0@sha256:" + "0" * 64, "r.io:443", "x/y", "T_1.0",
         "sha256:" + "0" * 64),
    ],
)  # fmt: skip
def test_parse_reference(
    text: str, registry: str | None, repository: str, tag: str | None, digest: str | None
) -> None:
    parsed = parse_reference(text)
    assert parsed == ImageReference(repository, registry, tag=tag, digest=digest)
    assert str(parsed) == text
    assert parsed.reference == (digest or tag)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "not a valid image reference"),
        ("click-deploy/Web:abc", "not a valid repository name"),
        ("click-deploy//web", "not a valid repository name"),
        ("click-deploy/web:", "not a valid image tag"),
        ("click-deploy/web:-tag", "not a valid image tag"),
        ("click-deploy/web:" + "a" * 129, "not a valid image tag"),
        ("click-deploy/web@sha256:abc", "not a valid digest"),
        ("click-deploy/web@sha256:" + "A" * 64, "not a valid sha256 digest"),
        ("-bad.host/web", "not a valid registry host"),
        ("web_/x", "not a valid repository name"),
    ],
)
def test_parse_reference_rejects(text: str, fragment: str) -> None:
    with pytest.raises(InvalidReference, match=fragment) as caught:
        parse_reference(text)
    assert isinstance(caught.value, DeploymentFailure)


def test_image_reference() -> None:
    assert (
        image_reference("http://localhost:5001", "click-deploy", "web", "abc123")
        == "localhost:5001/click-deploy/web:abc123"
    )
    assert (
        image_reference("https://harbor.example.com/", "team", "api", "v1.2.3")
        == "harbor.example.com/team/api:v1.2.3"
    )
    assert image_reference("registry.local:5000", "", "web", "x") == "registry.local:5000/web:x"
    assert image_reference("http://h:1", "a/b", "c", "t") == "h:1/a/b/c:t"


def test_image_reference_errors_say_what_is_wrong() -> None:
    with pytest.raises(InvalidReference) as caught:
        image_reference("http://localhost:5001", "click-deploy", "web", "feature/login")
    message = str(caught.value)
    assert "'feature/login' is not a valid image tag" in message
    assert "1 to 128" in message
    with pytest.raises(InvalidReference, match="service name 'My_App'"):
        image_reference("http://localhost:5001", "click-deploy", "My_App", "abc")
    with pytest.raises(InvalidReference, match="has a path"):
        image_reference("https://harbor.example.com/v2", "p", "web", "abc")
    with pytest.raises(InvalidReference, match="must be http"):
        image_reference("ftp://harbor.example.com", "p", "web", "abc")
    with pytest.raises(InvalidReference) as caught:
        registry_host("https://ci:hunter2@harbor.example.com")
    assert "hunter2" not in str(caught.value)


def test_validate_tag() -> None:
    assert validate_tag("a" * 128) == "a" * 128
    assert validate_tag("_x.Y-1") == "_x.Y-1"
    for bad in ("", ".hidden", "-x", "a" * 129, "a b", "a:b", "ä"):
        with pytest.raises(InvalidReference):
            validate_tag(bad)


# WWW-Authenticate, scopes and tokens (pure).


def test_parse_www_authenticate_bearer() -> None:
    header = (
        'Bearer realm="https://harbor.example.com/service/token",service="harbor-registry",'
        'scope="repository:click-deploy/web:pull,push",error="insufficient_scope"'
    )
    (challenge,) = parse_www_authenticate(header)
    assert challenge.scheme == "bearer"
    assert challenge.realm == "https://harbor.example.com/service/token"
    assert challenge.service == "harbor-registry"
    assert challenge.scope == "repository:click-deploy/web:pull,push"
    assert challenge.error == "insufficient_scope"


def test_parse_www_authenticate_variants() -> None:
    assert parse_www_authenticate('Basic realm="Registry Realm"') == [
        Challenge("basic", {"realm": "Registry Realm"})
    ]
    several = parse_www_authenticate(
        'Basic realm="a, b", BEARER Realm=https://x/t, service=reg , Negotiate abc==, Foo'
    )
    assert [c.scheme for c in several] == ["basic", "bearer", "negotiate", "foo"]
    assert several[0].realm == "a, b"
    assert several[1].params == {"realm": "https://x/t", "service": "reg"}
    assert several[2].params == {"token68": "abc=="}
    escaped = parse_www_authenticate(r'Bearer realm="say \"hi\"",scope="a b"')
    assert escaped[0].realm == 'say "hi"'
    assert parse_www_authenticate(["Basic realm=x", "Bearer realm=y"])[1].realm == "y"
    assert [c.scheme for c in parse_www_authenticate("Foo, Bar")] == ["foo", "bar"]
    assert parse_www_authenticate("") == []
    assert parse_www_authenticate('=garbage"') == []


def test_pick_challenge_prefers_bearer_with_realm() -> None:
    basic = Challenge("basic", {"realm": "r"})
    bearer = Challenge("bearer", {"realm": "https://t"})
    assert pick_challenge([basic, bearer]) is bearer
    assert pick_challenge([Challenge("bearer"), basic]) is basic
    assert pick_challenge([Challenge("negotiate")]) is None


def test_scopes_for() -> None:
    assert scopes_for("GET", "p/web") == ("repository:p/web:pull",)
    assert scopes_for("HEAD", "p/web") == ("repository:p/web:pull",)
    assert scopes_for("PUT", "p/web") == ("repository:p/web:pull,push",)
    assert scopes_for("DELETE", "p/web") == ("repository:p/web:delete",)
    assert scopes_for("POST", "p/b", mount_from="p/a") == (
        "repository:p/b:pull,push",
        "repository:p/a:pull",
    )
    # One cache entry whatever the order the registry lists actions or scopes in.
    assert token_key("r", "s", ["repository:a:push,pull", "repository:b:pull"], "ci") == (
        token_key("r", "s", ["repository:b:pull", "repository:a:pull,push"], "ci")
    )
    assert token_key("r", "s", ["repository:a:pull"], "ci") != token_key(
        "r", "s", ["repository:a:pull"], None
    )


def test_parse_token_response() -> None:
    harbor = parse_token_response(
        b'{"token": "jwt-1", "access_token": "", "expires_in": 1800, "issued_at": "x"}'
    )
    assert (harbor.value, harbor.expires_in) == ("jwt-1", 1800)
    oauth = parse_token_response(b'{"access_token": "jwt-2", "expires_in": 300}')
    assert oauth.value == "jwt-2"
    assert parse_token_response(b'{"token": "t"}').expires_in == 60
    assert parse_token_response(b'{"token": "", "access_token": "a"}').value == "a"
    assert parse_token_response(b'{"token": "t", "expires_in": "soon"}').expires_in == 60
    for bad in (b"", b"<html>", b"[]", b'{"token": ""}', b'{"access_token": null}'):
        with pytest.raises(TokenResponseError):
            parse_token_response(bad)
    assert "jwt-1" not in repr(harbor)


def test_token_cache_expires_before_the_token() -> None:
    now = [1000.0]
    cache = TokenCache(timer=lambda: now[0])
    key = token_key("https://t", "s", ["repository:a:pull"], "ci")
    cache.put(key, Token("v", expires_in=60))
    now[0] += 49
    assert cache.get(key) is not None
    now[0] += 2  # 51 s: inside the 10 s margin
    assert cache.get(key) is None
    cache.put(key, Token("short", expires_in=4))  # short tokens live half their time
    now[0] += 1.9
    assert cache.get(key) is not None
    now[0] += 0.2
    assert cache.get(key) is None
    assert len(cache) == 0


# Status → error (pure).


def decide(status: int, method: str = "GET", **kwargs: Any) -> RegistryError | None:
    arguments: dict[str, Any] = {
        "method": method,
        "registry": "localhost:5001",
        "repository": "click-deploy/web",
        "subject": "manifest abc123",
        "username": "ci",
    }
    arguments.update(kwargs)
    return error_for_status(status, **arguments)


def test_error_for_status_success_is_none() -> None:
    assert decide(200) is None
    assert decide(201, "PUT") is None
    assert decide(307) is None


@pytest.mark.parametrize(
    ("status", "method", "extra", "kind", "fragments"),
    [
        (401, "GET", {}, RegistryAuthError,
         ["registry localhost:5001 refused the credentials of user ci for click-deploy/web: "
          "check REGISTRY_USERNAME/REGISTRY_PASSWORD"]),
        (401, "PUT", {"username": None}, RegistryAuthError,
         ["requires credentials to push click-deploy/web", "REGISTRY_USERNAME"]),
        (401, "PUT", {"challenge_error": "insufficient_scope"}, RegistryForbidden,
         ["does not allow user ci to push click-deploy/web"]),
        (403, "DELETE", {"details": (ErrorDetail("DENIED", "no"),)}, RegistryForbidden,
         ["does not allow user ci to delete click-deploy/web", "DENIED: no"]),
        (403, "GET", {"username": None}, RegistryForbidden, ["anonymous users to pull"]),
        (404, "GET", {"details": (ErrorDetail("MANIFEST_UNKNOWN", "manifest unknown"),)},
         RegistryNotFound,
         ["registry localhost:5001 has no manifest abc123 in click-deploy/web",
          "MANIFEST_UNKNOWN"]),
        (412, "PUT", {"subject": "tag v1"}, ImmutableTag,
         ["refused to change tag v1 in click-deploy/web: it is immutable", "new tag"]),
        (412, "GET", {}, RegistryForbidden, ["by policy"]),
        (429, "GET", {"headers": {"Retry-After": "30"}}, RegistryUnavailable,
         ["rate limiting", "retry after 30 s"]),
        (500, "PUT", {"reason": "Internal Server Error"}, RegistryUnavailable,
         ["failed to push manifest abc123", "500 Internal Server Error"]),
        (502, "GET", {}, RegistryUnavailable, ["localhost:5001", "502"]),
        (503, "HEAD", {}, RegistryUnavailable, ["503"]),
        (408, "GET", {}, RegistryUnavailable, ["408"]),
        (405, "DELETE", {}, RegistryFailure, ["storage.delete.enabled"]),
        (400, "PUT", {"details": (ErrorDetail("MANIFEST_BLOB_UNKNOWN", "blob unknown"),)},
         RegistryFailure, ["refused to push", "MANIFEST_BLOB_UNKNOWN: blob unknown"]),
    ],
)  # fmt: skip
def test_error_for_status(
    status: int,
    method: str,
    extra: dict[str, Any],
    kind: type[RegistryError],
    fragments: list[str],
) -> None:
    error = decide(status, method, **extra)
    assert type(error) is kind
    assert error is not None
    assert error.status == status
    assert error.registry == "localhost:5001"
    assert error.repository == "click-deploy/web"
    for fragment in fragments:
        assert fragment in str(error)


def test_error_for_token_status() -> None:
    def token_error(status: int, username: str | None = "ci") -> RegistryError | None:
        return error_for_token_status(
            status,
            registry="harbor.example.com",
            token_server="harbor.example.com",
            repository="click-deploy/web",
            username=username,
            reason="Service Unavailable" if status == 503 else "",
        )

    assert token_error(200) is None
    refused = token_error(401)
    assert isinstance(refused, RegistryAuthError)
    assert str(refused) == (
        "registry harbor.example.com refused the credentials of user ci for click-deploy/web: "
        "check REGISTRY_USERNAME/REGISTRY_PASSWORD"
    )
    assert "requires credentials" in str(token_error(401, None))
    down = token_error(503)
    assert isinstance(down, RegistryUnavailable)
    assert str(down).startswith("token server harbor.example.com: registry harbor.example.com")
    assert isinstance(token_error(400), RegistryFailure)


def test_insecure_realm() -> None:
    assert insecure_realm("https://harbor.example.com", "http://harbor.example.com/service/token")
    assert not insecure_realm("https://h", "https://h/service/token")
    assert not insecure_realm("http://127.0.0.1:5001", "http://127.0.0.1:5002/token")


def test_client_base_url() -> None:
    assert RegistryClient("http://localhost:5001/").base_url == "http://localhost:5001"
    assert RegistryClient("harbor.example.com").base_url == "https://harbor.example.com"
    assert RegistryClient("harbor.example.com").registry == "harbor.example.com"
    with pytest.raises(InvalidReference):
        RegistryClient("https://harbor.example.com/v2/")
    with pytest.raises(InvalidReference) as caught:
        RegistryClient("https://ci:hunter2@harbor.example.com")
    assert "hunter2" not in str(caught.value)


def test_error_types_say_who_acts() -> None:
    for final in (RegistryAuthError, RegistryForbidden, RegistryNotFound, ImmutableTag):
        assert issubclass(final, DeploymentFailure)
        assert not issubclass(final, TransientError)
    assert issubclass(RegistryUnavailable, TransientError)
    assert not issubclass(RegistryUnavailable, DeploymentFailure)
    assert issubclass(InvalidReference, DeploymentFailure)


def test_parse_error_body() -> None:
    body = b'{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known","detail":{}}]}'
    assert parse_error_body(body) == (ErrorDetail("NAME_UNKNOWN", "repository name not known"),)
    assert parse_error_body(b"<html>bad gateway</html>") == ()
    assert parse_error_body(b'{"errors": "x"}') == ()
    assert parse_error_body(b"") == ()


def test_manifest_helpers() -> None:
    image = json.dumps(
        {
            "schemaVersion": 2,
            "config": {"mediaType": "c", "digest": "sha256:" + "1" * 64, "size": 2},
            "layers": [
                {"mediaType": "l", "digest": "sha256:" + "2" * 64, "size": 3},
                {"mediaType": "l", "digest": "sha256:" + "2" * 64, "size": 3},
            ],
        }
    ).encode()
    assert media_type_of(image) == OCI_MANIFEST  # OCI allows leaving mediaType out
    assert media_type_of(image, f"{DOCKER_MANIFEST}; charset=utf-8") == DOCKER_MANIFEST
    manifest = Manifest(digest_of(image), OCI_MANIFEST, image)
    assert [blob.digest for blob in manifest.blobs()] == [
        "sha256:" + "1" * 64,
        "sha256:" + "2" * 64,
    ]
    assert manifest.children() == []
    index = json.dumps(
        {"mediaType": DOCKER_MANIFEST_LIST, "manifests": [{"digest": "sha256:" + "3" * 64}]}
    ).encode()
    assert media_type_of(index, "application/json") == DOCKER_MANIFEST_LIST
    listed = Manifest(digest_of(index), DOCKER_MANIFEST_LIST, index)
    assert [child.digest for child in listed.children()] == ["sha256:" + "3" * 64]
    assert listed.blobs() == []


# Against a real registry without auth.


@pytest.fixture
async def plain_client(plain_registry: RegistryProcess) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(plain_registry.url, timeout=10) as client:
        yield client


async def test_push_get_copy_and_delete(plain_client: RegistryClient) -> None:
    client = plain_client
    repository = fresh_repository()
    image = await push_test_image(client, repository, "abc123")
    assert image.digest == digest_of(image.manifest)

    assert await client.manifest_exists(repository, "abc123")
    assert await client.manifest_exists(repository, image.digest)
    assert not await client.manifest_exists(repository, "nope")
    assert await client.blob_exists(repository, image.config_digest)
    assert await client.blob_exists(repository, image.layer_digest)
    assert not await client.blob_exists(repository, digest_of(b"never uploaded"))

    manifest = await client.get_manifest(repository, "abc123")
    assert manifest.digest == image.digest
    assert manifest.media_type == DOCKER_MANIFEST
    assert manifest.content == image.manifest  # raw bytes, as pushed
    assert [blob.digest for blob in manifest.blobs()] == [image.config_digest, image.layer_digest]
    config = json.loads(await client.get_blob(repository, image.config_digest))
    assert config["os"] == "linux"

    # Rollback/promotion in the same repository: a new tag on the same digest.
    assert await client.copy_tag(repository, "abc123", "production") == image.digest
    assert (await client.get_manifest(repository, "production")).digest == image.digest
    assert await client.manifest_digest(repository, "production") == image.digest

    assert await client.delete_tag(repository, "abc123") == image.digest
    assert not await client.manifest_exists(repository, "abc123")
    # The v2 API deletes the manifest: every tag on that digest goes with it.
    assert not await client.manifest_exists(repository, "production")


async def test_copy_tag_across_repositories(plain_client: RegistryClient) -> None:
    source, target = fresh_repository("staging"), fresh_repository("production")
    image = await push_test_image(plain_client, source, "abc123", media_type=OCI_MANIFEST)
    assert not await plain_client.blob_exists(target, image.layer_digest)

    digest = await plain_client.copy_tag(source, image.digest, "v1", target_repository=target)

    assert digest == image.digest
    copied = await plain_client.get_manifest(target, "v1")
    assert (copied.digest, copied.media_type) == (image.digest, OCI_MANIFEST)
    assert await plain_client.blob_exists(target, image.layer_digest)
    assert await plain_client.blob_exists(target, image.config_digest)
    assert await plain_client.manifest_exists(source, "abc123")  # the source is untouched


async def test_copy_index_across_repositories(plain_client: RegistryClient) -> None:
    source, target = fresh_repository("multi"), fresh_repository("multi-prod")
    index_digest, images = await push_test_index(plain_client, source, "abc123")

    assert await plain_client.copy_tag(source, "abc123", "v1", target) == index_digest

    index = await plain_client.get_manifest(target, "v1")
    assert index.media_type == OCI_INDEX
    assert [child.digest for child in index.children()] == [image.digest for image in images]
    for image in images:
        assert await plain_client.manifest_exists(target, image.digest)
        assert await plain_client.blob_exists(target, image.layer_digest)
    # Copying again is a no-op that gives the same digest.
    assert await plain_client.copy_tag(source, "abc123", "v1", target) == index_digest


async def test_not_found(plain_client: RegistryClient, plain_registry: RegistryProcess) -> None:
    repository = fresh_repository()
    with pytest.raises(RegistryNotFound) as caught:
        await plain_client.get_manifest(repository, "abc123")
    message = str(caught.value)
    assert plain_registry.host in message
    assert repository in message
    assert "manifest abc123" in message
    with pytest.raises(RegistryNotFound):
        await plain_client.delete_tag(repository, "abc123")
    with pytest.raises(RegistryNotFound):
        await plain_client.copy_tag(repository, "abc123", "rollback")
    with pytest.raises(RegistryNotFound):
        await plain_client.get_blob(repository, digest_of(b"nothing"))


async def test_bad_manifest_and_bad_names(plain_client: RegistryClient) -> None:
    repository = fresh_repository()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": digest_of(b"missing config"),
                "size": 14,
            },
            "layers": [],
        }
    ).encode()
    with pytest.raises(RegistryFailure, match="MANIFEST_BLOB_UNKNOWN") as caught:
        await plain_client.put_manifest(repository, "v1", manifest, DOCKER_MANIFEST)
    assert not isinstance(caught.value, TransientError)
    with pytest.raises(InvalidReference, match="not a valid image tag"):
        await plain_client.copy_tag(repository, "v1", "feature/login")
    with pytest.raises(InvalidReference, match="not a valid repository name"):
        await plain_client.manifest_exists("../etc", "v1")
    with pytest.raises(RegistryFailure, match="its content has digest"):
        await plain_client.put_manifest(repository, digest_of(b"other"), manifest, DOCKER_MANIFEST)


async def test_shared_session_is_left_open(plain_registry: RegistryProcess) -> None:
    async with aiohttp.ClientSession() as session:
        async with RegistryClient(plain_registry.url, session=session) as client:
            assert not await client.manifest_exists(fresh_repository(), "x")
        assert not session.closed


async def test_stopped_registry_is_unavailable(
    registry_factory: Callable[..., RegistryProcess],
) -> None:
    registry = registry_factory()
    repository = fresh_repository()
    async with RegistryClient(registry.url, timeout=5) as client:
        await push_test_image(client, repository, "abc123")
        await asyncio.to_thread(registry.stop)
        with pytest.raises(RegistryUnavailable) as caught:
            await client.manifest_exists(repository, "abc123")
    assert isinstance(caught.value, TransientError)
    assert f"registry {registry.host} is unreachable for {repository}" in str(caught.value)


async def test_silent_registry_times_out() -> None:
    release = asyncio.Event()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await release.wait()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with RegistryClient(f"http://127.0.0.1:{port}", timeout=0.3) as client:
            with pytest.raises(RegistryUnavailable, match=r"no answer within 0\.3 s"):
                await client.get_manifest("click-deploy/web", "abc123")
    finally:
        release.set()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0.01)  # let the handler close its connection


# Harbor answers the real registry cannot give (412, 429, 503), and a mount that the
# registry turns into an upload: a small stand-in server.


@pytest.fixture
async def harbor_like() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    state: dict[str, Any] = {"blobs": {}, "uploads": 0}
    blob = b"layer bytes"
    state["blobs"][digest_of(blob)] = blob

    async def manifest(request: web.Request) -> web.Response:
        if request.method == "PUT":
            return web.json_response(
                {"errors": [{"code": "PRECONDITION", "message": "configured as immutable"}]},
                status=412,
            )
        if request.match_info["reference"] == "busy":
            return web.json_response({}, status=429, headers={"Retry-After": "7"})
        return web.Response(status=503, text="<html>upstream down</html>")

    async def start_upload(request: web.Request) -> web.Response:
        state["uploads"] += 1
        return web.Response(status=202, headers={"Location": "/upload/1?_state=abc"})

    async def get_blob(request: web.Request) -> web.Response:
        data = state["blobs"].get(request.match_info["digest"])
        return web.Response(body=data) if data else web.Response(status=404)

    async def finish_upload(request: web.Request) -> web.Response:
        data = await request.read()
        assert request.query["_state"] == "abc"
        if digest_of(data) != request.query["digest"]:
            return web.json_response({"errors": [{"code": "DIGEST_INVALID"}]}, status=400)
        state["stored"] = data
        return web.Response(status=201)

    app = web.Application()
    app.router.add_route("*", "/v2/{name:.+}/manifests/{reference}", manifest)
    app.router.add_post("/v2/{name:.+}/blobs/uploads/", start_upload)
    app.router.add_get("/v2/{name:.+}/blobs/{digest}", get_blob)
    app.router.add_put("/upload/1", finish_upload)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), state
    finally:
        await server.close()


async def test_harbor_like_answers(harbor_like: tuple[str, dict[str, Any]]) -> None:
    url, state = harbor_like
    async with RegistryClient(url) as client:
        with pytest.raises(ImmutableTag, match="tag v1 in click-deploy/web: it is immutable"):
            await client.put_manifest("click-deploy/web", "v1", b"{}", OCI_MANIFEST)
        with pytest.raises(RegistryUnavailable, match=r"rate limiting.*retry after 7 s"):
            await client.get_manifest("click-deploy/web", "busy")
        with pytest.raises(RegistryUnavailable, match="503 Service Unavailable"):
            await client.get_manifest("click-deploy/web", "abc123")

        # The registry would not mount: the blob is streamed from source to target.
        digest = digest_of(b"layer bytes")
        assert not await client.mount_blob("click-deploy/prod", digest, "click-deploy/web")
    assert state["stored"] == b"layer bytes"


# Basic auth (htpasswd).


async def test_basic_auth(basic_registry: BasicRegistry) -> None:
    repository = fresh_repository()
    password = SecretStr(basic_registry.password)
    async with RegistryClient(basic_registry.registry.url, "ci", password) as client:
        image = await push_test_image(client, repository, "abc123")
        assert (await client.get_manifest(repository, "abc123")).digest == image.digest
        assert "pw-" not in repr(client)


async def test_basic_auth_wrong_password(basic_registry: BasicRegistry) -> None:
    repository = fresh_repository()
    wrong = "wrong-" + basic_registry.password
    host = basic_registry.registry.host
    async with RegistryClient(basic_registry.registry.url, "ci", SecretStr(wrong)) as client:
        with pytest.raises(RegistryAuthError) as caught:
            await client.manifest_exists(repository, "abc123")
    assert str(caught.value) == (
        f"registry {host} refused the credentials of user ci for {repository}: "
        "check REGISTRY_USERNAME/REGISTRY_PASSWORD"
    )
    secrets_absent(caught.value, wrong, basic_registry.password)


async def test_basic_auth_without_credentials(basic_registry: BasicRegistry) -> None:
    async with RegistryClient(basic_registry.registry.url) as client:
        with pytest.raises(RegistryAuthError, match="requires credentials to pull"):
            await client.get_manifest(fresh_repository(), "abc123")


# Token auth (Bearer), as Harbor does it.


def token_client(registry: TokenRegistry, **kwargs: Any) -> RegistryClient:
    return RegistryClient(
        registry.registry.url, registry.username, SecretStr(registry.password), **kwargs
    )


async def test_bearer_push_copy_and_token_reuse(token_registry: TokenRegistry) -> None:
    tokens = token_registry.tokens
    source, target = fresh_repository(), fresh_repository("prod")
    async with token_client(token_registry) as client:
        image = await push_test_image(client, source, "abc123")
        for _ in range(5):
            assert await client.manifest_exists(source, "abc123")
            assert (await client.get_manifest(source, "abc123")).digest == image.digest
        assert await client.copy_tag(source, "abc123", "v1", target) == image.digest
        assert await client.copy_tag(source, "abc123", "v2", target) == image.digest
        assert await client.delete_tag(target, "v1") == image.digest

    mine = [
        token for token in tokens.issued if any(source in s or target in s for s in token.scopes)
    ]
    scopes = [token_key("", "", token.scopes, None) for token in mine]
    assert len(scopes) == len(set(scopes)), f"a scope was asked for twice: {scopes}"
    assert tokens.issued_for(f"repository:{source}:pull") == 1
    # push, pull, mount (target push + source pull), target push, target pull, target delete
    assert len(mine) <= 6
    assert all(token.username == "ci" for token in mine)


async def test_bearer_cache_shared_between_clients(token_registry: TokenRegistry) -> None:
    repository = fresh_repository()
    cache = TokenCache()
    for _ in range(3):
        async with token_client(token_registry, token_cache=cache) as client:
            assert not await client.manifest_exists(repository, "abc123")
    assert token_registry.tokens.issued_for(f"repository:{repository}:pull") == 1


async def test_bearer_refused_token_is_replaced(token_registry: TokenRegistry) -> None:
    repository = fresh_repository()
    cache = TokenCache()
    async with token_client(token_registry, token_cache=cache) as client:
        await client.manifest_exists(repository, "first")  # learns the realm
        key = token_key(
            token_registry.tokens.realm,
            SERVICE,
            [f"repository:{repository}:pull,push"],
            token_registry.username,
        )
        cache.put(key, Token("not-a-jwt", 300))  # revoked or expired at the registry
        await push_test_image(client, repository, "abc123")
        assert await client.manifest_exists(repository, "abc123")
    replaced = cache.get(key)
    assert replaced is not None and replaced.value != "not-a-jwt"
    scope = f"repository:{repository}:pull,push"
    assert token_registry.tokens.issued_for(scope) == 1


async def test_bearer_oauth_style_token(token_registry: TokenRegistry) -> None:
    token_registry.tokens.style = "oauth"
    try:
        async with token_client(token_registry) as client:
            assert not await client.manifest_exists(fresh_repository(), "abc123")
    finally:
        token_registry.tokens.style = "harbor"


async def test_bearer_wrong_password(token_registry: TokenRegistry) -> None:
    repository = fresh_repository()
    wrong = "wrong-" + token_registry.password
    refused = token_registry.tokens.refused
    url = token_registry.registry.url
    async with RegistryClient(url, "ci", SecretStr(wrong)) as client:
        with pytest.raises(RegistryAuthError) as caught:
            await client.manifest_exists(repository, "abc123")
    assert str(caught.value) == (
        f"registry {token_registry.registry.host} refused the credentials of user ci for "
        f"{repository}: check REGISTRY_USERNAME/REGISTRY_PASSWORD"
    )
    assert token_registry.tokens.refused == refused + 1
    secrets_absent(caught.value, wrong, token_registry.password)


async def test_bearer_reader_may_pull_but_not_push(token_registry: TokenRegistry) -> None:
    repository = fresh_repository()
    async with token_client(token_registry) as writer:
        await push_test_image(writer, repository, "abc123")
    url = token_registry.registry.url
    reader_password = SecretStr(token_registry.reader_password)
    async with RegistryClient(url, token_registry.reader, reader_password) as reader:
        assert await reader.manifest_exists(repository, "abc123")
        with pytest.raises(RegistryForbidden) as caught:
            await reader.copy_tag(repository, "abc123", "rollback")
    assert f"does not allow user viewer to push {repository}" in str(caught.value)
    issued = [token.token for token in token_registry.tokens.issued if token.token]
    secrets_absent(caught.value, token_registry.reader_password, *issued)


async def test_bearer_anonymous_needs_credentials(token_registry: TokenRegistry) -> None:
    async with RegistryClient(token_registry.registry.url) as client:
        with pytest.raises(RegistryAuthError, match="requires credentials to pull"):
            await client.get_manifest(fresh_repository(), "abc123")


async def test_bearer_not_found(token_registry: TokenRegistry) -> None:
    async with token_client(token_registry) as client:
        with pytest.raises(RegistryNotFound, match="has no manifest abc123"):
            await client.get_manifest(fresh_repository(), "abc123")


async def test_token_server_down_is_unavailable(
    registry_factory: Callable[..., RegistryProcess], tmp_path: Path
) -> None:
    issuer = make_issuer(tmp_path / "issuer")
    realm_host = f"127.0.0.1:{free_port()}"  # nothing listens there
    auth = token_auth(f"http://{realm_host}/token", issuer)
    registry = registry_factory(auth)
    async with RegistryClient(registry.url, "ci", SecretStr("secret-pw"), timeout=5) as client:
        with pytest.raises(RegistryUnavailable) as caught:
            await client.manifest_exists(fresh_repository(), "abc123")
    assert f"the token server {realm_host} of registry {registry.host} is unreachable" in str(
        caught.value
    )
    secrets_absent(caught.value, "secret-pw")
