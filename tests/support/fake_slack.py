"""A fake Slack Web API on loopback (point slack_sdk's `base_url` at `url + "/api/"`).

It records every call and checks what Slack checks for the methods click-deploy uses
(chat.postMessage, chat.update, chat.postEphemeral, views.open, auth.test,
usergroups.users.list): the bot token, the required arguments (channel, ts, user, text or
blocks) and the Block Kit structure (block and element types, text objects, action ids,
at most 50 blocks, button values of at most 2000 characters...). A bad call is answered
`{"ok": false, "error": ...}` as Slack does, and recorded in `invalid`. Messages are kept
as Slack would show them, with their thread replies."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.fake_server import serve

TOKEN = "xoxb-test-token"

BLOCK_TYPES = {"section", "actions", "context", "divider", "header", "image", "input"}


@dataclass(frozen=True)
class Call:
    method: str
    args: dict[str, Any]


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None
    edits: int = 0


def _text_object(obj: Any, where: str, problems: list[str], limit: int = 3000) -> None:
    if not isinstance(obj, dict) or obj.get("type") not in ("plain_text", "mrkdwn"):
        problems.append(f"{where}: not a text object: {obj!r}"[:300])
        return
    text = obj.get("text")
    if not isinstance(text, str) or not text or len(text) > limit:
        problems.append(f"{where}: text must be 1-{limit} characters")
    if set(obj) - {"type", "text", "emoji", "verbatim"}:
        problems.append(f"{where}: unknown text object fields {sorted(set(obj))}")


def _plain(obj: Any, where: str, problems: list[str], limit: int) -> None:
    if not isinstance(obj, dict) or obj.get("type") != "plain_text":
        problems.append(f"{where}: must be plain_text")
        return
    _text_object(obj, where, problems, limit)


def _confirm(obj: Any, where: str, problems: list[str]) -> None:
    if not isinstance(obj, dict):
        problems.append(f"{where}: confirm must be an object")
        return
    _plain(obj.get("title"), f"{where}.title", problems, 100)
    _text_object(obj.get("text"), f"{where}.text", problems, 300)
    _plain(obj.get("confirm"), f"{where}.confirm", problems, 30)
    _plain(obj.get("deny"), f"{where}.deny", problems, 30)
    if obj.get("style", "primary") not in ("primary", "danger"):
        problems.append(f"{where}: bad style")


def _button(element: dict[str, Any], where: str, problems: list[str], ids: set[str]) -> None:
    _plain(element.get("text"), f"{where}.text", problems, 75)
    action_id = element.get("action_id")
    if not isinstance(action_id, str) or not action_id or len(action_id) > 255:
        problems.append(f"{where}: action_id must be 1-255 characters")
    elif action_id in ids:
        problems.append(f"{where}: action_id {action_id} is not unique")
    else:
        ids.add(action_id)
    value = element.get("value")
    if value is not None and (not isinstance(value, str) or len(value) > 2000):
        problems.append(f"{where}: value must be a string of at most 2000 characters")
    url = element.get("url")
    if url is not None and (not isinstance(url, str) or len(url) > 3000 or "://" not in url):
        problems.append(f"{where}: bad url")
    if element.get("style", "primary") not in ("primary", "danger"):
        problems.append(f"{where}: bad style")
    if "confirm" in element:
        _confirm(element["confirm"], f"{where}.confirm", problems)
    known = {"type", "text", "action_id", "value", "url", "style", "confirm"}
    if set(element) - known:
        problems.append(f"{where}: unknown button fields {sorted(set(element) - known)}")


def check_blocks(blocks: Any) -> list[str]:
    """What Slack would refuse in a `blocks` array (the subset of Block Kit we use)."""
    problems: list[str] = []
    if not isinstance(blocks, list) or not blocks or len(blocks) > 50:
        return ["blocks must be a list of 1-50 blocks"]
    ids: set[str] = set()
    block_ids: set[str] = set()
    for index, block in enumerate(blocks):
        where = f"blocks[{index}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in BLOCK_TYPES:
            problems.append(f"{where}: unknown block type {kind!r}")
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            if not isinstance(block_id, str) or len(block_id) > 255 or block_id in block_ids:
                problems.append(f"{where}: bad or repeated block_id")
            block_ids.add(str(block_id))
        if kind == "section":
            if "text" not in block and "fields" not in block:
                problems.append(f"{where}: a section needs text or fields")
            if "text" in block:
                _text_object(block["text"], f"{where}.text", problems)
            if "fields" in block:
                fields = block["fields"]
                if not isinstance(fields, list) or not 1 <= len(fields) <= 10:
                    problems.append(f"{where}: 1-10 fields")
                else:
                    for n, item in enumerate(fields):
                        _text_object(item, f"{where}.fields[{n}]", problems, 2000)
        elif kind == "actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
                problems.append(f"{where}: 1-25 elements")
                continue
            for n, element in enumerate(elements):
                if not isinstance(element, dict) or element.get("type") != "button":
                    problems.append(f"{where}.elements[{n}]: only buttons are expected")
                    continue
                _button(element, f"{where}.elements[{n}]", problems, ids)
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                problems.append(f"{where}: 1-10 context elements")
                continue
            for n, element in enumerate(elements):
                _text_object(element, f"{where}.elements[{n}]", problems)
        elif kind == "header":
            _plain(block.get("text"), f"{where}.text", problems, 150)
    return problems


@dataclass
class FakeSlack:
    calls: list[Call] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    messages: dict[tuple[str, str], Message] = field(default_factory=dict)
    usergroups: dict[str, list[str]] = field(default_factory=dict)
    # method → (status, headers) answered once instead, e.g. a rate limit
    failures: list[tuple[str, int, dict[str, str]]] = field(default_factory=list)
    # method → a Slack error (`{"ok": false}`, HTTP 200) answered once instead
    errors: list[tuple[str, str]] = field(default_factory=list)
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    url: str = ""

    @property
    def api_url(self) -> str:
        return self.url + "/api/"

    def called(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def top_level(self, channel: str | None = None) -> list[Message]:
        return [
            m
            for m in self.messages.values()
            if m.thread_ts is None and (channel is None or m.channel == channel)
        ]

    def thread(self, message: Message) -> list[Message]:
        return [
            m
            for m in self.messages.values()
            if m.thread_ts == message.ts and m.channel == message.channel
        ]

    def ephemeral_texts(self, user: str | None = None) -> list[str]:
        return [
            str(call.args.get("text", "")) + json.dumps(call.args.get("blocks", ""))
            for call in self.called("chat.postEphemeral")
            if user is None or call.args.get("user") == user
        ]

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            body = await request.json()
            args.update(body if isinstance(body, dict) else {})
        else:
            args.update(dict(await request.post()))
        for key in ("blocks", "view"):
            if isinstance(args.get(key), str):
                args[key] = json.loads(args[key])
        self.calls.append(Call(method, args))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._bad(method, "invalid_auth")
        for index, (name, status, headers) in enumerate(self.failures):
            if name == method:
                del self.failures[index]
                return web.json_response(
                    {"ok": False, "error": "ratelimited"}, status=status, headers=headers
                )
        for index, (name, error) in enumerate(self.errors):
            if name == method:
                del self.errors[index]
                return web.json_response({"ok": False, "error": error})
        return self.answer(method, args)

    def _bad(self, method: str, error: str, detail: str = "") -> web.Response:
        self.invalid.append(f"{method}: {error} {detail}".strip())
        return web.json_response({"ok": False, "error": error})

    def _content(self, method: str, args: dict[str, Any]) -> str | None:
        """The error for a message without text and blocks, or with bad blocks."""
        if not args.get("text") and not args.get("blocks"):
            return "no_text"
        if "blocks" in args:
            problems = check_blocks(args["blocks"])
            if problems:
                self.invalid.append(f"{method}: invalid_blocks {problems}")
                return "invalid_blocks"
        return None

    def answer(self, method: str, args: dict[str, Any]) -> web.Response:
        if method == "auth.test":
            return web.json_response(
                {"ok": True, "team_id": "T1", "user_id": "UBOT", "bot_id": "B1", "team": "t"}
            )
        if method == "usergroups.users.list":
            group = args.get("usergroup")
            if group not in self.usergroups:
                return web.json_response({"ok": False, "error": "no_such_subteam"})
            return web.json_response({"ok": True, "users": self.usergroups[group]})
        if method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
            channel = args.get("channel")
            if not isinstance(channel, str) or not channel:
                return self._bad(method, "channel_not_found")
            error = self._content(method, args)
            if error is not None:
                return (
                    self._bad(method, error)
                    if error == "no_text"
                    else web.json_response({"ok": False, "error": error})
                )
            if method == "chat.postEphemeral":
                if not args.get("user"):
                    return self._bad(method, "user_not_in_channel")
                return web.json_response({"ok": True, "message_ts": self._next_ts()})
            if method == "chat.postMessage":
                thread_ts = args.get("thread_ts")
                if thread_ts is not None and (channel, thread_ts) not in self.messages:
                    return self._bad(method, "thread_not_found")
                ts = self._next_ts()
                self.messages[channel, ts] = Message(
                    channel, ts, str(args.get("text", "")), args.get("blocks") or [], thread_ts
                )
                return web.json_response({"ok": True, "channel": channel, "ts": ts})
            ts = args.get("ts")
            message = self.messages.get((channel, str(ts)))
            if message is None:
                return self._bad(method, "message_not_found", f"{channel} {ts}")
            message.text = str(args.get("text", ""))
            message.blocks = args.get("blocks") or []
            message.edits += 1
            return web.json_response({"ok": True, "channel": channel, "ts": ts})
        if method == "views.open":
            view = args.get("view")
            if not args.get("trigger_id") or not isinstance(view, dict):
                return self._bad(method, "invalid_arguments")
            problems = check_blocks(view.get("blocks"))
            if view.get("type") not in ("modal", "home") or problems:
                return self._bad(method, "invalid_arguments", str(problems))
            return web.json_response({"ok": True, "view": {"id": "V1", **view}})
        return self._bad(method, "unknown_method")

    def _next_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"


async def start(fake: FakeSlack) -> web.AppRunner:
    runner, fake.url = await serve("/api/{method}", fake.handle)
    return runner
