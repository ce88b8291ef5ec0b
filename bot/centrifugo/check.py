"""Is the configured Centrifugo there? For /readyz and `click-deploy doctor`: its `info`
method answers with the API key, within a short timeout."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from cent import AsyncClient, InfoRequest
from cent.exceptions import (
    CentApiResponseError,
    CentError,
    CentNetworkError,
    CentTimeoutError,
    CentTransportError,
    CentUnauthorizedError,
)

from bot.centrifugo.publisher import configured
from bot.centrifugo.token import tokens_enabled
from bot.configured import secret
from pipeline.settings import Settings

CHECK_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class CentrifugoCheck:
    name: str
    ok: bool
    detail: str


async def check_centrifugo(
    settings: Settings, within: float = CHECK_TIMEOUT_SECONDS
) -> CentrifugoCheck | None:
    """None when Centrifugo is not configured; else whether it answered, and what."""
    if not configured(settings):
        return None
    assert settings.centrifugo_api_url is not None
    key = secret(settings.centrifugo_api_key) or ""
    async with aiohttp.ClientSession() as session:
        client = AsyncClient(settings.centrifugo_api_url, key, timeout=within, session=session)
        try:
            result = await asyncio.wait_for(client.info(InfoRequest()), within + 0.5)
        except CentUnauthorizedError:
            return CentrifugoCheck("centrifugo", False, "refused CENTRIFUGO_API_KEY (401)")
        except CentTransportError as error:
            return CentrifugoCheck(
                "centrifugo",
                False,
                f"answered HTTP {error.status_code} at {settings.centrifugo_api_url}/info "
                "(is CENTRIFUGO_API_URL its server API, ending in /api?)",
            )
        except (CentTimeoutError, TimeoutError):
            return CentrifugoCheck("centrifugo", False, f"no answer within {within:g} s")
        except CentNetworkError as error:
            return CentrifugoCheck("centrifugo", False, f"unreachable: {error.message}")
        except CentApiResponseError as error:
            return CentrifugoCheck("centrifugo", False, f"error {error.code}: {error.message}")
        except CentError as error:
            return CentrifugoCheck("centrifugo", False, f"unexpected answer: {error!r}")
    nodes = len(result.nodes)
    detail = f"ok ({nodes} node{'s' if nodes != 1 else ''})"
    if not tokens_enabled(settings):
        detail += "; no subscription tokens (CENTRIFUGO_TOKEN_HMAC_SECRET is not set)"
    return CentrifugoCheck("centrifugo", True, detail)
