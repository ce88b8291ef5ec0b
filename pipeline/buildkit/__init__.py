"""BuildKit: build a context into an image and push it, through a Docker engine or a
standalone buildkitd, reporting progress as `events`."""

from pipeline.buildkit.builder import (
    Builder,
    BuildRequest,
    BuiltImage,
    ImageReference,
    RegistryCredentials,
    cache_ref_for,
    make_builder,
)
from pipeline.buildkit.errors import (
    BuilderUnavailable,
    BuildFailed,
    BuildTimedOut,
    RegistryAuthFailed,
    RegistryUnavailable,
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
    "ImageReference",
    "ProgressTracker",
    "RegistryAuthFailed",
    "RegistryCredentials",
    "RegistryUnavailable",
    "StepCached",
    "StepDone",
    "StepFailed",
    "StepStarted",
    "cache_ref_for",
    "make_builder",
]
