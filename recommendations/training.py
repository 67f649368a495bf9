"""Turning stored interactions into a trained, versioned model."""

import json
import logging
import secrets
import time
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime

import numpy as np
from django.conf import settings
from scipy import sparse
from surprise import SVD, Dataset, Reader

from events.models import EndUser, Interaction, Item
from recommendations.engine.artifact import ModelArtifact, save_artifact
from recommendations.engine.ease import fit_ease
from recommendations.engine.feedback import event_weights, sample_negatives, taken_up
from recommendations.engine.neighbours import cooccurrence_neighbours
from recommendations.engine.scoring import predict_pairs
from recommendations.models import ModelVersion

logger = logging.getLogger(__name__)


class NothingToTrain(Exception):
    """The database holds no interactions the chosen feedback can use."""


# Hyper-parameters when not given. The rating predictor is tuned for
# held-out RMSE on MovieLens 100K (0.909 against 0.934 for Surprise's
# own defaults); the implicit model for NDCG@10. `tune --save` replaces
# them with what it measured best on the data at hand.
DEFAULTS = {
    "explicit": {"factors": 100, "epochs": 30, "lr": 0.01, "reg": 0.08},
    "implicit": {"factors": 64, "epochs": 30, "lr": 0.005, "reg": 0.02},
    "ease": {"ease_reg": 400.0},
}
IMPLICIT_SCALE = (0.0, 1.0)
FEEDBACKS = ("explicit", "implicit")
SAVED_DEFAULTS = "train-defaults.json"


@dataclass
class TrainingSettings:
    algorithm: str = "svd"
    feedback: str = "auto"
    factors: int | None = None
    epochs: int | None = None
    lr: float | None = None
    reg: float | None = None
    ease_reg: float | None = None
    holdout: float = 0.1
    seed: int = 0
    negatives: float = 1.0
    neighbours: int = 50

    def resolved(self):
        """These settings with the defaults for their feedback filled in."""
        key = "ease" if self.algorithm == "ease" else self.feedback
        defaults = {**DEFAULTS.get(key, {}), **saved_defaults().get(key, {})}
        filled = {
            name: value
            for name, value in defaults.items()
            if getattr(self, name) is None
        }
        return replace(self, **filled)


def saved_defaults():
    """What `tune --save` stored, by feedback; empty when nothing was."""
    path = settings.RTREC["MODEL_DIR"] / SAVED_DEFAULTS
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError:
        logger.warning("ignoring unreadable tuned defaults in %s", path)
        return {}


def save_defaults(feedback, values):
    path = settings.RTREC["MODEL_DIR"] / SAVED_DEFAULTS
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = {**saved_defaults(), feedback: values}
    path.write_text(json.dumps(stored, indent=2, sort_keys=True))
    return path


@dataclass
class InteractionTable:
    """Every stored interaction, ids as the catalog's own strings.

    The codes number the same users and items densely from 0, so that a
    sparse matrix over them needs no sort of the string ids.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    kinds: np.ndarray
    values: np.ndarray
    user_codes: np.ndarray
    item_codes: np.ndarray

    def __len__(self):
        return len(self.kinds)

    def select(self, mask):
        columns = {field.name: getattr(self, field.name) for field in fields(self)}
        return InteractionTable(**{name: c[mask] for name, c in columns.items()})

    def weights(self):
        config = settings.RTREC
        return event_weights(
            self.kinds,
            self.values,
            config["EVENT_WEIGHTS"],
            config["RATE_NEUTRAL"],
            config["RATE_WEIGHT_PER_STAR"],
        )


@dataclass
class RatingTable:
    """One row per training target, ids as the catalog's own strings."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    values: np.ndarray

    def __len__(self):
        return len(self.values)


def read_interactions(chunk_size=50_000):
    """Read every stored interaction as tuples fetched in chunks, not models."""
    rows = (
        Interaction.objects.order_by()
        .values_list("user_id", "item_id", "kind", "value")
        .iterator(chunk_size=chunk_size)
    )
    # Row by row, keeping no tuple: a million rows kept as tuples make the
    # garbage collector walk them again and again, slower than the query.
    user_pks, item_pks, kinds, values = [], [], [], []
    for user_pk, item_pk, kind, value in rows:
        user_pks.append(user_pk)
        item_pks.append(item_pk)
        kinds.append(kind)
        values.append(value)

    # The catalog is read after the interactions, so that every user and
    # item they name exists by then, however fast events come in.
    user_codes, user_ids = catalog_codes(EndUser, user_pks)
    item_codes, item_ids = catalog_codes(Item, item_pks)
    known = (user_codes >= 0) & (item_codes >= 0)
    user_codes, item_codes = user_codes[known], item_codes[known]

    return InteractionTable(
        user_ids=user_ids[user_codes],
        item_ids=item_ids[item_codes],
        kinds=np.array(kinds, dtype=str)[known],
        values=np.array(values, dtype=np.float64)[known],  # None becomes nan
        user_codes=user_codes,
        item_codes=item_codes,
    )


def catalog_codes(model, pks):
    """Each key's position among the model's rows in key order, and the
    rows' external ids; -1 for a row deleted since the keys were read."""
    catalog = list(model.objects.order_by("pk").values_list("pk", "external_id"))
    known_pks = np.array([pk for pk, _ in catalog], dtype=np.int64)
    external_ids = np.array([external_id for _, external_id in catalog], dtype=str)

    pks = np.array(pks, dtype=np.int64)
    codes = np.searchsorted(known_pks, pks)
    found = codes < len(known_pks)
    found[found] = known_pks[codes[found]] == pks[found]
    return np.where(found, codes, -1), external_ids


def read_ratings():
    """The stored ratings alone, as training targets."""
    return rating_table(read_interactions())


def rating_table(interactions):
    """The ratings among these interactions, as training targets."""
    rated = interactions.kinds == Interaction.Kind.RATE
    return RatingTable(
        interactions.user_ids[rated],
        interactions.item_ids[rated],
        interactions.values[rated],
    )


def holdout_mask(n_rows, fraction, seed):
    """Rows drawn for the test set, reproducible for a given seed."""
    if fraction <= 0:
        return np.zeros(n_rows, dtype=bool)
    return np.random.default_rng(seed).random(n_rows) < fraction


def fit_svd(table, train_mask, options, rating_scale):
    """Fit Surprise's SVD on the training rows of the table."""
    rows = surprise_rows(table, train_mask)
    trainset = Dataset(Reader(rating_scale=rating_scale)).construct_trainset(rows)
    algo = svd_for(options)
    algo.fit(trainset)
    return algo, trainset


def surprise_rows(table, mask):
    """The table's rows under `mask` as Surprise reads them: user, item,
    value and (unused) timestamp."""
    return list(
        zip(
            table.user_ids[mask].tolist(),
            table.item_ids[mask].tolist(),
            table.values[mask].tolist(),
            [None] * int(mask.sum()),
            strict=True,
        )
    )


def svd_for(options):
    """An unfitted Surprise SVD with resolved options' hyper-parameters."""
    return SVD(
        n_factors=options.factors,
        n_epochs=options.epochs,
        lr_all=options.lr,
        reg_all=options.reg,
        random_state=options.seed,
    )


def implicit_targets(table, options):
    """1 for what each user took up, 0 for what they disliked or skipped.

    Several events on one pair add up to one weight. A rated item counts
    as taken up whatever the stars: the user chose to watch it, and that
    choice is what a list of ten has to guess. (The stars still weigh in
    when a user is folded in.) Skipped items are sampled in proportion to
    popularity, `negatives` per item taken up.
    """
    pairs = np.char.add(np.char.add(table.user_ids, "\x1f"), table.item_ids)
    _, first, inverse = np.unique(pairs, return_index=True, return_inverse=True)
    weight = np.bincount(inverse, weights=taken_up_weights(table))
    users, items = table.user_ids[first], table.item_ids[first]

    user_codes, user_index = np.unique(users, return_inverse=True)
    item_codes, item_index = np.unique(items, return_inverse=True)
    liked = weight > 0
    popularity = np.bincount(item_index[liked], minlength=len(item_codes)) + 1.0
    sampled_users, sampled_items = sample_negatives(
        user_index[liked],
        item_index[liked],
        len(item_codes),
        popularity,
        options.negatives,
        options.seed,
    )

    return RatingTable(
        user_ids=np.concatenate([users, user_codes[sampled_users]]),
        item_ids=np.concatenate([items, item_codes[sampled_items]]),
        values=np.concatenate([liked.astype(float), np.zeros(len(sampled_users))]),
    )


def taken_up_weights(table):
    return taken_up(table.kinds, table.weights())


def item_neighbours(table, item_ids, k):
    """Co-occurrence neighbours over what users took up, in model item order."""
    rows = _index_by_code(item_ids, table.item_ids, table.item_codes)
    keep = (taken_up_weights(table) > 0) & (rows >= 0)
    users = table.user_codes[keep]
    return cooccurrence_neighbours(users, rows[keep], len(item_ids), k)


def _index_by_code(known_ids, wanted_ids, codes):
    """_index_of for ids that come with codes: one lookup per distinct code."""
    one_row_of = np.zeros(int(codes.max(initial=-1)) + 1, dtype=np.intp)
    one_row_of[codes] = np.arange(len(codes))
    return _index_of(known_ids, wanted_ids[one_row_of])[codes]


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


# Test pairs predicted at a time. All at once, the factors gathered for a
# 100,000-pair holdout take 160 MB of fresh memory, and touching it for
# the first time costs more than the arithmetic.
PREDICT_CHUNK = 8192


def rating_metrics(artifact, table, test_mask):
    """Held-out RMSE and MAE, predicted in vectorised chunks."""
    if not test_mask.any():
        return {}

    user_index = _index_of(artifact.user_ids, table.user_ids[test_mask])
    item_index = _index_of(artifact.item_ids, table.item_ids[test_mask])
    predicted = np.concatenate(
        [
            predict_pairs(artifact, user_index[chunk], item_index[chunk])
            for chunk in _chunks(len(user_index), PREDICT_CHUNK)
        ]
    )
    error = predicted - table.values[test_mask]

    return {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        "n_test": int(test_mask.sum()),
    }


def _chunks(length, size):
    return (slice(start, start + size) for start in range(0, length, size))


def _index_of(known_ids, wanted_ids):
    """Positions of wanted ids in known ids, -1 where absent."""
    lookup = {raw: i for i, raw in enumerate(known_ids.tolist())}
    return np.array([lookup.get(raw, -1) for raw in wanted_ids.tolist()], np.intp)


def new_version_name():
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


@dataclass
class FittedModel:
    artifact: ModelArtifact
    n_users: int
    n_items: int
    metrics: dict


def fit_model(interactions, options, holdout=True):
    """Fit one algorithm on these interactions; options must be resolved.

    With `holdout`, an explicit model leaves out a seeded share of the
    ratings and reports RMSE and MAE on them.
    """
    if options.algorithm == "ease":
        return _fit_ease(interactions, options)
    if options.feedback == "implicit":
        table, scale = implicit_targets(interactions, options), IMPLICIT_SCALE
    else:
        table = rating_table(interactions)
        scale = settings.RTREC["RATING_SCALE"]
    if len(table) == 0:
        raise NothingToTrain(
            f"no interactions usable for {options.feedback} feedback are stored: "
            "import some or send some events first"
        )

    test_mask = holdout_mask(len(table), options.holdout, options.seed)
    if options.feedback == "implicit" or not holdout:
        # Held-out RMSE on 0/1 targets says little; ranking metrics come
        # from the evaluation protocol.
        test_mask[:] = False
    algo, trainset = fit_svd(table, ~test_mask, options, scale)
    artifact = artifact_from_svd(algo, trainset)
    _add_neighbours(artifact, interactions, options)
    metrics = rating_metrics(artifact, table, test_mask)
    return FittedModel(artifact, trainset.n_users, trainset.n_items, metrics)


def _fit_ease(interactions, options):
    if len(interactions) == 0:
        raise NothingToTrain("no interactions are stored: import or send some first")
    item_ids, weights = taken_up_matrix(interactions)
    artifact = ModelArtifact(
        user_ids=np.array([], dtype=str),
        item_ids=item_ids,
        user_factors=np.zeros((0, len(item_ids))),
        item_factors=fit_ease(weights, options.ease_reg),
        user_bias=np.zeros(0),
        item_bias=np.zeros(len(item_ids)),
        global_mean=0.0,
        item_popularity=np.asarray((weights > 0).sum(axis=0)).ravel().astype(float),
        rating_scale=IMPLICIT_SCALE,
    )
    _add_neighbours(artifact, interactions, options)
    return FittedModel(artifact, weights.shape[0], len(item_ids), {})


def taken_up_matrix(interactions):
    """Users x items, 1 where the user took the item up; item ids in order."""
    taken = taken_up_weights(interactions) > 0
    _, user_index = np.unique(interactions.user_ids[taken], return_inverse=True)
    item_ids, item_index = np.unique(interactions.item_ids, return_inverse=True)
    ones = np.ones(int(taken.sum()))
    matrix = sparse.csr_matrix(
        (ones, (user_index, item_index[taken])),
        shape=(int(user_index.max(initial=-1)) + 1, len(item_ids)),
    )
    matrix.data[:] = 1.0
    return item_ids, matrix


def _add_neighbours(artifact, interactions, options):
    indices, similarities = item_neighbours(
        interactions, artifact.item_ids, options.neighbours
    )
    artifact.extras.update(neighbour_index=indices, neighbour_similarity=similarities)


def train_model(options, activate=True, evaluate=True):
    """Train, evaluate, write the artifact and record the version.

    Without `evaluate`, the offline protocol is skipped: `auto` feedback
    is resolved by rule (see feedback_without_evaluation) and the metrics
    hold the holdout errors alone, with `evaluated` false.
    """
    started = time.perf_counter()
    interactions = read_interactions()
    if len(interactions) == 0:
        raise NothingToTrain("no interactions are stored: import or send some first")

    if evaluate:
        options, metrics = choose_feedback(interactions, options)
    else:
        options, metrics = feedback_without_evaluation(options), {"evaluated": False}
    fitted = fit_model(interactions, options)
    metrics = {**metrics, **fitted.metrics}

    version = new_version_name()
    save_artifact(fitted.artifact, settings.RTREC["MODEL_DIR"] / f"{version}.npz")
    record = ModelVersion.objects.create(
        version=version,
        algorithm=options.algorithm,
        feedback=options.feedback,
        params=asdict(options),
        metrics=metrics,
        n_users=fitted.n_users,
        n_items=fitted.n_items,
        n_interactions=len(interactions),
        training_seconds=time.perf_counter() - started,
        artifact=f"{version}.npz",
    )
    logger.info("trained model %s: %s", version, metrics)

    if activate:
        record.activate()
    return record


def choose_feedback(interactions, options):
    """Resolve `auto` to the feedback that ranks better on this data.

    Each candidate is measured on the offline protocol (see
    recommendations.evaluation); their figures are kept in the version's
    metrics so the choice can be checked later.
    """
    from recommendations.evaluation import Protocol, evaluate_settings

    if options.algorithm == "ease":
        options = replace(options, feedback="implicit")
    if options.feedback != "auto":
        options = options.resolved()
        return options, _protocol_metrics(interactions, options)

    candidates = {}
    for feedback in FEEDBACKS:
        candidate = replace(options, feedback=feedback).resolved()
        try:
            candidates[feedback] = evaluate_settings(
                interactions, candidate, Protocol()
            )
        except NothingToTrain:
            continue
    if not candidates:
        raise NothingToTrain("no interactions usable for training are stored")

    best = max(candidates, key=lambda name: candidates[name]["ndcg"])
    chosen = replace(options, feedback=best).resolved()
    metrics = {
        f"{name}@10": value
        for name, value in candidates[best].items()
        if name in RANKING_KEYS
    }
    metrics["candidates"] = candidates
    explicit = candidates.get("explicit", {})
    if "rmse" in explicit:
        metrics["explicit_rmse"] = explicit["rmse"]
        metrics["explicit_mae"] = explicit["mae"]
    return chosen, metrics


RANKING_KEYS = ("precision", "recall", "ndcg", "map", "hit_rate")


def feedback_without_evaluation(options):
    """Resolve `auto` by rule, for a run that cannot compare candidates.

    The rule is implicit feedback: it is what the comparison keeps on
    MovieLens 100K, what it falls back to when no ratings are stored, and
    it learns from every kind of event, ratings included.
    """
    if options.algorithm == "ease" or options.feedback == "auto":
        options = replace(options, feedback="implicit")
    return options.resolved()


def _protocol_metrics(interactions, options):
    from recommendations.evaluation import Protocol, evaluate_settings

    figures = evaluate_settings(interactions, options, Protocol())
    return {f"{name}@10": figures[name] for name in RANKING_KEYS}
