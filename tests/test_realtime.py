"""Every event changes what the user sees, before any retraining."""

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.test import Client

from events.models import EndUser, Item
from recommendations.serving import UserCache, holder
from recommendations.training import TrainingSettings, train_model
from tests.conftest import receive, request, socket_as

pytestmark = pytest.mark.django_db(transaction=True)


def ids(message):
    return [item["id"] for item in message["items"]]


async def send_event(socket, kind, item, **fields):
    ack = await request(
        socket, {"type": "event", "event": kind, "item": item, **fields}
    )
    assert ack["type"] == "ack"
    return await receive(socket)


@pytest.fixture
def implicit(catalog):
    return train_model(TrainingSettings(feedback="implicit", factors=8, epochs=15))


async def test_a_second_event_changes_the_list_in_the_same_round_trip(trained):
    socket = await socket_as("u1")

    first = await send_event(socket, "click", "2")
    clicked = ids(first)[0]
    second = await send_event(socket, "add_to_cart", clicked)

    assert first["strategy"] == second["strategy"] == "foldin"
    assert ids(second) != ids(first)
    assert {"2", clicked}.isdisjoint(ids(second))
    await socket.disconnect()


async def test_a_user_the_model_never_saw_is_folded_in_from_the_first_event(implicit):
    socket = await socket_as("brand-new")

    before = await request(socket, {"type": "recommend"})
    after = await send_event(socket, "like", "5")

    assert before["strategy"] in {"popular", "trending"}
    assert after["strategy"] == "foldin"
    assert "5" not in ids(after)
    assert ids(after) != ids(before)
    await socket.disconnect()


async def test_liking_an_item_lifts_its_neighbours(implicit):
    @database_sync_to_async
    def neighbours_of_5():
        return holder.similar("5", n=5).item_ids

    socket = await socket_as("fan")
    neighbours = await neighbours_of_5()
    cold = ids(await request(socket, {"type": "recommend", "n": 10}))

    warm = ids(await send_event(socket, "purchase", "5"))

    def overlap(picks):
        return len(set(picks) & set(neighbours))

    assert overlap(warm) > overlap(cold)
    await socket.disconnect()


async def test_a_disliked_item_is_never_shown_again(implicit):
    socket = await socket_as("u3")
    top = ids(await request(socket, {"type": "recommend", "n": 1}))[0]

    after = await send_event(socket, "dislike", top)
    again = await request(socket, {"type": "recommend", "n": 40})

    assert top not in ids(after)
    assert top not in ids(again)
    await socket.disconnect()


async def test_bought_and_inactive_items_stay_out(trained):
    socket = await socket_as("u4")
    first = ids(await request(socket, {"type": "recommend", "n": 3}))

    await send_event(socket, "purchase", first[0])
    await database_sync_to_async(Item.objects.filter(external_id=first[1]).update)(
        is_active=False
    )
    await database_sync_to_async(holder.refresh)(force=True)
    picks = ids(await request(socket, {"type": "recommend", "n": 40}))

    assert first[0] not in picks
    assert first[1] not in picks
    await socket.disconnect()


async def test_events_make_items_trend_for_cold_users(implicit):
    fans = [await socket_as(f"fan-{n}") for n in range(3)]
    for fan in fans:
        await send_event(fan, "purchase", "17")
    newcomer = await socket_as("newcomer")

    trending = await request(newcomer, {"type": "trending", "n": 3})
    picks = await request(newcomer, {"type": "recommend", "n": 3})

    assert ids(trending)[0] == "17"
    assert trending["strategy"] == "trending"
    assert picks["strategy"] == "trending"
    assert ids(picks)[0] == "17"
    for socket in [*fans, newcomer]:
        await socket.disconnect()


def test_a_restarted_process_rebuilds_the_user_from_the_database(implicit):
    user = EndUser.objects.for_external_id("u7")
    holder.recommend(user, n=5)
    from events.ingestion import store_event
    from events.validation import EventMessage

    store_event(user, EventMessage("click", "12", None, None))
    before = holder.recommend(user, n=10)

    holder.clear()
    after = holder.recommend(user, n=10)

    assert after.item_ids == before.item_ids
    assert after.strategy == "foldin"


def test_the_user_cache_is_bounded_and_forgets_the_least_recent():
    cache = UserCache(size=2)
    cache.put(1, "a")
    cache.put(2, "b")
    cache.get(1)

    cache.put(3, "c")

    assert len(cache) == 2
    assert cache.get(2) is None
    assert cache.get(1) == "a"


def test_a_new_version_invalidates_folded_users(trained, catalog):
    user = EndUser.objects.get(external_id="u2")
    from events.ingestion import store_event
    from events.validation import EventMessage

    store_event(user, EventMessage("click", "3", None, None))
    holder.recommend(user, n=5)
    newer = train_model(TrainingSettings(factors=6, epochs=5, seed=4))
    holder.ensure_version(newer.version)

    picks = holder.recommend(user, n=5)

    assert picks.model_version == newer.version
    assert holder.users.get(user.pk).model_version == newer.version


def test_a_new_item_added_in_the_admin_is_similar_at_once(trained):
    admin = User.objects.create_superuser("admin", "admin@example.com", "pw-12345")
    client = Client()
    client.force_login(admin)
    model_version = holder.similar("1", n=5).model_version
    original = Item.objects.get(external_id="1")

    response = client.post(
        "/admin/events/item/add/",
        {
            "external_id": "brand-new-item",
            "title": "Item brand new",
            "genres": original.genres,
            "year": original.year,
            "description": "",
            "is_active": "on",
        },
    )
    holder.refresh(force=True)
    similar = holder.similar("1", n=10)

    assert response.status_code == 302
    assert similar.model_version == model_version
    assert "brand-new-item" in similar.item_ids
    new_items = holder.similar("brand-new-item", n=5)
    assert new_items.strategy == "content"
    assert set(new_items.item_ids) & {
        i.external_id for i in Item.objects.filter(genres=original.genres)
    }
