"""The read benchmark's HTTP client for timed gateway reads: HTTP/1.1 GETs over kept-alive connections, responses
parsed by httptools (the C parser uvicorn serves with), the whole body read before a request counts as done.

Why not httpx: its AsyncClient spent ~1.5 ms of the benchmark's CPU per request. Against the same gateway in one
run, the 404 route took 1.95 ms p50 through httpx and 0.40 ms through a bare keep-alive connection, and an event
detail 4.4 against 2.7 ms: the client cost more than the gateway's own work, and made the gateway look 1.3× slower
than the direct-SQL floor (whose client, asyncpg, is itself cheap)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

import httptools


class ConnectionClosed(ConnectionError):
    """The server closed the connection before the response was complete."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.chunks: list[bytes] = []
        self.started = False  # a byte of the current response arrived
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.started = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionClosed(f"closed by the server {'during' if self.started else 'before'} the response"))

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.parser.get_status_code(), b"".join(self.chunks)))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    async def get(self, request: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.chunks, self.started = [], False
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


class HttpClient:
    """GET only; a connection per request in flight, kept alive and reused. A kept connection the server closed
    while idle (uvicorn's keep-alive timeout, 5 s; the benchmark pauses on other reads) is replaced once, as
    any client does for a GET that got no byte of answer."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._idle: list[_Connection] = []

    async def _connect(self) -> _Connection:
        _, connection = await asyncio.get_running_loop().create_connection(_Connection, self.host, self.port)
        return connection

    async def get(self, path: str, params: dict[str, object] | None = None) -> tuple[int, bytes]:
        target = f"{path}?{urlencode(params)}" if params else path
        request = f"GET {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode()
        connection = self._reusable()
        if connection is not None:
            try:
                return self._done(connection, await connection.get(request))
            except ConnectionClosed:
                if connection.started:
                    raise
        connection = await self._connect()
        return self._done(connection, await connection.get(request))

    def _reusable(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and connection.transport is not None and not connection.transport.is_closing():
                return connection
        return None

    def _done(self, connection: _Connection, answer: tuple[int, bytes]) -> tuple[int, bytes]:
        if connection.parser.should_keep_alive() and not connection.closed:
            self._idle.append(connection)
        elif connection.transport is not None:
            connection.transport.close()
        return answer

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            if connection.transport is not None:
                connection.transport.close()
