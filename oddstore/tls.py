"""TLS credentials of every gRPC server and channel, from certificate, key and CA files; plaintext when none is set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc


class TlsError(ValueError):
    """A TLS file set that cannot work (a certificate without its key, a file that cannot be read)."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files. `cert` + `key`: a server serves TLS and a client presents them. `ca`: a client verifies its
    server against it, a server requires and verifies client certificates (mutual TLS). None set: plaintext."""

    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise TlsError("a TLS certificate and its key go together: give both or neither")

    @property
    def enabled(self) -> bool:
        return self.cert is not None or self.ca is not None


PLAINTEXT = TlsFiles()


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsError(f"{what} {path}: {exc.strerror or exc}") from exc


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials | None:
    """None for plaintext. With a CA, a client that presents no certificate, or one the CA did not sign, fails
    the handshake before any call reaches a servicer."""
    if files.cert is None:
        if files.ca is not None:
            raise TlsError("TLS_CA_FILE on a server needs TLS_CERT_FILE and TLS_KEY_FILE: mutual TLS is TLS first")
        return None
    pair = (_read(files.key, "TLS_KEY_FILE"), _read(files.cert, "TLS_CERT_FILE"))
    ca = _read(files.ca, "TLS_CA_FILE")
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=ca is not None)


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials | None:
    """None for plaintext. Without a CA the server is verified against the system's trusted roots."""
    if not files.enabled:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read(files.ca, "TLS_CA_FILE"),
        private_key=_read(files.key, "TLS_KEY_FILE"),
        certificate_chain=_read(files.cert, "TLS_CERT_FILE"),
    )


def channel(address: str, files: TlsFiles, options: Sequence[tuple[str, Any]] | None = None) -> grpc.aio.Channel:
    """The one way services and the CLI open a channel: TLS (and a client certificate) exactly when configured."""
    credentials = channel_credentials(files)
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, credentials, options=options)


def add_port(server: grpc.aio.Server, address: str, files: TlsFiles) -> int:
    credentials = server_credentials(files)
    if credentials is None:
        return int(server.add_insecure_port(address))
    return int(server.add_secure_port(address, credentials))
