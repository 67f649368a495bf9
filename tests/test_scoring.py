"""The vectorised scoring path against Surprise's own predict()."""

import numpy as np
import pytest
from surprise import SVD, Dataset, Reader

from recommendations.engine.artifact import ArtifactError, load_artifact, save_artifact
from recommendations.engine.scoring import predict_pairs, score_items, top_n
from recommendations.training import artifact_from_svd


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(7)
    rows = [
        (f"u{u}", f"i{i}", float(rng.integers(1, 6)), None)
        for u in range(25)
        for i in rng.choice(60, size=15, replace=False)
    ]
    trainset = Dataset(Reader(rating_scale=(1, 5))).construct_trainset(rows)
    algo = SVD(n_factors=10, n_epochs=10, random_state=0)
    algo.fit(trainset)
    return algo, trainset, artifact_from_svd(algo, trainset)


def test_scores_match_surprise_predict_for_every_user_and_item(fitted):
    algo, trainset, artifact = fitted

    for user_row, raw_user in enumerate(artifact.user_ids.tolist()):
        scores = score_items(
            artifact.item_factors,
            artifact.item_bias,
            artifact.global_mean,
            artifact.user_factors[user_row],
            artifact.user_bias[user_row],
        )
        expected = [
            algo.predict(raw_user, raw_item, clip=False).est
            for raw_item in artifact.item_ids.tolist()
        ]
        np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-6)


def test_predict_pairs_matches_surprise_for_unknown_ids_too(fitted):
    algo, _, artifact = fitted
    users = np.array([0, 3, -1, 2, -1])
    items = np.array([5, -1, 4, 0, -1])

    estimates = predict_pairs(artifact, users, items)

    raw = [
        (
            artifact.user_ids[u] if u >= 0 else "nobody",
            artifact.item_ids[i] if i >= 0 else "nothing",
        )
        for u, i in zip(users, items, strict=True)
    ]
    expected = [algo.predict(u, i).est for u, i in raw]
    np.testing.assert_allclose(estimates, expected, atol=1e-6)


def test_top_n_returns_the_best_first():
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3])

    assert top_n(scores, 3).tolist() == [1, 3, 2]


def test_top_n_skips_excluded_items():
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3])
    excluded = np.array([False, True, False, True, False])

    assert top_n(scores, 2, excluded).tolist() == [2, 4]


def test_top_n_returns_fewer_when_fewer_are_allowed():
    scores = np.array([0.1, 0.9, 0.5])

    assert top_n(scores, 10, np.array([True, False, True])).tolist() == [1]
    assert top_n(scores, 10, np.ones(3, bool)).tolist() == []


def test_artifact_round_trips_without_pickle(fitted, tmp_path):
    _, _, artifact = fitted
    path = tmp_path / "model.npz"

    save_artifact(artifact, path)
    loaded = load_artifact(path)

    np.testing.assert_array_equal(loaded.item_factors, artifact.item_factors)
    np.testing.assert_array_equal(loaded.user_ids, artifact.user_ids)
    assert loaded.global_mean == artifact.global_mean


def test_artifact_holding_a_pickled_object_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, format_version=np.array(1), user_ids=np.array([{"a": 1}], object))

    with pytest.raises(ArtifactError):
        load_artifact(path)


def test_truncated_artifact_is_refused(fitted, tmp_path):
    _, _, artifact = fitted
    path = tmp_path / "model.npz"
    save_artifact(artifact, path)
    path.write_bytes(path.read_bytes()[:200])

    with pytest.raises(ArtifactError):
        load_artifact(path)
