"""Protobuf <-> model conversion, used by the servicers at their edge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

from oddstore.model import Event, Market, Outcome, Snapshot
from oddstore.v1 import snapshot_pb2 as pb

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def format_utc(value: datetime) -> str:
    """RFC 3339 in UTC with a trailing Z, never +00:00 (the UI appends a Z to strings without one); the gateway's
    models and the query service's prepared JSON both write instants with this."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat() + "Z"


def from_timestamp(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def to_timestamp(value: datetime) -> Timestamp:
    """An aware datetime as a Timestamp; a naive one is rejected (ValueError).

    A naive datetime has no instant: local time or UTC is the writer's guess. Where a contract gives naive
    input a meaning (the gateway's query parameters are UTC), that edge attaches the zone before this.
    """
    if value.tzinfo is None:
        raise ValueError(f"timestamp has no time zone: {value.isoformat()}")
    # Arithmetic instead of astimezone + FromDatetime: no overflow at years 1 and 9999, and ~3x faster.
    seconds, micros = divmod((value - _EPOCH) // _MICROSECOND, 1_000_000)
    return Timestamp(seconds=seconds, nanos=micros * 1000)


def market_from_pb(m: pb.Market) -> Market:
    # Positional and without generators: this runs once per market observation (hot path).
    has = m.HasField
    return Market(
        m.market_id,
        m.market_name,
        m.line if has("line") else None,
        m.handicap_type if has("handicap_type") else None,
        m.handicap_home if has("handicap_home") else None,
        m.handicap_away if has("handicap_away") else None,
        tuple(m.market_groups),
        tuple([Outcome(o.name, o.odds, o.is_active) for o in m.outcomes]),
    )


def event_from_pb(e: pb.Event) -> Event:
    return Event(
        id=e.id,
        sportradar_id=e.sportradar_id,
        name=e.name,
        home_team=e.home_team,
        away_team=e.away_team,
        kickoff=from_timestamp(e.kickoff) if e.HasField("kickoff") else None,
        tournament=e.tournament,
        country=e.country,
        sport=e.sport,
    )


def snapshot_from_pb(s: pb.Snapshot) -> Snapshot:
    return Snapshot(
        event=event_from_pb(s.event),
        bookmaker=s.bookmaker,
        external_event_id=s.external_event_id,
        captured_at=from_timestamp(s.captured_at) if s.HasField("captured_at") else None,
        markets=tuple([market_from_pb(m) for m in s.markets]),
    )


def snapshot_to_pb(s: Snapshot) -> pb.Snapshot:
    e = s.event
    event = pb.Event(
        id=e.id,
        sportradar_id=e.sportradar_id,
        name=e.name,
        home_team=e.home_team,
        away_team=e.away_team,
        tournament=e.tournament,
        country=e.country,
        sport=e.sport,
    )
    if e.kickoff is not None:
        event.kickoff.CopyFrom(to_timestamp(e.kickoff))
    out = pb.Snapshot(event=event, bookmaker=s.bookmaker, external_event_id=s.external_event_id)
    if s.captured_at is not None:
        out.captured_at.CopyFrom(to_timestamp(s.captured_at))
    for m in s.markets:
        market = out.markets.add(
            market_id=m.market_id,
            market_name=m.market_name,
            market_groups=m.market_groups,
            outcomes=[pb.Outcome(name=o.name, odds=o.odds, is_active=o.is_active) for o in m.outcomes],
        )
        if m.line is not None:
            market.line = m.line
        if m.handicap_type is not None:
            market.handicap_type = m.handicap_type
        if m.handicap_home is not None:
            market.handicap_home = m.handicap_home
        if m.handicap_away is not None:
            market.handicap_away = m.handicap_away
    return out
