"""Through a real worker: a clone the bot refuses ends the deployment failed with one
message a person can act on (the setting and the size; the host that asked for
credentials), and nothing is left in the build directory."""

from __future__ import annotations

import pytest

from pipeline.models import Status
from pipeline.queue.queue import Queue
from pipeline.settings import Settings
from pipeline.store import Store
from tests.support.git_submodules import add_submodule
from tests.support.gitserver import GitDaemon, GitHttpServer
from tests.test_deploy_e2e import (  # the e2e module's worker fixtures, shared
    StartDeployer,
    add_service,
    assert_build_dir_gone,
    build_settings,
    deployer,
    fail_with,
)

pytest_plugins = ["tests.support.gitserver"]
pytestmark = pytest.mark.slow
__all__ = ["build_settings", "deployer"]  # fixtures, used by name

MB = 1024**2


async def test_a_checkout_over_clone_max_megabytes_fails_the_deployment(
    git_daemon: GitDaemon,
    store: Store,
    queue: Queue,
    build_settings: Settings,
    deployer: StartDeployer,
) -> None:
    commit = git_daemon.create_repo(
        "bomb", {"Dockerfile": "FROM scratch\nCOPY . /\n", "big.bin": bytes(3 * MB)}
    )
    service_id = await add_service(store, "bomb", git_daemon.url_for("bomb"))
    await deployer(clone_max_megabytes=1)
    done = await fail_with(store, queue, service_id, commit)
    assert done.status == Status.FAILED and done.error is not None
    assert done.error.startswith("clone failed: the checkout is 3.1 MB, over CLONE_MAX_MEGABYTES=1")
    await assert_build_dir_gone(build_settings)


async def test_a_submodule_on_another_host_fails_the_deployment_without_the_token(
    git_http: GitHttpServer,
    store: Store,
    queue: Queue,
    build_settings: Settings,
    deployer: StartDeployer,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with GitHttpServer(tmp_path_factory.mktemp("other-host")) as other:
        lib = other.create_repo("lib", {"lib.txt": "lib\n"})
        git_http.create_repo("app", {"Dockerfile": "FROM scratch\nCOPY . /\n"})
        commit = add_submodule(git_http.path_for("app"), "lib", other.url_for("lib"), lib)
        service_id = await add_service(store, "app", git_http.url_for("app"), submodules=True)
        await deployer(git_token=git_http.token)
        done = await fail_with(store, queue, service_id, commit)
    assert done.error is not None
    assert done.error.startswith(
        f"clone failed: cannot fetch submodule lib from {other.url_for('lib')}: "
        f"{other.base_url} asked for credentials; "
    )
    assert f"only to {git_http.base_url}" in done.error
    assert other.requests and not [r for r in other.requests if r.user is not None]
    assert git_http.token not in done.error
    await assert_build_dir_gone(build_settings)
