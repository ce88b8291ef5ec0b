"""Examples shown at the end of every `click-deploy … --help`, one table for all commands.

Kept apart from the commands so that the help of each stays a sentence and its options, and
so that one test can see that no command is left without an example.
"""

from __future__ import annotations

import click

# Keyed by the command's path below `click-deploy` ("" is `click-deploy` itself).
EXAMPLES: dict[str, tuple[str, ...]] = {
    "": (
        "click-deploy service add hello --repo examples/hello",
        "click-deploy deploy hello --follow",
        "click-deploy deploy --help",
    ),
    "migrate": ("click-deploy migrate",),
    "worker": (
        "click-deploy worker",
        "click-deploy worker --slots 4",
    ),
    "serve": (
        "click-deploy serve    # then: click-deploy service add hello --repo examples/hello",
        "HTTP_HOST=0.0.0.0 HTTP_PORT=9000 click-deploy serve --slots 4",
    ),
    "deploy": (
        "click-deploy deploy hello --follow",
        "click-deploy deploy web --ref release-2.1",
        "click-deploy deploy web --env staging --commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
    ),
    "deployments": (
        "click-deploy deployments web",
        "click-deploy deployments web --status failed --limit 5",
    ),
    "status": ("click-deploy status 42",),
    "logs": (
        "click-deploy logs 42",
        "click-deploy logs 42 --follow",
    ),
    "cancel": ("click-deploy cancel 42",),
    "rollback": (
        "click-deploy rollback web",
        "click-deploy rollback web --to 40 --follow",
        "click-deploy rollback web --env pr-12",
    ),
    "plan": (
        "click-deploy plan",
        "click-deploy plan ~/src/shop --root-dir web",
        "click-deploy plan . --provider python --json",
    ),
    "doctor": (
        "click-deploy doctor",
        "click-deploy doctor --json | jq '.checks[] | select(.ok | not)'",
    ),
    "service": (
        "click-deploy service add web --repo acme/web --provider github",
        "click-deploy service list",
    ),
    "service add": (
        "click-deploy service add hello --repo examples/hello     # a folder on this machine",
        "click-deploy service add web --repo acme/web --provider github --branch main",
        "click-deploy service add api --repo group/api --provider gitlab --root-dir api",
        "click-deploy service add site --repo https://git.example.com/site.git",
        "click-deploy service add web --repo acme/web --provider github "
        """--config '{"previews": true}'""",
    ),
    "service update": (
        "click-deploy service update web --branch production",
        "click-deploy service update web --config @web-config.json",
    ),
    "service list": ("click-deploy service list",),
    "service show": ("click-deploy service show web",),
    "service remove": (
        "click-deploy service remove web",
        "click-deploy service remove web --yes",
    ),
    "token": (
        "click-deploy token create --name ci --scope deploy",
        "click-deploy token list",
    ),
    "token create": (
        "click-deploy token create --name ci --scope deploy",
        "click-deploy token create --name dashboard",
    ),
    "token list": ("click-deploy token list",),
    "token revoke": ("click-deploy token revoke ci",),
}


def examples_text(path: str) -> str:
    """The epilog block for one command; `\\b` keeps click from re-wrapping the lines."""
    lines = "\n".join(f"  {example}" for example in EXAMPLES[path])
    return f"\b\nExamples:\n{lines}"


def add_examples(command: click.Command, path: str = "") -> None:
    """Append its examples to the help of `command` and of every command below it
    (tests/test_docs.py checks that every command has some)."""
    if path in EXAMPLES:
        block = examples_text(path)
        if block not in (command.epilog or ""):
            command.epilog = f"{command.epilog}\n\n{block}" if command.epilog else block
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            add_examples(sub, f"{path} {name}".strip())
