"""End to end: a GitLab Push Hook → a deployment → a real clone over smart HTTP with
GITLAB_TOKEN as the `oauth2` password, BuildKit build and push → the commit status on the
fake GitLab goes pending → running → success, linking to the deployment's page. A merge
request's preview is built for real, shown in the MR note, and its tag leaves the registry
when the merge request is merged."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr

from pipeline.registry import RegistryClient, parse_reference
from pipeline.settings import Settings
from pipeline.states import Status
from pipeline.store import NewService, Store
from tests.support.fake_gitlab import (
    PROJECT_ID,
    PROJECT_PATH,
    TOKEN,
    WEBHOOK_SECRET,
    FakeGitLab,
    merge_request_hook,
    push_hook,
)
from tests.support.gitserver import GitHttpServer
from tests.support.waiting import PATIENCE, wait_for_status
from tests.test_deploy_e2e import BUILD_TIMEOUT, StartDeployer, build_settings, deployer
from tests.test_deploy_e2e import example_files as app_files
from tests.test_gitlab import Post, client, fake, post

pytestmark = pytest.mark.slow
__all__ = ["build_settings", "client", "deployer", "fake", "post"]


@pytest.fixture
def gl_settings(build_settings: Settings, fake: FakeGitLab) -> Settings:
    """The webhook's settings: GitLab's, and the build's registry (previews are deleted)."""
    return build_settings.model_copy(
        update={
            "gitlab_webhook_secret": SecretStr(WEBHOOK_SECRET),
            "gitlab_token": SecretStr(TOKEN),
            "gitlab_api_url": fake.url,
            "report_poll_seconds": 0.05,
            "report_throttle_seconds": 0.0,
            "public_url": "https://deploy.example.com",
        }
    )


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
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while fake.statuses.get((str(PROJECT_ID), commit, "click-deploy/diaspora")) != "success":
        assert asyncio.get_running_loop().time() < deadline, fake.status_posts()
        await asyncio.sleep(0.05)
    last = fake.status_posts()[-1]
    assert last["target_url"].startswith(f"https://deploy.example.com/deployments/{done.id}")
    assert last["description"].startswith("Deployed")
    assert fake.invalid == []


async def test_a_merge_request_preview_is_built_noted_and_deleted_on_merge(
    git_http: GitHttpServer,
    store: Store,
    deployer: StartDeployer,
    gl_settings: Settings,
    post: Post,
    fake: FakeGitLab,
) -> None:
    git_http.token = TOKEN
    commit = git_http.create_repo(PROJECT_PATH, app_files("static-index"))
    await store.create_service(
        NewService("diaspora", PROJECT_PATH, "gitlab", branch="main", config={"previews": True})
    )
    await deployer(gitlab_url=git_http.base_url, gitlab_token=SecretStr(TOKEN))
    payload = merge_request_hook("open", iid=12, sha=commit)
    payload["object_attributes"].update(source_branch="main", target_branch="main")
    status, answer = await post("Merge Request Hook", payload)
    assert status == 200 and answer["deployments"], answer
    done = await wait_for_status(
        store, answer["deployments"][0], Status.SUCCEEDED, Status.FAILED, timeout=BUILD_TIMEOUT
    )
    assert done.status == Status.SUCCEEDED, done.error
    assert done.environment == "mr-12" and done.image
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while not any(str(done.image) in note["body"] for note in fake.mr_notes(12)):
        assert asyncio.get_running_loop().time() < deadline, fake.mr_notes(12)
        await asyncio.sleep(0.05)
    reference = parse_reference(done.image)
    async with RegistryClient(
        gl_settings.registry_url or "",
        gl_settings.registry_username,
        gl_settings.registry_password,
    ) as registry:
        assert await registry.manifest_exists(reference.repository, reference.tag or "")
        merged = merge_request_hook("merge", iid=12, sha=commit)
        merged["object_attributes"].update(source_branch="main", target_branch="main")
        status, answer = await post("Merge Request Hook", merged)
        assert status == 200 and answer["message"] == "preview closed"
        while await registry.manifest_exists(reference.repository, reference.tag or ""):
            assert asyncio.get_running_loop().time() < deadline, "the preview tag is still there"
            await asyncio.sleep(0.1)
    assert fake.invalid == []
