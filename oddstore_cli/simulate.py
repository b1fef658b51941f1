"""`oddstore simulate`: realistic scraper traffic, written as JSON Lines or submitted live to ingest."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import TextIO

from oddstore.v1 import snapshot_pb2
from oddstore_cli.arguments import (
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_UNACKNOWLEDGED,
    add_submit_arguments,
    positive_float,
    positive_int,
    submit_options,
)
from oddstore_cli.jsonl import ParseError, parse_timestamp, snapshot_to_json
from oddstore_cli.simulator import Simulator
from oddstore_cli.submit import SubmitFailed, SubmitOptions, Submitter

FILE_INTERVAL, LIVE_INTERVAL = 300.0, 60.0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="generate realistic snapshots: to a JSON Lines file, or live into the ingest service",
        description="Generate snapshots of --events events at betpawa, sportybet and bet9ja, cycle by cycle. "
        "With --output, write --cycles cycles (default 1) of simulated time from --start. Without it, "
        "submit one cycle every --interval seconds, stamped with the wall clock, until --cycles or Ctrl-C.",
    )
    parser.add_argument("--events", type=positive_int, default=1300, help="events per cycle (1300)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: same seed, same snapshots (0)")
    parser.add_argument("--cycles", type=positive_int, default=None, help="cycles to produce")
    parser.add_argument(
        "--interval", type=positive_float, default=None, help="seconds between cycles (file 300, live 60)"
    )
    parser.add_argument("--change-rate", type=float, default=0.05, help="share of markets moving per cycle")
    parser.add_argument("--days", type=positive_float, default=4.0, help="kickoffs spread over this many days")
    parser.add_argument("--output", metavar="FILE|-", help="write JSON Lines here instead of submitting")
    parser.add_argument(
        "--start", type=_timestamp, default=None, help="simulated time of the first cycle (RFC 3339; now)"
    )
    add_submit_arguments(parser)
    parser.set_defaults(handler=command)


def _timestamp(text: str) -> datetime:
    try:
        return parse_timestamp(text, "--start").ToDatetime(tzinfo=UTC)
    except ParseError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def command(args: argparse.Namespace) -> int:
    if args.output is not None:
        start = args.start or datetime.now(UTC)
        simulator = Simulator(args.events, seed=args.seed, start=start, days=args.days, change_rate=args.change_rate)
        interval = args.interval or FILE_INTERVAL
        with contextlib.ExitStack() as stack:
            out = sys.stdout if args.output == "-" else stack.enter_context(open(args.output, "w"))
            write(simulator, out, start=start, cycles=args.cycles or 1, interval=interval)
        return EXIT_OK
    simulator = Simulator(args.events, seed=args.seed, days=args.days, change_rate=args.change_rate)
    return asyncio.run(
        live(
            simulator,
            submit_options(args),
            batch_size=args.batch_size,
            cycles=args.cycles,
            interval=args.interval or LIVE_INTERVAL,
        )
    )


def write(simulator: Simulator, out: TextIO, *, start: datetime, cycles: int, interval: float) -> None:
    """Writes `cycles` cycles of simulated time as JSON Lines; a progress line per cycle on stderr."""
    for n in range(cycles):
        began = time.monotonic()
        snapshots = observations = 0
        for snapshot in simulator.iter_cycle(start + timedelta(seconds=n * interval)):
            out.write(json.dumps(snapshot_to_json(snapshot), separators=(",", ":")))
            out.write("\n")
            snapshots += 1
            observations += len(snapshot.markets)
        seconds = time.monotonic() - began
        print(
            f"cycle {n + 1}: {snapshots} snapshots, {observations} observations in {seconds:.1f} s",
            file=sys.stderr,
        )


async def submit_cycle(
    simulator: Simulator, submitter: Submitter, captured_at: datetime, batch_size: int
) -> tuple[int, int]:
    """Submits one cycle in batches and waits for all of it; returns (snapshots, observations) read.
    Stops submitting once a batch was given up on (the caller finds it in `submitter.failure`).
    Draining per cycle keeps cycles in order: a snapshot never overtakes its predecessor."""
    snapshots = observations = 0
    batch: list[snapshot_pb2.Snapshot] = []
    labels: list[str] = []
    try:
        for snapshot in simulator.iter_cycle(captured_at):
            batch.append(snapshot)
            labels.append(f"event {snapshot.event.id} {snapshot.bookmaker}")
            snapshots += 1
            observations += len(snapshot.markets)
            if len(batch) >= batch_size:
                await submitter.submit(batch, labels)
                batch, labels = [], []
        if batch:
            await submitter.submit(batch, labels)
    except SubmitFailed:
        pass
    await submitter.drain()
    return snapshots, observations


async def live(
    simulator: Simulator,
    options: SubmitOptions,
    *,
    batch_size: int = 200,
    cycles: int | None = None,
    interval: float = LIVE_INTERVAL,
    out: TextIO | None = None,
) -> int:
    """Submits a cycle every `interval` seconds, stamped with the wall clock; returns the exit code."""
    out = out or sys.stdout
    async with Submitter(options) as submitter:
        due = time.monotonic()
        n = 0
        try:
            while cycles is None or n < cycles:
                n += 1
                captured_at = datetime.now(UTC)
                before, began = submitter.counts.copy(), time.monotonic()
                snapshots, observations = await submit_cycle(simulator, submitter, captured_at, batch_size)
                seconds = time.monotonic() - began
                c = submitter.counts.minus(before)
                print(
                    f"cycle {n} {captured_at:%H:%M:%S}: {snapshots} snapshots, {observations} observations "
                    f"in {seconds:.1f} s ({c.observations / max(seconds, 1e-9):,.0f}/s); accepted "
                    f"{c.accepted}, superseded {c.superseded}, rejected {c.rejected}; {c.changes()}",
                    file=out,
                    flush=True,
                )
                if submitter.failure is not None:
                    print(
                        f"oddstore simulate: stopped, cycle {n} not fully acknowledged: {submitter.failure}",
                        file=sys.stderr,
                    )
                    return EXIT_UNACKNOWLEDGED
                if cycles is not None and n >= cycles:
                    break
                due += interval
                pause = due - time.monotonic()
                if pause < 0:
                    print(f"cycle {n} overran the interval by {-pause:.1f} s", file=sys.stderr)
                    due = time.monotonic()
                await asyncio.sleep(max(pause, 0.0))
        finally:
            total = submitter.counts
            print(
                f"total: {n} cycles; accepted {total.accepted}, superseded {total.superseded}, "
                f"rejected {total.rejected}, not acknowledged {total.unacknowledged}; {total.changes()}",
                file=out,
            )
            for entry in submitter.rejections:
                print(f"  {entry}", file=out)
    if submitter.counts.unacknowledged:
        return EXIT_UNACKNOWLEDGED
    return EXIT_REJECTED if submitter.counts.rejected else EXIT_OK
