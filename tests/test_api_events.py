"""Events over REST: one or a batch, all or nothing, each stored once."""

import pytest
from channels.db import database_sync_to_async
from rest_framework.test import APIClient

from events.models import EndUser, Interaction
from recommendations.api.ingestion import MAX_BATCH
from recommendations.trending_store import trending_backend
from tests.api_support import account_client, error_of, key_client
from tests.conftest import receive, socket_as

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(catalog):
    return key_client()


def post(client, body):
    return client.post("/api/events/", body, format="json")


def click(user="u1", item="1", **fields):
    return {"user": user, "event": "click", "item": item, **fields}


def stored_ids():
    return set(
        Interaction.objects.exclude(event_id=None).values_list("event_id", flat=True)
    )


def test_one_event_is_stored_and_acknowledged_like_the_socket(client):
    response = post(client, click(event_id="c-1"))

    assert response.status_code == 201
    assert response.json() == {"type": "ack", "event_id": "c-1", "duplicate": False}
    interaction = Interaction.objects.get(event_id="c-1")
    assert (interaction.user.external_id, interaction.item.external_id) == ("u1", "1")
    assert interaction.kind == "click"


def test_an_event_without_an_id_gets_one_from_the_server(client):
    response = post(client, {"user": "u1", "event": "rate", "item": "2", "value": 4})

    event_id = response.json()["event_id"]
    assert event_id.startswith("srv-")
    assert Interaction.objects.get(event_id=event_id).value == 4.0


def test_a_repeated_event_id_is_acknowledged_and_stored_once(client):
    first = post(client, click(event_id="again"))
    second = post(client, click(event_id="again"))

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json() == {"type": "ack", "event_id": "again", "duplicate": True}
    assert Interaction.objects.filter(event_id="again").count() == 1


def test_a_batch_is_stored_and_acknowledged_in_order(client):
    batch = [click(user=f"u{n}", item=str(n), event_id=f"b-{n}") for n in range(1, 6)]
    batch.append(click(event_id="b-1"))

    response = post(client, batch)

    assert response.status_code == 201
    acks = response.json()
    assert [ack["event_id"] for ack in acks] == [f"b-{n}" for n in range(1, 6)] + [
        "b-1"
    ]
    assert [ack["duplicate"] for ack in acks] == [False] * 5 + [True]
    assert {f"b-{n}" for n in range(1, 6)} <= stored_ids()


def test_a_batch_of_only_duplicates_answers_200(client):
    batch = [click(event_id="d-1"), click(event_id="d-2")]
    post(client, batch)

    response = post(client, batch)

    assert response.status_code == 200
    assert all(ack["duplicate"] for ack in response.json())


def test_a_batch_with_one_bad_row_stores_nothing_and_names_the_row(client):
    before = Interaction.objects.count()
    batch = [click(event_id=f"ok-{n}") for n in range(5)]
    batch[3] = {"user": "u1", "event": "rate", "item": "1", "value": 9}

    response = post(client, batch)

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_events"
    assert error["rows"] == [
        {
            "index": 3,
            "code": "invalid_message",
            "field": "value",
            "message": "'value' must be between 1 and 5",
        }
    ]
    assert Interaction.objects.count() == before


def test_every_bad_row_is_named_with_its_field(client):
    batch = [
        click(),
        {"event": "click", "item": "1"},
        click(item="no-such-item"),
        click(event="shout"),
        "not an object",
        click(colour="red"),
        click(user=""),
    ]

    response = post(client, batch)

    rows = error_of(response)["rows"]
    assert [(row["index"], row["code"], row.get("field")) for row in rows] == [
        (1, "invalid_message", "user"),
        (2, "unknown_item", "item"),
        (3, "invalid_message", "event"),
        (4, "invalid_message", None),
        (5, "invalid_message", "colour"),
        (6, "invalid_message", "user"),
    ]
    assert not EndUser.objects.filter(external_id="").exists()


def test_a_new_user_in_a_bad_batch_is_not_created(client):
    response = post(client, [click(user="brand-new"), click(item="nope")])

    assert response.status_code == 400
    assert not EndUser.objects.filter(external_id="brand-new").exists()


def test_a_new_user_in_a_good_batch_is_created(client):
    response = post(
        client, [click(user="brand-new"), click(user="brand-new", item="2")]
    )

    assert response.status_code == 201
    user = EndUser.objects.get(external_id="brand-new")
    assert user.interactions.count() == 2


def test_another_users_event_id_is_refused(client):
    post(client, click(user="u1", event_id="mine"))

    response = post(client, [click(user="u2", event_id="mine")])

    assert response.status_code == 400
    assert error_of(response)["rows"][0]["code"] == "forbidden"
    assert Interaction.objects.get(event_id="mine").user.external_id == "u1"


def test_an_event_id_repeated_by_two_users_in_one_batch_is_refused(client):
    response = post(client, [click(event_id="x"), click(user="u2", event_id="x")])

    assert response.status_code == 400
    assert error_of(response)["rows"][0]["index"] == 1
    assert "x" not in stored_ids()


def test_a_batch_holds_one_to_a_thousand_events(client):
    too_many = post(client, [click()] * (MAX_BATCH + 1))
    empty = post(client, [])
    scalar = post(client, "click")

    assert too_many.status_code == 400
    assert error_of(too_many)["code"] == "too_large"
    assert empty.status_code == 400
    assert scalar.status_code == 400


def test_a_full_batch_takes_a_handful_of_queries(client, django_assert_max_num_queries):
    batch = [
        click(user=f"bulk-{n % 50}", item=str(n % 40 + 1), event_id=f"q-{n}")
        for n in range(MAX_BATCH)
    ]
    client.get("/api/items/")

    # The key; items and users (SQLite's parameter cap splits a list of
    # 1,000 in two); new users and their ids; the inserts, which SQLite
    # splits in seven; savepoints. PostgreSQL takes one insert.
    with django_assert_max_num_queries(18):
        response = post(client, batch)

    assert response.status_code == 201
    assert Interaction.objects.filter(event_id__startswith="q-").count() == MAX_BATCH


def test_rest_events_count_towards_trending(client):
    post(client, [click(item="7", event_id=f"t-{n}") for n in range(3)])

    assert dict(trending_backend().top(5))["7"] > 0


def test_events_need_credentials(catalog):
    response = APIClient().post("/api/events/", click(), format="json")

    assert response.status_code == 401


def test_an_account_sends_events_as_itself(catalog):
    client = account_client()

    own = post(client, {"event": "like", "item": "3", "event_id": "acc-1"})
    other = post(client, click(user="u1"))

    assert own.status_code == 201
    stored = Interaction.objects.get(event_id="acc-1")
    assert stored.user.account == client.account
    assert other.status_code == 400
    assert error_of(other)["rows"][0]["code"] == "forbidden"


def test_a_key_must_name_the_user(client):
    response = post(client, {"event": "click", "item": "1"})

    assert error_of(response)["rows"][0]["field"] == "user"


@pytest.mark.django_db(transaction=True)
async def test_an_event_posted_over_rest_pushes_fresh_picks_to_open_sockets(
    trained,
):
    client = await database_sync_to_async(key_client)()
    socket = await socket_as("u5")

    response = await database_sync_to_async(post)(client, click(user="u5", item="8"))
    pushed = await receive(socket)

    assert response.status_code == 201
    assert pushed["type"] == "recommendations"
    assert pushed["strategy"] == "foldin"
    assert "8" not in [item["id"] for item in pushed["items"]]
    await socket.disconnect()
