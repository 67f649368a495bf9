import time
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from events.importers import ImportFailed, load
from events.models import EndUser, Interaction, Item

BATCH_SIZE = 5000
# Small enough for SQLite's cap on the parameters of one query.
LOOKUP_SIZE = 900
EVENT_PREFIX = "ml:"

DOWNLOAD_HINT = (
    "Download MovieLens 100K from https://grouplens.org/datasets/movielens/100k/, "
    "unzip it, and pass its folder as PATH or set RTREC_DATA to it."
)


class Command(BaseCommand):
    help = (
        "Import MovieLens items, users and ratings from a folder in the "
        "GroupLens ml-100k, GroupLens CSV or RecBole layout."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "path", nargs="?", help="the data folder (default: RTREC_DATA)"
        )

    def handle(self, *args, path=None, **options):
        folder = Path(path) if path else Path(settings.RTREC["DATA_DIR"])
        if not folder.is_dir():
            raise CommandError(f"No MovieLens data at {folder}. {DOWNLOAD_HINT}")
        started = time.monotonic()

        # Read and check every file first, so a bad line writes nothing.
        try:
            data = load(folder)
        except ImportFailed as exc:
            raise CommandError(str(exc)) from None

        with transaction.atomic():
            new = self._store(data)

        elapsed = time.monotonic() - started
        self.stdout.write(
            f"Imported {len(data.items)} items, {len(data.users)} users, "
            f"{len(data.ratings)} ratings ({new} new) from {data.layout} "
            f"in {elapsed:.1f}s"
        )

    def _store(self, data):
        item_pks = _upsert_items(data.items)
        user_pks = _add_users(data.users)
        return self._add_ratings(data.ratings, user_pks, item_pks)

    def _add_ratings(self, ratings, user_pks, item_pks):
        before = _imported_count()
        progress = tqdm(
            total=len(ratings), unit="rating", disable=not self.stdout.isatty()
        )

        with progress:
            for start in range(0, len(ratings), BATCH_SIZE):
                batch = ratings[start : start + BATCH_SIZE]
                rows = [_interaction(r, user_pks, item_pks) for r in batch]
                # A rating imported before keeps its event id and is skipped.
                Interaction.objects.bulk_create(rows, ignore_conflicts=True)
                progress.update(len(batch))

        return _imported_count() - before


def _upsert_items(movies):
    rows = [
        Item(
            external_id=movie.external_id,
            title=movie.title,
            genres="|".join(movie.genres),
            year=movie.year,
        )
        for movie in movies
    ]
    Item.objects.bulk_create(
        rows,
        batch_size=BATCH_SIZE,
        update_conflicts=True,
        unique_fields=["external_id"],
        update_fields=["title", "genres", "year", "updated_at"],
    )
    return _pks_by_external_id(Item, [movie.external_id for movie in movies])


def _add_users(external_ids):
    rows = [EndUser(external_id=external_id) for external_id in external_ids]
    EndUser.objects.bulk_create(rows, batch_size=BATCH_SIZE, ignore_conflicts=True)

    # ignore_conflicts leaves pk unset, so read them back.
    return _pks_by_external_id(EndUser, external_ids)


def _pks_by_external_id(model, external_ids):
    external_ids = list(external_ids)
    pks = {}
    for start in range(0, len(external_ids), LOOKUP_SIZE):
        chunk = external_ids[start : start + LOOKUP_SIZE]
        found = model.objects.filter(external_id__in=chunk)
        pks.update(found.values_list("external_id", "pk"))
    return pks


def _interaction(rating, user_pks, item_pks):
    return Interaction(
        user_id=user_pks[rating.user_id],
        item_id=item_pks[rating.item_id],
        kind=Interaction.Kind.RATE,
        value=rating.rating,
        created_at=datetime.fromtimestamp(rating.timestamp, UTC),
        event_id=f"{EVENT_PREFIX}{rating.user_id}:{rating.item_id}",
    )


def _imported_count():
    return Interaction.objects.filter(event_id__startswith=EVENT_PREFIX).count()
