"""The package manifest: `package.json`, or pnpm's `package.json5` / `package.yaml`, read
into one dict, with helpers for the fields the planner looks at."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import json5
import yaml

from pipeline.plan.app import App, InvalidFile

# In the order a manifest is looked for; only pnpm reads the last two.
MANIFESTS = ("package.json", "package.json5", "package.yaml")


@dataclass(frozen=True)
class Manifest:
    file: str  # which of MANIFESTS it is
    data: dict[str, Any]

    @property
    def pnpm_only(self) -> bool:
        return self.file != "package.json"

    def scripts(self) -> dict[str, str]:
        scripts = self.data.get("scripts")
        if not isinstance(scripts, dict):
            return {}
        return {name: value for name, value in scripts.items() if isinstance(value, str)}

    def section(self, key: str) -> dict[str, str]:
        value = self.data.get(key)
        if not isinstance(value, dict):
            return {}
        return {str(name): str(version) for name, version in value.items()}

    def dependencies(self) -> dict[str, str]:
        """Runtime and development dependencies together."""
        return {**self.section("devDependencies"), **self.section("dependencies")}

    def has(self, *names: str) -> bool:
        deps = self.dependencies()
        return any(name in deps for name in names)

    def is_dev_only(self, name: str) -> bool:
        return name in self.section("devDependencies") and name not in self.section("dependencies")

    def engine(self, name: str) -> str | None:
        engines = self.data.get("engines")
        value = engines.get(name) if isinstance(engines, dict) else None
        return value.strip() if isinstance(value, str) and value.strip() else None

    def string(self, key: str) -> str | None:
        value = self.data.get(key)
        return value.strip() if isinstance(value, str) and value.strip() else None


def find_manifest(app: App) -> str | None:
    return app.first_file(*MANIFESTS)


def read_manifest(app: App) -> Manifest:
    """The app's manifest. A file that does not parse raises `InvalidFile`."""
    name = find_manifest(app)
    if name is None:
        raise InvalidFile(f"{app.display('package.json')}: not found")
    if name == "package.json":
        return Manifest(name, app.read_json_object(name))
    text = app.read_text(name)
    try:
        data = json5.loads(text) if name.endswith(".json5") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        reason = re.sub(r"\s+", " ", str(error)).strip()[:200]
        raise InvalidFile(f"{app.display(name)}: does not parse: {reason}") from None
    if not isinstance(data, dict):
        raise InvalidFile(f"{app.display(name)}: expected an object at the top level")
    return Manifest(name, data)


def script_words(script: str) -> list[str]:
    """The commands a script runs: the first word of each `&&`/`;`/`|` part, env
    assignments and `npx`/`exec` skipped."""
    words = []
    for part in re.split(r"&&|\|\||;|\|", script):
        tokens = [token for token in part.split() if not re.match(r"^\w+=", token)]
        while tokens and tokens[0] in ("npx", "exec", "pnpm", "yarn", "bunx", "cross-env"):
            if tokens[0] in ("pnpm", "yarn") and len(tokens) > 1 and tokens[1] in ("exec", "dlx"):
                tokens = tokens[2:]
                continue
            if tokens[0] in ("pnpm", "yarn"):
                break
            tokens = tokens[1:]
        if tokens:
            words.append(tokens[0])
    return words
