"""Settings read once from the environment into typed objects; bad values fail at start-up."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/oddstore"


class CommonSettings(BaseSettings):
    """What every service reads; each service subclasses it with its own prefix."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", alias="LOG_LEVEL")
    log_format: Literal["text", "json"] = Field("text", alias="LOG_FORMAT")
    grace_seconds: float = Field(10.0, gt=0, alias="SHUTDOWN_GRACE_SECONDS")
