"""A fake GitLab REST API (v4) on loopback for python-gitlab, and GitLab webhook payloads
shaped as GitLab's webhook documentation shows them.

The fake checks what GitLab documents for the calls click-deploy makes and answers 400
(recorded in `invalid`) otherwise:
- POST /projects/:id/statuses/:sha: `state` required, one of pending, running, success,
  failed, canceled, skipped; only the documented attributes (ref, name, context,
  target_url, description, coverage, pipeline_id); target_url an http(s) URL; description
  at most 255 characters. Like GitLab, a status already in the state asked for is refused
  with 400 "Cannot transition status via :run from :running" (not counted as invalid).
- POST /projects/:id/merge_requests/:iid/notes and PUT …/notes/:note_id: `body` required,
  a non-empty string of at most 1,000,000 characters; only body, internal, created_at and
  merge_request_diff_head_sha.
- POST /projects/:id/merge_requests/:iid/notes/:note_id/award_emoji: `name` required (an
  emoji's name without colons; here one of the names GitLab knows that a bot would use),
  nothing else; the same award twice is GitLab's 404 "has
  already been taken" (not counted as invalid).
- GET /projects/:id/merge_requests/:iid/diffs: `mr_files`, one page.
- POST /projects/:id/deployments: environment, sha, ref, tag (a boolean) and status (one of
  running, success, failed, canceled) required, nothing else; a new environment name makes
  the environment. PUT /projects/:id/deployments/:deployment_id: `status` only, one of
  those, of a deployment that exists. PUT /projects/:id/environments/:environment_id:
  only external_url (an http(s) URL), tier, description, of an environment that exists.
- Every request needs the PRIVATE-TOKEN header (401 otherwise) and JSON bodies.
Every request is recorded in `requests`; `failures` answers a matching request once with a
canned status (a rate limit, a 502)."""

from __future__ import annotations

import copy
import itertools
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from tests.support.fake_server import serve

TOKEN = "glpat-test-token"
WEBHOOK_SECRET = "test-gitlab-webhook-token"
BOT = {"id": 99, "username": "project_1_bot_click", "name": "click-deploy"}

STATUS_STATES = frozenset({"pending", "running", "success", "failed", "canceled", "skipped"})
STATUS_FIELDS = frozenset(
    {"state", "ref", "name", "context", "target_url", "description", "coverage", "pipeline_id"}
)
# A few of GitLab's emoji names (its full list is Gemojione's): enough to tell a typo.
EMOJI_NAMES = frozenset({"eyes", "rocket", "confused", "thumbsup", "thumbsdown", "tada"})
DEPLOYMENT_STATUSES = frozenset({"running", "success", "failed", "canceled"})
NOTE_FIELDS = frozenset({"body", "internal", "created_at", "merge_request_diff_head_sha"})


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str  # decoded, without /api/v4
    body: Any
    headers: dict[str, str]


@dataclass
class FakeGitLab:
    token: str = TOKEN
    # project id → user id → access level (10 guest, 20 reporter, 30 developer, 40 maintainer)
    members: dict[int, dict[int, int]] = field(default_factory=dict)
    groups: dict[str, set[int]] = field(default_factory=dict)  # group path → member ids
    requests: list[Recorded] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    failures: list[tuple[str, str, int, dict[str, str]]] = field(default_factory=list)
    notes: dict[int, dict[str, Any]] = field(default_factory=dict)  # note id → note
    statuses: dict[tuple[str, str, str], str] = field(default_factory=dict)  # → state
    awards: dict[int, list[str]] = field(default_factory=dict)  # note id → emoji names
    mr_files: dict[int, list[str]] = field(default_factory=dict)  # MR iid → changed paths
    deployments: dict[int, dict[str, Any]] = field(default_factory=dict)  # id → deployment
    environments: dict[str, dict[str, Any]] = field(default_factory=dict)  # name → environment
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(5000))
    url: str = ""

    def calls(self, method: str, pattern: str) -> list[Recorded]:
        regex = re.compile(pattern)
        return [r for r in self.requests if r.method == method and regex.fullmatch(r.path)]

    def status_posts(self) -> list[dict[str, Any]]:
        return [r.body for r in self.calls("POST", r"/projects/[^/]+/statuses/\w+")]

    def _refuse(self, problem: str) -> web.Response:
        self.invalid.append(problem)
        return web.json_response({"message": problem}, status=400)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = request.raw_path.split("?", 1)[0]
        if not raw.startswith("/api/v4/"):
            return web.json_response({"message": "404 Not Found"}, status=404)
        path = "/" + "/".join(unquote(part) for part in raw[len("/api/v4/") :].split("/"))
        body = await request.read()
        parsed: Any = None
        if body:
            if request.content_type != "application/json":
                return self._refuse(f"{request.method} {path}: body is not JSON")
            try:
                parsed = json.loads(body)
            except ValueError:
                return self._refuse(f"{request.method} {path}: body is not valid JSON")
        self.requests.append(Recorded(request.method, path, parsed, dict(request.headers)))
        if request.headers.get("PRIVATE-TOKEN") != self.token:
            return web.json_response({"message": "401 Unauthorized"}, status=401)
        for index, (method, pattern, status, headers) in enumerate(self.failures):
            if method == request.method and re.fullmatch(pattern, path):
                del self.failures[index]
                return web.json_response(
                    {"message": "fake failure"}, status=status, headers=headers
                )
        return self.answer(request.method, path, parsed)

    def answer(self, method: str, path: str, body: Any) -> web.Response:
        if method == "GET" and path == "/user":
            return web.json_response(BOT)
        if method == "GET" and (m := re.fullmatch(r"/projects/(\d+)/members/all/(\d+)", path)):
            level = self.members.get(int(m[1]), {}).get(int(m[2]))
            if level is None:
                return web.json_response({"message": "404 Not found"}, status=404)
            return web.json_response({"id": int(m[2]), "access_level": level, "state": "active"})
        if method == "GET" and (m := re.fullmatch(r"/groups/(.+)/members/all/(\d+)", path)):
            if int(m[2]) not in self.groups.get(m[1], set()):
                return web.json_response({"message": "404 Not found"}, status=404)
            return web.json_response({"id": int(m[2]), "access_level": 30, "state": "active"})
        if method == "POST" and (m := re.fullmatch(r"/projects/([^/]+)/statuses/(\w+)", path)):
            return self._status(m[1], m[2], body)
        if m := re.fullmatch(r"/projects/([^/]+)/deployments(?:/(\d+))?", path):
            return self._deployment(method, int(m[2]) if m[2] else None, body)
        if method == "PUT" and (m := re.fullmatch(r"/projects/([^/]+)/environments/(\d+)", path)):
            return self._environment(int(m[2]), body)
        diffs = re.fullmatch(r"/projects/([^/]+)/merge_requests/(\d+)/diffs", path)
        if method == "GET" and diffs:
            return web.json_response([_diff(name) for name in self.mr_files.get(int(diffs[2]), [])])
        award = re.fullmatch(
            r"/projects/([^/]+)/merge_requests/(\d+)/notes/(\d+)/award_emoji", path
        )
        if method == "POST" and award:
            return self._award(int(award[2]), int(award[3]), body)
        if m := re.fullmatch(r"/projects/([^/]+)/merge_requests/(\d+)/notes(?:/(\d+))?", path):
            return self._note(method, int(m[2]), int(m[3]) if m[3] else None, body)
        return self._refuse(f"{method} {path}: not an endpoint click-deploy should call")

    def _status(self, project: str, sha: str, body: Any) -> web.Response:
        where = f"POST /projects/{project}/statuses/{sha}"
        if not isinstance(body, dict):
            return self._refuse(f"{where}: no parameters")
        if "state" not in body:
            return self._refuse(f"{where}: state is missing")
        if body["state"] not in STATUS_STATES:
            return self._refuse(f"{where}: state does not have a valid value")
        unknown = set(body) - STATUS_FIELDS
        if unknown:
            return self._refuse(f"{where}: undocumented attributes {sorted(unknown)}")
        for key in ("ref", "name", "context", "target_url", "description"):
            if key in body and not isinstance(body[key], str):
                return self._refuse(f"{where}: {key} is invalid")
        url = body.get("target_url")
        if url is not None and not re.match(r"https?://", url):
            return self._refuse(f"{where}: target_url is not an http(s) URL")
        if len(body.get("description", "")) > 255:
            return self._refuse(f"{where}: description is too long (maximum is 255)")
        name = body.get("name") or body.get("context") or "default"
        key = (project, sha, name)
        if self.statuses.get(key) == body["state"]:
            verb = {"running": "run", "pending": "enqueue"}.get(body["state"], body["state"])
            return web.json_response(
                {"message": f"Cannot transition status via :{verb} from :{body['state']}"},
                status=400,
            )
        self.statuses[key] = body["state"]
        return web.json_response(
            {
                "id": next(self._ids),
                "sha": sha,
                "ref": body.get("ref"),
                "status": body["state"],
                "name": name,
                "target_url": url,
                "description": body.get("description"),
                "allow_failure": False,
            },
            status=201,
        )

    def _note(self, method: str, iid: int, note_id: int | None, body: Any) -> web.Response:
        where = f"{method} merge_requests/{iid}/notes"
        if method not in ("POST", "PUT") or (method == "PUT") != (note_id is not None):
            return self._refuse(f"{where}: not an endpoint click-deploy should call")
        if not isinstance(body, dict) or "body" not in body:
            return self._refuse(f"{where}: body is missing")
        text = body["body"]
        if not isinstance(text, str) or not text.strip() or len(text) > 1_000_000:
            return self._refuse(f"{where}: body is invalid")
        unknown = set(body) - NOTE_FIELDS
        if unknown:
            return self._refuse(f"{where}: undocumented attributes {sorted(unknown)}")
        if note_id is not None:
            note = self.notes.get(note_id)
            if note is None or note["noteable_iid"] != iid:
                return web.json_response({"message": "404 Not found"}, status=404)
            note["body"] = text
            return web.json_response(note)
        note = {
            "id": next(self._ids),
            "body": text,
            "author": BOT,
            "system": False,
            "noteable_type": "MergeRequest",
            "noteable_iid": iid,
        }
        self.notes[note["id"]] = note
        return web.json_response(note, status=201)

    def _deployment(self, method: str, deployment_id: int | None, body: Any) -> web.Response:
        where = f"{method} deployments"
        if not isinstance(body, dict):
            return self._refuse(f"{where}: no parameters")
        if method == "PUT" and deployment_id is not None:
            if set(body) != {"status"} or body["status"] not in DEPLOYMENT_STATUSES:
                return self._refuse(f"{where}/{deployment_id}: status only, a valid one")
            known = self.deployments.get(deployment_id)
            if known is None:
                return web.json_response({"message": "404 Not found"}, status=404)
            known["status"] = body["status"]
            return web.json_response(known)
        if method != "POST" or deployment_id is not None:
            return self._refuse(f"{where}: not an endpoint click-deploy should call")
        required = {"environment", "sha", "ref", "tag", "status"}
        if set(body) != required:
            return self._refuse(f"{where}: needs exactly {sorted(required)}, got {sorted(body)}")
        if body["status"] not in DEPLOYMENT_STATUSES or not isinstance(body["tag"], bool):
            return self._refuse(f"{where}: status or tag is invalid")
        if not all(
            isinstance(body[key], str) and body[key] for key in ("environment", "sha", "ref")
        ):
            return self._refuse(f"{where}: environment, sha and ref must be strings")
        environment = self.environments.setdefault(
            body["environment"],
            {"id": next(self._ids), "name": body["environment"], "external_url": None},
        )
        made = {
            "id": next(self._ids),
            "iid": len(self.deployments) + 1,
            "ref": body["ref"],
            "sha": body["sha"],
            "status": body["status"],
            "environment": environment,
        }
        self.deployments[made["id"]] = made
        return web.json_response(made, status=201)

    def _environment(self, environment_id: int, body: Any) -> web.Response:
        where = f"PUT environments/{environment_id}"
        if not isinstance(body, dict) or not set(body) <= {"external_url", "tier", "description"}:
            return self._refuse(f"{where}: undocumented attributes")
        url = body.get("external_url")
        if url is not None and not (isinstance(url, str) and re.match(r"https?://", url)):
            return self._refuse(f"{where}: external_url is not an http(s) URL")
        for environment in self.environments.values():
            if environment["id"] == environment_id:
                environment.update(body)
                return web.json_response(environment)
        return web.json_response({"message": "404 Not found"}, status=404)

    def _award(self, iid: int, note_id: int, body: Any) -> web.Response:
        where = f"POST merge_requests/{iid}/notes/{note_id}/award_emoji"
        if not isinstance(body, dict) or "name" not in body:
            return self._refuse(f"{where}: name is missing")
        if set(body) != {"name"}:
            return self._refuse(f"{where}: undocumented attributes {sorted(set(body) - {'name'})}")
        name = body["name"]
        if not isinstance(name, str) or name not in EMOJI_NAMES:
            return self._refuse(f"{where}: name is not an emoji: {name!r}")
        given = self.awards.setdefault(note_id, [])
        if name in given:
            return web.json_response({"message": {"name": ["has already been taken"]}}, status=404)
        given.append(name)
        award = {
            "id": next(self._ids),
            "name": name,
            "user": BOT,
            "awardable_id": note_id,
            "awardable_type": "Note",
        }
        return web.json_response(award, status=201)

    def mr_notes(self, iid: int) -> list[dict[str, Any]]:
        return [note for note in self.notes.values() if note["noteable_iid"] == iid]


async def start(fake: FakeGitLab) -> web.AppRunner:
    runner, fake.url = await serve("/{tail:.*}", fake.handle)
    return runner


# --- webhook payloads, shaped as https://docs.gitlab.com/user/project/integrations/webhook_events/

PROJECT_ID = 15
PROJECT_PATH = "mike/diaspora"
HEAD = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
USER = {
    "id": 4,
    "name": "John Smith",
    "username": "jsmith",
    "avatar_url": "http://example.com/uploads/user/avatar/4/avatar.png",
    "email": "john@example.com",
}


def _project(project_id: int = PROJECT_ID, path: str = PROJECT_PATH) -> dict[str, Any]:
    namespace, name = path.rsplit("/", 1)
    return {
        "id": project_id,
        "name": name.capitalize(),
        "description": "",
        "web_url": f"http://example.com/{path}",
        "avatar_url": None,
        "git_ssh_url": f"git@example.com:{path}.git",
        "git_http_url": f"http://example.com/{path}.git",
        "namespace": namespace.capitalize(),
        "visibility_level": 0,
        "path_with_namespace": path,
        "default_branch": "master",
        "homepage": f"http://example.com/{path}",
        "url": f"git@example.com:{path}.git",
        "ssh_url": f"git@example.com:{path}.git",
        "http_url": f"http://example.com/{path}.git",
    }


def _repository(path: str = PROJECT_PATH) -> dict[str, Any]:
    return {
        "name": path.rsplit("/", 1)[1].capitalize(),
        "url": f"git@example.com:{path}.git",
        "description": "",
        "homepage": f"http://example.com/{path}",
        "git_http_url": f"http://example.com/{path}.git",
        "git_ssh_url": f"git@example.com:{path}.git",
        "visibility_level": 0,
    }


def _diff(path: str) -> dict[str, Any]:
    """One entry of GET /projects/:id/merge_requests/:iid/diffs."""
    return {
        "old_path": path,
        "new_path": path,
        "a_mode": "100644",
        "b_mode": "100644",
        "diff": "@@ -1 +1 @@\n-a\n+b\n",
        "new_file": False,
        "renamed_file": False,
        "deleted_file": False,
        "generated_file": False,
    }


def _commit(sha: str, message: str, **paths: list[str]) -> dict[str, Any]:
    return {
        "id": sha,
        "message": message,
        "title": message.split("\n", 1)[0],
        "timestamp": "2012-01-03T23:36:29+02:00",
        "url": f"http://example.com/{PROJECT_PATH}/commit/{sha}",
        "author": {"name": "GitLab dev user", "email": "gitlabdev@dv6700.(none)"},
        "added": paths.get("added", ["CHANGELOG"]),
        "modified": paths.get("modified", ["app/controller/application.rb"]),
        "removed": paths.get("removed", []),
    }


def push_hook(
    *,
    ref: str = "refs/heads/master",
    after: str = HEAD,
    message: str = "fixed readme",
    added: list[str] | None = None,
    project_path: str = PROJECT_PATH,
) -> dict[str, Any]:
    """A Push Hook body (X-Gitlab-Event: Push Hook)."""
    older = _commit("b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327", "Update Catalan translation")
    head = _commit(after, message, **({"added": added, "modified": []} if added else {}))
    return {
        "object_kind": "push",
        "event_name": "push",
        "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
        "after": after,
        "ref": ref,
        "ref_protected": True,
        "checkout_sha": None if set(after) == {"0"} else after,
        "user_id": USER["id"],
        "user_name": USER["name"],
        "user_username": USER["username"],
        "user_email": USER["email"],
        "user_avatar": USER["avatar_url"],
        "project_id": PROJECT_ID,
        "project": _project(path=project_path),
        "repository": _repository(project_path),
        "commits": [older if not added else dict(older, added=[], modified=[]), head],
        "total_commits_count": 2,
    }


def _merge_request(iid: int, sha: str, source_project_id: int) -> dict[str, Any]:
    source = _project(source_project_id, f"fork{source_project_id}/diaspora")
    return {
        "id": 99,
        "iid": iid,
        "target_branch": "master",
        "source_branch": "ms-viewport",
        "source_project_id": source_project_id,
        "author_id": 51,
        "assignee_ids": [6],
        "title": "MS-Viewport",
        "created_at": "2013-12-03T17:23:34Z",
        "updated_at": "2013-12-03T17:23:34Z",
        "milestone_id": None,
        "state": "opened",
        "blocking_discussions_resolved": True,
        "work_in_progress": False,
        "draft": False,
        "first_contribution": True,
        "merge_status": "unchecked",
        "target_project_id": PROJECT_ID,
        "description": "",
        "url": f"http://example.com/{PROJECT_PATH}/-/merge_requests/{iid}",
        "source": source if source_project_id != PROJECT_ID else _project(),
        "target": _project(),
        "last_commit": {
            "id": sha,
            "message": "fixed readme",
            "title": "fixed readme",
            "timestamp": "2012-01-03T23:36:29+02:00",
            "url": f"http://example.com/{PROJECT_PATH}/commits/{sha}",
            "author": {"name": "GitLab dev user", "email": "gitlabdev@dv6700.(none)"},
        },
        "labels": [],
        "detailed_merge_status": "not_open",
    }


def merge_request_hook(
    action: str = "open",
    *,
    iid: int = 1,
    sha: str = HEAD,
    source_project_id: int = PROJECT_ID,
    oldrev: str | None = None,
) -> dict[str, Any]:
    """A Merge Request Hook body (X-Gitlab-Event: Merge Request Hook)."""
    attributes = _merge_request(iid, sha, source_project_id)
    attributes["action"] = action
    attributes["state"] = {"close": "closed", "merge": "merged"}.get(action, "opened")
    if oldrev is not None:
        attributes["oldrev"] = oldrev
    return {
        "object_kind": "merge_request",
        "event_type": "merge_request",
        "user": copy.deepcopy(USER),
        "project": _project(),
        "repository": _repository(),
        "object_attributes": attributes,
        "labels": [],
        "changes": {},
        "assignees": [],
        "reviewers": [],
    }


def note_hook(
    note: str,
    *,
    user_id: int = USER["id"],
    username: str = USER["username"],
    iid: int = 1,
    sha: str = HEAD,
    source_project_id: int = PROJECT_ID,
    noteable_type: str = "MergeRequest",
) -> dict[str, Any]:
    """A Note Hook body for a comment on a merge request (X-Gitlab-Event: Note Hook)."""
    note_id = next(_note_ids)
    payload: dict[str, Any] = {
        "object_kind": "note",
        "event_type": "note",
        "user": dict(USER, id=user_id, username=username),
        "project_id": PROJECT_ID,
        "project": _project(),
        "repository": _repository(),
        "object_attributes": {
            "id": note_id,
            "note": note,
            "noteable_type": noteable_type,
            "author_id": user_id,
            "created_at": "2015-05-17 18:21:36 UTC",
            "updated_at": "2015-05-17 18:21:36 UTC",
            "project_id": PROJECT_ID,
            "attachment": None,
            "line_code": None,
            "commit_id": "",
            "noteable_id": 99,
            "system": False,
            "st_diff": None,
            "action": "create",
            "url": f"http://example.com/{PROJECT_PATH}/-/merge_requests/{iid}#note_{note_id}",
        },
    }
    if noteable_type == "MergeRequest":
        payload["merge_request"] = _merge_request(iid, sha, source_project_id)
    return payload


_note_ids = itertools.count(1244)


def hook_headers(
    event: str, *, token: str = WEBHOOK_SECRET, uuid_: str | None = None
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Gitlab-Event": event,
        "X-Gitlab-Token": token,
        "X-Gitlab-Event-UUID": uuid_ or str(uuid.uuid4()),
        "X-Gitlab-Webhook-UUID": "8b3c4f2e-7a1d-4e8f-9c2b-1d5e6f7a8b9c",
        "X-Gitlab-Instance": "http://example.com",
        "User-Agent": "GitLab/17.6.0",
    }
