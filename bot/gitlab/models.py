"""Our own values for what GitLab sends (Push Hook, Merge Request Hook, Note Hook), built
once, at the edge. A payload without what its event needs raises `PayloadError` (the
webhook answers 400 then, never a traceback)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.forge.paths import commit_paths
from bot.forge.pushes import BranchPush
from bot.payload import PayloadError, commit_id, ref_name, shown
from bot.payload import field as _get
from bot.payload import number as _int
from bot.payload import text as _str

__all__ = ["MergeRequest", "MergeRequestEvent", "Note", "PayloadError", "Project", "Push"]

# GitLab lists at most this many commits in a push; a longer push cannot tell its paths.
PUSH_COMMITS_LIMIT = 20


def _opt_str(data: Any, key: str) -> str | None:
    value = data.get(key) if isinstance(data, Mapping) else None
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Project:
    id: int
    path: str  # path_with_namespace, as services store it ("group/sub/name")

    @classmethod
    def from_payload(cls, data: Any) -> Project:
        path = _str(data, "path_with_namespace")
        if "/" not in path:
            raise PayloadError(f"project {shown(path)} is not namespace/name")
        return cls(id=_int(data, "id"), path=path)


@dataclass(frozen=True)
class User:
    id: int
    username: str

    @classmethod
    def from_payload(cls, data: Any) -> User:
        return cls(id=_int(data, "id"), username=_str(data, "username"))


@dataclass(frozen=True)
class Push(BranchPush):
    project: Project

    @classmethod
    def from_payload(cls, payload: Any) -> Push:
        ref = ref_name(payload, "ref")
        after = commit_id(payload, "after")
        branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
        commits = payload.get("commits")
        commits = (
            [c for c in commits if isinstance(c, Mapping)] if isinstance(commits, list) else []
        )
        head = next((c for c in commits if c.get("id") == after), commits[-1] if commits else {})
        message = head.get("message", "")
        total = payload.get("total_commits_count")
        changed: frozenset[str] | None = None
        complete = not isinstance(total, int) or total <= len(commits)
        if commits and complete and len(commits) <= PUSH_COMMITS_LIMIT:
            changed = commit_paths(commits)
        project = Project.from_payload(_get(payload, "project"))
        return cls(
            source="gitlab",
            repository=project.path,
            project=project,
            ref=ref,
            branch=branch,
            after=after,
            deleted=set(after) == {"0"} or payload.get("checkout_sha", "") is None,
            head_message=message if isinstance(message, str) else "",
            changed=changed,
            pusher=_opt_str(payload, "user_username"),
        )


@dataclass(frozen=True)
class MergeRequest:
    project: Project  # the target project (where services live)
    iid: int
    head_sha: str
    source_branch: str
    target_branch: str
    fork: bool  # the source branch lives in another project

    @classmethod
    def from_payload(cls, data: Any, project: Project) -> MergeRequest:
        source = data.get("source_project_id") if isinstance(data, Mapping) else None
        target = data.get("target_project_id") if isinstance(data, Mapping) else None
        return cls(
            project=project,
            iid=_int(data, "iid"),
            head_sha=commit_id(data, "last_commit", "id"),
            source_branch=ref_name(data, "source_branch"),
            target_branch=ref_name(data, "target_branch"),
            fork=source != (target if isinstance(target, int) else project.id),
        )

    @property
    def fetch_ref(self) -> str:
        """What to clone: the branch, or for a fork GitLab's refs/merge-requests/IID/head."""
        return f"refs/merge-requests/{self.iid}/head" if self.fork else self.source_branch


@dataclass(frozen=True)
class MergeRequestEvent:
    action: str  # open, update, reopen, close, merge, approved, …
    new_commits: bool  # an update that pushed commits (GitLab sends oldrev then)
    user: str | None
    mr: MergeRequest

    @classmethod
    def from_payload(cls, payload: Any) -> MergeRequestEvent:
        project = Project.from_payload(_get(payload, "project"))
        attributes = _get(payload, "object_attributes")
        user = payload.get("user")
        return cls(
            action=_opt_str(attributes, "action") or "",
            new_commits=bool(_opt_str(attributes, "oldrev")),
            user=_opt_str(user, "username"),
            mr=MergeRequest.from_payload(attributes, project),
        )


@dataclass(frozen=True)
class Note:
    project: Project
    id: int
    body: str
    author: User
    system: bool
    action: str | None  # "create" or "update" (older GitLab sends none)
    mr: MergeRequest | None  # None: a note on an issue, a commit or a snippet

    @classmethod
    def from_payload(cls, payload: Any) -> Note:
        project = Project.from_payload(_get(payload, "project"))
        attributes = _get(payload, "object_attributes")
        if not isinstance(attributes, Mapping):
            raise PayloadError("object_attributes is not an object")
        mr = None
        if attributes.get("noteable_type") == "MergeRequest":
            mr = MergeRequest.from_payload(_get(payload, "merge_request"), project)
        return cls(
            project=project,
            id=_int(attributes, "id"),
            body=_opt_str(attributes, "note") or "",
            author=User.from_payload(_get(payload, "user")),
            system=bool(attributes.get("system")),
            action=_opt_str(attributes, "action"),
            mr=mr,
        )
