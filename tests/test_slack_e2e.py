"""Slack end to end with a real build: a signed `/deploy` → a worker with the real
pipeline (git server, planner, the Docker engine's BuildKit, a registry with auth) → the
channel message ends as succeeded with the pushed image and the thread holds the steps."""

from __future__ import annotations

import json

import asyncpg
import pytest

from pipeline.states import Status
from pipeline.store import NewService, Store
from tests import test_deploy_e2e as e2e
from tests import test_slack as slack
from tests.support.fake_slack import FakeSlack
from tests.support.gitserver import GitDaemon
from tests.support.waiting import wait_for_status

pytestmark = pytest.mark.slow

# The fixtures of the two suites this one joins.
build_settings = e2e.build_settings
deployer = e2e.deployer
fake = slack.fake
slack_settings = slack.slack_settings
client = slack.client
slash = slack.slash


async def test_a_slash_command_builds_for_real_and_the_message_ends_succeeded(
    git_daemon: GitDaemon,
    store: Store,
    pool: asyncpg.Pool,
    fake: FakeSlack,
    slash: slack.Slash,
    deployer: e2e.StartDeployer,
) -> None:
    commit = git_daemon.create_repo("slack-static", e2e.example_files("static-index"))
    await store.create_service(
        NewService("slack-static", git_daemon.url_for("slack-static"), "git")
    )
    await deployer()
    assert await slash("slack-static") == 200
    deployment = await slack.only_deployment(pool)
    done = await wait_for_status(
        store, deployment.id, Status.SUCCEEDED, Status.FAILED, timeout=e2e.BUILD_TIMEOUT
    )
    assert done.status == Status.SUCCEEDED, done.error
    image = f"127.0.0.1:5001/e2e/slack-static:{commit[:12]}"
    assert done.image == image
    message = await slack.eventually(lambda: slack.final_message(fake, "succeeded"))
    assert image in message.text and image in json.dumps(message.blocks)
    thread = fake.thread(message)
    await slack.eventually(lambda: "verify: done" in thread[0].text)
    for step in ("clone: done", "plan: done", "build: done", "verify: done"):
        assert step in thread[0].text
