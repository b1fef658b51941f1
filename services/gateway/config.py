"""Gateway settings."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from oddstore.config import CommonSettings


class GatewaySettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", frozen=True, extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"
    # 8000 because the pawaRisk UI's dev proxy (its vite.config.ts, in the UI's own repository) sends /api there.
    port: int = Field(8000, ge=0, le=65535)
    query_address: str = Field(
        "127.0.0.1:50053",
        description="the query service; several replicas comma-separated (reads spread over them and fail over, "
        "the live feed follows one and moves on when it fails)",
    )
    retention_address: str = "127.0.0.1:50054"
    request_deadline_seconds: float = Field(
        5.0, gt=0, description="deadline of every call to the query service; past it the request answers 503"
    )
    # The retention service's quick reads (settings, runs, storage) use request_deadline_seconds; these two
    # cover the calls that scan whole tables.
    stats_deadline_seconds: float = Field(
        60.0, gt=0, description="deadline of the data statistics and the cleanup preview, which count table rows"
    )
    cleanup_deadline_seconds: float = Field(
        3600.0,
        gt=0,
        description="deadline of a manual cleanup run: POST /api/cleanup/execute answers when the run has finished",
    )
    live_window_seconds: float = Field(
        1.0,
        gt=0,
        description="WebSocket odds updates: an event's first change goes out at once, later ones within this "
        "window of its last message are merged into one message at the window's end",
    )
    ws_idle_seconds: float = Field(
        90.0,
        gt=0,
        description="a WebSocket with no frame from the browser for this long is closed (the UI pings every 30 s)",
    )
    ws_max_frames: int = Field(10_000, ge=1, description="unsent messages per WebSocket; beyond, the socket is closed")
    ws_max_buffer_bytes: int = Field(
        4 * 1024 * 1024, ge=1, description="bytes of updates unsent to one WebSocket; beyond, the socket is closed"
    )
    auth: Literal["none", "basic"] = Field(
        "none", description="none: anyone who reaches the gateway may do anything (loopback only); basic: users file"
    )
    users_file: Path | None = Field(None, description="GATEWAY_AUTH=basic: names, roles and argon2 password hashes")
    max_body_bytes: int = Field(1024 * 1024, ge=1, description="larger request bodies are refused with 413")
    rate_limit_per_second: float = Field(
        50.0, ge=0, description="requests per second per client address beyond a burst, then 429 (0: no limit)"
    )
    rate_limit_burst: int = Field(200, ge=1, description="requests a client may make at once (the UI's page load)")
    allow_unauthenticated: bool = Field(
        False, description="serve GATEWAY_AUTH=none on a non-loopback address anyway (behind a proxy that checks)"
    )

    @model_validator(mode="after")
    def _access(self) -> Self:
        if not any(a.strip() for a in self.query_address.split(",")):
            raise ValueError("GATEWAY_QUERY_ADDRESS names no query service: host:port, or several comma-separated")
        if self.auth == "basic" and self.users_file is None:
            raise ValueError("GATEWAY_AUTH=basic needs GATEWAY_USERS_FILE (`oddstore user add`)")
        if self.auth == "none" and not is_loopback(self.host) and not self.allow_unauthenticated:
            raise ValueError(
                f"refusing to serve without authentication on {self.host}: set GATEWAY_AUTH=basic and"
                " GATEWAY_USERS_FILE, or GATEWAY_ALLOW_UNAUTHENTICATED=true if something in front checks"
            )
        return self


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
