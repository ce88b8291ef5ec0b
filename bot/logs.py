"""structlog set-up: JSON in production, readable on a terminal."""

from __future__ import annotations

import logging
import sys

import structlog

from bot.ops.redact import RedactSecrets
from pipeline.settings import Settings

# Loggers cache their configuration on first use (cheaper lines). The test suite turns this
# off: structlog.testing.capture_logs cannot see a logger that cached it before.
CACHE_LOGGERS = True


def configure_logging(settings: Settings) -> None:
    level = getattr(logging, settings.log_level.upper())
    as_json = settings.log_format == "json" or (
        settings.log_format == "auto" and not sys.stderr.isatty()
    )
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        # Plain tracebacks: rich ones print local variables, and locals hold secrets.
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            RedactSecrets.from_settings(settings),  # last before rendering: sees everything
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=CACHE_LOGGERS,
    )
