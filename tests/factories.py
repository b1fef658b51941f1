"""Builders of snapshots for tests."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from oddstore.convert import snapshot_to_pb
from oddstore.model import Event, Market, Outcome, Snapshot
from services.writer.grpc_api import observed_from_pb
from services.writer.plan import Result
from services.writer.writer import Writer

_ids = itertools.count(1)
_base = int(datetime.now(UTC).timestamp() * 1000) % 1_000_000_000


def new_event_id() -> int:
    """Unique per test run, so tests can share one migrated database."""
    return _base + next(_ids) * 7


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def event(event_id: int, **overrides: object) -> Event:
    fields: dict[str, object] = {
        "id": event_id,
        "sportradar_id": f"sr:match:{event_id}",
        "name": f"Home {event_id} - Away {event_id}",
        "home_team": f"Home {event_id}",
        "away_team": f"Away {event_id}",
        "kickoff": now() + timedelta(days=2),
        "tournament": "Premier League",
        "country": "England",
        "sport": "Football",
    }
    fields.update(overrides)
    return Event(**fields)  # type: ignore[arg-type]


def market(
    market_id: str = "3743",
    line: float | None = None,
    odds: tuple[float, ...] = (2.1, 3.4, 3.5),
    names: tuple[str, ...] = ("1", "X", "2"),
    active: bool = True,
    name: str = "",
) -> Market:
    return Market(
        market_id=market_id,
        market_name=name or f"Market {market_id}",
        line=line,
        handicap_type=None,
        handicap_home=None,
        handicap_away=None,
        market_groups=("popular",),
        outcomes=tuple(Outcome(n, o, active) for n, o in zip(names, odds, strict=True)),
    )


def snapshot(
    event_id: int,
    captured_at: datetime,
    markets: list[Market],
    bookmaker: str = "betpawa",
    **event_overrides: object,
) -> Snapshot:
    return Snapshot(
        event=event(event_id, **event_overrides),
        bookmaker=bookmaker,
        external_event_id=str(event_id * 10),
        captured_at=captured_at,
        markets=tuple(markets),
    )


async def write(writer: Writer, snapshots: Iterable[Snapshot]) -> list[Result]:
    """Through the writer's production edge: each snapshot as protobuf, observed as WriteBatch does."""
    return await writer.write([observed_from_pb(snapshot_to_pb(s)) for s in snapshots])
