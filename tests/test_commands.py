"""The /deploy parser: a table of text in, value out."""

from __future__ import annotations

import pytest

from bot.commands.parser import Command, Ignore, Response, parse, parse_slack

CASES: list[tuple[str, object]] = [
    ("/deploy", Command("deploy")),
    ("  /deploy  ", Command("deploy")),
    ("/deploy web", Command("deploy", service="web")),
    ("/deploy Web", Command("deploy", service="web")),
    ("/deploy web --ref main", Command("deploy", service="web", ref="main")),
    ("/deploy --ref=v1.2 web", Command("deploy", service="web", ref="v1.2")),
    ("/deploy --ref feature/x", Command("deploy", ref="feature/x")),
    ("/deploy cancel", Command("cancel")),
    ("/deploy CANCEL", Command("cancel")),
    ("/deploy status", Command("status")),
    ("/deploy rollback", Command("rollback")),
    ("/deploy rollback api", Command("rollback", service="api")),
    ("thanks!\n/deploy web\nmore text", Command("deploy", service="web")),
    ("hello", Ignore()),
    ("", Ignore()),
    ("please /deploy web", Ignore()),
    ("/deployment web", Ignore()),
    ("> /deploy web", Ignore()),
    ("```\n/deploy web\n```", Ignore()),
    ("/other thing", Ignore()),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_parse(text: str, expected: object) -> None:
    assert parse(text) == expected


RESPONSES: list[tuple[str, str, str]] = [
    # text, kind, a phrase the reply must contain
    ("/deploy help", "help", "/deploy rollback [SERVICE]"),
    ("/deploy help me", "usage", "takes no arguments"),
    ("/deploy statsu", "suggestion", "Did you mean `/deploy status`"),
    ("/deploy cancle", "suggestion", "Did you mean `/deploy cancel`"),
    ("/deploy rolback web", "suggestion", "Did you mean `/deploy rollback`"),
    ("/delpoy web", "suggestion", "Did you mean `/deploy`"),
    ("/deploy web --rf main", "usage", "Did you mean `--ref`"),
    ("/deploy web --ref", "usage", "`--ref` needs a value"),
    ("/deploy web --ref=", "usage", "`--ref` needs a value"),
    ("/deploy --ref a --ref b", "usage", "given twice"),
    ("/deploy web api", "usage", "Unexpected argument `api`"),
    ("/deploy cancel now", "usage", "Usage: `/deploy cancel`"),
    ("/deploy status --ref x", "usage", "Unknown flag `--ref`"),
    ("/deploy rollback web --ref x", "usage", "Unknown flag"),
    ("/deploy 'web", "usage", "Could not read the command"),
    ("/deploy we;b", "usage", "is not a service name: use 1-63 lower-case letters"),
    # The examples, refused here as everywhere (pipeline/values.py).
    ("/deploy web --ref=-x", "usage", "`-x` is not a branch, tag or commit: use 1-255"),
    ("/deploy web --ref -x", "usage", "`--ref` needs a value"),
    ("/deploy web --ref ../../etc", "usage", "`../../etc` is not a branch, tag or commit"),
    ("/deploy web --ref 'prod uction/../x'", "usage", "without spaces"),
    ("/deploy web --ref main.lock", "usage", "is not a branch, tag or commit"),
    ("/deploy web_app", "usage", "`web_app` is not a service name"),
    ("/deploy " + "x" * 64, "usage", "is not a service name"),
]


@pytest.mark.parametrize(("text", "kind", "phrase"), RESPONSES)
def test_responses(text: str, kind: str, phrase: str) -> None:
    result = parse(text)
    assert isinstance(result, Response), result
    assert result.kind == kind
    assert phrase in result.text


def test_a_known_service_is_not_taken_for_a_typo() -> None:
    assert isinstance(parse("/deploy hello"), Response)  # "help"?
    assert parse("/deploy hello", services=["hello"]) == Command("deploy", service="hello")


SLACK_REFUSALS: list[tuple[str, str]] = [
    ("web -x", "Unknown flag `-x`"),
    ("web a..b", "`a..b` is not a branch, tag or commit: use 1-255"),
    ("web 'prod uction'", "without spaces"),
    ("Web_App", "is not a service name: use 1-63 lower-case letters"),
    ("rollback we/b", "is not a service name"),
]


@pytest.mark.parametrize(("text", "phrase"), SLACK_REFUSALS)
def test_slack_forms_refuse_the_same_values(text: str, phrase: str) -> None:
    result = parse_slack(text)
    assert isinstance(result, Response) and result.kind == "usage", result
    assert phrase in result.text and "Usage: `/deploy" in result.text
