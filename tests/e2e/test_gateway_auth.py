"""Gateway access with HTTP Basic against the gateway served by uvicorn on loopback, over fake query and retention
services (real gRPC servers): each refused and allowed case, HTTP and the WebSocket handshake."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from pydantic import ValidationError
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from oddstore import users
from oddstore_cli.main import main as cli
from services.gateway.app import create_app
from services.gateway.bootstrap import build_server
from services.gateway.config import GatewaySettings
from services.gateway.query_client import QueryClient
from services.gateway.retention_client import RetentionClient
from services.gateway.ws_protocol import UVICORN_WEBSOCKETS
from tests.gateway_fakes import (
    FakeRetentionBackend,
    start_fake_backend,
    start_fake_retention_backend,
)
from tests.polling import TIMEOUT_SECONDS, eventually

VIEWER, ADMIN = ("vera", "viewer-secret-1"), ("ada", "admin-secret-2")


@dataclass
class Gateway:
    url: str
    retention: FakeRetentionBackend

    def received(self, method: str) -> int:
        return sum(name == method for name, _ in self.retention.fake.received)


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gateway") / "users.json"
    users.add(path, VIEWER[0], users.Role.viewer, VIEWER[1])
    users.add(path, ADMIN[0], users.Role.admin, ADMIN[1])
    return path


@pytest.fixture
async def gateway(users_file: Path) -> AsyncIterator[Gateway]:
    query, retention = await start_fake_backend(), await start_fake_retention_backend()
    app = create_app(
        QueryClient(query.address, TIMEOUT_SECONDS),
        RetentionClient(retention.address, TIMEOUT_SECONDS),
        users=users.load(users_file),
    )
    # As bootstrap serves it, so the WebSocket refusals go through its protocol too.
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_config=None,
        lifespan="on",
        **UVICORN_WEBSOCKETS,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, "the gateway serving")
    port = server.servers[0].sockets[0].getsockname()[1]
    yield Gateway(f"127.0.0.1:{port}", retention)
    server.should_exit = True
    await serving
    await query.server.stop(0)
    await retention.server.stop(0)


def _basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


async def test_without_credentials_every_page_asks_for_basic_and_health_stays_open(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=f"http://{gateway.url}") as client:
        for path in ("/api/events", "/api/settings", "/docs", "/openapi.json"):
            answer = await client.get(path)
            assert answer.status_code == 401, path
            assert answer.headers["www-authenticate"] == 'Basic realm="oddstore", charset="UTF-8"'
        assert (await client.get("/api/health")).status_code == 200


async def test_a_browser_answering_the_challenge_is_let_in_on_its_retry(gateway: Gateway) -> None:
    # As a browser does: the first request carries nothing, the challenge names Basic, the retry has the header.
    async with httpx.AsyncClient(base_url=f"http://{gateway.url}") as client:
        challenge = await client.get("/api/events")
        assert challenge.status_code == 401 and challenge.headers["www-authenticate"].startswith("Basic ")
        retry = await client.get("/api/events", headers={"Authorization": _basic(*VIEWER)})
        assert retry.status_code == 200 and "events" in retry.json()


@pytest.mark.parametrize(
    "header",
    [
        _basic(VIEWER[0], "wrong"),
        _basic("mallory", VIEWER[1]),
        _basic(ADMIN[0], VIEWER[1]),
        "Basic !!!not-base64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Bearer " + VIEWER[1],
    ],
)
async def test_a_forged_or_wrong_basic_header_is_refused(gateway: Gateway, header: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://{gateway.url}") as client:
        answer = await client.get("/api/events", headers={"Authorization": header})
    assert answer.status_code == 401 and "www-authenticate" in answer.headers


async def test_a_viewer_reads_but_may_not_clean_up_change_settings_or_resolve_alerts(gateway: Gateway) -> None:
    auth = {"Authorization": _basic(*VIEWER)}
    async with httpx.AsyncClient(base_url=f"http://{gateway.url}", headers=auth) as client:
        assert (await client.get("/api/settings")).status_code == 200
        assert (await client.get("/api/cleanup/preview")).status_code == 200
        for method, path, body in (
            ("POST", "/api/cleanup/execute", {"oddsRetentionDays": 1}),
            ("PUT", "/api/settings", {"oddsRetentionDays": 1}),
            ("POST", "/api/storage/alerts/3/resolve", None),
        ):
            answer = await client.request(method, path, json=body)
            assert answer.status_code == 403, path
            assert answer.json() == {"detail": "the admin role is required"}
    for method in ("RunCleanup", "UpdateSettings", "ResolveStorageAlert"):
        assert gateway.received(method) == 0, f"{method} reached the retention service"


async def test_an_admin_may_clean_up_change_settings_and_resolve_alerts(gateway: Gateway) -> None:
    auth = {"Authorization": _basic(*ADMIN)}
    async with httpx.AsyncClient(base_url=f"http://{gateway.url}", headers=auth) as client:
        assert (await client.post("/api/cleanup/execute", json={"oddsRetentionDays": 7})).status_code == 200
        assert (await client.put("/api/settings", json={"oddsRetentionDays": 7})).status_code == 200
        assert (await client.post("/api/storage/alerts/3/resolve")).status_code == 200
    for method in ("RunCleanup", "UpdateSettings", "ResolveStorageAlert"):
        assert gateway.received(method) == 1, method


async def test_the_websocket_handshake_needs_credentials_too(gateway: Gateway) -> None:
    url = f"ws://{gateway.url}/api/ws"
    for headers in ({}, {"Authorization": _basic(VIEWER[0], "wrong")}):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, additional_headers=headers, open_timeout=TIMEOUT_SECONDS):
                pass
        assert refused.value.response.status_code == 403
    async with connect(url, additional_headers={"Authorization": _basic(*VIEWER)}) as socket:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            assert '"connection_ack"' in str(await socket.recv())


def test_the_gateway_refuses_to_serve_unauthenticated_beyond_loopback_unless_forced(users_file: Path) -> None:
    with pytest.raises(ValidationError, match=r"refusing to serve without authentication on 0\.0\.0\.0"):
        GatewaySettings(host="0.0.0.0")
    assert GatewaySettings(host="0.0.0.0", allow_unauthenticated=True).auth == "none"
    assert GatewaySettings(host="127.0.0.1").auth == "none"
    with pytest.raises(ValidationError, match="GATEWAY_USERS_FILE"):
        GatewaySettings(host="0.0.0.0", auth="basic")
    assert GatewaySettings(host="0.0.0.0", auth="basic", users_file=users_file).users_file == users_file


def test_user_add_stores_only_a_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    path = tmp_path / "users.json"
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-pass\n"))
    assert cli(["user", "add", "olga", "--role", "admin", "--file", str(path), "--password-stdin"]) == 0
    assert "s3cret-pass" not in path.read_text()
    user = users.load(path)["olga"]
    assert user.role is users.Role.admin and user.verify("s3cret-pass") and not user.verify("s3cret-pas")


async def test_every_change_attempted_is_audited_with_who_what_and_the_result_and_only_admins_read_it(
    gateway: Gateway,
) -> None:
    async with httpx.AsyncClient(base_url=f"http://{gateway.url}") as client:
        await client.post("/api/cleanup/execute", headers={"Authorization": _basic(*VIEWER)})
        await client.put("/api/settings", json={"oddsRetentionDays": 9}, headers={"Authorization": _basic(*ADMIN)})
        await client.post("/api/storage/alerts/3/resolve")
        await client.get("/api/settings", headers={"Authorization": _basic(*ADMIN)})  # a read: not audited
        assert (await client.get("/api/audit", headers={"Authorization": _basic(*VIEWER)})).status_code == 403
        listed = await client.get("/api/audit", headers={"Authorization": _basic(*ADMIN)})
    assert listed.status_code == 200
    entries = [(e["actor"], e["action"], e["status"]) for e in listed.json()["entries"]]
    assert entries == [
        ("anonymous", "POST /api/storage/alerts/3/resolve", 401),
        ("ada", "PUT /api/settings", 200),
        ("vera", "POST /api/cleanup/execute", 403),
    ]
    assert all(e["at"].endswith("Z") and e["client"] == "127.0.0.1" for e in listed.json()["entries"])


async def test_the_users_file_is_read_again_when_it_changes_and_a_changed_password_is_refused_at_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "users.json"
    users.add(path, VIEWER[0], users.Role.viewer, VIEWER[1])
    query, retention = await start_fake_backend(), await start_fake_retention_backend()
    server = build_server(
        GatewaySettings(
            port=0, query_address=query.address, retention_address=retention.address, auth="basic", users_file=path
        )
    )
    serving = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, "the gateway serving")
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def status(name: str, password: str) -> int:
                answer = await client.get("/api/events", headers={"Authorization": _basic(name, password)})
                return answer.status_code

            assert await status(*VIEWER) == 200  # and remembered, so argon2 is not run again for it
            assert await status(*ADMIN) == 401
            users.add(path, ADMIN[0], users.Role.admin, ADMIN[1])  # while the gateway runs
            assert await status(*ADMIN) == 200
            users.add(path, VIEWER[0], users.Role.viewer, "a-new-password")
            assert await status(*VIEWER) == 401
            assert await status(VIEWER[0], "a-new-password") == 200
    finally:
        server.should_exit = True
        await serving
        await query.server.stop(0)
        await retention.server.stop(0)
