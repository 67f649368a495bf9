"""Faults under live sockets: nothing acknowledged is lost or doubled.

The first part runs in this process: the database locked, the model
file damaged, a handler that raises. The second starts real servers:
two Daphne processes on one SQLite file and a Redis server of this
module's own, which it stops and restarts; `train` killed half-way;
the same event_id at both processes at once; a peer that stops
answering Daphne's pings. The last starts one Daphne on a throwaway
PostgreSQL database and cuts its connections.
"""

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from contextlib import contextmanager

import numpy as np
import psycopg
import pytest
import websockets
from channels.db import database_sync_to_async
from django.db import connection as django_connection
from django.test import Client

from events.models import Interaction
from events.tokens import make_ws_token
from recommendations.engine.artifact import load_artifact
from recommendations.serving import holder
from tests.conftest import receive, request, socket_as
from tests.live_servers import (
    FIXTURE,
    ROOT,
    OwnRedis,
    connect,
    free_port,
    manage,
    next_of_type,
    start_daphne,
    start_uvicorn,
    stop,
)

CLOSE_TOO_MANY = 4429


# In this process ------------------------------------------------------


@contextmanager
def table_locked(table):
    """Another connection holds a write lock on `table` until the block ends.

    The test database is SQLite's shared in-memory cache, where a
    locked table fails a statement at once instead of waiting.
    """
    name = django_connection.settings_dict["NAME"]
    if django_connection.vendor != "sqlite" or "mode=memory" not in str(name):
        pytest.skip("needs the shared in-memory SQLite test database")

    holder_of_lock = sqlite3.connect(name, uri=True, isolation_level=None)
    holder_of_lock.execute("BEGIN IMMEDIATE")
    holder_of_lock.execute(f"DELETE FROM {table} WHERE 0")
    try:
        yield
    finally:
        holder_of_lock.execute("ROLLBACK")
        holder_of_lock.close()


@database_sync_to_async
def stored_with_id(event_id):
    return Interaction.objects.filter(event_id=event_id).count()


@pytest.mark.django_db(transaction=True)
async def test_a_locked_database_is_unavailable_and_the_retry_stores_once(catalog):
    socket = await socket_as("u1")
    event = {"type": "event", "event": "click", "item": "5", "event_id": "lk-1"}

    with table_locked("events_interaction"):
        refused = await request(socket, {**event, "request_id": "first"})
        pong = await request(socket, {"type": "ping"})
    retried = await request(socket, {**event, "request_id": "retry"})

    assert refused["type"] == "error"
    assert refused["code"] == "unavailable"
    assert refused["request_id"] == "first"
    assert pong == {"type": "pong"}
    assert retried == {
        "type": "ack",
        "event_id": "lk-1",
        "duplicate": False,
        "request_id": "retry",
    }
    assert await stored_with_id("lk-1") == 1
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_socket_opened_while_the_database_is_locked_is_told_to_retry(
    catalog,
):
    with table_locked("events_enduser"):
        socket = await socket_as("someone-new")
        error = await receive(socket)
        closed = await socket.receive_output(5)

    assert error["code"] == "unavailable"
    assert closed == {"type": "websocket.close", "code": 1013}


@pytest.mark.django_db(transaction=True)
async def test_a_failing_handler_is_logged_with_the_request_id_and_survived(
    catalog, monkeypatch, caplog
):
    def broken(item_id, n):
        raise RuntimeError("the similar-items index is broken")

    monkeypatch.setattr(holder, "similar", broken)
    socket = await socket_as("u1")

    with caplog.at_level(logging.ERROR, logger="recommendations.consumers"):
        answer = await request(
            socket, {"type": "similar", "item": "5", "request_id": "sim-9"}
        )

    assert answer["code"] == "server_error"
    assert answer["request_id"] == "sim-9"
    [record] = caplog.records
    assert "request sim-9" in record.getMessage()
    assert record.exc_info[0] is RuntimeError
    assert await request(socket, {"type": "ping"}) == {"type": "pong"}
    await socket.disconnect()


def damage(path, how):
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "missing":
        path.unlink()
    else:
        np.savez(path.open("wb"), format_version=np.int64(99))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "how, said",
    [
        ("truncated", "unreadable"),
        ("missing", "does not exist"),
        ("incompatible", "has format 99"),
    ],
)
async def test_a_damaged_model_file_serves_popularity_and_health_says_why(
    trained, model_dir, how, said
):
    damage(model_dir / f"{trained.version}.npz", how)
    holder.clear()

    health = await database_sync_to_async(lambda: Client().get("/healthz").json())()
    socket = await socket_as("a-visitor-with-no-events")
    answer = await request(socket, {"type": "recommend", "n": 5})

    assert health["ok"] is True
    assert health["model"] is None
    assert said in health["model_error"]
    assert answer["strategy"] == "popular"
    assert len(answer["items"]) == 5
    await socket.disconnect()


SAVE_AND_HANG = """
import os, sys, time
import numpy as np
from recommendations.engine import artifact

def stall(fd):
    print("written", flush=True)
    time.sleep(60)

os.fsync = stall
n_users, n_items, k = 200_000, 1000, 16
artifact.save_artifact(
    artifact.ModelArtifact(
        user_ids=np.arange(n_users).astype(str),
        item_ids=np.arange(n_items).astype(str),
        user_factors=np.ones((n_users, k)),
        item_factors=np.ones((n_items, k)),
        user_bias=np.zeros(n_users),
        item_bias=np.zeros(n_items),
        global_mean=3.0,
        item_popularity=np.ones(n_items),
    ),
    sys.argv[1],
)
"""


def test_a_model_write_killed_half_way_leaves_nothing_under_the_name(tmp_path):
    target = tmp_path / "v-killed.npz"
    # The child stalls after writing, before the rename, as a slow disk
    # would; the kill lands exactly there.
    writer = subprocess.Popen(
        [sys.executable, "-c", SAVE_AND_HANG, str(target)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout.readline().strip() == "written"

    writer.send_signal(signal.SIGKILL)
    writer.wait(10)

    assert not target.exists()
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1
    assert leftovers[0].startswith(".v-killed.npz.")
    assert leftovers[0].endswith(".tmp")


# Real servers -----------------------------------------------------------


class Cluster:
    def __init__(self, env, ports, redis, var_dir):
        self.env, self.ports, self.redis = env, ports, redis
        self.database = var_dir / "rtrec.sqlite3"
        self.model_dir = var_dir / "models"

    def query(self, sql, *params):
        with sqlite3.connect(self.database, timeout=20) as db:
            return db.execute(sql, params).fetchall()

    def stored_counts(self, event_ids):
        marks = ",".join("?" * len(event_ids))
        rows = self.query(
            "SELECT event_id, count(*) FROM events_interaction "
            f"WHERE event_id IN ({marks}) GROUP BY event_id",
            *event_ids,
        )
        return dict(rows)

    def active_version(self):
        rows = self.query(
            "SELECT version FROM recommendations_modelversion WHERE is_active"
        )
        return rows[0][0] if rows else None

    def health(self, port):
        url = f"http://127.0.0.1:{port}/healthz"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: .ci/run installs it")

    var_dir = tmp_path_factory.mktemp("faults-var")
    redis = OwnRedis(tmp_path_factory.mktemp("faults-redis"))
    redis.start()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "rtrec_site.settings",
        "RTREC_VAR_DIR": str(var_dir),
        "REDIS_URL": redis.url,
        "RTREC_WS_GROUP_REFRESH_SECONDS": "1",
        "RTREC_WS_MAX_SOCKETS_PER_USER": "3",
    }
    env.pop("DATABASE_URL", None)
    manage(env, "migrate", "--noinput")
    manage(env, "import_movielens", str(FIXTURE))
    manage(env, "train", "--factors", "4", "--epochs", "5")

    ports = [free_port(), free_port()]
    servers = [start_daphne(env, port) for port in ports]
    yield Cluster(env, ports, redis, var_dir)
    stop(servers)
    redis.stop()


async def answer_to(connection, message, timeout=10):
    """Send a message and return the first answer carrying its request_id."""
    request_id = message.setdefault("request_id", uuid.uuid4().hex[:8])
    await connection.send(json.dumps(message))
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        answer = json.loads(await asyncio.wait_for(connection.recv(), left))
        if answer.get("request_id") == request_id:
            return answer


async def pinged(connection):
    return await answer_to(connection, {"type": "ping"})


def click(event_id, item="a2"):
    return {"type": "event", "event": "click", "item": item, "event_id": event_id}


async def acked(connection, event_id):
    answer = await answer_to(connection, click(event_id))
    assert answer["type"] == "ack", answer
    assert answer["event_id"] == event_id
    return answer


def test_redis_restarted_under_live_sockets_loses_no_event_and_pushes_recover(
    cluster,
):
    async def scenario():
        acks = []
        here = await connect(cluster.ports[0], "u4")
        there = await connect(cluster.ports[1], "u4")
        for connection in (here, there):
            await pinged(connection)

        cluster.redis.stop()
        # Each process keeps acking, storing and pushing to its own socket.
        for n, connection in enumerate((here, there, here)):
            acks.append(await acked(connection, f"rd-down-{n}"))
            await next_of_type(connection, "recommendations")
        pongs = [await pinged(connection) for connection in (here, there)]

        cluster.redis.start()
        pushed_across = await event_until_pushed(here, there, acks)

        await here.close()
        await there.close()
        return acks, pongs, pushed_across

    acks, pongs, pushed_across = asyncio.run(scenario())

    assert [p["type"] for p in pongs] == ["pong", "pong"]
    assert pushed_across["type"] == "recommendations"
    event_ids = [ack["event_id"] for ack in acks]
    assert not any(ack["duplicate"] for ack in acks)
    assert cluster.stored_counts(event_ids) == dict.fromkeys(event_ids, 1)


async def event_until_pushed(here, there, acks, timeout=20):
    """Send events on one socket until the other socket gets a push."""
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        n += 1
        acks.append(await acked(here, f"rd-back-{n}"))
        try:
            return await next_of_type(there, "recommendations", timeout=1.5)
        except TimeoutError:
            continue
    raise AssertionError("no push crossed the processes after Redis came back")


def test_the_same_event_id_at_both_processes_at_once_is_stored_once(cluster):
    async def scenario():
        first = await connect(cluster.ports[0], "u5")
        second = await connect(cluster.ports[1], "u5")
        for connection in (first, second):
            await pinged(connection)

        answers = await asyncio.gather(
            *(
                answer_to(connection, click("twice-1", item="a4"))
                for connection in (first, second)
            )
        )
        await first.close()
        await second.close()
        return answers

    answers = asyncio.run(scenario())

    assert [a["type"] for a in answers] == ["ack", "ack"]
    assert sorted(a["duplicate"] for a in answers) == [False, True]
    assert cluster.stored_counts(["twice-1"]) == {"twice-1": 1}


def test_a_killed_train_leaves_the_previous_version_serving(cluster):
    before = cluster.active_version()
    models_before = set(cluster.model_dir.iterdir())
    training = subprocess.Popen(
        [sys.executable, "manage.py", "train", "--feedback", "explicit"]
        + ["--factors", "4", "--epochs", "50000000"],
        cwd=ROOT,
        env=cluster.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(4)
    assert training.poll() is None, "train finished before it could be killed"

    training.send_signal(signal.SIGKILL)
    training.wait(10)

    assert cluster.active_version() == before
    assert set(cluster.model_dir.iterdir()) <= models_before | _temporary(cluster)
    for path in cluster.model_dir.glob("*.npz"):
        load_artifact(path)
    for port in cluster.ports:
        health = cluster.health(port)
        assert (health["model"], health["model_error"]) == (before, None)


def _temporary(cluster):
    return {p for p in cluster.model_dir.iterdir() if p.name.endswith(".tmp")}


@pytest.fixture
def uvicorn_port(cluster):
    """A uvicorn process on the cluster's database, pinging every second."""
    port = free_port()
    server = start_uvicorn(cluster.env, port)
    yield port
    stop([server])


@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
def test_a_peer_that_stops_answering_pings_is_dropped_and_frees_its_place(
    cluster, request, server
):
    if server == "daphne":
        port = cluster.ports[0]
    else:
        port = request.getfixturevalue("uvicorn_port")
    user = f"u2-{server}"
    silent = [half_open_socket(port, user) for _ in range(3)]

    async def refused_then_accepted():
        refused = await connect(port, user)
        error = json.loads(await refused.recv())
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await refused.recv()
        # The server drops the silent peers after a missed ping: one
        # interval and one timeout, two or three seconds here.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            pong = await ping_on_a_new_socket(port, user)
            if pong is not None:
                return error, closed.value.rcvd.code, pong
        raise AssertionError("the silent sockets were never dropped")

    try:
        error, code, pong = asyncio.run(refused_then_accepted())
    finally:
        for raw in silent:
            raw.close()

    assert (error["code"], code) == ("rate_limited", CLOSE_TOO_MANY)
    assert pong["type"] == "pong"


async def ping_on_a_new_socket(port, user):
    """The pong on a new socket, or None if the server closed it."""
    connection = await connect(port, user)
    try:
        return await answer_to(connection, {"type": "ping"}, timeout=5)
    except websockets.ConnectionClosed:
        return None
    finally:
        await connection.close()


def half_open_socket(port, user):
    """A client that completes the handshake, then never reads or answers."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    token = make_ws_token(user, 600)
    raw.sendall(
        (
            f"GET /ws/recommendations/?token={token} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    assert raw.recv(4096).startswith(b"HTTP/1.1 101")
    return raw


# PostgreSQL ---------------------------------------------------------------

POSTGRES_URL = os.environ.get(
    "RTREC_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"
)


def postgres_admin():
    try:
        return psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=2)
    except psycopg.OperationalError as exc:
        pytest.skip(f"NO PostgreSQL at {POSTGRES_URL} ({exc}): test not run")


@pytest.fixture(scope="module")
def postgres_server(tmp_path_factory):
    admin = postgres_admin()
    name = f"rtrec_faults_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_URL.rsplit("/", 1)[0]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "rtrec_site.settings",
        "RTREC_VAR_DIR": str(tmp_path_factory.mktemp("faults-pg")),
        "DATABASE_URL": f"{base}/{name}",
    }
    env.pop("REDIS_URL", None)
    server = None
    try:
        manage(env, "migrate", "--noinput")
        manage(env, "import_movielens", str(FIXTURE))
        port = free_port()
        server = start_daphne(env, port)
        yield admin, name, port
    finally:
        if server is not None:
            stop([server])
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def cut_connections(admin, name, allowed):
    admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {allowed}')
    admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid()",
        (name,),
    )


def test_cut_postgres_connections_are_unavailable_and_the_retry_stores_once(
    postgres_server,
):
    admin, name, port = postgres_server

    async def scenario():
        connection = await connect(port, "u3")
        await answer_to(connection, click("pg-warm-up"))
        cut_connections(admin, name, "false")
        refused = await answer_to(connection, click("pg-1"))
        pong = await pinged(connection)
        cut_connections(admin, name, "true")
        retried = await answer_to(connection, click("pg-1"))
        await connection.close()
        return refused, pong, retried

    refused, pong, retried = asyncio.run(scenario())

    assert (refused["type"], refused["code"]) == ("error", "unavailable")
    assert pong["type"] == "pong"
    assert (retried["type"], retried["duplicate"]) == ("ack", False)
    base = POSTGRES_URL.rsplit("/", 1)[0]
    with psycopg.connect(f"{base}/{name}") as db:
        [(count,)] = db.execute(
            "SELECT count(*) FROM events_interaction WHERE event_id = 'pg-1'"
        ).fetchall()
    assert count == 1
