"""The WebSocket API, driven through the real ASGI application."""

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from events.models import EndUser, Interaction
from recommendations.broadcast import announce_model
from recommendations.training import TrainingSettings, train_model
from rtrec_site.asgi import application
from tests.conftest import ORIGIN, open_socket, receive, request, socket_as

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def interactions_of(external_id):
    return list(
        Interaction.objects.filter(user__external_id=external_id).values_list(
            "item__external_id", "kind", "value", "event_id"
        )
    )


@database_sync_to_async
def seen_by(external_id):
    user = EndUser.objects.get(external_id=external_id)
    return set(user.interactions.values_list("item__external_id", flat=True))


async def test_ping_is_answered_with_pong_and_the_request_id(catalog):
    socket = await socket_as("u1")

    assert await request(socket, {"type": "ping", "request_id": "r1"}) == {
        "type": "pong",
        "request_id": "r1",
    }
    await socket.disconnect()


async def test_an_event_is_stored_acked_and_answered_with_fresh_picks(trained):
    socket = await socket_as("u1")

    ack = await request(
        socket, {"type": "event", "event": "click", "item": "7", "event_id": "e-1"}
    )
    pushed = await receive(socket)

    assert ack == {"type": "ack", "event_id": "e-1", "duplicate": False}
    assert ("7", "click", None, "e-1") in await interactions_of("u1")
    assert pushed["type"] == "recommendations"
    assert pushed["strategy"] == "foldin"
    assert pushed["model"] == trained.version
    assert len(pushed["items"]) == 10
    assert "7" not in {item["id"] for item in pushed["items"]}
    assert not {item["id"] for item in pushed["items"]} & await seen_by("u1")
    await socket.disconnect()


async def test_a_retried_event_is_acked_again_and_stored_once(catalog):
    socket = await socket_as("u1")
    event = {"type": "event", "event": "like", "item": "3", "event_id": "retry-1"}

    first = await request(socket, event)
    await receive(socket)
    second = await request(socket, event)
    await receive(socket)

    assert first["duplicate"] is False
    assert second == {"type": "ack", "event_id": "retry-1", "duplicate": True}
    likes = [row for row in await interactions_of("u1") if row[1] == "like"]
    assert likes == [("3", "like", None, "retry-1")]
    await socket.disconnect()


async def test_an_event_without_an_id_gets_one_from_the_server(catalog):
    socket = await socket_as("u2")

    ack = await request(
        socket, {"type": "event", "event": "rate", "item": "4", "value": 4.5}
    )

    assert ack["event_id"].startswith("srv-")
    rates = [row for row in await interactions_of("u2") if row[3] == ack["event_id"]]
    assert rates == [("4", "rate", 4.5, ack["event_id"])]
    await socket.disconnect()


async def test_every_socket_of_the_user_gets_the_push(trained):
    phone, laptop = await socket_as("u5"), await socket_as("u5")
    other = await socket_as("u6")

    await request(phone, {"type": "event", "event": "view", "item": "2"})
    on_phone = await receive(phone)
    on_laptop = await receive(laptop)

    assert on_phone["type"] == on_laptop["type"] == "recommendations"
    assert on_phone["items"] == on_laptop["items"]
    assert await other.receive_nothing(timeout=0.3)
    for socket in (phone, laptop, other):
        await socket.disconnect()


async def test_recommend_honours_n_exclude_and_genre(trained):
    socket = await socket_as("u1")

    first = await request(socket, {"type": "recommend", "n": 3, "request_id": 9})
    excluded = [item["id"] for item in first["items"]]
    second = await request(
        socket, {"type": "recommend", "n": 5, "exclude": excluded, "genre": "Drama"}
    )

    assert first["request_id"] == 9
    assert len(first["items"]) == 3
    assert len(second["items"]) == 5
    assert not {item["id"] for item in second["items"]} & set(excluded)
    assert first["recommendation_id"] != second["recommendation_id"]
    await socket.disconnect()


async def test_similar_returns_neighbours_of_the_item(trained):
    socket = await socket_as("u1")

    reply = await request(socket, {"type": "similar", "item": "5", "n": 4})

    assert reply["type"] == "similar"
    assert reply["item"] == "5"
    assert len(reply["items"]) == 4
    assert "5" not in {item["id"] for item in reply["items"]}
    await socket.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "invalid_json"),
        ("[1, 2]", "invalid_message"),
        ('{"type": "event", "event": "click"}', "invalid_message"),
        ('{"type": "event", "event": "stare", "item": "1"}', "invalid_message"),
        ('{"type": "event", "event": "rate", "item": "1"}', "invalid_message"),
        (
            '{"type": "event", "event": "rate", "item": "1", "value": 9}',
            "invalid_message",
        ),
        ('{"type": "recommend", "n": 0}', "invalid_message"),
        ('{"type": "recommend", "n": "ten"}', "invalid_message"),
        ('{"type": "recommend", "exclude": "1"}', "invalid_message"),
        ('{"type": "ping", "extra": 1}', "invalid_message"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "event", "event": "click", "item": "no-such"}', "unknown_item"),
        ('{"type": "similar", "item": "no-such"}', "unknown_item"),
        ('{"type": "event", "event": "click", "item": "1", "user": "u2"}', "forbidden"),
    ],
)
async def test_bad_input_gets_an_error_and_the_socket_stays_open(catalog, frame, code):
    socket = await socket_as("u1")
    before = await interactions_of("u1")

    reply = await request(socket, frame)

    assert reply["type"] == "error"
    assert reply["code"] == code
    assert len(reply["message"]) > 10
    assert await interactions_of("u1") == before
    assert await request(socket, {"type": "ping"}) == {"type": "pong"}
    await socket.disconnect()


async def test_binary_frames_are_refused(catalog):
    socket = await socket_as("u1")

    await socket.send_to(bytes_data=b'{"type": "ping"}')

    assert (await receive(socket))["code"] == "invalid_message"
    await socket.disconnect()


async def test_an_oversized_frame_is_refused(catalog, settings):
    socket = await socket_as("u1")
    limit = settings.RTREC["MAX_FRAME_BYTES"]

    reply = await request(socket, {"type": "ping", "pad": "x" * limit})

    assert reply["code"] == "too_large"
    assert await request(socket, {"type": "ping"}) == {"type": "pong"}
    await socket.disconnect()


async def test_a_flood_is_rate_limited(catalog, settings):
    settings.RTREC = {**settings.RTREC, "WS_RATE": 1, "WS_BURST": 3}
    socket = await socket_as("u1")

    replies = [await request(socket, {"type": "ping"}) for _ in range(5)]

    assert [r["type"] for r in replies[:3]] == ["pong"] * 3
    assert replies[3]["code"] == replies[4]["code"] == "rate_limited"
    await socket.disconnect()


async def test_an_event_id_of_another_user_is_forbidden(catalog):
    mine, theirs = await socket_as("u1"), await socket_as("u2")
    event = {"type": "event", "event": "click", "item": "1", "event_id": "shared"}
    await request(mine, event)

    reply = await request(theirs, event)

    assert reply["code"] == "forbidden"
    assert "shared" not in {row[3] for row in await interactions_of("u2")}
    await mine.disconnect()
    await theirs.disconnect()


async def refused(path, headers):
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    error = await receive(communicator)
    closed = await communicator.receive_output(timeout=5)
    return error, closed


async def test_a_forged_token_is_refused(catalog):
    error, closed = await refused("/ws/recommendations/?token=forged", [ORIGIN])

    assert error["code"] == "forbidden"
    assert closed == {"type": "websocket.close", "code": 4401}


async def test_an_expired_token_is_refused(catalog):
    from events.tokens import make_ws_token

    token = make_ws_token("u1", ttl=-5)
    error, closed = await refused(f"/ws/recommendations/?token={token}", [ORIGIN])

    assert "expired" in error["message"]
    assert closed["code"] == 4401


async def test_a_foreign_origin_is_refused_even_with_a_token(catalog):
    from events.tokens import make_ws_token

    path = f"/ws/recommendations/?token={make_ws_token('u1', 60)}"
    error, closed = await refused(path, [(b"origin", b"https://evil.example")])

    assert "origin" in error["message"]
    assert closed["code"] == 4403


async def test_no_token_and_no_session_is_refused(catalog):
    error, closed = await refused("/ws/recommendations/", [ORIGIN])

    assert closed["code"] == 4401


async def test_a_client_without_origin_needs_a_token(catalog):
    _, closed = await refused("/ws/recommendations/", [])

    assert closed["code"] == 4403


async def test_a_browser_session_acts_as_its_visitor(catalog):
    client = Client()
    await database_sync_to_async(client.get)("/")
    cookie = client.cookies["sessionid"].value
    headers = [ORIGIN, (b"cookie", f"sessionid={cookie}".encode())]

    socket = await open_socket(headers=headers)
    await request(socket, {"type": "event", "event": "click", "item": "9"})
    pushed = await receive(socket)

    visitor = await database_sync_to_async(
        lambda: EndUser.objects.get(external_id__startswith="visitor-")
    )()
    stored = await interactions_of(visitor.external_id)
    assert [(item, kind) for item, kind, _, _ in stored] == [("9", "click")]
    assert pushed["strategy"] == "content"
    assert "9" not in {item["id"] for item in pushed["items"]}
    await socket.disconnect()


async def test_open_sockets_hear_of_a_new_model_version(trained):
    socket = await socket_as("u1")

    version = await database_sync_to_async(train_model)(
        TrainingSettings(factors=4, epochs=5)
    )
    await database_sync_to_async(announce_model)(version.version)
    update = await receive(socket)
    picks = await request(socket, {"type": "recommend"})

    assert update == {"type": "model_updated", "model": version.version}
    assert picks["model"] == version.version
    await socket.disconnect()
