"""One client stream (QueryService.Subscribe) in domain terms: an image or a resume, then conflated deltas and
heartbeats, each step ending with a resume token. The servicer converts the messages to protobuf."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass

from services.query.cache import OddsCache
from services.query.updates import MarketDelta, OddsChanged, Selection, Updates

# Markets per message: ~100 bytes each, so a message stays far below gRPC's default 4 MiB limit of a client
# that did not raise it, and a large image reaches the client in pieces it can apply as they come.
CHUNK = 2000


class Kind(enum.Enum):
    IMAGE = 1
    DELTA = 2
    HEARTBEAT = 3


@dataclass(frozen=True, slots=True)
class Message:
    kind: Kind
    markets: Sequence[MarketDelta] = ()
    pairs: Sequence[OddsChanged] = ()
    token: str = ""  # set on the last message of a step: resuming from it loses nothing
    fresh_image: bool = False
    removed: Sequence[int] = ()  # DELTA: events that left the cache, to drop before applying `markets`


@dataclass(frozen=True, slots=True)
class Request:
    selection: Selection
    resume_token: str = ""
    heartbeat_seconds: float = 0.0  # 0: none
    conflation_seconds: float = 0.0
    summaries_only: bool = False


def _chunks(kind: Kind, markets: Sequence[MarketDelta], token: str, fresh: bool) -> Iterator[Message]:
    """Sliced as they are sent, so a large image is not held twice."""
    starts = range(0, len(markets), CHUNK) or range(1)
    for i in starts:
        yield Message(kind, markets[i : i + CHUNK], (), token if i == starts[-1] else "", fresh)


async def stream(
    updates: Updates,
    cache: OddsCache,
    request: Request,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[Message]:
    """Raises FellBehind when the stream falls out of the buffer, Closed when the service stops. `sleep` is the
    conflation window's (tests step it)."""
    selection = request.selection
    position = updates.resume(request.resume_token) if request.resume_token else None
    if position is None:
        # Read in one go, with no await: exactly the state at `position`.
        position = updates.sequence
        image = [] if request.summaries_only else selection.image(cache)
        for message in _chunks(Kind.IMAGE, image, updates.token(position), bool(request.resume_token)):
            yield message
    loop = asyncio.get_running_loop()
    sent_at = loop.time()
    while True:
        if request.heartbeat_seconds > 0:
            try:
                async with asyncio.timeout_at(sent_at + request.heartbeat_seconds):
                    await updates.wait_after(position)
            except TimeoutError:
                yield Message(Kind.HEARTBEAT, token=updates.token(position))
                sent_at = loop.time()
                continue
        else:
            await updates.wait_after(position)
        if request.conflation_seconds > 0:
            await sleep(request.conflation_seconds)
        applied = updates.after(position)
        position = applied[-1].sequence
        markets, pairs, removed = selection.conflate(applied, request.summaries_only)
        if request.summaries_only:
            markets, removed = [], []  # it holds no states to drop
        if not markets and not pairs and not removed:
            continue  # nothing it selected; its token moves on with the next message (a heartbeat at the latest)
        parts = list(_chunks(Kind.DELTA, markets, updates.token(position), False))
        for i, part in enumerate(parts):
            # The removals go first (they come before the states); the summaries with the last part, with the
            # token: a resume from the token before repeats them.
            last = i == len(parts) - 1
            yield Message(
                Kind.DELTA, part.markets, pairs if last else (), part.token, removed=removed if i == 0 else ()
            )
        sent_at = loop.time()
