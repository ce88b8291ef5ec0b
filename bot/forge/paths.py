"""Which services a change concerns: a service watches its root directory and
`config.watch`; a head commit may ask not to deploy. The same for every forge."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from pipeline.models import Service

SKIP_MARKERS = re.compile(r"\[(skip deploy|deploy skip|skip ci|ci skip)\]", re.IGNORECASE)


def _norm(path: str) -> str:
    path = path.strip().strip("/")
    return "" if path in ("", ".") else path + "/"


def watched(service: Service) -> list[str]:
    """Path prefixes whose change deploys the service: its root directory and
    `config.watch`. An empty prefix is the whole repository."""
    return [_norm(service.root_dir), *(_norm(item) for item in service.options.watch)]


def touches(service: Service, changed: Collection[str] | None) -> bool:
    if changed is None:
        return True  # the payload cannot tell: deploy
    prefixes = watched(service)
    if "" in prefixes:
        return True
    return any(path.startswith(prefix) for path in changed for prefix in prefixes)


def commit_paths(commits: Iterable[Any]) -> frozenset[str]:
    """The paths a push's commits added, modified or removed (as both forges list them)."""
    paths: set[str] = set()
    for commit in commits:
        if not isinstance(commit, Mapping):
            continue
        for key in ("added", "modified", "removed"):
            items = commit.get(key)
            if isinstance(items, list):
                paths.update(item for item in items if isinstance(item, str))
    return frozenset(paths)
