"""What a delivery asks for, as data: deployments to queue and things to do once they are
stored (replies, reactions, preview tags to delete). A forge's handlers return one
`DeliveryIntent`; the webhook core stores the delivery and the deployments in one
statement, acknowledges, then runs `after` in the background."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pipeline.models import Service
from pipeline.trigger import Trigger


@dataclass(frozen=True)
class Enqueue:
    service: Service
    environment: str
    ref: str | None
    commit_sha: str | None
    trigger: Trigger


After = Callable[[], Awaitable[None]]


OUTCOME_MAX = 300  # an outcome may quote the payload (an action, say): it stays short


@dataclass
class DeliveryIntent:
    outcome: str
    enqueue: list[Enqueue] = field(default_factory=list)
    after: list[After] = field(default_factory=list)
    status: int = 200

    def __post_init__(self) -> None:
        if len(self.outcome) > OUTCOME_MAX:
            self.outcome = self.outcome[: OUTCOME_MAX - 3] + "..."
