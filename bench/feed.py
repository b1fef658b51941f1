"""Live-odds benchmark: a production scrape cycle through ingest while browsers (WebSockets on the gateway) and client
streams (QueryService.Subscribe) are connected.

Run as `python -m bench.feed [--events 1300] [--clients 1000] [--streams 100] [--stream-events N] [--cycle-seconds
300] [--database-url URL]`. Writer, query, ingest and gateway run as child processes on a fresh database. A first
cycle seeds the current state (flat-out); then `--clients` WebSockets (`/api/ws?topics=odds_updates`) and `--streams`
Subscribe streams (each of `--stream-events` events, by default a slice of events ÷ streams; 0 for all) connect, and
a second cycle (~430,000 observations at the defaults) is submitted, its batches spread evenly over `--cycle-seconds`
(production: a scrape cycle every 5 minutes) or flat-out with `--cycle-seconds 0`. Measured: ingest acknowledgement →
message received, p50/p99 (per message, from the acknowledgement of the snapshot of the (event, bookmaker) it reports;
the WebSocket sends an event's first change at once and merges its later ones within GATEWAY_LIVE_WINDOW_SECONDS, so a
merged message's figure includes up to one window; WebSocket latencies on every 10th socket, split at the gateway's send
time; the other sockets only count, in a process of their own, bench/feed_crowd.py, unless `--crowd-in-process`),
messages per client per cycle, and the gateway's and query's RSS and CPU during the cycle. The baseline is the
old system's: the UI polled every 60 s. Progress goes to stderr; the table to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench import workload
from bench.databases import Server
from bench.feed_crowd import ODDS_UPDATE, ping
from bench.read import wait_http
from bench.results import configure_logging
from bench.services import ServiceProcess, free_port, wait_serving
from bench.write import cpu_model, memory_gib, run_and_report, server_dsn
from oddstore import migrate
from oddstore.grpc_server import client_options
from oddstore.v1 import ingest_pb2, ingest_pb2_grpc, query_pb2_grpc
from oddstore.v1 import query_pb2 as pb

logger = logging.getLogger("bench.feed")

OLD_POLL_S = 60.0  # the old system: the UI refetched on its 60 s poll
TARGET_P99_MS = 250.0
TARGET_GATEWAY_RSS_MB = 300.0
# The cycle's messages are all in once nothing has arrived for this long after the last acknowledgement (ten
# conflation windows: on a loaded machine a delivery can take seconds).
QUIET_S = 10.0
# Latencies are measured on every SAMPLE_EVERY-th socket (all its messages); messages are counted on every socket.
SAMPLE_EVERY = 10
# Wall-clock time (not perf_counter): compared with the gateway's timestamp in each message, on the same machine.
clock = time.time
Decoded = tuple[int, str, float]  # an odds_update's event, bookmaker, and when the gateway sent it


@dataclass
class Usage:
    rss_mb: float = 0.0
    peak_rss_mb: float = 0.0
    cpu_s: float = 0.0


@dataclass
class Results:
    observations: int = 0
    snapshots: int = 0
    ingest_s: float = 0.0
    ws_latency_ms: list[float] = field(default_factory=list)  # the sampled sockets', as the next two
    ws_upstream_ms: list[float] = field(default_factory=list)  # ack → the gateway sent it
    ws_delivery_ms: list[float] = field(default_factory=list)  # the gateway sent it → received
    stream_latency_ms: list[float] = field(default_factory=list)
    ws_messages: int = 0
    stream_messages: int = 0
    stream_states: int = 0
    images_done: int = 0
    stream_errors: list[str] = field(default_factory=list)
    sockets_closed: list[str] = field(default_factory=list)  # before the end (either side): code and reason
    closing: bool = False
    client_cpu_s: float = 0.0  # this program's and its crowd's: they share the machine with the services
    client_processes: int = 1
    usage: dict[str, Usage] = field(default_factory=dict)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.feed", description=__doc__.partition("\n")[0])
    p.add_argument("--events", type=int, default=1300, help="events per cycle (production: ~1,300)")
    p.add_argument("--clients", type=int, default=1000, help="WebSockets connected to the gateway")
    p.add_argument("--streams", type=int, default=100, help="Subscribe streams connected to the query service")
    p.add_argument(
        "--stream-events",
        type=int,
        default=None,
        help="events each Subscribe stream selects, in consecutive slices (default: events ÷ streams, so every event "
        "is in one stream); 0: every event",
    )
    p.add_argument("--change-rate", type=float, default=0.05, help="share of markets whose odds move per cycle")
    p.add_argument("--batch-size", type=int, default=200, help="snapshots per SubmitSnapshots call")
    p.add_argument(
        "--cycle-seconds",
        type=float,
        default=300.0,
        help="the measured cycle's batches spread evenly over this long (production: 5 minutes); 0: flat-out",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--crowd-in-process",
        action="store_true",
        help="run the counting sockets in this process too, behind the measuring ones (as before 2026-11-27 evening)",
    )
    p.add_argument("--database-url", default=None, help="server for the throw-away database (default: DATABASE_URL)")
    return p.parse_args(argv)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def percentile(values: list[float], q: int) -> float | None:
    if not values:
        return None
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


class Acks:
    """When the snapshot of each (event, bookmaker) in the measured cycle was acknowledged (`clock`): one snapshot per
    pair per cycle, so a message's latency is from the acknowledgement of the change it reports."""

    def __init__(self) -> None:
        self.at: dict[tuple[int, str], float] = {}

    def latency_ms(self, event_id: int, bookmaker: str, received: float) -> float:
        # The writer publishes after commit and before it answers: a message may beat the acknowledgement. Once the
        # seed cycle has settled every message is of the measured cycle, so one with no acknowledgement yet beat it.
        acked = self.at.get((event_id, bookmaker))
        return 0.0 if acked is None else max(0.0, (received - acked) * 1000)


class Browser(WSListener):
    """One UI socket. Every socket counts its odds_update messages; a sampled one (every SAMPLE_EVERY-th) also
    measures each: ack → received, split at the gateway's send time (the message's `timestamp`, same machine). The
    frames are parsed by picows (C), and a sampled socket decodes each distinct message once for all (a commit's
    messages are the same bytes on every socket): with the websockets client decoding every frame of every socket,
    this process spent 12.7 µs per frame, more CPU than the gateway sending them, on the same 2 cores, and its own
    queueing was most of the latency it measured (BENCHMARKS.md)."""

    def __init__(self, acks: Acks, results: Results, last: list[float], decoded: dict[bytes, Decoded], sampled: bool):
        self.acks, self.results, self.last, self.decoded, self.sampled = acks, results, last, decoded, sampled
        self.acked = asyncio.get_running_loop().create_future()  # the connection_ack
        self.closed = False

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.closed and not self.results.closing:
            self.results.sockets_closed.append("disconnected without a close frame")

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            self.closed = True
            if not self.results.closing:
                self.results.sockets_closed.append(f"{frame.get_close_code()} {frame.get_close_message()!r}")
            transport.disconnect()
            return
        if frame.msg_type != WSMsgType.TEXT:
            return
        if not self.acked.done():
            self.acked.set_result(None)
        if not self.sampled:
            if frame.get_payload_as_memoryview()[: len(ODDS_UPDATE)] == ODDS_UPDATE:
                self.results.ws_messages += 1
            return
        now = clock()
        payload = frame.get_payload_as_bytes()
        seen = self.decoded.get(payload)
        if seen is None:
            message = json.loads(payload)
            if message["type"] != "odds_update":
                return
            data, sent = message["data"], datetime.fromisoformat(message["timestamp"]).timestamp()
            seen = self.decoded[payload] = (data["event_id"], data["bookmaker"], sent)
        event_id, bookmaker, sent = seen
        self.last[0] = now
        r = self.results
        r.ws_messages += 1
        r.ws_latency_ms.append(self.acks.latency_ms(event_id, bookmaker, now))
        r.ws_upstream_ms.append(self.acks.latency_ms(event_id, bookmaker, sent))
        r.ws_delivery_ms.append(max(0.0, (now - sent) * 1000))


class Crowd:
    """The sockets that only count (bench/feed_crowd.py), in a process of their own: browsers parse their own frames,
    so the measuring sockets here are not queued behind the crowd's ~65,000 frames per writer commit."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, url: str, sockets: int) -> Crowd:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.feed_crowd", url, str(sockets),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=Path(__file__).parent.parent,
        )  # fmt: skip
        crowd = cls(process)
        line = await asyncio.wait_for(crowd._line(), 600)
        if line != b"connected\n":
            raise RuntimeError(f"the crowd of {sockets} WebSockets did not connect (exit {process.returncode})")
        logger.info("%d counting WebSockets connected in their own process (pid %d)", sockets, process.pid)
        return crowd

    async def _line(self) -> bytes:
        assert self.process.stdout is not None
        return await self.process.stdout.readline()

    def _say(self, line: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line)

    def check_alive(self) -> None:
        if self.process.returncode is not None:
            raise RuntimeError(f"the crowd of WebSockets exited ({self.process.returncode})")

    def reset(self) -> None:
        self._say(b"reset\n")

    async def report(self, results: Results) -> None:
        self._say(b"report\n")
        counted = json.loads(await asyncio.wait_for(self._line(), 60))
        results.ws_messages += counted["messages"]
        results.sockets_closed += counted["closed"]
        results.client_cpu_s += counted["cpu_s"]
        results.client_processes += 1

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()


async def read_stream(call: grpc.aio.UnaryStreamCall, acks: Acks, results: Results, last: list[float]) -> None:
    try:
        async for m in call:
            if m.kind == pb.STREAM_MESSAGE_KIND_DELTA:
                record_delta(m, acks, results, last)
            elif m.resume_token:
                results.images_done += 1
    except grpc.aio.AioRpcError as exc:
        # CANCELLED is the benchmark's own cancel at the end, and only then: a server may cancel a call too.
        if exc.code() != grpc.StatusCode.CANCELLED or not results.closing:
            results.stream_errors.append(f"{exc.code().name}: {exc.details()}")


def record_delta(m: pb.SubscribeResponse, acks: Acks, results: Results, last: list[float]) -> None:
    now = clock()
    last[0] = now
    results.stream_messages += 1
    results.stream_states += len(m.markets)
    results.stream_latency_ms += (acks.latency_ms(c.event_id, c.bookmaker, now) for c in m.changes)


async def submit_cycle(
    stub: ingest_pb2_grpc.IngestServiceStub,
    cycle: workload.Cycle,
    on_ack: Callable[[list[tuple[int, str]]], None],
    seconds: float = 0.0,
) -> None:
    """Batch i is submitted `i * seconds / batches` after the start (as a scraper stores its batches through a
    cycle), or at once when `seconds` is 0; at most 4 in flight either way."""
    in_flight = asyncio.Semaphore(4)
    began = time.perf_counter()
    step = seconds / max(1, len(cycle.batches))

    async def one(i: int, raw: bytes) -> None:
        request = ingest_pb2.SubmitSnapshotsRequest.FromString(raw)
        await asyncio.sleep(max(0.0, began + i * step - time.perf_counter()))
        async with in_flight:
            await stub.SubmitSnapshots(request, timeout=300)
        on_ack([(s.event.id, s.bookmaker) for s in request.snapshots])

    await asyncio.gather(*(one(i, raw) for i, raw in enumerate(cycle.batches)))


def stream_selections(event_ids: list[int], streams: int, per_stream: int) -> list[list[int]]:
    """Stream i follows the i-th slice of `per_stream` events (wrapping around), or every event with 0: a client of
    the stream follows the matches it trades rather than the whole book. (An image of all ~430,000 markets is seconds
    of the query service's CPU per stream.)"""
    if per_stream <= 0 or per_stream >= len(event_ids):
        return [[] for _ in range(streams)]
    n = len(event_ids)
    return [[event_ids[(i * per_stream + j) % n] for j in range(per_stream)] for i in range(streams)]


async def until(condition: Callable[[], bool], what: str, within: float, check: Callable[[], None]) -> None:
    deadline = time.monotonic() + within
    while not condition():
        check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {within:.0f}s")
        await asyncio.sleep(0.1)


async def run(args: argparse.Namespace, server_url: str, results: Results) -> None:
    server = Server(server_url)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-feed-"))
    services: list[ServiceProcess] = []
    ok = False
    tasks: list[asyncio.Task[None]] = []
    crowd: Crowd | None = None
    try:
        work = workload.generate(
            events=args.events, cycles=2, change_rate=args.change_rate, seed=args.seed, batch_size=args.batch_size,
            start=datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30),
        )  # fmt: skip
        dsn = await server.create("feed")
        await asyncio.to_thread(migrate.upgrade, dsn)
        writer_port, query_port, ingest_port, gateway_port = (free_port() for _ in range(4))

        def start(name: str, env: dict[str, str]) -> ServiceProcess:
            service = ServiceProcess(name, f"services.{name}.main", {"LOG_LEVEL": "WARNING", **env}, log_dir)
            services.append(service)
            return service

        writer = start("writer", {"DATABASE_URL": dsn, "WRITER_LISTEN": f"127.0.0.1:{writer_port}"})
        await wait_serving(writer, writer_port)
        query = start(
            "query", {"DATABASE_URL": dsn, "QUERY_LISTEN": f"127.0.0.1:{query_port}",
                      "QUERY_WRITERS": f"127.0.0.1:{writer_port}"},
        )  # fmt: skip
        await wait_serving(query, query_port)
        # The writer's deadline as long as the benchmark's own: on a loaded machine a flat-out batch can take longer
        # than ingest's default 30 s, and the run would end on it.
        ingest = start("ingest", {"INGEST_LISTEN": f"127.0.0.1:{ingest_port}",
                                  "INGEST_WRITERS": f"127.0.0.1:{writer_port}",
                                  "INGEST_WRITER_TIMEOUT_SECONDS": "300"})  # fmt: skip
        await wait_serving(ingest, ingest_port)
        gateway = start(
            "gateway", {"GATEWAY_PORT": str(gateway_port), "GATEWAY_QUERY_ADDRESS": f"127.0.0.1:{query_port}"}
        )
        await wait_http(gateway, f"http://127.0.0.1:{gateway_port}/api/health")

        def check() -> None:
            for s in services:
                s.check_alive()
            if crowd is not None:
                crowd.check_alive()
            for task in tasks:  # the clients' own: a failure ends the run rather than skewing it
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise RuntimeError("a benchmark client task failed") from task.exception()

        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{ingest_port}", options=client_options()) as ingest_channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{query_port}", options=client_options()) as query_channel,
        ):
            stub = ingest_pb2_grpc.IngestServiceStub(ingest_channel)
            began = time.perf_counter()
            await submit_cycle(stub, work.cycles[0], lambda _: None)
            logger.info("seed cycle submitted in %.1fs", time.perf_counter() - began)

            acks, last = Acks(), [clock()]
            sockets: list[WSTransport] = []
            decoded: dict[bytes, Decoded] = {}
            url = f"ws://127.0.0.1:{gateway_port}/api/ws?topics=odds_updates"
            sampled = [i % SAMPLE_EVERY == 0 for i in range(args.clients)]
            if not args.crowd_in_process:
                crowd = await Crowd.start(url, sampled.count(False))
                sampled = [True] * sampled.count(True)
            for measuring in sampled:
                # As a browser: no protocol-level keepalive (the UI pings in JSON, `ping` below).
                ws, browser = await ws_connect(lambda m=measuring: Browser(acks, results, last, decoded, m), url)
                await asyncio.wait_for(browser.acked, 60)
                sockets.append(ws)
            tasks.append(asyncio.create_task(ping(sockets)))
            query_stub = query_pb2_grpc.QueryServiceStub(query_channel)
            calls = []
            if args.stream_events is None:
                args.stream_events = max(1, len(work.events) // max(1, args.streams))
            began = time.perf_counter()
            for selection in stream_selections(sorted(work.events), args.streams, args.stream_events):
                call = query_stub.Subscribe(pb.SubscribeRequest(event_ids=selection))
                calls.append(call)
                tasks.append(asyncio.create_task(read_stream(call, acks, results, last)))
            # All at once, as clients come. (Before oddstore.grpc_server.UNREQUESTED_SECONDS, 100 streams of 100 events
            # each opened at once lost 12-28 of them to gRPC's 30 s limit on a call not yet picked up.)
            await until(lambda: results.images_done + len(results.stream_errors) >= len(calls), "images", 600, check)
            if results.stream_errors:
                raise RuntimeError(f"{len(results.stream_errors)} streams ended: {results.stream_errors[0]}")
            logger.info("%d WebSockets and %d streams connected", args.clients, args.streams)
            logger.info("the streams' images received in %.1fs", time.perf_counter() - began)
            # The seed cycle's last messages, before the measurement (a message of a pair not acknowledged yet is
            # counted as beating its acknowledgement).
            await until(lambda: clock() - last[0] > QUIET_S, "the seed cycle settling", 600, check)
            for measured in (results.ws_latency_ms, results.ws_upstream_ms, results.ws_delivery_ms):
                measured.clear()
            results.stream_latency_ms.clear()
            results.ws_messages = results.stream_messages = results.stream_states = 0
            if crowd is not None:
                crowd.reset()

            cycle = work.cycles[1]
            results.observations, results.snapshots = cycle.observations, cycle.snapshots
            named = {"gateway": gateway, "query": query}
            cpu_before = {name: cpu_seconds(s.pid) for name, s in named.items()}
            client_cpu = time.process_time()

            def on_ack(pairs: list[tuple[int, str]]) -> None:
                t = clock()
                for pair in pairs:
                    acks.at[pair] = t

            began = time.perf_counter()
            await submit_cycle(stub, cycle, on_ack, args.cycle_seconds)
            results.ingest_s = time.perf_counter() - began
            last[0] = max(last[0], clock())
            logger.info("measured cycle submitted in %.1fs; waiting for the last messages", results.ingest_s)
            await until(lambda: clock() - last[0] > QUIET_S, "the messages settling", 600, check)
            for name, s in named.items():
                results.usage[name] = Usage(
                    s.status_kib("VmRSS") / 1024, s.status_kib("VmHWM") / 1024, cpu_seconds(s.pid) - cpu_before[name]
                )
            results.client_cpu_s = time.process_time() - client_cpu
            results.closing = True
            if crowd is not None:
                await crowd.report(results)
            for call in calls:
                call.cancel()
            for ws in sockets:
                ws.send_close()
                ws.disconnect()
            decoded.clear()
        ok = True
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        if crowd is not None:
            await crowd.stop()
        for service in reversed(services):
            service.stop()
        await server.drop_all()
        if ok:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            logger.error("service logs kept in %s", log_dir)


def ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def per(total: int, n: int) -> str:
    return f"{total / max(1, n):,.0f}"


def usage(u: Usage) -> str:
    return f"{u.rss_mb:,.0f} / {u.peak_rss_mb:,.0f} MB, {u.cpu_s:.1f} s"


def pace(cycle_seconds: float) -> str:
    return f"paced over {cycle_seconds:g} s" if cycle_seconds > 0 else "flat-out"


def report(results: Results, args: argparse.Namespace, wall: float) -> str:
    ws, st = results.ws_latency_ms, results.stream_latency_ms
    ws_p99, st_p99 = percentile(ws, 99), percentile(st, 99)
    gw, q = results.usage.get("gateway", Usage()), results.usage.get("query", Usage())
    processes = "1 process" if results.client_processes == 1 else f"{results.client_processes} processes"

    def verdict(value: float | None, target: float) -> str:
        return "—" if value is None else ("met" if value <= target else "missed")

    lines = [
        f"Live odds, {datetime.now(UTC):%Y-%m-%d}, {cpu_model()} ({os.cpu_count()} cores), {memory_gib():.0f} GiB; "
        f"{results.snapshots:,} snapshots / {results.observations:,} observations in the measured cycle "
        f"({pace(args.cycle_seconds)}; ingest {results.ingest_s:.1f} s), {args.clients:,} WebSockets, "
        f"{args.streams} Subscribe streams of {args.stream_events or 'all'} events each; run {wall:.0f} s",
        "",
        "| measure | this system | old system | target |",
        "|---|---|---|---|",
        f"| WebSocket: ack → odds_update p50 / p99 | {ms(percentile(ws, 50))} / {ms(ws_p99)} | {OLD_POLL_S:.0f} s poll "
        f"| p99 ≤ {TARGET_P99_MS:.0f} ms: {verdict(ws_p99, TARGET_P99_MS)} |",
        f"| … of which ack → the gateway sent it, p50 / p99 | {ms(percentile(results.ws_upstream_ms, 50))} / "
        f"{ms(percentile(results.ws_upstream_ms, 99))} | — | — |",
        f"| … of which the gateway sent it → received, p50 / p99 | {ms(percentile(results.ws_delivery_ms, 50))} / "
        f"{ms(percentile(results.ws_delivery_ms, 99))} | — | — |",
        f"| Subscribe: ack → delta p50 / p99 | {ms(percentile(st, 50))} / {ms(st_p99)} | none "
        f"| p99 ≤ {TARGET_P99_MS:.0f} ms: {verdict(st_p99, TARGET_P99_MS)} |",
        f"| odds_update messages per WebSocket per cycle | {per(results.ws_messages, args.clients)} | — | "
        "a handful per updated event |",
        f"| Subscribe messages / market states per stream per cycle | {per(results.stream_messages, args.streams)} / "
        f"{per(results.stream_states, args.streams)} | — | — |",
        f"| gateway RSS now / peak, CPU in the cycle | {usage(gw)} | — "
        f"| ≤ {TARGET_GATEWAY_RSS_MB:.0f} MB: {verdict(gw.peak_rss_mb, TARGET_GATEWAY_RSS_MB)} |",
        f"| query RSS now / peak, CPU in the cycle | {usage(q)} | — | — |",
        f"| the benchmark's clients ({processes}), CPU in the cycle | {results.client_cpu_s:.1f} s | — | — |",
    ]
    lines += [f"stream ended: {e}" for e in results.stream_errors[:5]]
    if results.sockets_closed:
        lines.append(
            f"WebSockets closed during the run: {len(results.sockets_closed)}, e.g. {results.sockets_closed[0]}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    dsn, embedded = server_dsn(args)
    results = Results()
    return run_and_report(
        lambda: run(args, dsn, results),
        lambda seconds: report(results, args, seconds),
        embedded,
        "services stopped and the database dropped",
    )


if __name__ == "__main__":
    sys.exit(main())
