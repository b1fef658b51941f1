"""Calls that reach a server while its event loop is busy for longer than gRPC's default of 30 s wait for their turn
instead of ending CANCELLED (oddstore.grpc_server.UNREQUESTED_SECONDS): 100 Subscribe images built at once kept the
query service's loop that busy. The server runs on an event loop of its own thread, blocked by the first call's
handler; the other calls arrive meanwhile. Takes ~35 s."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from oddstore.grpc_server import create_server

BUSY_SECONDS = 33.0  # past gRPC's 30 s for a call not yet picked up, with a margin
METHOD = "/test.Busy/Call"


BLOCKING = threading.Event()  # set once the server's loop is blocked


def _register(server: grpc.aio.Server) -> None:
    async def call(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if request == b"block":
            BLOCKING.set()
            time.sleep(BUSY_SECONDS)  # noqa: ASYNC251 - long work between two awaits: the loop runs nothing else
        return request

    handler = grpc.unary_unary_rpc_method_handler(call)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Busy", {"Call": handler}),))


@pytest.fixture
def port() -> Iterator[int]:
    started: queue.Queue[tuple[int, asyncio.AbstractEventLoop, asyncio.Event]] = queue.Queue()

    async def serve() -> None:
        server = create_server("127.0.0.1:0", _register, [])
        await server.start()
        stop = asyncio.Event()
        started.put((server.port, asyncio.get_running_loop(), stop))
        await stop.wait()
        await server.stop(0)

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    port, loop, stop = started.get(timeout=30)
    yield port
    loop.call_soon_threadsafe(stop.set)
    thread.join(timeout=60)


async def test_calls_arriving_while_the_loop_is_busy_past_30_s_are_served(port: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(METHOD)
        busy = asyncio.ensure_future(call(b"block", timeout=120))
        assert await asyncio.to_thread(BLOCKING.wait, 30)
        waiting = [call(f"call {i}".encode(), timeout=120) for i in range(3)]
        assert await asyncio.gather(*waiting) == [b"call 0", b"call 1", b"call 2"]
        assert await busy == b"block"
