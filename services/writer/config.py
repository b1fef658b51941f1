"""Writer settings."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from oddstore.config import AllowedClients, CommonSettings, DatabaseSettings


class WriterSettings(CommonSettings, DatabaseSettings):
    model_config = SettingsConfigDict(env_prefix="WRITER_", frozen=True, extra="ignore", populate_by_name=True)

    listen: str = "127.0.0.1:50052"
    # Under mutual TLS (oddstore.callers): ingest writes, the query services follow the change feed.
    allowed_clients: AllowedClients = frozenset({"ingest", "query"})
    metrics_port: int = Field(0, ge=0, le=65535)
    home_bookmaker: str = "betpawa"
    warm_days: float = Field(3.0, gt=0, description="pairs written to within this many days are loaded at start")
    # Changes (markets + pairs) the change feed keeps for subscribers to resume from (~200 B each).
    feed_buffer: int = Field(100_000, ge=1)
    pool_size: int = Field(4, ge=1, le=64)
    database_wait_seconds: float = Field(60.0, gt=0)
