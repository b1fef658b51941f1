"""uvicorn's WebSocket protocol (websockets-sansio) with the frames an application sends in one loop tick written to
the socket with one `transport.write`.

Why: a writer commit (~65 updated events) is ~65 frames to each of 1,000 sockets at once. uvicorn writes every
frame with its own `transport.write`, i.e. one `send()` system call and one loopback/TCP segment per frame; profiled
(bench/ws_fanout.py, 300 sockets, deflate off) the `send()` calls were 55% of the gateway's time in the send path.
Gathered per tick, the ~65 frames of a commit leave as one write per socket. Frames are encoded exactly as before
(the same websockets `ServerProtocol`), in the same order: anything else uvicorn writes (a pong, a close) takes
the pending frames with it first, since it drains the same buffer.

And it offers the application a way past the ASGI send path altogether (FRAMES_EXTENSION): live.py encodes an
update's frames once and hands the same bytes to every socket, one `transport.write` each.

This relies on uvicorn's attributes (`conn`, `transport`, `writable`, `close_sent`, ...), so uvicorn is pinned;
tests/e2e/test_gateway_websocket.py runs the gateway with this protocol.
"""

from __future__ import annotations

from typing import Any

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.http11 import Request

# Written at once beyond this much pending (~50 frames), so a long burst still meets the transport's flow control
# (pause_writing at 64 KiB) as it did frame by frame, a slow browser's frames wait in its bounded queue (live.Socket)
# rather than in the transport, and the first sockets' bytes leave while later sockets' frames are still encoded.
# Measured (bench/ws_fanout.py, 1,000 sockets × 65 frames): 3.7 µs per frame at 16 KiB, 3.9 µs at 64 KiB.
FLUSH_BYTES = 16 * 1024

# The ASGI extension (in the scope of an upgraded connection): {"write": write_frames, "abort": drop the connection}.
FRAMES_EXTENSION = "oddstore.websocket.frames"


class CoalescingWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending = 0  # bytes of frames encoded and not yet written
        self._flush_scheduled = False

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] != "websocket.send" or not self.handshake_complete or self.close_sent:
            await super().send(message)  # the handshake, close, refusals: uvicorn's own path
            return
        if self.initial_response is not None:
            await super().send(message)  # uvicorn's error for a send after an HTTP response
            return
        await self.writable.wait()
        if self.disconnected:
            raise ClientDisconnected()
        data = message.get("bytes")
        text = message.get("text")
        try:
            if data is not None:
                self.conn.send_binary(data)
            elif text is not None:
                data = text.encode()
                self.conn.send_text(data)
            else:
                return
        except InvalidState:
            raise ClientDisconnected() from None
        self._pending += len(data)
        if self._pending >= FLUSH_BYTES:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if not self.close_sent:  # upgraded; the application's task has not run yet
            self.scope["extensions"][FRAMES_EXTENSION] = {"write": self.write_frames, "abort": self.transport.abort}

    def write_frames(self, frames: bytes) -> int:
        """Writes server frames encoded by the application (unmasked, uncompressed: valid whatever was negotiated),
        after what this socket has pending. Returns the bytes the transport holds unsent, for the caller's bound:
        this path does not wait for the transport to drain as `send` does."""
        if not self.handshake_complete or self.close_sent or self.disconnected or self.transport.is_closing():
            return 0
        self._flush()
        self.transport.write(frames)
        return self.transport.get_write_buffer_size()

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._pending = 0
        output = self.conn.data_to_send()
        if output and not self.transport.is_closing():
            self.transport.write(b"".join(output))


# How the gateway serves /api/ws, for uvicorn.Config (bootstrap and the tests that serve the app as it does): frames
# written per loop tick, not per frame, and uncompressed. Browsers offer permessage-deflate and uvicorn accepts it
# by default; each socket then compresses every ~300-byte frame with its own context, 1,000 times over per update.
# Measured with bench/ws_fanout.py (BENCHMARKS.md).
UVICORN_WEBSOCKETS: dict[str, Any] = {"ws": CoalescingWebSocketProtocol, "ws_per_message_deflate": False}
