"""TLS and mutual TLS with certificates from trustme: real gRPC servers (oddstore.grpc_server) refusing what they
must refuse, and the whole system - CLI, ingest, writer, query, retention and the gateway over HTTPS - on mTLS."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
import httpx
import pytest
import trustme
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import ValidationError

from oddstore import tls
from oddstore.convert import snapshot_to_pb
from oddstore.grpc_server import Server, create_server
from oddstore.healthcheck import grpc_serving, http_healthy
from oddstore_cli.jsonl import snapshot_to_json
from oddstore_cli.main import main as cli
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
from tests.polling import TIMEOUT_SECONDS, eventually


@dataclass(frozen=True)
class Pki:
    ca: trustme.CA
    server: tls.TlsFiles  # the servers' certificate (127.0.0.1, localhost) with the CA: mutual TLS when served
    client: tls.TlsFiles  # a client certificate from the same CA, trusting it
    ca_only: tls.TlsFiles  # trusts the CA, presents no certificate
    stranger: tls.TlsFiles  # a certificate from another CA, trusting that other CA only


def _files(directory: Path, name: str, ca: trustme.CA, *identities: str) -> tls.TlsFiles:
    cert = ca.issue_cert(*identities)
    cert.cert_chain_pems[0].write_to_path(str(directory / f"{name}.pem"))
    cert.private_key_pem.write_to_path(str(directory / f"{name}-key.pem"))
    ca.cert_pem.write_to_path(str(directory / f"{name}-ca.pem"))
    return tls.TlsFiles(directory / f"{name}.pem", directory / f"{name}-key.pem", directory / f"{name}-ca.pem")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    server = _files(directory, "server", ca, "127.0.0.1", "localhost")
    client = _files(directory, "client", ca, "client.oddstore.test")
    return Pki(ca, server, client, tls.TlsFiles(ca=server.ca), _files(directory, "stranger", other, "127.0.0.1"))


async def _serve(files: tls.TlsFiles) -> Server:
    server = create_server("127.0.0.1:0", lambda s: None, [], tls_files=files)
    await server.start()
    await server.set_serving(True)
    return server


async def _check(port: int, files: tls.TlsFiles, server_name: str | None = None) -> grpc.StatusCode:
    """The status of a health check over a channel with `files`: OK, or the code the call failed with.
    `server_name`: the name the server's certificate must carry instead of 127.0.0.1."""
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else None
    async with tls.channel(f"127.0.0.1:{port}", files, options) as channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


@pytest.fixture
async def tls_server(pki: Pki) -> AsyncIterator[Server]:
    server = await _serve(tls.TlsFiles(pki.server.cert, pki.server.key))
    yield server
    await server.stop(0)


@pytest.fixture
async def mtls_server(pki: Pki) -> AsyncIterator[Server]:
    server = await _serve(pki.server)
    yield server
    await server.stop(0)


async def test_a_client_trusting_the_ca_is_served_over_tls(tls_server: Server, pki: Pki) -> None:
    assert await _check(tls_server.port, pki.ca_only) == grpc.StatusCode.OK


async def test_a_plaintext_client_is_refused_by_a_tls_server(tls_server: Server) -> None:
    assert await _check(tls_server.port, tls.PLAINTEXT) == grpc.StatusCode.UNAVAILABLE


async def test_a_client_trusting_another_ca_refuses_the_server(tls_server: Server, pki: Pki) -> None:
    assert await _check(tls_server.port, tls.TlsFiles(ca=pki.stranger.ca)) == grpc.StatusCode.UNAVAILABLE


async def test_under_mutual_tls_a_client_with_a_certificate_of_the_ca_is_served(mtls_server: Server, pki: Pki) -> None:
    assert await _check(mtls_server.port, pki.client) == grpc.StatusCode.OK


async def test_under_mutual_tls_a_client_without_a_certificate_is_refused(mtls_server: Server, pki: Pki) -> None:
    assert await _check(mtls_server.port, pki.ca_only) == grpc.StatusCode.UNAVAILABLE


async def test_under_mutual_tls_a_client_certificate_from_another_ca_is_refused(mtls_server: Server, pki: Pki) -> None:
    # It trusts our CA, so only its own certificate can be what the server refuses.
    stranger = tls.TlsFiles(pki.stranger.cert, pki.stranger.key, pki.server.ca)
    assert await _check(mtls_server.port, stranger) == grpc.StatusCode.UNAVAILABLE


async def test_under_mutual_tls_a_plaintext_client_is_refused(mtls_server: Server) -> None:
    assert await _check(mtls_server.port, tls.PLAINTEXT) == grpc.StatusCode.UNAVAILABLE


def test_settings_refuse_a_certificate_without_its_key_and_a_ca_without_a_certificate(pki: Pki) -> None:
    with pytest.raises(ValidationError, match="TLS_CERT_FILE and TLS_KEY_FILE go together"):
        WriterSettings(tls_cert_file=pki.server.cert)
    with pytest.raises(ValidationError, match="TLS_CA_FILE needs TLS_CERT_FILE"):
        WriterSettings(tls_ca_file=pki.server.ca)
    with pytest.raises(ValidationError, match="tls_key_file"):
        WriterSettings(tls_cert_file=pki.server.cert, tls_key_file=pki.server.cert.with_name("missing.pem"))


async def test_the_health_probe_presents_the_services_certificate_and_reports_serving(
    mtls_server: Server, pki: Pki
) -> None:
    address = f"127.0.0.1:{mtls_server.port}"
    assert await grpc_serving(address, pki.server)
    assert not await grpc_serving(address, tls.PLAINTEXT)
    await mtls_server.set_serving(False)
    assert not await grpc_serving(address, pki.server)


def _certs(directory: Path, *names: str) -> None:
    assert cli(["certs", "--dir", str(directory / "certs"), "--ca-dir", str(directory / "ca"), *names]) == 0


def _service(directory: Path, name: str) -> tls.TlsFiles:
    certs = directory / "certs"
    return tls.TlsFiles(certs / f"{name}.pem", certs / f"{name}-key.pem", certs / "ca.pem")


async def test_oddstore_certs_makes_a_ca_and_service_certificates_that_work_under_mutual_tls(tmp_path: Path) -> None:
    _certs(tmp_path, "writer", "ingest")
    server = await _serve(_service(tmp_path, "writer"))
    try:
        ingest = _service(tmp_path, "ingest")
        # As in the compose stack: ingest reaches the writer by its service name, and verifies that name.
        assert await _check(server.port, ingest, server_name="writer") == grpc.StatusCode.OK
        assert await _check(server.port, ingest, server_name="query") == grpc.StatusCode.UNAVAILABLE
        # The health probe inside the container: loopback, with the service's own certificate.
        assert await _check(server.port, _service(tmp_path, "writer")) == grpc.StatusCode.OK
        assert await _check(server.port, tls.TlsFiles(ca=ingest.ca)) == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(0)
    cert = x509.load_pem_x509_certificate((tmp_path / "certs" / "writer.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["writer", "localhost"]
    assert not list((tmp_path / "certs").glob("ca-key*")), "the CA's key stays out of the services' directory"


def test_oddstore_certs_again_keeps_what_exists_and_makes_only_what_is_missing(tmp_path: Path) -> None:
    _certs(tmp_path, "writer")
    before = {p.name: p.read_bytes() for p in [*(tmp_path / "certs").iterdir(), *(tmp_path / "ca").iterdir()]}
    _certs(tmp_path, "writer", "query")
    after = {p.name: p.read_bytes() for p in [*(tmp_path / "certs").iterdir(), *(tmp_path / "ca").iterdir()]}
    assert {name: after[name] for name in before} == before
    assert set(after) - set(before) == {"query.pem", "query-key.pem"}
    assert (tmp_path / "certs" / "query-key.pem").stat().st_mode & 0o077 == 0


def _mtls(pki: Pki, directory: Path, name: str) -> dict[str, Path | None]:
    """A service's own certificate, named as its callers are expected (oddstore.callers), for loopback."""
    files = _files(directory, name, pki.ca, name, "127.0.0.1", "localhost")
    return {"tls_cert_file": files.cert, "tls_key_file": files.key, "tls_ca_file": files.ca}


async def test_the_whole_system_runs_on_mutual_tls_with_the_gateway_on_https(
    migrated_dsn: str, pki: Pki, tmp_path: Path
) -> None:
    """CLI → ingest → writer → (change feed) → query → gateway, and gateway → retention: every hop mutual TLS, each
    service with its own certificate and the default allowed clients."""
    writer = await writer_bootstrap.start(
        WriterSettings(database_url=migrated_dsn, listen="127.0.0.1:0", **_mtls(pki, tmp_path, "writer"))
    )
    writers = f"127.0.0.1:{writer.server.port}"
    query = await query_bootstrap.start(
        QuerySettings(database_url=migrated_dsn, listen="127.0.0.1:0", writers=writers, **_mtls(pki, tmp_path, "query"))
    )
    retention = await retention_bootstrap.start(
        RetentionSettings(
            database_url=migrated_dsn,
            listen="127.0.0.1:0",
            tick_seconds=3600,
            database_wait_seconds=5,
            **_mtls(pki, tmp_path, "retention"),
        )
    )
    ingest = await ingest_bootstrap.start(
        IngestSettings(listen="127.0.0.1:0", writers=writers, **_mtls(pki, tmp_path, "ingest"))
    )
    gateway = build_server(
        GatewaySettings(
            port=0,
            query_address=f"127.0.0.1:{query.server.port}",
            retention_address=f"127.0.0.1:{retention.server.port}",
            **_mtls(pki, tmp_path, "gateway"),
        )
    )
    serving = asyncio.create_task(gateway.serve())
    try:
        await eventually(lambda: gateway.started, "the gateway serving")
        port = gateway.servers[0].sockets[0].getsockname()[1]
        await eventually(lambda: all(w.connected.is_set() for w in query.writers), "the query following the writer")

        event_id = new_event_id()
        sent = snapshot(event_id, now() - timedelta(minutes=1), [market()])
        feed = tmp_path / "feed.jsonl"
        feed.write_text(json.dumps(snapshot_to_json(snapshot_to_pb(sent))) + "\n")
        client_tls = [
            "--tls-ca",
            str(pki.client.ca),
            "--tls-cert",
            str(pki.client.cert),
            "--tls-key",
            str(pki.client.key),
        ]
        replay = ["replay", str(feed), "--ingest", f"127.0.0.1:{ingest.server.port}", "--retry-seconds", "0"]
        # In a thread: the command runs its own event loop, and the servers need this one.
        assert await asyncio.to_thread(cli, [*replay, *client_tls]) == 0
        assert await asyncio.to_thread(cli, [*replay, *client_tls[:2]]) == 2  # no client certificate: refused

        context = ssl.create_default_context()
        pki.ca.configure_trust(context)
        async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=context) as client:

            async def listed() -> bool:
                return (await client.get(f"/api/events/{event_id}")).status_code == 200

            await eventually(listed, "the event read back through the gateway over HTTPS")
            assert (await client.get("/api/settings")).status_code == 200  # gateway → retention
        assert await asyncio.to_thread(http_healthy, port, pki.server)  # the container's probe, over HTTPS
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.get("/api/health")
    finally:
        gateway.should_exit = True
        await serving
        await ingest.stop(1)
        await retention.stop(1)
        await query.stop(1)
        await writer.stop(1)
