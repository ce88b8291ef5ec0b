"""What every release target is given and gives back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipeline.errors import DeploymentFailure
from pipeline.release.config import ReleaseConfig

# One line for the deployment's log (the job's `log` with stream "system").
ReleaseLog = Callable[[str], None]


class ReleaseFailed(DeploymentFailure):
    """The release did not put the new version into service; what served before still
    does. The message is the one line a person reads."""


@dataclass(frozen=True)
class ReleaseRequest:
    """One verified image to put into service for one environment of a service."""

    service_id: int
    service: str
    environment: str
    deployment_id: int
    commit: str | None
    image: str  # repository:tag, as pushed
    digest: str  # sha256:…, what runs
    config: ReleaseConfig
    deployment_url: str  # where the deployment can be looked up (the REST API)

    @property
    def by_digest(self) -> str:
        """The image by digest: what is pulled and run, never a tag that may move."""
        repository = self.image.rsplit("@", 1)[0]
        last = repository.rsplit("/", 1)
        if ":" in last[-1]:
            repository = repository.rsplit(":", 1)[0]
        return f"{repository}@{self.digest}"


@dataclass(frozen=True)
class Released:
    """A version in service: where it answers (None for targets that do not say) and what
    runs it (a container, a Swarm service, a webhook)."""

    url: str | None
    runs_as: str
    engine: str | None = None
