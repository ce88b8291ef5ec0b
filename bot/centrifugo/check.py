"""Is the configured Centrifugo there? For /readyz and `click-deploy doctor`: its `info`
method answers with the API key, within a short timeout. A `bot.ops.checks` result like the
other checks."""

from __future__ import annotations

import asyncio

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
from bot.ops.checks import CheckResult, Level, failed, passed
from pipeline.settings import Settings

CHECK_TIMEOUT_SECONDS = 2.0


NAME = "centrifugo"
FIX = "check CENTRIFUGO_API_URL (its server API, ending in /api) and CENTRIFUGO_API_KEY"


async def check_centrifugo(
    settings: Settings, within: float = CHECK_TIMEOUT_SECONDS
) -> CheckResult:
    """Not configured, or whether it answered, and what."""
    if not configured(settings):
        return CheckResult(
            NAME,
            Level.UNCONFIGURED,
            "not configured",
            "set CENTRIFUGO_API_URL and CENTRIFUGO_API_KEY",
        )
    assert settings.centrifugo_api_url is not None
    key = secret(settings.centrifugo_api_key) or ""
    async with aiohttp.ClientSession() as session:
        client = AsyncClient(settings.centrifugo_api_url, key, timeout=within, session=session)
        try:
            result = await asyncio.wait_for(client.info(InfoRequest()), within + 0.5)
        except CentUnauthorizedError:
            return failed(NAME, "refused CENTRIFUGO_API_KEY (401)", FIX)
        except CentTransportError as error:
            return failed(
                NAME,
                f"answered HTTP {error.status_code} at {settings.centrifugo_api_url}/info "
                "(is CENTRIFUGO_API_URL its server API, ending in /api?)",
                FIX,
            )
        except (CentTimeoutError, TimeoutError):
            return failed(NAME, f"no answer within {within:g} s", FIX)
        except CentNetworkError as error:
            return failed(NAME, f"unreachable: {error.message}", FIX)
        except CentApiResponseError as error:
            return failed(NAME, f"error {error.code}: {error.message}", FIX)
        except CentError as error:
            return failed(NAME, f"unexpected answer: {error!r}", FIX)
    nodes = len(result.nodes)
    detail = f"ok ({nodes} node{'s' if nodes != 1 else ''})"
    if not tokens_enabled(settings):
        detail += "; no subscription tokens (CENTRIFUGO_TOKEN_HMAC_SECRET is not set)"
    return passed(NAME, detail)
