"""Logging set-up: readable lines in a terminal, one JSON object per line in containers."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter


def json_formatter(service: str = "") -> logging.Formatter:
    """One JSON object per record, `extra=` fields included (python-json-logger: a hand-written formatter
    dropped them). Keys: ts, level, logger, message, exc when there is one, service when named."""
    return JsonFormatter(
        ["levelname", "name", "message"],
        rename_fields={"levelname": "level", "name": "logger", "exc_info": "exc"},
        timestamp="ts",
        static_fields={"service": service} if service else None,
    )


def configure(level: str = "INFO", fmt: str = "text", service: str = "") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(json_formatter(service))
    else:
        prefix = f"{service} " if service else ""
        handler.setFormatter(logging.Formatter(f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
