"""Several BuildKit daemons behind the one `Builder` interface, with cache affinity.

DOCKER_HOST (or BUILDKIT_ADDRESS) may list several daemons. Each build goes to the daemon
that ranks first for its service by rendezvous (highest-random-weight) hashing: every
daemon scores `hash(daemon, service)` and the highest score wins. So one service always
lands on the same daemon and finds its cache there, services spread evenly, and adding or
removing a daemon moves only the services that rank it first.

A daemon that cannot be reached (the builder raises `BuilderUnavailable` before the daemon
reported anything) hands the build to the next daemon of that service's order, and is
skipped for SKIP_SECONDS so later builds do not wait for its connect timeout again (it is
still tried last, should every other daemon be down too). A daemon lost in the middle of a
build is marked the same way, and the error goes up: the worker retries the deployment,
which then starts on the next daemon. A failed build (`BuildFailed`: the user's
Dockerfile) never moves: another daemon would fail it the same way.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping

import structlog
from cachetools import TTLCache

from pipeline.buildkit.builder import Builder, BuildRequest, BuiltImage
from pipeline.buildkit.errors import BuilderUnavailable
from pipeline.buildkit.events import BuildEvent, BuildWarning, StepDone, StepStarted
from pipeline.registry.reference import parse_reference

log = structlog.get_logger(__name__)

SKIP_SECONDS = 30.0
BUILDER_STEP_ID = "click-deploy:builder"


def _score(address: str, key: str) -> int:
    digest = hashlib.blake2b(f"{address}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rendezvous_order(addresses: Iterable[str], key: str) -> list[str]:
    """The daemons in the order `key` tries them: highest score first (ties by address,
    so the order is total and the same in every process)."""
    return sorted(addresses, key=lambda address: (-_score(address, key), address))


def affinity_key(request: BuildRequest) -> str:
    """What ties a build to a daemon: the request's key, else the image's repository."""
    return request.affinity_key or parse_reference(request.image).name


def builder_step_name(kind: str, address: str) -> str:
    """The build step that says where a build ran: "builder: docker engine unix:///…"."""
    return f"builder: {kind} {address}"


class BuilderPool:
    """Builds on the daemon a service ranks first, failing over to the next ones."""

    def __init__(
        self,
        builders: Mapping[str, Builder],
        *,
        kind: str = "builder",
        skip_seconds: float | None = None,  # None: SKIP_SECONDS
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if not builders:
            raise ValueError("a builder pool needs at least one builder")
        self.builders = dict(builders)
        self.kind = kind  # "docker engine", "buildkitd": how people read an address
        # Daemons that failed lately, with the error: skipped until it expires.
        self._down: TTLCache[str, str] = TTLCache(
            maxsize=len(self.builders),
            ttl=SKIP_SECONDS if skip_seconds is None else skip_seconds,
            timer=timer,
        )

    @property
    def addresses(self) -> list[str]:
        return list(self.builders)

    def order(self, key: str) -> list[str]:
        """Every daemon, in the order a build with affinity `key` tries them."""
        return rendezvous_order(self.builders, key)

    def is_skipped(self, address: str) -> bool:
        return address in self._down

    def plan(self, key: str) -> list[str]:
        """The order to try now: the daemons not marked down, then those that are."""
        order = self.order(key)
        return [a for a in order if a not in self._down] + [a for a in order if a in self._down]

    async def build(
        self, request: BuildRequest, on_event: Callable[[BuildEvent], None]
    ) -> BuiltImage:
        key = affinity_key(request)
        unreachable: list[tuple[str, str]] = []
        for address in self.plan(key):
            announce = _Announce(self.kind, address, unreachable, on_event)
            bound = log.bind(builder=address, affinity=key)
            try:
                built = await self.builders[address].build(request, announce)
            except BuilderUnavailable as error:
                self._down[address] = str(error)
                if announce.started:
                    # The daemon took the build and went away: the worker retries it (on
                    # the next daemon, while this one is marked down).
                    bound.warning("builder lost during the build", error=str(error))
                    raise
                bound.warning("builder unreachable; trying the next one", error=str(error))
                unreachable.append((address, str(error)))
                continue
            except BaseException:
                if announce.started:
                    self._down.pop(address, None)  # it answered: a user error, a cancel
                raise
            self._down.pop(address, None)
            announce.ensure_started()
            bound.info("built", image=built.reference)
            return built
        reasons = "; ".join(error for _address, error in unreachable)
        raise BuilderUnavailable(
            f"none of the {len(self.builders)} {self.kind}s answers: {reasons}"
        )


class _Announce:
    """The event callback of one try: before the daemon's first event, it reports the step
    naming the daemon (and the ones that did not answer before it)."""

    def __init__(
        self,
        kind: str,
        address: str,
        unreachable: list[tuple[str, str]],
        on_event: Callable[[BuildEvent], None],
    ) -> None:
        self._kind = kind
        self._address = address
        self._unreachable = unreachable
        self._on_event = on_event
        self.started = False

    def ensure_started(self) -> None:
        if self.started:
            return
        self.started = True
        for address, error in self._unreachable:
            self._on_event(
                BuildWarning(
                    f"{self._kind} {address} did not answer ({error}); building on "
                    f"{self._address} instead"
                )
            )
        name = builder_step_name(self._kind, self._address)
        self._on_event(StepStarted(BUILDER_STEP_ID, name))
        self._on_event(StepDone(BUILDER_STEP_ID, name, 0.0))

    def __call__(self, event: BuildEvent) -> None:
        self.ensure_started()
        self._on_event(event)
