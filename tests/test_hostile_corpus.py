"""Hand-picked hostile messages, each with the error it must get.

The corpus is tests/fixtures/hostile_messages.json. Each message goes
to a live socket, which must answer with its code, store nothing and
still answer a ping; the event-shaped ones go to POST /api/events/ too.
"""

import json
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from events.models import EndUser, Interaction, Item
from tests.api_support import error_of, key_client
from tests.conftest import receive, request, socket_as

CORPUS = json.loads(
    (Path(__file__).parent / "fixtures/hostile_messages.json").read_text()
)["messages"]
FOR_REST = [entry for entry in CORPUS if "rest" in entry]


def frame_of(entry):
    """(text, bytes) of the frame an entry describes."""
    if "binary" in entry:
        return None, bytes.fromhex(entry["binary"])
    if "repeat" in entry:
        return "".join(text * times for text, times in entry["repeat"]), None
    if "raw" in entry:
        return entry["raw"], None
    return json.dumps(entry["message"]), None


def body_for_rest(entry, user):
    """The entry as a REST body acting for `user`."""
    if "message" in entry:
        return json.dumps({**entry["message"], "user": user})
    text, _ = frame_of(entry)
    return text.replace("{", json.dumps({"user": user})[:-1] + ", ", 1)


@pytest.fixture
def few_items(db):
    Item.objects.bulk_create(
        Item(external_id=str(n), title=f"Item {n}", genres="Comedy") for n in (1, 2, 3)
    )
    EndUser.objects.bulk_create(EndUser(external_id=u) for u in ("u1", "u2"))


@database_sync_to_async
def stored_count():
    return Interaction.objects.count()


def test_the_corpus_holds_at_least_fifty_named_messages():
    names = [entry["name"] for entry in CORPUS]

    assert len(names) >= 50
    assert len(set(names)) == len(names)
    assert all(entry["expect"] for entry in CORPUS)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("entry", CORPUS, ids=[e["name"] for e in CORPUS])
async def test_the_socket_answers_each_hostile_message_with_its_code(entry, few_items):
    socket = await socket_as("u1")
    frame = {"type": "websocket.receive"}
    frame["text"], frame["bytes"] = frame_of(entry)

    # send_input, not send_to: send_to will not send an empty text frame.
    await socket.send_input(frame)
    answer = await receive(socket)

    assert answer["type"] == "error"
    assert answer["code"] == entry["expect"], answer["message"]
    assert await request(socket, {"type": "ping"}) == {"type": "pong"}
    assert await stored_count() == 0
    await socket.disconnect()


@pytest.mark.django_db
@pytest.mark.parametrize("entry", FOR_REST, ids=[e["name"] for e in FOR_REST])
def test_the_rest_api_answers_each_hostile_event_with_its_code(entry, few_items):
    client = key_client()

    response = client.post(
        "/api/events/", body_for_rest(entry, "u1"), content_type="application/json"
    )

    expected = entry["rest"]
    error = error_of(response)
    assert response.status_code == expected["status"], error
    assert error["code"] == expected["code"]
    if "row" in expected:
        assert [row["code"] for row in error["rows"]] == [expected["row"]]
    assert Interaction.objects.count() == 0


@pytest.mark.django_db(transaction=True)
async def test_an_event_id_of_another_user_is_forbidden_and_not_acked(few_items):
    await database_sync_to_async(_click_stored_for)("u2", "theirs-1")
    socket = await socket_as("u1")

    answer = await request(
        socket, {"type": "event", "event": "click", "item": "2", "event_id": "theirs-1"}
    )

    assert answer["type"] == "error"
    assert answer["code"] == "forbidden"
    assert await stored_count() == 1
    await socket.disconnect()


def _click_stored_for(external_id, event_id):
    Interaction.objects.create(
        user=EndUser.objects.get(external_id=external_id),
        item=Item.objects.get(external_id="1"),
        kind="click",
        created_at=timezone.now(),
        event_id=event_id,
    )
