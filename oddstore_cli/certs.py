"""`oddstore certs`: a private CA and a certificate per service (the compose stack's `certs` job), kept once made."""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import re
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
# Short enough that a leaked key expires, long enough that nobody is paged for it: renewal is deleting the
# service's two files and running the job again.
LEAF_DAYS = 825


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "certs",
        help="make a private CA and certificates for the given names",
        description="Makes, in DIR, ca.pem and for each NAME NAME.pem and NAME-key.pem: a certificate for NAME, "
        "localhost and 127.0.0.1 (the container's own health probe), for servers and clients (mutual TLS), signed "
        "by the CA whose key is kept in CA_DIR, apart from the certificates. What exists is kept: running it "
        "again makes only what is missing.",
    )
    parser.add_argument("names", nargs="+", type=_name, metavar="NAME", help="e.g. the compose service names")
    parser.add_argument("--dir", type=Path, required=True, help="certificates and keys, read by the services")
    parser.add_argument("--ca-dir", type=Path, required=True, help="the CA's key, read by nobody but this command")
    parser.set_defaults(handler=command)


def _name(text: str) -> str:
    # A host name, so a file name too: nothing that could step out of DIR.
    if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", text) or ".." in text:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a host name, e.g. writer")
    return text


def command(args: argparse.Namespace) -> int:
    try:
        made = make(args.dir, args.ca_dir, args.names)
    except (OSError, ValueError) as exc:
        print(f"oddstore certs: {exc}", file=sys.stderr)
        return 1
    print(f"certificates in {args.dir}: {', '.join(made) or 'none new'}", file=sys.stderr)
    return 0


def make(directory: Path, ca_directory: Path, names: list[str]) -> list[str]:
    """The names whose certificate was made now (the CA as "ca"); existing files are left as they are."""
    made = []
    ca_cert_path, ca_key_path = directory / "ca.pem", ca_directory / "ca-key.pem"
    if ca_key_path.exists():
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{ca_key_path}: not the EC key this command makes")
        ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    else:
        if ca_cert_path.exists():
            raise ValueError(f"{ca_cert_path} exists without its key in {ca_directory}: remove both to start over")
        ca_key, ca_cert = _new_ca()
        _write(ca_key_path, _key_pem(ca_key), 0o600)
        _write(ca_cert_path, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
        made.append("ca")
    for name in names:
        cert_path, key_path = directory / f"{name}.pem", directory / f"{name}-key.pem"
        if cert_path.exists() and key_path.exists():
            continue
        key, cert = _new_leaf(name, ca_key, ca_cert)
        _write(key_path, _key_pem(key), 0o600)
        _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        made.append(name)
    return made


def _new_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oddstore private CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate clocks slightly behind
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _new_leaf(
    name: str, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.DNSName(name), x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=LEAF_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        # Both: every service is a server and, under mutual TLS, a client of the others.
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    """Whole or not at all (a job stopped half-way leaves no truncated file to be kept as if made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(partial, mode)  # O_CREAT's mode is filtered by the umask
    os.replace(partial, path)
