"""The approximate index: recall against exact top N, filters, serving."""

import numpy as np
import pytest
from django.utils import timezone

from events.models import EndUser, Interaction, Item
from recommendations.engine.ann import (
    ApproximateIndex,
    personal_scores_at,
    top_positive,
)
from recommendations.engine.ranking import personal_scores
from recommendations.engine.scoring import score_items, top_n
from recommendations.serving import holder

N_ITEMS, FACTORS = 20_000, 32


def random_factors(n_items, factors, seed):
    rng = np.random.default_rng(seed)
    item_factors = rng.standard_normal((n_items, factors)) * 0.1
    item_bias = rng.standard_normal(n_items) * 0.1
    return item_factors, item_bias


def random_users(count, factors, seed=99):
    return np.random.default_rng(seed).standard_normal((count, factors)) * 0.1


@pytest.fixture(scope="module")
def items():
    return random_factors(N_ITEMS, FACTORS, seed=3)


@pytest.fixture(scope="module")
def index(items):
    return ApproximateIndex(*items)


def exact_top(items, user, n, excluded=None):
    item_factors, item_bias = items
    return top_n(score_items(item_factors, item_bias, 0.0, user, 0.0), n, excluded)


def test_recall_at_10_against_exact_is_at_least_095(items, index):
    users = random_users(50, FACTORS)

    hits = sum(
        len(set(index.top_n(user, 10)) & set(exact_top(items, user, 10)))
        for user in users
    )

    assert hits / (10 * len(users)) >= 0.95


def test_results_come_best_first_by_exact_score(items, index):
    item_factors, item_bias = items
    user = random_users(1, FACTORS)[0]

    best = index.top_n(user, 20)

    scores = item_factors[best] @ user + item_bias[best]
    assert len(best) == 20
    assert list(scores) == sorted(scores, reverse=True)


def test_excluded_items_are_never_returned(items, index):
    user = random_users(1, FACTORS)[0]
    favourites = exact_top(items, user, 30)
    mask = np.zeros(N_ITEMS, dtype=bool)
    mask[favourites] = True
    mask[::7] = True

    by_mask = index.top_n(user, 10, mask)
    by_indices = index.top_n(user, 10, favourites)

    assert len(by_mask) == 10 and not mask[by_mask].any()
    assert len(by_indices) == 10 and not set(by_indices) & set(favourites)


def test_a_filter_that_keeps_few_items_still_fills_the_list(items, index):
    user = random_users(1, FACTORS)[0]
    excluded = np.ones(N_ITEMS, dtype=bool)
    excluded[::50] = False  # one item in fifty, like a small genre

    best = index.top_n(user, 10, excluded)

    assert list(best) == list(exact_top(items, user, 10, excluded))


def test_when_fewer_items_are_left_than_asked_it_returns_them_all(items, index):
    user = random_users(1, FACTORS)[0]
    excluded = np.ones(N_ITEMS, dtype=bool)
    excluded[[5, 500, 5000]] = False

    assert sorted(index.top_n(user, 10, excluded)) == [5, 500, 5000]
    assert len(index.top_n(user, 10, np.ones(N_ITEMS, dtype=bool))) == 0


def test_two_builds_of_the_same_items_answer_alike():
    small = random_factors(3_000, 16, seed=5)
    first, second = ApproximateIndex(*small), ApproximateIndex(*small)

    for user in random_users(10, 16):
        assert list(first.top_n(user, 10)) == list(second.top_n(user, 10))


def test_candidates_are_blended_as_over_the_whole_catalog(items, index):
    item_factors, item_bias = items
    user = random_users(1, FACTORS)[0]
    together = np.zeros(N_ITEMS)
    together[np.arange(0, N_ITEMS, 97)] = np.linspace(0.1, 2.0, 207)
    candidates = np.arange(0, N_ITEMS, 13)

    at_candidates = personal_scores_at(index, candidates, user, 3.7, together, 0.5)

    model = score_items(item_factors, item_bias, 3.5, user, 0.2)
    expected = personal_scores(model, together, 0.5)[candidates]
    np.testing.assert_allclose(at_candidates, expected, rtol=1e-9, atol=1e-9)


def test_top_positive_skips_zeros_and_excluded_items():
    values = np.zeros(1_000)
    values[[3, 30, 300, 600]] = [0.5, 2.0, 1.0, 3.0]

    assert sorted(top_positive(values, 2)) == [30, 600]
    assert sorted(top_positive(values, 10, excluded=[600])) == [3, 30, 300]


@pytest.fixture
def indexed(settings, trained):
    """The trained fixture model served with an approximate index."""
    settings.RTREC = {**settings.RTREC, "ANN_MIN_ITEMS": 1}
    return trained


@pytest.fixture
def candidate_calls(monkeypatch):
    calls = []
    original = ApproximateIndex.candidates

    def recorded(self, user_factors, count, excluded=None):
        found = original(self, user_factors, count, excluded)
        calls.append(set(found.tolist()))
        return found

    monkeypatch.setattr(ApproximateIndex, "candidates", recorded)
    return calls


def exact_picks(settings, user, n, **filters):
    settings.RTREC = {**settings.RTREC, "ANN_MIN_ITEMS": 0}
    holder.clear()
    return holder.recommend(user, n=n, **filters)


@pytest.mark.django_db
def test_a_trained_user_is_ranked_from_the_index_candidates(
    settings, indexed, candidate_calls
):
    user = EndUser.objects.get(external_id="u1")

    picks = holder.recommend(user, n=10)

    assert holder.model.ann is not None
    assert picks.strategy == "personal"
    assert len(candidate_calls) == 1
    chosen = {holder.catalog.id_index[item_id] for item_id in picks.item_ids}
    assert chosen <= candidate_calls[0]

    exact = exact_picks(settings, user, 10)
    assert holder.model.ann is None
    assert picks.item_ids == exact.item_ids
    np.testing.assert_allclose(picks.scores, exact.scores, rtol=1e-9)


@pytest.mark.django_db
def test_filters_apply_to_the_candidates_as_to_the_catalog(settings, indexed):
    user = EndUser.objects.get(external_id="u3")
    first = holder.recommend(user, n=2).item_ids

    picks = holder.recommend(user, n=10, exclude=first, genre="comedy")

    assert picks.item_ids
    assert not set(picks.item_ids) & set(first)
    genres = Item.objects.filter(external_id__in=picks.item_ids)
    assert all("Comedy" in item.genre_list for item in genres)
    exact = exact_picks(settings, user, 10, exclude=first, genre="comedy")
    assert picks.item_ids == exact.item_ids


@pytest.mark.django_db
def test_a_user_with_events_since_training_is_folded_in_instead(
    indexed, candidate_calls
):
    user = EndUser.objects.get(external_id="u4")
    Interaction.objects.create(
        user=user,
        item=Item.objects.get(external_id="1"),
        kind="like",
        created_at=timezone.now(),
    )

    picks = holder.recommend(user, n=5)

    assert picks.strategy == "foldin"
    assert candidate_calls == []


@pytest.mark.django_db
def test_a_user_the_model_never_saw_is_scored_exactly(indexed, candidate_calls):
    newcomer = EndUser.objects.for_external_id("newcomer")

    picks = holder.recommend(newcomer, n=5)

    assert picks.strategy == "popular"
    assert candidate_calls == []


@pytest.mark.django_db
def test_without_the_setting_no_index_is_built(trained):
    holder.recommend(EndUser.objects.get(external_id="u2"), n=5)

    assert holder.model.ann is None
