"""The recorded BuildKit output is in the repository and is what its recorder makes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from pipeline.buildkit.trace import TRACE_ID, decode_trace

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REPO = FIXTURES.parents[1]


def recorder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("record", FIXTURES / "record_engine_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def step_names(name: str) -> list[str]:
    names = []
    for line in (FIXTURES / "docker-engine-build" / name).read_text().splitlines():
        item = json.loads(line)
        if item.get("id") == TRACE_ID:
            names += [vertex.name for vertex in decode_trace(item["aux"]).vertexes]
    return names


@pytest.mark.parametrize(
    ("fixture", "dockerfile"),
    [("success.jsonl", "SUCCESS"), ("failure-run-exit3.jsonl", "FAILURE")],
)
def test_the_engine_recordings_are_of_the_recorders_dockerfiles(
    fixture: str, dockerfile: str
) -> None:
    text: str = getattr(recorder(), dockerfile)
    runs = [line for line in text.splitlines() if line.startswith(("RUN ", "COPY "))]
    names = step_names(fixture)
    for run in runs:
        assert any(name.endswith("] " + run) for name in names), (run, names)


def test_every_fixture_the_tests_read_is_in_the_repository() -> None:
    expected = {
        "buildctl-rawjson": {
            "success-fresh.jsonl",
            "success-cached.jsonl",
            "failure-run-exit3.jsonl",
            "failure-missing-base.jsonl",
        },
        "docker-engine-build": {"success.jsonl", "failure-run-exit3.jsonl"},
    }
    for folder, files in expected.items():
        assert {path.name for path in (FIXTURES / folder).iterdir()} >= files
    # Nothing reads the recordings from beside the checkout any more.
    outside = ("/".join(("shared", "fixtures")), " / ".join(('"shared"', '"fixtures"')))
    for test_file in (REPO / "tests").rglob("*.py"):
        text = test_file.read_text()
        assert not any(pattern in text for pattern in outside), test_file
