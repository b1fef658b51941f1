"""WebSocket fan-out benchmark: the gateway's cost per `odds_update` frame sent, with N browsers connected.

Run as `python -m bench.ws_fanout [--clients 1000] [--events 65] [--rounds 3]`. For each variant the real gateway
app (services.gateway.app, with a query client that never answers: updates are pushed straight into its LiveOdds)
runs under uvicorn in a child process; `--clients` WebSockets (`/api/ws?topics=odds_updates`, offering
permessage-deflate as browsers do) connect from this process; then `--rounds` times `--events` updates for new
events are pushed at once (SIGUSR1 to the child, as one writer commit of ~200 snapshots reaches the gateway as ~65
events), so each round is events × clients frames. Measured per variant: push → last frame received (ms, mean of
the rounds) and the gateway's CPU (utime + stime from /proc) per frame sent, in µs. Variants: `baseline` (uvicorn's
defaults: permessage-deflate accepted, one `transport.write` per frame; the gateway before 2026-11-27), then each
change on top of the last. The clients share the machine with the gateway: push → last frame includes their time.
Progress goes to stderr; the table to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from google.protobuf.timestamp_pb2 import Timestamp
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.asyncio.client import ClientConnection, connect

from bench.feed import cpu_seconds
from bench.results import configure_logging
from bench.services import free_port
from oddstore import runtime
from oddstore.v1 import query_pb2
from services.gateway.app import create_app
from services.gateway.live import LiveOdds
from services.gateway.ws_protocol import CoalescingWebSocketProtocol

logger = logging.getLogger("bench.ws_fanout")

# name → (permessage-deflate accepted by the server, the protocol serving /api/ws): each variant is the one before plus
# one change. Protocols: uvicorn's own (one `transport.write` per frame); "tick", ws_protocol.py's frames written once
# per loop tick; "direct", the same with the updates' frames encoded once and written straight to every socket
# (FRAMES_EXTENSION), as served.
VARIANTS: dict[str, tuple[bool, str]] = {
    "baseline": (True, "uvicorn"),
    "deflate off": (False, "uvicorn"),
    "+ one write per tick": (False, "tick"),
    "+ frames encoded once": (False, "direct"),
}


class TickProtocol(CoalescingWebSocketProtocol):
    """ws_protocol.py's protocol without FRAMES_EXTENSION: the updates take the ASGI send path."""

    handle_connect = WebSocketsSansIOProtocol.handle_connect


PROTOCOLS: dict[str, Any] = {
    "uvicorn": "websockets-sansio",
    "tick": TickProtocol,
    "direct": CoalescingWebSocketProtocol,
}


@dataclass
class Round:
    latency_ms: float
    cpu_s: float
    frames: int


@dataclass
class Result:
    variant: str
    negotiated: str = ""
    rounds: list[Round] = field(default_factory=list)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.ws_fanout", description=__doc__.partition("\n")[0])
    p.add_argument("--clients", type=int, default=1000, help="WebSockets connected to the gateway")
    p.add_argument("--events", type=int, default=65, help="events updated per push (one writer commit: ~65)")
    p.add_argument("--rounds", type=int, default=3, help="pushes per variant")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, of: " + ", ".join(VARIANTS))
    p.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)  # child mode: the gateway's port
    p.add_argument("--deflate", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--protocol", default="direct", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---- the gateway (child process) ----


class SilentQuery:
    """Stands in for the query client: opens, closes, and its Subscribe stream never yields."""

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def subscribe(self, request: Any, **_: Any) -> AsyncGenerator[Any, None]:
        await asyncio.Event().wait()
        yield  # pragma: no cover


async def serve(args: argparse.Namespace) -> None:
    runtime.tune_gc()
    live = LiveOdds(SilentQuery(), window_seconds=1.0)  # type: ignore[arg-type]
    app = create_app(SilentQuery(), live=live, ws_idle_seconds=3600)  # type: ignore[arg-type]
    next_event = [1]
    captured = Timestamp(seconds=int(time.time()))

    def push() -> None:
        first = next_event[0]
        next_event[0] += args.events
        changes = [
            query_pb2.OddsChanged(event_id=e, bookmaker="betpawa", snapshots=3, captured_at=captured)
            for e in range(first, first + args.events)
        ]
        live.record(changes)

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, push)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.serve,
        log_config=None,
        access_log=False,
        lifespan="on",
        ws=PROTOCOLS[args.protocol],
        ws_per_message_deflate=bool(args.deflate),
    )
    await uvicorn.Server(config).serve()


# ---- the browsers (this process) ----


async def read(ws: ClientConnection, received: list[int], wake: asyncio.Event) -> None:
    with contextlib.suppress(Exception):
        async for frame in ws:
            if isinstance(frame, str) and frame.startswith('{"type":"odds_update"'):
                received[0] += 1
                wake.set()


def start_gateway(port: int, deflate: bool, protocol: str, events: int) -> subprocess.Popen[bytes]:
    argv = ["--serve", str(port), "--deflate", str(int(deflate)), "--protocol", protocol]
    argv += ["--events", str(events)]
    return subprocess.Popen([sys.executable, "-m", "bench.ws_fanout", *argv], stderr=subprocess.DEVNULL)


async def wait_up(child: subprocess.Popen[bytes], url: str) -> None:
    async with httpx.AsyncClient(timeout=2.0) as client:
        for _ in range(600):
            if child.poll() is not None:
                raise RuntimeError(f"the gateway exited with {child.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the gateway is not answering {url}")


async def measure(args: argparse.Namespace, variant: str) -> Result:
    deflate, protocol = VARIANTS[variant]
    port = free_port()
    child = start_gateway(port, deflate, protocol, args.events)
    result = Result(variant)
    sockets: list[ClientConnection] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        await wait_up(child, f"http://127.0.0.1:{port}/docs")
        gate = asyncio.Semaphore(50)

        async def open_one() -> ClientConnection:
            async with gate:
                ws = await connect(f"ws://127.0.0.1:{port}/api/ws?topics=odds_updates", ping_interval=None)
                await ws.recv()  # connection_ack
                return ws

        sockets = list(await asyncio.gather(*(open_one() for _ in range(args.clients))))
        result.negotiated = sockets[0].response.headers.get("Sec-WebSocket-Extensions", "") or "none"
        received, wake = [0], asyncio.Event()
        tasks = [asyncio.create_task(read(ws, received, wake)) for ws in sockets]
        await asyncio.sleep(1.0)  # the handshakes' work done before the first round
        per_round = args.events * args.clients
        for _ in range(args.rounds):
            target = received[0] + per_round
            cpu0 = cpu_seconds(child.pid)
            began = time.perf_counter()
            os.kill(child.pid, signal.SIGUSR1)
            while received[0] < target:
                wake.clear()
                await asyncio.wait_for(wake.wait(), 120)
            latency = (time.perf_counter() - began) * 1000
            result.rounds.append(Round(latency, cpu_seconds(child.pid) - cpu0, per_round))
            logger.info("%s: %d frames, last after %.0f ms", variant, per_round, latency)
            await asyncio.sleep(1.5)  # past the conflation window, so the next round's events go out at once
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True), 30)
        child.terminate()
        child.wait(30)
    return result


def report(results: list[Result], args: argparse.Namespace) -> str:
    lines = [
        f"WebSocket fan-out: {args.clients} sockets, {args.events} events per push, {args.rounds} pushes per variant,"
        f" {os.cpu_count()} CPUs",
        "",
        "| variant | extension negotiated | push → last frame (ms, mean) | gateway CPU per frame (µs) |",
        "|---|---|---:|---:|",
    ]
    for r in results:
        frames = sum(x.frames for x in r.rounds)
        latency = sum(x.latency_ms for x in r.rounds) / len(r.rounds)
        us = sum(x.cpu_s for x in r.rounds) / frames * 1e6
        lines.append(f"| {r.variant} | {r.negotiated} | {latency:,.0f} | {us:.1f} |")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> list[Result]:
    return [await measure(args, v.strip()) for v in args.variants.split(",")]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.serve is not None:
        asyncio.run(serve(args))
        return 0
    configure_logging()
    results = asyncio.run(run(args))
    print(report(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
