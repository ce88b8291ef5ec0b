"""The environment a released service runs with: its config's `env`, and the values of its
`secrets` read from RELEASE_SECRETS_DIR/<service>/<NAME> when it starts. Secret values
live only there and in the running container's environment: never in the image, the
database, a log line or a message."""

from __future__ import annotations

from pathlib import Path

from pipeline.release.base import ReleaseFailed, ReleaseRequest
from pipeline.settings import Settings

MAX_SECRET_BYTES = 64 * 1024


def redacted(lines: list[str], request: ReleaseRequest, environment: dict[str, str]) -> list[str]:
    """A container's log lines with the values of its secrets replaced: an app that prints
    its configuration must not put them into the deployment's log or failure."""
    values = sorted(
        (
            environment[name]
            for name in request.config.secrets
            if len(environment.get(name, "")) >= 4
        ),
        key=len,
        reverse=True,
    )
    if not values:
        return lines
    out = []
    for line in lines:
        for value in values:
            line = line.replace(value, "<secret>")
        out.append(line)
    return out


def service_environment(request: ReleaseRequest, settings: Settings) -> dict[str, str]:
    environment = dict(request.config.env)
    if not request.config.secrets:
        return environment
    if settings.release_secrets_dir is None:
        raise ReleaseFailed(
            f"{request.service} needs the secrets {', '.join(request.config.secrets)}, but "
            "RELEASE_SECRETS_DIR is not set: put each value in RELEASE_SECRETS_DIR/"
            f"{request.service}/<NAME>"
        )
    folder = Path(settings.release_secrets_dir) / request.service
    missing = []
    for name in request.config.secrets:
        path = folder / name
        try:
            with path.open("rb") as file:
                value = file.read(MAX_SECRET_BYTES + 1)
        except OSError:
            missing.append(name)
            continue
        if len(value) > MAX_SECRET_BYTES:
            raise ReleaseFailed(f"the secret {name} of {request.service} is over 64 KiB")
        try:
            # One trailing newline is how editors and `echo` end a file, not the value.
            environment[name] = value.decode().removesuffix("\n")
        except UnicodeDecodeError:
            raise ReleaseFailed(
                f"the secret {name} of {request.service} is not UTF-8 text"
            ) from None
    if missing:
        raise ReleaseFailed(
            f"{request.service}: no file for the secret{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} in {folder} (one file per secret, named after it)"
        )
    return environment
