"""A deterministic, memory-lean generator of realistic scraper snapshots, cycle by cycle."""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from google.protobuf import timestamp_pb2

from oddstore.convert import to_timestamp
from oddstore.v1 import snapshot_pb2

# Odds are kept as integer hundredths in array('H'): 1.01 .. 500.00 fits in 16 bits.
MIN_ODDS, MAX_ODDS = 101, 50_000
_MAX_GOALS = 12


@dataclass(frozen=True, slots=True)
class MarketDef:
    """One market of the catalogue. `model` says how its fair probabilities are derived."""

    market_id: str
    name: str
    line: float | None
    groups: tuple[str, ...]
    outcomes: tuple[str, ...]
    model: tuple[Any, ...]
    handicap: str | None = None  # "asian" / "european": competitors send handicap fields


@dataclass(frozen=True, slots=True)
class BookmakerProfile:
    slug: str
    markets: int  # how many catalogue markets it offers per event
    margin: float  # typical overround; each market varies around it within 3-8 %
    suspends: bool  # Bet9ja has no suspension flag: always active


BOOKMAKERS = (
    BookmakerProfile("betpawa", 167, 0.050, True),
    BookmakerProfile("sportybet", 100, 0.055, True),
    BookmakerProfile("bet9ja", 67, 0.060, False),
)

TOURNAMENTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "Premier League",
        "England",
        (
            "Arsenal",
            "Chelsea",
            "Liverpool",
            "Manchester City",
            "Manchester United",
            "Tottenham",
            "Newcastle",
            "Aston Villa",
            "Brighton",
            "West Ham",
            "Everton",
            "Fulham",
            "Brentford",
            "Crystal Palace",
            "Wolves",
            "Bournemouth",
        ),
    ),
    (
        "LaLiga",
        "Spain",
        (
            "Real Madrid",
            "Barcelona",
            "Atletico Madrid",
            "Sevilla",
            "Real Sociedad",
            "Villarreal",
            "Real Betis",
            "Valencia",
            "Athletic Club",
            "Girona",
            "Osasuna",
            "Celta Vigo",
        ),
    ),
    (
        "Serie A",
        "Italy",
        (
            "Inter",
            "AC Milan",
            "Juventus",
            "Napoli",
            "Roma",
            "Lazio",
            "Atalanta",
            "Fiorentina",
            "Bologna",
            "Torino",
            "Genoa",
            "Udinese",
        ),
    ),
    (
        "Bundesliga",
        "Germany",
        (
            "Bayern Munich",
            "Borussia Dortmund",
            "RB Leipzig",
            "Bayer Leverkusen",
            "Eintracht Frankfurt",
            "Stuttgart",
            "Wolfsburg",
            "Freiburg",
            "Union Berlin",
            "Mainz",
            "Hoffenheim",
            "Werder Bremen",
        ),
    ),
    (
        "Ligue 1",
        "France",
        (
            "Paris Saint-Germain",
            "Marseille",
            "Lyon",
            "Monaco",
            "Lille",
            "Rennes",
            "Nice",
            "Lens",
            "Nantes",
            "Strasbourg",
            "Toulouse",
            "Reims",
        ),
    ),
    (
        "NPFL",
        "Nigeria",
        (
            "Enyimba",
            "Rangers International",
            "Kano Pillars",
            "Shooting Stars",
            "Rivers United",
            "Remo Stars",
            "Plateau United",
            "Akwa United",
            "Lobi Stars",
            "Kwara United",
        ),
    ),
    (
        "Premier League",
        "Ghana",
        (
            "Asante Kotoko",
            "Hearts of Oak",
            "Medeama",
            "Aduana Stars",
            "Dreams FC",
            "Berekum Chelsea",
            "Legon Cities",
            "Bechem United",
        ),
    ),
    (
        "Championship",
        "England",
        (
            "Leeds United",
            "Leicester",
            "Southampton",
            "Sunderland",
            "Norwich",
            "Middlesbrough",
            "Coventry",
            "West Brom",
            "Hull City",
            "Watford",
        ),
    ),
)


def _catalogue() -> tuple[MarketDef, ...]:
    """~167 markets: the five well-known Betpawa types first, then other mapped types.

    3743, 5000, 3795, 4693 and 3774 are Betpawa's real ids; the others are synthetic stand-ins.
    """
    ou: tuple[str, ...] = ("Over", "Under")
    yn: tuple[str, ...] = ("Yes", "No")
    three: tuple[str, ...] = ("1", "X", "2")
    defs = [
        MarketDef("3743", "1X2 - Full Time", None, ("popular",), three, ("1x2", 1.0)),
        *(
            MarketDef("5000", "Over/Under - Full Time", line, ("popular", "goals"), ou, ("total", 1.0, "both", line))
            for line in (0.5, 1.5, 2.5, 3.5, 4.5, 5.5)
        ),
        MarketDef("3795", "Both Teams To Score - Full Time", None, ("popular", "goals"), yn, ("btts", 1.0)),
        MarketDef("4693", "Double Chance - Full Time", None, ("popular", "combos"), ("1X", "X2", "12"), ("dc",)),
        *(
            MarketDef("3774", "Asian Handicap - Full Time", line, ("handicaps",), ("1", "2"), ("ah", line), "asian")
            for line in (-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5)
        ),
        MarketDef("4702", "Draw No Bet - Full Time", None, ("popular",), ("1", "2"), ("dnb",)),
        MarketDef("4703", "1X2 - First Half", None, ("halves",), three, ("1x2", 0.45)),
        MarketDef("4704", "1X2 - Second Half", None, ("halves",), three, ("1x2", 0.55)),
        *(
            MarketDef(
                "5006",
                "Over/Under - First Half",
                line,
                ("goals", "halves"),
                ou,
                ("total", 0.45, "both", line),
            )
            for line in (0.5, 1.5, 2.5)
        ),
        *(
            MarketDef(
                "5007",
                "Over/Under - Second Half",
                line,
                ("goals", "halves"),
                ou,
                ("total", 0.55, "both", line),
            )
            for line in (0.5, 1.5, 2.5)
        ),
        *(
            MarketDef("4724", "Handicap - Full Time", line, ("handicaps",), three, ("eh", line), "european")
            for line in (-3.0, -2.0, -1.0, 1.0, 2.0, 3.0)
        ),
        *(
            MarketDef("5003", "Home Team Over/Under", line, ("goals",), ou, ("total", 1.0, "home", line))
            for line in (0.5, 1.5, 2.5, 3.5)
        ),
        *(
            MarketDef("5004", "Away Team Over/Under", line, ("goals",), ou, ("total", 1.0, "away", line))
            for line in (0.5, 1.5, 2.5, 3.5)
        ),
        MarketDef("3796", "Both Teams To Score - First Half", None, ("goals", "halves"), yn, ("btts", 0.45)),
        MarketDef("3797", "Both Teams To Score - Second Half", None, ("goals", "halves"), yn, ("btts", 0.55)),
        MarketDef("3815", "Odd/Even - Full Time", None, ("goals",), ("Odd", "Even"), ("oddeven",)),
    ]
    next_id = 7000
    for name, line_set, group, outcomes, count in (
        ("Corners Over/Under", tuple(x + 0.5 for x in range(5, 15)), "corners", ou, "corners"),
        ("Bookings Over/Under", tuple(x + 0.5 for x in range(1, 8)), "bookings", ou, "bookings"),
        ("Corners Handicap", (-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5), "corners", ("1", "2"), None),
    ):
        for line in line_set:
            model = ("count", count, line) if count else ("random", len(outcomes))
            defs.append(MarketDef(str(next_id), name, line, (group,), outcomes, model))
        next_id += 1
    specials: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("Home Team To Score", yn),
        ("Away Team To Score", yn),
        ("Clean Sheet Home", yn),
        ("Clean Sheet Away", yn),
        ("Win To Nil Home", yn),
        ("Win To Nil Away", yn),
        ("First Team To Score", ("1", "None", "2")),
        ("Last Team To Score", ("1", "None", "2")),
        ("Highest Scoring Half", ("1st", "2nd", "Equal")),
        ("Corners 1X2", three),
        ("Bookings 1X2", three),
        ("Penalty Awarded", yn),
        ("Red Card", yn),
        ("Own Goal", yn),
        ("Both Halves Over 1.5", yn),
        ("Home Win Either Half", yn),
        ("Away Win Either Half", yn),
        ("Home Win Both Halves", yn),
        ("Home Win & Both Teams To Score", yn),
        ("Home Win & Over 2.5", yn),
        ("Double Chance - First Half", ("1X", "X2", "12")),
    )
    groups = ("combos", "goals", "halves", "popular")
    periods = (
        "",
        " - First Half",
        " - Second Half",
        " - Minutes 1-15",
        " - Minutes 16-30",
        " - Minutes 31-45",
    )
    i = 0
    while len(defs) < max(b.markets for b in BOOKMAKERS):
        base, outcomes = specials[i % len(specials)]
        name = base + periods[i // len(specials)]
        model = ("random", len(outcomes))
        defs.append(MarketDef(str(next_id), name, None, (groups[i % len(groups)],), outcomes, model))
        next_id += 1
        i += 1
    return tuple(defs)


CATALOGUE = _catalogue()
# Every bookmaker offers the leading catalogue entries, the markets derived from the goal model.
_CORE = next(i for i, d in enumerate(CATALOGUE) if d.model[0] in ("count", "random"))


def _offer(profile: BookmakerProfile, seed: int) -> tuple[MarketDef, ...]:
    """The bookmaker's subset of the catalogue: the core markets plus a fixed random choice of the rest."""
    rest = list(range(_CORE, len(CATALOGUE)))
    chosen = set(range(_CORE)) | set(random.Random(f"{seed}:{profile.slug}").sample(rest, profile.markets - _CORE))
    return tuple(d for i, d in enumerate(CATALOGUE) if i in chosen)


def _poisson(mean: float, top: int = _MAX_GOALS) -> list[float]:
    pmf = [math.exp(-mean)]
    for k in range(1, top + 1):
        pmf.append(pmf[-1] * mean / k)
    return pmf


def _over(pmf: list[float], line: float) -> float:
    return max(0.0, 1.0 - sum(pmf[: math.floor(line) + 1]))


class _Match:
    """Fair probabilities of one event's markets from a Poisson goal model (independent teams)."""

    def __init__(self, home_mean: float, away_mean: float, corners: float, bookings: float) -> None:
        self.home_mean, self.away_mean = home_mean, away_mean
        self.counts = {"corners": _poisson(corners, 40), "bookings": _poisson(bookings, 40)}
        self._diff: dict[float, dict[int, float]] = {}

    def diff(self, factor: float) -> dict[int, float]:
        if factor not in self._diff:
            home, away = _poisson(self.home_mean * factor), _poisson(self.away_mean * factor)
            dist: dict[int, float] = {}
            for h, ph in enumerate(home):
                for a, pa in enumerate(away):
                    dist[h - a] = dist.get(h - a, 0.0) + ph * pa
            self._diff[factor] = dist
        return self._diff[factor]

    def probabilities(self, model: tuple[Any, ...], rng: random.Random) -> list[float]:
        kind = model[0]
        if kind == "1x2":
            d = self.diff(model[1])
            return [sum(p for k, p in d.items() if k > 0), d[0], sum(p for k, p in d.items() if k < 0)]
        if kind == "total":
            factor, who, line = model[1:]
            mean = {"both": self.home_mean + self.away_mean, "home": self.home_mean, "away": self.away_mean}[who]
            over = _over(_poisson(mean * factor), line)
            return [over, 1.0 - over]
        if kind == "btts":
            yes = (1 - math.exp(-self.home_mean * model[1])) * (1 - math.exp(-self.away_mean * model[1]))
            return [yes, 1.0 - yes]
        if kind in ("dc", "dnb"):
            home, draw, away = self.probabilities(("1x2", 1.0), rng)
            # Draw no bet refunds a draw: its prices only cover home against away.
            return [home + draw, draw + away, home + away] if kind == "dc" else _share(home, away)
        if kind in ("ah", "eh"):
            d, line = self.diff(1.0), model[1]
            win = sum(p for k, p in d.items() if k + line > 0)
            lose = sum(p for k, p in d.items() if k + line < 0)
            # Asian whole lines refund a push: the prices only cover win against lose.
            return _share(win, lose) if kind == "ah" else [win, 1.0 - win - lose, lose]
        if kind == "oddeven":
            even = (1 + math.exp(-2 * (self.home_mean + self.away_mean))) / 2
            return [1.0 - even, even]
        if kind == "count":
            over = _over(self.counts[model[1]], model[2])
            return [over, 1.0 - over]
        weights = [rng.uniform(0.15, 1.0) for _ in range(model[1])]
        return [w / sum(weights) for w in weights]


def _share(first: float, second: float) -> list[float]:
    return [first / (first + second), second / (first + second)]


def _price(probabilities: Sequence[float], margin: float, rng: random.Random) -> list[int]:
    """Integer odds (hundredths) for fair probabilities, with bookmaker noise and an overround."""
    total = sum(probabilities)
    noisy = [max(p, 1e-4) * math.exp(rng.gauss(0.0, 0.03)) for p in probabilities]
    scale = total * (1.0 + margin) / sum(noisy)
    return [min(MAX_ODDS, max(MIN_ODDS, round(100.0 / (q * scale)))) for q in noisy]


def _move(odds: array[int], start: int, count: int, rng: random.Random) -> None:
    """Moves one market's odds while keeping its overround; always produces a visible change."""
    implied = [100.0 / odds[start + j] for j in range(count)]
    moved = [q * math.exp(rng.gauss(0.0, 0.06)) for q in implied]
    scale = sum(implied) / sum(moved)
    before = odds[start : start + count]
    for j, q in enumerate(moved):
        odds[start + j] = min(MAX_ODDS, max(MIN_ODDS, round(100.0 / (q * scale))))
    if odds[start : start + count] == before:
        j = start + rng.randrange(count)
        odds[j] = odds[j] + 1 if odds[j] < MAX_ODDS else odds[j] - 1


@dataclass(slots=True)
class _Book:
    """One bookmaker's offer for one event: odds of all outcomes, then one byte per market each."""

    odds: array[int]
    active: bytearray
    missing: bytearray  # cycles the market stays away; 0 = offered


class Simulator:
    """Snapshots of `events` football events at Betpawa, SportyBet and Bet9ja, one cycle per call.

    Deterministic for a seed, a start and a sequence of `captured_at` values. Every cycle after the
    first moves the odds of about `change_rate` of the markets, suspends a few (never at Bet9ja) and
    withdraws about `disappear_rate` of them for one to three cycles. Events whose kickoff has passed
    are replaced by new ones `days` ahead, so a long live run keeps a steady pre-match list.
    """

    def __init__(
        self,
        events: int = 1300,
        *,
        seed: int = 0,
        start: datetime | None = None,
        days: float = 4.0,
        change_rate: float = 0.05,
        suspend_rate: float = 0.002,
        disappear_rate: float = 0.005,
        first_event_id: int = 1_000_000,
    ) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self.event_count = events
        self.seed = seed
        self.start = start
        self.days = days
        self.change_rate = change_rate
        self.suspend_rate = suspend_rate
        self.disappear_rate = disappear_rate
        self._rng = random.Random(seed)
        self._next_id = first_event_id
        self._offers = [(profile, _offer(profile, seed)) for profile in BOOKMAKERS]
        self._starts: list[tuple[int, ...]] = []
        for _, offer in self._offers:
            starts, size = [], 0
            for market in offer:
                starts.append(size)
                size += len(market.outcomes)
            self._starts.append((*starts, size))
        self._events: list[snapshot_pb2.Event] = []
        self._books: list[list[_Book]] = []
        self._kickoffs: list[datetime] = []
        self._last: datetime | None = None

    @property
    def markets_per_bookmaker(self) -> dict[str, int]:
        return {profile.slug: len(offer) for profile, offer in self._offers}

    def cycle(self, captured_at: datetime) -> list[snapshot_pb2.Snapshot]:
        """All snapshots of the next cycle, scraped at `captured_at` (timezone-aware, increasing)."""
        return list(self.iter_cycle(captured_at))

    def iter_cycle(self, captured_at: datetime) -> Iterator[snapshot_pb2.Snapshot]:
        """Like `cycle`, built lazily event by event; consume it fully before the next cycle."""
        if captured_at.tzinfo is None:
            raise ValueError("captured_at must be timezone-aware")
        if self._last is not None and captured_at <= self._last:
            raise ValueError(f"captured_at {captured_at.isoformat()} is not after the previous cycle")
        first = self._last is None
        self._last = captured_at
        if first:
            origin = self.start or captured_at
            for _ in range(self.event_count):
                self._add_event(origin + self._lead(0.02, 1.0))
        else:
            for i, kickoff in enumerate(self._kickoffs):
                if kickoff <= captured_at:
                    self._add_event(captured_at + self._lead(0.98, 1.0), replace=i)
        stamp = to_timestamp(captured_at)
        for i, event in enumerate(self._events):
            for (profile, offer), starts, book in zip(self._offers, self._starts, self._books[i], strict=True):
                if not first:
                    self._evolve(book, starts, profile.suspends)
                yield self._snapshot(event, profile.slug, offer, starts, book, stamp)

    def _lead(self, low: float, high: float) -> timedelta:
        minutes = self._rng.uniform(low, high) * self.days * 24 * 60
        return timedelta(minutes=15 * round(minutes / 15))

    def _add_event(self, kickoff: datetime, replace: int | None = None) -> None:
        rng = self._rng
        event_id = self._next_id
        self._next_id += 1
        tournament, country, teams = rng.choice(TOURNAMENTS)
        home, away = rng.sample(teams, 2)
        strength = math.exp(rng.gauss(0.0, 0.35))
        match = _Match(
            home_mean=min(3.5, 1.45 * strength),
            away_mean=min(3.5, 1.15 / strength),
            corners=rng.uniform(8.0, 12.0),
            bookings=rng.uniform(3.0, 5.5),
        )
        kickoff = kickoff.replace(second=0, microsecond=0)
        event = snapshot_pb2.Event(
            id=event_id,
            sportradar_id=f"sr:match:{50_000_000 + event_id}",
            name=f"{home} - {away}",
            home_team=home,
            away_team=away,
            kickoff=to_timestamp(kickoff),
            tournament=tournament,
            country=country,
            sport="Football",
        )
        fair = {id(d): match.probabilities(d.model, rng) for d in CATALOGUE}
        books = []
        for (profile, offer), starts in zip(self._offers, self._starts, strict=True):
            odds = array("H", bytes(2 * starts[-1]))
            for market, begin in zip(offer, starts, strict=False):
                margin = min(0.08, max(0.03, profile.margin + rng.uniform(-0.015, 0.015)))
                odds[begin : begin + len(market.outcomes)] = array("H", _price(fair[id(market)], margin, rng))
            books.append(_Book(odds, bytearray(b"\x01" * len(offer)), bytearray(len(offer))))
        if replace is None:
            self._events.append(event)
            self._books.append(books)
            self._kickoffs.append(kickoff)
        else:
            self._events[replace], self._books[replace], self._kickoffs[replace] = event, books, kickoff

    def _evolve(self, book: _Book, starts: tuple[int, ...], suspends: bool) -> None:
        rnd = self._rng.random
        disappear = self.disappear_rate
        change = disappear + self.change_rate
        suspend = change + (self.suspend_rate if suspends else 0.0)
        odds, active, missing = book.odds, book.active, book.missing
        for i in range(len(missing)):
            if missing[i]:
                missing[i] -= 1  # back when it reaches 0, with the odds it left with
                continue
            r = rnd()
            if r < disappear:
                missing[i] = 1 + int(rnd() * 3)
            elif r < change:
                _move(odds, starts[i], starts[i + 1] - starts[i], self._rng)
            elif r < suspend and active[i]:
                active[i] = 0
            elif not active[i] and rnd() < 0.5:
                active[i] = 1

    @staticmethod
    def _snapshot(
        event: snapshot_pb2.Event,
        slug: str,
        offer: tuple[MarketDef, ...],
        starts: tuple[int, ...],
        book: _Book,
        stamp: timestamp_pb2.Timestamp,
    ) -> snapshot_pb2.Snapshot:
        snapshot = snapshot_pb2.Snapshot(
            event=event, bookmaker=slug, external_event_id=_external_id(slug, event), captured_at=stamp
        )
        markets = snapshot.markets
        odds, active, missing = book.odds, book.active, book.missing
        competitor = slug != "betpawa"
        for i, market in enumerate(offer):
            if missing[i]:
                continue
            m = markets.add(market_id=market.market_id, market_name=market.name, market_groups=market.groups)
            if market.line is not None:
                m.line = market.line
                if competitor and market.handicap:
                    m.handicap_type = market.handicap
                    m.handicap_home = market.line
                    m.handicap_away = -market.line
            is_active = active[i] == 1
            outcomes = m.outcomes
            begin = starts[i]
            for j, name in enumerate(market.outcomes):
                outcomes.add(name=name, odds=odds[begin + j] / 100, is_active=is_active)
        return snapshot


def _external_id(slug: str, event: snapshot_pb2.Event) -> str:
    if slug == "sportybet":
        return event.sportradar_id
    return str((30_000_000 if slug == "betpawa" else 90_000_000) + event.id)
