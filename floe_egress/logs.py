"""Logging setup; only the entry point (cli.py) calls `configure`.

structlog with contextvars merged first; JSON lines when the stream is not a TTY
(journald), a readable console otherwise. Every event passes through a redaction
processor so a secret that slips into an event is masked. Without a stream, each line
goes to `sys.stderr` as it is when the line is written: while the command line shows
progress bars, rich puts its own there, which prints the line above the bars.
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


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is at the time."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure(
    *, stream: TextIO | None = None, level: str = "INFO", json: bool | None = None
) -> None:
    out: Any = stream or _CurrentStderr()
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
    _route_stdlib_logging()
    # dlt reads these when it first builds a pipeline (after this runs): its hint
    # warnings are about details the sinks handle on purpose, and a service must not
    # try to send anonymous usage data.
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "DEBUG" if level == "DEBUG" else "ERROR")
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")


class _ToStructlog(logging.Handler):
    """Standard-library records (dlt, pyiceberg, apscheduler, warnings) as structlog
    events, so the output stays one format (JSON lines off a terminal) and passes the
    redaction."""

    def emit(self, record: logging.LogRecord) -> None:
        exc_info = record.exc_info or False
        try:
            _stdlib_log.log(
                record.levelno, record.getMessage(), logger=record.name, exc_info=exc_info
            )
        except Exception:
            self.handleError(record)


_stdlib_log = structlog.get_logger("floe_egress.stdlib")


def _route_stdlib_logging() -> None:
    handler = _ToStructlog()
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    # dlt's logger does not propagate; it adopts the handler it finds when it sets up.
    dlt_logger = logging.getLogger("dlt")
    for existing in list(dlt_logger.handlers):
        if isinstance(existing, _ToStructlog):
            dlt_logger.removeHandler(existing)
    dlt_logger.addHandler(handler)
    logging.captureWarnings(True)
