"""Versions from mise.toml and .tool-versions, tool versions, and pins no image exists for."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.plan import App, BaseImages
from pipeline.plan.versions import declared_tool_version
from tests.test_plan import make_app, plan_files, planned

MISE_CASES: list[tuple[dict[str, str], str, str, str]] = [
    ({"main.py": "", "mise.toml": '[tools]\npython = "3.11"\n'}, "python", "3.11", "mise.toml"),
    ({"main.py": "", ".mise.toml": '[tools]\npython = ["3.10", "3.12"]\n'},
     "python", "3.10", ".mise.toml"),
    ({"main.py": "", "mise.toml": '[tools]\npython = { version = "3.9.18" }\n'},
     "python", "3.9", "mise.toml"),
    ({"main.py": "", "mise.toml": '[tools]\npython = "3.11"\n', ".tool-versions": "python 3.10\n"},
     "python", "3.11", "mise.toml"),
    ({"main.py": "", ".python-version": "3.10\n", "mise.toml": '[tools]\npython = "3.11"\n'},
     "python", "3.10", ".python-version"),
    ({"package.json": "{}", "index.js": "", "mise.toml": '[tools]\nnode = "20"\n'},
     "node", "20", "mise.toml"),
    ({"go.mod": "module x\n", "main.go": "package main\n", "mise.toml": '[tools]\ngo = "1.22.3"\n'},
     "go", "1.22", "mise.toml"),
    ({"Gemfile": "", "app.rb": "", ".config/mise.toml": '[tools]\nruby = "3.2"\n'},
     "ruby", "3.2", ".config/mise.toml"),
    ({"index.php": "", "mise.toml": '[tools]\n"core:php" = "8.2"\n'}, "php", "8.2", "mise.toml"),
]  # fmt: skip


@pytest.mark.parametrize(("files", "runtime", "version", "source"), MISE_CASES)
def test_mise_toml_gives_the_runtime_version(
    tmp_path: Path, files: dict[str, str], runtime: str, version: str, source: str
) -> None:
    plan = planned(plan_files(tmp_path, files))
    assert (plan.runtime, plan.version) == (runtime, version)
    assert any(line.startswith(f"{source}: {runtime} {version}") for line in plan.evidence)


def test_mise_toml_without_a_version_is_a_warning(tmp_path: Path) -> None:
    files = {"main.py": "", "mise.toml": '[tools]\npython = "latest"\n'}
    plan = planned(plan_files(tmp_path, files))
    assert plan.version == "3.13"
    assert any(m.level == "warning" and "mise.toml says python" in m.text for m in plan.messages)


def test_broken_mise_toml_names_the_file(tmp_path: Path) -> None:
    result = plan_files(tmp_path, {"main.py": "", "mise.toml": "[tools\n"})
    assert not result.ok and (result.message or "").startswith("mise.toml: invalid TOML")


@pytest.mark.parametrize(
    ("files", "tool", "expected"),
    [
        ({"mise.toml": '[tools]\npnpm = "latest"\nnode = "22"\n'}, "pnpm",
         ("latest", "mise.toml")),
        ({"mise.toml": '[tools]\n"npm:pnpm" = "9.12.1"\n'}, "pnpm", ("9.12.1", "mise.toml")),
        ({".tool-versions": "nodejs 22\npnpm 8.15.4\n"}, "pnpm", ("8.15.4", ".tool-versions")),
        ({"mise.toml": '[tools]\nuv = "0.5"\n', ".tool-versions": "uv 0.4\n"}, "uv",
         ("0.5", "mise.toml")),
        ({".tool-versions": "nodejs 20.1.0\n"}, "node", ("20.1.0", ".tool-versions")),
        ({"mise.toml": '[tools]\nbun = "v1.1.3"\n'}, "bun", ("1.1.3", "mise.toml")),
        ({"mise.toml": '[tools]\nnode = "22"\n'}, "pnpm", None),
        ({}, "yarn", None),
    ],
)  # fmt: skip
def test_declared_tool_version(
    tmp_path: Path, files: dict[str, str], tool: str, expected: tuple[str, str] | None
) -> None:
    found = declared_tool_version(App(make_app(tmp_path, files)), tool)
    assert (None if found is None else (found.value, found.source)) == expected


def test_python_older_than_any_image_is_the_oldest_with_a_warning(tmp_path: Path) -> None:
    files = {"main.py": "", "mise.toml": '[tools]\npython = "3.7"\n'}
    plan = planned(plan_files(tmp_path, files))
    assert plan.version == "3.8"
    assert "FROM python:3.8-slim" in plan.dockerfile
    warning = next(m.text for m in plan.messages if m.level == "warning")
    assert warning.startswith("python 3.7 (mise.toml) is not available here")
    assert "BASE_IMAGE_PYTHON" in warning and "3.8 is used" in warning
    assert "mise.toml: python 3.7 asked for; 3.8 used, the oldest image" in plan.evidence


def test_an_image_override_takes_the_old_version_as_it_is(tmp_path: Path) -> None:
    images = BaseImages(overrides={"python": "my/python:{version}"})
    plan = planned(plan_files(tmp_path, {"main.py": "", ".python-version": "3.7"}, images=images))
    assert plan.version == "3.7" and "FROM my/python:3.7" in plan.dockerfile
    assert not any("not available" in m.text for m in plan.messages)
