"""Who is calling ingest: a bearer token from the tokens file, or, with no file configured, a loopback client."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from oddstore.tokens import Grant, token_hash


class Refused(Exception):
    """The call is refused before any snapshot is read; `reason` is a metric label, the message is for the caller."""

    def __init__(self, reason: str, message: str, *, authenticated: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        # False: UNAUTHENTICATED (a token would help); True: PERMISSION_DENIED (no token can help).
        self.authenticated = authenticated


@dataclass(frozen=True, slots=True)
class Caller:
    name: str
    bookmakers: frozenset[str] | None  # None: any bookmaker (a loopback client when no tokens are configured)

    def may_write(self, bookmaker: str) -> bool:
        return self.bookmakers is None or bookmaker in self.bookmakers


LOOPBACK = Caller("loopback", None)


def is_loopback(peer: str) -> bool:
    """gRPC's peer string ("ipv4:127.0.0.1:5000", "ipv6:[::1]:5000", "unix:/path") is a local client."""
    kind, _, rest = peer.partition(":")
    if kind in ("unix", "unix-abstract"):
        return True
    host = rest.rpartition(":")[0].strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def bearer(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    for key, value in metadata:
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class Authenticator:
    """With grants (the tokens file), a call must carry a known token; without, only loopback clients may call.
    `grants` is asked on every call (oddstore.entry_files.Watched reads the file again when it changes)."""

    def __init__(self, grants: Mapping[str, Grant] | Callable[[], Mapping[str, Grant]] | None) -> None:
        self._grants: Callable[[], Mapping[str, Grant]] | None = (
            None if grants is None else grants if callable(grants) else (lambda: grants)
        )

    @property
    def enforcing(self) -> bool:
        return self._grants is not None

    def identify(self, metadata: Iterable[tuple[str, str | bytes]], peer: str) -> Caller:
        if self._grants is None:
            if not is_loopback(peer):
                raise Refused(
                    "not_loopback",
                    "ingest has no INGEST_AUTH_TOKENS_FILE: only clients on this machine may write",
                    authenticated=True,
                )
            return LOOPBACK
        token = bearer(metadata)
        if token is None:
            raise Refused("missing", "no bearer token: send metadata 'authorization: Bearer <token>'")
        # A dict lookup by hash: its timing depends on the hash, which tells nothing about the token.
        grant = self._grants().get(token_hash(token))
        if grant is None:
            raise Refused("unknown", "unknown token")
        return Caller(grant.name, grant.bookmakers)
