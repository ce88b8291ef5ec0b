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

PREFIX = "/deploy"

Name = Literal["deploy", "cancel", "status", "rollback", "help"]
SUBCOMMANDS: tuple[Name, ...] = ("cancel", "status", "rollback", "help")
_FLAGS: dict[Name, tuple[str, ...]] = {
    "deploy": ("--ref",),
    "cancel": (),
    "status": (),
    "rollback": (),
    "help": (),
}
_TAKES_SERVICE: frozenset[Name] = frozenset({"deploy", "rollback"})

USAGE: dict[Name, str] = {
    "deploy": "/deploy [SERVICE] [--ref REF]",
    "cancel": "/deploy cancel",
    "status": "/deploy status",
    "rollback": "/deploy rollback [SERVICE]",
    "help": "/deploy help",
}

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


@dataclass(frozen=True)
class Response:
    """Something to say back instead of running anything."""

    kind: Literal["help", "usage", "suggestion"]
    text: str


@dataclass(frozen=True)
class Ignore:
    """Not a command for this bot."""


Result = Command | Response | Ignore


def _usage(name: Name, problem: str) -> Response:
    return Response("usage", f"{problem}\n\nUsage: `{USAGE[name]}`")


def _suggest(word: str, choices: tuple[str, ...]) -> str | None:
    found = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return found[0] if found else None


def _looks_like_service(word: str) -> bool:
    return word.replace("-", "").isalnum() and word[:1].isalnum()


def _parse_words(words: list[str], services: Collection[str]) -> Result:
    """`words` come after the /deploy prefix."""
    name: Name = "deploy"
    if words and not words[0].startswith("-"):
        first = words[0].lower()
        if first in services:
            pass  # a service that happens to look like a command's typo
        elif first in SUBCOMMANDS:
            name = first
            words = words[1:]
        else:
            near = _suggest(first, SUBCOMMANDS)
            if near is not None and first != near:
                # A typo of a subcommand beats a service of that name only when the word
                # is not a plausible service; both are possible, so ask.
                return Response(
                    "suggestion",
                    f"`{words[0]}` is not a command. Did you mean `/deploy {near}`?\n\n"
                    f"(To deploy a service named `{words[0]}`, it must exist; "
                    "`/deploy help` lists the commands.)",
                )
    if name == "help":
        if words:
            return _usage(name, f"`/deploy help` takes no arguments (got `{' '.join(words)}`).")
        return Response("help", HELP)

    service: str | None = None
    ref: str | None = None
    allowed = _FLAGS[name]
    index = 0
    while index < len(words):
        word = words[index]
        if word.startswith("-"):
            flag, eq, value = word.partition("=")
            if flag not in allowed:
                near = _suggest(flag, allowed) if allowed else None
                hint = f" Did you mean `{near}`?" if near else ""
                return _usage(name, f"Unknown flag `{flag}` for `/deploy {name}`.{hint}")
            if not eq:
                index += 1
                if index >= len(words) or words[index].startswith("-"):
                    return _usage(name, f"`{flag}` needs a value.")
                value = words[index]
            if not value:
                return _usage(name, f"`{flag}` needs a value.")
            if ref is not None:
                return _usage(name, f"`{flag}` given twice.")
            ref = value
        elif name in _TAKES_SERVICE and service is None:
            if not _looks_like_service(word):
                return _usage(name, f"`{word}` is not a service name.")
            service = word.lower()
        else:
            return _usage(name, f"Unexpected argument `{word}`.")
        index += 1
    return Command(name=name, service=service, ref=ref)


def parse_line(line: str, services: Collection[str] = ()) -> Result:
    """One line: a command if it starts with /deploy (leading spaces allowed)."""
    stripped = line.strip()
    if not stripped.startswith(PREFIX):
        head = stripped.split(maxsplit=1)[0] if stripped else ""
        if head.startswith("/") and difflib.SequenceMatcher(None, head, PREFIX).ratio() >= 0.8:
            return Response("suggestion", f"`{head}` is not a command. Did you mean `{PREFIX}`?")
        return Ignore()
    rest = stripped[len(PREFIX) :]
    if rest and not rest[0].isspace():
        # "/deployment", "/deploy-all": another word. "/deplyo" never reaches here.
        return Ignore()
    try:
        words = shlex.split(rest)
    except ValueError as error:
        return Response("usage", f"Could not read the command: {error}.\n\n{HELP}")
    return _parse_words(words, services)


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
