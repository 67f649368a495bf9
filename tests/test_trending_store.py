"""Trending stores: the shared one in Redis, its fallback, and the factory."""

import logging
import uuid

import numpy as np
import pytest
import redis

from recommendations import trending_store
from recommendations.trending_store import (
    ERA_HALVINGS,
    EXPIRE_AFTER_HALVINGS,
    InProcessTrending,
    RedisTrending,
    trending_backend,
)

TEST_REDIS_URL = "redis://127.0.0.1:6379/15"
UNREACHABLE_REDIS_URL = "redis://127.0.0.1:1/0"
HOUR = 3600.0


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        client.close()
        pytest.skip(
            f"NO REDIS at {TEST_REDIS_URL} ({exc}): the shared trending store "
            "was NOT tested"
        )
    yield client
    client.close()


@pytest.fixture
def key_prefix(redis_client):
    """A prefix no other test uses, with every key under it deleted after."""
    prefix = f"rtrec-test:trending:{uuid.uuid4().hex}"
    yield prefix
    for key in redis_client.scan_iter(match=f"{prefix}:*"):
        redis_client.delete(key)


@pytest.fixture
def shared(key_prefix):
    store = RedisTrending(TEST_REDIS_URL, key_prefix, HOUR)
    yield store
    store.close()


@pytest.fixture
def other_process(key_prefix):
    store = RedisTrending(TEST_REDIS_URL, key_prefix, HOUR)
    yield store
    store.close()


def test_two_instances_see_each_others_adds(shared, other_process):
    shared.add("film", 2.0)
    other_process.add("film", 1.0)
    other_process.add("show", 5.0)

    scores = shared.scores(["film", "show", "nobody"])

    np.testing.assert_allclose(scores, [3.0, 5.0, 0.0], rtol=1e-3)
    assert [item for item, _ in shared.top(5)] == ["show", "film"]


def test_a_weight_added_one_half_life_ago_counts_half(shared):
    shared.add("film", 4.0, at=10 * HOUR)

    scores = shared.scores(["film"], now=11 * HOUR)

    np.testing.assert_allclose(scores, [2.0], rtol=1e-12)


def test_top_follows_decayed_scores(shared):
    shared.add("old", 10.0, at=0.0)
    shared.add("new", 3.0, at=2 * HOUR)

    top = shared.top(5, now=2 * HOUR)

    assert [item for item, _ in top] == ["new", "old"]
    np.testing.assert_allclose([score for _, score in top], [3.0, 2.5])


def test_adds_from_the_previous_era_still_count(shared):
    era = ERA_HALVINGS * HOUR
    shared.add("film", 8.0, at=3 * era - HOUR)

    scores = shared.scores(["film"], now=3 * era + 2 * HOUR)
    top = shared.top(1, now=3 * era + 2 * HOUR)

    np.testing.assert_allclose(scores, [1.0], rtol=1e-12)
    assert top == [("film", pytest.approx(1.0, rel=1e-12))]


def test_it_agrees_with_the_in_process_store(shared):
    local = InProcessTrending(HOUR)
    events = [("a", 3.0, 0.0), ("b", 1.0, 70 * HOUR), ("a", -1.0, 90 * HOUR)]
    for item, weight, at in events:
        shared.add(item, weight, at=at)
        local.add(item, weight, at=at)

    now = 95 * HOUR
    expected = local.scores(["a", "b"], now=now)

    np.testing.assert_allclose(shared.scores(["a", "b"], now=now), expected)

    shared_top, local_top = shared.top(2, now=now), local.top(2, now=now)
    assert [item for item, _ in shared_top] == [item for item, _ in local_top]
    np.testing.assert_allclose(
        [score for _, score in shared_top], [score for _, score in local_top]
    )


def test_negative_weights_clip_at_zero(shared):
    shared.add("film", 1.0, at=0.0)
    shared.add("film", -4.0, at=0.0)

    assert shared.scores(["film"], now=0.0).tolist() == [0.0]
    assert shared.top(5, now=0.0) == []


def test_keys_expire_so_idle_data_vanishes(shared, redis_client, key_prefix):
    shared.add("film", 1.0)

    keys = list(redis_client.scan_iter(match=f"{key_prefix}:*"))
    ttls = [redis_client.ttl(key) for key in keys]

    assert len(keys) == 2
    assert all(0 < ttl <= EXPIRE_AFTER_HALVINGS * HOUR for ttl in ttls)


def test_an_unreachable_redis_logs_a_warning_and_counts_in_process(caplog):
    prefix = f"rtrec-test:trending:{uuid.uuid4().hex}"
    store = RedisTrending(UNREACHABLE_REDIS_URL, prefix, HOUR)

    with caplog.at_level(logging.WARNING, logger="recommendations.trending_store"):
        store.add("film", 2.0, at=0.0)
        store.add("film", 1.0, at=0.0)
        scores = store.scores(["film"], now=HOUR)

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "unreachable" in warnings[0].getMessage()
    assert scores.tolist() == [1.5]
    assert store.top(1, now=HOUR) == [("film", 1.5)]
    store.close()


def test_the_backend_is_in_process_and_shared_without_a_redis_url(
    settings, monkeypatch
):
    monkeypatch.delenv("REDIS_URL", raising=False)
    settings.RTREC = {
        key: value
        for key, value in settings.RTREC.items()
        if key not in ("REDIS_URL", "TRENDING_HALF_LIFE")
    }

    backend = trending_backend()

    assert isinstance(backend, InProcessTrending)
    assert backend is trending_backend()
    assert backend.half_life == trending_store.DEFAULT_HALF_LIFE == 3600


def test_the_backend_uses_redis_when_settings_name_one(settings):
    settings.RTREC = {
        **settings.RTREC,
        "REDIS_URL": TEST_REDIS_URL,
        "TRENDING_HALF_LIFE": 60,
    }

    backend = trending_backend()

    assert isinstance(backend, RedisTrending)
    assert backend.half_life == 60.0


def test_the_backend_reads_redis_url_from_the_environment(settings, monkeypatch):
    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)
    settings.RTREC = {
        key: value for key, value in settings.RTREC.items() if key != "REDIS_URL"
    }

    assert isinstance(trending_backend(), RedisTrending)


def test_an_empty_redis_url_setting_overrides_the_environment(settings, monkeypatch):
    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)
    settings.RTREC = {**settings.RTREC, "REDIS_URL": ""}

    assert isinstance(trending_backend(), InProcessTrending)
