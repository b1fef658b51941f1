"""The crowd of browsers of bench/feed.py, in a process of its own: WebSockets that only count their odds_update
messages and ping as the UI does, so that the sockets that measure (in bench/feed.py's process) are not queued behind
every other browser's frames in one event loop. A browser parses its own messages; one event loop parsing the frames of
1,000 parses ~65,000 per writer commit, ~100 ms of this machine's CPU, which was most of the delivery time the
measuring sockets reported (BENCHMARKS.md, 2026-11-27).

Run by bench/feed.py as `python -m bench.feed_crowd URL SOCKETS`. Prints `connected` once every socket has its
connection_ack; then on each line of its stdin: `reset` zeroes the counts, `report` prints them as one JSON line and
exits.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

ODDS_UPDATE = b'{"type":"odds_update"'
UI_PING_S = 30.0  # the UI pings its socket this often; the gateway closes one silent for GATEWAY_WS_IDLE_SECONDS


class Counts:
    def __init__(self) -> None:
        self.messages = 0
        self.closed: list[str] = []


class Counter(WSListener):
    def __init__(self, counts: Counts) -> None:
        self.counts = counts
        self.acked = asyncio.get_running_loop().create_future()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.acked.done():
            self.acked.set_exception(ConnectionError("disconnected before connection_ack"))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            self.counts.closed.append(f"{frame.get_close_code()} {frame.get_close_message()!r}")
            transport.disconnect()
        elif frame.msg_type == WSMsgType.TEXT:
            if not self.acked.done():
                self.acked.set_result(None)
            elif frame.get_payload_as_memoryview()[: len(ODDS_UPDATE)] == ODDS_UPDATE:
                self.counts.messages += 1


async def ping(sockets: list[WSTransport]) -> None:
    """As the UI does: without it every socket is closed as idle when the set-up (images, seed cycle) is long."""
    while True:
        await asyncio.sleep(UI_PING_S)
        for ws in sockets:
            if not ws.is_disconnected:
                ws.send(WSMsgType.TEXT, b'{"type":"ping"}')


async def main(url: str, n: int) -> None:
    counts, sockets = Counts(), []
    for _ in range(n):
        ws, counter = await ws_connect(lambda: Counter(counts), url)
        await asyncio.wait_for(counter.acked, 60)
        sockets.append(ws)
    pinging = asyncio.create_task(ping(sockets))
    print("connected", flush=True)
    cpu = time.process_time()
    while True:
        line = (await asyncio.to_thread(sys.stdin.readline)).strip()
        if line == "reset":
            counts.messages, cpu = 0, time.process_time()
        elif line in ("report", ""):  # "" : the benchmark went away
            break
    pinging.cancel()
    print(json.dumps({"messages": counts.messages, "closed": counts.closed, "cpu_s": time.process_time() - cpu}))
    for ws in sockets:
        ws.send_close()
        ws.disconnect()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
