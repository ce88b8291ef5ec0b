"""`/deploy` notes on merge requests: GitLab's side of the command runner
(bot/forge/commands.py). What is GitLab's own: which notes to ignore (updates, system
notes, the bot's own, not on a merge request), and the `Conversation` a note is: MR
notes and award emoji, the Developer role, group allowlists, the MR's head."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.commands.parser import Ignore, parse
from bot.forge.access import named
from bot.forge.commands import Head, Reaction, run_comment
from bot.forge.intent import After, DeliveryIntent
from bot.gitlab.api import DEVELOPER, GitLabApi
from bot.gitlab.context import SOURCE, GitLabContext, preview_environment
from bot.gitlab.models import MergeRequest, Note
from bot.reporting.render import COMMENT_MARKER
from pipeline.trigger import Source as TriggerSource

# Every note the bot writes carries the marker, so it never answers itself.
REPLY_MARKER = COMMENT_MARKER.replace("-->", "reply -->")


@dataclass
class MergeRequestThread:
    """A merge request's discussion, where `note` was written."""

    context: GitLabContext
    api: GitLabApi
    note: Note
    mr: MergeRequest
    source: TriggerSource = SOURCE
    noun: str = "merge request"
    reason: str = "/deploy note"
    status_query: str = "forge_gitlab_mr_deployments"

    @property
    def login(self) -> str:
        return self.note.author.username

    @property
    def repository(self) -> str:
        return self.note.project.path

    @property
    def number(self) -> int:
        return self.mr.iid

    @property
    def environment(self) -> str:
        return preview_environment(self.mr.iid)

    async def connect(self) -> None:
        pass  # the API was asked already (whose notes are the bot's)

    async def write_access(self) -> str | None:
        level = await self.api.access_level(self.note.project.id, self.note.author.id)
        if level >= DEVELOPER:
            return None
        return f"the Developer role or more in {self.repository}"

    async def on_allowlist(self, entries: Sequence[str]) -> bool:
        """Usernames, or groups as "@group/subgroup"."""
        if named(self.login, entries):
            return True
        for entry in entries:
            if (
                entry.startswith("@")
                and len(entry) > 1
                and await self.api.in_group(entry[1:], self.note.author.id)
            ):
                return True
        return False

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
        return self.context.answer(
            self.repository,
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
    return await run_comment(context, MergeRequestThread(context, api, note, note.mr), note.body)
