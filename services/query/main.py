"""Entry point of the query service."""

from __future__ import annotations

import asyncio

from oddstore import logs, runtime
from services.query.bootstrap import run
from services.query.config import QuerySettings


def main() -> None:
    settings = QuerySettings()
    runtime.tune_gc()
    logs.configure(settings.log_level, settings.log_format, "query")
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
