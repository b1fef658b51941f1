"""Entry point of the retention service."""

from __future__ import annotations

import asyncio

from oddstore import logs, runtime
from services.retention.bootstrap import run
from services.retention.config import RetentionSettings


def main() -> None:
    settings = RetentionSettings()
    runtime.tune_gc()
    logs.configure(settings.log_level, settings.log_format, "retention")
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
