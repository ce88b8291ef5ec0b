"""A Railpack plan as a multi-stage Dockerfile with the same graph as Railpack's LLB.

What Railpack's BuildKit conversion (`buildkit/build_llb`) does, and its equivalent here:
- a step starts from its first input (an image, a step, or the app's files) in /app, with
  the variables and PATH entries of the steps it reads from: `FROM … AS`, `WORKDIR`, `ENV`;
- further inputs copy their `include` paths (relative ones under /app; the app's files to
  /app/<name>), leaving out `exclude`: `COPY --from=`, through a stage that removes the
  excluded paths first (the Dockerfile frontend of Docker 20.10 has no `COPY --exclude`);
  a path that does not exist copies nothing, as Railpack's empty-wildcard copy does;
- commands: `exec` is run without a shell (Railpack splits it like a shell would, `Shlex`):
  `RUN ["…"]` with the step's cache mounts (ids under the service's namespace); `path`
  prepends to PATH; `copy` copies from the app or an image; `file` writes an asset;
- the deploy stage is the plan's base plus its inputs, with Railpack's image config:
  `WORKDIR /app`, `ENTRYPOINT ["/bin/bash", "-c"]`, the start command as `CMD`.
Build values reach each command as BuildKit secrets exported as variables, as Railpack
mounts its secrets as environment variables; they are in no layer and no ARG.
"""

from __future__ import annotations

import base64
import json
import posixpath
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pipeline.plan.dockerfile import SECRETS_DIR, cache_id
from pipeline.railpack.plan import (
    CopyCommand,
    ExecCommand,
    FileCommand,
    Layer,
    PathCommand,
    RailpackError,
    RailpackPlan,
    Step,
)

WORKING_DIR = "/app"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What an exclude pattern may hold: it is expanded by the filter stage's shell.
_SAFE_PATTERN = re.compile(r"[A-Za-z0-9._@+\-/*?]+")
_SAFE_NAME = re.compile(r"[^a-z0-9_.-]+")

ImageMap = Callable[[str], str]


@dataclass
class _Env:
    """What a step hands on to the steps that read it: variables and PATH entries."""

    variables: dict[str, str] = field(default_factory=dict)
    paths: list[str] = field(default_factory=list)

    def merge(self, other: _Env) -> None:
        self.variables.update(other.variables)
        for item in other.paths:
            if item not in self.paths:
                self.paths.append(item)


def _env_line(values: Mapping[str, str]) -> list[str]:
    """ENV with every value literal: quoted, and `$` escaped so nothing is expanded."""
    if not values:
        return []
    pairs = []
    for key, value in sorted(values.items()):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
        pairs.append(f'{key}="{escaped}"')
    return ["ENV " + " \\\n    ".join(pairs)]


def _path_value(paths: Sequence[str]) -> str:
    return ":".join([*paths, DEFAULT_PATH])


def _json_args(args: Sequence[str]) -> str:
    return json.dumps(list(args))


def _copy_source(include: str, *, local: bool) -> tuple[str, str]:
    """(source, destination) of one include path, as Railpack resolves it."""
    if local:
        base = posixpath.basename(include.rstrip("/")) if include not in (".", "./") else ""
        return include, posixpath.join(WORKING_DIR, base) if base else WORKING_DIR
    if include in (".", "./", WORKING_DIR, WORKING_DIR + "/"):
        return WORKING_DIR, WORKING_DIR
    if include.startswith("/"):
        return include, include
    joined = posixpath.join(WORKING_DIR, include)
    return joined, joined


def _maybe_missing(path: str) -> str:
    """The path as a pattern that matches only itself: a missing path copies nothing (as
    Railpack's copy with AllowEmptyWildcard) instead of failing the build."""
    head, tail = posixpath.split(path.rstrip("/"))
    if not tail or any(char in tail for char in "*?["):
        return path
    return posixpath.join(head, f"{tail[:-1]}[{tail[-1]}]")


def _check_path(path: str, what: str) -> str:
    if not path or "\n" in path or '"' in path or ".." in path.split("/"):
        raise RailpackError(f"railpack's plan has a {what} path click-deploy cannot use: {path!r}")
    return path


class _Renderer:
    def __init__(
        self,
        plan: RailpackPlan,
        images: ImageMap,
        secret_names: Sequence[str],
        cache_namespace: str | None,
    ) -> None:
        self.plan = plan
        self.images = images
        self.secret_names = sorted(dict.fromkeys(secret_names))
        self.cache_namespace = cache_namespace
        self.steps = {step.name: step for step in plan.steps}
        self.stages: dict[str, str] = {}
        self.outputs: dict[str, _Env] = {}
        self.lines: list[str] = []
        self.filters = 0

    # --- names and sources ---------------------------------------------------------------

    def _stage_name(self, step: str) -> str:
        base = "rp-" + (_SAFE_NAME.sub("-", step.lower()).strip("-") or "step")
        name, number = base, 1
        while name in self.stages.values():
            number += 1
            name = f"{base}-{number}"
        return name

    def _source(self, layer: Layer, where: str) -> str:
        """What FROM / COPY --from= names for a layer: a stage or an image."""
        if layer.spread:
            raise RailpackError(f"{where}: a spread input ('...') is left in the plan")
        if layer.step is not None:
            if layer.step not in self.steps:
                raise RailpackError(f"{where}: the input step {layer.step!r} is not in the plan")
            return self.stages[layer.step]
        if layer.image:
            return self.images(layer.image)
        raise RailpackError(f"{where}: an input with neither an image nor a step")

    # --- steps ---------------------------------------------------------------------------

    def order(self) -> list[Step]:
        """Steps after the steps they read from (Railpack's topological order)."""
        ordered: list[Step] = []
        state: dict[str, str] = {}

        def visit(step: Step) -> None:
            if state.get(step.name) == "done":
                return
            if state.get(step.name) == "visiting":
                raise RailpackError(f"railpack's plan has a cycle through step {step.name!r}")
            state[step.name] = "visiting"
            for layer in step.inputs:
                if layer.step is not None and layer.step in self.steps:
                    visit(self.steps[layer.step])
            state[step.name] = "done"
            ordered.append(step)

        for step in self.plan.steps:
            visit(step)
        return ordered

    def _from(self, layers: Sequence[Layer], stage: str, where: str) -> None:
        first = layers[0] if layers else Layer()
        if first.include or first.exclude:
            raise RailpackError(f"{where}: the first input must not have include or exclude")
        if first.local:
            self.lines.append(f"FROM scratch AS {stage}")
            self.lines.append(f"COPY . {WORKING_DIR}")
        elif first.step is None and not first.image:
            self.lines.append(f"FROM scratch AS {stage}")
        else:
            self.lines.append(f"FROM {self._source(first, where)} AS {stage}")
        for layer in layers[1:]:
            self._copy_layer(layer, where)

    def _copy_layer(self, layer: Layer, where: str) -> None:
        if not layer.include:
            raise RailpackError(f"{where}: an input after the first one names no include paths")
        if layer.local:
            for include in layer.include:
                source, destination = _copy_source(_check_path(include, "local"), local=True)
                self.lines.append(_copy_json([source], destination))
            return
        origin = self._source(layer, where)
        if layer.exclude:
            origin = self._filter_stage(origin, layer)
        for include in layer.include:
            source, destination = _copy_source(_check_path(include, "input"), local=False)
            if source != WORKING_DIR:
                source = _maybe_missing(source)
            self.lines.append(_copy_json([source], destination, from_stage=origin))

    def _filter_stage(self, origin: str, layer: Layer) -> str:
        """A stage of `origin` without the excluded paths of each include (relative to it,
        as BuildKit's exclude patterns are); the current stage resumes after it."""
        self.filters += 1
        name = f"rp-filter-{self.filters}"
        removals = []
        for pattern in layer.exclude:
            if not _SAFE_PATTERN.fullmatch(pattern) or ".." in pattern.split("/"):
                raise RailpackError(f"railpack's plan excludes {pattern!r}, which cannot be used")
            for include in layer.include:
                source, _ = _copy_source(include, local=False)
                removals.append(f"{shlex.quote(source)}/{pattern.lstrip('/')}")
        script = "rm -rf -- " + " ".join(removals)
        # The filter stage goes before the stage being written (a stage cannot be nested).
        current = _last_from(self.lines)
        block = [f"FROM {origin} AS {name}", f"RUN {_json_args(['/bin/sh', '-c', script])}", ""]
        self.lines[current:current] = block
        return name

    def _mounts(self, step: Step) -> str:
        mounts = ""
        for key in step.caches:
            cache = self.plan.caches.get(key)
            if cache is None:
                raise RailpackError(f"step {step.name!r} uses the cache {key!r}, not in the plan")
            directory = _check_path(cache.directory, "cache")
            identity = cache_id(self.cache_namespace, directory)
            mounts += (
                "--mount=type=cache,"
                + (f"id={identity}," if identity else "")
                + f"target={directory},sharing={cache.type} "
            )
        for name in self.secret_names:
            mounts += f"--mount=type=secret,id={name},required=true "
        return mounts

    def _exec(self, step: Step, command: ExecCommand) -> str:
        try:
            args = shlex.split(command.cmd)
        except ValueError as error:
            raise RailpackError(
                f"step {step.name!r} runs a command that cannot be split ({error}): {command.cmd}"
            ) from None
        if not args:
            raise RailpackError(f"step {step.name!r} has an empty command")
        if self.secret_names:
            exports = "".join(
                f'export {name}="$(cat {SECRETS_DIR}/{name})"; ' for name in self.secret_names
            )
            args = ["/bin/sh", "-c", f'{exports}exec "$@"', "sh", *args]
        return f"RUN {self._mounts(step)}{_json_args(args)}"

    def _file(self, step: Step, command: FileCommand) -> str:
        if command.name not in step.assets:
            raise RailpackError(f"step {step.name!r} writes the asset {command.name!r}, not in it")
        path = _check_path(command.path, "file")
        encoded = base64.b64encode(step.assets[command.name].encode()).decode()
        mode = format(command.mode or 0o644, "o")
        script = (
            f"mkdir -p {shlex.quote(posixpath.dirname(path) or '/')} && printf %s {encoded} "
            f"| base64 -d > {shlex.quote(path)} && chmod {mode} {shlex.quote(path)}"
        )
        return f"RUN {_json_args(['/bin/sh', '-c', script])}"

    def step(self, step: Step) -> None:
        stage = self.stages[step.name]
        where = f"step {step.name!r}"
        self.lines.append(f"# railpack step {step.name}")
        self._from(step.inputs, stage, where)
        self.lines.append(f"WORKDIR {WORKING_DIR}")
        inherited = _Env()
        for layer in step.inputs:
            if layer.step is not None and layer.step in self.outputs:
                inherited.merge(self.outputs[layer.step])
        output = _Env(dict(inherited.variables), list(inherited.paths))
        output.variables.update(step.variables)
        self.lines += _env_line(output.variables)
        if output.paths:
            self.lines += _env_line({"PATH": _path_value(output.paths)})
        for command in step.commands:
            if isinstance(command, ExecCommand):
                self.lines.append(self._exec(step, command))
            elif isinstance(command, PathCommand):
                directory = _check_path(command.path, "PATH")
                output.paths = [directory, *(p for p in output.paths if p != directory)]
                self.lines += _env_line({"PATH": _path_value(output.paths)})
            elif isinstance(command, CopyCommand):
                source = _check_path(command.src, "copy")
                destination = _check_path(command.dest, "copy")
                origin = self.images(command.image) if command.image else None
                self.lines.append(_copy_json([source], destination, from_stage=origin))
            elif isinstance(command, FileCommand):
                self.lines.append(self._file(step, command))
        self.outputs[step.name] = output
        self.lines.append("")

    # --- the image -----------------------------------------------------------------------

    def deploy(self, start: str) -> None:
        deploy = self.plan.deploy
        self.lines.append("# railpack deploy")
        self._from([deploy.base, *deploy.inputs], "rp-deploy", "deploy")
        env = _Env()
        for layer in deploy.inputs:
            if layer.step is not None and layer.step in self.outputs:
                env.merge(self.outputs[layer.step])
        variables = {**env.variables, **deploy.variables}
        # Railpack sorts the image's PATH entries.
        variables["PATH"] = ":".join(sorted({*deploy.paths, *env.paths, DEFAULT_PATH}))
        self.lines.append(f"WORKDIR {WORKING_DIR}")
        self.lines += _env_line(variables)
        self.lines.append(f"ENTRYPOINT {_json_args(['/bin/bash', '-c'])}")
        self.lines.append(f"CMD {_json_args([start])}")

    def render(self, header: str, start: str) -> str:
        self.lines = [f"# {header}", ""]
        ordered = self.order()
        for step in ordered:
            self.stages[step.name] = self._stage_name(step.name)
        for step in ordered:
            self.step(step)
        self.deploy(start)
        return "\n".join(self.lines) + "\n"


def _last_from(lines: Sequence[str]) -> int:
    """Where the stage being written starts (its comment line, or its FROM)."""
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].startswith("FROM "):
            if index > 0 and lines[index - 1].startswith("# railpack "):
                return index - 1
            return index
    return len(lines)


def _copy_json(sources: Sequence[str], destination: str, *, from_stage: str | None = None) -> str:
    origin = f"--from={from_stage} " if from_stage else ""
    return f"COPY {origin}{_json_args([*sources, destination])}"


def render_plan(
    plan: RailpackPlan,
    *,
    images: ImageMap,
    start: str,
    header: str,
    secret_names: Sequence[str] = (),
    cache_namespace: str | None = None,
) -> str:
    """The Dockerfile of `plan`; `images` maps each image the plan names to the one to
    pull (a mirror, or a stand-in for ghcr.io's Railpack images)."""
    return _Renderer(plan, images, secret_names, cache_namespace).render(header, start)
