"""Ingest settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from oddstore.config import AllowedClients, CommonSettings


class IngestSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="INGEST_", frozen=True, extra="ignore", populate_by_name=True)

    listen: str = "127.0.0.1:50051"
    # Under mutual TLS (oddstore.callers): any certificate of the CA; scrapers are told apart by their tokens.
    allowed_clients: AllowedClients = None
    metrics_port: int = Field(0, ge=0, le=65535)
    # Comma-separated, ordered: position decides which events a writer owns.
    writers: str = "127.0.0.1:50052"
    writer_timeout_seconds: float = Field(30.0, gt=0)
    writer_retry_seconds: float = Field(30.0, ge=0, description="how long to keep retrying an unavailable writer")
    max_batch_snapshots: int = Field(5000, ge=1)
    max_markets: int = Field(2000, ge=1)
    max_in_flight_observations: int = Field(2_000_000, ge=1)
    max_message_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    retention_days: int = Field(14, ge=1, le=365)
    # Unset: only loopback clients may write (`make run`); set: every call needs a token from this file.
    auth_tokens_file: Path | None = None

    @field_validator("writers")
    @classmethod
    def _writers(cls, value: str) -> str:
        if not [w for w in value.split(",") if w.strip()]:
            raise ValueError("INGEST_WRITERS must list at least one writer address")
        return value

    @property
    def writer_addresses(self) -> list[str]:
        return [w.strip() for w in self.writers.split(",") if w.strip()]
