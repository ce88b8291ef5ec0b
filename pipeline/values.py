"""One validator per kind of value a person gives click-deploy: service names, environments,
git refs, commit ids, repository paths and URLs, folders in a repository.

Every entry point (the CLI, the REST API, Slack, PR and MR comments, the store) checks
values here, so a value refused in one place is refused in all of them, before it is
stored, with one message naming the value and what is allowed. Each validator answers the
value in its one stored form (a commit id in lower case, a folder normalized) or raises
`InvalidValue`. The `*Text` types are the same validators for pydantic models, with a JSON
schema (pattern and length) that accepts everything the validator accepts.
"""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, WithJsonSchema

from pipeline.errors import InvalidValue

PROVIDERS = ("github", "gitlab", "git")
REF_MAX = 255
PATH_MAX = 255
URL_MAX = 1000

SERVICE_NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
ENVIRONMENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
# Full ids only (SHA-1 or SHA-256 objects); upper case is accepted and stored in lower case.
COMMIT_PATTERN = r"^([0-9a-fA-F]{40}|[0-9a-fA-F]{64})$"
# What a schema can say of a ref: no control characters, spaces or `~^:?*[\`, not starting
# with "-" or "/". The validator also refuses `..`, `@{`, `//`, a part starting with "."...
REF_PATTERN = r"^[^\x00-\x20\x7f~^:?*\[\\/-][^\x00-\x20\x7f~^:?*\[\\]*$"
# A folder in the repository, as a schema can say it: no control characters or backslash,
# not absolute. The validator also refuses `..` parts.
PATH_PATTERN = r"^[^\x00-\x1f\x7f\\/][^\x00-\x1f\x7f\\]*$"

_SERVICE_NAME = re.compile(SERVICE_NAME_PATTERN)
_ENVIRONMENT = re.compile(ENVIRONMENT_PATTERN)
_COMMIT = re.compile(COMMIT_PATTERN)
# What git refuses in a ref name (git check-ref-format), besides control characters.
_REF_REFUSED = re.compile(r"[\s~^:?*\[\\]|\.\.|@\{|^[/-]|/$|//|(^|/)\.|\.$|\.lock(/|$)")
# As lenient as the webhook reader (bot/github/models.py): GitHub Enterprise allows more.
_GITHUB_OWNER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_GITHUB_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_GITLAB_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")
_URL_SCHEMES = ("https", "http", "ssh", "git")
_FORGE_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)+")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._~+-]{0,99}")
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\]")
# `[user@]host:path`, git's scp-like form (no "/" before the colon).
_SCP_LIKE = re.compile(r"(?:(?P<user>[^@/:]+)@)?(?P<host>[^@/:]+):(?P<path>.+)")


def shown(value: object, limit: int = 60) -> str:
    """A value for a message: quoted, invisible characters escaped, cut short."""
    text = repr(value) if isinstance(value, str) else repr(str(value))
    return text if len(text) <= limit else text[: limit - 4] + "…" + text[0]


SERVICE_NAME_RULE = (
    "1-63 lower-case letters, digits and dashes, starting and ending with a letter or digit"
)
ENVIRONMENT_RULE = (
    "1-63 letters, digits, '.', '_' and '-', starting with a letter or digit (production, "
    "staging, pr-12)"
)


def service_name(value: str) -> str:
    if not _SERVICE_NAME.match(value):
        raise InvalidValue(f"service name {shown(value)} is not allowed: use {SERVICE_NAME_RULE}")
    return value


def environment(value: str) -> str:
    if not _ENVIRONMENT.match(value):
        raise InvalidValue(f"environment {shown(value)} is not allowed: use {ENVIRONMENT_RULE}")
    return value


def valid_ref(value: str) -> bool:
    """Whether git could have a branch or tag called `value` and would not read it as an
    option (it starts with "-")."""
    return (
        0 < len(value) <= REF_MAX
        and value.isprintable()
        and _REF_REFUSED.search(value) is None
        and value != "@"
    )


REF_RULE = (
    f"1-{REF_MAX} printable characters, not starting with '-' or '/', without spaces, "
    "'~^:?*[\\', '..', '@{' or a part starting with '.'"
)


def ref(value: str, what: str = "ref") -> str:
    """A branch or tag name (`what` names it in the message: "ref", "branch")."""
    if not valid_ref(value):
        raise InvalidValue(f"{what} {shown(value)} is not a git branch or tag name: use {REF_RULE}")
    return value


def branch(value: str) -> str:
    return ref(value, "branch")


def commit(value: str) -> str:
    """A full commit id, in lower case."""
    if not _COMMIT.match(value):
        raise InvalidValue(
            f"commit {shown(value)} is not a commit id: use the full id, 40 (SHA-1) or 64 "
            "(SHA-256) hexadecimal digits"
        )
    return value.lower()


def _repository_path(value: str, what: str) -> str:
    """A folder of the repository, normalized: "." for the whole repository."""
    cleaned = value.strip()
    problem = None
    if not cleaned:
        problem = "'.' for the whole repository"
    elif len(value) > PATH_MAX:
        problem = f"at most {PATH_MAX} characters"
    elif not cleaned.isprintable() or "\\" in cleaned:
        problem = "printable characters, '/' between folders (no backslash)"
    elif cleaned.startswith("/"):
        problem = "a path relative to the repository's top, not an absolute one"
    elif ".." in cleaned.split("/"):
        problem = "a folder inside the repository (no '..')"
    if problem is not None:
        raise InvalidValue(f"{what} {shown(value)} is not allowed: use {problem}")
    return posixpath.normpath(cleaned)


def root_dir(value: str) -> str:
    return _repository_path(value, "root dir")


def watch_path(value: str) -> str:
    return _repository_path(value, "watch path")


def provider(value: str) -> str:
    if value not in PROVIDERS:
        raise InvalidValue(f"provider {shown(value)} is unknown: use one of {', '.join(PROVIDERS)}")
    return value


def repository(provider_name: str, value: str, *, local: bool = False) -> str:
    """Where a service's code is: `owner/name` on GitHub, `group/…/project` on GitLab, a
    clone URL for plain git. LOCAL: a `file://` repository on this machine is allowed too,
    for the command line only (`click-deploy service add --repo PATH`) and the clone of a
    service stored from there; never from the API, chat or forges, where it would let a
    remote person make the bot read its own disk."""
    if local and provider_name == "git" and value.startswith(LOCAL_SCHEME):
        return local_repository_url(value)
    if provider_name == "github":
        owner, slash, name = value.partition("/")
        if not (
            slash
            and _GITHUB_OWNER.fullmatch(owner)
            and _GITHUB_NAME.fullmatch(name)
            and name not in (".", "..")
        ):
            raise InvalidValue(
                f"repository {shown(value)} is not a GitHub repository: use owner/name "
                "(letters, digits, '-', '.' and '_')"
            )
        return value
    if provider_name == "gitlab":
        parts = value.split("/")
        if not (
            2 <= len(parts) <= 20
            and len(value) <= PATH_MAX
            and all(_GITLAB_PART.fullmatch(part) for part in parts)
            and not value.endswith((".git", ".atom"))
        ):
            raise InvalidValue(
                f"repository {shown(value)} is not a GitLab project path: use "
                "group/project or group/subgroup/project"
            )
        return value
    return repository_url(value)


LOCAL_SCHEME = "file://"


def local_repository_url(value: str) -> str:
    """`file:///absolute/path` of a git repository on this machine: no `..`, no option."""
    path = value[len(LOCAL_SCHEME) :]
    if not (
        path.startswith("/")
        and 1 < len(path) <= URL_MAX
        and path.isprintable()
        and ".." not in path.split("/")
        and "\\" not in path
    ):
        raise InvalidValue(
            f"repository {shown(value)} is not allowed: a repository on this machine is "
            "file:// and an absolute path without '..'"
        )
    return value


def repository_url(value: str) -> str:
    """A clone URL git fetches over the network: https://, http://, ssh://, git:// or
    `user@host:path`, with no password in it. Never a transport git would run a command
    for (`ext::`), an option (a leading "-"), or a local path."""
    problem = _url_problem(value)
    if problem is not None:
        raise InvalidValue(
            f"repository {shown(value)} is not allowed: {problem}; use an https://, http://, "
            "ssh:// or git:// URL, or user@host:path"
        )
    return value


def _url_problem(value: str) -> str | None:
    if value.startswith("-"):
        return "it starts with '-' (git would read an option)"
    if "::" in value.split("/", 1)[0]:
        return "transports like ext:: are not allowed"
    if not value or len(value) > URL_MAX or not value.isprintable() or " " in value:
        return f"a URL is 1-{URL_MAX} printable characters without spaces"
    if "://" in value:
        parts = urlsplit(value)
        if parts.scheme.lower() == "file":
            return (
                "a folder on the bot's machine is only taken from its command line "
                "(click-deploy service add NAME --repo PATH)"
            )
        if parts.scheme.lower() not in _URL_SCHEMES:
            return f"the scheme {parts.scheme!r} is not allowed"
        try:
            host, user, password = parts.hostname, parts.username, parts.password
            parts.port  # noqa: B018 (raises on a bad port)
        except ValueError:
            return "the host or port cannot be read"
        if password is not None:
            return "credentials do not belong in the URL (set GIT_TOKEN)"
        where = parts.netloc.rpartition("@")[2]
        literal = where.startswith("[")
        named = where[: where.index("]") + 1] if literal and "]" in where else where.split(":")[0]
        if not host or not _HOST.fullmatch(named):
            return "it has no valid host"
        if user is not None and not _USER.fullmatch(user):
            return "the user name is not allowed"
        if not parts.path.strip("/"):
            return "it names no repository"
        return None
    scp = _SCP_LIKE.fullmatch(value)
    if scp is None:
        if _FORGE_PATH.fullmatch(value):
            return (
                "local paths are not allowed (for owner/name on a forge, the provider is "
                "github or gitlab)"
            )
        return "local paths are not allowed"
    user, host, path = scp["user"], scp["host"], scp["path"]
    if not _HOST.fullmatch(host):
        return "it has no valid host"
    if user is not None and not _USER.fullmatch(user):
        return "the user name is not allowed"
    if path.startswith("-"):
        return "its path starts with '-'"
    return None


# --- the same checks for pydantic models ------------------------------------------------


def _str_schema(pattern: str | None, max_length: int, description: str) -> WithJsonSchema:
    schema: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": max_length}
    if pattern is not None:
        schema["pattern"] = pattern
    schema["description"] = description
    return WithJsonSchema(schema)


ServiceNameText = Annotated[
    str, AfterValidator(service_name), _str_schema(SERVICE_NAME_PATTERN, 63, "a service name")
]
EnvironmentText = Annotated[
    str,
    AfterValidator(environment),
    _str_schema(ENVIRONMENT_PATTERN, 63, "production, staging, pr-12…"),
]
RefText = Annotated[
    str, AfterValidator(ref), _str_schema(REF_PATTERN, REF_MAX, "a branch or tag name")
]
BranchText = Annotated[
    str, AfterValidator(branch), _str_schema(REF_PATTERN, REF_MAX, "a branch name")
]
CommitText = Annotated[
    str,
    AfterValidator(commit),
    _str_schema(COMMIT_PATTERN, 64, "a full commit id (stored in lower case)"),
]
RootDirText = Annotated[
    str,
    AfterValidator(root_dir),
    _str_schema(PATH_PATTERN, PATH_MAX, "a folder relative to the repository's top; no '..'"),
]
WatchPathText = Annotated[
    str,
    AfterValidator(watch_path),
    _str_schema(PATH_PATTERN, PATH_MAX, "a folder relative to the repository's top; no '..'"),
]
