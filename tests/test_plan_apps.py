"""The real apps under tests/apps (made by the frameworks' generators) that the Python, Go,
PHP, static and shell providers plan: each plans, as a web service or a worker as its
check.json says (`http` checks or only `logs`), with no warning left for its authors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.plan import BaseImages, BuildConfig, plan_app

APPS_DIR = Path(__file__).resolve().parent / "apps"
RUNTIMES = {"python", "go", "php", "static", "shell"}
APPS = sorted(
    path.name
    for path in APPS_DIR.iterdir()
    if path.is_dir() and (path / "check.json").is_file() and not (path / "package.json").exists()
) if APPS_DIR.is_dir() else []  # fmt: skip


def test_there_are_apps_for_these_runtimes() -> None:
    assert {"django", "fastapi", "fasthtml", "flask", "uv-app", "uv-package"} <= set(APPS)


@pytest.mark.parametrize("name", APPS)
def test_real_app_plans_as_its_check_expects(name: str) -> None:
    check = json.loads((APPS_DIR / name / "check.json").read_text())
    result = plan_app(APPS_DIR / name, BuildConfig(), BaseImages(mirror="localhost:5000"))
    assert result.ok, result.message
    plan = result.plan
    assert plan is not None and plan.runtime in RUNTIMES
    expected = "web" if check.get("http") else "worker"
    assert plan.kind == expected, plan.evidence
    assert not [m.text for m in plan.messages if m.level == "warning"]
