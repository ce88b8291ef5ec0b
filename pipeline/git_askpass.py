"""Clone credentials that only the service's own host receives.

git asks GIT_ASKPASS for a username and a password with a prompt that names the URL it is
talking to ("Username for 'https://host:port': ", "Password for 'https://user@host:port':
"). The one-off askpass script written here answers only those two prompts for the exact
scheme, host and port of the service's repository, and only over https (or plain http to a
loopback address, where nothing crosses a network). Every other prompt (a submodule on
another host, a redirect elsewhere, plain http) gets no answer: the script records it and
exits non-zero, so git fails for that repository and the clone can say why.

The password itself is never written to disk: the script reads it from the environment of
the one git process that fetches.
"""

from __future__ import annotations

import contextlib
import ipaddress
import shlex
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import SecretStr

USERNAME_VARIABLE = "CLICK_DEPLOY_GIT_USERNAME"
PASSWORD_VARIABLE = "CLICK_DEPLOY_GIT_PASSWORD"


@dataclass(frozen=True)
class GitAuth:
    """HTTPS credentials: a GitHub App installation token is ("x-access-token", token), a
    GitLab token ("oauth2", token), or any username and password."""

    username: str
    password: SecretStr


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def credential_origin(url: str) -> str | None:
    """The `scheme://host[:port]` git names in its prompts for URL, when credentials may go
    there: https, or plain http to a loopback address. None for anything else."""
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not hostname or scheme not in ("https", "http"):
        return None
    if scheme == "http" and not _is_loopback(hostname):
        return None
    # git describes the host as the URL spells it (port included), without the userinfo;
    # host names are compared without regard to case.
    return f"{scheme}://{parts.netloc.rpartition('@')[2]}".lower()


@dataclass(frozen=True)
class Askpass:
    """The script's path and the file where it records the prompts it refused."""

    script: Path
    refused_log: Path
    origin: str | None

    def refused(self) -> list[str]:
        try:
            text = self.refused_log.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if line]

    def env(self, auth: GitAuth | None) -> dict[str, str]:
        """Environment variables for a git process that may need the credentials."""
        return {
            "GIT_ASKPASS": str(self.script),
            USERNAME_VARIABLE: auth.username if auth else "",
            PASSWORD_VARIABLE: auth.password.get_secret_value() if auth else "",
        }


def _script(origin: str | None, username: str, refused_log: Path) -> str:
    lines = [
        "#!/bin/sh",
        "# Written by click-deploy for one clone: answers only for the service's own host.",
        f"refused={shlex.quote(str(refused_log))}",
    ]
    if origin is not None and username:
        host = origin.split("://", 1)[1]
        scheme = origin.split("://", 1)[0]
        user_prompt = f"Username for '{origin}': ".lower()
        password_prompt = f"Password for '{scheme}://{username}@{host}': ".lower()
        lines += [
            f"user_prompt={shlex.quote(user_prompt)}",
            f"password_prompt={shlex.quote(password_prompt)}",
            "prompt=$(printf '%s' \"$1\" | LC_ALL=C tr '[:upper:]' '[:lower:]')",
            'if [ "$prompt" = "$user_prompt" ]; then',
            f"  printf '%s\\n' \"${USERNAME_VARIABLE}\"; exit 0",
            "fi",
            'if [ "$prompt" = "$password_prompt" ]; then',
            f"  printf '%s\\n' \"${PASSWORD_VARIABLE}\"; exit 0",
            "fi",
        ]
    lines += [
        'printf \'%.500s\\n\' "$1" >> "$refused"',
        "echo 'click-deploy: no credentials for this host' >&2",
        "exit 1",
    ]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def askpass_for(service_url: str, auth: GitAuth | None) -> Iterator[Askpass]:
    """A one-off askpass that answers for SERVICE_URL's host only; removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="click-deploy-askpass-"))
    origin = credential_origin(service_url)
    refused_log = folder / "refused"
    script = folder / "askpass"
    script.write_text(_script(origin, auth.username if auth else "", refused_log))
    script.chmod(stat.S_IRWXU)
    try:
        yield Askpass(script, refused_log, origin)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
