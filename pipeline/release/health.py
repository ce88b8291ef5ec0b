"""Waiting for a new container to be healthy: its HTTP path answering the expected status,
else the image's HEALTHCHECK, else its port accepting connections; all within the
timeout, and never past the moment the container exits."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from pipeline.release.config import ReleaseConfig
from pipeline.release.engine import Engine

POLL_SECONDS = 0.25


class Unhealthy(Exception):
    """Why the container is not healthy (one line)."""


async def wait_healthy(
    engine: Engine, container: str, port: int, config: ReleaseConfig, *, has_healthcheck: bool
) -> str:
    """Returns how health was shown; raises Unhealthy with what was last seen."""
    deadline = time.monotonic() + config.health_timeout_seconds
    seen = "it did not answer"
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=5, sock_connect=2)
    ) as session:
        while True:
            state = await engine.inspect(container)
            if state is None:
                raise Unhealthy("the new container is gone")
            if not state["State"].get("Running"):
                code = state["State"].get("ExitCode")
                raise Unhealthy(f"the new container exited (code {code}) before it was healthy")
            if config.health_path is not None:
                url = f"http://{engine.host}:{port}{config.health_path}"
                try:
                    async with session.get(url, allow_redirects=False) as answer:
                        await answer.read()
                        if answer.status == config.health_status:
                            return f"GET {config.health_path} answered {answer.status}"
                        seen = (
                            f"GET {config.health_path} answered {answer.status} "
                            f"(expected {config.health_status})"
                        )
                except (aiohttp.ClientError, TimeoutError):
                    seen = f"GET {config.health_path} got no answer on port {port}"
            elif has_healthcheck:
                health = (state["State"].get("Health") or {}).get("Status")
                if health == "healthy":
                    return "the image's HEALTHCHECK passed"
                if health == "unhealthy":
                    raise Unhealthy("the image's HEALTHCHECK reports it unhealthy")
                seen = f"the image's HEALTHCHECK is {health or 'not run yet'}"
            else:
                try:
                    _, writer = await asyncio.wait_for(
                        asyncio.open_connection(engine.host, port), timeout=2
                    )
                    writer.close()
                    return f"port {port} accepts connections"
                except (OSError, TimeoutError):
                    seen = f"port {port} accepts no connections"
            if time.monotonic() >= deadline:
                raise Unhealthy(
                    f"it was not healthy within {config.health_timeout_seconds:g} s: {seen}"
                )
            await asyncio.sleep(POLL_SECONDS)
