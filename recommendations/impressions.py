"""Recording what was shown, cheaply: lists are buffered and written in bulk.

One row per list (its items as JSON), written when the buffer fills or a
second has passed, so showing a list costs no query of its own. A list
still in the buffer when a process dies is lost; that loses impressions,
never events.

The second is kept by a timer thread started with the buffer's first
row, so the last lists before a quiet spell are written too, not only
when the next list comes.
"""

import logging
import threading
import time
import uuid

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models.constants import OnConflict
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
        self._timer = None

    def __len__(self):
        with self._lock:
            return len(self._rows)

    def record(self, end_user, recommendation, experiment_pk=None):
        """Note one list shown to one user; writes the buffer when due."""
        if self.add(end_user.pk, _shown_fields(recommendation), experiment_pk):
            self.flush()

    def add(self, user_pk, shown, experiment_pk=None):
        """Note one list without writing anything: True when the buffer is
        due to be flushed, which the caller does where it may query.

        `shown` holds a list's recommendation_id, model, strategy, arm and
        items, as the WebSocket payload has them.
        """
        row = (user_pk, shown, experiment_pk, timezone.now())
        with self._lock:
            full = len(self._rows) >= self.limit
            if not full:
                self._rows.append(row)
                self._oldest = self._oldest or time.monotonic()
                self._keep_time()
            due = len(self._rows) >= self.size or (
                time.monotonic() - self._oldest >= self.seconds
            )
        if full:
            counters.increment("impressions_dropped_total")
            logger.debug("the impressions buffer is full: a shown list is dropped")
        return due

    def _keep_time(self):
        # Called with the lock held.
        if self._timer is not None and self._timer.is_alive():
            return
        self._timer = threading.Timer(self.seconds, self._flush_on_time)
        self._timer.daemon = True
        self._timer.start()

    def _flush_on_time(self):
        try:
            self.flush()
        except DatabaseError as exc:
            logger.warning("shown lists not written: %s", exc)
        finally:
            # This thread's connection; the timer's thread ends here.
            connection.close()
            with self._lock:
                self._timer = None
                if self._rows:  # Added while this flush was writing.
                    self._keep_time()

    def flush(self):
        rows = self.discard()
        if not rows:
            return
        try:
            with transaction.atomic():
                _insert(rows)
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


def _shown_fields(recommendation):
    return {
        "recommendation_id": recommendation.recommendation_id,
        "model": recommendation.model_version,
        "strategy": recommendation.strategy,
        "arm": recommendation.arm,
        "items": recommendation.item_ids,
    }


def shown_in(payload):
    """What a `recommendations` payload shows, as the buffer notes it."""
    experiment = payload.get("experiment") or {}
    return {
        "recommendation_id": payload["recommendation_id"],
        "model": payload["model"],
        "strategy": payload["strategy"],
        "arm": experiment.get("arm"),
        "items": payload["items"],
    }


COLUMNS = (
    "id",
    "user",
    "model_version",
    "experiment",
    "arm",
    "strategy",
    "items",
    "n_items",
    "created_at",
)


def _insert(rows):
    """One INSERT per batch, skipping ids already written.

    The ORM's bulk_create builds a model instance per row and compiles
    its query at every flush: 46 µs a list against 28 here, on a path that
    runs for every list shown. Each value still goes through its field's
    own conversion, so both databases get what the ORM would send.
    """
    fields = [ShownList._meta.get_field(name) for name in COLUMNS]
    ops = connection.ops
    statement = "{insert} {table} ({columns}) VALUES ({values}) {suffix}".format(
        insert=ops.insert_statement(on_conflict=OnConflict.IGNORE),
        table=ops.quote_name(ShownList._meta.db_table),
        columns=", ".join(ops.quote_name(field.column) for field in fields),
        values=", ".join(["%s"] * len(fields)),
        suffix=ops.on_conflict_suffix_sql(fields, OnConflict.IGNORE, None, None),
    )
    values = (
        [
            field.get_db_prep_save(value, connection)
            for field, value in zip(fields, _column_values(row), strict=True)
        ]
        for row in rows
    )
    with connection.cursor() as cursor:
        cursor.executemany(statement, list(values))


def _column_values(row):
    user_pk, shown, experiment_pk, created_at = row
    item_ids = [
        item if isinstance(item, str) else item["id"] for item in shown["items"]
    ]
    return (
        uuid.UUID(shown["recommendation_id"]),
        user_pk,
        shown["model"] or "",
        experiment_pk,
        shown.get("arm") or "",
        shown["strategy"],
        item_ids,
        len(item_ids),
        created_at,
    )


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
