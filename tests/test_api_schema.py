"""Schemathesis against the served OpenAPI document: generated requests (valid and not)
never get a 5xx, and every answer has the documented shape. (The coverage phase is left
out: on this CPython 3.11 schemathesis itself crashes in it now and then, with "AST
constructor recursion depth mismatch", which says nothing about our server.)"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.support.api import Api

pytest_plugins = ["tests.support.api"]

ST = str(Path(sys.executable).with_name("st"))


async def test_schemathesis_finds_no_server_errors(api: Api, service: int, tmp_path: Path) -> None:
    await api.runtime.queue.enqueue(service)
    url = str(api.client.make_url("/api/v1/openapi.json"))
    process = await asyncio.create_subprocess_exec(
        ST,
        "run",
        url,
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_schema_conformance",
        "--max-examples",
        "25",
        "--seed",
        "1",
        "--workers",
        "2",
        "--request-timeout",
        "5",
        "--max-time",
        "30",
        "--phases",
        "examples,fuzzing",
        "--exclude-path-regex",
        "/logs/ws$",
        "-H",
        f"Authorization: Bearer {api.tokens['admin']}",
        "--warnings",
        "off",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""},
        cwd=tmp_path,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 90)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-6000:]
