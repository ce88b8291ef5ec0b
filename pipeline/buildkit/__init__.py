"""BuildKit: build a context into an image and push it, through a Docker engine or a
standalone buildkitd, reporting progress as `events`."""

from pipeline.buildkit.builder import (
    Builder,
    BuildRequest,
    BuiltImage,
    RegistryCredentials,
    cache_ref_for,
)
from pipeline.buildkit.errors import (
    BuilderUnavailable,
    BuildFailed,
    BuildTimedOut,
)
from pipeline.buildkit.events import (
    BuildEvent,
    BuildLog,
    BuildWarning,
    ProgressTracker,
    StepCached,
    StepDone,
    StepFailed,
    StepStarted,
)
from pipeline.buildkit.factory import make_builder

__all__ = [
    "BuildEvent",
    "BuildFailed",
    "BuildLog",
    "BuildRequest",
    "BuildTimedOut",
    "BuildWarning",
    "Builder",
    "BuilderUnavailable",
    "BuiltImage",
    "ProgressTracker",
    "RegistryCredentials",
    "StepCached",
    "StepDone",
    "StepFailed",
    "StepStarted",
    "cache_ref_for",
    "make_builder",
]
