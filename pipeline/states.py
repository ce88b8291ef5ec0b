"""The deployment state machine (DESIGN.md). The database enforces the same table."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    QUEUED = "queued"
    CLONING = "cloning"
    BUILDING = "building"
    PUSHING = "pushing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"

    @property
    def is_active(self) -> bool:
        return self in ACTIVE

    @property
    def is_final(self) -> bool:
        return self in FINAL


ACTIVE = frozenset({Status.CLONING, Status.BUILDING, Status.PUSHING})
FINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.SUPERSEDED})

# A running deployment can also be handed back to the queue (a retry, a lost worker, a
# shutdown), and is superseded instead when a newer request for its target already waits.
_HAND_BACK = {Status.QUEUED, Status.SUPERSEDED}

TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset({Status.CLONING, Status.SUPERSEDED, Status.CANCELLED}),
    Status.CLONING: frozenset({Status.BUILDING, Status.FAILED, Status.CANCELLED} | _HAND_BACK),
    Status.BUILDING: frozenset({Status.PUSHING, Status.FAILED, Status.CANCELLED} | _HAND_BACK),
    Status.PUSHING: frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED} | _HAND_BACK),
    Status.SUCCEEDED: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELLED: frozenset(),
    Status.SUPERSEDED: frozenset(),
}


def can_transition(current: Status, new: Status) -> bool:
    return new in TRANSITIONS[current]


def sources_of(new: Status) -> list[str]:
    """The states from which `new` may be entered (for a guarded UPDATE)."""
    return [str(state) for state, targets in TRANSITIONS.items() if new in targets]
