"""The one way tests wait for something another task, process or server makes true: poll a condition, with a
generous overall timeout that only a hung system reaches, never a fixed sleep followed by an assertion."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

# Generous on purpose: a loaded CI machine must never fail a correct system; only a stuck one ends here.
TIMEOUT_SECONDS = 60.0
_INTERVAL_SECONDS = 0.005


async def _holds(condition: Callable[[], bool | Awaitable[bool]]) -> bool:
    result = condition()
    return bool(await result) if inspect.isawaitable(result) else bool(result)


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], what: str, *, within: float = TIMEOUT_SECONDS
) -> None:
    """Returns as soon as `condition()` (plain or async) holds; raises AssertionError naming `what` after `within`."""
    try:
        async with asyncio.timeout(within):
            # Polled: the conditions are over state other processes own (a database, a server), with no event to await.
            while True:
                if await _holds(condition):
                    return
                await asyncio.sleep(_INTERVAL_SECONDS)
    except TimeoutError:
        raise AssertionError(f"{what}: not true within {within:.0f} s") from None
