"""Timing of the read benchmark: the same requests against the gateway (HTTP) and the floor (SQL),
sequential from one client and with several in flight; and freshness through ingest and the gateway."""

from __future__ import annotations

import asyncio
import logging
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc
import httpx

from bench import read_floor
from bench.http_client import HttpClient
from bench.read_data import DataSet
from oddstore.convert import to_timestamp
from oddstore.v1 import ingest_pb2, ingest_pb2_grpc, query_pb2, snapshot_pb2

logger = logging.getLogger(__name__)

WARM_CALLS = 20
PAGE_SIZE = 50
FRESH_MARKET = "3743"
FRESH_TIMEOUT = 5.0
FRESH_WARM = 3  # untimed changes first, as reads get untimed calls


class BadResponse(RuntimeError):
    """A read answered something other than what the benchmark asked for."""


@dataclass(frozen=True, slots=True)
class Requests:
    """One parameter list per read, shared by the gateway and the floor."""

    pages: list[int]
    details: list[int]
    histories: list[tuple[int, str, str, float | None]]
    instants: list[tuple[int, datetime]]


def build_requests(data: DataSet, n: int, seed: int) -> Requests:
    rng = random.Random(seed + 2)
    pages_total = max(1, -(-len(data.events) // PAGE_SIZE))
    # History is opened from the inline odds cells of the list: those markets are the ones read.
    inline = [data.markets[i] for i in data.inline]
    span = (data.captured_at - (data.history_start or data.captured_at)).total_seconds()
    return Requests(
        pages=[1 + k % pages_total for k in range(n)],
        details=[rng.choice(data.events) for _ in range(n)],
        histories=[(m.event_id, m.slug, m.market_id, m.line) for m in (rng.choice(inline) for _ in range(n))],
        instants=[
            (rng.choice(data.events), data.captured_at - timedelta(seconds=rng.uniform(3600, max(3600.0, span))))
            for _ in range(n)
        ],
    )


@dataclass(slots=True)
class Timing:
    latencies: list[float] = field(default_factory=list)  # seconds, sequential requests
    sequential_seconds: float = 0.0
    concurrent: int = 0
    concurrent_requests: int = 0
    concurrent_seconds: float = 0.0
    sizes: list[int] = field(default_factory=list)  # rows (floor) or bytes (gateway) per response

    def q(self, p: float) -> float | None:
        if not self.latencies:
            return None
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, max(0, round(p * len(xs)) - 1))]

    @property
    def p50(self) -> float | None:
        return statistics.median(self.latencies) if self.latencies else None

    @property
    def p99(self) -> float | None:
        return self.q(0.99)

    @property
    def sequential_rate(self) -> float | None:
        return len(self.latencies) / self.sequential_seconds if self.sequential_seconds else None

    @property
    def concurrent_rate(self) -> float | None:
        return self.concurrent_requests / self.concurrent_seconds if self.concurrent_seconds else None

    @property
    def median_size(self) -> float | None:
        return statistics.median(self.sizes) if self.sizes else None


Call = Callable[[Any], Awaitable[int]]


async def measure(name: str, call: Call, params: Sequence[Any], concurrency: int) -> Timing:
    """Sequential requests over `params`, then the same list again with `concurrency` in flight."""
    return (await measure_side_by_side({name: call}, params, concurrency))[name]


async def measure_side_by_side(calls: Mapping[str, Call], params: Sequence[Any], concurrency: int) -> dict[str, Timing]:
    """Per name, as `measure`; the sequential latencies interleaved: each request of `params` is made by every call
    back to back, the order rotating by one per request. Timed one after the other over the whole list, the first
    paid for every page the read brought into PostgreSQL's shared buffers and the next found them there: a
    point-in-time read measured 13.8 ms p50 for the first reader against 8.0 ms for the next (2026-11-28, shared
    buffers 128 MB against ~600 MB of history read), and the gateway was always first. Interleaved, each call is
    first for a third of the requests. The concurrent rates stay one call at a time over the list."""
    names = list(calls)
    timings = {name: Timing(concurrent=concurrency) for name in names}
    for i, p in enumerate(params[:WARM_CALLS]):
        for name in _rotated(names, i):
            await calls[name](p)
    for i, p in enumerate(params):
        for name in _rotated(names, i):
            t = time.perf_counter()
            size = await calls[name](p)
            timings[name].latencies.append(time.perf_counter() - t)
            timings[name].sizes.append(size)
    for timing in timings.values():
        timing.sequential_seconds = sum(timing.latencies)

    for name in names:
        timing = timings[name]
        timing.concurrent_seconds = await _in_flight(calls[name], params, concurrency)
        timing.concurrent_requests = len(params)
        logger.info(
            "%s: p50 %.2f ms, p99 %.2f ms, %.0f req/s sequential, %.0f req/s with %d in flight",
            name,
            1e3 * (timing.p50 or 0),
            1e3 * (timing.p99 or 0),
            timing.sequential_rate or 0,
            timing.concurrent_rate or 0,
            concurrency,
        )
    return timings


def _rotated(names: list[str], i: int) -> list[str]:
    return names[i % len(names) :] + names[: i % len(names)]


async def _in_flight(call: Call, params: Sequence[Any], concurrency: int) -> float:
    """Seconds to make every request of `params` with `concurrency` in flight."""
    queue = list(reversed(params))

    async def worker() -> None:
        while queue:
            await call(queue.pop())

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - began


# -- the floor -------------------------------------------------------------------------------------


class Floor:
    """Each call takes one connection of the pool, as a service handling a request would."""

    def __init__(self, pool: asyncpg.Pool, now: datetime) -> None:
        self.pool = pool
        self.now = now

    async def event_list(self, page: int) -> int:
        async with self.pool.acquire() as conn:
            return await read_floor.event_list(conn, self.now, page, PAGE_SIZE)

    async def event_detail(self, event_id: int) -> int:
        async with self.pool.acquire() as conn:
            return await read_floor.event_detail(conn, event_id)

    async def history(self, key: tuple[int, str, str, float | None]) -> int:
        async with self.pool.acquire() as conn:
            return await read_floor.history(conn, *key)

    async def event_at(self, key: tuple[int, datetime]) -> int:
        async with self.pool.acquire() as conn:
            return await read_floor.event_at(conn, *key)


# -- the query service directly --------------------------------------------------------------------


class QueryDirect:
    """The query service's gRPC API without the gateway: timed to the response bytes, not decoded. The methods are
    the ones the gateway calls: the contract-JSON reads (issue 14; the protobuf ones before)."""

    _SERVICE = query_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name

    def __init__(self, channel: grpc.aio.Channel) -> None:
        def method(name: str) -> Any:
            return channel.unary_unary(
                f"/{self._SERVICE}/{name}",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=None,
            )

        self._list, self._get = method("ListEventsJson"), method("GetEventJson")
        self._history, self._at = method("GetMarketHistoryJson"), method("GetEventAtJson")

    async def event_list(self, page: int) -> int:
        return len(await self._list(query_pb2.ListEventsRequest(page=page, page_size=PAGE_SIZE), timeout=30))

    async def event_detail(self, event_id: int) -> int:
        return len(await self._get(query_pb2.GetEventRequest(event_id=event_id), timeout=30))

    async def history(self, key: tuple[int, str, str, float | None]) -> int:
        event_id, slug, market_id, line = key
        request = query_pb2.GetMarketHistoryRequest(event_id=event_id, market_id=market_id, bookmaker_slug=slug)
        if line is not None:
            request.line = line
        return len(await self._history(request, timeout=30))

    async def event_at(self, key: tuple[int, datetime]) -> int:
        event_id, at = key
        return len(await self._at(query_pb2.GetEventAtRequest(event_id=event_id, at=to_timestamp(at)), timeout=30))


# -- the gateway -----------------------------------------------------------------------------------


def iso_z(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Gateway:
    """Times a request from send to the last byte of the body; status checked, JSON not parsed. Through
    bench.http_client, a client as cheap as the floor's asyncpg (httpx cost more than the gateway's own work)."""

    def __init__(self, client: HttpClient) -> None:
        self.client = client

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> int:
        status, body = await self.client.get(path, params)
        if status != 200:
            raise BadResponse(f"GET {path} {params or ''} -> {status}: {body[:300]!r}")
        return len(body)

    async def event_list(self, page: int) -> int:
        return await self._get("/api/events", {"page_size": PAGE_SIZE, "page": page})

    async def nothing(self, _: object) -> int:
        """An out-of-scope route the gateway answers at once with 404: HTTP and framework cost alone."""
        status, body = await self.client.get("/api/scheduler/status")
        if status != 404:
            raise BadResponse(f"GET /api/scheduler/status -> {status}")
        return len(body)

    async def event_detail(self, event_id: int) -> int:
        return await self._get(f"/api/events/{event_id}")

    async def history(self, key: tuple[int, str, str, float | None]) -> int:
        event_id, slug, market_id, line = key
        params: dict[str, Any] = {"bookmaker_slug": slug}
        if line is not None:
            params["line"] = line
        return await self._get(f"/api/events/{event_id}/markets/{market_id}/history", params)

    async def event_at(self, key: tuple[int, datetime]) -> int:
        event_id, at = key
        return await self._get(f"/api/events/{event_id}/at", {"at": iso_z(at)})


async def check_gateway(client: httpx.AsyncClient, data: DataSet, requests: Requests, floor: Floor) -> dict[str, Any]:
    """Spot checks that the gateway answers what the floor reads, before anything is timed."""
    facts: dict[str, Any] = {}
    page = (await client.get("/api/events", params={"page_size": PAGE_SIZE, "page": 1})).json()
    if len(page["events"]) != min(PAGE_SIZE, len(data.events)) or page["total"] != len(data.events):
        raise BadResponse(f"event list: {len(page['events'])} events, total {page['total']}, {len(data.events)} loaded")
    if [e["id"] for e in page["events"]][:5] != data.events[:5]:
        logger.warning(
            "event list: first ids %s, by kickoff %s", [e["id"] for e in page["events"]][:5], data.events[:5]
        )
    event_id = requests.details[0]
    detail = (await client.get(f"/api/events/{event_id}")).json()
    markets = sum(len(b["markets"]) for b in detail["markets_by_bookmaker"])
    expected = sum(1 for m in data.markets if m.event_id == event_id)
    facts["detail_markets"] = markets
    if markets != expected:
        logger.warning("event detail %d: %d markets, %d current", event_id, markets, expected)
    key = requests.histories[0]
    params: dict[str, Any] = {"bookmaker_slug": key[1]} | ({"line": key[3]} if key[3] is not None else {})
    hist = (await client.get(f"/api/events/{key[0]}/markets/{key[2]}/history", params=params)).json()
    async with floor.pool.acquire() as conn:
        rows = len(await conn.fetch(read_floor.HISTORY, *key))
    facts["history_points"], facts["history_rows"] = len(hist["history"]), rows
    logger.info("history of %s: %d points through the gateway, %d history rows in SQL", key, len(hist["history"]), rows)
    at_key = requests.instants[0]
    at = (await client.get(f"/api/events/{at_key[0]}/at", params={"at": iso_z(at_key[1])})).json()
    facts["at_markets"] = sum(len(b["markets"]) for b in at["markets_by_bookmaker"])
    logger.info("point in time of %s: %d markets", at_key, facts["at_markets"])
    return facts


# -- freshness -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Freshness:
    samples: list[float] = field(default_factory=list)  # ack -> seen through the gateway (upper bound)
    lower: list[float] = field(default_factory=list)  # ack -> start of the last poll that did not see it
    acks: list[float] = field(default_factory=list)  # submit -> ingest acknowledgement
    polls: list[float] = field(default_factory=list)  # duration of one poll (event detail)
    timeouts: int = 0
    detail: list[tuple[int, int, float, float, float]] = field(default_factory=list)  # sample, event, up, low, ack
    warm: list[tuple[float, float, float, list[float]] | None] = field(default_factory=list)  # untimed, first

    def q(self, xs: list[float], p: float) -> float | None:
        if not xs:
            return None
        s = sorted(xs)
        return s[min(len(s) - 1, max(0, round(p * len(s)) - 1))]


def _odds_of(detail: dict[str, Any], slug: str, market_id: str) -> float | None:
    for book in detail["markets_by_bookmaker"]:
        if book["bookmaker_slug"] == slug:
            for m in book["markets"]:
                if m["betpawa_market_id"] == market_id and m["outcomes"]:
                    return float(m["outcomes"][0]["odds"])
    return None


async def _change_once(
    stub: ingest_pb2_grpc.IngestServiceStub, client: httpx.AsyncClient, data: DataSet, event_id: int, k: int
) -> tuple[float, float, float, list[float]] | None:
    """(ack -> seen, ack -> last miss, submit -> ack, poll durations) of one change, None if never seen."""
    snapshot = snapshot_pb2.Snapshot()
    snapshot.CopyFrom(data.home_snapshots[event_id])
    market = next(m for m in snapshot.markets if m.market_id == FRESH_MARKET and not m.HasField("line"))
    new_odds = round(market.outcomes[0].odds + 0.05 + 0.01 * (k % 7), 2)
    market.outcomes[0].odds = new_odds
    snapshot.captured_at.CopyFrom(to_timestamp(datetime.now(UTC)))
    request = ingest_pb2.SubmitSnapshotsRequest(snapshots=[snapshot])
    sent = time.perf_counter()
    response = await stub.SubmitSnapshots(request, timeout=30)
    acked = time.perf_counter()
    status = response.results[0].status
    if status != snapshot_pb2.SNAPSHOT_STATUS_ACCEPTED:
        raise BadResponse(
            f"freshness: snapshot of {event_id} {snapshot_pb2.SnapshotStatus.Name(status)}: "
            f"{response.results[0].reason}"
        )
    polls: list[float] = []
    last_miss = acked
    while True:
        t = time.perf_counter()
        r = await client.get(f"/api/events/{event_id}")
        seen = time.perf_counter()
        polls.append(seen - t)
        if r.status_code == 200 and _odds_of(r.json(), "betpawa", FRESH_MARKET) == new_odds:
            return seen - acked, max(0.0, last_miss - acked), acked - sent, polls
        last_miss = t
        if seen - acked > FRESH_TIMEOUT:
            logger.warning("freshness: event %d not updated after %.0fs", event_id, FRESH_TIMEOUT)
            return None


async def freshness(data: DataSet, client: httpx.AsyncClient, ingest_port: int, samples: int, seed: int) -> Freshness:
    """Per sample: one event's full Betpawa snapshot with its 1X2 home price moved, submitted through
    ingest; then the gateway's event detail is polled back to back until the new price shows. The
    first FRESH_WARM changes after the write path started are kept apart (reported, not in the figure)."""
    result = Freshness()
    rng = random.Random(seed + 3)
    events = [e for e in data.events if e in data.home_snapshots]
    chosen = rng.sample(events, min(FRESH_WARM + samples, len(events)))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ingest_port}") as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        for k, event_id in enumerate(chosen):
            one = await _change_once(stub, client, data, event_id, k)
            if k < FRESH_WARM:
                result.warm.append(one)
                logger.info("freshness: untimed change %d: %s", k + 1, one and f"{1e3 * one[0]:.1f} ms")
            elif one is None:
                result.timeouts += 1
            else:
                up, low, ack, polls = one
                result.samples.append(up)
                result.lower.append(low)
                result.acks.append(ack)
                result.polls += polls
                result.detail.append((k - FRESH_WARM, event_id, up, low, ack))
            n = k + 1 - FRESH_WARM
            if n > 0 and n % 10 == 0:
                logger.info("freshness: %d/%d samples, last %.1f ms", n, samples, 1e3 * (result.samples or [0])[-1])
            await asyncio.sleep(0.05)
    for k, event_id, up, low, ack in sorted(result.detail, key=lambda x: -x[2])[:5]:
        logger.info(
            "freshness: slowest: sample %d (event %d): visible within %.1f ms (not before %.1f ms), ack took %.1f ms",
            k + 1, event_id, 1e3 * up, 1e3 * low, 1e3 * ack,
        )  # fmt: skip
    return result
