"""Recording what was shown, cheaply: lists are buffered and written in bulk.

One row per list (its items as JSON), written when the buffer fills or a
second has passed, so showing a list costs no query of its own. A list
still in the buffer when a process dies is lost; that loses impressions,
never events.
"""

import logging
import threading
import time

from django.db import IntegrityError, transaction
from django.utils import timezone

from recommendations.metrics_counters import counters
from recommendations.models import ShownList

logger = logging.getLogger(__name__)

FLUSH_SIZE = 200
FLUSH_SECONDS = 1.0
# However many threads record at once, the buffer never holds more than
# this: past it a list is dropped (and counted), not queued.
MAX_BUFFERED = 10 * FLUSH_SIZE


class ImpressionBuffer:
    def __init__(self, size=FLUSH_SIZE, seconds=FLUSH_SECONDS, limit=MAX_BUFFERED):
        self.size, self.seconds, self.limit = size, seconds, max(limit, size)
        self._rows, self._oldest = [], None
        self._lock = threading.Lock()

    def __len__(self):
        with self._lock:
            return len(self._rows)

    def record(self, end_user, recommendation, experiment_pk=None):
        """Note one list shown to one user; writes the buffer when due."""
        row = ShownList(
            id=recommendation.recommendation_id,
            user_id=end_user.pk,
            model_version=recommendation.model_version or "",
            experiment_id=experiment_pk,
            arm=recommendation.arm or "",
            strategy=recommendation.strategy,
            items=list(recommendation.item_ids),
            n_items=len(recommendation.item_ids),
            created_at=timezone.now(),
        )
        with self._lock:
            full = len(self._rows) >= self.limit
            if not full:
                self._rows.append(row)
                self._oldest = self._oldest or time.monotonic()
            due = len(self._rows) >= self.size or (
                time.monotonic() - self._oldest >= self.seconds
            )
        if full:
            counters.increment("impressions_dropped_total")
            logger.debug("the impressions buffer is full: a shown list is dropped")
        if due:
            self.flush()

    def flush(self):
        rows = self.discard()
        if not rows:
            return
        try:
            with transaction.atomic():
                ShownList.objects.bulk_create(rows, ignore_conflicts=True)
        except IntegrityError:
            # A user deleted since the list was shown; impressions are
            # statistics, so the batch is dropped rather than failing a reply.
            logger.warning("dropped %d shown lists: %s", len(rows), "user gone")
            return
        logger.debug("wrote %d shown lists", len(rows))

    def discard(self):
        """Empty the buffer without writing it; returns what it held."""
        with self._lock:
            rows, self._rows, self._oldest = self._rows, [], None
        return rows


impressions = ImpressionBuffer()


def recommend_and_record(end_user, **options):
    """Recommendations for a user, noted as shown."""
    from recommendations.serving import holder

    recommendation = holder.recommend(end_user, **options)
    experiment = holder.experiment
    in_experiment = experiment is not None and recommendation.experiment
    impressions.record(
        end_user, recommendation, experiment.pk if in_experiment else None
    )
    return recommendation
