"""The REST API and pages served in-process on a free port, and tokens of each scope."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.api.app import setup_api
from bot.api.tokens import Scope, TokenStore
from bot.runtime import Runtime
from bot.web.pages import setup_pages
from pipeline.queue.queue import Queue
from pipeline.settings import Settings
from pipeline.store import Store


@dataclass
class Api:
    client: TestClient[web.Request, web.Application]
    runtime: Runtime
    tokens: dict[str, str]  # scope name -> clear token

    def auth(self, scope: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[scope]}"}


def make_app(runtime: Runtime) -> web.Application:
    app = web.Application()
    setup_api(app, runtime)
    setup_pages(app, runtime)
    return app


@pytest.fixture
async def api(settings: Settings, pool: asyncpg.Pool, database_url: str) -> AsyncIterator[Api]:
    runtime = Runtime(settings, database_url, pool, Store(pool), Queue(pool, settings))
    store = TokenStore(pool)
    tokens = {}
    for scope in Scope:
        _record, clear = await store.create(f"{scope}-token", scope)
        tokens[str(scope)] = clear
    client = TestClient(TestServer(make_app(runtime)))
    await client.start_server()
    yield Api(client, runtime, tokens)
    await client.close()
