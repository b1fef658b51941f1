"""Entry point of the ingest service."""

from __future__ import annotations

import asyncio

from oddstore import logs, runtime
from services.ingest.bootstrap import run
from services.ingest.config import IngestSettings


def main() -> None:
    settings = IngestSettings()
    runtime.tune_gc()
    logs.configure(settings.log_level, settings.log_format, "ingest")
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
