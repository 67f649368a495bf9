"""Two real server processes sharing Redis and one database.

Each process is a Daphne server started here; the sockets are real TCP
connections. Nothing is mocked: an event on one process must reach the
same user's socket on the other, a model trained in a third process
must be served by both, and a user's socket cap counts the sockets of
both.
"""

import asyncio
import json
import os
import time

import pytest
import redis

from recommendations.throttle import KEY_PREFIX
from tests.live_servers import (
    FIXTURE,
    connect,
    free_port,
    manage,
    next_of_type,
    start_daphne,
    stop,
)

# A database number of its own, so these tests share nothing with a
# development server on the same Redis.
REDIS_URL = os.environ.get("RTREC_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
SOCKETS_PER_USER = 2


def redis_reachable():
    try:
        return redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return False


pytestmark = pytest.mark.skipif(
    not redis_reachable(),
    reason=f"NO REDIS at {REDIS_URL}: the multi-process tests cannot run",
)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    env = {
        **os.environ,
        "RTREC_VAR_DIR": str(tmp_path_factory.mktemp("var")),
        "REDIS_URL": REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "rtrec_site.settings",
        "RTREC_WS_MAX_SOCKETS_PER_USER": str(SOCKETS_PER_USER),
    }
    delete_stale_slots()
    env.pop("DATABASE_URL", None)
    manage(env, "migrate", "--noinput")
    manage(env, "import_movielens", str(FIXTURE))
    manage(env, "train", "--factors", "4", "--epochs", "5")

    ports = [free_port(), free_port()]
    servers = [start_daphne(env, port) for port in ports]
    yield env, ports
    stop(servers)


def delete_stale_slots():
    # A fresh database numbers its users from 1 again: slots an earlier
    # run left behind would count against them until they expire.
    client = redis.Redis.from_url(REDIS_URL)
    stale = client.keys(f"{KEY_PREFIX}:*")
    if stale:
        client.delete(*stale)
    client.close()


async def both_connected(ports, user):
    first = await connect(ports[0], user)
    second = await connect(ports[1], user)
    # Both sockets have joined their groups once they answer a ping.
    for connection in (first, second):
        await connection.send(json.dumps({"type": "ping"}))
        await next_of_type(connection, "pong")
    return first, second


def test_an_event_on_one_process_reaches_the_users_socket_on_the_other(deployment):
    _, ports = deployment

    async def scenario():
        here, there = await both_connected(ports, "u2")
        event = {"type": "event", "event": "click", "item": "a3", "event_id": "mp-1"}
        await here.send(json.dumps(event))
        ack = await next_of_type(here, "ack")
        pushed_there = await next_of_type(there, "recommendations")
        await here.close()
        await there.close()
        return ack, pushed_there

    ack, pushed = asyncio.run(scenario())

    assert ack["event_id"] == "mp-1"
    assert pushed["strategy"] == "foldin"
    assert "a3" not in [item["id"] for item in pushed["items"]]


def test_a_new_model_is_served_by_every_process_without_a_restart(deployment):
    env, ports = deployment

    async def scenario():
        first, second = await both_connected(ports, "u3")
        await asyncio.to_thread(
            manage, env, "train", "--factors", "6", "--epochs", "5", "--seed", "9"
        )
        updates = [await next_of_type(c, "model_updated") for c in (first, second)]
        answers = []
        for connection in (first, second):
            await connection.send(json.dumps({"type": "recommend", "n": 3}))
            answers.append(await next_of_type(connection, "recommendations"))
            await connection.close()
        return updates, answers

    updates, answers = asyncio.run(scenario())

    assert updates[0]["model"] == updates[1]["model"]
    assert [answer["model"] for answer in answers] == [updates[0]["model"]] * 2


def test_the_socket_cap_of_a_user_holds_across_processes(deployment):
    _, ports = deployment

    async def scenario():
        # One socket on each process: the cap of two is reached.
        here, there = await both_connected(ports, "u4")
        third = await connect(ports[0], "u4")
        error = await next_of_type(third, "error")
        await asyncio.wait_for(third.wait_closed(), 10)

        await there.close()
        welcome = await accepted(ports[0], "u4")
        for connection in (here, welcome):
            await connection.close()
        return error, third.close_code

    error, close_code = asyncio.run(scenario())

    assert error["code"] == "rate_limited"
    assert f"{SOCKETS_PER_USER} open sockets" in error["message"]
    assert close_code == 4429


async def accepted(port, user, timeout=10):
    """A socket that answers a ping, once a freed slot has been given back."""
    deadline = time.monotonic() + timeout
    while True:
        connection = await connect(port, user)
        await connection.send(json.dumps({"type": "ping"}))
        answer = json.loads(await asyncio.wait_for(connection.recv(), timeout))
        if answer["type"] == "pong":
            return connection
        await connection.close()
        if time.monotonic() > deadline:
            raise AssertionError(f"the socket was still refused: {answer}")
        await asyncio.sleep(0.1)
