"""Ingest bearer tokens: made once, stored only as hashes, each with a name and the bookmakers it may write.

The file (`INGEST_AUTH_TOKENS_FILE`) is JSON:
    {"tokens": [{"name": "sportybet-scraper", "sha256": "<hex>", "bookmakers": ["sportybet"]}]}

SHA-256, not argon2/bcrypt as for passwords: a token is 256 random bits, so a slow hash would add nothing
against guessing, and ingest checks one on every call (argon2's ~50 ms each would cap a scraper's rate).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from oddstore import entry_files
from oddstore.platforms import BOOKMAKER_SLUG

# A prefix makes a leaked token recognisable to secret scanners and people alike.
TOKEN_PREFIX = "odt_"
# Names go into logs and metric labels: short and plain.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class TokenFileError(ValueError):
    """The tokens file is missing, unreadable or malformed; the message names the file and the entry."""


@dataclass(frozen=True, slots=True)
class Grant:
    """Who a token is and which bookmakers' odds it may write."""

    name: str
    bookmakers: frozenset[str]


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse(text: str, source: str = "tokens file") -> dict[str, Grant]:
    """The grants by token hash; raises TokenFileError naming the entry at fault."""
    grants: dict[str, Grant] = {}
    names: set[str] = set()
    for where, entry in entry_files.entries(text, source, "tokens", TokenFileError):
        name, digest, bookmakers = entry.get("name"), entry.get("sha256"), entry.get("bookmakers")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise TokenFileError(f"{where}.name: expected up to 64 letters, digits, '_', '.', '-'")
        if name in names:
            raise TokenFileError(f"{where}.name: duplicate name {name!r}")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise TokenFileError(f"{where}.sha256: expected 64 lowercase hex digits")
        if not isinstance(bookmakers, list) or not bookmakers:
            raise TokenFileError(f"{where}.bookmakers: expected a non-empty list")
        for b in bookmakers:
            if not isinstance(b, str) or not BOOKMAKER_SLUG.fullmatch(b):
                raise TokenFileError(f"{where}.bookmakers: {b!r} is not a bookmaker slug")
        names.add(name)
        grants[digest] = Grant(name, frozenset(bookmakers))
    return grants


def load(path: Path) -> dict[str, Grant]:
    return parse(entry_files.read(path, TokenFileError), str(path))


def parse_bookmakers(text: str) -> list[str]:
    """ "betpawa,sportybet" → the slugs; raises ValueError naming a bad one."""
    slugs = [b.strip() for b in text.split(",") if b.strip()]
    for b in slugs:
        if not BOOKMAKER_SLUG.fullmatch(b):
            raise ValueError(f"{b!r} is not a bookmaker slug (lowercase letters, digits, _)")
    if not slugs:
        raise ValueError("at least one bookmaker")
    return slugs


def add(path: Path, name: str, bookmakers: Iterable[str]) -> str:
    """Adds (or replaces, by name) a token in the file, creating it, and returns the token: the only time it
    exists outside the caller's hands. The file is rewritten atomically and readable by its owner only."""
    if not NAME.fullmatch(name):
        raise ValueError(f"token name {name!r}: up to 64 letters, digits, '_', '.', '-'")
    token = new_token()
    entry = {"name": name, "sha256": token_hash(token), "bookmakers": sorted(set(bookmakers))}
    entry_files.put(path, "tokens", entry, load)
    return token
