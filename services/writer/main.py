"""Entry point of the writer service."""

from __future__ import annotations

import asyncio

from oddstore import logs, runtime
from services.writer.bootstrap import run
from services.writer.config import WriterSettings


def main() -> None:
    settings = WriterSettings()
    runtime.tune_gc()
    logs.configure(settings.log_level, settings.log_format, "writer")
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
