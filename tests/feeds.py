"""A Writer behind its real gRPC server on loopback, so that query services follow its change feed as in
production; a safety-check sleep that tests step instead of waiting through; a monotonic clock they move."""

from __future__ import annotations

import asyncio

import asyncpg

from oddstore.grpc_server import Server, create_server
from oddstore.v1 import writer_pb2_grpc
from services.writer.bootstrap import SERVICE_NAME
from services.writer.grpc_api import WriterServicer
from services.writer.writer import Writer


class ServedWriter:
    """`writer` writes in-process (tests call it directly); its change feed is served on `address`."""

    def __init__(self, pool: asyncpg.Pool, writer: Writer, server: Server) -> None:
        self.pool = pool
        self.writer = writer
        self.server = server

    @classmethod
    async def start(cls, pool: asyncpg.Pool, writer: Writer | None = None) -> ServedWriter:
        w = writer if writer is not None else Writer(pool)
        server = create_server(
            "127.0.0.1:0",
            lambda s: writer_pb2_grpc.add_WriterServiceServicer_to_server(WriterServicer(w), s),
            [SERVICE_NAME],
        )
        await server.start()
        return cls(pool, w, server)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    async def stop(self) -> None:
        """As the writer's own shutdown: its feed's streams end, then the server stops."""
        self.writer.changes.close()
        await self.server.stop(1)


class SteppedSleep:
    """An injected sleep that returns only when the test calls `step()`; `waiting` tells it is asleep."""

    def __init__(self) -> None:
        self._step = asyncio.Event()
        self.waiting = asyncio.Event()

    async def __call__(self, _seconds: float) -> None:
        self.waiting.set()
        await self._step.wait()
        self._step.clear()
        self.waiting.clear()

    def step(self) -> None:
        self._step.set()


class ManualTimer:
    """An injected monotonic clock (`time.monotonic`'s place) that only the test moves."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
