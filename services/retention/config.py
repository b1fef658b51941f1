"""Retention settings (environment, read once). What the UI edits lives in the settings table instead."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from oddstore.config import AllowedClients, CommonSettings, DatabaseSettings


class RetentionSettings(CommonSettings, DatabaseSettings):
    model_config = SettingsConfigDict(env_prefix="RETENTION_", frozen=True, extra="ignore", populate_by_name=True)

    listen: str = "127.0.0.1:50054"
    # Under mutual TLS (oddstore.callers): the gateway only, where admins are checked and changes audited.
    allowed_clients: AllowedClients = frozenset({"gateway"})
    metrics_port: int = Field(0, ge=0, le=65535)
    horizon_days: int = Field(7, ge=1, le=90, description="daily history partitions kept ready after today")
    tick_seconds: float = Field(60.0, gt=0, description="how often partitions, schedule and storage are checked")
    lock_timeout: float = Field(
        2.0, gt=0, le=60, description="seconds a partition detach may wait for a lock before it backs off"
    )
    lock_retries: int = Field(10, ge=1, le=1000)
    growth_warning_percent: float = Field(20.0, gt=0)
    size_critical_bytes: int = Field(50 * 1024**3, gt=0)
    columnar_after_days: int = Field(
        1,
        ge=0,
        le=366,
        description="history days this many days before today (UTC) and older move to columnar storage; 0: never",
    )
    columnar_grace_minutes: int = Field(
        60, ge=0, le=1440, description="minutes after midnight before a day that just closed is converted"
    )
    delete_batch: int = Field(1000, ge=1, le=100_000)
    pool_size: int = Field(4, ge=2, le=64)
    database_wait_seconds: float = Field(60.0, gt=0)
