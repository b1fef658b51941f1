"""Entry point of the gateway service."""

from __future__ import annotations

import asyncio

from oddstore import logs, runtime
from services.gateway.bootstrap import run
from services.gateway.config import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    runtime.tune_gc()
    logs.configure(settings.log_level, settings.log_format, "gateway")
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
