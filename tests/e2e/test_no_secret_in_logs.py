"""No secret in what operators read: the whole system on mutual TLS with ingest tokens and gateway users, used
rightly and wrongly, while every log record at DEBUG (as JSON, extra fields included) and the Prometheus
metrics are collected; no token, password, Authorization header or private key may appear in either."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import ssl
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import prometheus_client
import pytest
import trustme

from oddstore import tokens, users
from oddstore.convert import snapshot_to_pb
from oddstore.logs import json_formatter
from oddstore.tls import TlsFiles
from oddstore_cli.submit import SubmitOptions, Submitter
from services.gateway.bootstrap import build_server
from services.gateway.config import GatewaySettings
from services.ingest import bootstrap as ingest_bootstrap
from services.ingest.config import IngestSettings
from services.query import bootstrap as query_bootstrap
from services.query.config import QuerySettings
from services.retention import bootstrap as retention_bootstrap
from services.retention.config import RetentionSettings
from services.writer import bootstrap as writer_bootstrap
from services.writer.config import WriterSettings
from tests.factories import market, new_event_id, now, snapshot
from tests.polling import eventually

PASSWORD, FORGED_PASSWORD = "correct horse battery staple 7", "wrong horse battery staple 8"
FORGED_TOKEN = "odt_" + "x" * 43


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(json_formatter("test"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield out
    root.removeHandler(handler)
    root.setLevel(level)


def _secrets_in(text: str, secrets: dict[str, str]) -> list[str]:
    return [name for name, secret in secrets.items() if secret in text]


async def test_tokens_passwords_and_keys_appear_in_no_log_and_no_metric(
    migrated_dsn: str, tmp_path: Path, logged: io.StringIO
) -> None:
    ca = trustme.CA()
    # One certificate for every service, with each caller's name (oddstore.callers) for the others to serve it.
    issued = ca.issue_cert("127.0.0.1", "ingest", "query", "gateway")
    issued.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    issued.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    files = {
        "tls_cert_file": tmp_path / "cert.pem",
        "tls_key_file": tmp_path / "key.pem",
        "tls_ca_file": tmp_path / "ca.pem",
    }
    token = tokens.add(tmp_path / "tokens.json", "scraper", ["betpawa"])
    users.add(tmp_path / "users.json", "ada", users.Role.admin, PASSWORD)
    key_lines = issued.private_key_pem.bytes().decode().splitlines()[1:-1]
    secrets = {
        "token": token,
        "forged token": FORGED_TOKEN,
        "password": PASSWORD,
        "forged password": FORGED_PASSWORD,
        "authorization header": base64.b64encode(f"ada:{PASSWORD}".encode()).decode(),
        "forged authorization header": base64.b64encode(f"ada:{FORGED_PASSWORD}".encode()).decode(),
        **{f"private key line {n}": line for n, line in enumerate(key_lines)},
    }

    writer = await writer_bootstrap.start(WriterSettings(database_url=migrated_dsn, listen="127.0.0.1:0", **files))
    writers = f"127.0.0.1:{writer.server.port}"
    query = await query_bootstrap.start(
        QuerySettings(database_url=migrated_dsn, listen="127.0.0.1:0", writers=writers, **files)
    )
    retention = await retention_bootstrap.start(
        RetentionSettings(database_url=migrated_dsn, listen="127.0.0.1:0", tick_seconds=3600, **files)
    )
    ingest = await ingest_bootstrap.start(
        IngestSettings(listen="127.0.0.1:0", writers=writers, auth_tokens_file=tmp_path / "tokens.json", **files)
    )
    gateway = build_server(
        GatewaySettings(
            port=0,
            query_address=f"127.0.0.1:{query.server.port}",
            retention_address=f"127.0.0.1:{retention.server.port}",
            auth="basic",
            users_file=tmp_path / "users.json",
            **files,
        )
    )
    serving = asyncio.create_task(gateway.serve())
    try:
        await eventually(lambda: gateway.started, "the gateway serving")
        port = gateway.servers[0].sockets[0].getsockname()[1]
        client_files = TlsFiles(tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem")
        sent = snapshot_to_pb(snapshot(new_event_id(), now() - timedelta(minutes=1), [market()]))
        for used, accepted in ((token, 1), (FORGED_TOKEN, 0)):
            options = SubmitOptions(
                f"127.0.0.1:{ingest.server.port}", retry_seconds=0, token=used, tls_files=client_files
            )
            async with Submitter(options) as submitter:
                await submitter.submit([sent], ["line 1"])
                await submitter.drain()
            assert submitter.counts.accepted == accepted, submitter.failure

        context = ssl.create_default_context()
        ca.configure_trust(context)
        async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=context) as client:
            assert (await client.get("/api/events", auth=("ada", PASSWORD))).status_code == 200
            assert (await client.get("/api/events", auth=("ada", FORGED_PASSWORD))).status_code == 401
            changed = await client.put("/api/settings", json={"oddsRetentionDays": 30}, auth=("ada", PASSWORD))
            assert changed.status_code == 200, changed.text
            refused = await client.put("/api/settings", json={"oddsRetentionDays": 30}, auth=("ada", FORGED_PASSWORD))
            assert refused.status_code == 401
    finally:
        gateway.should_exit = True
        await serving
        await ingest.stop(1)
        await retention.stop(1)
        await query.stop(1)
        await writer.stop(1)

    logs = logged.getvalue()
    # What was logged is there: the check looks at the real records, not at an empty capture.
    assert "batch from scraper" in logs and "refused PUT /api/settings" in logs, logs[-3000:]
    assert _secrets_in(logs, secrets) == []
    metrics = prometheus_client.generate_latest().decode()
    assert 'client="scraper"' in metrics
    assert _secrets_in(metrics, secrets) == []
