"""Turning stored interactions into a trained, versioned model."""

import logging
import secrets
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import numpy as np
from django.conf import settings
from surprise import SVD, Dataset, Reader

from events.models import EndUser, Interaction, Item
from recommendations.engine.artifact import ModelArtifact, save_artifact
from recommendations.engine.scoring import predict_pairs
from recommendations.models import ModelVersion

logger = logging.getLogger(__name__)


class NothingToTrain(Exception):
    """The database holds no interactions the chosen feedback can use."""


@dataclass
class TrainingSettings:
    factors: int = 100
    epochs: int = 20
    lr: float = 0.005
    reg: float = 0.02
    feedback: str = "explicit"
    holdout: float = 0.1
    seed: int = 0


@dataclass
class RatingTable:
    """One row per rating, ids as the catalog's own strings."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    values: np.ndarray

    def __len__(self):
        return len(self.values)


def read_ratings(chunk_size=50_000):
    """Read every stored rating with plain tuples, not model instances."""
    users = dict(EndUser.objects.values_list("pk", "external_id"))
    items = dict(Item.objects.values_list("pk", "external_id"))

    rows = (
        Interaction.objects.filter(kind=Interaction.Kind.RATE, value__isnull=False)
        .order_by()
        .values_list("user_id", "item_id", "value")
        .iterator(chunk_size=chunk_size)
    )
    user_pks, item_pks, values = [], [], []
    for user_pk, item_pk, value in rows:
        user_pks.append(user_pk)
        item_pks.append(item_pk)
        values.append(value)

    return RatingTable(
        user_ids=np.array([users[pk] for pk in user_pks], dtype=str),
        item_ids=np.array([items[pk] for pk in item_pks], dtype=str),
        values=np.array(values, dtype=np.float64),
    )


def holdout_mask(n_rows, fraction, seed):
    """Rows drawn for the test set, reproducible for a given seed."""
    if fraction <= 0:
        return np.zeros(n_rows, dtype=bool)
    return np.random.default_rng(seed).random(n_rows) < fraction


def fit_svd(table, train_mask, options):
    """Fit Surprise's SVD on the training rows of the table."""
    reader = Reader(rating_scale=settings.RTREC["RATING_SCALE"])
    raw = zip(
        table.user_ids[train_mask].tolist(),
        table.item_ids[train_mask].tolist(),
        table.values[train_mask].tolist(),
        [None] * int(train_mask.sum()),
        strict=True,
    )
    trainset = Dataset(reader).construct_trainset(list(raw))

    algo = SVD(
        n_factors=options.factors,
        n_epochs=options.epochs,
        lr_all=options.lr,
        reg_all=options.reg,
        random_state=options.seed,
    )
    algo.fit(trainset)
    return algo, trainset


def artifact_from_svd(algo, trainset):
    """Copy what serving needs out of a fitted SVD, in inner-id order."""
    n_users, n_items = trainset.n_users, trainset.n_items
    popularity = np.array([len(trainset.ir[i]) for i in range(n_items)], float)

    return ModelArtifact(
        user_ids=np.array([trainset.to_raw_uid(u) for u in range(n_users)], str),
        item_ids=np.array([trainset.to_raw_iid(i) for i in range(n_items)], str),
        user_factors=np.asarray(algo.pu, dtype=np.float64),
        item_factors=np.asarray(algo.qi, dtype=np.float64),
        user_bias=np.asarray(algo.bu, dtype=np.float64),
        item_bias=np.asarray(algo.bi, dtype=np.float64),
        global_mean=float(trainset.global_mean),
        item_popularity=popularity,
        rating_scale=tuple(trainset.rating_scale),
    )


def rating_metrics(artifact, table, test_mask):
    """Held-out RMSE and MAE, predicted in one vectorised step."""
    if not test_mask.any():
        return {}

    user_index = _index_of(artifact.user_ids, table.user_ids[test_mask])
    item_index = _index_of(artifact.item_ids, table.item_ids[test_mask])
    error = predict_pairs(artifact, user_index, item_index) - table.values[test_mask]

    return {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        "n_test": int(test_mask.sum()),
    }


def _index_of(known_ids, wanted_ids):
    """Positions of wanted ids in known ids, -1 where absent."""
    lookup = {raw: i for i, raw in enumerate(known_ids.tolist())}
    return np.array([lookup.get(raw, -1) for raw in wanted_ids.tolist()], np.intp)


def new_version_name():
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def train_model(options, activate=True):
    """Train, evaluate, write the artifact and record the version."""
    started = time.perf_counter()
    table = read_ratings()
    if len(table) == 0:
        raise NothingToTrain("no ratings are stored: import or send some events first")

    test_mask = holdout_mask(len(table), options.holdout, options.seed)
    algo, trainset = fit_svd(table, ~test_mask, options)
    artifact = artifact_from_svd(algo, trainset)
    metrics = rating_metrics(artifact, table, test_mask)

    version = new_version_name()
    save_artifact(artifact, settings.RTREC["MODEL_DIR"] / f"{version}.npz")
    record = ModelVersion.objects.create(
        version=version,
        algorithm="svd",
        feedback=options.feedback,
        params=asdict(options),
        metrics=metrics,
        n_users=trainset.n_users,
        n_items=trainset.n_items,
        n_interactions=len(table),
        training_seconds=time.perf_counter() - started,
        artifact=f"{version}.npz",
    )
    logger.info("trained model %s: %s", version, metrics)

    if activate:
        record.activate()
    return record
