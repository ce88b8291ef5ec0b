"""The build pipeline a worker runs: clone → plan → build → push → verify → release.

Each step is visible (a row in deployment_steps, progress "step i of n", log lines) and
cancellable; n is known from the start and counts release only when the service has a
release target, so every step says the same n. The build directory is removed whatever
happens. Errors keep their type: `DeploymentFailure` (bad Dockerfile, failing RUN, unknown
runtime, wrong token) fails the deployment at once naming the step, `TransientError`
(BuildKit or registry unreachable) is retried by the worker.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from pydantic import SecretStr

from pipeline import values
from pipeline.buildkit.builder import (
    Builder,
    BuildRequest,
    RegistryCredentials,
    cache_ref_for,
)
from pipeline.buildkit.events import (
    BuildEvent,
    BuildLog,
    BuildWarning,
    StepCached,
    StepDone,
    StepFailed,
    StepStarted,
)
from pipeline.buildkit.factory import make_builder
from pipeline.clone import CloneRequest, GitAuth, clone, remove_build_dir
from pipeline.errors import ClickDeployError, ConfigError, DeploymentFailure, InvalidValue
from pipeline.job import BuildResult, Job, StepHandle
from pipeline.models import Service
from pipeline.plan import BaseImages, PlanResult, parse_build_config, plan_app
from pipeline.railpack import choose_plan
from pipeline.registry import RegistryClient, image_reference, parse_reference
from pipeline.release import ReleaseRequest, ReleaseStore, release
from pipeline.rollback import NothingToRollBack, rollback_target
from pipeline.settings import Settings
from pipeline.states import Status

log = structlog.get_logger(__name__)

STEPS = ("clone", "plan", "build", "push", "verify")
ROLLBACK_STEPS = ("rollback", "re-tag")


def steps_total(service: Service, *, rollback: bool = False) -> int:
    """How many steps the progress counts for a deployment of `service` ("step i of n"),
    known from the start so that every step says the same n: the release step counts
    only when the service has a release target."""
    steps = len(ROLLBACK_STEPS) if rollback else len(STEPS)
    return steps + (0 if service.options.release.target == "none" else 1)


class StepError(DeploymentFailure):
    """A step failed for good; the message names the step."""


def repository_url(service: Service, settings: Settings) -> str:
    """Where to clone a service from: a forge's HTTPS URL, or the URL given for plain git.
    Checked again here: a row stored before repositories were checked may hold one git
    must not be given (`ext::…`, a bare local path, "-…"). A `file://` repository can only
    have been stored from the command line (pipeline.values.repository)."""
    try:
        values.repository(service.provider, service.repository, local=True)
    except InvalidValue as error:
        raise StepError(f"clone failed: {error}") from None
    if service.provider == "github":
        return f"{settings.github_url.rstrip('/')}/{service.repository}.git"
    if service.provider == "gitlab":
        return f"{settings.gitlab_url.rstrip('/')}/{service.repository}.git"
    return service.repository


def git_auth(settings: Settings) -> GitAuth | None:
    if settings.git_token is None:
        return None
    return GitAuth(settings.git_username, settings.git_token)


# Other sources of clone credentials, asked in order before GIT_TOKEN (a GitHub App's
# installation tokens: bot.github.credentials). A hook answers None when it has none.
CloneAuthHook = Callable[[Service, Settings], Awaitable[GitAuth | None]]
clone_auth_hooks: list[CloneAuthHook] = []


async def clone_auth(service: Service, settings: Settings) -> GitAuth | None:
    for hook in clone_auth_hooks:
        auth = await hook(service, settings)
        if auth is not None:
            return auth
    return git_auth(settings)


def cache_namespace(service: Service) -> str:
    """The service's own cache mounts (by id: stable across renames, never reused)."""
    return f"service-{service.id}"


def plan_service(checkout: Path, service: Service, images: BaseImages) -> PlanResult:
    """Plan the service's folder of a checkout, with the service's build settings
    (`config.build`; a config that is not valid, or a bad root dir, is a failed plan
    naming it)."""
    if service.options.problem is not None:
        return PlanResult.failure(f"the service's config is not valid: {service.options.problem}")
    try:
        config = parse_build_config(
            {**service.options.build.model_dump(exclude_unset=True), "root_dir": service.root_dir},
            source="service",
        )
    except ConfigError as error:
        return PlanResult.failure(str(error))
    return plan_app(checkout, config, images, cache_namespace=cache_namespace(service))


def image_tag(environment: str, commit: str) -> str:
    """`<commit>` for production, `<environment>-<commit>` for previews (pr-12-1a2b3c4d5e6f)."""
    short = commit[:12]
    return short if environment == "production" else f"{environment}-{short}"


# BuildKit's names for the step that pushes: the engine transport's own, buildctl's export.
_PUSH_STEPS = ("pushing ", "exporting to image")


@dataclass
class _BuildSteps:
    """Turns BuildKit events into log lines and build-step rows, and notices the push."""

    job: Job
    total: int
    handles: dict[str, StepHandle] = field(default_factory=dict)
    pushing: asyncio.Task[None] | None = None

    def __call__(self, event: BuildEvent) -> None:
        if isinstance(event, BuildLog):
            self.job.log(event.line, stream=event.stream)
        elif isinstance(event, StepStarted):
            self.handles[event.step_id] = self.job.step(event.name, kind="build")
            self.job.log(f"#{len(self.handles)} {event.name}", stream="system")
            if event.name.startswith(_PUSH_STEPS) and self.pushing is None:
                self.pushing = asyncio.get_running_loop().create_task(self._enter_pushing())
        elif isinstance(event, StepCached):
            handle = self.handles.get(event.step_id) or self.job.step(event.name, kind="build")
            self.handles[event.step_id] = handle
            handle.done(cached=True)
            self.job.log(f"CACHED {event.name}", stream="system")
        elif isinstance(event, StepDone):
            if event.step_id in self.handles:
                self.handles[event.step_id].done()
        elif isinstance(event, StepFailed):
            handle = self.handles.get(event.step_id) or self.job.step(event.name, kind="build")
            self.handles[event.step_id] = handle
            handle.failed(event.error)
        elif isinstance(event, BuildWarning):
            self.job.log(f"warning: {event.message}", stream="system")

    async def _enter_pushing(self) -> None:
        await self.job.enter(Status.PUSHING)
        await self.job.progress(4, self.total, "pushing")

    async def pushed(self) -> None:
        """After the build call: the state is `pushing`, whether or not the push showed."""
        if self.pushing is None:
            await self._enter_pushing()
        else:
            await self.pushing


class DeployPipeline:
    """The production pipeline (WORKER_PIPELINE=pipeline.deploy:deploy_pipeline)."""

    def __init__(
        self,
        settings: Settings,
        builder: Builder,
        *,
        registry_factory: Callable[[], RegistryClient] | None = None,
    ) -> None:
        if not settings.registry_url:
            raise ConfigError("REGISTRY_URL is not set: click-deploy has nowhere to push")
        self.settings = settings
        self.builder = builder
        self.images = BaseImages.from_settings(settings)
        self._registry_factory = registry_factory or self._registry

    def _registry(self) -> RegistryClient:
        assert self.settings.registry_url is not None
        return RegistryClient(
            self.settings.registry_url,
            self.settings.registry_username,
            self.settings.registry_password,
        )

    async def run(self, job: Job) -> BuildResult:
        deployment = job.deployment
        build_dir = self.settings.effective_build_dir / f"{deployment.id}-{deployment.attempts}"
        try:
            return await self._run(job, build_dir)
        finally:
            # Shielded: a cancel must not leave a half-removed directory behind.
            await asyncio.shield(asyncio.to_thread(remove_build_dir, build_dir))

    async def _run(self, job: Job, build_dir: Path) -> BuildResult:
        deployment = job.deployment
        service = await job.store.get_service(deployment.service_id)
        rollback_to = deployment.trigger.get("rollback_to")
        if isinstance(rollback_to, int):
            return await self._roll_back(job, service, rollback_to)

        total = steps_total(service)
        # 1. clone
        await job.progress(1, total, "cloning")
        with _PipelineStep(job, "clone") as step:
            cloned = await clone(
                CloneRequest(
                    url=repository_url(service, self.settings),
                    commit=deployment.commit_sha,
                    ref=deployment.ref or service.branch,
                    auth=await clone_auth(service, self.settings),
                    submodules=service.options.submodules,
                    timeout_seconds=self.settings.clone_timeout_seconds,
                    max_bytes=self.settings.clone_max_megabytes * 1024**2,
                ),
                build_dir,
                job.log,
            )
            step.detail = cloned.commit

        # 2. plan
        await job.enter(Status.BUILDING)
        await job.progress(2, total, "planning")
        with _PipelineStep(job, "plan") as step:
            # click-deploy's planner or Railpack (the service's builder setting).
            result = await choose_plan(
                build_dir,
                service,
                self.settings,
                functools.partial(plan_service, build_dir, service, self.images),
                cache_namespace=cache_namespace(service),
            )
            if not result.ok or result.plan is None:
                raise StepError(f"plan failed: {result.message}")
            plan = result.plan
            step.detail = plan.runtime
            job.log(
                f"runtime: {plan.runtime}" + (f" {plan.version}" if plan.version else ""),
                stream="system",
            )
            for evidence in plan.evidence:
                job.log(f"  {evidence}", stream="system")
            for message in plan.messages:
                job.log(f"{message.level}: {message.text}", stream="system")

        # 3 + 4. build and push (one BuildKit call)
        assert self.settings.registry_url is not None
        image = image_reference(
            self.settings.registry_url,
            self.settings.registry_project,
            service.name,
            image_tag(deployment.environment, cloned.commit),
        )
        await job.progress(3, total, "building")
        steps = _BuildSteps(job, total)
        with _PipelineStep(job, "build") as step:
            try:
                built = await self.builder.build(
                    BuildRequest(
                        context_dir=(build_dir / plan.context_dir).resolve(),
                        dockerfile=plan.dockerfile,
                        image=image,
                        dockerignore=plan.dockerignore,
                        target=plan.target,
                        build_args=dict(plan.build_args),
                        secrets={name: SecretStr(value) for name, value in plan.secrets.items()},
                        checkout_dir=build_dir,
                        credentials=self._credentials(),
                        cache_ref=cache_ref_for(image) if self.settings.build_cache else None,
                        insecure_registry=self.settings.registry_url.startswith("http://"),
                        affinity_key=service.name,
                    ),
                    steps,
                )
            except BaseException:
                if steps.pushing is not None:
                    steps.pushing.cancel()
                raise
            step.detail = built.digest
        await steps.pushed()

        # 5. verify: the registry has exactly what BuildKit pushed.
        await job.progress(5, total, "verifying")
        with _PipelineStep(job, "verify"):
            await self._verify_and_tag(job, built.reference, built.digest)
            job.log(f"pushed {built.reference} ({built.digest})", stream="system")

        # 6. release: the verified image goes into service on the service's target.
        await self._release(job, service, built.reference, built.digest, number=6, total=total)
        return BuildResult(image=built.reference, digest=built.digest)

    async def _release(
        self, job: Job, service: Service, image: str, digest: str, *, number: int, total: int
    ) -> None:
        """Put the image into service (nothing for target `none`); a failure leaves what
        served before serving and fails the deployment at step `release`."""
        config = service.options.release
        if config.target == "none":
            return
        deployment = job.deployment
        await job.progress(number, total, f"releasing ({config.target})")
        records = ReleaseStore(job.store.pool)
        with _PipelineStep(job, "release") as step:
            released = await release(
                ReleaseRequest(
                    service_id=service.id,
                    service=service.name,
                    environment=deployment.environment,
                    deployment_id=deployment.id,
                    commit=deployment.commit_sha,
                    image=image,
                    digest=digest,
                    config=config,
                    deployment_url=(
                        f"{self.settings.public_url.rstrip('/')}/api/v1/deployments/{deployment.id}"
                    ),
                ),
                self.settings,
                records,
                lambda line: job.log(line, stream="system"),
            )
            if released is not None:
                step.detail = released.url or released.runs_as
                if released.url is not None:
                    await records.set_live_url(deployment.id, job.lease_token, released.url)
                    job.log(f"live at {released.url}", stream="system")

    async def _verify_and_tag(self, job: Job, image: str, digest: str) -> None:
        """Check the registry holds `digest` under `image`, then point the environment's
        moving tag (`production`, `pr-12`) at it: what rollbacks and promotions re-tag."""
        reference = parse_reference(image)
        environment = job.deployment.environment
        async with self._registry_factory() as registry:
            stored = await registry.manifest_digest(reference.repository, reference.tag or "")
            if stored != digest:
                raise StepError(
                    f"verify failed: the registry holds {stored} for {image}, "
                    f"but the build pushed {digest}"
                )
            await registry.copy_tag(reference.repository, digest, environment)
        job.log(f"tagged {reference.repository}:{environment}", stream="system")

    async def _roll_back(self, job: Job, service: Service, to: int) -> BuildResult:
        """A rollback: the earlier deployment's image becomes current again, re-tagged in
        the registry; nothing is cloned or built."""
        total = steps_total(service, rollback=True)
        await job.progress(1, total, f"rolling back to deployment {to}")
        with _PipelineStep(job, "rollback") as step:
            try:
                target = await rollback_target(job.store, service, job.deployment.environment, to)
            except NothingToRollBack as error:
                raise StepError(f"rollback failed: {error}") from None
            assert target.image is not None and target.digest is not None
            step.detail = target.image
            job.log(
                f"rolling back to deployment {target.id}: {target.image} ({target.digest})",
                stream="system",
            )
        await job.enter(Status.BUILDING)
        await job.enter(Status.PUSHING)
        await job.progress(2, total, "re-tagging")
        with _PipelineStep(job, "verify"):
            await self._verify_and_tag(job, target.image, target.digest)
        # The same health-checked switch as a new version: the old one serves until the
        # restored one is healthy.
        await self._release(job, service, target.image, target.digest, number=3, total=total)
        return BuildResult(image=target.image, digest=target.digest)

    def _credentials(self) -> RegistryCredentials | None:
        if not self.settings.registry_username or self.settings.registry_password is None:
            return None
        return RegistryCredentials(self.settings.registry_username, self.settings.registry_password)


class _PipelineStep:
    """A pipeline step: recorded done, or failed with the error's message (which then names
    the step, so a person knows where it broke)."""

    def __init__(self, job: Job, name: str) -> None:
        self.handle = job.step(name)
        self.name = name
        self.detail: str | None = None

    def __enter__(self) -> _PipelineStep:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _tb: object
    ) -> None:
        if error is None:
            self.handle.done(detail=self.detail)
        elif isinstance(error, asyncio.CancelledError):
            self.handle.failed("cancelled")
        elif isinstance(error, ClickDeployError):
            self.handle.failed(str(error))
            if isinstance(error, DeploymentFailure) and not isinstance(error, StepError):
                # Name the step in what the person reads; the type stays a final failure.
                raise StepError(f"{self.name} failed: {error}") from error
        else:
            self.handle.failed(type(error).__name__)


class UnconfiguredPipeline:
    """Without a registry there is nowhere to push: every deployment fails saying so, and
    the rest of click-deploy (queue, API, chat) keeps working."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def run(self, job: Job) -> BuildResult:
        raise StepError(self.reason)


def deploy_pipeline(settings: Settings) -> DeployPipeline | UnconfiguredPipeline:
    """The default WORKER_PIPELINE. A bad builder setting stops the worker at start (a
    ConfigError naming the variable); a missing registry fails deployments instead."""
    builder = make_builder(settings)
    if not settings.registry_url:
        return UnconfiguredPipeline(
            "REGISTRY_URL is not set: click-deploy has nowhere to push images "
            "(set REGISTRY_URL, REGISTRY_USERNAME and REGISTRY_PASSWORD)"
        )
    return DeployPipeline(settings, builder)
