"""`/deploy` comments on pull requests: GitHub's side of the command runner
(bot/forge/commands.py). What is GitHub's own: which comments to ignore (not created, a
bot's, not on a pull request), and the `ForgeClient` of a comment: replies and
reactions through the REST API, write access, team allowlists, the pull request's head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.commands.parser import Ignore, parse
from bot.forge.commands import Head, Reaction
from bot.forge.intent import After, DeliveryIntent
from bot.forge.requests import Thread, run_comment
from bot.github.access import GitHubMember
from bot.github.client import GitHubClient
from bot.github.context import Context
from bot.github.events import PULL_REQUESTS
from bot.github.models import Comment

FILES_LISTED = 3000  # the most files GitHub lists of a pull request


@dataclass
class PullRequestClient:
    """GitHub, for a command in `comment`: its author and how to answer them."""

    context: Context
    comment: Comment
    _client: GitHubClient | None = None

    @property
    def login(self) -> str:
        return self.comment.author.login

    @property
    def number(self) -> int:
        return self.comment.issue_number

    async def connect(self) -> None:
        self._client = await self.context.api()

    @property
    def gh(self) -> GitHubClient:
        assert self._client is not None, "connect() first"
        return self._client

    def _member(self) -> GitHubMember:
        return GitHubMember(self.gh, self.comment.repo, self.login)

    async def write_access(self) -> str | None:
        return await self._member().write_access()

    async def in_group(self, group: str) -> bool:
        return await self._member().in_group(group)

    def reply(self, text: str) -> After:
        gh, repo, number = self.gh, self.comment.repo, self.number

        async def run() -> None:
            await gh.post(
                "/repos/{owner}/{repo}/issues/{issue_number}/comments",
                {"owner": repo.owner, "repo": repo.name, "issue_number": number},
                data={"body": text},
            )

        return run

    def react(self, reaction: Reaction) -> After:
        gh, repo, comment_id = self.gh, self.comment.repo, self.comment.id

        async def run() -> None:
            await gh.post(
                "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
                {"owner": repo.owner, "repo": repo.name, "comment_id": comment_id},
                data={"content": reaction},
            )

        return run

    async def head(self) -> Head:
        repo = self.comment.repo
        pull = await self.gh.getitem(
            "/repos/{owner}/{repo}/pulls/{pull_number}",
            {"owner": repo.owner, "repo": repo.name, "pull_number": self.number},
        )
        head_repo = (pull["head"].get("repo") or {}).get("full_name")
        # A fork's commits are reachable from the base repository under refs/pull/N/head.
        ref = (
            pull["head"]["ref"] if head_repo == repo.full_name else f"refs/pull/{self.number}/head"
        )
        return Head(ref, pull["head"]["sha"])

    async def changed_files(self) -> list[str] | None:
        repo = self.comment.repo
        paths: list[str] = []
        listed = 0
        async for item in self.gh.getiter(
            "/repos/{owner}/{repo}/pulls/{pull_number}/files{?per_page}",
            {"owner": repo.owner, "repo": repo.name, "pull_number": self.number, "per_page": 100},
        ):
            listed += 1
            paths += [
                item["filename"],
                *([item["previous_filename"]] if "previous_filename" in item else []),
            ]
        # GitHub lists at most FILES_LISTED files of a pull request.
        return None if listed >= FILES_LISTED else paths

    def answer(self, head_sha: str | None) -> dict[str, dict[str, Any]]:
        return self.context.answer(
            self.comment.repo.full_name,
            pr=self.number,
            head_sha=head_sha,
            comment_id=self.comment.id,
        )


async def on_issue_comment(payload: Any, context: Context) -> DeliveryIntent:
    comment = Comment.from_payload(payload)
    if comment.action != "created":
        return DeliveryIntent(f"ignored: comment {comment.action}")
    bot_login = f"{context.settings.github_app_slug}[bot]"
    if comment.author.is_bot or comment.author.login == bot_login:
        return DeliveryIntent("ignored: a bot's comment")
    if not comment.on_pull_request:
        return DeliveryIntent("ignored: not a pull request")
    if isinstance(parse(comment.body), Ignore):  # before the services are read
        return DeliveryIntent("ignored: not a command")
    thread = Thread(PULL_REQUESTS, comment.repo.full_name, comment.issue_number)
    return await run_comment(context, thread, PullRequestClient(context, comment), comment.body)
