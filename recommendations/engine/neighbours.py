"""Item-to-item neighbours from co-occurrence, computed at train time."""

import numpy as np
from scipy import sparse

# Multiplications per block of co-occurrence rows. The whole matrix grows
# with the square of the catalog: on a million synthetic interactions over
# 10,000 items it took 490 MB at peak, blocks of this size 50 MB for about
# 0.2 s more.
BLOCK_PRODUCTS = 1 << 22


def cooccurrence_neighbours(user_index, item_index, n_items, k=50):
    """The k items most often seen by the same users, for every item.

    Similarity is the cosine of two items' user sets: co-occurrences over
    the square root of the product of their counts. Returns two n_items x k
    arrays, neighbour indices and similarities (0 where there are fewer).
    """
    n_users = int(user_index.max()) + 1 if len(user_index) else 0
    ones = np.ones(len(user_index), dtype=np.float32)
    seen = sparse.csr_matrix((ones, (user_index, item_index)), (n_users, n_items))
    seen.data[:] = 1.0  # a user who saw an item twice still counts once
    by_item = seen.T.tocsr()

    users_per_item = np.diff(by_item.indptr).astype(np.float32)
    counts = np.sqrt(users_per_item)
    counts[counts == 0] = 1.0
    inverse = 1 / counts

    parts = [
        top_k_per_row(_cosine_rows(by_item, rows, inverse), k)
        for rows in _row_blocks(by_item, seen)
    ]
    if not parts:  # no items at all
        return top_k_per_row(sparse.csr_matrix((0, 0), dtype=np.float32), k)
    return np.vstack([p[0] for p in parts]), np.vstack([p[1] for p in parts])


def _row_blocks(by_item, seen):
    """Slices of items whose co-occurrence rows take about BLOCK_PRODUCTS."""
    items_per_user = np.diff(seen.indptr).astype(np.float64)
    products = np.cumsum(by_item @ items_per_user)
    n_items = by_item.shape[0]
    start = 0
    while start < n_items:
        done = products[start - 1] if start else 0.0
        end = int(np.searchsorted(products, done + BLOCK_PRODUCTS, side="right"))
        end = min(max(end, start + 1), n_items)
        yield slice(start, end)
        start = end


def _cosine_rows(by_item, rows, inverse):
    """Some rows of the cosine matrix, without its diagonal, columns in order.

    The matrix is symmetric, so these rows are the transpose of the same
    columns; turning that product back into rows is a counting sort, so
    the columns come out in order without sorting each row.
    """
    block = (by_item @ by_item[rows].T).T.tocsr()
    row_of = np.repeat(np.arange(rows.start, rows.stop), np.diff(block.indptr))

    # Scaled in float32 in the same order as multiplying by a diagonal on
    # either side, and then the diagonal dropped: ties between neighbours
    # resolve the same way whatever the block size.
    block.data *= inverse[row_of]
    block.data *= inverse[block.indices]
    block.data[block.indices == row_of] = 0
    block.eliminate_zeros()
    return block


def top_k_per_row(matrix, k):
    """Each row's k largest entries, largest first, as (columns, values).

    Rows with fewer entries are padded with zeros. Among equal values, a
    row of k entries or fewer keeps its stored order; past k, the
    partition decides which of them make the cut, and their order, the
    same way on every run.
    """
    n_items = matrix.shape[0]
    indices = np.zeros((n_items, k), dtype=np.int32)
    similarities = np.zeros((n_items, k), dtype=np.float32)

    for row in range(n_items):
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        columns, values = matrix.indices[start:end], matrix.data[start:end]
        if len(values) > k:
            keep = np.argpartition(-values, k - 1)[:k]
            columns, values = columns[keep], values[keep]
        order = np.argsort(-values, kind="stable")
        indices[row, : len(order)] = columns[order]
        similarities[row, : len(order)] = values[order]
    return indices, similarities


def neighbour_scores(indices, similarities, items, weights, n_items):
    """How strongly each item is a neighbour of the given weighted items."""
    weights = np.asarray(weights, dtype=np.float64)
    contribution = similarities[items] * weights[:, None]
    return np.bincount(
        indices[items].ravel(), weights=contribution.ravel(), minlength=n_items
    )
