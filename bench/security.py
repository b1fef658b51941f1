"""Cost of TLS and authentication: the same writes and reads through a plain and a secured stack, in one run.

Run as `python -m bench.security [--events 1300] [--cycles 8] [--requests 300] [--rounds 4] [--database-url URL]`.
Two stacks of writer, ingest, query and gateway as deployed, each on its own fresh database: `plain` (no TLS, no
authentication: `make run`) and `secured` (mutual TLS between the services and from the benchmark with per-service
authorization, the gateway on HTTPS, an ingest bearer token, gateway Basic authentication; certificates from
`oddstore certs`). Writes: every scrape cycle of one workload goes to both stacks, which goes first alternating
by cycle. Reads: rounds of the event list and event detail through the gateway and GetEvent on the query service's
gRPC API, which stack goes first alternating by round. Both stacks share the machine at every moment, so a noisy
neighbour costs both alike; the report gives medians for each and the ratio. Connections are kept open, as the
services and browsers keep theirs: a TLS handshake is paid once per connection, not per request.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import secrets
import shutil
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx

from bench.databases import Server
from bench.ours import ACCEPTED, CALL_TIMEOUT, MAX_MESSAGE, SUBMIT_PATH, NotAccepted
from bench.read import wait_following
from bench.read_measure import PAGE_SIZE, Gateway, QueryDirect, Timing, measure
from bench.results import configure_logging
from bench.services import ServiceProcess, free_port, wait_serving
from bench.workload import CYCLE_INTERVAL, Cycle, generate
from bench.write import cpu_model, memory_gib, run_and_report, server_dsn
from oddstore import migrate, tls, tokens, users
from oddstore.grpc_server import client_options
from oddstore.v1 import ingest_pb2
from oddstore_cli import certs
from oddstore_cli.simulator import BOOKMAKERS

logger = logging.getLogger("bench.security")

SIDES = ("plain", "secured")
READS = ("gateway event list", "gateway event detail", "query gRPC GetEvent")
USER = "bench"


@dataclass(slots=True)
class Side:
    """What one stack measured."""

    cycle_seconds: list[float] = field(default_factory=list)
    cycle_observations: list[int] = field(default_factory=list)
    call_latencies: list[float] = field(default_factory=list)  # SubmitSnapshots, cycles 2–N
    reads: dict[str, Timing] = field(default_factory=dict)

    def sustained_rate(self) -> float | None:
        rates = [o / s for o, s in zip(self.cycle_observations[1:], self.cycle_seconds[1:], strict=True)]
        return statistics.median(rates) if rates else None


@dataclass(slots=True)
class Results:
    sides: dict[str, Side] = field(default_factory=lambda: {name: Side() for name in SIDES})
    # Per cycle 2–N: secured ÷ plain observations/s, by which stack went first (False: plain first).
    paired_write_ratios: dict[bool, list[float]] = field(default_factory=lambda: {False: [], True: []})
    server: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the secured stack is started with and what the benchmark presents to it."""

    directory: Path  # certificates (certs/), the tokens and users files
    token: str
    password: str

    def service(self, name: str) -> dict[str, str]:
        d = self.directory / "certs"
        return {"TLS_CERT_FILE": f"{d}/{name}.pem", "TLS_KEY_FILE": f"{d}/{name}-key.pem", "TLS_CA_FILE": f"{d}/ca.pem"}

    @property
    def client(self) -> tls.TlsFiles:
        d = self.directory / "certs"
        return tls.TlsFiles(d / "bench.pem", d / "bench-key.pem", d / "ca.pem")


def make_credentials(directory: Path) -> Credentials:
    certs.make(directory / "certs", directory / "ca", ["writer", "ingest", "query", "gateway", "bench"])
    token = tokens.add(directory / "tokens.json", "bench", [b.slug for b in BOOKMAKERS])
    password = secrets.token_urlsafe(16)
    users.add(directory / "users.json", USER, users.Role.viewer, password)
    return Credentials(directory, token, password)


class Stack:
    """Writer, ingest, query and gateway as child processes; with credentials, everything secured."""

    def __init__(self, name: str, dsn: str, credentials: Credentials | None, log_dir: Path) -> None:
        self.name = name
        self.dsn = dsn
        self.credentials = credentials
        self.log_dir = log_dir
        self.services: list[ServiceProcess] = []
        self.writer, self.writer_metrics, self.ingest, self.query, self.query_metrics, self.gateway = (
            free_port() for _ in range(6)
        )

    @property
    def client_tls(self) -> tls.TlsFiles:
        return self.credentials.client if self.credentials else tls.PLAINTEXT

    @property
    def metadata(self) -> tuple[tuple[str, str], ...] | None:
        return (("authorization", f"Bearer {self.credentials.token}"),) if self.credentials else None

    def _env(self, service: str, env: dict[str, str], secured: dict[str, str]) -> dict[str, str]:
        if self.credentials is None:
            return env
        return {**env, **self.credentials.service(service), **secured}

    def _start(self, service: str, env: dict[str, str], secured: dict[str, str] | None = None) -> ServiceProcess:
        process = ServiceProcess(
            f"{self.name}-{service}", f"services.{service}.main", self._env(service, env, secured or {}), self.log_dir
        )
        self.services.append(process)
        return process

    async def start(self) -> None:
        local = "127.0.0.1"
        writer = self._start(
            "writer",
            {
                "DATABASE_URL": self.dsn,
                "WRITER_LISTEN": f"{local}:{self.writer}",
                "WRITER_METRICS_PORT": str(self.writer_metrics),
            },
        )
        await wait_serving(writer, self.writer, files=self.client_tls)
        tokens_file = str(self.credentials.directory / "tokens.json") if self.credentials else ""
        ingest = self._start(
            "ingest",
            {
                "INGEST_LISTEN": f"{local}:{self.ingest}",
                "INGEST_WRITERS": f"{local}:{self.writer}",
                # A first cycle (every market new) on a shared machine may take the writer longer than the default.
                "INGEST_WRITER_TIMEOUT_SECONDS": str(CALL_TIMEOUT),
            },
            {"INGEST_AUTH_TOKENS_FILE": tokens_file},
        )
        query = self._start(
            "query",
            {
                "DATABASE_URL": self.dsn,
                "QUERY_LISTEN": f"{local}:{self.query}",
                "QUERY_METRICS_PORT": str(self.query_metrics),
                "QUERY_WRITERS": f"{local}:{self.writer}",
            },
            # The benchmark reads the query service directly too, under a name of its own.
            {"QUERY_ALLOWED_CLIENTS": "gateway,bench"},
        )
        await wait_serving(ingest, self.ingest, files=self.client_tls)
        await wait_serving(query, self.query, files=self.client_tls)
        await wait_following(query, self.query_metrics)
        users_file = str(self.credentials.directory / "users.json") if self.credentials else ""
        self._start(
            "gateway",
            {
                "GATEWAY_HOST": local,
                "GATEWAY_PORT": str(self.gateway),
                "GATEWAY_QUERY_ADDRESS": f"{local}:{self.query}",
                # One client asking as fast as it can is the benchmark, not an abuse to throttle.
                "GATEWAY_RATE_LIMIT_PER_SECOND": "0",
            },
            {"GATEWAY_AUTH": "basic", "GATEWAY_USERS_FILE": users_file},
        )

    def http(self, concurrency: int) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2)
        if self.credentials is None:
            return httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.gateway}", timeout=30.0, limits=limits)
        context = ssl.create_default_context(cafile=str(self.credentials.directory / "certs" / "ca.pem"))
        return httpx.AsyncClient(
            base_url=f"https://127.0.0.1:{self.gateway}",
            timeout=30.0,
            limits=limits,
            verify=context,
            auth=(USER, self.credentials.password),
        )

    async def wait_gateway(self, client: httpx.AsyncClient, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while True:
            for service in self.services:
                service.check_alive()
            try:
                if (await client.get("/api/health")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} gateway not answering after {within:.0f}s")
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()


# -- measuring -------------------------------------------------------------------------------------


async def write_cycle(
    stack: Stack, channel: grpc.aio.Channel, cycle: Cycle, in_flight: int
) -> tuple[float, list[float]]:
    """Seconds from the first send to the last acknowledgement of the cycle, and each call's latency."""
    call = channel.unary_unary(
        SUBMIT_PATH, request_serializer=None, response_deserializer=ingest_pb2.SubmitSnapshotsResponse.FromString
    )
    slots = asyncio.Semaphore(in_flight)
    latencies: list[float] = []

    async def send(raw: bytes) -> ingest_pb2.SubmitSnapshotsResponse:
        async with slots:
            began = time.perf_counter()
            response: ingest_pb2.SubmitSnapshotsResponse = await call(
                raw, timeout=CALL_TIMEOUT, metadata=stack.metadata
            )
            latencies.append(time.perf_counter() - began)
        return response

    began = time.perf_counter()
    responses = await asyncio.gather(*(send(raw) for raw in cycle.batches))
    elapsed = time.perf_counter() - began
    accepted = sum(r.status == ACCEPTED for response in responses for r in response.results)
    if accepted != cycle.snapshots:
        raise NotAccepted(f"{stack.name}: cycle {cycle.number}: {accepted} of {cycle.snapshots} snapshots ACCEPTED")
    return elapsed, latencies


def merged(timings: Sequence[Timing]) -> Timing:
    total = Timing(concurrent=timings[0].concurrent)
    for t in timings:
        total.latencies += t.latencies
        total.sizes += t.sizes
        total.sequential_seconds += t.sequential_seconds
        total.concurrent_requests += t.concurrent_requests
        total.concurrent_seconds += t.concurrent_seconds
    return total


async def check_secured(stack: Stack, channel: grpc.aio.Channel) -> None:
    """The secured stack refuses what it must, so what is timed is the checked path."""
    async with stack.http(1) as client:
        await stack.wait_gateway(client)
        status = (await client.get("/api/events", auth=None)).status_code
    if status != 401:
        raise RuntimeError(f"secured gateway answered {status} without credentials, not 401")
    call = channel.unary_unary(SUBMIT_PATH, request_serializer=None, response_deserializer=None)
    try:
        await call(ingest_pb2.SubmitSnapshotsRequest().SerializeToString(), timeout=30)
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.UNAUTHENTICATED:
            return
        raise
    raise RuntimeError("secured ingest took a call without a token")


async def run(args: argparse.Namespace, server_url: str, results: Results) -> None:
    server = Server(server_url)
    work_dir = Path(tempfile.mkdtemp(prefix="bench-security-"))
    stacks: list[Stack] = []
    ok = False
    try:
        results.server = await server.describe()
        credentials = make_credentials(work_dir)
        for name in SIDES:
            dsn = await server.create(name)
            await asyncio.to_thread(migrate.upgrade, dsn)
            stacks.append(Stack(name, dsn, credentials if name == "secured" else None, work_dir))
        for stack in stacks:
            await stack.start()

        started_at = datetime.now(UTC).replace(microsecond=0)
        workload = generate(
            events=args.events,
            cycles=args.cycles,
            change_rate=args.change_rate,
            seed=args.seed,
            batch_size=args.batch_size,
            start=started_at - args.cycles * CYCLE_INTERVAL - CYCLE_INTERVAL / 5,
        )
        options = client_options(MAX_MESSAGE)
        channels = {s.name: tls.channel(f"127.0.0.1:{s.ingest}", s.client_tls, options) for s in stacks}
        try:
            await check_secured(stacks[1], channels["secured"])
            for cycle in workload.cycles:
                order = stacks if cycle.number % 2 else stacks[::-1]
                rates: dict[str, float] = {}
                for stack in order:
                    side = results.sides[stack.name]
                    seconds, latencies = await write_cycle(stack, channels[stack.name], cycle, args.in_flight)
                    side.cycle_seconds.append(seconds)
                    side.cycle_observations.append(cycle.observations)
                    if cycle.number > 1:
                        side.call_latencies += latencies
                    rates[stack.name] = cycle.observations / seconds
                    logger.info("%s: cycle %d: %.0f observations/s", stack.name, cycle.number, rates[stack.name])
                if cycle.number > 1:
                    results.paired_write_ratios[order[0].name == "secured"].append(rates["secured"] / rates["plain"])
        finally:
            for channel in channels.values():
                await channel.close()

        await read_rounds(args, stacks, sorted(workload.events), results)
        ok = True
    finally:
        for stack in stacks:
            stack.stop()
        await server.drop_all()
        if ok:
            shutil.rmtree(work_dir, ignore_errors=True)
        else:
            logger.error("service logs kept in %s", work_dir)


async def read_rounds(args: argparse.Namespace, stacks: list[Stack], events: list[int], results: Results) -> None:
    pages = max(1, -(-len(events) // PAGE_SIZE))
    per_round = max(1, args.requests // args.rounds)
    collected: dict[str, dict[str, list[Timing]]] = {s.name: {r: [] for r in READS} for s in stacks}
    clients = {s.name: s.http(args.concurrency) for s in stacks}
    channels = {s.name: tls.channel(f"127.0.0.1:{s.query}", s.client_tls, client_options()) for s in stacks}
    try:
        for stack in stacks:
            await stack.wait_gateway(clients[stack.name])
        for r in range(args.rounds):
            params: dict[str, Sequence[Any]] = {
                READS[0]: [1 + (r * per_round + k) % pages for k in range(per_round)],
                READS[1]: [events[(r * per_round + k) * 7919 % len(events)] for k in range(per_round)],
            }
            params[READS[2]] = params[READS[1]]
            for stack in stacks if r % 2 == 0 else stacks[::-1]:
                gateway, direct = Gateway(clients[stack.name]), QueryDirect(channels[stack.name])
                calls = {READS[0]: gateway.event_list, READS[1]: gateway.event_detail, READS[2]: direct.event_detail}
                for read in READS:
                    timing = await measure(f"{stack.name} {read}", calls[read], params[read], args.concurrency)
                    collected[stack.name][read].append(timing)
                for service in stack.services:
                    service.check_alive()
    finally:
        for client in clients.values():
            await client.aclose()
        for channel in channels.values():
            await channel.close()
    for name, reads in collected.items():
        results.sides[name].reads = {read: merged(timings) for read, timings in reads.items() if timings}


# -- report ----------------------------------------------------------------------------------------


def _n(value: float | None, digits: int = 0, unit: str = "") -> str:
    return "—" if value is None else f"{value:,.{digits}f}{unit}"


def _q(xs: list[float], p: float) -> float | None:
    return Timing(latencies=xs).q(p) if xs else None


def _ratio(secured: float | None, plain: float | None) -> str:
    return "—" if secured is None or not plain else f"{secured / plain:.2f}"


def report(results: Results, args: argparse.Namespace, wall: float) -> str:
    plain, secured = results.sides["plain"], results.sides["secured"]
    rows: list[tuple[str, float | None, float | None, int, str]] = [
        (
            "write: observations/s, sustained (median of cycles 2–N)",
            plain.sustained_rate(),
            secured.sustained_rate(),
            0,
            "",
        ),
        ("write: SubmitSnapshots p50", _q(plain.call_latencies, 0.5), _q(secured.call_latencies, 0.5), 1, " ms"),
        ("write: SubmitSnapshots p99", _q(plain.call_latencies, 0.99), _q(secured.call_latencies, 0.99), 1, " ms"),
    ]
    for read in READS:
        p, s = plain.reads.get(read), secured.reads.get(read)
        rows += [
            (f"read: {read} p50", p.p50 if p else None, s.p50 if s else None, 2, " ms"),
            (f"read: {read} p99", p.p99 if p else None, s.p99 if s else None, 2, " ms"),
            (
                f"read: {read} req/s, one client",
                p.sequential_rate if p else None,
                s.sequential_rate if s else None,
                0,
                "",
            ),
            (
                f"read: {read} req/s, {args.concurrency} in flight",
                p.concurrent_rate if p else None,
                s.concurrent_rate if s else None,
                0,
                "",
            ),
        ]
    lines = [
        f"Date: {datetime.now(UTC).date().isoformat()}. Machine: {os.cpu_count()} CPUs ({cpu_model()}), "
        f"{memory_gib():.1f} GiB RAM, {platform.system()} {platform.release()}, Python {platform.python_version()}; "
        f"PostgreSQL {results.server.get('server_version', '?')}; both stacks, the benchmark client and PostgreSQL "
        "on the same machine.",
        "",
        f"Workload: `python -m bench.security --events {args.events} --cycles {args.cycles} --requests {args.requests} "
        f"--rounds {args.rounds}`: the same cycles to both stacks (batches of {args.batch_size} snapshots, "
        f"{args.in_flight} in flight), then {args.rounds} rounds of reads. Whole run {wall / 60:.1f} min.",
        "",
        "| | plain | TLS + mTLS + auth | secured ÷ plain |",
        "|---|---|---|---|",
    ]
    for label, p_value, s_value, digits, unit in rows:
        scale = 1e3 if unit == " ms" else 1.0
        p_shown = None if p_value is None else p_value * scale
        s_shown = None if s_value is None else s_value * scale
        lines.append(
            f"| {label} | {_n(p_shown, digits, unit)} | {_n(s_shown, digits, unit)} | {_ratio(s_value, p_value)} |"
        )
    by_order = results.paired_write_ratios
    if by_order[False] and by_order[True]:
        # By which went first: an order effect (a stack slowed by its peer's writes just before) shows as the two
        # medians differing, and their geometric mean takes it out of the ratio.
        plain_first, secured_first = statistics.median(by_order[False]), statistics.median(by_order[True])
        lines += [
            "",
            "Write throughput, secured ÷ plain per cycle (the two stacks back to back): median "
            f"{plain_first:.2f} over {len(by_order[False])} cycles with plain first "
            f"({min(by_order[False]):.2f}–{max(by_order[False]):.2f}), {secured_first:.2f} over "
            f"{len(by_order[True])} with secured first ({min(by_order[True]):.2f}–{max(by_order[True]):.2f}); "
            f"order-balanced (geometric mean of the two) {(plain_first * secured_first) ** 0.5:.2f}.",
        ]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.security", description=__doc__)
    p.add_argument("--events", type=int, default=1300, help="events per cycle (production: ~1,300)")
    p.add_argument("--cycles", type=int, default=9, help="scrape cycles, each to both stacks (odd: both orders alike)")
    p.add_argument("--change-rate", type=float, default=0.05)
    p.add_argument("--batch-size", type=int, default=200, help="snapshots per SubmitSnapshots call")
    p.add_argument("--in-flight", type=int, default=4, help="SubmitSnapshots calls in flight")
    p.add_argument("--requests", type=int, default=400, help="requests per read and stack, over all rounds")
    p.add_argument("--rounds", type=int, default=4, help="read rounds, alternating which stack goes first")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight for the concurrent figure")
    p.add_argument("--database-url", default=None, help="default: DATABASE_URL, else an embedded server")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if min(args.events, args.cycles - 1, args.batch_size, args.in_flight, args.requests, args.rounds) < 1:
        p.error("--events, --batch-size, --in-flight, --requests, --rounds must be positive, --cycles at least 2")
    return args


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    dsn, embedded = server_dsn(args)
    results = Results()
    return run_and_report(
        lambda: run(args, dsn, results),
        lambda seconds: report(results, args, seconds),
        embedded,
        "services stopped and the databases dropped",
    )


if __name__ == "__main__":
    sys.exit(main())
