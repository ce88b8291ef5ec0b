"""Smoke tests: the build infrastructure and the git transports are real and work."""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.support.gitserver import GitDaemon, GitHttpServer, git, git_env
from tests.support.infra import TargetRegistry, docker, http_status, run_container_and_get

pytest_plugins = ["tests.support.infra", "tests.support.gitserver"]


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_engine_builds_from_mirror_and_runs_over_host_network(
    docker_engine: str, mirror_registry: str, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text(
        f"FROM {mirror_registry}/library/python:3.11-slim-bookworm\n"
        "RUN mkdir /srv/site && python -c \"print('built by buildkit')\" > /srv/site/index.html\n"
        "WORKDIR /srv/site\n"
        'CMD ["sh", "-c", "exec python -m http.server --bind 127.0.0.1 $PORT"]\n'
    )
    tag = f"cd-infra-smoke:{uuid.uuid4().hex[:12]}"
    build = docker(
        "build", "--network", "host", "--progress", "plain", "-t", tag, str(tmp_path),
        env={"DOCKER_BUILDKIT": "1"},
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    try:
        status, body = run_container_and_get(tag, path="/index.html")
        assert (status, body.strip()) == (200, "built by buildkit")
    finally:
        docker("rmi", "-f", tag)


def test_target_registry_requires_the_password(target_registry: TargetRegistry) -> None:
    catalog = f"{target_registry.url}/v2/_catalog"
    assert http_status(catalog) == 401
    assert http_status(catalog, headers=_basic(target_registry.user, "wrong")) == 401
    good = _basic(target_registry.user, target_registry.password)
    assert http_status(catalog, headers=good) == 200
    request = urllib.request.Request(catalog, headers=good)
    with urllib.request.urlopen(request, timeout=10) as response:
        assert "repositories" in json.loads(response.read())


def test_clone_by_sha_over_git_daemon(git_daemon: GitDaemon, tmp_path: Path) -> None:
    first = git_daemon.create_repo("app", {"README.md": "one\n", "src/main.py": "print(1)\n"})
    second = git_daemon.commit("app", {"README.md": "two\n"}, "second")
    clone = tmp_path / "clone"
    clone.mkdir()
    git("init", "-q", str(clone))
    git("remote", "add", "origin", git_daemon.url_for("app"), cwd=clone)
    # An older commit, not a branch tip: needs uploadpack.allowAnySHA1InWant.
    git("fetch", "-q", "--depth", "1", "origin", first, cwd=clone)
    git("checkout", "-q", "FETCH_HEAD", cwd=clone)
    assert git("rev-parse", "HEAD", cwd=clone).stdout.strip() == first
    assert (clone / "README.md").read_text() == "one\n"
    assert (clone / "src" / "main.py").exists()
    git("fetch", "-q", "--depth", "1", "origin", second, cwd=clone)
    assert git("rev-parse", "FETCH_HEAD", cwd=clone).stdout.strip() == second


@pytest.mark.parametrize("user", ["x-access-token", "oauth2"])
def test_clone_over_http_needs_the_token(
    git_http: GitHttpServer, tmp_path: Path, user: str
) -> None:
    first = git_http.create_repo("svc", {"app.py": "print('hi')\n"})
    head = git_http.commit("svc", {"app.py": "print('hello')\n"}, "second")

    clone = tmp_path / "clone"
    git("clone", "-q", "--depth", "1", git_http.authed_url_for("svc", user=user), str(clone))
    assert git("rev-parse", "HEAD", cwd=clone).stdout.strip() == head
    git("fetch", "-q", "--depth", "1", "origin", first, cwd=clone)
    assert git("rev-parse", "FETCH_HEAD", cwd=clone).stdout.strip() == first
    served = git_http.requests_for("svc")
    assert any(r.authorized and r.user == user for r in served)
    assert all(not r.path.endswith("upload-pack") or r.authorized for r in served)

    wrong_token = "ghs_wrong_" + uuid.uuid4().hex
    failed = subprocess.run(
        [
            "git",
            "clone",
            "-q",
            git_http.authed_url_for("svc", token=wrong_token),
            str(tmp_path / "x"),
        ],
        env=git_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert failed.returncode != 0
    assert "Authentication failed" in failed.stderr
    assert wrong_token not in failed.stderr and git_http.token not in failed.stderr
    assert not (tmp_path / "x" / "app.py").exists()
    assert any(r.user == "x-access-token" and not r.authorized for r in git_http.requests)


def test_http_refuses_other_users_and_anonymous(git_http: GitHttpServer) -> None:
    git_http.create_repo("svc", {"a": "b"})
    refs = f"{git_http.url_for('svc')}/info/refs?service=git-upload-pack"
    assert http_status(refs) == 401
    assert http_status(refs, headers=_basic("someone", git_http.token)) == 401
    assert http_status(refs, headers=_basic("oauth2", git_http.token)) == 200
    request = urllib.request.Request(refs)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    with refused.value:
        assert refused.value.headers["WWW-Authenticate"] == 'Basic realm="git"'
