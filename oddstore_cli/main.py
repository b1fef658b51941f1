"""Entry point of the `oddstore` command: one argparse subparser per subcommand module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TypeAlias

from oddstore import logs
from oddstore_cli import certs, replay, run, simulate, token, user

SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

# Each subcommand module contributes `add_parser(subparsers)`, which registers its options and sets
# `handler` (Namespace -> exit code). A new subcommand is one more entry here.
SUBCOMMANDS: tuple[Callable[[SubParsers], None], ...] = (
    replay.add_parser,
    simulate.add_parser,
    run.add_parser,
    token.add_parser,
    user.add_parser,
    certs.add_parser,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oddstore", description="Client of the oddstore services.")
    parser.add_argument(
        "--log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="(WARNING)"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in SUBCOMMANDS:
        add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level, "text", "oddstore")
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
