"""Offline ranking metrics in the engine, pinned on examples worked by hand."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import sparse

from recommendations.engine.metrics import (
    average_precision_at_k,
    catalog_coverage,
    hit_rate,
    hits_matrix,
    ndcg_at_k,
    novelty,
    precision_at_k,
    ranked_top_k,
    rating_errors,
    recall_at_k,
    relevant_counts,
    split_mask,
    summarise,
)

K = 3

# Three users, six items. Anna already saw item 1 in training, so it must
# not come back; Ben saw nothing; Cleo saw items 1 and 4.
SCORES = np.array(
    [
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],  # anna
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # ben
        [0.6, 0.9, 0.5, 0.4, 0.8, 0.1],  # cleo
    ]
)
SEEN = np.array(
    [
        [0, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [0, 1, 0, 0, 1, 0],
    ],
    dtype=bool,
)

# Test items: anna {2, 5}, ben {0, 3, 5}, cleo none at all.
RELEVANT = sparse.csr_matrix(
    np.array(
        [
            [0, 0, 1, 0, 0, 1],
            [1, 0, 0, 1, 0, 1],
            [0, 0, 0, 0, 0, 0],
        ]
    )
)

# Best-first lists, worked out from SCORES without the SEEN items:
#   anna 0.9 (0), 0.7 (2), 0.6 (3)  ->  hits: no,  yes, no
#   ben  0.6 (5), 0.5 (4), 0.4 (3)  ->  hits: yes, no,  yes
#   cleo 0.6 (0), 0.5 (2), 0.4 (3)  ->  hits: none, nothing is relevant
TOP = np.array([[0, 2, 3], [5, 4, 3], [0, 2, 3]])
HITS = np.array([[False, True, False], [True, False, True], [False] * 3])
N_RELEVANT = np.array([2, 3, 0])


def test_ranked_top_k_returns_the_best_allowed_items_best_first():
    assert ranked_top_k(SCORES, SEEN, K).tolist() == TOP.tolist()


def test_ranked_top_k_accepts_a_sparse_matrix_of_excluded_items():
    seen = sparse.csr_matrix(SEEN)

    assert ranked_top_k(SCORES, seen, K).tolist() == TOP.tolist()


def test_ranked_top_k_ignores_stored_zeros_in_a_sparse_exclusion():
    seen = sparse.csr_matrix(([0.0], ([0], [0])), shape=SCORES.shape)

    assert ranked_top_k(SCORES, seen, K)[0].tolist() == [0, 1, 2]


def test_ranked_top_k_pads_with_minus_one_when_too_few_items_are_allowed():
    scores = np.array([[0.4, 0.9, 0.1, 0.7], [0.2, 0.1, 0.3, 0.5]])
    excluded = np.array([[True, False, True, False], [True] * 4])

    top = ranked_top_k(scores, excluded, K)

    assert top.tolist() == [[1, 3, -1], [-1, -1, -1]]


def test_ranked_top_k_pads_when_k_exceeds_the_catalog():
    top = ranked_top_k(np.array([[0.2, 0.8]]), None, 4)

    assert top.tolist() == [[1, 0, -1, -1]]


def test_ranked_top_k_never_returns_an_item_with_a_nan_score():
    top = ranked_top_k(np.array([[0.3, np.nan, 0.5]]), None, K)

    assert top.tolist() == [[2, 0, -1]]


@pytest.mark.parametrize("k", [0, -1])
def test_ranked_top_k_rejects_k_below_one(k):
    with pytest.raises(ValueError):
        ranked_top_k(SCORES, SEEN, k)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_excluded_items_are_never_ranked(data):
    n_users = data.draw(st.integers(1, 5))
    n_items = data.draw(st.integers(1, 12))
    k = data.draw(st.integers(1, 15))
    shape = (n_users, n_items)
    scores = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-9, 9)))
    excluded = data.draw(hnp.arrays(bool, shape))

    top = ranked_top_k(scores, excluded, k)

    returned = top != -1
    owners = np.broadcast_to(np.arange(n_users)[:, None], top.shape)
    assert not excluded[owners[returned], top[returned]].any()

    allowed = n_items - excluded.sum(axis=1)
    assert returned.sum(axis=1).tolist() == np.minimum(k, allowed).tolist()

    ranked = np.where(returned, scores[owners, top], -np.inf)
    assert (ranked[:, :-1] >= ranked[:, 1:]).all()


def test_hits_matrix_marks_recommended_items_that_are_relevant():
    assert hits_matrix(TOP, RELEVANT).tolist() == HITS.tolist()


def test_hits_matrix_never_counts_padding_as_a_hit():
    # -1 would index the last item if it slipped through, and it is relevant.
    relevant = sparse.csr_matrix(np.array([[0, 0, 1]]))

    assert hits_matrix(np.array([[2, -1, -1]]), relevant).tolist() == [
        [True, False, False]
    ]


def test_relevant_counts_ignores_stored_zeros():
    relevant = sparse.csr_matrix(([1, 0, 1], ([0, 0, 1], [0, 1, 2])), shape=(2, 3))

    assert relevant_counts(relevant).tolist() == [1, 1]
    assert relevant_counts(RELEVANT).tolist() == N_RELEVANT.tolist()


def test_precision_is_hits_over_k():
    # anna 1 hit / 3, ben 2 hits / 3, cleo 0 / 3.
    expected = [1 / 3, 2 / 3, 0.0]

    assert precision_at_k(HITS, K) == pytest.approx(expected)


def test_recall_is_hits_over_relevant_items():
    # anna 1 of 2, ben 2 of 3, cleo has nothing relevant and gets 0.
    expected = [1 / 2, 2 / 3, 0.0]

    assert recall_at_k(HITS, N_RELEVANT) == pytest.approx(expected)


def test_ndcg_divides_discounted_gain_by_the_ideal():
    # Slot r (1-based) is discounted by 1 / log2(r + 1):
    #   slot 1 -> 1 / log2(2) = 1
    #   slot 2 -> 1 / log2(3) = 0.63093
    #   slot 3 -> 1 / log2(4) = 0.5
    # anna: one hit in slot 2, DCG = 0.63093. Two relevant items, so the
    #   ideal puts hits in slots 1 and 2: IDCG = 1 + 0.63093 = 1.63093.
    #   NDCG = 0.63093 / 1.63093 = 0.38685.
    # ben: hits in slots 1 and 3, DCG = 1 + 0.5 = 1.5. Three relevant
    #   items fill all three slots: IDCG = 1 + 0.63093 + 0.5 = 2.13093.
    #   NDCG = 1.5 / 2.13093 = 0.70392.
    # cleo: nothing relevant, IDCG = 0, reported as 0.
    expected = [0.38685, 0.70392, 0.0]

    assert ndcg_at_k(HITS, N_RELEVANT) == pytest.approx(expected, abs=1e-5)


def test_ndcg_ideal_is_capped_at_k():
    # Five relevant items but only three slots: three hits are perfect.
    assert ndcg_at_k([[True, True, True]], [5]) == pytest.approx([1.0])


def test_average_precision_sums_precision_at_each_hit():
    # anna: hit at rank 2, precision there 1/2; over min(3, 2) = 2 -> 0.25.
    # ben: hits at rank 1 (precision 1/1) and rank 3 (precision 2/3);
    #   (1 + 2/3) / min(3, 3) = (5/3) / 3 = 5/9 = 0.55556.
    # cleo: nothing relevant -> 0.
    expected = [0.25, 5 / 9, 0.0]

    assert average_precision_at_k(HITS, N_RELEVANT) == pytest.approx(expected)


def test_hit_rate_is_one_for_users_with_any_hit():
    assert hit_rate(HITS).tolist() == [1.0, 1.0, 0.0]


def test_metrics_do_not_divide_by_zero_for_users_with_nothing_relevant():
    no_hits = np.zeros((2, K), dtype=bool)
    nothing = np.array([0, 0])

    with np.errstate(all="raise"):
        assert recall_at_k(no_hits, nothing).tolist() == [0.0, 0.0]
        assert ndcg_at_k(no_hits, nothing).tolist() == [0.0, 0.0]
        assert average_precision_at_k(no_hits, nothing).tolist() == [0.0, 0.0]


def test_catalog_coverage_counts_distinct_recommended_items():
    # The lists hold items {0, 2, 3, 4, 5}: 5 of 6 items.
    assert catalog_coverage(TOP, 6) == pytest.approx(5 / 6)


def test_catalog_coverage_ignores_padding():
    # Only item 1 is recommended; -1 is not an item.
    assert catalog_coverage(np.array([[1, -1], [-1, -1]]), 4) == 0.25


# Eight training users. Item 4 was seen by nobody and is clipped to 1.
POPULARITY = np.array([8, 4, 2, 1, 0, 1])


def test_novelty_is_mean_self_information_of_every_slot():
    # -log2(popularity / 8) per item: 0 -> 0, 1 -> 1, 2 -> 2, 3 -> 3,
    # 4 -> 3 (clipped to 1 user), 5 -> 3.
    # anna [0, 2, 3] -> 0 + 2 + 3 = 5
    # ben  [5, 4, 3] -> 3 + 3 + 3 = 9
    # cleo [0, 2, 3] -> 0 + 2 + 3 = 5
    # (5 + 9 + 5) / 9 slots = 19 / 9 = 2.11111
    assert novelty(TOP, POPULARITY, 8) == pytest.approx(19 / 9)


def test_novelty_skips_padding_slots():
    # Items 0 and 1 only: (0 + 1) / 2.
    assert novelty(np.array([[0, 1, -1]]), POPULARITY, 8) == pytest.approx(0.5)


def test_novelty_of_no_recommendations_is_zero():
    assert novelty(np.full((2, K), -1), POPULARITY, 8) == 0.0


def test_rating_errors():
    # Errors 1, 0, 2: MAE = 3 / 3 = 1; RMSE = sqrt((1 + 0 + 4) / 3) = 1.29099.
    errors = rating_errors([3.0, 4.0, 5.0], [2.0, 4.0, 3.0])

    assert errors["mae"] == pytest.approx(1.0)
    assert errors["rmse"] == pytest.approx(np.sqrt(5 / 3))


def test_rating_errors_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        rating_errors([1.0, 2.0], [1.0])


def test_summarise_averages_only_over_users_with_relevant_items():
    summary = summarise(TOP, RELEVANT, POPULARITY, 8, K)

    # cleo has nothing relevant, so each average is over anna and ben:
    #   precision (1/3 + 2/3) / 2 = 0.5
    #   recall    (1/2 + 2/3) / 2 = 7/12
    #   ndcg      (0.38685 + 0.70392) / 2 = 0.54539
    #   map       (1/4 + 5/9) / 2 = 29/72
    #   hit rate  (1 + 1) / 2 = 1
    # Coverage and novelty describe all three lists, cleo's included.
    assert summary == {
        "precision": pytest.approx(0.5),
        "recall": pytest.approx(7 / 12),
        "ndcg": pytest.approx(0.54539, abs=1e-5),
        "map": pytest.approx(29 / 72),
        "hit_rate": pytest.approx(1.0),
        "coverage": pytest.approx(5 / 6),
        "novelty": pytest.approx(19 / 9),
        "users": 2,
    }


def test_summarise_with_no_relevant_items_reports_zero_users():
    nothing = sparse.csr_matrix((3, 6))

    summary = summarise(TOP, nothing, POPULARITY, 8, K)

    assert summary["users"] == 0
    assert summary["precision"] == summary["ndcg"] == summary["map"] == 0.0


def test_summarise_rejects_lists_shorter_than_k():
    with pytest.raises(ValueError):
        summarise(TOP, RELEVANT, POPULARITY, 8, K + 1)


def test_the_whole_pipeline_matches_the_hand_worked_example():
    top = ranked_top_k(SCORES, sparse.csr_matrix(SEEN), K)
    hits = hits_matrix(top, RELEVANT)

    assert summarise(top, RELEVANT, POPULARITY, 8, K)["users"] == 2
    assert hits.tolist() == HITS.tolist()


def test_split_mask_is_the_documented_draw():
    expected = np.random.default_rng(7).random(1000) < 0.25

    assert np.array_equal(split_mask(1000, 0.25, seed=7), expected)


def test_split_mask_is_reproducible_for_a_seed_and_differs_across_seeds():
    first = split_mask(100_000, 0.2, seed=42)

    assert np.array_equal(first, split_mask(100_000, 0.2, seed=42))
    assert not np.array_equal(first, split_mask(100_000, 0.2, seed=43))


def test_split_mask_puts_the_expected_fraction_in_the_test_set():
    # The standard error of the fraction is sqrt(0.2 * 0.8 / 1e5) = 0.0013;
    # 0.01 is almost eight of those, so this does not flake.
    mask = split_mask(100_000, 0.2, seed=42)

    assert mask.dtype == bool
    assert mask.mean() == pytest.approx(0.2, abs=0.01)


@st.composite
def ranked_hits(draw):
    """Hits of a few users at k, with at least as many relevant items."""
    n_users = draw(st.integers(1, 6))
    k = draw(st.integers(1, 10))
    hits = draw(hnp.arrays(bool, (n_users, k)))
    missed = draw(hnp.arrays(np.int64, n_users, elements=st.integers(0, 20)))
    return hits, hits.sum(axis=1) + missed


@settings(max_examples=300, deadline=None)
@given(example=ranked_hits())
def test_per_user_metrics_lie_between_zero_and_one(example):
    hits, n_relevant = example
    k = hits.shape[1]

    for values in (
        precision_at_k(hits, k),
        recall_at_k(hits, n_relevant),
        ndcg_at_k(hits, n_relevant),
        average_precision_at_k(hits, n_relevant),
        hit_rate(hits),
    ):
        assert ((values >= 0) & (values <= 1 + 1e-12)).all()


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_ndcg_is_one_when_the_relevant_items_are_ranked_first(data):
    n_items = data.draw(st.integers(1, 12))
    k = data.draw(st.integers(1, n_items + 3))
    n_relevant = data.draw(st.integers(1, min(k, n_items)))
    relevant_items = data.draw(st.permutations(range(n_items)))[:n_relevant]
    scores = data.draw(hnp.arrays(np.float64, (1, n_items), elements=st.floats(0, 1)))

    # Lifting the relevant items above every other score ranks them first.
    scores[0, relevant_items] += 2.0
    relevant = np.zeros((1, n_items), dtype=bool)
    relevant[0, relevant_items] = True
    hits = hits_matrix(ranked_top_k(scores, None, k), sparse.csr_matrix(relevant))

    assert ndcg_at_k(hits, [n_relevant]) == pytest.approx([1.0])
    assert average_precision_at_k(hits, [n_relevant]) == pytest.approx([1.0])
    assert recall_at_k(hits, [n_relevant]) == pytest.approx([1.0])
