"""A stand-in for `buildctl` that replays recorded `--progress=rawjson` output.

The tests put a `buildctl` wrapper running this file on PATH. Environment:
  FAKE_BUILDCTL_FIXTURES  the buildctl-rawjson fixture directory
  FAKE_BUILDCTL_SCENARIO  success-fresh | success-cached | failure-run-exit3 |
                          failure-missing-base | hang | hang-ignore-term | unreachable |
                          push-unauthorized
  FAKE_BUILDCTL_RECORD    a file to write what it was given (argv, its environment, the
                          DOCKER_CONFIG config.json, the --secret files, the Dockerfile,
                          Dockerfile.dockerignore) as JSON
Only the standard library: it runs under any python3.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

DIGEST = "sha256:" + "ab" * 32


def _option(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == flag]


def _record(argv: list[str]) -> None:
    path = os.environ.get("FAKE_BUILDCTL_RECORD")
    if not path:
        return
    config_dir = os.environ.get("DOCKER_CONFIG")
    config = None
    if config_dir and (Path(config_dir) / "config.json").exists():
        config_file = Path(config_dir) / "config.json"
        config = {
            "content": json.loads(config_file.read_text()),
            "mode": oct(config_file.stat().st_mode & 0o777),
        }
    secrets = {}
    for item in _option(argv, "--secret"):
        fields = dict(part.split("=", 1) for part in item.split(","))
        source = Path(fields["src"])
        secrets[fields["id"]] = {
            "content": source.read_text(),
            "mode": oct(source.stat().st_mode & 0o777),
            "path": str(source),
        }
    locals_ = dict(item.split("=", 1) for item in _option(argv, "--local"))
    dockerfile_dir = Path(locals_.get("dockerfile", "."))
    ignore = dockerfile_dir / "Dockerfile.dockerignore"
    partial = Path(f"{path}.partial")  # renamed when whole: a reader never sees half of it
    partial.write_text(
        json.dumps(
            {
                "argv": argv,
                "environ": dict(os.environ),
                "secrets": secrets,
                "pid": os.getpid(),
                "docker_config_dir": config_dir,
                "docker_config": config,
                "dockerfile_dir": str(dockerfile_dir),
                "dockerfile": (dockerfile_dir / "Dockerfile").read_text(),
                "dockerignore": ignore.read_text() if ignore.exists() else None,
            }
        )
    )
    partial.rename(path)


def _replay(name: str, *, stop_after: str | None = None) -> None:
    fixtures = Path(os.environ["FAKE_BUILDCTL_FIXTURES"])
    for line in (fixtures / f"{name}.jsonl").read_text().splitlines(keepends=True):
        sys.stderr.write(line)
        sys.stderr.flush()
        if stop_after is not None and stop_after in line:
            return


def main() -> int:
    argv = sys.argv[1:]
    _record(argv)
    scenario = os.environ.get("FAKE_BUILDCTL_SCENARIO", "success-fresh")
    if scenario.startswith("success"):
        _replay(scenario)
        metadata = _option(argv, "--metadata-file")
        if metadata:
            Path(metadata[0]).write_text(json.dumps({"containerimage.digest": DIGEST}))
        return 0
    if scenario.startswith("failure"):
        _replay(scenario)
        return 1
    if scenario == "unreachable":
        address = _option(argv, "--addr")[0]
        sys.stderr.write(
            "error: listing workers for Build: failed to list workers: Unavailable: connection "
            f'error: desc = "transport: Error while dialing dial unix {address}: connect: '
            'no such file or directory"\n'
        )
        return 1
    if scenario == "push-unauthorized":
        _replay("success-fresh", stop_after='"name":"exporting to image","started"')
        image = next(o for o in _option(argv, "--output")).split("name=")[1].split(",")[0]
        error = f"failed to push {image}: unexpected status: 401 Unauthorized"
        vertex = {
            "digest": "sha256:" + "cd" * 32,
            "name": "exporting to image",
            "started": "2026-11-27T08:39:36.1Z",
            "completed": "2026-11-27T08:39:36.2Z",
            "error": error,
        }
        sys.stderr.write(json.dumps({"vertexes": [vertex]}) + "\n")
        sys.stderr.write(f"error: failed to solve: {error}\n")
        return 1
    if scenario in ("hang", "hang-ignore-term"):
        marker = os.environ.get("FAKE_BUILDCTL_RECORD", "/dev/null") + ".terminated"

        def on_term(signum: int, frame: object) -> None:
            Path(marker).write_text("SIGTERM")
            sys.stderr.write("error: failed to solve: context canceled\n")
            sys.exit(1)

        if scenario == "hang":
            signal.signal(signal.SIGTERM, on_term)
        else:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _replay("success-fresh", stop_after='"name":"[2/4] RUN echo')
        while True:
            time.sleep(3600)
    sys.stderr.write(f"fake buildctl: unknown scenario {scenario}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
