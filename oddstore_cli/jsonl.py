"""JSON Lines <-> `Snapshot`: structure, types and time zones only (ingest does the semantic checks)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf import timestamp_pb2

from oddstore.text import unstorable
from oddstore.v1 import snapshot_pb2

T = TypeVar("T")

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# RFC 3339 date-time; the zone group is optional here only so that a naive value gets its own message.
_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})?",
)

_EVENT_FIELDS = frozenset(
    {"id", "sportradar_id", "name", "home_team", "away_team", "kickoff", "tournament", "country", "sport"}
)
_SNAPSHOT_FIELDS = frozenset({"event", "bookmaker", "external_event_id", "captured_at", "markets"})
_MARKET_FIELDS = frozenset(
    {
        "market_id",
        "market_name",
        "line",
        "handicap_type",
        "handicap_home",
        "handicap_away",
        "market_groups",
        "outcomes",
    }
)
_OUTCOME_FIELDS = frozenset({"name", "odds", "is_active"})


class ParseError(ValueError):
    """A line that is not a structurally valid snapshot; the message starts with the field path."""


def _fail(path: str, problem: str) -> ParseError:
    return ParseError(f"{path}: {problem}" if path else problem)


def _object(value: object, path: str, fields: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, "expected an object")
    # Unknown keys are errors, not ignored: a misspelt optional key ("lines") would silently turn a
    # market with a line into one without, which is a different market.
    unknown = sorted(set(value) - fields)
    if unknown:
        raise _fail(path, f"unknown field {unknown[0]!r}")
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _checked(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise _fail(path, "expected a string")
    # The server's rule, applied here too: a lone surrogate (valid in JSON) cannot even be put
    # into a protobuf message, and the line should say which field holds it.
    problem = unstorable(value)
    if problem is not None:
        raise _fail(path, problem)
    return value


def _optional_string(obj: Mapping[str, Any], key: str, path: str) -> str | None:
    value = obj.get(key)
    return None if value is None else _checked(value, _join(path, key))


def _string(obj: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> str:
    value = _optional_string(obj, key, path)
    if value is None and required:
        raise _fail(_join(path, key), "missing")
    return value or ""


def _optional_number(obj: Mapping[str, Any], key: str, path: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    # bool is an int in Python but not a number in JSON.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(_join(path, key), "expected a number")
    if not math.isfinite(value):
        raise _fail(_join(path, key), "expected a finite number")
    return float(value)


def _number(obj: Mapping[str, Any], key: str, path: str) -> float:
    value = _optional_number(obj, key, path)
    if value is None:
        raise _fail(_join(path, key), "missing")
    return value


def _list(obj: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> list[Any]:
    value = obj.get(key)
    if value is None:
        if required:
            raise _fail(_join(path, key), "missing")
        return []
    if not isinstance(value, list):
        raise _fail(_join(path, key), "expected a list")
    return value


def _items(values: list[Any], path: str, parse: Callable[[object, str], T]) -> list[T]:
    return [parse(value, f"{path}[{i}]") for i, value in enumerate(values)]


def parse_timestamp(value: object, path: str) -> timestamp_pb2.Timestamp:
    """An RFC 3339 string with `Z` or an offset, converted to UTC; a naive time is an error."""
    if not isinstance(value, str):
        raise _fail(path, "expected an RFC 3339 timestamp string")
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise _fail(path, f"not an RFC 3339 timestamp: {value!r}")
    base, fraction, zone = match.groups()
    if zone is None:
        raise _fail(path, f"timestamp has no time zone: {value!r}")
    zone = "+00:00" if zone in ("Z", "z") else zone
    try:
        moment = datetime.fromisoformat(f"{base[:10]}T{base[11:]}{zone}")
    except ValueError as exc:
        raise _fail(path, f"invalid timestamp {value!r}: {exc}") from None
    nanos = int((fraction or "0").ljust(9, "0"))
    return timestamp_pb2.Timestamp(seconds=int(moment.timestamp()), nanos=nanos)


def format_timestamp(ts: timestamp_pb2.Timestamp) -> str:
    """RFC 3339 in UTC with `Z`; fractional seconds only when there are any."""
    moment = datetime.fromtimestamp(ts.seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if ts.nanos:
        moment += "." + f"{ts.nanos:09d}".rstrip("0")
    return moment + "Z"


def _outcome(value: object, path: str) -> snapshot_pb2.Outcome:
    obj = _object(value, path, _OUTCOME_FIELDS)
    active = obj.get("is_active", True)
    if active is None:
        active = True
    if not isinstance(active, bool):
        raise _fail(_join(path, "is_active"), "expected true or false")
    return snapshot_pb2.Outcome(
        name=_string(obj, "name", path, required=True),
        odds=_number(obj, "odds", path),
        is_active=active,
    )


def _market(value: object, path: str) -> snapshot_pb2.Market:
    obj = _object(value, path, _MARKET_FIELDS)
    groups = _list(obj, "market_groups", path)
    for i, group in enumerate(groups):
        _checked(group, f"{path}.market_groups[{i}]")
    market = snapshot_pb2.Market(
        market_id=_string(obj, "market_id", path, required=True),
        market_name=_string(obj, "market_name", path),
        market_groups=groups,
        outcomes=_items(_list(obj, "outcomes", path, required=True), f"{path}.outcomes", _outcome),
    )
    # proto3 optional: null/absent leaves the field unset, 0.0 is set (a different market key).
    line = _optional_number(obj, "line", path)
    if line is not None:
        market.line = line
    handicap_type = _optional_string(obj, "handicap_type", path)
    if handicap_type is not None:
        market.handicap_type = handicap_type
    handicap_home = _optional_number(obj, "handicap_home", path)
    if handicap_home is not None:
        market.handicap_home = handicap_home
    handicap_away = _optional_number(obj, "handicap_away", path)
    if handicap_away is not None:
        market.handicap_away = handicap_away
    return market


def _event(value: object, path: str) -> snapshot_pb2.Event:
    obj = _object(value, path, _EVENT_FIELDS)
    event_id = obj.get("id")
    if event_id is None:
        raise _fail(_join(path, "id"), "missing")
    if isinstance(event_id, bool) or not isinstance(event_id, int):
        raise _fail(_join(path, "id"), "expected an integer")
    if not _INT64_MIN <= event_id <= _INT64_MAX:
        raise _fail(_join(path, "id"), "out of the 64-bit integer range")
    event = snapshot_pb2.Event(
        id=event_id,
        sportradar_id=_string(obj, "sportradar_id", path),
        name=_string(obj, "name", path),
        home_team=_string(obj, "home_team", path),
        away_team=_string(obj, "away_team", path),
        tournament=_string(obj, "tournament", path),
        country=_string(obj, "country", path),
        sport=_string(obj, "sport", path),
    )
    kickoff = obj.get("kickoff")
    if kickoff is not None:
        event.kickoff.CopyFrom(parse_timestamp(kickoff, _join(path, "kickoff")))
    return event


def parse_snapshot(value: object) -> snapshot_pb2.Snapshot:
    """A decoded JSON value to a `Snapshot`; raises `ParseError` naming the offending field path."""
    obj = _object(value, "", _SNAPSHOT_FIELDS)
    if obj.get("event") is None:
        raise _fail("event", "missing")
    event = _event(obj["event"], "event")
    bookmaker = _string(obj, "bookmaker", "", required=True)
    external_event_id = _string(obj, "external_event_id", "")
    captured_at = obj.get("captured_at")
    if captured_at is None:
        raise _fail("captured_at", "missing")
    return snapshot_pb2.Snapshot(
        event=event,
        bookmaker=bookmaker,
        external_event_id=external_event_id,
        captured_at=parse_timestamp(captured_at, "captured_at"),
        markets=_items(_list(obj, "markets", "", required=True), "markets", _market),
    )


def parse_line(line: str | bytes) -> snapshot_pb2.Snapshot:
    """One JSON line to a `Snapshot`; raises `ParseError` for bad JSON or bad structure."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ParseError("not valid UTF-8") from None
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ParseError(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(value, dict):
        raise ParseError("expected a JSON object")
    return parse_snapshot(value)


def _optional(message: Any, field: str) -> Any:
    return getattr(message, field) if message.HasField(field) else None


def snapshot_to_json(snapshot: snapshot_pb2.Snapshot) -> dict[str, Any]:
    """The inverse of `parse_snapshot`: `parse_snapshot(snapshot_to_json(s)) == s`."""
    event = snapshot.event
    return {
        "event": {
            "id": event.id,
            "sportradar_id": event.sportradar_id,
            "name": event.name,
            "home_team": event.home_team,
            "away_team": event.away_team,
            "kickoff": format_timestamp(event.kickoff) if event.HasField("kickoff") else None,
            "tournament": event.tournament,
            "country": event.country,
            "sport": event.sport,
        },
        "bookmaker": snapshot.bookmaker,
        "external_event_id": snapshot.external_event_id,
        "captured_at": format_timestamp(snapshot.captured_at),
        "markets": [
            {
                "market_id": market.market_id,
                "market_name": market.market_name,
                "line": _optional(market, "line"),
                "handicap_type": _optional(market, "handicap_type"),
                "handicap_home": _optional(market, "handicap_home"),
                "handicap_away": _optional(market, "handicap_away"),
                "market_groups": list(market.market_groups),
                "outcomes": [
                    {"name": outcome.name, "odds": outcome.odds, "is_active": outcome.is_active}
                    for outcome in market.outcomes
                ],
            }
            for market in snapshot.markets
        ],
    }
