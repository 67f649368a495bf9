"""A socket shows a kept list again only while nothing behind it changed."""

import asyncio
import time

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from events.models import EndUser, Interaction, Item
from recommendations.answers import MAX_KEPT, AnswerCache
from recommendations.broadcast import announce_catalog
from recommendations.impressions import impressions
from recommendations.models import ShownList
from recommendations.serving import holder
from tests.api_support import key_client
from tests.conftest import receive, request, socket_as

pytestmark = pytest.mark.django_db(transaction=True)


def ids(message):
    return [item["id"] for item in message["items"]]


@pytest.fixture
def served(trained):
    """A process already serving the model, as it is after its first request."""
    holder.refresh(force=True)
    return trained


@database_sync_to_async
def store_behind_the_servers_back(external_id, item_id):
    # Written straight to the table: no event, so no push tells the socket.
    Interaction.objects.create(
        user=EndUser.objects.get(external_id=external_id),
        item=Item.objects.get(external_id=item_id),
        kind="purchase",
        created_at=timezone.now(),
    )


async def test_a_repeated_request_shows_the_same_list_as_a_new_one(served):
    socket = await socket_as("u1")

    first = await request(socket, {"type": "recommend", "n": 5})
    second = await request(socket, {"type": "recommend", "n": 5})
    await database_sync_to_async(impressions.flush)()

    assert ids(second) == ids(first)
    assert second["recommendation_id"] != first["recommendation_id"]
    shown = await database_sync_to_async(dict)(
        ShownList.objects.values_list("id", "items")
    )
    assert {str(pk): items for pk, items in shown.items()} == {
        first["recommendation_id"]: ids(first),
        second["recommendation_id"]: ids(second),
    }
    await socket.disconnect()


async def test_a_different_request_is_not_answered_with_a_kept_list(served):
    socket = await socket_as("u1")

    five = await request(socket, {"type": "recommend", "n": 5})
    without_top = await request(
        socket, {"type": "recommend", "n": 5, "exclude": [ids(five)[0]]}
    )

    assert ids(five)[0] not in ids(without_top)
    await socket.disconnect()


async def test_an_event_sent_over_rest_makes_the_socket_rebuild(served):
    socket = await socket_as("u2")
    before = ids(await request(socket, {"type": "recommend", "n": 5}))

    client = await database_sync_to_async(key_client)()
    event = {"user": "u2", "event": "purchase", "item": before[0]}
    response = await database_sync_to_async(client.post)(
        "/api/events/", event, format="json"
    )
    pushed = await receive(socket)
    after = ids(await request(socket, {"type": "recommend", "n": 5}))

    assert response.status_code == 201
    assert pushed["type"] == "recommendations"
    assert before[0] not in after
    await socket.disconnect()


async def test_an_item_deactivated_elsewhere_leaves_a_kept_list(served):
    socket = await socket_as("u3")
    before = ids(await request(socket, {"type": "recommend", "n": 5}))

    deactivate = Item.objects.filter(external_id=before[0]).update
    await database_sync_to_async(deactivate)(is_active=False)
    await database_sync_to_async(holder.refresh)(force=True)
    after = ids(await request(socket, {"type": "recommend", "n": 5}))

    assert before[0] not in after
    await socket.disconnect()


async def test_a_catalog_change_announced_by_another_process_drops_kept_lists(
    served,
):
    socket = await socket_as("u5")
    before = ids(await request(socket, {"type": "recommend", "n": 5}))

    # What another process does: change the table, then announce it.
    deactivate = Item.objects.filter(external_id=before[0]).update
    await database_sync_to_async(deactivate)(is_active=False)
    await database_sync_to_async(announce_catalog)()
    await asyncio.sleep(0.2)
    after = ids(await request(socket, {"type": "recommend", "n": 5}))

    assert before[0] not in after
    await socket.disconnect()


async def test_a_list_is_kept_only_as_long_as_the_setting_says(served, settings):
    kept_socket = await socket_as("u4")
    kept = ids(await request(kept_socket, {"type": "recommend", "n": 5}))
    settings.RTREC = {**settings.RTREC, "ANSWER_REUSE_SECONDS": 0}
    fresh_socket = await socket_as("u4")
    await request(fresh_socket, {"type": "recommend", "n": 5})

    await store_behind_the_servers_back("u4", kept[0])
    again = ids(await request(kept_socket, {"type": "recommend", "n": 5}))
    fresh = ids(await request(fresh_socket, {"type": "recommend", "n": 5}))

    assert again == kept
    assert kept[0] not in fresh
    await kept_socket.disconnect()
    await fresh_socket.disconnect()


def test_a_kept_answer_expires():
    answers = AnswerCache(seconds=0.05)
    served_by = (object(), object(), None)
    answers.keep("key", {"items": []}, None, served_by)

    assert answers.get("key", served_by) is not None
    time.sleep(0.06)
    assert answers.get("key", served_by) is None


def test_a_new_model_or_catalog_drops_kept_answers():
    answers = AnswerCache(seconds=60)
    catalog, model = object(), object()
    answers.keep("key", {"items": []}, None, (catalog, model, None))

    assert answers.get("key", (catalog, object(), None)) is None
    assert answers.get("key", (catalog, model, None)) is None


def test_nothing_is_kept_when_reuse_is_off_and_at_most_a_few_otherwise():
    served_by = (object(), object(), None)
    off = AnswerCache(seconds=0)
    off.keep("key", {"items": []}, None, served_by)
    on = AnswerCache(seconds=60)
    for n in range(MAX_KEPT + 5):
        on.keep(n, {"items": []}, None, served_by)

    assert off.get("key", served_by) is None
    assert len(on) == MAX_KEPT
    assert on.get(0, served_by) is None
    assert on.get(MAX_KEPT + 4, served_by) is not None
