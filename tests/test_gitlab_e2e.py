"""End to end: a GitLab Push Hook → a deployment → a real clone over smart HTTP with
GITLAB_TOKEN as the `oauth2` password, BuildKit build and push → the commit status on the
fake GitLab goes pending → running → success, linking to the deployment's page."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr

from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import NewService, Store
from tests.support.fake_gitlab import PROJECT_ID, PROJECT_PATH, TOKEN, FakeGitLab, push_hook
from tests.support.gitserver import GitHttpServer
from tests.support.waiting import wait_for_status
from tests.test_deploy_e2e import BUILD_TIMEOUT, StartDeployer, build_settings, deployer
from tests.test_deploy_e2e import example_files as app_files
from tests.test_gitlab import Post, client, fake, gl_settings, post

pytestmark = pytest.mark.slow
__all__ = ["build_settings", "client", "deployer", "fake", "gl_settings", "post"]


async def test_a_push_is_cloned_with_the_token_built_and_reported(
    git_http: GitHttpServer,
    store: Store,
    deployer: StartDeployer,
    gl_settings: Settings,
    post: Post,
    fake: FakeGitLab,
) -> None:
    commit = git_http.create_repo(PROJECT_PATH, app_files("static-index"))
    # One GITLAB_TOKEN for the API and for cloning, as in production.
    git_http.token = TOKEN
    await store.create_service(NewService("diaspora", PROJECT_PATH, "gitlab", branch="main"))
    await deployer(gitlab_url=git_http.base_url, gitlab_token=SecretStr(TOKEN))
    status, answer = await post("Push Hook", push_hook(ref="refs/heads/main", after=commit))
    assert status == 200 and answer["deployments"], answer
    done = await wait_for_status(
        store, answer["deployments"][0], Status.SUCCEEDED, Status.FAILED, timeout=BUILD_TIMEOUT
    )
    assert done.status == Status.SUCCEEDED, done.error
    assert any(r.user == "oauth2" for r in git_http.authorized_requests())
    deadline = asyncio.get_running_loop().time() + 30
    while fake.statuses.get((str(PROJECT_ID), commit, "click-deploy/diaspora")) != "success":
        assert asyncio.get_running_loop().time() < deadline, fake.status_posts()
        await asyncio.sleep(0.05)
    last = fake.status_posts()[-1]
    assert last["target_url"].startswith(f"https://deploy.example.com/deployments/{done.id}")
    assert last["description"].startswith("Deployed")
    assert fake.invalid == []
