"""Who asked on Slack (`Asker`, from a request's ids) and the same person as the command
runner's `ForgeClient` and the permission rules' `ChatMember` (`SlackMember`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.forge.commands import Reaction
from bot.forge.intent import After
from bot.runtime import Runtime

log = structlog.get_logger(__name__)

SLACK_ID = re.compile(r"[A-Z0-9]{1,40}")  # U0ALICE, C0DEPLOY, W…: Slack's ids


@dataclass(frozen=True)
class Asker:
    """Who asked, from where."""

    user: str
    channel: str

    @classmethod
    def of(cls, user: Any, channel: Any) -> Asker | None:
        """An asker from a request's user and channel ids; None unless both are Slack ids."""
        if all(isinstance(x, str) and SLACK_ID.fullmatch(x) for x in (user, channel)):
            return cls(user, channel)
        return None


@dataclass
class SlackContext:
    runtime: Runtime
    client: AsyncWebClient


@dataclass(frozen=True)
class SlackMember:
    """The person who asked, as the runner's `ForgeClient` and the rules' `ChatMember`:
    Slack has no repository role; user groups are Slack's; answers are ephemeral and
    reactions have no place on a slash command."""

    client: AsyncWebClient
    asker: Asker

    @property
    def login(self) -> str:
        return self.asker.user

    @property
    def channel(self) -> str:
        return self.asker.channel

    async def connect(self) -> None:
        pass  # the client is made at start-up

    async def write_access(self) -> None:
        return None  # who may deploy is the service's `config.slack`

    async def in_group(self, group: str) -> bool:
        try:
            answer = await self.client.usergroups_users_list(usergroup=group)
        except SlackApiError as error:
            log.warning("cannot read a Slack user group", usergroup=group, error=str(error))
            return False
        members = answer.get("users")
        return isinstance(members, list) and self.login in members

    async def say(self, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        """An ephemeral answer to the person who asked."""
        arguments: dict[str, Any] = {"channel": self.channel, "user": self.login, "text": text}
        if blocks is not None:
            arguments["blocks"] = blocks
        try:
            await self.client.chat_postEphemeral(**arguments)
        except SlackApiError as error:  # not in the channel, say: nobody else to tell
            log.warning(
                "slack ephemeral reply failed",
                channel=self.channel,
                error=str(error.response.get("error")),
            )

    def reply(self, text: str) -> After:
        async def run() -> None:
            await self.say(text)

        return run

    def react(self, reaction: Reaction) -> After:
        async def run() -> None:
            pass  # the live message (bot/slack/reporter.py) shows what happens

        return run

    def answer(self, head_sha: str | None) -> dict[str, dict[str, Any]]:
        return {"slack": {"channel": self.channel, "user": self.login}}
