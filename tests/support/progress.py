"""Every "step i of n" a pipeline reports, in order, per deployment: the deployment row
keeps only the latest, and a reader polling it may miss a step."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from pipeline.store import Store

Progress = tuple[int | None, int | None, str | None]  # step, steps total, message


@pytest.fixture
def progress_seen(monkeypatch: pytest.MonkeyPatch) -> dict[int, list[Progress]]:
    seen: dict[int, list[Progress]] = defaultdict(list)
    original = Store.set_progress

    async def recording(
        self: Store,
        deployment_id: int,
        step: int | None,
        steps_total: int | None,
        message: str | None,
        **options: Any,
    ) -> None:
        await original(self, deployment_id, step, steps_total, message, **options)
        seen[deployment_id].append((step, steps_total, message))

    monkeypatch.setattr(Store, "set_progress", recording)
    return seen
