"""What every forge's handlers use, passed in (never globals): each forge's context adds
its own clients to these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import asyncpg

from bot.runtime import Runtime
from pipeline.queue.queue import Queue
from pipeline.settings import Settings
from pipeline.store import Store


@dataclass
class HandlerContext:
    settings: Settings
    pool: asyncpg.Pool
    store: Store
    queue: Queue
    delivery_id: str

    @classmethod
    def of(cls, runtime: Runtime, delivery_id: str, **own: Any) -> Self:
        """The context of one delivery; `own`: the forge's own fields."""
        return cls(
            settings=runtime.settings,
            pool=runtime.pool,
            store=runtime.store,
            queue=runtime.queue,
            delivery_id=delivery_id,
            **own,
        )
