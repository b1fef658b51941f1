"""Gateway settings."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from oddstore.config import CommonSettings


class GatewaySettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", frozen=True, extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"
    # 8000 because the UI's dev proxy (web/vite.config.ts) sends /api there.
    port: int = Field(8000, ge=0, le=65535)
    query_address: str = "127.0.0.1:50053"
    request_deadline_seconds: float = Field(
        5.0, gt=0, description="deadline of every call to the query service; past it the request answers 503"
    )
