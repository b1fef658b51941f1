"""`oddstore token create`: a new ingest token, its hash added to the tokens file, the token printed once."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from oddstore import tokens


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("token", help="manage ingest bearer tokens")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create",
        help="create a token, add its hash to the tokens file and print the token once",
        description="Creates a token for NAME (replacing NAME's token if it has one) allowed to write the given "
        "bookmakers, stores only its SHA-256 hash in FILE (created, mode 0600) and prints the token on standard "
        "output: the only time it is shown. Ingest reads FILE at start (INGEST_AUTH_TOKENS_FILE).",
    )
    create.add_argument("name", help="who uses it, e.g. sportybet-scraper (in ingest's logs and metrics)")
    create.add_argument("--bookmakers", required=True, type=_bookmakers, help="comma-separated, e.g. betpawa,bet9ja")
    create.add_argument(
        "--file",
        type=Path,
        default=os.environ.get("INGEST_AUTH_TOKENS_FILE"),
        required="INGEST_AUTH_TOKENS_FILE" not in os.environ,
        help="the tokens file (default: $INGEST_AUTH_TOKENS_FILE)",
    )
    create.set_defaults(handler=command)


def _bookmakers(text: str) -> list[str]:
    try:
        return tokens.parse_bookmakers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def command(args: argparse.Namespace) -> int:
    try:
        token = tokens.add(Path(args.file), args.name, args.bookmakers)
    except (OSError, ValueError) as exc:
        print(f"oddstore token create: {exc}", file=sys.stderr)
        return 1
    print(token)
    print(
        f"token {args.name!r} for {', '.join(args.bookmakers)} added to {args.file}; in force at ingest's next call."
        " It is shown only now.",
        file=sys.stderr,
    )
    return 0
