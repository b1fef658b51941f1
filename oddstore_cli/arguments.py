"""Command-line pieces shared by the subcommands: exit codes and the submission options."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from oddstore import tls
from oddstore_cli.submit import SubmitOptions

# 0: every snapshot acknowledged, none malformed or rejected; 1: some malformed or rejected;
# 2: some never acknowledged (the ingest service stayed unreachable, or the input could not be read).
EXIT_OK, EXIT_REJECTED, EXIT_UNACKNOWLEDGED = 0, 1, 2


def add_submit_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `Submitter`, shared by replay and simulate."""
    parser.add_argument(
        "--ingest",
        default=os.environ.get("ODDSTORE_INGEST", "127.0.0.1:50051"),
        help="ingest service address (default: $ODDSTORE_INGEST or 127.0.0.1:50051)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("ODDSTORE_TOKEN"),
        help="ingest bearer token (default: $ODDSTORE_TOKEN; none is needed by an ingest on this machine without"
        " a tokens file)",
    )
    parser.add_argument(
        "--token-file",
        default=os.environ.get("ODDSTORE_TOKEN_FILE"),
        help="read the token from this file instead (default: $ODDSTORE_TOKEN_FILE; a container's secret)",
    )
    for flag, variable, what in (
        ("--tls-ca", "ODDSTORE_TLS_CA_FILE", "CA certificate to verify ingest's certificate against (TLS)"),
        ("--tls-cert", "ODDSTORE_TLS_CERT_FILE", "client certificate, for an ingest that requires one (mutual TLS)"),
        ("--tls-key", "ODDSTORE_TLS_KEY_FILE", "the client certificate's private key"),
    ):
        parser.add_argument(flag, type=Path, default=os.environ.get(variable) or None, help=f"{what} (${variable})")
    parser.add_argument("--batch-size", type=positive_int, default=200, help="snapshots per call (200)")
    parser.add_argument("--concurrency", type=positive_int, default=2, help="calls in flight (2)")
    parser.add_argument("--timeout", type=positive_float, default=30.0, help="deadline per call, s (30)")
    parser.add_argument(
        "--retry-seconds", type=float, default=300.0, help="retry a batch on transient errors this long (300)"
    )


def submit_options(args: argparse.Namespace) -> SubmitOptions:
    return SubmitOptions(
        target=args.ingest,
        timeout=args.timeout,
        retry_seconds=args.retry_seconds,
        concurrency=args.concurrency,
        token=_token(args),
        tls_files=_tls_files(args),
    )


def _tls_files(args: argparse.Namespace) -> tls.TlsFiles:
    try:
        return tls.TlsFiles(_optional_path(args.tls_cert), _optional_path(args.tls_key), _optional_path(args.tls_ca))
    except tls.TlsError as exc:
        raise SystemExit(f"oddstore: {exc}") from None


def _optional_path(value: str | Path | None) -> Path | None:
    return Path(value) if value else None


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        with open(args.token_file) as f:
            return f.read().strip() or None
    return str(args.token) if args.token else None


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value
