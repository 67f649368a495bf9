"""The per-process model holder: what this server process recommends from.

Each process loads the active model version once and keeps a snapshot of
the catalog in the same item order as the model's arrays, so scoring a
user is one matrix-vector product over the whole catalog. Both are
refreshed when the database says they changed, checked at most once a
second, or at once when the channel layer announces a new version.

Users are folded into the model as they act: their normal equations live
in a bounded cache and grow by each new interaction. The database stays
the truth: a cached user is brought up to date from the interactions
stored since, so a restarted process, or one that did not see an event,
answers the same.
"""

import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db.models import Count, Max, Q

from events.models import Interaction, Item
from events.validation import MessageError
from recommendations.engine.abtest import arm_share
from recommendations.engine.ann import (
    ApproximateIndex,
    personal_scores_at,
    top_positive,
)
from recommendations.engine.artifact import ArtifactError, load_artifact
from recommendations.engine.content import ContentIndex
from recommendations.engine.ease import EaseFoldIn
from recommendations.engine.feedback import event_weights, rating_targets, taken_up
from recommendations.engine.foldin import ExplicitFoldIn, ImplicitFoldIn
from recommendations.engine.neighbours import neighbour_scores
from recommendations.engine.ranking import blend, personal_scores, standardised
from recommendations.engine.scoring import score_items, top_n
from recommendations.models import Experiment, ModelVersion
from recommendations.trending_store import trending_backend

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 1.0
TRENDING_DEPTH = 200
# Candidates taken from an approximate index: ten times the list asked
# for, and at least this many.
ANN_CANDIDATES = 100


@dataclass
class Catalog:
    """The item table, in serving order, as arrays."""

    item_ids: list
    titles: list
    pk_index: dict
    id_index: dict
    active: np.ndarray
    genre_masks: dict
    popularity: np.ndarray
    content: ContentIndex
    stamp: tuple

    def __len__(self):
        return len(self.item_ids)

    def genre_mask(self, genre):
        mask = self.genre_masks.get(genre.casefold())
        return mask if mask is not None else np.zeros(len(self), dtype=bool)

    def indices_of(self, item_ids):
        found = (self.id_index.get(item_id) for item_id in item_ids)
        return np.array([i for i in found if i is not None], dtype=np.intp)


def load_catalog():
    rows = list(
        Item.objects.order_by("pk").values_list(
            "pk", "external_id", "title", "genres", "is_active", "description", "year"
        )
    )
    counts = dict(
        Interaction.objects.order_by()
        .values_list("item_id")
        .annotate(n=Count("id"))
        .values_list("item_id", "n")
    )
    genre_lists = [[g for g in row[3].split("|") if g] for row in rows]

    genre_masks = {}
    for index, genres in enumerate(genre_lists):
        for genre in genres:
            mask = genre_masks.setdefault(genre.casefold(), np.zeros(len(rows), bool))
            mask[index] = True

    return Catalog(
        item_ids=[row[1] for row in rows],
        titles=[row[2] for row in rows],
        pk_index={row[0]: i for i, row in enumerate(rows)},
        id_index={row[1]: i for i, row in enumerate(rows)},
        active=np.array([row[4] for row in rows], dtype=bool),
        genre_masks=genre_masks,
        popularity=np.array([counts.get(row[0], 0) for row in rows], np.float64),
        content=ContentIndex.build(
            genre_lists,
            [row[2] for row in rows],
            [row[5] for row in rows],
            [row[6] for row in rows],
        ),
        stamp=catalog_stamp(),
    )


def catalog_stamp():
    """What changes when the catalog does, in one cheap query.

    The active count is there because a bulk update() of is_active
    leaves updated_at alone.
    """
    summary = Item.objects.aggregate(
        n=Count("id"),
        active=Count("id", filter=Q(is_active=True)),
        changed=Max("updated_at"),
    )
    return (summary["n"], summary["active"], summary["changed"])


@dataclass
class ServedModel:
    """A model version's arrays laid out in the catalog's item order."""

    version: str
    algorithm: str
    feedback: str
    trained_at: object
    user_index: dict
    user_factors: np.ndarray
    user_bias: np.ndarray
    item_factors: np.ndarray
    item_bias: np.ndarray
    global_mean: float
    rating_scale: tuple
    in_model: np.ndarray
    unit_factors: np.ndarray
    neighbour_index: np.ndarray
    neighbour_similarity: np.ndarray
    fold_in: object
    ann: ApproximateIndex | None = None

    @property
    def neighbour_weight(self):
        # EASE is an item-to-item model already; co-occurrence on top of it
        # measured worse (see docs/evaluation.md).
        return 0.0 if self.algorithm == "ease" else settings.RTREC["NEIGHBOUR_BLEND"]

    def cosine_to(self, index):
        """Cosine similarity of every item's factors to one item's."""
        return self.unit_factors @ self.unit_factors[index]

    def scores_for(self, user_row):
        return score_items(
            self.item_factors,
            self.item_bias,
            self.global_mean,
            self.user_factors[user_row],
            self.user_bias[user_row],
        )

    def neighbours_of(self, indices, weights):
        return neighbour_scores(
            self.neighbour_index,
            self.neighbour_similarity,
            indices,
            weights,
            len(self.in_model),
        )


def align_model(record, artifact, catalog):
    """Reorder an artifact's item arrays into catalog order."""
    n_items, k = len(catalog), artifact.n_factors
    item_factors = np.zeros((n_items, k), dtype=np.float64)
    item_bias = np.zeros(n_items, dtype=np.float64)
    catalog_row = np.full(len(artifact.item_ids), -1, dtype=np.intp)

    for model_row, item_id in enumerate(artifact.item_ids.tolist()):
        index = catalog.id_index.get(item_id)
        if index is not None:
            catalog_row[model_row] = index
    known = catalog_row >= 0
    model_factors = artifact.item_factors
    if record.algorithm == "ease":
        # EASE's columns are items too: put them in catalog order as well.
        item_factors = np.zeros((n_items, n_items), dtype=np.float32)
        model_factors = np.zeros((len(catalog_row), n_items), dtype=np.float32)
        model_factors[:, catalog_row[known]] = artifact.item_factors[:, known]
    item_factors[catalog_row[known]] = model_factors[known]
    item_bias[catalog_row[known]] = artifact.item_bias[known]
    in_model = np.zeros(n_items, dtype=bool)
    in_model[catalog_row[known]] = True

    neighbour_index, neighbour_similarity = _aligned_neighbours(
        artifact, catalog_row, n_items
    )
    return ServedModel(
        version=record.version,
        algorithm=record.algorithm,
        feedback=record.feedback,
        trained_at=record.created_at,
        user_index={u: i for i, u in enumerate(artifact.user_ids.tolist())},
        user_factors=artifact.user_factors,
        user_bias=artifact.user_bias,
        item_factors=item_factors,
        item_bias=item_bias,
        global_mean=artifact.global_mean,
        rating_scale=artifact.rating_scale,
        in_model=in_model,
        unit_factors=_unit_rows(item_factors),
        neighbour_index=neighbour_index,
        neighbour_similarity=neighbour_similarity,
        fold_in=_fold_in_for(record, item_factors, item_bias, artifact),
        ann=_approximate_index(record, item_factors, item_bias),
    )


def _fold_in_for(record, item_factors, item_bias, artifact):
    config = settings.RTREC["FOLD_IN"]
    if record.algorithm == "ease":
        return EaseFoldIn(item_factors)
    if record.feedback == "implicit":
        return ImplicitFoldIn(
            item_factors, item_bias, reg=config["REG"], alpha=config["ALPHA"]
        )
    return ExplicitFoldIn(item_factors, item_bias, artifact.global_mean, config["REG"])


def _approximate_index(record, item_factors, item_bias):
    """An approximate index if the catalog is large enough to want one."""
    threshold = settings.RTREC["ANN_MIN_ITEMS"]
    # EASE ranks a user from their history, never from a user row.
    if not threshold or len(item_bias) < threshold or record.algorithm == "ease":
        return None

    started = time.monotonic()
    index = ApproximateIndex(item_factors, item_bias)
    logger.info(
        "approximate index of %d items for %s built in %.1f s",
        len(item_bias),
        record.version,
        time.monotonic() - started,
    )
    return index


def _aligned_neighbours(artifact, catalog_row, n_items):
    """Neighbour lists indexed and pointing by catalog position."""
    model_index = artifact.extras.get("neighbour_index")
    model_similarity = artifact.extras.get("neighbour_similarity")
    if model_index is None or model_similarity is None:
        empty = np.zeros((n_items, 1))
        return empty.astype(np.intp), empty

    index = np.zeros((n_items, model_index.shape[1]), dtype=np.intp)
    similarity = np.zeros(index.shape, dtype=np.float64)
    known = catalog_row >= 0
    pointed = catalog_row[model_index[known]]
    index[catalog_row[known]] = np.where(pointed >= 0, pointed, 0)
    similarity[catalog_row[known]] = np.where(
        pointed >= 0, model_similarity[known], 0.0
    )
    return index, similarity


def _unit_rows(matrix):
    norms = np.linalg.norm(matrix, axis=1)
    norms[norms == 0] = 1.0
    return matrix / norms[:, None]


@dataclass
class Recommendation:
    item_ids: list
    titles: list
    scores: list
    strategy: str
    model_version: str | None
    recommendation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    experiment: str | None = None
    arm: str | None = None

    def as_items(self):
        return [
            {"id": item_id, "title": title, "score": round(score, 4)}
            for item_id, title, score in zip(
                self.item_ids, self.titles, self.scores, strict=True
            )
        ]


@dataclass
class UserState:
    """One end user as this process last saw them, folded into a model."""

    model_version: str | None
    catalog_stamp: tuple
    last_interaction: int = 0
    # Each item the user acted on, ascending, and the sum of their events'
    # weights on it: two small arrays, not a set and a dict of Python
    # objects, so a long history costs 12 bytes an item.
    seen: np.ndarray = field(default_factory=lambda: np.empty(0, np.intp))
    liked: np.ndarray = field(default_factory=lambda: np.empty(0))
    new_since_training: int = 0
    equations: object = None
    # Neighbour scores of what the user took up, grown by each event.
    together: object = 0.0

    @property
    def n_events(self):
        return len(self.seen)

    def add(self, indices, weights):
        """Fold events' (item index, weight) pairs into the history."""
        items = np.concatenate([self.seen, indices])
        self.seen, inverse = np.unique(items, return_inverse=True)
        totals = np.concatenate([self.liked, weights])
        self.liked = np.bincount(inverse, weights=totals, minlength=len(self.seen))


class UserCache:
    """A bounded, least-recently-used map of end user pk to UserState."""

    def __init__(self, size):
        self.size = size
        self._states = OrderedDict()

    def get(self, pk):
        state = self._states.get(pk)
        if state is not None:
            self._states.move_to_end(pk)
        return state

    def put(self, pk, state):
        self._states[pk] = state
        self._states.move_to_end(pk)
        while len(self._states) > self.size:
            self._states.popitem(last=False)

    def clear(self):
        self._states.clear()

    def __len__(self):
        return len(self._states)


@dataclass(frozen=True)
class Assignment:
    """Which model serves a user, and in which experiment arm."""

    model: object
    experiment: str | None = None
    arm: str | None = None

    @property
    def popularity_only(self):
        # An experiment arm without a model version is the popularity baseline.
        return self.experiment is not None and self.model is None


@dataclass(frozen=True)
class RunningExperiment:
    name: str
    pk: int
    treatment_share: float
    versions: dict

    def arm_for(self, user_id):
        return (
            "treatment"
            if arm_share(self.name, user_id) < self.treatment_share
            else "control"
        )


class ModelHolder:
    """Holds this process's catalog snapshot, models and users."""

    def __init__(self):
        self._lock = threading.RLock()
        self.catalog = None
        self.model = None
        self.models = {}
        self.experiment = None
        self.load_error = None
        self.users = UserCache(settings.RTREC["USER_CACHE_SIZE"])
        self._checked_at = 0.0
        # Wall-clock time of the last check, comparable with another
        # process's announcement of a change.
        self.checked_since = 0.0

    def clear(self):
        """Forget what was loaded; the next request loads afresh."""
        with self._lock:
            self.catalog, self.model, self.load_error = None, None, None
            self.models, self.experiment = {}, None
            self.users.clear()
            self._checked_at = 0.0
            self.checked_since = 0.0

    def refresh(self, force=False):
        """Reload the catalog and models if the database says they changed."""
        now = time.monotonic()
        if not force and now - self._checked_at < REFRESH_SECONDS:
            return
        with self._lock:
            self._checked_at = now
            self.checked_since = time.time()
            stamp = catalog_stamp()
            catalog_changed = self.catalog is None or self.catalog.stamp != stamp
            if catalog_changed:
                self.catalog = load_catalog()
            self._refresh_models(catalog_changed)

    def refresh_since(self, changed_at):
        """Check the database now unless a check began after `changed_at`
        (a wall-clock time), which saw that change already."""
        if self.checked_since < changed_at:
            self.refresh(force=True)

    def ensure_version(self, version):
        """Serve `version` now if this process does not already."""
        if version not in self.models or (self.model and self.model.version != version):
            self.refresh(force=True)

    def _refresh_models(self, catalog_changed):
        active = ModelVersion.objects.active()
        running = Experiment.objects.running().first()
        records = [active] if active else []
        if running is not None:
            records += [v for v in (running.control, running.treatment) if v]

        loaded, self.load_error = {}, None
        for record in records:
            kept = self.models.get(record.version)
            if kept is not None and not catalog_changed:
                loaded[record.version] = kept
            elif record.version not in loaded:
                loaded[record.version] = self._load(record, record == active)
        self.models = {v: m for v, m in loaded.items() if m is not None}
        self.model = self.models.get(active.version) if active else None
        experiment = _running(running)
        if experiment != self.experiment:
            # Kept when unchanged: answers made under it stay valid.
            self.experiment = experiment

    def _load(self, record, is_active):
        try:
            artifact = load_artifact(record.artifact_path)
        except ArtifactError as exc:
            # Keep serving: popularity needs no model file.
            logger.error("cannot load model %s: %s", record.version, exc)
            if is_active:
                self.load_error = str(exc)
            return None
        logger.info("serving model %s", record.version)
        return align_model(record, artifact, self.catalog)

    @property
    def served_by(self):
        """What this process's answers are made from; a new catalog, model
        or experiment is a new object here."""
        return (self.catalog, self.model, self.experiment)

    def assignment(self, end_user):
        experiment = self.experiment
        if experiment is None:
            return Assignment(self.model)
        arm = experiment.arm_for(end_user.external_id)
        version = experiment.versions[arm]
        model = self.models.get(version) if version else None
        if version and model is None:
            return Assignment(self.model)  # the arm's file is unreadable
        return Assignment(model, experiment.name, arm)

    def recommend(self, end_user, n, exclude=(), genre=None):
        """Top n items for an end user, with the strategy that chose them."""
        self.refresh()
        with self._lock:
            catalog = self.catalog
            assignment = self.assignment(end_user)
            model = assignment.model
            state = self.user_state(end_user, model)
            excluded = self._excluded(catalog, state, exclude, genre)
            candidates = self._candidates(end_user, state, model, n, excluded)
            if assignment.popularity_only:
                scores, strategy = np.log1p(catalog.popularity), "popular"
            elif candidates is not None:
                scores = self._candidate_scores(end_user, state, model, candidates)
                strategy = "personal"
            else:
                scores, strategy = self._scores(end_user, state, catalog, model)

        best = _best(scores, n, excluded, candidates)
        recommendation = self._ranked(best, scores, strategy, model)
        recommendation.experiment = assignment.experiment
        recommendation.arm = assignment.arm
        return recommendation

    def user_state(self, end_user, model):
        """The user's folded state, brought up to date from the database."""
        catalog = self.catalog
        version = model.version if model else None
        state = self.users.get(end_user.pk)
        if state is None or (state.model_version, state.catalog_stamp) != (
            version,
            catalog.stamp,
        ):
            state = UserState(version, catalog.stamp)
            if model is not None:
                state.equations = model.fold_in.start()

        rows = list(
            Interaction.objects.filter(
                user_id=end_user.pk, pk__gt=state.last_interaction
            )
            .order_by("pk")
            .values_list("pk", "item_id", "kind", "value", "created_at")
        )
        if rows:
            self._apply(state, rows, catalog, model)
        self.users.put(end_user.pk, state)
        return state

    def _apply(self, state, rows, catalog, model):
        state.last_interaction = rows[-1][0]
        rows = [row for row in rows if row[1] in catalog.pk_index]
        if not rows:
            return
        indices = np.array([catalog.pk_index[row[1]] for row in rows], np.intp)
        kinds = [row[2] for row in rows]
        values = np.array([np.nan if row[3] is None else row[3] for row in rows])
        weights = _weights(kinds, values)

        state.add(indices, weights)
        if model is None:
            return

        positive = np.maximum(weights, 0)
        state.together = state.together + model.neighbours_of(indices, positive)
        if model.trained_at is not None:
            state.new_since_training += sum(row[4] > model.trained_at for row in rows)
        if model.algorithm == "ease":
            model.fold_in.add(state.equations, indices, taken_up(kinds, weights))
        elif model.feedback == "implicit":
            model.fold_in.add(state.equations, indices, weights)
        else:
            targets = rating_targets(kinds, values, weights, model.rating_scale)
            model.fold_in.add(state.equations, indices, targets)

    def _scores(self, end_user, state, catalog, model):
        if not state.n_events:
            return self._cold_scores(catalog)

        liked_items, liked_weights = state.seen, state.liked
        content_weight = self._content_weight(state, model)
        content = 0.0
        if content_weight:
            content = catalog.content.profile_scores(liked_items, liked_weights)
        if model is None:
            popularity = np.log1p(catalog.popularity)
            return blend([(content, 1.0), (popularity, 0.5)]), "content"

        together = state.together
        fresh = state.new_since_training == 0
        user_row = model.user_index.get(end_user.external_id)
        if fresh and user_row is not None:
            scores = personal_scores(
                model.scores_for(user_row), together, model.neighbour_weight
            )
            return scores, "personal"

        parts = [
            (model.fold_in.scores(state.equations), 1.0),
            (together, model.neighbour_weight),
            (content, content_weight),
        ]
        # EASE scores a user from their history exactly, trained or not.
        exact = fresh and model.algorithm == "ease"
        strategy = "personal" if exact else "foldin"
        if content_weight:
            return with_cold_items(parts, content, model.in_model), strategy
        return blend(parts), strategy

    def _candidates(self, end_user, state, model, n, excluded):
        """The items worth scoring for a trained user with no events since
        training, from the model's approximate index; None where every item
        is scored (no index, or a user ranked some other way)."""
        if model is None or model.ann is None or not state.n_events:
            return None
        user_row = model.user_index.get(end_user.external_id)
        if user_row is None or state.new_since_training:
            return None

        count = max(10 * n, ANN_CANDIDATES)
        user = model.user_factors[user_row]
        found = model.ann.candidates(user, count, excluded)
        if not model.neighbour_weight:
            return found
        # The neighbours of what the user took up can outrank the model's
        # own favourites in the blend: the strongest are candidates too.
        return np.union1d(found, top_positive(state.together, count, excluded))

    def _candidate_scores(self, end_user, state, model, candidates):
        """The personal blend at the candidates, -inf at every other item."""
        user_row = model.user_index[end_user.external_id]
        scores = np.full(len(model.in_model), -np.inf)
        scores[candidates] = personal_scores_at(
            model.ann,
            candidates,
            model.user_factors[user_row],
            model.global_mean + model.user_bias[user_row],
            state.together,
            model.neighbour_weight,
        )
        return scores

    @staticmethod
    def _content_weight(state, model):
        """Metadata counts most for a user with few events, and for
        everyone when there is no model; past a few events the model and
        the neighbours know the user better."""
        config = settings.RTREC
        if model is None:
            return 1.0
        if state.n_events >= config["CONTENT_EVENTS"]:
            return 0.0
        return config["CONTENT_BLEND"] / (1 + state.n_events / 3)

    def _cold_scores(self, catalog):
        trending = np.zeros(len(catalog))
        for item_id, score in trending_backend().top(TRENDING_DEPTH):
            index = catalog.id_index.get(item_id)
            if index is not None:
                trending[index] = score
        popularity = np.log1p(catalog.popularity)
        if not trending.any():
            return popularity, "popular"
        return blend([(trending, 1.0), (popularity, 0.5)]), "trending"

    def trending(self, n):
        """The items most acted on lately, a row of their own."""
        self.refresh()
        catalog = self.catalog
        scores = np.zeros(len(catalog))
        for item_id, score in trending_backend().top(TRENDING_DEPTH):
            index = catalog.id_index.get(item_id)
            if index is not None:
                scores[index] = score
        excluded = ~catalog.active | (scores <= 0)
        return self._ranked(top_n(scores, n, excluded), scores, "trending", None)

    def similar(self, item_id, n):
        """The n items most like one item: factors, co-occurrence, content."""
        self.refresh()
        catalog, model = self.catalog, self.model
        index = catalog.id_index.get(item_id)
        if index is None:
            raise MessageError("unknown_item", f"no item has the id {item_id!r}")

        excluded = ~catalog.active
        excluded[index] = True
        content = catalog.content.similarity_to_item(index)
        if model is None or not model.in_model[index]:
            ranked = top_n(content, n, excluded)
            return self._ranked(ranked, content, "content", model)

        config = settings.RTREC
        together = model.neighbours_of(np.array([index]), np.ones(1))
        parts = [
            (model.cosine_to(index), 1.0),
            (together, config["NEIGHBOUR_BLEND"]),
            (content, config["CONTENT_BLEND"]),
        ]
        scores = with_cold_items(parts, content, model.in_model)
        return self._ranked(top_n(scores, n, excluded), scores, "personal", model)

    def note_event(self, item_id, kind, value):
        """Count an event towards what is trending."""
        self.note_events([(item_id, kind, value)])

    def note_events(self, events):
        """Count (item_id, kind, value) events towards what is trending,
        one update per item however many events it had."""
        if not events:
            return
        item_ids, kinds, values = zip(*events, strict=True)
        values = np.array([np.nan if v is None else v for v in values])
        totals = {}
        for item_id, weight in zip(item_ids, _weights(kinds, values), strict=True):
            if weight > 0:
                totals[item_id] = totals.get(item_id, 0.0) + float(weight)
        backend = trending_backend()
        for item_id, weight in totals.items():
            backend.add(item_id, weight)

    def _ranked(self, best, scores, strategy, model):
        catalog = self.catalog
        return Recommendation(
            item_ids=[catalog.item_ids[i] for i in best],
            titles=[catalog.titles[i] for i in best],
            scores=[float(scores[i]) for i in best],
            strategy=strategy,
            model_version=model.version if model else None,
        )

    @staticmethod
    def _excluded(catalog, state, exclude, genre):
        excluded = ~catalog.active
        excluded[state.seen] = True
        excluded[catalog.indices_of(exclude)] = True
        if genre:
            excluded |= ~catalog.genre_mask(genre)
        return excluded


def _running(experiment):
    if experiment is None:
        return None
    return RunningExperiment(
        name=experiment.name,
        pk=experiment.pk,
        treatment_share=experiment.treatment_share,
        versions={arm: experiment.version_for(arm) for arm in ("control", "treatment")},
    )


def _best(scores, n, excluded, candidates):
    if candidates is None:
        return top_n(scores, n, excluded)
    # Only the candidates were scored: rank among them, not the catalog.
    return candidates[top_n(scores[candidates], n, excluded[candidates])]


def with_cold_items(parts, content, in_model):
    """Blend the parts, scoring items the model has never seen by content.

    An item added after training has no factors and no neighbours, so its
    blended score would say nothing. It gets its content score instead,
    counted as if every part agreed with it, so a new item that matches
    well can rank among the model's items.
    """
    scores = blend(parts)
    if in_model.all():
        return scores
    total_weight = sum(weight for _, weight in parts)
    cold = ~in_model
    scores[cold] = total_weight * standardised(content)[cold]
    return scores


def _weights(kinds, values):
    config = settings.RTREC
    return event_weights(
        kinds,
        values,
        config["EVENT_WEIGHTS"],
        config["RATE_NEUTRAL"],
        config["RATE_WEIGHT_PER_STAR"],
    )


holder = ModelHolder()
