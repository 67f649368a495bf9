"""Limits that keep one client from taking the server, and bounded state.

Every socket here goes through the real ASGI application; the limits
are settings, lowered for each test.
"""

import asyncio
import json
import logging
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import redis
from channels.testing import WebsocketCommunicator

from recommendations.consumers import CLOSE_IDLE, CLOSE_TOO_MANY
from recommendations.engine.trending import TrendingCounter
from recommendations.impressions import ImpressionBuffer
from recommendations.metrics_counters import Counters, counters
from recommendations.throttle import (
    KEY_PREFIX,
    RedisSocketSlots,
    Slot,
    SocketSlots,
    forget_shared_slots,
    socket_slots,
)
from recommendations.trending_store import RedisTrending
from rtrec_site.asgi import application
from tests.conftest import open_socket, receive, request, socket_as, token_for
from tests.live_servers import free_port
from tests.test_faults import OwnRedis

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def limits(settings):
    """Change RTREC settings for one test: limits(WS_RATE=1, ...)."""

    def change(**values):
        settings.RTREC = {**settings.RTREC, **values}

    return change


def from_address(address):
    """The application, seen from one client address (as Daphne gives it)."""

    async def app(scope, receive, send):
        scope = dict(scope, client=[address, 50000])
        return await application(scope, receive, send)

    return app


async def socket_from(address, external_id):
    path = f"/ws/recommendations/?token={token_for(external_id)}"
    communicator = WebsocketCommunicator(from_address(address), path)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return communicator


async def closed_with(communicator, timeout=5):
    """The close code the server sent next, skipping any other output."""
    while True:
        output = await communicator.receive_output(timeout)
        if output["type"] == "websocket.close":
            return output.get("code")


async def refusal(communicator):
    error = await receive(communicator)
    return error, await closed_with(communicator)


async def test_a_user_over_the_socket_cap_is_told_why_and_closed(catalog, limits):
    limits(WS_MAX_SOCKETS_PER_USER=2)
    first, second = await socket_as("u1"), await socket_as("u1")

    third = await socket_as("u1")
    error, code = await refusal(third)

    assert error["type"] == "error"
    assert error["code"] == "rate_limited"
    assert "2 open sockets" in error["message"]
    assert code == CLOSE_TOO_MANY
    await first.disconnect()
    await second.disconnect()


async def test_closing_a_socket_frees_its_place_under_the_cap(catalog, limits):
    limits(WS_MAX_SOCKETS_PER_USER=1)
    first = await socket_as("u1")
    await first.disconnect()

    again = await socket_as("u1")

    assert await request(again, {"type": "ping"}) == {"type": "pong"}
    await again.disconnect()


async def test_the_cap_counts_each_user_apart(catalog, limits):
    limits(WS_MAX_SOCKETS_PER_USER=1)
    mine = await socket_as("u1")

    theirs = await socket_as("u2")

    assert await request(theirs, {"type": "ping"}) == {"type": "pong"}
    await mine.disconnect()
    await theirs.disconnect()


async def test_an_address_over_its_socket_cap_is_refused(catalog, limits):
    limits(WS_MAX_SOCKETS_PER_ADDRESS=2)
    opened = [await socket_from("203.0.113.7", f"u{n}") for n in (1, 2)]

    refused = await socket_from("203.0.113.7", "u3")
    elsewhere = await socket_from("198.51.100.1", "u3")

    error, code = await refusal(refused)
    assert (error["code"], code) == ("rate_limited", CLOSE_TOO_MANY)
    assert await request(elsewhere, {"type": "ping"}) == {"type": "pong"}
    for communicator in [*opened, elsewhere]:
        await communicator.disconnect()


async def test_a_socket_cancelled_without_a_disconnect_gives_its_place_back(catalog):
    socket = await socket_as("u1")
    user_pk = await _pk_of("u1")
    assert socket_slots.open_for_user(user_pk) == 1

    socket.future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await socket.future

    assert socket_slots.open_for_user(user_pk) == 0


async def test_a_socket_that_keeps_flooding_is_closed(catalog, limits):
    limits(WS_RATE=1, WS_BURST=2, WS_RATE_STRIKES=5)
    socket = await socket_as("u1")

    for _ in range(12):
        await socket.send_to(text_data=json.dumps({"type": "ping"}))
    replies = await _texts_until_closed(socket)

    codes = [reply.get("code") for reply in replies["messages"]]
    assert [r["type"] for r in replies["messages"][:2]] == ["pong", "pong"]
    assert codes.count("rate_limited") >= 6
    assert "closed" in replies["messages"][-1]["message"]
    assert replies["code"] == CLOSE_TOO_MANY


async def test_a_short_burst_over_the_rate_is_refused_but_not_closed(catalog, limits):
    limits(WS_RATE=1, WS_BURST=2, WS_RATE_STRIKES=5)
    socket = await socket_as("u1")

    answers = [await request(socket, {"type": "ping"}) for _ in range(4)]
    await asyncio.sleep(1.1)

    assert [a.get("code", a["type"]) for a in answers] == [
        "pong",
        "pong",
        "rate_limited",
        "rate_limited",
    ]
    assert await request(socket, {"type": "ping"}) == {"type": "pong"}
    await socket.disconnect()


async def test_a_silent_socket_is_closed_once_idle(catalog, limits):
    limits(WS_IDLE_SECONDS=0.3)
    socket = await socket_as("u1")

    code = await closed_with(socket, timeout=3)

    assert code == CLOSE_IDLE


async def test_a_socket_that_keeps_talking_is_not_idle(catalog, limits):
    limits(WS_IDLE_SECONDS=0.4)
    socket = await socket_as("u1")

    for _ in range(6):
        await asyncio.sleep(0.15)
        assert await request(socket, {"type": "ping"}) == {"type": "pong"}
    await socket.disconnect()


async def test_a_refusal_is_logged_with_the_connection_id(catalog, limits, caplog):
    limits(WS_MAX_SOCKETS_PER_USER=1)
    kept = await socket_as("u1")

    with caplog.at_level(logging.INFO, logger="recommendations.consumers"):
        refused = await socket_as("u1")
        await refusal(refused)

    messages = [record.getMessage() for record in caplog.records]
    lines = [message for message in messages if "closed with 4429" in message]
    assert len(lines) == 1
    connection_id = lines[0].split()[1]
    assert len(connection_id) == 12 and int(connection_id, 16) >= 0
    assert "user u1" in lines[0]
    await kept.disconnect()


async def test_a_tampered_token_is_refused_with_4401_and_logged(catalog, caplog):
    token = token_for("u1")
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")

    with caplog.at_level(logging.INFO, logger="recommendations.consumers"):
        socket = await open_socket(f"/ws/recommendations/?token={tampered}")
        error, code = await refusal(socket)

    assert (error["code"], code) == ("forbidden", 4401)
    assert any("closed with 4401" in r.getMessage() for r in caplog.records)


async def test_a_frame_is_measured_in_utf8_bytes(catalog, limits):
    limits(MAX_FRAME_BYTES=256)
    socket = await socket_as("u1")
    padding = 256 - len(json.dumps({"type": "ping", "pad": ""}))

    at_limit = json.dumps({"type": "ping", "pad": "x" * padding})
    over = json.dumps({"type": "ping", "pad": "é" * padding}, ensure_ascii=False)

    # At the limit the frame is read (and refused for its stray field).
    assert len(at_limit.encode()) == 256
    assert (await request(socket, at_limit))["code"] == "invalid_message"
    assert len(over) == 256
    assert (await request(socket, over))["code"] == "too_large"
    await socket.disconnect()


async def test_the_counters_follow_sockets_events_errors_and_pushes(trained):
    opened = counters.value("sockets_open")
    stored = counters.value("events_stored_total", via="socket", duplicate="false")
    unknown = counters.value("errors_total", code="unknown_type", via="socket")
    pushes = _pushes_counted()
    socket = await socket_as("u1")

    await request(socket, {"type": "event", "event": "click", "item": "3"})
    await receive(socket)  # the push
    await request(socket, {"type": "nonsense"})
    during = counters.value("sockets_open")
    await socket.disconnect()

    assert during == opened + 1
    assert counters.value("sockets_open") == opened
    assert counters.value("events_stored_total", via="socket", duplicate="false") == (
        stored + 1
    )
    errors = counters.value("errors_total", code="unknown_type", via="socket")
    assert errors == unknown + 1
    assert _pushes_counted() == pushes + 1


def test_the_counters_render_as_prometheus_text():
    registry = Counters()
    registry.increment("errors_total", code="too_large")
    registry.increment("errors_total", code='we"ird')
    registry.adjust("sockets_open", 3)
    registry.observe("push_latency_seconds", 0.02)
    registry.observe("push_latency_seconds", 9.0)

    text = registry.prometheus_text()

    assert "# TYPE rtrec_errors_total counter" in text
    assert 'rtrec_errors_total{code="too_large"} 1' in text
    assert 'rtrec_errors_total{code="we\\"ird"} 1' in text
    assert "rtrec_sockets_open 3" in text
    assert 'rtrec_push_latency_seconds_bucket{le="0.025"} 1' in text
    assert 'rtrec_push_latency_seconds_bucket{le="+Inf"} 2' in text
    assert "rtrec_push_latency_seconds_count 2" in text


def test_trending_counters_keep_only_the_strongest_items():
    counter = TrendingCounter(3600, clock=lambda: 1000.0, max_items=100)

    for n in range(10_000):
        counter.add(f"item-{n}", weight=1.0 + n / 10_000)

    assert len(counter) <= 110
    assert [item for item, _ in counter.top(3)] == [
        "item-9999",
        "item-9998",
        "item-9997",
    ]


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory):
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: .ci/run installs it")
    server = OwnRedis(tmp_path_factory.mktemp("limits-redis"))
    server.start()
    yield server
    server.stop()


def test_shared_trending_counters_keep_only_the_strongest_items(own_redis):
    store = RedisTrending(
        own_redis.url, "rtrec-test:cap", 3600, clock=lambda: 1000.0, max_items=50
    )
    client = redis.Redis.from_url(own_redis.url)

    for n in range(300):
        store.add(f"item-{n}", weight=1.0 + n / 300)

    sizes = [client.zcard(key) for key in client.keys("rtrec-test:cap:*")]
    top = [item for item, _ in store.top(2)]
    store.close()
    client.close()
    assert sizes and max(sizes) == 50
    assert top == ["item-299", "item-298"]


def test_an_uncapped_trending_counter_keeps_everything():
    counter = TrendingCounter(3600, clock=lambda: 1000.0)

    for n in range(500):
        counter.add(f"item-{n}")

    assert len(counter) == 500


def test_the_impressions_buffer_drops_lists_past_its_limit(monkeypatch):
    buffer = ImpressionBuffer(size=10, seconds=3600, limit=50)
    # A writer that cannot keep up: nothing leaves the buffer.
    monkeypatch.setattr(buffer, "flush", lambda: None)
    dropped = counters.value("impressions_dropped_total")
    user = SimpleNamespace(pk=1)

    for n in range(500):
        buffer.record(user, _shown(n))

    assert len(buffer) == 50
    assert counters.value("impressions_dropped_total") == dropped + 450


def test_socket_slots_drop_users_and_addresses_at_zero():
    slots = SocketSlots()

    assert slots.take("ann", "10.0.0.1", user_cap=1, address_cap=1) is None
    assert "user" in slots.take("ann", "10.0.0.2", user_cap=1, address_cap=1)
    assert "address" in slots.take("bob", "10.0.0.1", user_cap=1, address_cap=1)
    slots.give_back("ann", "10.0.0.1")

    assert len(slots) == 0
    assert slots._by_user == {} and slots._by_address == {}


class FakeClock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def shared_slots(own_redis):
    """Makes slot stores on one Redis, as each server process has its own,
    under a key prefix of this test's own."""
    prefix = f"rtrec-test:slots:{uuid.uuid4().hex}"
    stores = []

    def make(lifetime=60, clock=time.time):
        store = RedisSocketSlots(
            own_redis.url, lifetime, key_prefix=prefix, clock=clock
        )
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()
    _delete_keys(own_redis.url, f"{prefix}:*")


def test_two_processes_on_one_redis_keep_one_cap_per_user(shared_slots):
    here, there = shared_slots(), shared_slots()
    first, second, third = (Slot("ann", None, f"s{n}") for n in range(3))

    assert here.take(first, user_cap=2, address_cap=0) is None
    assert there.take(second, user_cap=2, address_cap=0) is None
    refused = here.take(third, user_cap=2, address_cap=0)
    there.give_back(second)
    after_one_closed = here.take(third, user_cap=2, address_cap=0)

    assert refused == "this user already has 2 open sockets"
    assert after_one_closed is None
    assert there.open_for_user("ann") == 2


def test_two_processes_on_one_redis_keep_one_cap_per_address(shared_slots):
    here, there = shared_slots(), shared_slots()
    here.take(Slot("ann", "203.0.113.7", "a"), user_cap=0, address_cap=2)
    there.take(Slot("bob", "203.0.113.7", "b"), user_cap=0, address_cap=2)

    refused = there.take(Slot("cy", "203.0.113.7", "c"), user_cap=0, address_cap=2)
    elsewhere = here.take(Slot("cy", "198.51.100.1", "d"), user_cap=0, address_cap=2)

    assert refused == "this address already has 2 open sockets"
    assert elsewhere is None
    # The refused socket left no trace in its user's set.
    assert here.open_for_user("cy") == 1


def test_processes_racing_for_the_last_slots_take_no_more_than_the_cap(shared_slots):
    stores = [shared_slots(), shared_slots()]
    start = threading.Barrier(16)

    def attempt(n):
        start.wait(5)
        return stores[n % 2].take(Slot("ann", "10.0.0.1", f"s{n}"), 5, 0)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(attempt, range(16)))

    assert answers.count(None) == 5
    assert stores[1].open_for_user("ann") == 5


def test_a_slot_nobody_refreshes_expires_and_frees_its_place(shared_slots):
    clock = FakeClock()
    crashed = shared_slots(lifetime=60, clock=clock)
    alive = shared_slots(lifetime=60, clock=clock)
    crashed.take(Slot("ann", "10.0.0.1", "gone"), user_cap=1, address_cap=1)

    clock.now += 59
    before_expiry = alive.take(Slot("ann", "10.0.0.2", "new"), 1, 1)
    clock.now += 2
    after_expiry = alive.take(Slot("ann", "10.0.0.1", "new"), 1, 1)

    assert before_expiry == "this user already has 1 open sockets"
    assert after_expiry is None
    assert alive.open_for_user("ann") == 1


def test_a_refreshed_slot_outlives_its_first_lifetime(shared_slots):
    clock = FakeClock()
    here = shared_slots(lifetime=60, clock=clock)
    there = shared_slots(lifetime=60, clock=clock)
    kept = Slot("ann", None, "kept")
    here.take(kept, user_cap=1, address_cap=0)

    for _ in range(5):
        clock.now += 40
        here.refresh(kept)

    assert there.take(Slot("ann", None, "other"), 1, 0) is not None


def test_without_redis_each_process_counts_its_own_sockets(caplog):
    unreachable = f"redis://127.0.0.1:{free_port()}/13"
    here = RedisSocketSlots(unreachable, 60)
    there = RedisSocketSlots(unreachable, 60)
    first = Slot("ann", "10.0.0.1", "a")

    with caplog.at_level(logging.INFO, logger="recommendations.throttle"):
        taken = here.take(first, user_cap=1, address_cap=0)
        refused = here.take(Slot("ann", "10.0.0.1", "b"), user_cap=1, address_cap=0)
        in_another_process = there.take(Slot("ann", None, "c"), 1, 0)
        here.give_back(first)
        after_give_back = here.take(Slot("ann", "10.0.0.1", "d"), 1, 0)

    assert taken is None
    assert refused == "this user already has 1 open sockets"
    assert in_another_process is None
    assert after_give_back is None
    warnings = [r for r in caplog.records if r.name == "recommendations.throttle"]
    assert len(warnings) == 2  # one for each store, not one for each call
    assert all(r.levelno == logging.WARNING for r in warnings)
    assert "socket caps" in warnings[0].getMessage()


def test_a_slot_is_counted_here_while_redis_is_down_and_there_after(
    tmp_path, monkeypatch
):
    monkeypatch.setattr("recommendations.throttle.RETRY_REDIS_AFTER_SECONDS", 0.0)
    server = OwnRedis(tmp_path)
    server.start()
    store = RedisSocketSlots(server.url, 60, key_prefix="moving")
    slot = Slot("ann", None, "s")
    try:
        store.take(slot, user_cap=1, address_cap=0)
        server.stop()
        store.refresh(slot)
        refused_while_down = store.take(Slot("ann", None, "t"), 1, 0)

        server.start()  # empty: it saved nothing
        store.refresh(slot)
        in_redis = redis.Redis.from_url(server.url).zrange("moving:user:ann", 0, -1)
        refused_after = store.take(Slot("ann", None, "u"), 1, 0)
        open_for_ann = store.open_for_user("ann")
    finally:
        store.close()
        server.stop()

    assert refused_while_down is not None
    assert in_redis == [b"s"]
    assert refused_after is not None
    # Counted once: no longer in this process, now that Redis has it.
    assert open_for_ann == 1


@pytest.fixture
def slots_in_redis(own_redis, limits):
    """Sockets count their slots in the module's Redis, as with REDIS_URL."""
    limits(REDIS_URL=own_redis.url)
    _delete_keys(own_redis.url, f"{KEY_PREFIX}:*")
    forget_shared_slots()
    yield own_redis.url
    forget_shared_slots()
    _delete_keys(own_redis.url, f"{KEY_PREFIX}:*")


async def test_a_socket_is_refused_for_a_slot_another_process_holds(
    catalog, limits, slots_in_redis
):
    limits(WS_MAX_SOCKETS_PER_USER=1)
    other_process = RedisSocketSlots(slots_in_redis, 180)
    elsewhere = Slot(await _pk_of("u1"), None, "elsewhere")
    other_process.take(elsewhere, user_cap=1, address_cap=0)

    refused = await socket_as("u1")
    error, code = await refusal(refused)
    other_process.give_back(elsewhere)
    other_process.close()
    welcome = await socket_as("u1")

    assert (error["code"], code) == ("rate_limited", CLOSE_TOO_MANY)
    assert await request(welcome, {"type": "ping"}) == {"type": "pong"}
    assert socket_slots.open_for_user(await _pk_of("u1")) == 1
    await welcome.disconnect()


def _delete_keys(url, pattern):
    client = redis.Redis.from_url(url)
    keys = client.keys(pattern)
    if keys:
        client.delete(*keys)
    client.close()


def _shown(n):
    return SimpleNamespace(
        recommendation_id=f"00000000-0000-0000-0000-{n:012d}",
        model_version=None,
        arm=None,
        strategy="popular",
        item_ids=["1", "2"],
    )


def _pushes_counted():
    histogram = counters.histogram("push_latency_seconds")
    return histogram.count if histogram else 0


async def _texts_until_closed(communicator, timeout=5):
    messages = []
    while True:
        output = await communicator.receive_output(timeout)
        if output["type"] == "websocket.close":
            return {"messages": messages, "code": output.get("code")}
        messages.append(json.loads(output["text"]))


async def _pk_of(external_id):
    from channels.db import database_sync_to_async

    from events.models import EndUser

    return await database_sync_to_async(
        lambda: EndUser.objects.get(external_id=external_id).pk
    )()
