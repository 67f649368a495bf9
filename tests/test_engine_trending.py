"""Decayed trending counters in the engine: no database, no Redis."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recommendations.engine.trending import (
    REBASE_AFTER_HALVINGS,
    TrendingCounter,
    decay_factor,
)

HOUR = 3600.0


class FakeClock:
    def __init__(self, now=0.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return FakeClock(now=1_000_000.0)


@pytest.fixture
def counter(clock):
    return TrendingCounter(HOUR, clock=clock)


def test_decay_factor_halves_per_half_life():
    assert decay_factor(0, HOUR) == 1.0
    assert decay_factor(HOUR, HOUR) == 0.5
    assert decay_factor(3 * HOUR, HOUR) == 0.125
    np.testing.assert_allclose(decay_factor(np.array([0, HOUR]), HOUR), [1, 0.5])


def test_it_counts_a_weight_added_one_half_life_ago_as_half(counter, clock):
    counter.add("film", 4.0)
    clock.now += HOUR

    assert counter.scores(["film"]).tolist() == [2.0]


def test_scores_follow_the_given_order_with_zero_for_unknown_ids(counter):
    counter.add("a", 1.0, at=0.0)
    counter.add("b", 3.0, at=0.0)

    scores = counter.scores(["b", "nobody", "a"], now=0.0)

    assert scores.tolist() == [3.0, 0.0, 1.0]


def test_an_empty_counter_scores_zero_and_has_no_top(counter):
    assert counter.scores(["a", "b"]).tolist() == [0.0, 0.0]
    assert counter.scores([]).shape == (0,)
    assert counter.top(5) == []


def test_a_recent_small_burst_beats_an_older_big_one(counter):
    counter.add("old", 10.0, at=0.0)
    counter.add("new", 3.0, at=HOUR)

    # One half-life is not enough: 10/2 > 3.
    assert [item for item, _ in counter.top(2, now=HOUR)] == ["old", "new"]

    # Two are: 10/4 < 3, and the same burst an hour earlier ranks between.
    counter.add("newer", 3.0, at=2 * HOUR)
    top = counter.top(3, now=2 * HOUR)
    assert top == [("newer", 3.0), ("old", 2.5), ("new", 1.5)]


def test_top_returns_at_most_n_items_best_first(counter):
    for rank, item in enumerate(["d", "c", "b", "a"]):
        counter.add(item, float(rank + 1), at=0.0)

    assert counter.top(2, now=0.0) == [("a", 4.0), ("b", 3.0)]
    assert counter.top(0, now=0.0) == []


def test_rebase_keeps_scores_equal(counter, clock):
    counter.add("a", 5.0, at=clock.now)
    counter.add("b", 2.0, at=clock.now + 10 * HOUR)
    first_frame = counter.reference_time

    clock.now += (REBASE_AFTER_HALVINGS + 40) * HOUR
    before = counter.scores(["a", "b"])
    counter.add("c", 1.0)
    after = counter.scores(["a", "b"])

    assert counter.reference_time == clock.now != first_frame
    assert np.all(before > 0)
    np.testing.assert_allclose(after, before, rtol=1e-12)


def test_an_item_decayed_to_nothing_leaves_the_top(counter, clock):
    counter.add("forgotten", 1.0)

    clock.now += 2000 * HOUR
    counter.add("fresh", 1.0)

    assert counter.top(5) == [("fresh", 1.0)]
    assert counter.scores(["forgotten"]).tolist() == [0.0]


def test_negative_weights_clip_at_zero_when_read(counter):
    counter.add("film", 1.0, at=0.0)
    counter.add("film", -3.0, at=0.0)

    assert counter.scores(["film"], now=0.0).tolist() == [0.0]
    assert counter.top(5, now=0.0) == []


def test_a_dislike_keeps_cancelling_later_likes(counter):
    counter.add("film", -2.0, at=0.0)
    counter.add("film", 3.0, at=0.0)

    assert counter.scores(["film"], now=0.0).tolist() == [1.0]


def test_seed_adds_every_count_at_one_moment(counter):
    counter.add("a", 1.0, at=HOUR)
    counter.seed({"a": 2.0, "b": 8.0}, at=0.0)

    assert counter.scores(["a", "b"], now=HOUR).tolist() == [2.0, 4.0]


@pytest.mark.parametrize("half_life", [0, -1.0, math.inf, math.nan])
def test_it_refuses_a_half_life_that_is_not_positive(half_life):
    with pytest.raises(ValueError):
        TrendingCounter(half_life)


events = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "d"]),
        st.floats(min_value=-5.0, max_value=10.0, allow_nan=False),
        st.floats(min_value=0.0, max_value=300.0),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(
    events=events,
    half_life=st.floats(min_value=1.0, max_value=1e5),
    wait=st.floats(min_value=0.0, max_value=80.0),
)
def test_scores_equal_the_brute_force_sum(events, half_life, wait):
    """Times are drawn in half-lives, so many draws cross a rebase."""
    counter = TrendingCounter(half_life, clock=FakeClock())
    for item, weight, halvings in events:
        counter.add(item, weight, at=halvings * half_life)
    now = (max(halvings for _, _, halvings in events) + wait) * half_life

    items = ["a", "b", "c", "d"]
    scores = counter.scores(items, now=now)

    for item, score in zip(items, scores, strict=True):
        terms = [
            weight * 2 ** (-(now - halvings * half_life) / half_life)
            for name, weight, halvings in events
            if name == item
        ]
        # With mixed signs the sum may cancel, so the error is bounded
        # relative to the sizes of the terms, not to their sum; the floor
        # covers terms so small they fall into subnormal numbers.
        tolerance = 1e-9 * sum(abs(term) for term in terms) + 1e-300
        assert score == pytest.approx(max(sum(terms), 0.0), rel=0, abs=tolerance)
