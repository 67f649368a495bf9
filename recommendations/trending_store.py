"""Where trending counters live: in this process, or shared through Redis.

Both stores answer the same three calls, `add`, `scores` and `top`, so a
caller never needs to know which one `trending_backend()` handed it.
"""

import functools
import logging
import math
import os
import threading
import time

import numpy as np
import redis
from django.conf import settings

from recommendations.engine.trending import TrendingCounter, decay_factor
from recommendations.redis_outage import Outage, quick_client

logger = logging.getLogger(__name__)

DEFAULT_HALF_LIFE = 3600
DEFAULT_KEY_PREFIX = "rtrec:trending"

# Each era gets its own sorted set with t0 at the era's start, so stored
# values stay below 2**(2 * ERA_HALVINGS) and never need rewriting.
ERA_HALVINGS = 50

# An idle key vanishes once everything in it has lost this many halvings.
EXPIRE_AFTER_HALVINGS = 20

# How long an unreachable Redis is left alone before it is tried again, so
# a dead server costs one connect timeout now and then, not one per event.
RETRY_REDIS_AFTER_SECONDS = 5.0

REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError)


class InProcessTrending:
    """A TrendingCounter that several threads may share."""

    def __init__(self, half_life, clock=time.time, max_items=None):
        self._counter = TrendingCounter(half_life, clock=clock, max_items=max_items)
        self._lock = threading.Lock()

    def __len__(self):
        with self._lock:
            return len(self._counter)

    @property
    def half_life(self):
        return self._counter.half_life

    def add(self, item_id, weight=1.0, at=None):
        with self._lock:
            self._counter.add(item_id, weight, at=at)

    def seed(self, counts, at):
        with self._lock:
            self._counter.seed(counts, at)

    def scores(self, item_ids, now=None):
        with self._lock:
            return self._counter.scores(item_ids, now=now)

    def top(self, n, now=None):
        with self._lock:
            return self._counter.top(n, now=now)


class RedisTrending:
    """Trending counters in Redis sorted sets, shared by every process.

    An add is written to the sorted set of its own era and, scaled into
    that frame, to the next era's set as well. A read at any moment then
    needs only its own era's set, which already holds the previous era:
    anything older has lost at least ERA_HALVINGS halvings.
    """

    def __init__(self, url, key_prefix, half_life, clock=time.time, max_items=None):
        if not math.isfinite(half_life) or half_life <= 0:
            raise ValueError("half_life must be a positive number")

        self.half_life = float(half_life)
        self.key_prefix = key_prefix
        self.max_items = max_items
        self._clock = clock
        self._client = quick_client(url)
        self._fallback = InProcessTrending(half_life, clock=clock, max_items=max_items)
        self._outage = Outage(
            "trending", "counting in this process", logger, RETRY_REDIS_AFTER_SECONDS
        )

    def close(self):
        """Release this store's Redis connections."""
        self._client.close()

    def add(self, item_id, weight=1.0, at=None):
        at = self._clock() if at is None else float(at)
        self._redis_or_fallback(
            lambda: self._add_to_redis(item_id, weight, at),
            lambda: self._fallback.add(item_id, weight, at=at),
        )

    def scores(self, item_ids, now=None):
        now = self._clock() if now is None else float(now)
        if len(item_ids) == 0:
            return np.zeros(0)

        return self._redis_or_fallback(
            lambda: self._scores_from_redis(list(item_ids), now),
            lambda: self._fallback.scores(item_ids, now=now),
        )

    def top(self, n, now=None):
        now = self._clock() if now is None else float(now)
        if n <= 0:
            return []

        return self._redis_or_fallback(
            lambda: self._top_from_redis(n, now),
            lambda: self._fallback.top(n, now=now),
        )

    def _add_to_redis(self, item_id, weight, at):
        era = self._era(at)
        ttl = math.ceil(EXPIRE_AFTER_HALVINGS * self.half_life)

        pipe = self._client.pipeline(transaction=True)
        for key_era in (era, era + 1):
            key = self._key(key_era)
            growth = decay_factor(self._era_start(key_era) - at, self.half_life)
            pipe.zincrby(key, weight * float(growth), item_id)
            if self.max_items is not None:
                # Lowest ranks first: keep only the max_items strongest.
                pipe.zremrangebyrank(key, 0, -(self.max_items + 1))
            pipe.expire(key, ttl)
        pipe.execute()

    def _scores_from_redis(self, item_ids, now):
        stored = self._client.zmscore(self._key(self._era(now)), item_ids)

        values = [0.0 if value is None else value for value in stored]
        return self._decayed(np.array(values, np.float64), now)

    def _top_from_redis(self, n, now):
        key = self._key(self._era(now))
        ranked = self._client.zrange(key, 0, n - 1, desc=True, withscores=True)
        if not ranked:
            return []

        members, stored = zip(*ranked, strict=True)
        decayed = self._decayed(np.array(stored, np.float64), now)
        return [
            (member.decode(), float(score))
            for member, score in zip(members, decayed, strict=True)
            if score > 0
        ]

    def _decayed(self, stored, now):
        elapsed = now - self._era_start(self._era(now))
        # Clipped on read, not on write, so that a dislike keeps cancelling
        # the likes that come after it.
        return np.maximum(stored * decay_factor(elapsed, self.half_life), 0.0)

    def _era(self, moment):
        return math.floor(moment / (ERA_HALVINGS * self.half_life))

    def _era_start(self, era):
        return era * ERA_HALVINGS * self.half_life

    def _key(self, era):
        return f"{self.key_prefix}:{era}"

    def _redis_or_fallback(self, use_redis, use_fallback):
        if self._outage.resting:
            return use_fallback()

        try:
            result = use_redis()
        except REDIS_ERRORS as exc:
            self._outage.failed(exc)
            return use_fallback()

        self._outage.answered()
        return result


def trending_backend():
    """The trending store this process should use, per the settings."""
    rtrec = settings.RTREC
    half_life = rtrec.get("TRENDING_HALF_LIFE", DEFAULT_HALF_LIFE)
    max_items = rtrec.get("TRENDING_MAX_ITEMS")
    if "REDIS_URL" in rtrec:
        url = rtrec["REDIS_URL"]
    else:
        url = os.environ.get("REDIS_URL")

    if url:
        return _shared_redis_trending(url, half_life, max_items)
    return _process_trending(half_life, max_items)


@functools.cache
def _shared_redis_trending(url, half_life, max_items):
    return RedisTrending(url, DEFAULT_KEY_PREFIX, half_life, max_items=max_items)


@functools.cache
def _process_trending(half_life, max_items):
    return InProcessTrending(half_life, max_items=max_items)


def forget_trending():
    """Drop this process's trending stores; the next call makes new ones."""
    _shared_redis_trending.cache_clear()
    _process_trending.cache_clear()
