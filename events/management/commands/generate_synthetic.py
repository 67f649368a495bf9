"""Seeded synthetic catalog, users and interactions, for benchmarks at scale.

Item popularity follows a power law, so a few items take most of the
traffic, and so does user activity: most users act a few times, a few act
thousands of times. Each item has one to three genres and each user a
favourite genre that most of their interactions come from, so a model has
something to learn. Rows are written with executemany on SQLite and COPY
on PostgreSQL, not model instances: ten million rows stay in minutes.
"""

import time
from datetime import UTC, datetime, timedelta

import numpy as np
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from events.importers import DEFAULT_GENRES
from events.models import EndUser, Interaction, Item

# MovieLens genres, without its "unknown".
GENRES = DEFAULT_GENRES[1:]
IMPLICIT_KINDS = ("view", "click", "add_to_cart", "purchase", "like", "dislike")
IMPLICIT_SHARES = (0.5, 0.25, 0.1, 0.05, 0.07, 0.03)

# users, items, interactions
SIZES = {
    "ml-100k": (943, 1_682, 100_000),
    "1m": (50_000, 10_000, 1_000_000),
    "10m": (1_000_000, 100_000, 10_000_000),
}
BATCH_ROWS = 100_000
# How often a user's interaction comes from their favourite genre.
GENRE_LOYALTY = 0.6


def _count(text):
    value = int(text.replace("_", ""))
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _share(text):
    value = float(text)
    if not 0 <= value <= 1:
        raise ValueError("must be between 0 and 1")
    return value


class Command(BaseCommand):
    help = (
        "Generate a seeded synthetic catalog, users and interactions with "
        "power-law popularity and activity, genres and timestamps."
    )

    def add_arguments(self, parser):
        parser.add_argument("--size", choices=sorted(SIZES), default="ml-100k")
        parser.add_argument("--users", type=_count, help="overrides --size")
        parser.add_argument("--items", type=_count, help="overrides --size")
        parser.add_argument("--interactions", type=_count, help="overrides --size")
        parser.add_argument(
            "--rating-share",
            type=_share,
            default=1.0,
            help="share of interactions that are ratings; the rest are "
            "views, clicks, purchases and the like (default 1)",
        )
        parser.add_argument("--days", type=_count, default=365)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--prefix", default="syn", help="external ids are PREFIX-u7, PREFIX-i42"
        )

    def handle(self, *args, **options):
        n_users, n_items, n_interactions = SIZES[options["size"]]
        n_users = options["users"] or n_users
        n_items = options["items"] or n_items
        n_interactions = options["interactions"] or n_interactions
        prefix = options["prefix"]
        if EndUser.objects.filter(external_id=f"{prefix}-u0").exists():
            raise CommandError(
                f"synthetic data with prefix {prefix!r} is already stored: "
                "use a fresh database or another --prefix"
            )

        started = time.monotonic()
        world = SyntheticWorld(
            n_users, n_items, options["seed"], options["rating_share"]
        )
        with transaction.atomic():
            item_pks = _insert_items(world, prefix)
            user_pks = _insert_users(n_users, prefix)
            _insert_interactions(
                world, n_interactions, user_pks, item_pks, options["days"]
            )
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")

        self.stdout.write(
            f"Generated {n_items} items, {n_users} users and {n_interactions} "
            f"interactions (seed {options['seed']}) in "
            f"{time.monotonic() - started:.1f}s"
        )


class SyntheticWorld:
    """Who likes what, drawn once from a seed; interactions are drawn from it."""

    def __init__(self, n_users, n_items, seed, rating_share):
        self.rng = np.random.default_rng(seed)
        self.n_users, self.n_items = n_users, n_items
        self.rating_share = rating_share

        rng = self.rng
        # Zipf-like popularity, shuffled so that ids say nothing about it.
        self.popularity = rng.permutation(1.0 / (np.arange(n_items) + 10.0) ** 0.9)
        genre_share = 1.0 / (np.arange(len(GENRES)) + 2.0)
        genre_share /= genre_share.sum()
        self.item_genres = [
            rng.choice(
                len(GENRES), size=rng.integers(1, 4), replace=False, p=genre_share
            )
            for _ in range(n_items)
        ]
        self.main_genre = np.array([genres[0] for genres in self.item_genres])
        self.favourite = rng.choice(len(GENRES), size=n_users, p=genre_share)
        self.user_bias = rng.normal(0.0, 0.4, n_users)
        self.item_quality = rng.normal(0.0, 0.5, n_items) + 0.3 * np.log(
            self.popularity / self.popularity.mean()
        ).clip(-2, 2)

    def activity(self, n_interactions):
        """Interactions per user: at least one each, heavy-tailed above that."""
        base = min(self.n_users, n_interactions)
        counts = np.zeros(self.n_users, dtype=np.int64)
        counts[:base] = 1
        # Capped, so that no single user takes a sizeable share of the rows.
        weights = np.minimum(self.rng.pareto(1.2, self.n_users) + 1.0, 100.0)
        counts += self.rng.multinomial(n_interactions - base, weights / weights.sum())
        return counts

    def items_for(self, users):
        """One item per user row: mostly from their favourite genre."""
        items = self._draw(np.arange(self.n_items), len(users))
        loyal = self.rng.random(len(users)) < GENRE_LOYALTY
        wanted = self.favourite[users]
        for genre in range(len(GENRES)):
            rows = np.flatnonzero(loyal & (wanted == genre))
            pool = np.flatnonzero(self.main_genre == genre)
            if len(rows) and len(pool):
                items[rows] = self._draw(pool, len(rows))
        return items

    def _draw(self, pool, size):
        weights = self.popularity[pool]
        return pool[self.rng.choice(len(pool), size=size, p=weights / weights.sum())]

    def ratings(self, users, items):
        liked = self.main_genre[items] == self.favourite[users]
        mean = 3.5 + self.user_bias[users] + self.item_quality[items] + 0.6 * liked
        noisy = mean + self.rng.normal(0.0, 0.8, len(users))
        return np.clip(np.rint(noisy), 1, 5)

    def kinds(self, size):
        rated = self.rng.random(size) < self.rating_share
        other = self.rng.choice(len(IMPLICIT_KINDS), size=size, p=IMPLICIT_SHARES)
        return rated, other


def _insert_items(world, prefix):
    now = _timestamp(datetime.now(UTC))
    years = world.rng.integers(1950, 2024, world.n_items)
    rows = (
        (
            f"{prefix}-i{n}",
            f"Synthetic item {n}",
            "|".join(GENRES[g] for g in world.item_genres[n]),
            int(years[n]),
            "",
            True,
            now,
            now,
        )
        for n in range(world.n_items)
    )
    columns = (
        "external_id",
        "title",
        "genres",
        "year",
        "description",
        "is_active",
        "created_at",
        "updated_at",
    )
    _write(Item._meta.db_table, columns, rows)
    return _pks(Item, f"{prefix}-i", world.n_items)


def _insert_users(n_users, prefix):
    now = _timestamp(datetime.now(UTC))
    rows = ((f"{prefix}-u{n}", now) for n in range(n_users))
    _write(EndUser._meta.db_table, ("external_id", "created_at"), rows)
    return _pks(EndUser, f"{prefix}-u", n_users)


def _pks(model, id_prefix, expected):
    """Primary keys in insertion order: the nth row is the nth id."""
    pks = np.fromiter(
        model.objects.filter(external_id__startswith=id_prefix)
        .order_by("pk")
        .values_list("pk", flat=True)
        .iterator(chunk_size=BATCH_ROWS),
        dtype=np.int64,
    )
    if len(pks) != expected:
        raise CommandError(f"expected {expected} new {model.__name__} rows")
    return pks


def _insert_interactions(world, n_interactions, user_pks, item_pks, days):
    counts = world.activity(n_interactions)
    end = datetime.now(UTC)
    start = end - timedelta(days=days)
    span_us = int((end - start).total_seconds() * 1e6)
    columns = ("user_id", "item_id", "kind", "value", "created_at")

    def batches():
        # Users in order, a slice of them per batch, so memory stays flat.
        bounds = np.concatenate([[0], np.cumsum(counts)])
        first = 0
        while first < world.n_users:
            last = int(np.searchsorted(bounds, bounds[first] + BATCH_ROWS, "right"))
            last = min(max(last - 1, first + 1), world.n_users)
            users = np.repeat(np.arange(first, last), counts[first:last])
            yield from _interaction_rows(
                world, users, user_pks, item_pks, start, span_us
            )
            first = last

    _write(Interaction._meta.db_table, columns, batches())


def _interaction_rows(world, users, user_pks, item_pks, start, span_us):
    items = world.items_for(users)
    values = world.ratings(users, items)
    rated, other = world.kinds(len(users))
    offsets = np.sort(world.rng.integers(0, span_us, len(users)))
    moments = np.datetime64(start.replace(tzinfo=None), "us") + offsets
    times = np.datetime_as_string(moments, unit="us").tolist()
    suffix = "+00:00" if connection.vendor == "postgresql" else ""

    for n, (user, item) in enumerate(
        zip(user_pks[users], item_pks[items], strict=True)
    ):
        if rated[n]:
            kind, value = "rate", float(values[n])
        else:
            kind, value = IMPLICIT_KINDS[other[n]], None
        # Django's own text form: a space, not ISO's T, so that SQLite
        # compares stored times with the ones queries send.
        moment = times[n].replace("T", " ", 1) + suffix
        yield int(user), int(item), kind, value, moment


def _timestamp(moment):
    """A UTC time as both backends read it from text."""
    text = moment.strftime("%Y-%m-%d %H:%M:%S.%f")
    return text + "+00:00" if connection.vendor == "postgresql" else text


def _write(table, columns, rows):
    """Insert rows in large batches: COPY on PostgreSQL, executemany elsewhere."""
    names = ", ".join(connection.ops.quote_name(c) for c in columns)
    quoted = connection.ops.quote_name(table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.copy(f"COPY {quoted} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return

        marks = ", ".join(["%s"] * len(columns))
        sql = f"INSERT INTO {quoted} ({names}) VALUES ({marks})"
        batch = []
        for row in rows:
            batch.append(row)
            if len(batch) >= BATCH_ROWS:
                cursor.executemany(sql, batch)
                batch = []
        if batch:
            cursor.executemany(sql, batch)
