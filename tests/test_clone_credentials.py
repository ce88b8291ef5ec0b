"""Clone credentials reach only the service's own host, and no bot secret reaches git.

Real git against real servers: the service's repository on a smart-HTTP server that needs
the token, "another host" on a second server (another loopback port: host and port differ)
that needs a token too and records every Authorization header, public submodules over
git://. The bot's environment and home directory are loaded with secrets and with git
configuration that would redirect the credentials; none of it may take effect.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from pydantic import SecretStr

from pipeline.clone import CloneAccessDenied, CloneRequest, GitAuth, clone
from pipeline.git_askpass import askpass_for, credential_origin
from tests.support.git_submodules import add_submodule
from tests.support.gitserver import GitDaemon, GitHttpServer

pytest_plugins = ["tests.support.gitserver"]


class RecordingGitHttpServer(GitHttpServer):
    """A git server that also keeps every Authorization header as sent, of any scheme."""

    authorization_headers: list[str]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if "Authorization" in request.headers:
            self.authorization_headers.append(request.headers["Authorization"])
        return await super()._handle(request)


@pytest.fixture
def other_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecordingGitHttpServer]:
    """A second git server: a host the service's credentials must never reach."""
    server = RecordingGitHttpServer(tmp_path_factory.mktemp("other-host"))
    server.authorization_headers = []
    with server:
        yield server


def auth_for(server: GitHttpServer) -> GitAuth:
    return GitAuth("x-access-token", SecretStr(server.token))


def request(server: GitHttpServer, name: str, commit: str, **kwargs: object) -> CloneRequest:
    return CloneRequest(
        url=server.url_for(name),
        commit=commit,
        ref="main",
        auth=auth_for(server),
        submodules=True,
        **kwargs,  # type: ignore[arg-type]
    )


def headers_seen(server: GitHttpServer) -> list[str]:
    return [r.user for r in server.requests if r.user is not None]


async def test_a_submodule_on_another_host_gets_no_credentials(
    git_http: GitHttpServer, other_host: RecordingGitHttpServer, tmp_path: Path
) -> None:
    lib = other_host.create_repo("lib", {"lib.txt": "lib\n"})
    git_http.create_repo("app", {"app.txt": "app\n"})
    commit = add_submodule(git_http.path_for("app"), "lib", other_host.url_for("lib"), lib)

    with pytest.raises(CloneAccessDenied) as failure:
        await clone(request(git_http, "app", commit), tmp_path / "build", print)

    message = str(failure.value)
    assert other_host.base_url in message and "asked for credentials" in message
    assert f"only to {git_http.base_url}" in message
    assert other_host.requests, "git did ask the other host"
    assert other_host.authorization_headers == []  # not one Authorization header
    assert git_http.authorized_requests(), "the service's own host got the token"
    assert git_http.token not in message


async def test_a_submodule_on_the_same_host_gets_them_and_public_ones_need_none(
    git_http: GitHttpServer, git_daemon: GitDaemon, tmp_path: Path
) -> None:
    shared = git_http.create_repo("shared", {"shared.txt": "shared\n"})
    public = git_daemon.create_repo("public", {"public.txt": "public\n"})
    git_http.create_repo("app", {"app.txt": "app\n"})
    app = git_http.path_for("app")
    add_submodule(app, "shared", "../shared.git", shared)  # relative: the same host
    commit = add_submodule(app, "vendor/public", git_daemon.url_for("public"), public)

    cloned = await clone(request(git_http, "app", commit), tmp_path / "build", print)

    assert (cloned.path / "shared" / "shared.txt").read_text() == "shared\n"
    assert (cloned.path / "vendor" / "public" / "public.txt").read_text() == "public\n"
    assert any(r.authorized for r in git_http.requests_for("shared"))


async def test_the_bots_own_git_configuration_cannot_redirect_the_token(
    git_http: GitHttpServer,
    other_host: GitHttpServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The machine's user configuration and git environment variables rewrite the service's
    # URL to the other host, add a header carrying the token and a credential helper.
    commit = git_http.create_repo("app", {"app.txt": "app\n"})
    other_host.create_repo("app", {"app.txt": "evil\n"})
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(
        f'[url "{other_host.base_url}/"]\n\tinsteadOf = {git_http.base_url}/\n'
        f"[http]\n\textraHeader = X-Token: {git_http.token}\n"
        "[credential]\n\thelper = store\n"
    )
    (home / ".git-credentials").write_text(
        f"http://x-access-token:{git_http.token}@127.0.0.1:{other_host.port}\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", f"url.{other_host.base_url}/.insteadOf")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", f"{git_http.base_url}/")
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", f"'http.extraheader=X-Token: {git_http.token}'")

    cloned = await clone(request(git_http, "app", commit), tmp_path / "build", print)

    assert (cloned.path / "app.txt").read_text() == "app\n"
    assert other_host.requests == []


@pytest.mark.parametrize(
    ("service_url", "prompt", "answer"),
    [
        ("https://git.example/a/b.git", "Username for 'https://git.example': ", "x-access-token"),
        (
            "https://git.example/a/b.git",
            "Password for 'https://x-access-token@git.example': ",
            "TOKEN",
        ),
        ("https://git.example:8443/b.git", "Username for 'https://git.example:8443': ", "x-"),
        ("https://Git.Example/a/b.git", "Username for 'https://git.example': ", "x-"),
        ("https://git.example/a/b.git", "Username for 'https://GIT.example': ", "x-"),
        ("https://git.example/a/b.git", "Username for 'http://git.example': ", None),
        ("https://git.example/a/b.git", "Username for 'https://git.example:444': ", None),
        ("https://git.example/a/b.git", "Username for 'https://git.example.evil': ", None),
        ("https://git.example/a/b.git", "Password for 'https://x-access-token@evil': ", None),
        ("https://git.example/a/b.git", "Password for 'https://other@git.example': ", None),
        ("https://git.example/a/b.git", "Username for 'https://a@git.example': ", None),
        ("http://git.example/a/b.git", "Username for 'http://git.example': ", None),
        ("http://127.0.0.1:8080/b.git", "Username for 'http://127.0.0.1:8080': ", "x-"),
        ("git://git.example/b", "Username for 'https://git.example': ", None),
    ],
)
def test_the_askpass_answers_only_the_services_own_origin(
    service_url: str, prompt: str, answer: str | None
) -> None:
    auth = GitAuth("x-access-token", SecretStr("TOKEN"))
    with askpass_for(service_url, auth) as askpass:
        result = subprocess.run(
            [str(askpass.script), prompt],
            env={"PATH": "/usr/bin:/bin", **askpass.env(auth)},
            capture_output=True,
            text=True,
        )
        if answer is None:
            assert result.returncode != 0 and result.stdout == ""
            assert askpass.refused() == [prompt]
        else:
            assert result.returncode == 0 and result.stdout.startswith(answer)
            assert askpass.refused() == []


def test_credential_origin() -> None:
    assert credential_origin("https://u@GitHub.com:443/a.git") == "https://github.com:443"
    assert credential_origin("http://localhost:3000/a.git") == "http://localhost:3000"
    assert credential_origin("http://[::1]:3000/a.git") == "http://[::1]:3000"
    assert credential_origin("http://10.0.0.1/a.git") is None
    assert credential_origin("ssh://git@github.com/a.git") is None
    assert credential_origin("https://[::1/a.git") is None


def loopback_name() -> str:
    """This machine's host name, when it resolves to 127.0.0.1 (where the test servers
    listen): to the credential check it is another machine, since it is not an address."""
    name = socket.gethostname()
    try:
        address = socket.gethostbyname(name)
    except OSError:
        address = ""
    if address != "127.0.0.1" or name == "localhost":
        pytest.skip(f"the host name {name!r} does not resolve to 127.0.0.1 here")
    return name


async def test_plain_http_to_another_machine_gets_no_token_and_says_so(
    git_http: GitHttpServer, tmp_path: Path
) -> None:
    commit = git_http.create_repo("app", {"app.txt": "app\n"})
    url = f"http://{loopback_name()}:{git_http.port}/app.git"
    with pytest.raises(CloneAccessDenied) as failure:
        await clone(
            CloneRequest(url=url, commit=commit, ref="main", auth=auth_for(git_http)),
            tmp_path / "build",
            print,
        )
    assert "only over https" in str(failure.value)
    assert git_http.requests and headers_seen(git_http) == []
