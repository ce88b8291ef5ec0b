"""The environment subprocesses get: an allowlist, never the bot's secrets."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pipeline.subprocess_env import minimal_env


def test_secrets_stay_out_and_the_tools_needs_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_PASSWORD", "hunter2-registry")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:db-secret@h/d")
    monkeypatch.setenv("GITHUB_PRIVATE_KEY", "-----BEGIN RSA PRIVATE KEY-----")
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", "hook-secret")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/etc/evil")
    monkeypatch.setenv("HOME", "/root")
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("https_proxy", "http://proxy:3128")
    seen = subprocess.run(
        ["env", "-0"], env=minimal_env({"GIT_TERMINAL_PROMPT": "0"}), capture_output=True
    ).stdout.decode()
    child = dict(item.split("=", 1) for item in seen.split("\0") if item)
    for name in ("REGISTRY_PASSWORD", "DATABASE_URL", "GITHUB_PRIVATE_KEY"):
        assert name not in child
    assert "GITHUB_WEBHOOK_SECRET" not in child and "GIT_CONFIG_GLOBAL" not in child
    assert child["PATH"] == os.environ["PATH"]
    assert child["SSL_CERT_FILE"] == "/etc/ssl/certs/ca-certificates.crt"
    assert child["https_proxy"] == "http://proxy:3128"
    assert child["GIT_TERMINAL_PROMPT"] == "0"
    home = Path(child["HOME"])
    assert home != Path("/root") and home.is_dir() and not any(home.iterdir())
    assert home.stat().st_mode & 0o077 == 0  # only this user
