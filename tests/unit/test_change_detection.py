"""Change detection: classification rules and the invariant over any sequence of snapshots."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from oddstore import codec
from services.writer.change_detection import Kind, Known, MarketKey, detect


def enc(*outcomes: tuple[str, float, bool]) -> bytes:
    return codec.encode((n, codec.to_milli(o), a) for n, o, a in outcomes)


OVER_UNDER = enc(("Over", 1.85, True), ("Under", 1.95, True))


def test_a_market_never_seen_is_new() -> None:
    state, transitions, counts = detect({}, {("5000", 2.5): OVER_UNDER})
    assert [(t.key, t.kind) for t in transitions] == [(("5000", 2.5), Kind.NEW)]
    assert state == {("5000", 2.5): Known(OVER_UNDER, True, OVER_UNDER)}
    assert counts.new == 1


def test_reordered_outcomes_are_unchanged_and_keep_the_stored_order() -> None:
    previous = {("5000", 2.5): Known(OVER_UNDER, True)}
    reordered = enc(("Under", 1.95, True), ("Over", 1.85, True))
    state, transitions, counts = detect(previous, {("5000", 2.5): reordered})
    assert transitions == [] and counts.unchanged == 1
    assert state[("5000", 2.5)].outcomes == OVER_UNDER


def test_odds_are_compared_at_fixed_precision() -> None:
    previous = {("5000", 2.5): Known(OVER_UNDER, True)}
    noisy = enc(("Over", 1.8500000001, True), ("Under", 1.95, True))
    assert detect(previous, {("5000", 2.5): noisy})[1] == []
    moved = enc(("Over", 1.851, True), ("Under", 1.95, True))
    assert [t.kind for t in detect(previous, {("5000", 2.5): moved})[1]] == [Kind.CHANGED]


def test_a_suspension_flip_is_a_change() -> None:
    previous = {("5000", 2.5): Known(OVER_UNDER, True)}
    suspended = enc(("Over", 1.85, False), ("Under", 1.95, True))
    assert [t.kind for t in detect(previous, {("5000", 2.5): suspended})[1]] == [Kind.CHANGED]


def test_a_missing_market_becomes_unavailable_once_and_keeps_its_odds() -> None:
    previous = {("5000", 2.5): Known(OVER_UNDER, True)}
    state, transitions, _ = detect(previous, {})
    assert [(t.kind, t.outcomes) for t in transitions] == [(Kind.UNAVAILABLE, OVER_UNDER)]
    assert state[("5000", 2.5)] == Known(OVER_UNDER, False)
    assert detect(state, {})[1] == []


def test_a_market_that_comes_back_returned_even_with_the_same_odds() -> None:
    previous = {("5000", 2.5): Known(OVER_UNDER, False)}
    state, transitions, counts = detect(previous, {("5000", 2.5): OVER_UNDER})
    assert [t.kind for t in transitions] == [Kind.RETURNED] and counts.returned == 1
    assert state[("5000", 2.5)].available


def test_a_line_less_market_and_line_zero_are_different_keys() -> None:
    _, transitions, _ = detect({}, {("3774", None): OVER_UNDER, ("3774", 0.0): OVER_UNDER})
    assert len(transitions) == 2


# Property: after any sequence of snapshots, the state equals the last observation per key and the
# transitions are exactly the changes of a reference model that tracks (present, outcome set).
KEYS: list[MarketKey] = [("3743", None), ("5000", 2.5), ("5000", 0.0), ("3774", None), ("3774", -0.5)]
outcome_lists = st.lists(
    st.tuples(st.sampled_from(["1", "X", "2"]), st.sampled_from([1.5, 2.0, 3.25]), st.booleans()),
    max_size=3,
    unique_by=lambda o: o[0],
)
snapshots = st.lists(st.dictionaries(st.sampled_from(KEYS), outcome_lists, max_size=len(KEYS)), max_size=12)


@settings(max_examples=300, deadline=None)
@given(snapshots)
def test_state_is_the_last_observation_and_history_holds_exactly_the_transitions(sequence) -> None:  # type: ignore[no-untyped-def]
    state: dict[MarketKey, Known] = {}
    history: dict[MarketKey, list[tuple[bool, frozenset[tuple[str, int, bool]]]]] = {}
    reference: dict[MarketKey, list[tuple[bool, frozenset[tuple[str, int, bool]]]]] = {}
    last: dict[MarketKey, tuple[bool, frozenset[tuple[str, int, bool]]]] = {}
    # Every snapshot is followed by a re-scrape listing the same outcomes in reverse order, which
    # must change nothing.
    rescraped = [o for observation in sequence for o in (observation, {k: v[::-1] for k, v in observation.items()})]
    for observation in rescraped:
        observed = {k: enc(*v) for k, v in observation.items()}
        state, transitions, _ = detect(state, observed)
        for t in transitions:
            history.setdefault(t.key, []).append((t.kind is not Kind.UNAVAILABLE, frozenset(codec.decode(t.outcomes))))
        for key in KEYS:
            if key in observation:
                now = (True, frozenset(codec.decode(observed[key])))
            elif key in last:
                now = (False, last[key][1])
            else:
                continue
            if last.get(key) != now:
                reference.setdefault(key, []).append(now)
            last[key] = now
    assert history == reference
    assert {k: (v.available, frozenset(codec.decode(v.outcomes))) for k, v in state.items()} == last


def test_an_identical_wire_form_is_unchanged_without_decoding() -> None:
    def never(key: MarketKey) -> bytes:
        raise AssertionError("outcomes were decoded")

    previous = {("5000", 2.5): Known(OVER_UNDER, True, b"wire-1")}
    _, transitions, counts = detect(previous, {("5000", 2.5): b"wire-1"}, never)
    assert transitions == [] and counts.unchanged == 1


def test_a_new_wire_form_with_the_same_odds_is_unchanged_and_remembered() -> None:
    previous = {("5000", 2.5): Known(OVER_UNDER, True, b"wire-1")}
    state, transitions, _ = detect(previous, {("5000", 2.5): b"wire-2"}, lambda key: OVER_UNDER)
    assert transitions == [] and state[("5000", 2.5)] == Known(OVER_UNDER, True, b"wire-2")


def test_a_returning_market_is_decoded_even_with_the_same_wire_form() -> None:
    previous = {("5000", 2.5): Known(OVER_UNDER, False, b"wire-1")}
    _, transitions, _ = detect(previous, {("5000", 2.5): b"wire-1"}, lambda key: OVER_UNDER)
    assert [t.kind for t in transitions] == [Kind.RETURNED]
