"""Query service settings."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from oddstore.config import DEFAULT_DATABASE_URL, CommonSettings


class QuerySettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="QUERY_", frozen=True, extra="ignore", populate_by_name=True)

    database_url: str = Field(DEFAULT_DATABASE_URL, alias="DATABASE_URL")
    # Accepted so deployments can set it, but not used: see bootstrap.start for why.
    redis_url: str | None = Field(None, alias="REDIS_URL")
    listen: str = "127.0.0.1:50053"
    metrics_port: int = Field(0, ge=0, le=65535)
    cache_horizon_hours: float = Field(2.0, gt=0, description="events stay cached until this long after kickoff")
    sweep_seconds: float = Field(60.0, gt=0)
    pool_size: int = Field(8, ge=1, le=64)
    database_wait_seconds: float = Field(60.0, gt=0)
