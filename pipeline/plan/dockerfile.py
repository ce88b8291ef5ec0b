"""The one renderer: a `Layout` becomes Dockerfile text.

Conventions every generated Dockerfile follows, whatever the runtime:
- no `# syntax=` line (it would pull docker/dockerfile from Docker Hub); the built-in
  frontend (Docker 20.10's too) supports `RUN --mount=type=cache` and `type=secret`, but
  not a secret's `env=` option (Dockerfile 1.10), so a step reads its secrets itself;
- cache mounts carry an id per service; build values are secrets, never ARGs;
- dependency manifests are copied before the source, so a source-only change reuses the
  install layer;
- the app runs as uid 10001, created by appending to /etc/passwd (no useradd needed);
- `ENV PORT=8080`, and the start command runs through `sh -c` so `$PORT` expands; the shell
  passes SIGTERM on to the app (see `cmd`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from pipeline.plan.context import Layout, Step
from pipeline.plan.model import DEFAULT_PORT, PORT_ENV

APP_UID = 10001
APP_HOME = "/home/app"

DEFAULT_DOCKERIGNORE = """\
# Written by click-deploy because the repository has no .dockerignore.
.git
.hg
.svn
**/node_modules
**/__pycache__
**/*.py[cod]
**/.venv
**/.mypy_cache
**/.pytest_cache
**/.ruff_cache
**/.tox
.bundle
vendor/bundle
.DS_Store
**/.DS_Store
.idea
.vscode
npm-debug.log*
yarn-error.log*
"""


def _quote_env(value: str) -> str:
    if value and not re.search(r"[\s\"'\\]", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _env(values: dict[str, str]) -> list[str]:
    if not values:
        return []
    pairs = [f"{key}={_quote_env(value)}" for key, value in values.items()]
    if len(pairs) == 1:
        return [f"ENV {pairs[0]}"]
    return ["ENV " + " \\\n    ".join(pairs)]


SECRETS_DIR = "/run/secrets"
_CACHE_NAMESPACE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


def cache_id(namespace: str | None, target: str) -> str | None:
    """The id of a cache mount: the directory, under the service's namespace (BuildKit
    shares a cache id across every build on a daemon, so one service's build could plant
    files in another's cache). None without a namespace: the directory alone."""
    if namespace is None:
        return None
    if not _CACHE_NAMESPACE.fullmatch(namespace):
        raise ValueError(f"cache namespace {namespace!r}: use a-z, 0-9, '.', '_' and '-'")
    return f"{namespace}{target}"


def _run(step: Step, *, secrets: Sequence[str] = (), cache_namespace: str | None = None) -> str:
    """One RUN with its cache mounts and, for `secrets`, a secret mount each whose value
    the command sees as an environment variable of that name: the value is read from the
    tmpfs BuildKit mounts, so it is in no layer, no ARG and no line of the image's history
    (those only show the names)."""
    mounts = ""
    for cache in step.caches:
        identity = cache_id(cache_namespace, cache)
        mounts += f"--mount=type=cache,{f'id={identity},' if identity else ''}target={cache} "
    mounts += "".join(f"--mount=type=secret,id={name},required=true " for name in secrets)
    exports = "".join(f'export {name}="$(cat {SECRETS_DIR}/{name})"; ' for name in secrets)
    return f"RUN {mounts}{exports}{step.command}"


def _copy(sources: Sequence[str], destination: str, *, from_stage: str | None = None) -> str:
    origin = f"--from={from_stage} " if from_stage else ""
    if any(re.search(r"\s", item) for item in (*sources, destination)):
        quoted = ", ".join(f'"{item}"' for item in (*sources, destination))
        return f"COPY {origin}[{quoted}]"
    return f"COPY {origin}{' '.join(sources)} {destination}"


def _copy_manifests(manifests: Sequence[str]) -> list[str]:
    """One COPY per directory, in first-seen order; a trailing slash marks a directory."""
    groups: dict[str, list[str]] = {}
    lines = []
    for item in manifests:
        if item.endswith("/"):
            lines.append(_copy([item], item))
            continue
        parent = item.rsplit("/", 1)[0] + "/" if "/" in item else "./"
        groups.setdefault(parent, []).append(item)
    return [_copy(items, parent) for parent, items in groups.items()] + lines


def apt_install(packages: Sequence[str]) -> str:
    return (
        "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
        f"--no-install-recommends {' '.join(packages)} && rm -rf /var/lib/apt/lists/*"
    )


def create_user() -> str:
    """The non-root user, without useradd/groupadd (minimal images lack them). Run early
    in the stage the app runs in, so the layer stays cached."""
    commands = [
        f"(grep -q '^app:' /etc/group || echo 'app:x:{APP_UID}:' >> /etc/group)",
        f"(grep -q '^app:' /etc/passwd || echo 'app:x:{APP_UID}:{APP_UID}:app:{APP_HOME}:/bin/sh'"
        " >> /etc/passwd)",
        f"mkdir -p {APP_HOME}",
        f"chown {APP_UID}:{APP_UID} {APP_HOME}",
    ]
    return "RUN " + " \\\n && ".join(commands)


def writable_dirs(dirs: Sequence[str]) -> str:
    joined = " ".join(dirs)
    return f"RUN mkdir -p {joined} && chown -R {APP_UID}:{APP_UID} {joined}"


# PID 1 ignores signals it has no handler for, and node, python or `php -S` install none: as
# PID 1 they would sit out SIGTERM until SIGKILL. So the shell stays PID 1, runs the app in
# the background, passes SIGTERM/SIGINT on as SIGTERM, and exits with the app's status.
_SUPERVISE = (
    "{start} & pid=$!; trap 'kill -TERM $pid 2>/dev/null' TERM INT; wait $pid; code=$?; "
    "if kill -0 $pid 2>/dev/null; then wait $pid; code=$?; fi; exit $code"
)


_SIMPLE = re.compile(r"[^;&|<>()`\n]*")


def cmd(start: str) -> str:
    """The start command under `sh -c` (so `$PORT` expands), with signals passed on."""
    group = start if _SIMPLE.fullmatch(start) else f"{{ {start}; }}"
    script = _SUPERVISE.format(start=group)
    return f'CMD ["/bin/sh", "-c", {json.dumps(script)}]'


def render(
    layout: Layout,
    *,
    header: str,
    secret_names: Sequence[str] = (),
    extra_apt: Sequence[str] = (),
    cache_namespace: str | None = None,
    extra_build_apt: Sequence[str] = (),
) -> str:
    """Dockerfile text for `layout`. `secret_names` (the build env) reach the install,
    build and after-source steps as BuildKit secrets, exported as variables of that name
    for the step alone: never ARGs, so never in the image's history. `extra_apt` packages
    go to the stage that runs the app when it is a Debian image, else to the build stage;
    `extra_build_apt` packages to the build stage only. `cache_namespace` (one per service)
    prefixes the id of every cache mount."""
    runtime = layout.runtime
    apt_in_runtime = runtime is not None and runtime.apt
    build_apt = list(layout.apt_packages)
    runtime_apt = list(runtime.apt_packages) if runtime is not None and runtime.apt else []
    if extra_apt and apt_in_runtime:
        runtime_apt += [item for item in extra_apt if item not in runtime_apt]
    elif extra_apt and layout.apt:
        build_apt += [item for item in extra_apt if item not in build_apt]
    build_apt += [item for item in extra_build_apt if item not in build_apt]

    lines = [f"# {header}", ""]
    lines.append(f"FROM {layout.image}" + (f" AS {layout.stage}" if runtime else ""))
    lines.append(f"WORKDIR {layout.workdir}")
    lines += _env(layout.env)
    if build_apt and layout.apt:
        lines.append(apt_install(build_apt))
    if runtime is None:
        lines.append(create_user())
    lines += [_run(step, cache_namespace=cache_namespace) for step in layout.setup]

    def run(step: Step) -> str:
        # From the install on, the build env is there (a private registry's token reaches
        # the install); the tools above never see it.
        return _run(step, secrets=secret_names, cache_namespace=cache_namespace)

    if layout.manifests and layout.install is not None and not layout.copy_source_first:
        lines += _copy_manifests(layout.manifests)
        if layout.install is not None:
            lines.append(run(layout.install))
        lines.append("COPY . .")
    else:
        lines.append("COPY . .")
        if layout.install is not None:
            lines.append(run(layout.install))
    lines += [run(step) for step in layout.after_source]
    lines += _env(layout.build_env)
    if layout.build is not None:
        lines.append(run(layout.build))
    lines += [run(step) for step in layout.after_build]

    if runtime is not None:
        lines += ["", f"FROM {runtime.image} AS runtime", f"WORKDIR {runtime.workdir}"]
        if runtime_apt:
            lines.append(apt_install(runtime_apt))
        lines.append(create_user())
        for source, destination in runtime.copies:
            lines.append(_copy([source], destination, from_stage=layout.stage))
        lines += [f"RUN {command}" for command in runtime.run]

    env = dict(layout.runtime_env)
    if runtime is None:  # one stage: what the build already set need not be set again
        env = {key: value for key, value in env.items() if layout.build_env.get(key) != value}
    env.update({"HOME": APP_HOME, PORT_ENV: str(DEFAULT_PORT)})
    lines += _env(env)
    if layout.writable:
        lines.append(writable_dirs(layout.writable))
    lines.append(f"USER {APP_UID}:{APP_UID}")
    if not layout.worker:
        lines.append(f"EXPOSE {DEFAULT_PORT}")
    if layout.start is not None:
        lines.append(cmd(layout.start))
    return "\n".join(lines) + "\n"
