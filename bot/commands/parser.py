"""The pure `/deploy` command parser, shared by PR and MR comments and Slack.

Text in, one value out (as Atlantis' comment parser): a `Command` to run, a `Response` to
send back (help, a usage error, a "did you mean"), or `Ignore` when the text is not meant
for the bot. It never calls a forge and never raises on user input.
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from pipeline import values
from pipeline.errors import InvalidValue

PREFIX = "/deploy"

Name = Literal["deploy", "cancel", "status", "rollback", "help", "list"]
SUBCOMMANDS: tuple[Name, ...] = ("cancel", "status", "rollback", "help")
# Slack's `/deploy` also lists the services (`/deploy list`).
SLACK_SUBCOMMANDS: tuple[Name, ...] = (*SUBCOMMANDS, "list")
_FLAGS: dict[Name, tuple[str, ...]] = {
    "deploy": ("--ref",),
    "cancel": (),
    "status": (),
    "rollback": (),
    "help": (),
    "list": (),
}
_TAKES_SERVICE: frozenset[Name] = frozenset({"deploy", "rollback"})
ID_DIGITS_MAX = 18  # every 18-digit number fits in a bigint
COMMAND_MAX = 1000  # characters after /deploy on its line: refs are at most 255

USAGE: dict[Name, str] = {
    "deploy": "/deploy [SERVICE] [--ref REF]",
    "cancel": "/deploy cancel",
    "status": "/deploy status",
    "rollback": "/deploy rollback [SERVICE]",
    "help": "/deploy help",
    "list": "/deploy list",
}

# Slack's forms: positional arguments instead of flags (`parse(..., slack=True)`).
SLACK_USAGE: dict[Name, str] = {
    "deploy": "/deploy SERVICE [REF]",
    "cancel": "/deploy cancel ID",
    "status": "/deploy status [SERVICE|ID]",
    "rollback": "/deploy rollback SERVICE",
    "help": "/deploy help",
    "list": "/deploy list",
}

SLACK_HELP = "\n".join(
    [
        "*click-deploy commands*",
        f"• `{SLACK_USAGE['deploy']}`: build and deploy SERVICE (its branch head, or REF)",
        f"• `{SLACK_USAGE['status']}`: the latest deployments, a service's, or one",
        f"• `{SLACK_USAGE['cancel']}`: cancel a queued or running deployment",
        f"• `{SLACK_USAGE['rollback']}`: put the previous good image back, no rebuild",
        f"• `{SLACK_USAGE['list']}`: the services and their current images",
        f"• `{SLACK_USAGE['help']}`: this message",
    ]
)

HELP = "\n".join(
    [
        "**click-deploy commands** (at the start of a line):",
        "",
        "| command | what it does |",
        "| --- | --- |",
        f"| `{USAGE['deploy']}` | build and deploy this pull request "
        "(or the branch head, or REF) |",
        f"| `{USAGE['cancel']}` | cancel the queued or running deployment |",
        f"| `{USAGE['status']}` | where each service's deployment is |",
        f"| `{USAGE['rollback']}` | put the previous good image back, no rebuild |",
        f"| `{USAGE['help']}` | this message |",
    ]
)


@dataclass(frozen=True)
class Command:
    name: Name
    service: str | None = None
    ref: str | None = None
    # Slack only: what `status` or `cancel` is about (a service name or a deployment id).
    target: str | None = None


@dataclass(frozen=True)
class Response:
    """Something to say back instead of running anything."""

    kind: Literal["help", "usage", "suggestion"]
    text: str


@dataclass(frozen=True)
class Ignore:
    """Not a command for this bot."""


Result = Command | Response | Ignore


def deployment_id(word: str) -> int | None:
    """`word` as a deployment id: ASCII digits only ("²" and "١٢" are digits to Python, not
    to int() or PostgreSQL), positive, and a bigint."""
    if word.isascii() and word.isdigit() and len(word) <= ID_DIGITS_MAX and int(word) > 0:
        return int(word)
    return None


def _not_a_ref(value: str) -> str | None:
    """Why `value` cannot be a ref to deploy, or None when it can (the shared rule)."""
    if len(value) > values.REF_MAX:
        return f"That ref is longer than {values.REF_MAX} characters."
    if not values.valid_ref(value):
        return f"`{shown(value)}` is not a branch, tag or commit: use {values.REF_RULE}."
    return None


def _usage(name: Name, problem: str, slack: bool = False) -> Response:
    usage = SLACK_USAGE[name] if slack else USAGE[name]
    return Response("usage", f"{problem}\n\nUsage: `{usage}`")


def _suggest(word: str, choices: tuple[str, ...]) -> str | None:
    found = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return found[0] if found else None


def is_service_name(word: str) -> bool:
    """A name a service could have (`[a-z0-9-]`, at most 63 characters), in any case."""
    try:
        values.service_name(word.lower())
    except InvalidValue:
        return False
    return True


def shown(word: str, limit: int = 60) -> str:
    """A word of the user's for an answer: cut short, invisible characters made visible."""
    visible = "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode() for c in word[:limit]
    )
    if len(word) <= limit and len(visible) <= limit:
        return visible
    return visible[: limit - 1] + "…"


def _parse_words(words: list[str], services: Collection[str], slack: bool = False) -> Result:
    """`words` come after the /deploy prefix. `slack`: Slack's positional forms
    (`SERVICE [REF]`, `status [SERVICE|ID]`, `cancel ID`) and `list`."""
    subcommands = SLACK_SUBCOMMANDS if slack else SUBCOMMANDS
    name: Name = "deploy"
    if words and not words[0].startswith("-"):
        first = words[0].lower()
        if first in services:
            pass  # a service that happens to look like a command's typo
        elif first in subcommands:
            name = first
            words = words[1:]
        else:
            near = _suggest(first, subcommands)
            if near is not None and first != near:
                # A typo of a subcommand beats a service of that name only when the word
                # is not a plausible service; both are possible, so ask.
                return Response(
                    "suggestion",
                    f"`{shown(words[0])}` is not a command. Did you mean `/deploy {near}`?\n\n"
                    f"(To deploy a service named `{shown(words[0])}`, it must exist; "
                    "`/deploy help` lists the commands.)",
                )
    if name in ("help", "list"):
        if words:
            return _usage(
                name,
                f"`/deploy {name}` takes no arguments (got `{shown(' '.join(words))}`).",
                slack,
            )
        return Response("help", SLACK_HELP if slack else HELP) if name == "help" else Command(name)

    service: str | None = None
    ref: str | None = None
    target: str | None = None
    allowed = _FLAGS[name]
    index = 0
    while index < len(words):
        word = words[index]
        if word.startswith("-"):
            flag, eq, value = word.partition("=")
            if flag not in allowed:
                near = _suggest(flag, allowed) if allowed else None
                hint = f" Did you mean `{near}`?" if near else ""
                return _usage(
                    name, f"Unknown flag `{shown(flag)}` for `/deploy {name}`.{hint}", slack
                )
            if not eq:
                index += 1
                if index >= len(words) or words[index].startswith("-"):
                    return _usage(name, f"`{flag}` needs a value.", slack)
                value = words[index]
            if not value:
                return _usage(name, f"`{flag}` needs a value.", slack)
            if ref is not None:
                return _usage(name, f"`{flag}` given twice.", slack)
            problem = _not_a_ref(value)
            if problem is not None:
                return _usage(name, problem, slack)
            ref = value
        elif name in _TAKES_SERVICE and service is None:
            if not is_service_name(word):
                return _usage(
                    name,
                    f"`{shown(word)}` is not a service name: use {values.SERVICE_NAME_RULE}.",
                    slack,
                )
            service = word.lower()
        elif slack and name == "deploy" and ref is None:
            problem = _not_a_ref(word)
            if problem is not None:
                return _usage(name, problem, slack)
            ref = word
        elif slack and name in ("status", "cancel") and target is None:
            if name == "cancel" and deployment_id(word) is None:
                return _usage(name, f"`{shown(word)}` is not a deployment id.", slack)
            if deployment_id(word) is None and not is_service_name(word):
                return _usage(
                    name, f"`{shown(word)}` is neither a service nor a deployment id.", slack
                )
            target = word.lower()
        else:
            return _usage(name, f"Unexpected argument `{shown(word)}`.", slack)
        index += 1
    if slack and service is None and name in _TAKES_SERVICE:
        return _usage(name, "Which service?", slack)
    if slack and target is None and name == "cancel":
        return _usage(name, "Which deployment?", slack)
    return Command(name=name, service=service, ref=ref, target=target)


def parse_line(line: str, services: Collection[str] = (), *, slack: bool = False) -> Result:
    """One line: a command if it starts with /deploy (leading spaces allowed)."""
    stripped = line.strip()
    if not stripped.startswith(PREFIX):
        head = stripped.split(maxsplit=1)[0] if stripped else ""
        # A long word cannot be a typo of the prefix (ratio >= 0.8), and comparing it is slow.
        if (
            head.startswith("/")
            and len(head) <= 2 * len(PREFIX)
            and difflib.SequenceMatcher(None, head, PREFIX).ratio() >= 0.8
        ):
            return Response(
                "suggestion", f"`{shown(head)}` is not a command. Did you mean `{PREFIX}`?"
            )
        return Ignore()
    rest = stripped[len(PREFIX) :]
    if rest and not rest[0].isspace():
        # "/deployment", "/deploy-all": another word. "/deplyo" never reaches here.
        return Ignore()
    if len(rest) > COMMAND_MAX:
        # No command is this long; reading it would only cost time (shlex is slow).
        return Response("usage", f"That command is longer than {COMMAND_MAX} characters.")
    try:
        words = shlex.split(rest)
    except ValueError as error:
        return Response("usage", f"Could not read the command: {error}.\n\n{HELP}")
    return _parse_words(words, services, slack)


def parse_slack(text: str, services: Collection[str] = ()) -> Result:
    """A Slack slash command's text (what follows `/deploy`), in Slack's forms."""
    return parse_line(f"{PREFIX} {text}", services, slack=True)


def parse(text: str, services: Collection[str] = ()) -> Result:
    """A comment or message: the first line that starts with `/deploy` decides. Lines in
    fenced code blocks and quotes are not commands. `services` are the names known here
    (a service called like a command's typo is then not taken for one)."""
    fenced = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```") or stripped.startswith("~~~"):
            fenced = not fenced
            continue
        if fenced or stripped.startswith(">"):
            continue
        result = parse_line(line, services)
        if not isinstance(result, Ignore):
            return result
    return Ignore()
