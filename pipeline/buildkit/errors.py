"""How a build ends when it does not produce an image. The base class says who acts:
`DeploymentFailure` the user (fix the Dockerfile, the credentials), `TransientError`
nobody (the worker retries)."""

from __future__ import annotations

from pipeline.errors import DeploymentFailure, TransientError


class BuildFailed(DeploymentFailure):
    """A build step failed: a RUN exiting non-zero, a base image that does not exist."""

    def __init__(
        self,
        message: str,
        *,
        step: str | None = None,
        error: str = "",
        log_tail: tuple[str, ...] = (),
        detail: str = "",
    ) -> None:
        super().__init__(message)
        self.step = step  # the failing step's name, e.g. "[2/3] RUN make"
        self.error = error  # BuildKit's error for that step
        self.log_tail = log_tail  # the step's last output lines
        self.detail = detail  # the builder's full error text (Dockerfile excerpt, …)


class BuildTimedOut(DeploymentFailure):
    """The build ran longer than BUILD_TIMEOUT_SECONDS and was stopped."""


class BuilderUnavailable(TransientError):
    """The builder (Docker engine, buildkitd) cannot be reached right now."""
