"""End to end: a signed GitHub delivery → a deployment → a real clone (with an
installation token from the fake GitHub), BuildKit build and push → the check run,
commit status and PR comment on the fake GitHub, checked against GitHub's OpenAPI."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import NewService, Store
from tests.support.fake_github import FakeGitHub
from tests.support.github_hooks import example
from tests.support.gitserver import GitDaemon
from tests.support.waiting import PATIENCE, wait_for_status
from tests.test_deploy_e2e import BUILD_TIMEOUT, StartDeployer, build_settings, deployer
from tests.test_deploy_e2e import example_files as app_files
from tests.test_github import (
    INSTALLATION,
    REPO,
    Post,
    client,
    examples_path,
    fake,
    gh_settings,
    github_openapi,
    post,
)

pytestmark = pytest.mark.slow
__all__ = [
    "build_settings",
    "client",
    "deployer",
    "examples_path",
    "fake",
    "gh_settings",
    "github_openapi",
    "post",
]


async def wait_check_run(fake: FakeGitHub, timeout: float = PATIENCE) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        state = fake.latest_check_run()
        if state.get("status") == "completed":
            return state
        assert asyncio.get_running_loop().time() < deadline, state
        await asyncio.sleep(0.05)


async def wait_deployment_state(fake: FakeGitHub, state: str, timeout: float = PATIENCE) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    pattern = r"/repos/[^/]+/[^/]+/deployments/\d+/statuses"
    while not [c for c in fake.calls("POST", pattern) if c.body["state"] == state]:
        assert asyncio.get_running_loop().time() < deadline, fake.calls("POST", pattern)
        await asyncio.sleep(0.05)


async def start(deployer: StartDeployer, gh_settings: Settings, git_daemon: GitDaemon) -> None:
    await deployer(
        github_url=f"git://127.0.0.1:{git_daemon.port}",
        github_app_id=gh_settings.github_app_id,
        github_private_key=gh_settings.github_private_key,
        github_api_url=gh_settings.github_api_url,
    )


async def test_a_pull_request_preview_is_built_and_reported(
    git_daemon: GitDaemon,
    store: Store,
    deployer: StartDeployer,
    gh_settings: Settings,
    post: Post,
    fake: FakeGitHub,
    examples_path: Path,
) -> None:
    commit = git_daemon.create_repo(REPO, app_files("python-pip-flask"))
    await store.create_service(
        NewService("hello", REPO, "github", branch="main", config={"previews": True})
    )
    await start(deployer, gh_settings, git_daemon)
    payload = example(examples_path, "pull_request", 0, installation=INSTALLATION)
    payload["pull_request"]["base"]["ref"] = "main"
    payload["pull_request"]["head"].update(sha=commit, ref="main")
    status, answer = await post("pull_request", payload)
    assert status == 200, answer
    done = await wait_for_status(
        store, answer["deployments"][0], Status.SUCCEEDED, Status.FAILED, timeout=BUILD_TIMEOUT
    )
    assert done.status == Status.SUCCEEDED, done.error
    check = await wait_check_run(fake)
    assert check["conclusion"] == "success"
    assert check["head_sha"] == commit and check["external_id"] == str(done.id)
    assert "| clone | done |" in check["output"]["summary"]
    assert check["details_url"].startswith(f"https://deploy.example.com/deployments/{done.id}")
    # The App's installation token was asked for (the clone's credentials).
    assert fake.calls("POST", r"/app/installations/42/access_tokens")
    # The commit status, PR comment and GitHub Deployment follow the check run in that order.
    await wait_deployment_state(fake, "success")
    comment = fake.pr_comment()
    assert comment is not None and str(done.image) in comment
    statuses = fake.calls("POST", rf"/repos/{REPO}/statuses/{commit}")
    assert statuses[-1].body["state"] == "success"
    assert statuses[-1].body["context"].startswith("click-deploy/hello")
    assert fake.invalid == []


async def test_a_failing_build_reports_the_step_and_its_log(
    git_daemon: GitDaemon,
    store: Store,
    deployer: StartDeployer,
    gh_settings: Settings,
    post: Post,
    fake: FakeGitHub,
    examples_path: Path,
) -> None:
    dockerfile = "FROM 127.0.0.1:5000/library/debian:bookworm\nRUN echo doomed-build && exit 3\n"
    commit = git_daemon.create_repo(REPO, {"Dockerfile": dockerfile})
    await store.create_service(NewService("hello", REPO, "github", branch="main"))
    await start(deployer, gh_settings, git_daemon)
    payload = example(examples_path, "push", 4, installation=INSTALLATION)
    payload.update(ref="refs/heads/main", after=commit)
    status, answer = await post("push", payload)
    assert status == 200 and answer["deployments"], answer
    done = await wait_for_status(
        store, answer["deployments"][0], Status.SUCCEEDED, Status.FAILED, timeout=BUILD_TIMEOUT
    )
    assert done.status == Status.FAILED
    check = await wait_check_run(fake)
    assert check["conclusion"] == "failure"
    assert "Failing step: **build**" in check["output"]["summary"]
    assert "doomed-build" in check["output"]["text"]
    await wait_deployment_state(fake, "failure")
    assert fake.invalid == []
