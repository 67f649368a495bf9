"""The per-process model holder: what this server process recommends from.

Each process loads the active model version once and keeps a snapshot of
the catalog in the same item order as the model's arrays, so scoring a
user is one matrix-vector product over the whole catalog. Both are
refreshed when the database says they changed, checked at most once a
second, or at once when the channel layer announces a new version.
"""

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np
from django.db.models import Count, Max

from events.models import Interaction, Item
from events.validation import MessageError
from recommendations.engine.artifact import ArtifactError, load_artifact
from recommendations.engine.scoring import score_items, top_n
from recommendations.models import ModelVersion

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 1.0


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
    stamp: tuple

    def __len__(self):
        return len(self.item_ids)

    def genre_overlap(self, index):
        """How many genres every item shares with one item."""
        overlap = np.zeros(len(self))
        for mask in self.genre_masks.values():
            if mask[index]:
                overlap += mask
        return overlap + self.popularity / (self.popularity.max(initial=0) + 1)

    def genre_mask(self, genre):
        mask = self.genre_masks.get(genre.casefold())
        return mask if mask is not None else np.zeros(len(self), dtype=bool)


def load_catalog():
    rows = list(
        Item.objects.order_by("pk").values_list(
            "pk", "external_id", "title", "genres", "is_active"
        )
    )
    counts = dict(
        Interaction.objects.order_by()
        .values_list("item_id")
        .annotate(n=Count("id"))
        .values_list("item_id", "n")
    )

    genre_masks = {}
    for index, (_, _, _, genres, _) in enumerate(rows):
        for genre in filter(None, genres.split("|")):
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
        stamp=catalog_stamp(),
    )


def catalog_stamp():
    summary = Item.objects.aggregate(n=Count("id"), changed=Max("updated_at"))
    return (summary["n"], summary["changed"])


@dataclass
class ServedModel:
    """A model version's arrays laid out in the catalog's item order."""

    version: str
    user_index: dict
    user_factors: np.ndarray
    user_bias: np.ndarray
    item_factors: np.ndarray
    item_bias: np.ndarray
    global_mean: float
    in_model: np.ndarray
    unit_factors: np.ndarray

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


def align_model(version, artifact, catalog):
    """Reorder an artifact's item arrays into catalog order."""
    n_items, k = len(catalog), artifact.n_factors
    item_factors = np.zeros((n_items, k), dtype=artifact.item_factors.dtype)
    item_bias = np.zeros(n_items, dtype=artifact.item_bias.dtype)
    in_model = np.zeros(n_items, dtype=bool)

    for model_row, item_id in enumerate(artifact.item_ids.tolist()):
        index = catalog.id_index.get(item_id)
        if index is not None:
            item_factors[index] = artifact.item_factors[model_row]
            item_bias[index] = artifact.item_bias[model_row]
            in_model[index] = True

    return ServedModel(
        version=version,
        user_index={u: i for i, u in enumerate(artifact.user_ids.tolist())},
        user_factors=artifact.user_factors,
        user_bias=artifact.user_bias,
        item_factors=item_factors,
        item_bias=item_bias,
        global_mean=artifact.global_mean,
        in_model=in_model,
        unit_factors=_unit_rows(item_factors),
    )


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

    def as_items(self):
        return [
            {"id": item_id, "title": title, "score": round(score, 4)}
            for item_id, title, score in zip(
                self.item_ids, self.titles, self.scores, strict=True
            )
        ]


@dataclass
class UserHistory:
    """What one end user did, as catalog indices."""

    seen: np.ndarray

    @classmethod
    def load(cls, end_user_pk, catalog):
        item_pks = Interaction.objects.filter(user_id=end_user_pk).values_list(
            "item_id", flat=True
        )
        indices = [catalog.pk_index[pk] for pk in item_pks if pk in catalog.pk_index]
        return cls(seen=np.array(sorted(set(indices)), dtype=np.intp))


class ModelHolder:
    """Holds this process's catalog snapshot and active model."""

    def __init__(self):
        self._lock = threading.Lock()
        self.catalog = None
        self.model = None
        self.load_error = None
        self._checked_at = 0.0

    def refresh(self, force=False):
        """Reload the catalog and model if the database says they changed."""
        now = time.monotonic()
        if not force and now - self._checked_at < REFRESH_SECONDS:
            return
        with self._lock:
            self._checked_at = now
            catalog_changed = (
                self.catalog is None or self.catalog.stamp != catalog_stamp()
            )
            if catalog_changed:
                self.catalog = load_catalog()
            self._refresh_model(catalog_changed)

    def clear(self):
        """Forget what was loaded; the next request loads afresh."""
        with self._lock:
            self.catalog, self.model, self.load_error = None, None, None
            self._checked_at = 0.0

    def ensure_version(self, version):
        """Serve `version` now if this process does not already."""
        if self.model is None or self.model.version != version:
            self.refresh(force=True)

    def _refresh_model(self, catalog_changed):
        active = ModelVersion.objects.active()
        if active is None:
            self.model, self.load_error = None, None
            return
        if not catalog_changed and self.model and self.model.version == active.version:
            return

        try:
            artifact = load_artifact(active.artifact_path)
        except ArtifactError as exc:
            # Keep serving: popularity needs no model file.
            logger.error("cannot load model %s: %s", active.version, exc)
            self.model, self.load_error = None, str(exc)
            return
        self.model = align_model(active.version, artifact, self.catalog)
        self.load_error = None
        logger.info("serving model %s", active.version)

    def recommend(self, end_user, n, exclude=(), genre=None):
        """Top n items for an end user, with the strategy that chose them."""
        self.refresh()
        catalog, model = self.catalog, self.model
        history = UserHistory.load(end_user.pk, catalog)
        excluded = self._excluded(catalog, history, exclude, genre)

        user_row = model.user_index.get(end_user.external_id) if model else None
        if user_row is not None:
            scores, strategy = model.scores_for(user_row), "personal"
            excluded |= ~model.in_model
        else:
            scores, strategy = catalog.popularity, "popular"

        best = top_n(scores, n, excluded)
        return self._ranked(best, scores, strategy)

    def similar(self, item_id, n):
        """The n items most like one item, by the model's item factors."""
        self.refresh()
        catalog, model = self.catalog, self.model
        index = catalog.id_index.get(item_id)
        if index is None:
            raise MessageError("unknown_item", f"no item has the id {item_id!r}")

        excluded = ~catalog.active
        excluded[index] = True
        if model is not None and model.in_model[index]:
            scores, strategy = model.cosine_to(index), "personal"
            excluded |= ~model.in_model
        else:
            scores, strategy = catalog.genre_overlap(index), "content"
        return self._ranked(top_n(scores, n, excluded), scores, strategy)

    def _ranked(self, best, scores, strategy):
        catalog, model = self.catalog, self.model
        return Recommendation(
            item_ids=[catalog.item_ids[i] for i in best],
            titles=[catalog.titles[i] for i in best],
            scores=[float(scores[i]) for i in best],
            strategy=strategy,
            model_version=model.version if model else None,
        )

    @staticmethod
    def _excluded(catalog, history, exclude, genre):
        excluded = ~catalog.active
        excluded[history.seen] = True
        for item_id in exclude:
            index = catalog.id_index.get(item_id)
            if index is not None:
                excluded[index] = True
        if genre:
            excluded |= ~catalog.genre_mask(genre)
        return excluded


holder = ModelHolder()
