"""gidgethub's aiohttp client, aimed at GITHUB_API_URL, that honours rate limits: a short
`Retry-After` or `x-ratelimit-reset` is waited out once; longer ones raise, and callers
reschedule with `retry_delay`."""

from __future__ import annotations

import time
from collections.abc import Mapping

import aiohttp
import gidgethub
from gidgethub.aiohttp import GitHubAPI
from pydantic import SecretStr

USER_AGENT = "click-deploy"
# Longer waits than this are not slept through inside a request.
_WAIT_INLINE_SECONDS = 5.0


def retry_delay(headers: Mapping[str, str], default: float) -> float:
    """How long GitHub asks us to wait: Retry-After, else until x-ratelimit-reset when
    the quota is spent, else `default`."""
    lowered = {key.lower(): value for key, value in headers.items()}
    after = lowered.get("retry-after")
    if after is not None:
        try:
            return max(0.0, float(after))
        except ValueError:
            pass
    if lowered.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in lowered:
        try:
            return max(0.0, float(lowered["x-ratelimit-reset"]) - time.time())
        except ValueError:
            pass
    return default


def is_rate_limited(error: gidgethub.HTTPException) -> bool:
    status = int(error.status_code)
    lowered = {key.lower(): value for key, value in error.headers.items()}
    return status == 429 or (
        status == 403 and ("retry-after" in lowered or lowered.get("x-ratelimit-remaining") == "0")
    )


class GitHubClient(GitHubAPI):
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        token: SecretStr | None = None,
    ) -> None:
        super().__init__(
            session,
            USER_AGENT,
            oauth_token=token.get_secret_value() if token is not None else None,
            base_url=base_url.rstrip("/"),
        )

    async def handle_rate_limit_error(
        self,
        *,
        method: str,
        url: str,
        exception: gidgethub.HTTPException,
        attempt: int,
    ) -> bool:
        if attempt > 1 or not is_rate_limited(exception):
            return False
        delay = retry_delay(exception.headers, _WAIT_INLINE_SECONDS + 1)
        if delay > _WAIT_INLINE_SECONDS:
            return False
        await self.sleep(delay)
        return True
