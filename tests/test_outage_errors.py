"""The errors the Survive tests (test_survive_outages.py) meet, classified one by one: a
registry that does not answer a push, and GitHub's 500s and rate limits as the reporter
schedules them."""

from __future__ import annotations

import time
from http import HTTPStatus
from pathlib import Path

import gidgethub
import pytest
from pydantic import SecretStr

from bot.reporting.github import GitHubReporter
from bot.reporting.loop import Outcome, Retry
from pipeline.buildkit.builder import BuildRequest, RegistryCredentials
from pipeline.buildkit.failures import registry_error
from pipeline.errors import TransientError
from pipeline.registry.errors import RegistryAuthError, RegistryUnavailable


def test_a_registry_that_does_not_answer_is_unreachable_and_retried(tmp_path: Path) -> None:
    """What the push's error says: unreachable (no answer) or failed (an answer), both
    retried; a refused login is the user's to fix."""
    request = BuildRequest(
        context_dir=tmp_path,
        dockerfile="FROM scratch\n",
        image="127.0.0.1:9/e2e/web:abc",
        credentials=RegistryCredentials("ci", SecretStr("s3cret-pw")),
    )
    refused = 'Get "http://127.0.0.1:9/v2/": dial tcp 127.0.0.1:9: connect: connection refused'
    down = registry_error("accept 127.0.0.1:9/e2e/web:abc", "127.0.0.1:9", refused, request)
    assert isinstance(down, RegistryUnavailable) and isinstance(down, TransientError)
    assert str(down) == (
        f"registry 127.0.0.1:9 is unreachable, so it could not accept "
        f"127.0.0.1:9/e2e/web:abc: {refused}"
    )
    busy = registry_error(
        "accept it", "127.0.0.1:9", "received unexpected HTTP status: 503", request
    )
    assert isinstance(busy, RegistryUnavailable)
    assert str(busy).startswith("registry 127.0.0.1:9 failed to accept it: ")
    login = registry_error(
        "accept it", "127.0.0.1:9", "unauthorized: authentication required", request
    )
    assert isinstance(login, RegistryAuthError) and not isinstance(login, TransientError)


class _Answering(GitHubReporter):
    """The GitHub reporter's error handling alone: every send gets GitHub's answer."""

    def __init__(self, status: int, headers: dict[str, str]) -> None:  # no session, no pool
        self.error = gidgethub.BadRequest if status < 500 else gidgethub.GitHubBroken
        self.status, self.headers = HTTPStatus(status), headers

    async def send(self, deployment_id: int) -> Outcome:
        raise self.error(self.status, headers=self.headers)


@pytest.mark.parametrize(
    ("status", "headers", "wait"),
    [
        (429, {"Retry-After": "60", "X-RateLimit-Remaining": "4990"}, 60.0),
        (429, {"Retry-After": "7"}, 7.0),
        # A secondary limit that names no time, or a 429 with no headers: a minute.
        (429, {"X-RateLimit-Remaining": "4990", "X-RateLimit-Reset": "9999999999"}, 60.0),
        (429, {}, 60.0),
        (403, {"Retry-After": "30"}, 30.0),
        # A 500: exponential backoff (no time of GitHub's).
        (500, {}, None),
    ],
)
async def test_the_reporter_waits_as_long_as_github_asks(
    status: int, headers: dict[str, str], wait: float | None
) -> None:
    with pytest.raises(Retry) as caught:
        await _Answering(status, headers)(1)
    assert caught.value.seconds == wait
    # A spent quota: until its reset.
    reset = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(time.time()) + 600)}
    with pytest.raises(Retry) as caught:
        await _Answering(403, reset)(1)
    assert caught.value.seconds is not None and 500 < caught.value.seconds <= 600
