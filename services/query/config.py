"""Query service settings."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from oddstore.config import AllowedClients, CommonSettings, DatabaseSettings


class QuerySettings(CommonSettings, DatabaseSettings):
    model_config = SettingsConfigDict(env_prefix="QUERY_", frozen=True, extra="ignore", populate_by_name=True)

    # Unset: no Redis at all. Set: merged history is shared through it (history_cache.py); reads never need it.
    redis_url: str | None = Field(None, alias="REDIS_URL")
    redis_ttl_seconds: int = Field(3600, ge=1)
    # Short, so that a Redis that hangs costs a read little more than one that refuses.
    redis_connect_timeout_seconds: float = Field(0.05, gt=0)
    redis_timeout_seconds: float = Field(0.1, gt=0)
    redis_backoff_seconds: float = Field(1.0, ge=0, description="Redis is not tried for this long after an error")
    listen: str = "127.0.0.1:50053"
    # Under mutual TLS (oddstore.callers): the gateway reads; no other service or command calls the query service.
    allowed_clients: AllowedClients = frozenset({"gateway"})
    metrics_port: int = Field(0, ge=0, le=65535)
    cache_horizon_hours: float = Field(2.0, gt=0, description="events stay cached until this long after kickoff")
    # Ordered, comma-separated: the writers ingest routes to (INGEST_WRITERS); each one's change feed is followed.
    writers: str = "127.0.0.1:50052"
    # The safety check's interval, and so the bound on how long an acknowledged change can be missing from
    # the cache when its announcement was lost (a writer that died between commit and publish).
    resync_seconds: float = Field(30.0, gt=0)
    # A writer feed's connection is pinged after this long without traffic and dropped (then resumed) when the
    # ping is not answered within as long: how long a hung connection can go unnoticed is twice this.
    feed_keepalive_seconds: float = Field(10.0, gt=0)
    # Changes (markets + pairs, ~250 B each with the protobuf kept once sent) kept for client streams to resume
    # from and to catch up in; a stream further behind ends with RESOURCE_EXHAUSTED.
    stream_buffer: int = Field(100_000, ge=1)
    pool_size: int = Field(8, ge=1, le=64)
    database_wait_seconds: float = Field(60.0, gt=0)

    @field_validator("writers")
    @classmethod
    def _writers(cls, value: str) -> str:
        if not [w for w in value.split(",") if w.strip()]:
            raise ValueError("QUERY_WRITERS must list at least one writer address")
        return value

    @property
    def writer_addresses(self) -> list[str]:
        return [w.strip() for w in self.writers.split(",") if w.strip()]

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"REDIS_URL: expected redis://, rediss:// or unix://, got {value!r}")
        return value
