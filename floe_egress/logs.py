"""Logging setup; only the entry point (cli.py) calls `configure`.

structlog with contextvars merged first; JSON lines when the stream is not a TTY
(journald), a readable console otherwise. Every event passes through a redaction
processor so a secret that slips into an event is masked.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from floe_egress.config.secrets import redact


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return {k: redact(v) if isinstance(v, str | dict | list) else v for k, v in event.items()}


def configure(
    *, stream: TextIO | None = None, level: str = "INFO", json: bool | None = None
) -> None:
    out = stream or sys.stderr
    as_json = (not out.isatty()) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    # Libraries log through the standard library. dlt warns about schema-hint details
    # the sinks handle on purpose: errors only, unless debugging. It reads these settings
    # when it first builds a pipeline, so they are set before any sink is built.
    logging.basicConfig(
        level=logging.WARNING, stream=out, format="%(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "DEBUG" if level == "DEBUG" else "ERROR")
    # dlt would otherwise try to send anonymous usage data from a service.
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
