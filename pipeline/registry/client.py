"""The registry client: an aiohttp transport around the pure parts of this package.

Every request goes through `_exchange`, which authenticates (Basic or Bearer, learnt from
the registry's first 401), retries once after a challenge, and turns the final response
into a value or a typed error (`errors.error_for_status`). Nothing else here decides.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Self
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import aiohttp
from pydantic import SecretStr

from pipeline.registry.auth import (
    Challenge,
    Token,
    TokenCache,
    TokenKey,
    TokenResponseError,
    basic_authorization,
    parse_token_response,
    parse_www_authenticate,
    pick_challenge,
    scopes_for,
    split_scope,
    token_key,
)
from pipeline.registry.errors import (
    RegistryFailure,
    RegistryUnavailable,
    action_of,
    error_for_status,
    error_for_token_status,
    insecure_realm,
    parse_error_body,
)
from pipeline.registry.manifest import (
    ACCEPT_MANIFESTS,
    Descriptor,
    Manifest,
    ManifestError,
    digest_of,
    media_type_of,
)
from pipeline.registry.reference import (
    is_digest,
    registry_host,
    validate_digest,
    validate_manifest_reference,
    validate_repository,
    validate_tag,
)

DEFAULT_TIMEOUT = 60.0
MAX_INDEX_DEPTH = 4
_CHUNK = 1 << 16

Body = bytes | AsyncIterable[bytes] | None
_ScopeKey = tuple[str, str, str]  # (repository, pull/push/delete, mount source or "")


@dataclass(frozen=True)
class _Auth:
    """What the registry asked for: Basic, or Bearer with a realm and service."""

    scheme: str
    realm: str = ""
    service: str | None = None


def _base_url(base_url: str) -> str:
    text = base_url.strip().rstrip("/")
    if "://" not in text:
        text = f"https://{text}"
    registry_host(text)  # validates: scheme, host[:port], no path, no credentials
    return text


def _with_query(url: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    query = "&".join(part for part in (parts.query, urlencode(params)) if part)
    return urlunsplit(parts._replace(query=query))


def _describe_connection_error(error: BaseException, timeout: float) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout:g} s"
    text = str(error).strip()
    return text or type(error).__name__


def _is_foreign(blob: Descriptor) -> bool:
    media_type = blob.media_type.lower()
    return bool(blob.urls) and ("foreign" in media_type or "nondistributable" in media_type)


class RegistryClient:
    """An OCI distribution (v2) registry: Harbor, distribution, GHCR, ECR…

    `base_url` is `http(s)://host[:port]` (no scheme: https). Use as
    `async with RegistryClient(...) as client:` or call `close()`. A session passed in is
    used and left open; otherwise the client opens one and closes it. `timeout` bounds
    connecting and each read, not a whole upload.
    """

    def __init__(
        self,
        base_url: str,
        username: str | None = None,
        password: SecretStr | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        token_cache: TokenCache | None = None,
    ) -> None:
        self.base_url = _base_url(base_url)
        self.registry = registry_host(self.base_url)
        self.username = username or None
        self._password = password
        self._session = session
        self._owns_session = session is None
        self.timeout = timeout
        self._client_timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout, sock_connect=timeout, sock_read=timeout
        )
        self.tokens = token_cache if token_cache is not None else TokenCache()
        self._auth: _Auth | None = None
        self._scopes: dict[_ScopeKey, tuple[str, ...]] = {}
        self._token_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"RegistryClient({self.base_url!r}, username={self.username!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    # Manifests.

    async def manifest_exists(self, repository: str, reference: str) -> bool:
        """True if the tag or digest names a manifest in the repository."""
        validate_repository(repository)
        validate_manifest_reference(reference)
        async with self._exchange(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            repository=repository,
            subject=f"manifest {reference}",
            headers={"Accept": ACCEPT_MANIFESTS},
            missing_ok=True,
        ) as response:
            return response.status == 200

    async def manifest_digest(self, repository: str, reference: str) -> str:
        """The digest a tag points at (HEAD; falls back to GET if the header is missing)."""
        validate_repository(repository)
        validate_manifest_reference(reference)
        async with self._exchange(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            repository=repository,
            subject=f"manifest {reference}",
            headers={"Accept": ACCEPT_MANIFESTS},
        ) as response:
            digest = response.headers.get("Docker-Content-Digest")
        if digest:
            return validate_digest(digest)
        return (await self.get_manifest(repository, reference)).digest

    async def get_manifest(self, repository: str, reference: str) -> Manifest:
        """The manifest (or index) a tag or digest names, with its raw bytes."""
        validate_repository(repository)
        validate_manifest_reference(reference)
        subject = f"manifest {reference}"
        async with self._exchange(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            repository=repository,
            subject=subject,
            headers={"Accept": ACCEPT_MANIFESTS},
        ) as response:
            content = await response.read()
            content_type = response.headers.get("Content-Type")
            header_digest = response.headers.get("Docker-Content-Digest")
        actual = digest_of(content)
        expected = reference if is_digest(reference) else header_digest
        if expected and expected.startswith("sha256:") and expected != actual:
            raise RegistryFailure(
                f"registry {self.registry} sent {subject} of {repository} whose content "
                f"does not match its digest {expected}",
                registry=self.registry,
                repository=repository,
            )
        try:
            media_type = media_type_of(content, content_type)
        except ManifestError as error:
            raise RegistryFailure(
                f"registry {self.registry} sent {subject} of {repository} that is not "
                f"a manifest: {error}",
                registry=self.registry,
                repository=repository,
            ) from None
        return Manifest(digest=header_digest or actual, media_type=media_type, content=content)

    async def put_manifest(
        self, repository: str, reference: str, manifest_bytes: bytes, media_type: str
    ) -> str:
        """Store a manifest under a tag (or its own digest); returns its digest."""
        validate_repository(repository)
        validate_manifest_reference(reference)
        digest = digest_of(manifest_bytes)
        if is_digest(reference) and reference != digest:
            raise RegistryFailure(
                f"cannot push a manifest to {repository}@{reference}: its content has "
                f"digest {digest}",
                registry=self.registry,
                repository=repository,
            )
        subject = f"tag {reference}" if not is_digest(reference) else f"manifest {reference}"
        async with self._exchange(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            repository=repository,
            subject=subject,
            headers={"Content-Type": media_type},
            data=manifest_bytes,
            ok=(200, 201, 202),
        ) as response:
            returned = response.headers.get("Docker-Content-Digest")
        return returned or digest

    async def delete_manifest(self, repository: str, digest: str) -> None:
        """Delete a manifest by digest (and, with it, every tag pointing at it)."""
        validate_repository(repository)
        validate_digest(digest)
        async with self._exchange(
            "DELETE",
            f"/v2/{repository}/manifests/{digest}",
            repository=repository,
            subject=f"manifest {digest}",
            ok=(200, 202, 204),
        ):
            pass

    async def delete_tag(self, repository: str, tag: str) -> str:
        """Resolve the tag to its digest and delete that manifest; returns the digest.

        The v2 API deletes manifests, not tags: every other tag on the same digest goes too.
        """
        validate_tag(tag)
        digest = await self.manifest_digest(repository, tag)
        await self.delete_manifest(repository, digest)
        return digest

    async def copy_tag(
        self,
        repository: str,
        source_reference: str,
        target_tag: str,
        target_repository: str | None = None,
    ) -> str:
        """Tag an existing manifest again, without a rebuild (rollback, promotion).

        Across repositories the blobs (and an index's child manifests) are mounted into the
        target first. Returns the digest, the same as the source's.
        """
        validate_repository(repository)
        validate_manifest_reference(source_reference)
        validate_tag(target_tag)
        target = validate_repository(target_repository or repository)
        manifest = await self.get_manifest(repository, source_reference)
        if target != repository:
            await self._copy_referenced(repository, target, manifest, depth=0)
        digest = await self.put_manifest(target, target_tag, manifest.content, manifest.media_type)
        if digest != manifest.digest:
            raise RegistryFailure(
                f"registry {self.registry} stored {target}:{target_tag} as {digest}, "
                f"not as the source's {manifest.digest}",
                registry=self.registry,
                repository=target,
            )
        return digest

    async def _copy_referenced(
        self, source: str, target: str, manifest: Manifest, *, depth: int
    ) -> None:
        try:
            blobs, children = manifest.blobs(), manifest.children()
        except ManifestError as error:
            raise RegistryFailure(
                f"cannot copy {manifest.digest} from {source}: {error}",
                registry=self.registry,
                repository=source,
            ) from None
        for blob in blobs:
            if not _is_foreign(blob):
                await self.mount_blob(target, blob.digest, source)
        if children and depth >= MAX_INDEX_DEPTH:
            raise RegistryFailure(
                f"cannot copy {manifest.digest} from {source}: indexes nest too deep",
                registry=self.registry,
                repository=source,
            )
        for child in children:
            if await self.manifest_exists(target, child.digest):
                continue
            child_manifest = await self.get_manifest(source, child.digest)
            await self._copy_referenced(source, target, child_manifest, depth=depth + 1)
            await self.put_manifest(
                target, child.digest, child_manifest.content, child_manifest.media_type
            )

    # Blobs.

    async def blob_exists(self, repository: str, digest: str) -> bool:
        validate_repository(repository)
        validate_digest(digest)
        async with self._exchange(
            "HEAD",
            f"/v2/{repository}/blobs/{digest}",
            repository=repository,
            subject=f"blob {digest}",
            missing_ok=True,
        ) as response:
            return response.status == 200

    async def get_blob(self, repository: str, digest: str) -> bytes:
        """A whole blob in memory (configs, small layers); checked against its digest."""
        validate_repository(repository)
        validate_digest(digest)
        async with self._exchange(
            "GET",
            f"/v2/{repository}/blobs/{digest}",
            repository=repository,
            subject=f"blob {digest}",
        ) as response:
            data = await response.read()
        if digest.startswith("sha256:") and digest_of(data) != digest:
            raise RegistryFailure(
                f"registry {self.registry} sent blob {digest} of {repository} with "
                "content that does not match its digest",
                registry=self.registry,
                repository=repository,
            )
        return data

    async def upload_blob(self, repository: str, data: bytes) -> str:
        """Monolithic upload (POST, then PUT with the digest); returns the digest."""
        validate_repository(repository)
        digest = digest_of(data)
        location = await self._start_upload(repository, digest)
        await self._finish_upload(repository, location, digest, data, len(data))
        return digest

    async def delete_blob(self, repository: str, digest: str) -> None:
        """Delete a blob (202); a registry with deletes disabled answers 405."""
        validate_repository(repository)
        validate_digest(digest)
        async with self._exchange(
            "DELETE",
            f"/v2/{repository}/blobs/{digest}",
            repository=repository,
            subject=f"blob {digest}",
            ok=(200, 202, 204),
        ):
            pass

    async def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Make a blob of `from_repository` available in `repository` without moving bytes.

        True if the registry mounted it; False if it could not and the blob was copied
        through this client instead (it then streams from the source to the target).
        """
        validate_repository(repository)
        validate_repository(from_repository)
        validate_digest(digest)
        async with self._exchange(
            "POST",
            f"/v2/{repository}/blobs/uploads/",
            repository=repository,
            subject=f"blob {digest}",
            params={"mount": digest, "from": from_repository},
            mount_from=from_repository,
            ok=(201, 202),
        ) as response:
            mounted = response.status == 201
            location = response.headers.get("Location")
        if mounted:
            return True
        if not location:
            raise self._no_location(repository)
        await self._stream_blob(
            from_repository, repository, digest, urljoin(self.base_url, location)
        )
        return False

    async def _stream_blob(self, source: str, target: str, digest: str, location: str) -> None:
        async with self._exchange(
            "GET", f"/v2/{source}/blobs/{digest}", repository=source, subject=f"blob {digest}"
        ) as response:
            size = response.content_length
            await self._finish_upload(
                target, location, digest, response.content.iter_chunked(_CHUNK), size
            )

    async def _start_upload(self, repository: str, digest: str) -> str:
        async with self._exchange(
            "POST",
            f"/v2/{repository}/blobs/uploads/",
            repository=repository,
            subject=f"blob {digest}",
            ok=(202,),
        ) as response:
            location = response.headers.get("Location")
        if not location:
            raise self._no_location(repository)
        return urljoin(self.base_url, location)

    async def _finish_upload(
        self, repository: str, location: str, digest: str, data: Body, size: int | None
    ) -> None:
        headers = {"Content-Type": "application/octet-stream"}
        if size is not None:
            headers["Content-Length"] = str(size)
        async with self._exchange(
            "PUT",
            _with_query(location, {"digest": digest}),
            repository=repository,
            subject=f"blob {digest}",
            headers=headers,
            data=data,
            ok=(201, 204),
        ):
            pass

    def _no_location(self, repository: str) -> RegistryFailure:
        return RegistryFailure(
            f"registry {self.registry} started an upload to {repository} without a Location",
            registry=self.registry,
            repository=repository,
        )

    # Transport and authentication.

    def _session_for_requests(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._client_timeout)
            self._owns_session = True
        return self._session

    def _basic_header(self) -> str | None:
        if self.username is None:
            return None
        password = self._password.get_secret_value() if self._password else ""
        return basic_authorization(self.username, password)

    @asynccontextmanager
    async def _exchange(
        self,
        method: str,
        path: str,
        *,
        repository: str,
        subject: str,
        headers: Mapping[str, str] | None = None,
        data: Body = None,
        params: Mapping[str, str] | None = None,
        mount_from: str | None = None,
        ok: Collection[int] = (200,),
        missing_ok: bool = False,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request, authenticated, yielding a response whose status is in `ok` (or a
        404 when `missing_ok`); any other final status raises its typed error."""
        url = urljoin(self.base_url, path)
        if params:
            url = _with_query(url, params)
        action_key: _ScopeKey = (repository, action_of(method), mount_from or "")
        replayable = not isinstance(data, AsyncIterable)
        challenge: Challenge | None = None
        # Up to three tries: unauthenticated (the registry says how), then with credentials
        # or a cached token, then with a fresh token if the cached one was refused.
        attempts = 3 if replayable else 1
        for attempt in range(1, attempts + 1):
            authorization, sent = await self._authorization(
                method, repository, mount_from, action_key
            )
            request_headers = dict(headers or {})
            if authorization:
                request_headers["Authorization"] = authorization
            response = await self._send(method, url, request_headers, data, repository)
            try:
                if response.status == 401:
                    challenge = pick_challenge(
                        parse_www_authenticate(response.headers.getall("WWW-Authenticate", []))
                    )
                    retry = challenge is not None and self._adopt(challenge, action_key, sent)
                    if retry and attempt < attempts:
                        await response.read()
                        continue
                if response.status in ok or (missing_ok and response.status == 404):
                    yield response
                    return
                body = b"" if method.upper() == "HEAD" else await self._read_error(response)
                error = error_for_status(
                    response.status,
                    method=method,
                    registry=self.registry,
                    repository=repository,
                    subject=subject,
                    username=self.username if authorization else None,
                    reason=response.reason or "",
                    details=parse_error_body(body),
                    challenge_error=challenge.error if challenge else None,
                    headers=response.headers,
                )
                if error is None:  # a 2xx/3xx the caller did not expect
                    error = RegistryFailure(
                        f"registry {self.registry} answered {response.status} to "
                        f"{method} {subject} in {repository}",
                        registry=self.registry,
                        repository=repository,
                        status=response.status,
                    )
                raise error
            finally:
                response.release()

    async def _read_error(self, response: aiohttp.ClientResponse) -> bytes:
        try:
            return await response.content.read(1 << 16)
        except (aiohttp.ClientError, TimeoutError):
            return b""

    async def _send(
        self, method: str, url: str, headers: dict[str, str], data: Body, repository: str
    ) -> aiohttp.ClientResponse:
        session = self._session_for_requests()
        try:
            return await session.request(
                method,
                url,
                headers=headers,
                data=data,
                timeout=self._client_timeout,
                allow_redirects=method.upper() in ("GET", "HEAD"),
                raise_for_status=False,
            )
        except aiohttp.ClientSSLError as error:
            raise RegistryFailure(
                f"TLS with registry {self.registry} failed: {error}",
                registry=self.registry,
                repository=repository,
            ) from error
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise RegistryUnavailable(
                f"registry {self.registry} is unreachable for {repository}: "
                f"{_describe_connection_error(error, self.timeout)}",
                registry=self.registry,
                repository=repository,
            ) from error

    def _adopt(self, challenge: Challenge, key: _ScopeKey, sent: TokenKey | None) -> bool:
        """Learn from a 401's challenge; True if a retry can succeed."""
        if challenge.scheme == "basic":
            if self.username is None or self._auth == _Auth("basic"):
                return False
            self._auth = _Auth("basic")
            return True
        assert challenge.realm is not None  # pick_challenge only returns Bearer with a realm
        self._auth = _Auth("bearer", challenge.realm, challenge.service)
        scopes = split_scope(challenge.scope)
        if scopes:
            self._scopes[key] = scopes
        if sent is None:
            return True
        self.tokens.discard(sent)
        # A token for exactly the asked scope that lacks rights will not get them on retry;
        # an expired or revoked one (invalid_token) will be replaced.
        asked = token_key(challenge.realm, challenge.service, scopes, self.username)
        return not (challenge.error == "insufficient_scope" and (not scopes or asked == sent))

    async def _authorization(
        self, method: str, repository: str, mount_from: str | None, key: _ScopeKey
    ) -> tuple[str | None, TokenKey | None]:
        auth = self._auth
        if auth is None:
            return None, None
        if auth.scheme == "basic":
            return self._basic_header(), None
        scopes = self._scopes.get(key) or scopes_for(method, repository, mount_from)
        cache_key = token_key(auth.realm, auth.service, scopes, self.username)
        async with self._token_lock:
            token = self.tokens.get(cache_key)
            if token is None:
                token = await self._fetch_token(auth, scopes, repository)
                self.tokens.put(cache_key, token)
        return f"Bearer {token.value}", cache_key

    async def _fetch_token(self, auth: _Auth, scopes: tuple[str, ...], repository: str) -> Token:
        query: list[tuple[str, str]] = []
        if auth.service:
            query.append(("service", auth.service))
        query.extend(("scope", scope) for scope in scopes)
        if self.username:
            query.append(("account", self.username))
        url = urlunsplit(urlsplit(auth.realm)._replace(query=urlencode(query)))
        realm_host = urlsplit(auth.realm).netloc
        headers = {"Accept": "application/json"}
        basic = self._basic_header()
        if basic:
            if insecure_realm(self.base_url, auth.realm):
                raise RegistryFailure(
                    f"registry {self.registry} sends clients to the token server "
                    f"{realm_host} over plain HTTP; refusing to send the credentials of user "
                    f"{self.username} there",
                    registry=self.registry,
                    repository=repository,
                )
            headers["Authorization"] = basic
        session = self._session_for_requests()
        try:
            async with session.get(
                url, headers=headers, timeout=self._client_timeout, raise_for_status=False
            ) as response:
                status, reason = response.status, response.reason or ""
                body = await response.content.read(1 << 20)
        except aiohttp.ClientSSLError as error:
            raise RegistryFailure(
                f"TLS with the token server {realm_host} of registry {self.registry} "
                f"failed: {error}",
                registry=self.registry,
                repository=repository,
            ) from error
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise RegistryUnavailable(
                f"the token server {realm_host} of registry {self.registry} is unreachable "
                f"for {repository}: {_describe_connection_error(error, self.timeout)}",
                registry=self.registry,
                repository=repository,
            ) from error
        failure = error_for_token_status(
            status,
            registry=self.registry,
            token_server=realm_host,
            repository=repository,
            username=self.username,
            reason=reason,
            details=parse_error_body(body),
        )
        if failure is not None:
            raise failure
        try:
            return parse_token_response(body)
        except TokenResponseError as error:
            raise RegistryFailure(
                f"the token server {realm_host} of registry {self.registry} gave no token "
                f"for {repository}: {error}",
                registry=self.registry,
                repository=repository,
            ) from None
