"""The docs tell the truth about the code in the same commit: every setting is documented,
the generated page is current, links resolve, and the commands they name exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bot import docs_config
from bot.cli import main as cli
from bot.cli_examples import EXAMPLES
from pipeline.settings import Settings

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = sorted(
    page
    for page in [README, REPO / "bench" / "README.md", *(REPO / "docs").glob("*.md")]
    if page.exists()
)

FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]+`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
COMMAND = re.compile(r"click-deploy((?: [a-z][a-z-]*)+)")


def test_every_setting_has_a_description_a_person_can_act_on() -> None:
    for name, info in Settings.model_fields.items():
        description = (info.description or "").strip()
        assert len(description) > 10, f"{name.upper()} needs a Field(description=...)"
        assert description.endswith("."), f"{name.upper()}: end the description with a period"


def test_the_configuration_page_is_the_generators_output() -> None:
    page = docs_config.PAGE.read_text(encoding="utf-8")
    assert page == docs_config.render(), (
        "docs/configuration.md is out of date: run `python -m bot.docs_config`"
    )


def test_the_configuration_page_names_every_setting_with_its_default() -> None:
    page = docs_config.PAGE.read_text(encoding="utf-8")
    for name, info in Settings.model_fields.items():
        row = f"| `{name.upper()}` | {docs_config.shown_default(name, info)} |"
        assert row in page, f"{name.upper()} is missing from docs/configuration.md"
    assert "| `DATABASE_URL` | – | **secret**." in page
    assert "| `WORKER_SLOTS` | `2` |" in page


def test_a_setting_without_a_group_still_gets_a_section() -> None:
    assert docs_config.group_of("some_future_setting") is docs_config.OTHER
    assert docs_config.group_of("github_app_id").title == "GitHub"


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    found: set[str] = set()
    for heading in re.findall(r"^#+ (.+)$", FENCE.sub("", page.read_text()), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in found:
            n += 1
            candidate = f"{slug}-{n}"
        found.add(candidate)
    return found


def prose(page: Path) -> str:
    return CODE_SPAN.sub("", FENCE.sub("", page.read_text()))


def code(page: Path) -> str:
    text = page.read_text()
    return "\n".join(FENCE.findall(text) + CODE_SPAN.findall(FENCE.sub("", text)))


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path) -> None:
    for target in LINK.findall(prose(page)):
        if re.match(r"[a-z]+:", target):  # https:, mailto:: not ours to check
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: link to {target} leads nowhere"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{page.name}: {target}: no heading #{anchor}"


def test_the_readme_fits_on_two_screens() -> None:
    assert len(README.read_text().splitlines()) <= 150


def real_command(words: list[str]) -> bool:
    """Whether `click-deploy WORDS…` names a real command; the words after it are its
    arguments."""
    command: click.Command = cli
    for word in words:
        if not isinstance(command, click.Group):
            return True
        sub = command.commands.get(word)
        if sub is None:
            return False
        command = sub
    return not isinstance(command, click.Group)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_the_commands_the_docs_name_exist(page: Path) -> None:
    named = [match.split() for match in COMMAND.findall(code(page))]
    for words in named:
        assert real_command(words), f"{page.name}: `click-deploy {' '.join(words)}` is no command"


def test_the_readme_names_the_commands_a_newcomer_needs() -> None:
    text = README.read_text()
    for command in (
        "scripts/serve",
        "scripts/test",
        "click-deploy deploy",
        "click-deploy service add",
    ):
        assert command in text


def test_the_command_check_catches_a_wrong_name() -> None:
    assert real_command(["service", "add", "web"])
    assert real_command(["deploy", "web"])
    assert not real_command(["deplo", "web"])
    assert not real_command(["service", "ad"])
    assert not real_command(["service"])  # a group alone does nothing


def every_command(command: click.Command = cli, path: str = "") -> list[tuple[str, click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            found += every_command(sub, f"{path} {name}".strip())
    return found


@pytest.mark.parametrize("path", [path for path, _ in every_command()])
def test_every_commands_help_shows_its_examples(path: str) -> None:
    assert path in EXAMPLES, f"`click-deploy {path}` has no examples in bot/cli_examples.py"
    result = CliRunner().invoke(cli, [*path.split(), "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Examples:" in result.output
    for example in EXAMPLES[path]:
        assert example in result.output


@pytest.mark.parametrize("example", [e for examples in EXAMPLES.values() for e in examples])
def test_every_example_is_a_real_command_with_real_options(example: str) -> None:
    words = shlex.split(example, comments=True)
    words = words[: words.index("|")] if "|" in words else words  # what the output is piped to
    start = words.index("click-deploy")
    command: click.Command = cli
    arguments = words[start + 1 :]
    while isinstance(command, click.Group) and arguments and arguments[0] in command.commands:
        command = command.commands[arguments.pop(0)]
    if command is cli and arguments and not arguments[0].startswith("-"):
        if arguments[0] in EXAMPLES:  # a command being added elsewhere (doctor)
            return
        raise AssertionError(f"{example}: {arguments[0]} is no command")
    known = {name for param in command.params for name in param.opts} | {"--help"}
    for word in arguments:
        if word.startswith("-"):
            assert word in known, f"{example}: {word} is not an option of it"


# Upper-case names in the docs that share a setting's first word but are someone else's.
NOT_SETTINGS = {
    "DOCKER_BUILDKIT": "the docker CLI's",
    "GIT_ASKPASS": "git's",
    "GIT_SHA": "an example build arg",
}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_the_settings_the_docs_name_exist(page: Path) -> None:
    settings = {name.upper() for name in Settings.model_fields}
    first_words = {name.split("_")[0] for name in settings}
    for name in re.findall(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b", page.read_text()):
        if name.split("_")[0] in first_words and name not in NOT_SETTINGS:
            assert name in settings, f"{page.name} names {name}, which is no setting"
