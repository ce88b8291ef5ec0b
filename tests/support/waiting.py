"""Polling helpers: wait for a state the system reaches on its own."""

from __future__ import annotations

import asyncio
import time

from pipeline.models import Deployment
from pipeline.states import Status
from pipeline.store import Store


async def wait_for_status(
    store: Store, deployment_id: int, *statuses: Status, timeout: float = 10.0
) -> Deployment:
    deadline = time.monotonic() + timeout
    while True:
        deployment = await store.get_deployment(deployment_id)
        if deployment.status in statuses:
            return deployment
        if time.monotonic() > deadline:
            raise AssertionError(
                f"deployment {deployment_id} is {deployment.status}, not {statuses} "
                f"after {timeout} s (error: {deployment.error})"
            )
        await asyncio.sleep(0.02)
