"""scripts/newcomer's own logic: what the container is given, and how a run is summarised.

The full run (the whole suite in a fresh Debian 12 container) is the script's job, not this
file's; these tests check the parts that decide what it does."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "newcomer"


def load_script() -> ModuleType:
    loader = SourceFileLoader("cd_newcomer_script", str(SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module  # dataclasses look their module up
    loader.exec_module(module)
    return module


newcomer = load_script()

EVERY_CAPABILITY = (1 << len(newcomer.CAPABILITIES)) - 1
SYS_RESOURCE, SYS_BOOT = 24, 22
WITHOUT_SYS_RESOURCE = EVERY_CAPABILITY & ~(1 << SYS_RESOURCE)


def test_a_machine_with_every_capability_runs_the_container_privileged() -> None:
    assert newcomer.privilege_arguments(EVERY_CAPABILITY) == ["--privileged"]


def test_a_machine_without_some_capabilities_gives_every_other_one_and_lifts_the_confinement() -> (
    None
):
    # --privileged on such a machine fails in runc ("unable to apply caps").
    arguments = newcomer.privilege_arguments(WITHOUT_SYS_RESOURCE & ~(1 << SYS_BOOT))
    assert "--privileged" not in arguments
    drops = [arguments[i + 1] for i, a in enumerate(arguments) if a == "--cap-drop"]
    assert drops == ["SYS_BOOT", "SYS_RESOURCE"]
    assert arguments[:2] == ["--cap-add", "ALL"]
    for option in ("seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"):
        assert arguments[arguments.index(option) - 1] == "--security-opt"
    assert arguments[-2:] == ["--device-cgroup-rule", "a *:* rwm"]


def test_the_bounding_set_is_read_from_proc_status() -> None:
    status = "Name:\tpython3\nCapPrm:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\n"
    mask = newcomer.bounding_mask(status)
    assert mask == 0x1FFFEFFFFFF
    assert "SYS_RESOURCE" not in newcomer.capabilities_of(mask)
    assert "SYS_ADMIN" in newcomer.capabilities_of(mask)
    with pytest.raises(newcomer.Refusal, match="CapBnd"):
        newcomer.bounding_mask("Name:\tpython3\n")


def test_this_machines_own_status_parses() -> None:
    mask = newcomer.bounding_mask(Path("/proc/self/status").read_text())
    assert "CHOWN" in newcomer.capabilities_of(mask)


PIP_CONFIG_LIST = """\
:env:.cert='/etc/ssl/certs/ca-certificates.crt'
:env:.default-timeout='180'
:env:.find-links='/opt/wheels'
global.cert='/somewhere/else/ca.pem'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple https://pypi.example.com/simple'
global.find-links='/opt/wheels'
global.index-url='https://mirror.example.com/pypi/simple'
"""


def test_pip_keeps_how_to_reach_an_index_and_leaves_this_machines_caches() -> None:
    settings = newcomer.pip_network_settings(
        PIP_CONFIG_LIST, {"PIP_RETRIES": "3", "PIP_FIND_LINKS": "/opt/wheels", "HOME": "/root"}
    )
    assert settings == {
        # Every certificate is the machine's bundle, which the container gets at this path.
        "cert": "/etc/ssl/certs/ca-certificates.crt",
        "default-timeout": "180",
        "extra-index-url": "https://pypi.example.com/simple",
        "index-url": "https://mirror.example.com/pypi/simple",
        "retries": "3",
    }


def test_pip_with_only_local_indexes_gets_no_index_setting() -> None:
    settings = newcomer.pip_network_settings(
        "global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'\n", {}
    )
    assert settings == {}


def test_npm_keeps_registry_ca_and_proxy_and_never_a_token() -> None:
    settings = newcomer.npm_network_settings(
        [
            "fund=false\ncafile=/etc/ssl/certs/ca-certificates.crt\nregistry=https://a/\n",
            "; comment\n@team:registry=https://npm.example.com/\n"
            "//npm.example.com/:_authToken=npm_secret\nhttps-proxy=http://proxy:3128\n"
            "registry=https://b/\n",
        ]
    )
    assert settings == {
        "cafile": "/etc/ssl/certs/ca-certificates.crt",
        "registry": "https://b/",
        "@team:registry": "https://npm.example.com/",
        "https-proxy": "http://proxy:3128",
    }
    assert "npm_secret" not in repr(settings)


def test_apt_settings_that_configure_downloads_are_given() -> None:
    assert newcomer.apt_download_settings('Acquire::Check-Valid-Until "false";\n')
    assert not newcomer.apt_download_settings('APT::Install-Recommends "false";\n')


SUITE_LOG = """\
== pytest
tests/test_a.py ....s
=========================== short test summary info ============================
SKIPPED [1] tests/test_a.py:3: npm is not installed
= 582 passed, 1 failed, 43 skipped, 1 error, 3 warnings in 2401.52s (0:40:01) =
newcomer: scripts/test exited 1 after 2600 s
"""


def test_the_counts_come_from_pytests_last_summary_line() -> None:
    counts, line = newcomer.pytest_counts("== 3 passed in 1.00s ==\n" + SUITE_LOG)
    assert counts == {"passed": 582, "failed": 1, "skipped": 43, "errors": 1, "warnings": 3}
    assert line.startswith("= 582 passed")


def test_a_run_without_a_pytest_summary_has_no_counts_and_fails() -> None:
    log = "== ruff\nE501 Line too long\n"
    summary = newcomer.summarise(log, 1, 150.0, "2026-12-03 07:00 UTC", "abc123def4567890")
    assert summary.outcome == "FAIL"
    assert summary.counts == {}
    assert summary.minutes == 2.5
    line = newcomer.summary_line(summary)
    assert line.startswith("newcomer: FAIL: scripts/test exited 1; no pytest summary; 2.5 min")
    assert "abc123def456" in line


def test_a_green_run_passes() -> None:
    summary = newcomer.summarise("= 10 passed in 3.00s =\n", 0, 60.0, "d", "c")
    assert (summary.outcome, summary.counts) == ("PASS", {"passed": 10})


def test_arguments_reach_scripts_test_quoted_and_ci_is_asked_for() -> None:
    script = newcomer.inside_script(["-k", "queue and not slow"], ci=True)
    assert "CI=true scripts/test -k 'queue and not slow'" in script
    assert "CI=true" not in newcomer.inside_script([], ci=False)
    assert f"cd {newcomer.CHECKOUT}\n" in script


def test_no_engine_is_one_line_with_what_to_do() -> None:
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr == (
        "newcomer: ERROR: no Docker engine answers on unix:///nonexistent/docker.sock "
        "(run: scripts/infra up)\n"
    )
