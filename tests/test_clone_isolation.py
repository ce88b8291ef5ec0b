"""What a clone's git processes see and may do: no bot secret in their environment, no
hook, no machine configuration, no submodule protocol that runs a command or reads the
bot host's files. Real git; a `git` wrapper first on PATH records every git process the
clone starts (its arguments and its environment) before running the real one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from pydantic import SecretStr

from pipeline.clone import CloneFailed, CloneRequest, GitAuth, clone
from tests.support.git_submodules import add_submodule
from tests.support.gitserver import GitDaemon, GitHttpServer, make_repo

pytest_plugins = ["tests.support.gitserver"]

BOT_SECRETS = {
    "REGISTRY_PASSWORD": "registry-password-0451",
    "DATABASE_URL": "postgresql://bot:db-password-0451@db/bot",
    "GITHUB_PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY----- app-key-0451",
    "GITHUB_WEBHOOK_SECRET": "webhook-secret-0451",
    "GITLAB_TOKEN": "glpat-0451",
    "SLACK_SIGNING_SECRET": "slack-secret-0451",
    "PAGE_SECRET": "page-secret-0451",
}


def record_git_processes(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put a `git` first on PATH that saves argv and environment per process."""
    records = folder / "records"
    records.mkdir(parents=True)
    wrapper = folder / "bin" / "git"
    wrapper.parent.mkdir()
    real = shutil.which("git")
    wrapper.write_text(
        "#!/bin/sh\n"
        f'out={records}/$$\nprintf "%s\\n" "$*" > "$out.args"\nenv -0 > "$out.env"\n'
        f'exec {real} "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:{os.environ['PATH']}")
    return records


def recorded(records: Path) -> list[tuple[str, dict[str, str]]]:
    processes = []
    for args in sorted(records.glob("*.args")):
        text = args.with_suffix(".env").read_text()
        env = dict(item.split("=", 1) for item in text.split("\0") if "=" in item)
        line = args.read_text().strip()
        if not line.startswith(("http-backend", "upload-pack")):  # the test servers' own
            processes.append((line, env))
    return processes


async def test_git_processes_get_no_bot_secret(
    git_http: GitHttpServer,
    git_daemon: GitDaemon,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in BOT_SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME", str(tmp_path))  # the bot's own home
    lib = git_daemon.create_repo("lib", {"lib.txt": "lib\n"})
    commit = git_http.create_repo("app", {"app.txt": "app\n"})
    app = git_http.path_for("app")
    commit = add_submodule(app, "lib", git_daemon.url_for("lib"), lib)
    records = record_git_processes(tmp_path / "wrapper", monkeypatch)

    cloned = await clone(
        CloneRequest(
            url=git_http.url_for("app"),
            commit=commit,
            ref="main",
            auth=GitAuth("x-access-token", SecretStr(git_http.token)),
            submodules=True,
        ),
        tmp_path / "build",
        print,
    )

    assert (cloned.path / "lib" / "lib.txt").is_file()
    processes = recorded(records)
    assert any(args.startswith("-c") and " fetch " in args for args, _env in processes)
    for args, env in processes:
        everything = "\n".join(f"{key}={value}" for key, value in env.items())
        for secret in BOT_SECRETS.values():
            assert secret not in everything, (args, secret)
        assert env["HOME"] != str(tmp_path) and os.listdir(env["HOME"]) == []
        assert env["GIT_TERMINAL_PROMPT"] == "0"
        # The token is in the environment of fetches only, never of local commands.
        if git_http.token in everything:
            assert " fetch " in args, args


async def test_no_hook_or_machine_configuration_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin = tmp_path / "origin"
    commit = make_repo(origin, {"app.txt": "app\n"})
    marker = tmp_path / "hook-ran"
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for hook in ("post-checkout", "reference-transaction", "post-index-change", "fsmonitor"):
        (hooks / hook).write_text(f"#!/bin/sh\necho {hook} >> {marker}\n")
        (hooks / hook).chmod(0o755)
    template = tmp_path / "template"
    shutil.copytree(hooks, template / "hooks")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(
        f"[core]\n\thooksPath = {hooks}\n\tfsmonitor = {hooks / 'fsmonitor'}\n"
        f"[init]\n\ttemplateDir = {template}\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_TEMPLATE_DIR", str(template))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))

    cloned = await clone(
        CloneRequest(url=f"file://{origin}", commit=commit, ref="main"),
        tmp_path / "build",
        print,
    )

    assert (cloned.path / "app.txt").read_text() == "app\n"
    assert not marker.exists(), marker.read_text()
    assert not (cloned.path / ".git" / "hooks").exists()  # no template was copied


@pytest.mark.parametrize(
    "url",
    [
        "ext::sh -c touch% {marker}",
        "file://{secret}",
        "{secret}",
        "ssh://-oProxyCommand=touch%20{marker}/x",
        "--upload-pack=touch {marker}",
    ],
)
async def test_a_submodule_cannot_run_commands_or_read_the_bots_files(
    url: str, git_daemon: GitDaemon, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    secret = tmp_path / "secret-repo"
    secret_commit = make_repo(secret, {"secret.txt": "the bot host's file\n"})
    commit = git_daemon.create_repo("app", {"app.txt": "app\n"})
    app = git_daemon.path_for("app")
    commit = add_submodule(app, "x", url.format(marker=marker, secret=secret), secret_commit)

    with pytest.raises(CloneFailed, match=r"submodule x: .* is not an https, http or git:// URL"):
        await clone(
            CloneRequest(url=git_daemon.url_for("app"), commit=commit, submodules=True),
            tmp_path / "build",
            print,
        )

    assert not marker.exists()
    assert not (tmp_path / "build" / "x" / "secret.txt").exists()
