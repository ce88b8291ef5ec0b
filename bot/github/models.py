"""Our own values for what GitHub sends: built once, at the edge, from webhook payloads.

The functions raise `PayloadError` (a ValueError) when a signed payload lacks what we
need; the webhook answers 400 then, never a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.forge.paths import commit_paths
from bot.forge.pushes import BranchPush
from bot.payload import PayloadError, commit_id, optional_text, ref_name, shown
from bot.payload import field as _get
from bot.payload import number as _int
from bot.payload import text as _str

# What GitHub allows in logins (users, organizations; apps end in [bot]; Enterprise
# managed users have an _shortcode) and repository names. They go into API paths: a value
# GitHub could not have is refused here, not sent to GitHub.
LOGIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}(\[bot\])?")
REPO_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")


@dataclass(frozen=True)
class User:
    login: str
    is_bot: bool

    @classmethod
    def from_payload(cls, data: Any) -> User:
        login = _str(data, "login")
        if not LOGIN.fullmatch(login):
            raise PayloadError(f"{shown(login)} is not a GitHub login")
        kind = data.get("type") if isinstance(data, Mapping) else None
        return cls(login=login, is_bot=kind == "Bot" or login.endswith("[bot]"))


@dataclass(frozen=True)
class Repo:
    full_name: str  # "owner/name", as services store it

    @property
    def owner(self) -> str:
        return self.full_name.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/", 1)[1]

    @classmethod
    def from_payload(cls, data: Any) -> Repo:
        full_name = _str(data, "full_name")
        owner, _, name = full_name.partition("/")
        if not (LOGIN.fullmatch(owner) and REPO_NAME.fullmatch(name)) or name in (".", ".."):
            raise PayloadError(f"repository {shown(full_name)} is not owner/name")
        return cls(full_name)


def installation_id(payload: Any) -> int | None:
    installation = payload.get("installation") if isinstance(payload, Mapping) else None
    value = installation.get("id") if isinstance(installation, Mapping) else None
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63:
        return value
    return None


def push_from_payload(payload: Any) -> BranchPush:
    """A push; `changed` is None when the payload cannot tell (GitHub lists at most 20
    commits, and none for a new branch)."""
    ref = ref_name(payload, "ref")
    branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
    head = payload.get("head_commit")
    message = head.get("message", "") if isinstance(head, Mapping) else ""
    commits = payload.get("commits")
    changed: frozenset[str] | None = None
    if isinstance(commits, list) and 0 < len(commits) < 20:
        changed = commit_paths(commits)
    repo = Repo.from_payload(_get(payload, "repository"))
    message = message if isinstance(message, str) else ""
    deleted = payload.get("deleted") is True
    after = commit_id(payload, "after")
    pusher = optional_text(payload, "pusher", "name")
    return BranchPush(
        "github", repo.full_name, ref, branch, after, deleted, message, changed, pusher
    )


@dataclass(frozen=True)
class PullRequest:
    repo: Repo  # the base repository (where services live)
    number: int
    head_sha: str
    head_ref: str
    base_ref: str
    fork: bool  # the head lives in another repository
    author: User

    @classmethod
    def from_payload(cls, data: Any, repo: Repo) -> PullRequest:
        head_name = optional_text(data, "head", "repo", "full_name")
        return cls(
            repo=repo,
            number=_int(data, "number"),
            head_sha=commit_id(data, "head", "sha"),
            head_ref=ref_name(data, "head", "ref"),
            base_ref=ref_name(data, "base", "ref"),
            # A deleted fork has no head repository: treat it as a fork.
            fork=head_name != repo.full_name,
            author=User.from_payload(_get(data, "user")),
        )


@dataclass(frozen=True)
class PullRequestEvent:
    action: str
    pull: PullRequest

    @classmethod
    def from_payload(cls, payload: Any) -> PullRequestEvent:
        repo = Repo.from_payload(_get(payload, "repository"))
        return cls(
            _str(payload, "action"), PullRequest.from_payload(_get(payload, "pull_request"), repo)
        )


@dataclass(frozen=True)
class Comment:
    repo: Repo
    id: int
    body: str
    author: User
    issue_number: int
    on_pull_request: bool
    action: str

    @classmethod
    def from_payload(cls, payload: Any) -> Comment:
        comment = _get(payload, "comment")
        issue = _get(payload, "issue")
        body = comment.get("body") if isinstance(comment, Mapping) else None
        return cls(
            repo=Repo.from_payload(_get(payload, "repository")),
            id=_int(comment, "id"),
            body=body if isinstance(body, str) else "",
            author=User.from_payload(_get(comment, "user")),
            issue_number=_int(issue, "number"),
            on_pull_request=isinstance(issue, Mapping) and bool(issue.get("pull_request")),
            action=_str(payload, "action"),
        )


@dataclass(frozen=True)
class CheckRunRequest:
    repo: Repo
    action: str
    head_sha: str
    head_branch: str | None
    name: str
    # Our check runs carry their deployment's id as the external id; None for others'.
    deployment_id: int | None
    pr_numbers: tuple[int, ...]
    sender: str | None
    # The button pressed (check_run.requested_action), None for other actions.
    identifier: str | None = None

    @classmethod
    def from_payload(cls, payload: Any) -> CheckRunRequest:
        run = _get(payload, "check_run")
        external = optional_text(run, "external_id") or ""
        is_id = external.isascii() and external.isdigit() and 0 < int(external) < 2**63
        pulls = run.get("pull_requests") if isinstance(run, Mapping) else None
        return cls(
            repo=Repo.from_payload(_get(payload, "repository")),
            action=_str(payload, "action"),
            head_sha=commit_id(run, "head_sha"),
            head_branch=optional_text(run, "check_suite", "head_branch"),
            name=_str(run, "name"),
            deployment_id=int(external) if is_id else None,
            pr_numbers=tuple(
                p["number"]
                for p in (pulls if isinstance(pulls, list) else [])
                if isinstance(p, Mapping) and isinstance(p.get("number"), int)
            ),
            sender=optional_text(payload, "sender", "login"),
            identifier=optional_text(payload, "requested_action", "identifier"),
        )
