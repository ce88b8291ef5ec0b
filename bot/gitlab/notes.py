"""`/deploy` notes on merge requests: GitLab's side of the command runner
(bot/forge/commands.py). What is GitLab's own: which notes to ignore (updates, system
notes, the bot's own, not on a merge request), and the `ForgeClient` of a note: MR
notes and award emoji, the Developer role, group allowlists, the MR's head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.commands.parser import Ignore, parse
from bot.forge.commands import Head, Reaction
from bot.forge.intent import After, DeliveryIntent
from bot.forge.requests import Thread, run_comment
from bot.gitlab.api import DEVELOPER, GitLabApi
from bot.gitlab.context import MERGE_REQUESTS, GitLabContext, answer_at
from bot.gitlab.models import MergeRequest, Note
from bot.reporting.render import COMMENT_MARKER

# Every note the bot writes carries the marker, so it never answers itself.
REPLY_MARKER = COMMENT_MARKER.replace("-->", "reply -->")


@dataclass
class MergeRequestClient:
    """GitLab, for a command in `note`: its author and how to answer them."""

    api: GitLabApi
    note: Note
    mr: MergeRequest

    @property
    def login(self) -> str:
        return self.note.author.username

    async def connect(self) -> None:
        pass  # the API was asked already (whose notes are the bot's)

    async def write_access(self) -> str | None:
        level = await self.api.access_level(self.note.project.id, self.note.author.id)
        if level >= DEVELOPER:
            return None
        return f"the Developer role or more in {self.note.project.path}"

    async def in_group(self, group: str) -> bool:
        return await self.api.in_group(group, self.note.author.id)

    def reply(self, text: str) -> After:
        api, project, iid = self.api, self.note.project.id, self.mr.iid

        async def run() -> None:
            await api.create_note(project, iid, f"{text}\n\n{REPLY_MARKER}")

        return run

    def react(self, reaction: Reaction) -> After:
        api, project, iid, note_id = self.api, self.note.project.id, self.mr.iid, self.note.id

        async def run() -> None:
            await api.award_emoji(project, iid, note_id, reaction)

        return run

    async def head(self) -> Head:
        return Head(self.mr.fetch_ref, self.mr.head_sha)

    async def changed_files(self) -> list[str] | None:
        return await self.api.merge_request_paths(self.note.project.id, self.mr.iid)

    def answer(self, head_sha: str | None) -> dict[str, dict[str, Any]]:
        return answer_at(
            self.note.project.path,
            self.note.project.id,
            mr=self.mr.iid,
            head_sha=head_sha,
            note_id=self.note.id,
        )


async def on_note(payload: Any, context: GitLabContext) -> DeliveryIntent:
    note = Note.from_payload(payload)
    if note.action not in (None, "create"):
        return DeliveryIntent(f"ignored: note {note.action}")
    if note.system:
        return DeliveryIntent("ignored: a system note")
    if COMMENT_MARKER in note.body or REPLY_MARKER in note.body:
        return DeliveryIntent("ignored: the bot's own note")
    if note.mr is None:
        return DeliveryIntent("ignored: not a merge request")
    if isinstance(parse(note.body), Ignore):
        return DeliveryIntent("ignored: not a command")
    api = context.api()
    if note.author.username == await api.bot_username():
        return DeliveryIntent("ignored: the bot's own note")
    thread = Thread(MERGE_REQUESTS, note.project.path, note.mr.iid)
    return await run_comment(context, thread, MergeRequestClient(api, note, note.mr), note.body)
