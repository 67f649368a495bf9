"""Content vectors from item metadata, with no database and no trained model."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from recommendations.engine.content import ContentIndex, item_tokens

CATALOG = [
    (["Action", "Thriller"], "Speed Run", "A bus must keep moving", 1994),
    (["Action", "Thriller"], "Hard Target", None, 1993),
    (["Action"], "Fast Lane", "Cars and chases", 1996),
    (["Comedy", "Romance"], "Sleepless Nights", "Two strangers fall in love", 1993),
    (["Comedy", "Romance"], "Notting Lane", None, 1999),
    (["Comedy"], "Dumb Luck", "Two friends on a road trip", 1994),
    (["Horror"], "Night Shift", "Something waits in the mill", 1990),
]
ACTION = [0, 1, 2]
COMEDY = [3, 4, 5]


def build(catalog=CATALOG):
    genres, titles, texts, years = (
        list(column) for column in zip(*catalog, strict=True)
    )
    return ContentIndex.build(genres, titles, texts, years)


@pytest.fixture
def index():
    return build()


def test_tokens_are_prefixed_casefolded_and_without_stopwords():
    tokens = item_tokens(["Sci-Fi", " Drama "], "The Man from U.N.C.L.E.", None, 1966)

    assert tokens == ["d:1960", "g:drama", "g:sci-fi", "t:man"]


def test_items_sharing_genres_are_more_alike_than_items_sharing_none(index):
    scores = index.similarity_to_item(0)

    assert scores[1] > scores[2] > 0
    assert scores[ACTION].min() > scores[COMEDY].max()


def test_a_new_item_finds_items_of_its_own_genre_first(index):
    row = index.vector_for(["Romance", "Comedy"], "Love Actually", "A new film", 2003)

    scores = index.similar_to(row)

    top_three = set(np.argsort(-scores)[:3].tolist())
    assert top_three == set(COMEDY)


def test_vector_for_ignores_tokens_the_index_has_never_seen(index):
    row = index.vector_for(["Western"], "Unforgiven", "Gunslingers", 1962)

    assert row.shape == (1, len(index.vocabulary))
    assert row.nnz == 0
    assert np.array_equal(index.similar_to(row), np.zeros(index.n_items))


def test_a_shared_title_word_counts_but_less_than_a_shared_genre():
    index = build(
        [
            (["Drama"], "Storm Rising", None, None),
            (["Drama"], "Quiet Garden", None, None),
            (["Comedy"], "Storm Chasers", None, None),
            (["Comedy"], "Paper Moon", None, None),
            (["Western"], "Dust Road", None, None),
        ]
    )

    scores = index.similarity_to_item(0)

    shared_genre, shared_word, nothing_shared = scores[1], scores[2], scores[3]
    assert shared_genre > shared_word > nothing_shared == 0


def test_a_disliked_genre_ranks_below_everything_else(index):
    scores = index.profile_scores([0, 3], [1.0, -1.0])

    assert scores[ACTION].min() > scores[6] > scores[COMEDY].max()
    assert np.all((scores >= -1) & (scores <= 1))


def test_profile_of_one_liked_item_is_that_items_similarity(index):
    profile = index.profile_scores([2], [4.0])

    assert np.allclose(profile, index.similarity_to_item(2))


def test_profile_scores_of_no_items_are_zeros(index):
    scores = index.profile_scores([], [])

    assert np.array_equal(scores, np.zeros(index.n_items))


def test_profile_scores_need_one_weight_per_index(index):
    with pytest.raises(ValueError, match="2 indices but 1 weights"):
        index.profile_scores([0, 1], [1.0])


def test_build_refuses_metadata_lists_of_different_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        ContentIndex.build([["Drama"], ["Comedy"]], ["One"], None, None)


def test_arrays_round_trip_through_an_npz_file_with_identical_scores(index, tmp_path):
    path = tmp_path / "content.npz"

    np.savez(path, **index.to_arrays())
    with np.load(path, allow_pickle=False) as stored:
        loaded = ContentIndex.from_arrays(dict(stored))

    assert loaded.vocabulary == index.vocabulary
    assert np.array_equal(loaded.idf, index.idf)
    for item in range(index.n_items):
        expected = index.similarity_to_item(item)
        assert np.array_equal(loaded.similarity_to_item(item), expected)

    new_item = (["Action"], "Night Run", None, 1995)
    expected_row = index.vector_for(*new_item).toarray()
    assert np.array_equal(loaded.vector_for(*new_item).toarray(), expected_row)


def test_append_returns_a_new_index_and_leaves_the_original_unchanged(index):
    before = index.matrix.toarray()
    vocabulary_before = dict(index.vocabulary)

    grown = index.append(["Horror"], "Night Terror", "A brand new scream", 2001)

    assert grown.n_items == index.n_items + 1
    assert index.n_items == len(CATALOG)
    assert np.array_equal(index.matrix.toarray(), before)
    assert index.vocabulary == vocabulary_before
    assert np.array_equal(grown.matrix[: index.n_items].toarray(), before)
    assert np.argmax(grown.similarity_to_item(6)[:-1]) == 6
    assert grown.similarity_to_item(grown.n_items - 1)[6] > 0


def test_an_item_without_metadata_is_similar_to_nothing_rather_than_nan():
    index = build(CATALOG + [([], "", None, None), ([], "The", "of a", None)])

    for empty in (7, 8):
        scores = index.similarity_to_item(empty)
        assert np.array_equal(scores, np.zeros(index.n_items))
    assert index.similarity_to_item(0)[[7, 8]].tolist() == [0.0, 0.0]
    assert not np.isnan(index.profile_scores([7], [1.0])).any()


GENRE_LISTS = st.lists(
    st.lists(st.sampled_from(["Action", "Comedy", "Drama", "Horror", "War"])),
    min_size=1,
    max_size=25,
)


# No deadline: the first example also pays for scipy's sparse warm-up.
@hypothesis_settings(max_examples=60, deadline=None)
@given(genres=GENRE_LISTS)
def test_similarities_are_cosines_and_an_item_is_most_like_itself(genres):
    index = ContentIndex.build(genres, [""] * len(genres), None, None)

    for item, item_genres in enumerate(genres):
        scores = index.similarity_to_item(item)
        assert np.all((scores >= -1 - 1e-9) & (scores <= 1 + 1e-9))
        if item_genres:
            assert scores[item] >= scores.max() - 1e-9
            assert scores[item] == pytest.approx(1.0, abs=1e-6)
        else:
            assert not scores.any()
