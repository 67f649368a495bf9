"""Item content vectors from metadata, and how alike items are by content.

Every item becomes one sparse row of genre, word and decade features. A new
item, or a user whose only history is a few items, can then be placed among
the others without retraining the factor model.
"""

import re
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

# How much each kind of feature counts when two items are compared. Each
# kind is normalised on its own before these apply, so a rare title word
# (high idf) can never outweigh a shared genre (common, low idf).
FIELD_WEIGHTS = {"g:": 1.0, "t:": 0.5, "d:": 0.3}

STOPWORDS = frozenset(
    """
    about after all also an and any are as at be been but by can did do
    does for from had has have he her his how if in into is it its me my
    no not of off on or our out over she so than that the their them then
    there these they this to too up us was we were what when where which
    who will with you your
    """.split()
)

_WORD = re.compile(r"\w+")
_FIELD_OF_PREFIX = {prefix: field for field, prefix in enumerate(FIELD_WEIGHTS)}
_WEIGHT_OF_FIELD = np.array(list(FIELD_WEIGHTS.values()))


def item_tokens(genres, title, text=None, year=None):
    """The sorted feature tokens that one item's metadata yields."""
    if isinstance(genres, str):
        # A bare string would be read as a list of one-letter genres.
        raise TypeError("genres must be a list of strings, not one string")

    tokens = {"g:" + genre.strip().casefold() for genre in genres or ()}
    tokens.discard("g:")
    tokens.update("t:" + word for word in _words(title))
    tokens.update("t:" + word for word in _words(text))

    if year is not None:
        tokens.add(f"d:{int(year) // 10 * 10}")
    return sorted(tokens)


def _words(text):
    words = _WORD.findall((text or "").casefold())
    return (word for word in words if len(word) >= 2 and word not in STOPWORDS)


def _entries(token_lists, vocabulary):
    """Row, column and field of every token the vocabulary knows."""
    rows, columns, fields = [], [], []
    for row, tokens in enumerate(token_lists):
        for token in tokens:
            column = vocabulary.get(token)
            if column is not None:
                rows.append(row)
                columns.append(column)
                fields.append(_FIELD_OF_PREFIX[token[:2]])

    return (
        np.array(rows, dtype=np.int64),
        np.array(columns, dtype=np.int64),
        np.array(fields, dtype=np.int64),
    )


def _smoothed_idf(document_frequency, n_documents):
    return np.log((1 + n_documents) / (1 + document_frequency)) + 1


def _group_norms(groups, values):
    """For each value, the L2 norm of all values sharing its group."""
    squares = np.bincount(groups, weights=values**2)
    return np.sqrt(squares[groups])


def _weighted_rows(rows, columns, fields, idf, shape):
    """Rows of idf weights, each field scaled to its weight, then unit length.

    Presence counts, not repetitions: a word said twice in a blurb is no
    more about the item, and counts would let long text drown the genres.
    """
    values = idf[columns]

    field_groups = rows * len(FIELD_WEIGHTS) + fields
    values = values * _WEIGHT_OF_FIELD[fields] / _group_norms(field_groups, values)

    values = values / _group_norms(rows, values)
    matrix = sp.csr_matrix((values, (rows, columns)), shape=shape)
    return matrix.astype(np.float32)


def _columns_by_token(token_lists):
    known = sorted(set().union(*token_lists))
    return {token: column for column, token in enumerate(known)}


def _same_length(**lists):
    lengths = {name: len(values) for name, values in lists.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"metadata lists differ in length: {lengths}")


@dataclass(frozen=True, eq=False)
class ContentIndex:
    """Unit-length content rows for a catalog, and the vocabulary behind them.

    `vocabulary` and `idf` are never changed once built, so indexes made by
    append() share them with the index they came from.
    """

    matrix: sp.csr_matrix
    vocabulary: dict
    idf: np.ndarray

    def __post_init__(self):
        n_features = self.matrix.shape[1]
        if not n_features == len(self.vocabulary) == len(self.idf):
            raise ValueError(
                f"{n_features} feature columns, {len(self.vocabulary)} "
                f"vocabulary tokens and {len(self.idf)} idf values disagree"
            )

    @classmethod
    def build(cls, genres, titles, texts=None, years=None):
        """Index items given as parallel lists; texts and years may hold None."""
        texts = [None] * len(genres) if texts is None else texts
        years = [None] * len(genres) if years is None else years
        _same_length(genres=genres, titles=titles, texts=texts, years=years)

        token_lists = [
            item_tokens(*metadata)
            for metadata in zip(genres, titles, texts, years, strict=True)
        ]
        vocabulary = _columns_by_token(token_lists)
        rows, columns, fields = _entries(token_lists, vocabulary)

        document_frequency = np.bincount(columns, minlength=len(vocabulary))
        idf = _smoothed_idf(document_frequency, len(token_lists))

        shape = (len(token_lists), len(vocabulary))
        return cls(_weighted_rows(rows, columns, fields, idf, shape), vocabulary, idf)

    @property
    def n_items(self):
        return self.matrix.shape[0]

    def vector_for(self, genres, title, text=None, year=None):
        """A 1 x n_features row for any item; tokens not in the index are ignored."""
        token_lists = [item_tokens(genres, title, text, year)]
        rows, columns, fields = _entries(token_lists, self.vocabulary)

        shape = (1, len(self.vocabulary))
        return _weighted_rows(rows, columns, fields, self.idf, shape)

    def similar_to(self, row_vector):
        """Cosine similarity of every item to one content row, as float64."""
        row = sp.csr_matrix(row_vector, dtype=np.float64)
        row.sum_duplicates()
        norm = np.linalg.norm(row.data)
        if norm == 0:
            return np.zeros(self.n_items)

        scores = (self.matrix @ row.T).toarray().ravel() / norm
        # float32 rows are unit length only to about 1e-7 either way.
        return np.clip(scores, -1.0, 1.0)

    def similarity_to_item(self, index):
        """Cosine similarity of every item to the item at `index`."""
        return self.similar_to(self.matrix[index])

    def profile_scores(self, indices, weights):
        """Cosine of every item to the weighted sum of some items' rows.

        Negative weights push the profile away from an item, as a dislike
        should. No items, or weights that cancel out, score every item 0.
        """
        indices = np.asarray(indices, dtype=np.intp).ravel()
        weights = np.asarray(weights, dtype=np.float64).ravel()
        if len(indices) != len(weights):
            raise ValueError(f"{len(indices)} indices but {len(weights)} weights")

        profile = sp.csr_matrix(weights) @ self.matrix[indices]
        return self.similar_to(profile)

    def append(self, genres, title, text=None, year=None):
        """A new index with one more item; this one is left as it was.

        The vocabulary and idf stay as built, so every existing row keeps
        its values and scores stay comparable with the trained catalog.
        """
        row = self.vector_for(genres, title, text, year)
        matrix = sp.vstack([self.matrix, row], format="csr", dtype=np.float32)
        return ContentIndex(matrix, self.vocabulary, self.idf)

    def to_arrays(self):
        """Plain arrays, safe to save in an npz read with allow_pickle=False."""
        tokens = list(self.vocabulary)
        columns = [self.vocabulary[token] for token in tokens]
        return {
            "content_data": self.matrix.data,
            "content_indices": self.matrix.indices,
            "content_indptr": self.matrix.indptr,
            "content_shape": np.array(self.matrix.shape, dtype=np.int64),
            "content_idf": self.idf,
            "content_tokens": np.array(tokens, dtype=str),
            "content_columns": np.array(columns, dtype=np.int64),
        }

    @classmethod
    def from_arrays(cls, arrays):
        """The index to_arrays() described; other keys in `arrays` are ignored."""
        shape = tuple(int(n) for n in arrays["content_shape"])
        parts = (
            arrays["content_data"],
            arrays["content_indices"],
            arrays["content_indptr"],
        )
        matrix = sp.csr_matrix(parts, shape=shape, dtype=np.float32)

        tokens = arrays["content_tokens"].tolist()
        columns = arrays["content_columns"].tolist()
        idf = np.asarray(arrays["content_idf"], dtype=np.float64)
        return cls(matrix, dict(zip(tokens, columns, strict=True)), idf)
