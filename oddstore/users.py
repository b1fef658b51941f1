"""Gateway users: names, roles and argon2id password hashes, in a JSON file (`GATEWAY_USERS_FILE`):
    {"users": [{"name": "alice", "role": "admin", "argon2": "$argon2id$..."}]}

argon2id (argon2-cffi's defaults) because passwords are guessable: the slow hash is what protects them if
the file leaks. The gateway verifies a password once and then remembers the header (services/gateway/auth.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from oddstore import entry_files

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")  # no ':' (Basic's separator); safe in logs
_hasher = PasswordHasher()


class Role(IntEnum):
    """Ordered: an admin may do what a viewer may."""

    viewer = 1
    admin = 2


class UsersFileError(ValueError):
    """The users file is missing, unreadable or malformed; the message names the file and the entry."""


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role
    password_hash: str

    def verify(self, password: str) -> bool:
        try:
            return _hasher.verify(self.password_hash, password)
        except (VerificationError, InvalidHashError):
            return False


def parse(text: str, source: str = "users file") -> dict[str, User]:
    users: dict[str, User] = {}
    for where, entry in entry_files.entries(text, source, "users", UsersFileError):
        name, role, digest = entry.get("name"), entry.get("role"), entry.get("argon2")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise UsersFileError(f"{where}.name: expected up to 64 letters, digits, '_', '.', '@', '-'")
        if name in users:
            raise UsersFileError(f"{where}.name: duplicate name {name!r}")
        if not isinstance(role, str) or role not in Role.__members__:
            raise UsersFileError(f"{where}.role: expected one of {', '.join(Role.__members__)}")
        if not isinstance(digest, str) or not digest.startswith("$argon2"):
            raise UsersFileError(f"{where}.argon2: expected an argon2 hash ($argon2id$...)")
        users[name] = User(name, Role[role], digest)
    return users


def load(path: Path) -> dict[str, User]:
    return parse(entry_files.read(path, UsersFileError), str(path))


def add(path: Path, name: str, role: Role, password: str) -> None:
    """Adds or replaces (by name) a user; the file is rewritten atomically, readable by its owner only."""
    if not NAME.fullmatch(name):
        raise ValueError(f"user name {name!r}: up to 64 letters, digits, '_', '.', '@', '-'")
    if not password:
        raise ValueError("empty password")
    entry_files.put(path, "users", {"name": name, "role": role.name, "argon2": _hasher.hash(password)}, load)
