"""A real Caddy (Debian's package) for release tests: its own process, admin API and
traffic listener on free local ports, state under the test's directory. Installed with
apt-get when the machine does not have it yet."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.infra import free_port

CADDY = "/usr/bin/caddy"
START_TIMEOUT = 30.0


def ensure_caddy() -> str:
    """The caddy binary; apt-get installs the package when it is missing."""
    if shutil.which("caddy") is None and not os.path.exists(CADDY):
        installed = subprocess.run(
            ["apt-get", "install", "-y", "caddy"],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            check=False,
        )
        if installed.returncode != 0:
            raise AssertionError(f"apt-get install caddy failed:\n{installed.stderr[-2000:]}")
    return shutil.which("caddy") or CADDY


class CaddyServer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.admin_port = free_port()
        self.http_port = free_port()  # where click-deploy's server is told to listen
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> CaddyServer:
        binary = ensure_caddy()
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "caddy.json"
        config.write_text(json.dumps({"admin": {"listen": f"127.0.0.1:{self.admin_port}"}}))
        home = str(self.directory)
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": home,
            "XDG_DATA_HOME": home,
            "XDG_CONFIG_HOME": home,
        }
        with open(self.directory / "caddy.log", "ab") as log:
            self.process = subprocess.Popen(
                [binary, "run", "--config", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"caddy did not start:\n{self.log_tail()}")
            time.sleep(0.1)
        return self

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.admin_url + "/config/", timeout=2):
                return True
        except (OSError, urllib.error.URLError):
            return False

    def config(self, path: str = "/config/") -> object:
        with urllib.request.urlopen(self.admin_url + path, timeout=5) as answer:
            return json.loads(answer.read() or b"null")

    def log_tail(self) -> str:
        try:
            return (self.directory / "caddy.log").read_text("utf-8", "replace")[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
