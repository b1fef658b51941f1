"""The containers' HEALTHCHECK: the service's own health over loopback, with its TLS files when it has them."""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from oddstore import tls
from oddstore.config import TlsSettings

TIMEOUT_SECONDS = 3.0


async def grpc_serving(address: str, files: tls.TlsFiles) -> bool:
    """The server answers SERVING. Under mutual TLS the probe presents the service's own certificate, which
    names 127.0.0.1 among its addresses (oddstore certs) so that it verifies on loopback too."""
    async with tls.channel(address, files) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def http_healthy(port: int, files: tls.TlsFiles) -> bool:
    """/api/health answers 2xx; over HTTPS, verified against the CA, when the gateway has a certificate."""
    context = None
    scheme = "http"
    if files.cert is not None:
        scheme = "https"
        context = ssl.create_default_context(cafile=str(files.ca) if files.ca else None)
    try:
        with urllib.request.urlopen(
            f"{scheme}://127.0.0.1:{port}/api/health", timeout=TIMEOUT_SECONDS, context=context
        ):
            return True
    except OSError:
        return False


def main(argv: list[str]) -> int:
    """`python -m oddstore.healthcheck grpc INGEST_LISTEN` or `… http GATEWAY_PORT`: 0 when healthy."""
    kind, variable = argv
    files = TlsSettings().tls
    port = int(os.environ[variable].rsplit(":", 1)[-1])
    if kind == "http":
        return 0 if http_healthy(port, files) else 1
    return 0 if asyncio.run(grpc_serving(f"127.0.0.1:{port}", files)) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
