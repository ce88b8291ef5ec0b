"""Our own values for what GitHub sends: built once, at the edge, from webhook payloads.

The functions raise `PayloadError` (a ValueError) when a signed payload lacks what we
need; the webhook answers 400 then, never a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.payload import PayloadError
from bot.payload import field as _get
from bot.payload import number as _int
from bot.payload import text as _str


@dataclass(frozen=True)
class User:
    login: str
    is_bot: bool

    @classmethod
    def from_payload(cls, data: Any) -> User:
        login = _str(data, "login")
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
        if full_name.count("/") != 1:
            raise PayloadError(f"repository {full_name!r} is not owner/name")
        return cls(full_name)


def installation_id(payload: Any) -> int | None:
    value = payload.get("installation", {}).get("id") if isinstance(payload, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Push:
    repo: Repo
    ref: str
    branch: str | None  # None for a tag
    after: str
    deleted: bool
    head_message: str
    # Every path the pushed commits touched; None when the payload cannot tell (GitHub
    # lists at most 20 commits, and none for a new branch).
    changed: frozenset[str] | None
    pusher: str | None

    @classmethod
    def from_payload(cls, payload: Any) -> Push:
        ref = _str(payload, "ref")
        branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
        head = payload.get("head_commit") if isinstance(payload, Mapping) else None
        message = head.get("message", "") if isinstance(head, Mapping) else ""
        commits = payload.get("commits")
        changed: frozenset[str] | None = None
        if isinstance(commits, list) and 0 < len(commits) < 20:
            paths: set[str] = set()
            for commit in commits:
                if not isinstance(commit, Mapping):
                    continue
                for key in ("added", "modified", "removed"):
                    items = commit.get(key)
                    if isinstance(items, list):
                        paths.update(item for item in items if isinstance(item, str))
            changed = frozenset(paths)
        pusher = payload.get("pusher", {}).get("name")
        return cls(
            repo=Repo.from_payload(_get(payload, "repository")),
            ref=ref,
            branch=branch,
            after=_str(payload, "after"),
            deleted=bool(payload.get("deleted")),
            head_message=message if isinstance(message, str) else "",
            changed=changed,
            pusher=pusher if isinstance(pusher, str) else None,
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
        head_repo = _get(data, "head").get("repo")
        head_name = head_repo.get("full_name") if isinstance(head_repo, Mapping) else None
        return cls(
            repo=repo,
            number=_int(data, "number"),
            head_sha=_str(data, "head", "sha"),
            head_ref=_str(data, "head", "ref"),
            base_ref=_str(data, "base", "ref"),
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
    external_id: str | None
    pr_numbers: tuple[int, ...]

    @classmethod
    def from_payload(cls, payload: Any) -> CheckRunRequest:
        run = _get(payload, "check_run")
        suite = run.get("check_suite") if isinstance(run, Mapping) else None
        branch = suite.get("head_branch") if isinstance(suite, Mapping) else None
        external = run.get("external_id")
        pulls = run.get("pull_requests") or []
        return cls(
            repo=Repo.from_payload(_get(payload, "repository")),
            action=_str(payload, "action"),
            head_sha=_str(run, "head_sha"),
            head_branch=branch if isinstance(branch, str) else None,
            name=_str(run, "name"),
            external_id=external if isinstance(external, str) and external else None,
            pr_numbers=tuple(
                p["number"]
                for p in pulls
                if isinstance(p, Mapping) and isinstance(p.get("number"), int)
            ),
        )
