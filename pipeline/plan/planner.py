"""`plan_app`: the repo's Dockerfile if there is one, else detect the runtime and generate.

Order:
1. the service config (or `click-deploy.toml`) names a Dockerfile → use it (error if missing);
2. a `Dockerfile` in the service's root dir → use it (unless a provider is forced);
3. the first provider whose `detect` matches (or the forced one) plans the build; the
   overrides (install/build/start commands, Procfile `web:`) are applied; one renderer
   writes the Dockerfile.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.plan.app import App, InvalidFile
from pipeline.plan.config import (
    REPO_CONFIG_FILE,
    BuildConfig,
    RepoConfig,
    merge_configs,
    parse_repo_config,
    repo_config_evidence,
)
from pipeline.plan.context import Layout, PlanContext, Step
from pipeline.plan.dockerfile import DEFAULT_DOCKERIGNORE, render
from pipeline.plan.images import BaseImages
from pipeline.plan.model import BuildPlan, Message, PlanResult
from pipeline.plan.procfile import PROCFILE, Procfile, read_procfile
from pipeline.plan.providers import PROVIDERS, provider_named
from pipeline.plan.providers.base import Provider

DOCKERFILE = "Dockerfile"
DOCKERIGNORE = ".dockerignore"
# The order files are listed in when nothing matched: the most common first.
DISPLAY_ORDER = ("node", "python", "go", "php", "ruby", "static", "shell")

_FROM = re.compile(
    r"^\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?\s*$", re.IGNORECASE | re.MULTILINE
)
_SYNTAX = re.compile(r"^#\s*syntax\s*=\s*(\S+)", re.IGNORECASE)


def plan_app(
    root: Path, config: BuildConfig, images: BaseImages, *, cache_namespace: str | None = None
) -> PlanResult:
    """Plan the build of the service in `config.root_dir` of the checkout at `root`.
    Never raises for anything in the repository: a missing or broken file is a failed
    result with a message for a person. `cache_namespace` (one per service) scopes the
    cache mounts of a generated Dockerfile."""
    try:
        return _plan(root, config, images, cache_namespace)
    except InvalidFile as error:
        return PlanResult.failure(str(error))


def _where(label: str) -> str:
    return "./" if label == "." else f"{label}/"


def _plan(
    root: Path, config: BuildConfig, images: BaseImages, cache_namespace: str | None
) -> PlanResult:
    repo = App(root)
    if not repo.root.is_dir():
        return PlanResult.failure(f"the checkout {root} is not a directory")
    label = config.root_dir
    if label != "." and not repo.has_dir(label):
        return PlanResult.failure(
            f"root dir {label}/ is not a directory in the repository (check the service's root dir)"
        )
    app = App(repo.root / label, label=label)

    evidence: list[str] = []
    repo_config: RepoConfig | None = None
    if app.present(REPO_CONFIG_FILE):
        data = app.read_toml(REPO_CONFIG_FILE)
        try:
            repo_config = parse_repo_config(data, source=app.display(REPO_CONFIG_FILE))
        except ConfigError as error:
            return PlanResult.failure(str(error))
        evidence += [f"{REPO_CONFIG_FILE}: {line}" for line in repo_config_evidence(repo_config)]
    merged = merge_configs(config, repo_config)

    if merged.dockerfile is not None:
        return _own_dockerfile(repo, app, merged, merged.dockerfile, evidence, configured=True)
    if app.has_file(DOCKERFILE):
        if merged.provider is None:
            return _own_dockerfile(repo, app, merged, DOCKERFILE, evidence, configured=False)
        evidence.append(f"{DOCKERFILE}: not used, the {merged.provider} provider is forced")
    return _generate(app, merged, images, evidence, cache_namespace)


# --- the repo's own Dockerfile -------------------------------------------------------------


def _repo_relative(app: App, path: str) -> str | None:
    """`path` (relative to the app directory) relative to the repository root, or None if
    it leaves the repository."""
    joined = posixpath.normpath(posixpath.join(app.label, path))
    if joined == ".." or joined.startswith("../") or joined.startswith("/"):
        return None
    return joined


def _own_dockerfile(
    repo: App,
    app: App,
    config: BuildConfig,
    path: str,
    evidence: list[str],
    *,
    configured: bool,
) -> PlanResult:
    dockerfile_path = _repo_relative(app, path)
    if dockerfile_path is None:
        return PlanResult.failure(f"dockerfile {path} is outside the repository")
    if not repo.has_file(dockerfile_path):
        return PlanResult.failure(
            f"dockerfile {dockerfile_path} was configured but does not exist in the repository"
        )
    context_dir = _repo_relative(app, config.context or ".")
    if context_dir is None:
        return PlanResult.failure(f"build context {config.context} is outside the repository")
    if not repo.has_dir(context_dir):
        return PlanResult.failure(
            f"build context {context_dir}/ is not a directory in the repository"
        )
    text = repo.read_text(dockerfile_path)
    stages = _FROM.findall(text)
    if not stages:
        return PlanResult.failure(f"{dockerfile_path} has no FROM line")

    messages: list[Message] = []
    how = "configured" if configured else "found in the service's root dir"
    evidence.append(f"{dockerfile_path}: the repo's own Dockerfile ({how}) is used")
    if config.target is not None:
        names = [name for _, name in stages if name]
        if config.target not in names:
            known = ", ".join(names) if names else "none are named"
            return PlanResult.failure(
                f"{dockerfile_path} has no stage named {config.target!r} (stages: {known})"
            )
        evidence.append(f"{dockerfile_path}: builds the stage {config.target}")
    syntax = _SYNTAX.match(text.lstrip())
    if syntax:
        messages.append(
            Message(
                "warning",
                f"{dockerfile_path} starts with '# syntax={syntax.group(1)}': BuildKit pulls that "
                "frontend image from its registry; behind a mirror or offline the build fails. "
                "Remove the line to use the built-in frontend.",
            )
        )
    ignored = [
        key for key in ("install", "build", "start", "provider") if getattr(config, key) is not None
    ]
    if config.apt_packages:
        ignored.append("apt_packages")
    if config.apt_build_packages:
        ignored.append("apt_build_packages")
    if ignored:
        messages.append(
            Message(
                "warning",
                f"{', '.join(ignored)} ignored: the repo's Dockerfile decides how to build and run",
            )
        )
    if not repo.has_file(posixpath.join(context_dir, DOCKERIGNORE)):
        messages.append(
            Message(
                "suggestion",
                f"add a .dockerignore to {_where(context_dir)} so .git and local dependencies "
                "are not sent to the builder",
            )
        )
    plan = BuildPlan(
        runtime="dockerfile",
        version=None,
        context_dir=context_dir,
        dockerfile=text,
        dockerfile_path=dockerfile_path,
        target=config.target,
        build_args=dict(config.build_args),
        secrets=dict(config.env),
        dockerignore=None,
        evidence=tuple(evidence),
        messages=tuple(messages),
    )
    return PlanResult.success(plan)


# --- a generated Dockerfile ----------------------------------------------------------------


def _choose(app: App, config: BuildConfig) -> Provider | None:
    if config.provider is not None:
        return provider_named(config.provider)
    return next((provider for provider in PROVIDERS if provider.detect(app)), None)


def _nothing_found(app: App) -> str:
    looked: list[str] = []
    order = {name: index for index, name in enumerate(DISPLAY_ORDER)}
    for provider in sorted(PROVIDERS, key=lambda p: order.get(p.name, len(order))):
        looked += [item for item in provider.looks_for if item not in looked]
    return (
        f"no Dockerfile and no known runtime in {_where(app.label)}: looked for "
        f"{', '.join(looked)}. Add a Dockerfile, or force a provider with "
        f'provider = "…" in {REPO_CONFIG_FILE} ({", ".join(DISPLAY_ORDER)})'
    )


def _apply_overrides(
    ctx: PlanContext, layout: Layout, config: BuildConfig, procfile: Procfile | None
) -> None:
    if config.install is not None:
        caches = layout.install.caches if layout.install else ()
        layout.install = Step(config.install, caches)
        layout.copy_source_first = True
        ctx.info(
            "custom install command: the whole source is copied before it, so any change "
            "reinstalls the dependencies"
        )
    if config.build is not None:
        caches = layout.build.caches if layout.build else ()
        layout.build = Step(config.build, caches)
    only_worker = procfile is not None and not procfile.web and "worker" in procfile.processes
    if config.start is not None:
        layout.start = config.start
        if "PORT" in config.start:
            layout.worker = False  # the configured command listens on $PORT
        if procfile is not None and procfile.web:
            ctx.info(f"{PROCFILE} web: is overridden by the configured start command")
    elif procfile is not None and procfile.web:
        layout.start = procfile.web
        layout.worker = False
        ctx.decided(PROCFILE, f"web: {procfile.web}")
    elif procfile is not None and only_worker:
        layout.start = procfile.processes["worker"]
        layout.worker = True
        ctx.decided(PROCFILE, f"no web:, a worker: {layout.start} (no port, no HTTP check)")
    if procfile is not None and procfile.others and not only_worker:
        names = ", ".join(f"{name}:" for name in procfile.others)
        ctx.info(f"{PROCFILE}: only web: is used; {names} not run (give them their own service)")
    if config.kind is not None:
        layout.worker = config.kind == "worker"
        ctx.decided("build config", f"kind = {config.kind!r}")
    elif layout.worker and not only_worker:
        ctx.info(
            "planned as a worker: no port and no HTTP check; if it serves HTTP on $PORT, set "
            f'kind = "web" under [build] in {REPO_CONFIG_FILE}'
        )


# apt_packages that only a build needs: kept in the build stage too, as before there was a
# runtime stage, so a configuration written for one stage still builds.
_BUILD_ONLY = re.compile(
    r"^(?:gcc|g\+\+|make|build-essential|pkg-config|cargo|rustc|git|.*-dev)(?:=.*)?$"
)


def _split_apt(
    ctx: PlanContext, layout: Layout, config: BuildConfig
) -> tuple[list[str], list[str]]:
    """(run-time packages, build-stage-only packages) from the configuration."""
    run = list(config.apt_packages)
    build = list(config.apt_build_packages)
    two_stages = layout.runtime is not None and layout.runtime.apt and layout.apt
    if two_stages:
        for_build = [item for item in run if _BUILD_ONLY.match(item)]
        if for_build:
            build += [item for item in for_build if item not in build]
            ctx.info(
                f"apt_packages {', '.join(for_build)} look like build tools: they go to the "
                "build stage as well; list them under apt_build_packages to keep them out "
                "of the image"
            )
    return run, build


def _generate(
    app: App,
    config: BuildConfig,
    images: BaseImages,
    evidence: list[str],
    cache_namespace: str | None,
) -> PlanResult:
    provider = _choose(app, config)
    if provider is None:
        return PlanResult.failure(_nothing_found(app), no_runtime=True)
    procfile = read_procfile(app)
    start_override = config.start or (procfile.web if procfile else None)
    ctx = PlanContext(app, config, images, start_override=start_override, location=app.label)
    ctx.evidence += evidence
    if config.provider is not None:
        ctx.info(f"the {provider.name} provider is forced by the configuration")
    provider.plan(app, ctx)
    if ctx.failure is not None:
        return PlanResult.failure(ctx.failure)
    layout = ctx.layout
    if layout is None:  # a provider bug; say so rather than build nothing
        return PlanResult.failure(f"the {provider.name} provider produced no build")
    _apply_overrides(ctx, layout, config, procfile)
    if layout.start is None:
        return PlanResult.failure(
            f"no start command for this {provider.name} app in {_where(app.label)}: "
            f"{provider.start_help}"
        )
    if config.apt_packages:
        where = layout.runtime is not None and layout.runtime.apt
        if not where and not layout.apt:
            ctx.warning(
                f"apt packages ({', '.join(config.apt_packages)}) ignored: this image "
                "is not Debian-based"
            )
        elif not where and layout.runtime is not None:
            ctx.info("apt packages go to the build stage: the runtime image is not Debian-based")
    unused = [key for key in ("target", "context") if getattr(config, key) is not None]
    if unused:
        ctx.warning(f"{' and '.join(unused)} ignored: they apply to the repo's own Dockerfile")
    context_dir = app.label
    has_ignore = app.present(DOCKERIGNORE)
    if has_ignore:
        app.read_text(DOCKERIGNORE)  # the builder reads it: a link out is refused here
        ctx.decided(DOCKERIGNORE, "the repo's own is used")
    runtime = ctx.runtime or provider.name
    header = (
        f"Generated by click-deploy ({runtime}"
        + (f" {ctx.version}" if ctx.version else "")
        + "). Commit a Dockerfile to take over."
    )
    secrets = {**config.env, **config.build_args}
    run_apt, build_apt = _split_apt(ctx, layout, config)
    text = render(
        layout,
        header=header,
        secret_names=sorted(secrets),
        extra_apt=run_apt,
        extra_build_apt=build_apt,
        cache_namespace=cache_namespace,
    )
    plan = BuildPlan(
        runtime=runtime,
        version=ctx.version,
        context_dir=context_dir,
        dockerfile=text,
        dockerfile_path=None,
        target=None,
        secrets=secrets,
        dockerignore=None if has_ignore else DEFAULT_DOCKERIGNORE,
        install=layout.install.command if layout.install else None,
        build=layout.build.command if layout.build else None,
        start=layout.start,
        kind="worker" if layout.worker else "web",
        evidence=tuple(ctx.evidence),
        messages=tuple(ctx.messages),
    )
    return PlanResult.success(plan)
