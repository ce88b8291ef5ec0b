"""pipeline/values.py: every validator with values it takes (and the form it stores them
in) and values it refuses (with a message naming the value and what is allowed); the
API's schema patterns accept everything the validators accept."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial

import pytest
from pydantic import TypeAdapter

from pipeline import values
from pipeline.errors import InvalidValue

SHA1 = "0123456789abcdef0123456789abcdef01234567"
SHA256 = "ab" * 32

GOOD: list[tuple[str, Callable[[str], str], str, str]] = [
    # (kind, validator, given, stored)
    ("service name", values.service_name, "web", "web"),
    ("service name", values.service_name, "a", "a"),
    ("service name", values.service_name, "api-2", "api-2"),
    ("service name", values.service_name, "x" * 63, "x" * 63),
    ("environment", values.environment, "production", "production"),
    ("environment", values.environment, "pr-12", "pr-12"),
    ("environment", values.environment, "Staging_2.eu", "Staging_2.eu"),
    ("ref", values.ref, "main", "main"),
    ("ref", values.ref, "feature/login-form", "feature/login-form"),
    ("ref", values.ref, "refs/pull/12/head", "refs/pull/12/head"),
    ("ref", values.ref, "v1.2.3", "v1.2.3"),
    ("branch", values.branch, "release-2024", "release-2024"),
    ("commit", values.commit, SHA1, SHA1),
    ("commit", values.commit, SHA1.upper(), SHA1),
    ("commit", values.commit, SHA256, SHA256),
    ("root dir", values.root_dir, ".", "."),
    ("root dir", values.root_dir, "services/api", "services/api"),
    ("root dir", values.root_dir, "./web/", "web"),
    ("root dir", values.root_dir, "a//b/./c", "a/b/c"),
    ("root dir", values.root_dir, "my app", "my app"),
    ("watch path", values.watch_path, "shared/", "shared"),
    ("provider", values.provider, "gitlab", "gitlab"),
]

BAD: list[tuple[str, Callable[[str], str], str, str]] = [
    # (kind, validator, given, a phrase of what is allowed)
    ("service name", values.service_name, "", "1-63 lower-case letters"),
    ("service name", values.service_name, "Web", "lower-case"),
    ("service name", values.service_name, "-web", "starting and ending"),
    ("service name", values.service_name, "web-", "starting and ending"),
    ("service name", values.service_name, "we b", "lower-case"),
    ("service name", values.service_name, "x" * 64, "1-63"),
    ("environment", values.environment, "prod uction/../x", "1-63 letters"),
    ("environment", values.environment, "", "1-63 letters"),
    ("environment", values.environment, "-prod", "starting with a letter"),
    ("environment", values.environment, "a/b", "1-63 letters"),
    ("environment", values.environment, "x" * 64, "1-63"),
    ("ref", values.ref, "-x", "not starting with '-'"),
    ("ref", values.ref, "--upload-pack=touch /tmp/x", "not starting with '-'"),
    ("ref", values.ref, "", "1-255"),
    ("ref", values.ref, "a..b", "'..'"),
    ("ref", values.ref, "a b", "without spaces"),
    ("ref", values.ref, "a\x00b", "printable"),
    ("ref", values.ref, "x" * 256, "1-255"),
    ("ref", values.ref, "main.lock", "git branch or tag name"),
    ("ref", values.ref, "/main", "'/'"),
    ("branch", values.branch, "-x", "not starting with '-'"),
    ("commit", values.commit, "abc1234", "40 (SHA-1) or 64 (SHA-256)"),
    ("commit", values.commit, "g" * 40, "hexadecimal"),
    ("commit", values.commit, SHA1 + "0", "40 (SHA-1) or 64 (SHA-256)"),
    ("commit", values.commit, "main; rm -rf /", "hexadecimal"),
    ("root dir", values.root_dir, "../../etc", "no '..'"),
    ("root dir", values.root_dir, "web/../..", "no '..'"),
    ("root dir", values.root_dir, "/etc", "relative"),
    ("root dir", values.root_dir, "a\x00b", "printable"),
    ("root dir", values.root_dir, "a\\b", "no backslash"),
    ("root dir", values.root_dir, "", "'.' for the whole repository"),
    ("root dir", values.root_dir, "x" * 256, "at most 255"),
    ("watch path", values.watch_path, "../shared", "no '..'"),
    ("provider", values.provider, "svn", "github, gitlab, git"),
]

REPOSITORIES_GOOD = [
    ("github", "acme/web"),
    ("github", "octo-org/hello.world"),
    ("gitlab", "group/project"),
    ("gitlab", "group/sub.group/my_project"),
    ("git", "https://git.example.com/acme/web.git"),
    ("git", "http://127.0.0.1:8080/web.git"),
    ("git", "ssh://git@git.example.com:2222/acme/web.git"),
    ("git", "git://127.0.0.1:9418/web"),
    ("git", "git@github.com:acme/web.git"),
    ("git", "https://[::1]:3000/web.git"),
]

REPOSITORIES_BAD = [
    ("github", "acme", "owner/name"),
    ("github", "acme/web/extra", "owner/name"),
    ("github", "-acme/web", "owner/name"),
    ("github", "acme/..", "owner/name"),
    ("gitlab", "project", "group/project"),
    ("gitlab", "group/-project", "group/project"),
    ("git", "ext::sh -c touch% /tmp/pwned", "transports like ext:: are not allowed"),
    ("git", "ext::ssh", "transports like ext::"),
    ("git", "fd::17", "transports like ext::"),
    ("git", "-uhttps://x/y", "starts with '-'"),
    ("git", "--upload-pack=touch /tmp/x", "starts with '-'"),
    ("git", "ssh://-oProxyCommand=touch%20x/y", "no valid host"),
    ("git", "ssh://-oProxyCommand=x@host/y", "user name"),
    ("git", "https://user:secret@git.example.com/x.git", "GIT_TOKEN"),
    ("git", "file:///etc/repo.git", "only taken from its command line"),
    ("git", "/srv/repos/web.git", "local paths"),
    ("git", "acme/web", "local paths"),
    ("git", "https://git.example.com", "names no repository"),
    ("git", "host:-x", "starts with '-'"),
    ("git", "https://git.example.com/a b", "without spaces"),
    ("git", "", "1-1000"),
]


@pytest.mark.parametrize(("kind", "check", "given", "stored"), GOOD)
def test_good_values_are_taken_in_their_stored_form(
    kind: str, check: Callable[[str], str], given: str, stored: str
) -> None:
    assert check(given) == stored
    assert check(stored) == stored  # the stored form is taken as it is


@pytest.mark.parametrize(("kind", "check", "given", "allowed"), BAD)
def test_bad_values_get_one_message_naming_the_value_and_what_is_allowed(
    kind: str, check: Callable[[str], str], given: str, allowed: str
) -> None:
    with pytest.raises(InvalidValue) as refused:
        check(given)
    message = str(refused.value)
    assert message.startswith(kind), message
    assert values.shown(given) in message
    assert allowed in message
    assert "\n" not in message and "\x00" not in message


@pytest.mark.parametrize(("provider", "repository"), REPOSITORIES_GOOD)
def test_repositories_each_provider_takes(provider: str, repository: str) -> None:
    assert values.repository(provider, repository) == repository


@pytest.mark.parametrize(("provider", "repository", "allowed"), REPOSITORIES_BAD)
def test_repositories_refused(provider: str, repository: str, allowed: str) -> None:
    with pytest.raises(InvalidValue, match=re.escape(allowed)) as refused:
        values.repository(provider, repository)
    assert str(refused.value).startswith(f"repository {values.shown(repository)}")


def test_a_repository_on_this_machine_only_where_the_command_line_allows_it() -> None:
    # The command line (and the clone of what it stored) passes local=True ...
    assert values.repository("git", "file:///srv/app", local=True) == "file:///srv/app"
    # ... the API, chat and forges do not.
    with pytest.raises(InvalidValue, match="only taken from its command line"):
        values.repository("git", "file:///srv/app")
    for bad in ("file://srv/app", "file:///srv/../etc", "file:///", "file:///a\\b"):
        with pytest.raises(InvalidValue, match=re.escape("absolute path without '..'")):
            values.repository("git", bad, local=True)
    # Only plain git: a forge's repository is never a folder.
    with pytest.raises(InvalidValue, match="not a GitHub repository"):
        values.repository("github", "file:///srv/app", local=True)
    # Bare paths stay refused everywhere: the command line makes them file:// URLs.
    with pytest.raises(InvalidValue, match="local paths are not allowed"):
        values.repository("git", "/srv/app", local=True)


SCHEMA_TYPES = {
    "service name": values.ServiceNameText,
    "environment": values.EnvironmentText,
    "ref": values.RefText,
    "branch": values.BranchText,
    "commit": values.CommitText,
    "root dir": values.RootDirText,
    "watch path": values.WatchPathText,
}
# Kinds whose schema says exactly what the validator says (the others' schemas are looser:
# a schema cannot say "no '..' part").
EXACT = {"service name", "environment", "commit"}


def _schema_accepts(kind: str, value: str) -> bool:
    schema = TypeAdapter(SCHEMA_TYPES[kind]).json_schema()
    return (
        schema["minLength"] <= len(value) <= schema["maxLength"]
        and re.search(schema["pattern"], value) is not None
    )


@pytest.mark.parametrize(
    ("kind", "value", "valid"),
    [(kind, given, True) for kind, _, given, _ in GOOD if kind in SCHEMA_TYPES]
    + [(kind, given, False) for kind, _, given, _ in BAD if kind in SCHEMA_TYPES],
)
def test_schema_patterns_accept_whatever_the_validators_accept(
    kind: str, value: str, valid: bool
) -> None:
    """A schema refusing a value the API takes would fail clients that trust it (and the
    schemathesis run, which sends what the schema refuses and expects a 4xx)."""
    if valid:
        assert _schema_accepts(kind, value)
        assert TypeAdapter(SCHEMA_TYPES[kind]).validate_python(value)
    elif kind in EXACT:
        assert not _schema_accepts(kind, value)


def test_the_pydantic_types_refuse_with_the_validators_message() -> None:
    adapter = TypeAdapter(values.RootDirText)
    with pytest.raises(ValueError, match=r"root dir '\.\./\.\./etc' is not allowed"):
        adapter.validate_python("../../etc")
    assert TypeAdapter(values.CommitText).validate_python(SHA1.upper()) == SHA1


def test_shown_values_are_short_and_visible() -> None:
    assert values.shown("a\x00b") == "'a\\x00b'"
    long = values.shown("x" * 500)
    assert len(long) <= 60 and long.endswith("…'")


@pytest.mark.parametrize("check", [values.ref, partial(values.ref, what="branch")])
def test_every_ref_git_refuses_is_refused(check: Callable[[str], str]) -> None:
    for bad in ["@", "a@{1}", "a/.b", "a.", "a/", "a//b", "a~1", "a^", "a:b", "a?", "a*", "a[b"]:
        with pytest.raises(InvalidValue):
            check(bad)


def test_the_openapi_document_says_what_the_validators_say() -> None:
    import bot.api.routes  # noqa: F401  (registers the operations)
    from bot.api.openapi import document

    schemas = document()["components"]["schemas"]
    create = schemas["ServiceCreate"]["properties"]
    assert create["name"]["pattern"] == values.SERVICE_NAME_PATTERN
    assert create["branch"]["pattern"] == values.REF_PATTERN
    assert create["root_dir"]["pattern"] == values.PATH_PATTERN
    deploy = schemas["DeployRequest"]["properties"]
    assert deploy["commit"]["anyOf"][0]["pattern"] == values.COMMIT_PATTERN
    assert deploy["ref"]["anyOf"][0]["pattern"] == values.REF_PATTERN
    assert deploy["environment"]["pattern"] == values.ENVIRONMENT_PATTERN
    assert schemas["RollbackRequest"]["properties"]["environment"]["pattern"] == (
        values.ENVIRONMENT_PATTERN
    )
    # The config's schema is the model's: no other keys.
    assert create["config"] == {"$ref": "#/components/schemas/ServiceConfig"}
    assert schemas["ServiceConfig"]["additionalProperties"] is False
    assert schemas["SlackAccess"]["additionalProperties"] is False
