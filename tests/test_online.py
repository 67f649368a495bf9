"""Online evaluation: impressions, attributed clicks, and A/B experiments."""

import time

import pytest
from channels.db import database_sync_to_async

from events.models import EndUser
from recommendations.impressions import impressions
from recommendations.models import Experiment, ShownList
from recommendations.online import experiment_report, stats_by_version
from recommendations.serving import holder
from tests.conftest import receive, request, socket_as

pytestmark = pytest.mark.django_db(transaction=True)


def ids(message):
    return [item["id"] for item in message["items"]]


async def test_shown_lists_and_attributed_clicks_give_a_ctr(trained):
    socket = await socket_as("u1")
    shown = await request(socket, {"type": "recommend", "n": 10})

    ack = await request(
        socket,
        {
            "type": "event",
            "event": "click",
            "item": ids(shown)[0],
            "recommendation_id": shown["recommendation_id"],
        },
    )
    await receive(socket)
    await socket.disconnect()
    stats = await database_sync_to_async(stats_by_version)()

    assert ack["type"] == "ack"
    figures = stats[trained.version]
    # The pushed list after the click is an impression too: 2 lists, 20 items.
    assert figures["lists"] == 2
    assert figures["impressions"] == 20
    assert figures["clicks"] == 1
    assert figures["ctr"] == pytest.approx(0.05)
    assert figures["ctr_low"] < 0.05 < figures["ctr_high"]


async def test_a_recommendation_id_must_be_one_the_server_sent(catalog):
    socket = await socket_as("u1")

    reply = await request(
        socket,
        {"type": "event", "event": "click", "item": "1", "recommendation_id": "x"},
    )

    assert reply["code"] == "invalid_message"
    await socket.disconnect()


@pytest.fixture
def experiment(trained):
    return Experiment.objects.create(
        name="model-vs-popularity",
        control=None,
        treatment=trained,
        treatment_share=0.5,
        is_active=True,
    )


def test_each_user_lands_in_one_arm_and_is_served_by_it(experiment, trained):
    holder.refresh(force=True)
    arms = {}
    for user in EndUser.objects.all():
        first = holder.recommend(user, n=5)
        again = holder.recommend(user, n=5)
        assert (first.arm, first.experiment) == (again.arm, experiment.name)
        arms[user.external_id] = first

    treated = [r for r in arms.values() if r.arm == "treatment"]
    controls = [r for r in arms.values() if r.arm == "control"]
    assert treated and controls
    assert {r.model_version for r in treated} == {trained.version}
    assert {r.strategy for r in controls} == {"popular"}
    assert {r.strategy for r in treated} == {"personal"}


def test_the_report_compares_the_arms(experiment):
    holder.refresh(force=True)
    for user in EndUser.objects.all():
        recommendation = holder.recommend(user, n=10)
        impressions.record(user, recommendation, experiment.pk)
        if recommendation.arm == "treatment":
            from events.ingestion import store_event
            from events.validation import EventMessage

            event = EventMessage(
                "click",
                recommendation.item_ids[0],
                None,
                None,
                recommendation.recommendation_id,
            )
            store_event(user, event)
    impressions.flush()

    report = experiment_report(experiment)

    treatment, control = report["arms"]["treatment"], report["arms"]["control"]
    assert control["clicks"] == 0
    assert treatment["clicks"] == treatment["lists"] > 0
    assert treatment["ctr"] == pytest.approx(0.1)
    assert report["difference"] == pytest.approx(0.1)
    assert ShownList.objects.filter(experiment=experiment).count() == 30


def test_the_experiment_admin_page_shows_each_arms_ctr(experiment, admin_client):
    holder.refresh(force=True)
    for user in EndUser.objects.all():
        impressions.record(user, holder.recommend(user, n=10), experiment.pk)
    impressions.flush()

    page = admin_client.get(
        f"/admin/recommendations/experiment/{experiment.pk}/change/"
    )

    assert page.status_code == 200
    html = page.content.decode()
    assert "CTR" in html and "95% interval" in html
    assert "popularity" in html
    assert "not significant" in html


def test_the_model_version_admin_page_shows_what_was_shown(trained, admin_client):
    user = EndUser.objects.get(external_id="u1")
    impressions.record(user, holder.recommend(user, n=10))
    impressions.flush()

    page = admin_client.get(f"/admin/recommendations/modelversion/{trained.pk}/change/")

    assert page.status_code == 200
    assert "impressions" in page.content.decode()


def test_a_shown_list_is_written_within_a_second_even_if_none_follows(trained):
    user = EndUser.objects.get(external_id="u1")
    recommendation = holder.recommend(user, n=5)

    impressions.record(user, recommendation)
    written_at_once = ShownList.objects.count()
    deadline = time.monotonic() + 5
    while not ShownList.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.05)

    assert written_at_once == 0
    shown = ShownList.objects.get()
    assert str(shown.id) == recommendation.recommendation_id
    assert shown.items == recommendation.item_ids
