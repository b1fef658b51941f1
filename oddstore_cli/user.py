"""`oddstore user add`: a gateway user with a role, its argon2 password hash stored in the users file."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from oddstore import users


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("user", help="manage gateway users")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser(
        "add",
        help="add (or replace) a gateway user",
        description="Adds NAME with ROLE to FILE (created, mode 0600), storing only an argon2id hash of the password, "
        "which is asked for twice on a terminal or read as one line from standard input with --password-stdin. "
        "The gateway reads FILE at start (GATEWAY_AUTH=basic, GATEWAY_USERS_FILE).",
    )
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=[r.name for r in users.Role], help="viewer reads; admin changes")
    add.add_argument(
        "--file",
        type=Path,
        default=os.environ.get("GATEWAY_USERS_FILE"),
        required="GATEWAY_USERS_FILE" not in os.environ,
        help="the users file (default: $GATEWAY_USERS_FILE)",
    )
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.set_defaults(handler=command)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the passwords differ")
    return first


def command(args: argparse.Namespace) -> int:
    try:
        users.add(Path(args.file), args.name, users.Role[args.role], _password(args.password_stdin))
    except (OSError, ValueError) as exc:
        print(f"oddstore user add: {exc}", file=sys.stderr)
        return 1
    print(
        f"user {args.name!r} ({args.role}) saved in {args.file}; the gateway reads it from its next request.",
        file=sys.stderr,
    )
    return 0
