"""A stand-in `railpack` CLI that replays recorded output (tests/fixtures/railpack/<case>/).

Railpack cannot be installed here. `install(bin_dir, case)` writes an executable
`bin_dir/railpack` bound to one recorded case. It accepts what the real `railpack prepare`
accepts (cli/prepare.go and cli/common.go: the directory, `--plan-out`, `--info-out`,
`--workspace`, `--env`, `--var`, `--previous`, `--build-cmd`, `--start-cmd`,
`--config-file`, `--error-missing-start`) and refuses anything else the way urfave/cli does
("flag provided but not defined"); it prints the recorded stdout, writes the recorded
plan (only on success, as the real CLI exits before writing on a failure) and exits with
the recorded status. Each call is appended to `bin_dir/railpack-calls.jsonl` (argv), so a
test can check what click-deploy passed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "railpack"
VALUE_FLAGS = {
    "--plan-out",
    "--info-out",
    "--workspace",
    "-w",
    "--env",
    "-e",
    "--var",
    "--previous",
    "--build-cmd",
    "--start-cmd",
    "--config-file",
}
BOOL_FLAGS = {"--error-missing-start", "--verbose"}


def install(bin_dir: Path, case: str, *, delay_seconds: float = 0.0) -> Path:
    """Write `bin_dir/railpack` replaying `case`; returns its path."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    executable = bin_dir / "railpack"
    root = Path(__file__).resolve().parents[2]
    executable.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(root)!r})\n"
        "from tests.support.fake_railpack import main\n"
        f"sys.exit(main(sys.argv[1:], {case!r}, {str(bin_dir)!r}, {delay_seconds!r}))\n"
    )
    executable.chmod(0o755)
    return executable


def calls(bin_dir: Path) -> list[list[str]]:
    log = bin_dir / "railpack-calls.jsonl"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line]


def _fail(message: str) -> int:
    print(f"Incorrect Usage: {message}", file=sys.stderr)
    return 1


def main(argv: list[str], case: str, bin_dir: str, delay_seconds: float = 0.0) -> int:
    with open(Path(bin_dir) / "railpack-calls.jsonl", "a") as log:
        log.write(json.dumps(argv) + "\n")
    if not argv or argv[0] not in ("prepare", "p"):
        return _fail(f"command {argv[0] if argv else ''!r} is not replayed by this fake")
    options: dict[str, str] = {}
    positional: list[str] = []
    rest = argv[1:]
    while rest:
        item = rest.pop(0)
        name, _, inline = item.partition("=")
        if name in VALUE_FLAGS:
            if not inline and not rest:
                return _fail(f"flag needs an argument: {name}")
            options[name] = inline or rest.pop(0)
        elif name in BOOL_FLAGS:
            options[name] = "true"
        elif item.startswith("-"):
            return _fail(f"flag provided but not defined: {name}")
        else:
            positional.append(item)
    if len(positional) != 1:
        print("directory argument is required", file=sys.stderr)
        return 1
    if not Path(positional[0]).is_dir():
        print(f"error creating app: directory {positional[0]} does not exist", file=sys.stderr)
        return 1
    if delay_seconds:
        time.sleep(delay_seconds)
    recorded = FIXTURES / case
    sys.stdout.write((recorded / "stdout.txt").read_text())
    sys.stdout.flush()
    code = int((recorded / "exit_code").read_text().strip())
    if code != 0:
        return code
    for flag, name in (("--plan-out", "plan.json"), ("--info-out", "info.json")):
        if flag in options:
            target = Path(options[flag])
            os.makedirs(target.parent, exist_ok=True)
            shutil.copyfile(recorded / name, target)
    return 0
