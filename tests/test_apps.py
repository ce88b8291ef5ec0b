"""One generated app per family (tests/apps/) built like every deployment: a real worker
clones it from a git daemon, plans it, builds it with the engine's BuildKit and pushes it;
the image runs with PORT set and answers its check.json; a source-only change rebuilds it
without re-running the dependency install. The whole corpus runs from scripts/corpus, with
the same code (bench/corpus.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.corpus import APPS_DIR, load_apps, session
from tests.support.infra import TargetRegistry

pytest_plugins = ["tests.support.infra"]

# The cheapest app of each family the planner must get right (Vite SPA, Next.js static
# export, Django, a uv console script, Bun's module entry, a start.sh worker, a Staticfile
# SPA), not the whole corpus: CI's clock.
SUITE = (
    "vite-react-ts",
    "next-export",
    "django",
    "uv-package",
    "bun",
    "shell-start",
    "static-staticfile",
)
APPS = {app.name: app for app in load_apps()}


def test_every_app_has_a_valid_check_and_the_suite_names_real_apps() -> None:
    folders = {p.name for p in APPS_DIR.iterdir() if p.is_dir()}
    assert set(APPS) == folders
    assert set(SUITE) <= set(APPS)


@pytest.mark.parametrize("name", SUITE)
async def test_generated_app_builds_runs_answers_and_rebuilds_from_the_cache(
    name: str,
    server_url: str,
    docker_engine: str,
    mirror_registry: str,
    target_registry: TargetRegistry,
    tmp_path: Path,
) -> None:
    app = APPS[name]
    async with session(server_url, tmp_path) as corpus:
        outcome = await corpus.check_app(app)
    assert outcome.passed, f"{name} ({outcome.runtime}): {outcome.reason}\n{outcome.log_tail}"
    assert outcome.install_cached is not False
