"""`oddstore replay`: submit snapshots from a JSON Lines file (or stdin) to the ingest service."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import BinaryIO, TextIO

from oddstore.v1 import snapshot_pb2
from oddstore_cli.arguments import (
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_UNACKNOWLEDGED,
    add_submit_arguments,
    submit_options,
)
from oddstore_cli.jsonl import ParseError, parse_line
from oddstore_cli.submit import KEPT_REJECTIONS, Counts, SubmitFailed, SubmitOptions, Submitter

_READ_CHUNK = 1 << 20


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="submit snapshots from a JSON Lines file to the ingest service",
        description="Submit one snapshot per line from FILE (or - for standard input) to IngestService. "
        "Exit 0 when every line was acknowledged and none was malformed or rejected, 1 when some were "
        "malformed or rejected, 2 when some were never acknowledged.",
    )
    parser.add_argument("file", metavar="FILE|-", help="JSON Lines file, or - for standard input")
    add_submit_arguments(parser)
    parser.set_defaults(handler=command)


def command(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(replay(args.file, submit_options(args), batch_size=args.batch_size))
    except OSError as exc:
        print(f"oddstore replay: {exc}", file=sys.stderr)
        return EXIT_UNACKNOWLEDGED


@dataclass(slots=True)
class _Malformed:
    count: int = 0
    first: list[str] = field(default_factory=list)


async def _chunks(stream: BinaryIO) -> AsyncIterator[list[bytes]]:
    # Reading in a thread keeps the event loop, and so the calls in flight, going while the input waits.
    while chunk := await asyncio.to_thread(stream.readlines, _READ_CHUNK):
        yield chunk


async def replay(
    source: str,
    options: SubmitOptions,
    *,
    batch_size: int = 200,
    out: TextIO | None = None,
    err: TextIO | None = None,
    progress_every: float = 1.0,
    retry_clock: Callable[[], float] = time.monotonic,
    retry_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> int:
    """Submits every line of `source` (a path or "-"); prints a summary; returns the exit code.
    `retry_clock` and `retry_sleep` time the retries of an unavailable ingest (see Submitter)."""
    out = out or sys.stdout
    err = err or sys.stderr
    malformed = _Malformed()
    started = time.monotonic()
    lines = 0
    unsent = 0
    with contextlib.ExitStack() as stack:
        if source == "-":
            stream = sys.stdin.buffer
        else:
            stream = await asyncio.to_thread(open, source, "rb")
            stack.callback(stream.close)
        async with Submitter(options, clock=retry_clock, sleep=retry_sleep) as submitter:

            def progress() -> str:
                c = submitter.counts
                rate = c.observations / max(time.monotonic() - started, 1e-9)
                return (
                    f"read {lines} lines, accepted {c.accepted}, rejected {c.rejected}, "
                    f"superseded {c.superseded}, malformed {malformed.count}, {rate:,.0f} observations/s"
                )

            ticker = asyncio.create_task(_tick(progress, err, progress_every))
            chunk: list[bytes] = []
            consumed = unread = 0
            batch: list[snapshot_pb2.Snapshot] = []
            labels: list[str] = []
            try:
                async for chunk in _chunks(stream):
                    consumed = 0
                    for raw in chunk:
                        consumed += 1
                        lines += 1
                        if not raw.strip():
                            continue
                        try:
                            batch.append(parse_line(raw))
                        except ParseError as exc:
                            malformed.count += 1
                            if malformed.count <= KEPT_REJECTIONS:
                                malformed.first.append(f"line {lines}: {exc}")
                                print(f"line {lines}: malformed: {exc}", file=err)
                            continue
                        labels.append(f"line {lines}")
                        if len(batch) >= batch_size:
                            await submitter.submit(batch, labels)
                            batch, labels = [], []
                if batch:
                    await submitter.submit(batch, labels)
                    batch, labels = [], []
            except SubmitFailed:
                unsent = len(batch)
                unread = sum(1 for raw in chunk[consumed:] if raw.strip())
            await submitter.drain()
            ticker.cancel()
            counts, rejections, failure = submitter.counts, submitter.rejections, submitter.failure
        if failure is not None and source != "-":
            unread += await asyncio.to_thread(_count_rest, stream)
    _summary(out, counts, rejections, malformed, lines, time.monotonic() - started)
    if failure is not None:
        missing = counts.unacknowledged + unsent
        if source == "-":
            rest = "; the rest of standard input was not read"
        else:
            rest = f"; {unread} more lines were not read" if unread else ""
        print(f"gave up ({failure}) after line {lines}: {missing} lines not acknowledged{rest}", file=err)
        return EXIT_UNACKNOWLEDGED
    if counts.unacknowledged:
        return EXIT_UNACKNOWLEDGED
    return EXIT_REJECTED if counts.rejected or malformed.count else EXIT_OK


def _count_rest(stream: BinaryIO) -> int:
    return sum(1 for raw in stream if raw.strip())


async def _tick(progress: Callable[[], str], err: TextIO, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        print(progress(), file=err, flush=True)


def _summary(
    out: TextIO, counts: Counts, rejections: list[str], malformed: _Malformed, lines: int, seconds: float
) -> None:
    def listing(first: list[str], total: int) -> None:
        for entry in first:
            print(f"  {entry}", file=out)
        if total > len(first):
            print(f"  ... and {total - len(first)} more", file=out)

    print(f"lines read:   {lines}", file=out)
    print(f"accepted:     {counts.accepted}", file=out)
    print(f"superseded:   {counts.superseded}", file=out)
    print(f"rejected:     {counts.rejected}", file=out)
    listing(rejections, counts.rejected)
    print(f"malformed:    {malformed.count}", file=out)
    listing(malformed.first, malformed.count)
    if counts.unacknowledged:
        print(f"not acknowledged: {counts.unacknowledged}", file=out)
    print(f"changes:      {counts.changes()}", file=out)
    rate = counts.observations / max(seconds, 1e-9)
    print(f"observations: {counts.observations} in {seconds:.1f} s ({rate:,.0f}/s)", file=out)
