"""Co-occurrence neighbours, checked against plain per-row sorts."""

import numpy as np
import pytest
from scipy import sparse

from recommendations.engine import neighbours
from recommendations.engine.neighbours import cooccurrence_neighbours, top_k_per_row


def random_matrix(seed, n_rows=60, n_columns=80, density=0.3, ties=False):
    rng = np.random.default_rng(seed)
    matrix = sparse.random(
        n_rows, n_columns, density=density, format="csr", rng=rng, dtype=np.float32
    )
    if ties:
        matrix.data = rng.integers(1, 4, size=matrix.nnz).astype(np.float32)
    return matrix


def sorted_rows(matrix, k):
    """Each row's entries by value, largest first, ties by column."""
    rows = []
    for row in range(matrix.shape[0]):
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        pairs = zip(matrix.data[start:end], matrix.indices[start:end], strict=True)
        rows.append(sorted(pairs, key=lambda pair: (-pair[0], pair[1]))[:k])
    return rows


def dense_cosine(user_index, item_index, n_items):
    """The co-occurrence cosine in float32, the diagonal dropped, as rows."""
    n_users = int(user_index.max()) + 1
    seen = np.zeros((n_users, n_items), dtype=np.float32)
    seen[user_index, item_index] = 1.0
    together = seen.T @ seen
    counts = np.sqrt(np.diag(together))
    counts[counts == 0] = 1.0
    inverse = 1 / counts
    cosine = together * inverse[:, None] * inverse[None, :]
    np.fill_diagonal(cosine, 0.0)
    return sparse.csr_matrix(cosine)


def interactions(seed, n_users=70, n_items=50, n_events=900):
    rng = np.random.default_rng(seed)
    # Skewed towards the first items, as real traffic is; some repeat.
    items = np.minimum(rng.zipf(1.5, n_events) - 1, n_items - 1)
    users = rng.integers(0, n_users, n_events)
    return users.astype(np.intp), items.astype(np.intp)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [1, 5, 30, 100])
def test_top_k_matches_a_plain_sort_when_values_differ(seed, k):
    matrix = random_matrix(seed)

    indices, similarities = top_k_per_row(matrix, k)

    for row, expected in enumerate(sorted_rows(matrix, k)):
        found = len(expected)
        assert similarities[row, :found].tolist() == [v for v, _ in expected]
        assert indices[row, :found].tolist() == [c for _, c in expected]
        assert not similarities[row, found:].any()
        assert not indices[row, found:].any()


@pytest.mark.parametrize("seed", range(5))
def test_top_k_with_ties_keeps_the_largest_values_of_the_row(seed):
    matrix = random_matrix(seed, ties=True)

    indices, similarities = top_k_per_row(matrix, 10)

    for row, expected in enumerate(sorted_rows(matrix, 10)):
        assert similarities[row, : len(expected)].tolist() == [v for v, _ in expected]
        picked = indices[row, : len(expected)]
        assert len(set(picked.tolist())) == len(expected)
        values = matrix[row].toarray().ravel()
        assert values[picked].tolist() == similarities[row, : len(expected)].tolist()


def test_top_k_breaks_ties_by_column_in_a_short_row():
    matrix = sparse.csr_matrix(np.array([[0, 2, 1, 2, 0, 2]], dtype=np.float32))

    indices, similarities = top_k_per_row(matrix, 5)

    assert indices.tolist() == [[1, 3, 5, 2, 0]]
    assert similarities.tolist() == [[2, 2, 2, 1, 0]]


@pytest.mark.parametrize("seed", range(4))
def test_neighbours_are_the_top_of_the_dense_cosine(seed):
    users, items = interactions(seed)

    found = cooccurrence_neighbours(users, items, 50, k=8)

    expected = top_k_per_row(dense_cosine(users, items, 50), 8)
    np.testing.assert_array_equal(found[0], expected[0])
    np.testing.assert_array_equal(found[1], expected[1])


def test_blocks_of_any_size_give_the_same_neighbours(monkeypatch):
    users, items = interactions(7, n_users=200, n_items=120, n_events=3_000)
    whole = cooccurrence_neighbours(users, items, 120, k=20)

    monkeypatch.setattr(neighbours, "BLOCK_PRODUCTS", 1)
    row_by_row = cooccurrence_neighbours(users, items, 120, k=20)

    np.testing.assert_array_equal(whole[0], row_by_row[0])
    np.testing.assert_array_equal(whole[1], row_by_row[1])


def test_an_item_nobody_saw_has_no_neighbours_and_is_nobodys():
    users = np.array([0, 0, 1, 1, 1], dtype=np.intp)
    items = np.array([0, 1, 0, 1, 3], dtype=np.intp)

    indices, similarities = cooccurrence_neighbours(users, items, 4, k=3)

    assert not similarities[2].any()
    assert 2 not in indices[similarities > 0]
    assert indices[0, 0] == 1
    assert similarities[0, 0] == pytest.approx(1.0)


def test_no_interactions_give_empty_rows():
    empty = np.array([], dtype=np.intp)

    indices, similarities = cooccurrence_neighbours(empty, empty, 3, k=2)

    assert indices.shape == similarities.shape == (3, 2)
    assert not similarities.any()
