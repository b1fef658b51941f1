"""What PostgreSQL text can store: the one rule for every string that may reach the database, from
ingest's snapshots to the gateway's and the query service's parameters."""

from __future__ import annotations


def unstorable(value: str) -> str | None:
    """Why `value` cannot be stored as PostgreSQL text (UTF-8), or None when it can: a NUL character,
    which PostgreSQL text refuses, or a lone surrogate, which has no UTF-8 encoding at all."""
    nul = value.find("\x00")
    if nul >= 0:
        return f"contains a NUL character (U+0000) at position {nul}"
    if not value.isascii():  # O(1) in CPython: most names are ASCII and need no encoding
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"contains a lone surrogate (U+{ord(value[exc.start]):04X}) at position {exc.start}"
    return None
