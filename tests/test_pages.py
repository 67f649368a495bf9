"""The demo pages, the dashboard's JSON, and the widget's REST fallback,
through Django's test client (the browser tests drive the JavaScript)."""

import re
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from events.models import EndUser, Interaction, Item
from events.tokens import make_ws_token, read_ws_token
from recommendations.impressions import impressions
from recommendations.metrics_counters import counters
from recommendations.models import ShownList
from recommendations.pages import DEMO_USER_SESSION_KEY, PAGE_SIZE
from recommendations.socket_auth import VISITOR_SESSION_KEY

pytestmark = pytest.mark.django_db

ALLOWED_ORIGIN = "http://localhost:8000"


@pytest.fixture(autouse=True)
def fresh_throttles():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def staff_client():
    staff = User.objects.create_user("operator", password="pw-12345", is_staff=True)
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def reader_client():
    reader = User.objects.create_user("reader", password="pw-12345")
    client = Client()
    client.force_login(reader)
    return client


def card_ids(response):
    return re.findall(r'<li class="card" data-item="([^"]+)"', response.text)


def similar_ids(response):
    row = response.text.split('id="similar"', 1)[1].split("</ol>", 1)[0]
    return re.findall(r'<li data-item="([^"]+)"', row)


def interaction(user, item, kind="click", **fields):
    return Interaction.objects.create(
        user=user, item=item, kind=kind, created_at=timezone.now(), **fields
    )


# The catalog


def test_catalog_shows_a_page_of_items_and_links_the_next(client, catalog):
    first = client.get("/")
    second = client.get("/?page=2")

    assert first.status_code == 200
    assert len(card_ids(first)) == PAGE_SIZE
    assert 'rel="next" href="?page=2"' in first.text
    assert len(card_ids(second)) == 40 - PAGE_SIZE
    assert not set(card_ids(first)) & set(card_ids(second))


def test_catalog_orders_the_most_interacted_first(client, catalog):
    items, users = catalog
    favourite = items[-1]
    for user in users[:20]:
        interaction(user, favourite)

    assert card_ids(client.get("/"))[0] == favourite.external_id


def test_catalog_search_keeps_its_filters_in_the_page_links(client, catalog):
    response = client.get("/?q=item+1&sort=title")

    found = card_ids(response)
    assert sorted(found, key=int) == ["1"] + [str(i) for i in range(10, 20)]
    assert "11 items matching “item 1”" in response.text


def test_catalog_filters_by_genre(client, catalog):
    response = client.get("/?genre=Horror")

    found = Item.objects.filter(external_id__in=card_ids(response))
    assert found.exists()
    assert all("Horror" in item.genre_list for item in found)
    assert '<option value="Horror" selected>' in response.text


def test_catalog_ignores_an_unknown_genre_and_order(client, catalog):
    response = client.get("/?genre=Nonsense&sort=nonsense&page=99")

    assert response.status_code == 200
    assert len(card_ids(response)) == 40 - PAGE_SIZE  # the last page


def test_catalog_hides_inactive_items(client, catalog):
    Item.objects.filter(external_id="1").update(is_active=False)

    response = client.get("/?q=item+1&sort=title")

    assert "1" not in card_ids(response)


def test_catalog_gives_an_anonymous_browser_a_visitor_id(client, catalog):
    response = client.get("/")

    visitor_id = client.session[VISITOR_SESSION_KEY]
    assert visitor_id.startswith("visitor-")
    assert EndUser.objects.filter(external_id=visitor_id).exists()
    assert visitor_id in response.text
    assert 'data-rtrec-widget id="for-you"' in response.text


def test_pages_load_the_widget_and_no_outside_script(client, catalog):
    response = client.get("/")

    sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', response.text)
    assert "/static/rtrec/widget.js" in sources
    assert all(source.startswith("/") for source in sources)


# The item page


def test_item_page_shows_details_and_similar_items(client, trained):
    Item.objects.filter(external_id="3").update(description="A tale of three.")

    response = client.get("/items/3/")

    assert response.status_code == 200
    assert "<h1>Item 3</h1>" in response.text
    assert "A tale of three." in response.text
    similar = similar_ids(response)
    assert len(similar) == 8
    assert "3" not in similar
    for kind in ("like", "dislike", "add_to_cart"):
        assert f'data-event="{kind}"' in response.text


def test_item_page_of_an_unknown_item_is_404(client, catalog):
    assert client.get("/items/no-such-item/").status_code == 404


def test_item_page_keeps_only_a_well_formed_recommendation_id(client, catalog):
    list_id = uuid.uuid4()

    kept = client.get(f"/items/3/?rec={list_id}")
    dropped = client.get("/items/3/?rec=not-a-uuid")

    assert f'data-recommendation-id="{list_id}"' in kept.text
    assert "data-recommendation-id" not in dropped.text


# The dashboard


def test_dashboard_sends_others_to_the_login_page(client, reader_client):
    for visitor in (client, reader_client):
        response = visitor.get("/dashboard/")
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")


def test_dashboard_renders_for_staff(staff_client):
    response = staff_client.get("/dashboard/")

    assert response.status_code == 200
    assert 'data-live-url="/dashboard/live/"' in response.text
    assert "/static/rtrec/dashboard.js" in response.text


@pytest.mark.parametrize("path", ["/dashboard/live/", "/dashboard/summary/"])
def test_dashboard_json_is_for_staff_only(client, reader_client, path):
    for visitor in (client, reader_client):
        response = visitor.get(path)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"


def test_dashboard_live_lists_new_events_newest_first(staff_client, catalog):
    items, users = catalog
    list_id = uuid.uuid4()
    first = interaction(users[0], items[0], "like")
    second = interaction(users[1], items[1], recommendation_id=list_id)

    body = staff_client.get("/dashboard/live/").json()

    assert [event["id"] for event in body["events"][:2]] == [second.pk, first.pk]
    assert body["events"][0] == {
        "id": second.pk,
        "at": second.created_at.isoformat(),
        "kind": "click",
        "value": None,
        "from_recommendations": True,
        "user": "u2",
        "item": items[1].external_id,
        "title": items[1].title,
    }
    assert body["last_id"] == second.pk
    assert (
        staff_client.get(f"/dashboard/live/?after={second.pk}").json()["events"] == []
    )


def test_dashboard_live_counts_events_per_second(staff_client, catalog):
    items, users = catalog
    # The catalog's ratings, and one more, happened minutes ago.
    interaction(users[0], items[6])
    Interaction.objects.update(created_at=timezone.now() - timedelta(minutes=5))
    for item in items[:5]:
        interaction(users[0], item)

    body = staff_client.get("/dashboard/live/").json()

    assert len(body["per_second"]) == 60
    assert sum(body["per_second"]) == 5
    assert body["events_per_second"] == pytest.approx(0.5)


def test_dashboard_live_shows_trending_items(staff_client, trained):
    from recommendations.serving import holder

    holder.note_event("7", "like", None)

    body = staff_client.get("/dashboard/live/").json()

    assert body["trending"][0]["id"] == "7"


def test_dashboard_summary_has_the_model_and_ctr_per_version(staff_client, trained):
    user = EndUser.objects.get(external_id="u1")
    shown = ShownList.objects.create(
        id=uuid.uuid4(),
        user=user,
        model_version=trained.version,
        strategy="personal",
        items=["1", "2", "3", "4"],
        n_items=4,
        created_at=timezone.now(),
    )
    interaction(user, Item.objects.get(external_id="2"), recommendation_id=shown.id)

    body = staff_client.get("/dashboard/summary/").json()

    assert body["model"]["version"] == trained.version
    assert "ndcg@10" in body["model"]["metrics"]
    assert all(isinstance(v, float | int) for v in body["model"]["metrics"].values())
    (version,) = body["versions"]
    assert version["version"] == trained.version
    assert version["is_active"] is True
    assert (version["impressions"], version["clicks"]) == (4, 1)
    assert version["ctr"] == pytest.approx(0.25)
    assert body["experiment"] is None
    assert body["totals"]["items"] == 40


def test_dashboard_summary_without_a_model(staff_client, catalog):
    body = staff_client.get("/dashboard/summary/").json()

    assert body["model"] is None
    assert body["versions"] == []


# The page that embeds the widget


def test_widget_demo_embeds_the_widget_with_a_token_for_its_user(client, catalog):
    response = client.get("/widget/demo/")

    demo_user = client.session[DEMO_USER_SESSION_KEY]
    token = re.search(r'data-token="([^"]+)"', response.text).group(1)
    assert read_ws_token(token) == demo_user
    assert '<script src="http://testserver/static/rtrec/widget.js"' in response.text
    assert 'data-server="http://testserver"' in response.text
    assert "data-transport" not in response.text
    assert 'data-transport="rest"' in client.get("/widget/demo/?transport=rest").text


# The widget's REST fallback


def test_widget_recommendations_answer_a_token_like_the_socket(client, trained):
    token = make_ws_token("u1", 60)

    response = client.get(f"/widget/recommendations/?token={token}&n=4")

    body = response.json()
    assert response.status_code == 200
    assert body["type"] == "recommendations"
    assert body["strategy"] == "personal"
    assert len(body["items"]) == 4
    impressions.flush()
    assert ShownList.objects.filter(id=body["recommendation_id"]).exists()


def test_widget_recommendations_filter_by_genre(client, trained):
    token = make_ws_token("u1", 60)

    body = client.get(f"/widget/recommendations/?token={token}&genre=Horror").json()

    genres = Item.objects.filter(external_id__in=[i["id"] for i in body["items"]])
    assert all("Horror" in item.genre_list for item in genres)


def test_widget_recommendations_use_the_visitor_session(client, catalog):
    client.get("/")

    response = client.get("/widget/recommendations/?n=3")

    assert response.status_code == 200
    assert len(response.json()["items"]) == 3


def test_widget_recommendations_refuse_a_bad_token_or_no_credentials(client, catalog):
    forged = client.get("/widget/recommendations/?token=forged")
    anonymous = client.get("/widget/recommendations/")
    bad_count = client.get(
        f"/widget/recommendations/?token={make_ws_token('u', 9)}&n=x"
    )

    assert forged.status_code == 401
    assert forged.json()["error"]["code"] == "authentication_failed"
    assert anonymous.status_code in (401, 403)
    assert bad_count.status_code == 400
    assert bad_count.json()["error"]["code"] == "invalid_message"


def test_widget_events_store_an_event_once(client, catalog):
    url = f"/widget/events/?token={make_ws_token('reader-7', 60)}"
    event = {"type": "event", "event": "click", "item": "5", "event_id": "w-1"}
    new_before, retried_before = _widget_events_counted()

    first = client.post(url, event, content_type="application/json")
    again = client.post(url, event, content_type="application/json")

    assert first.status_code == 201
    assert first.json() == {"type": "ack", "event_id": "w-1", "duplicate": False}
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    stored = Interaction.objects.get(event_id="w-1")
    assert (stored.user.external_id, stored.item.external_id) == ("reader-7", "5")
    assert _widget_events_counted() == (new_before + 1, retried_before + 1)


def _widget_events_counted():
    return tuple(
        counters.value("events_stored_total", via="widget", duplicate=duplicate)
        for duplicate in ("false", "true")
    )


def test_widget_events_need_a_token_and_a_valid_event(client, catalog):
    token = make_ws_token("reader-7", 60)
    event = {"type": "event", "event": "click", "item": "5"}

    no_token = client.post("/widget/events/", event, content_type="application/json")
    unknown = client.post(
        f"/widget/events/?token={token}",
        {**event, "item": "nope"},
        content_type="application/json",
    )
    as_other = client.post(
        f"/widget/events/?token={token}",
        {**event, "user": "196"},
        content_type="application/json",
    )

    assert no_token.status_code in (401, 403)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_item"
    assert as_other.status_code == 403
    assert not Interaction.objects.filter(user__external_id="reader-7").exists()


def test_widget_endpoints_allow_only_known_origins(client, catalog):
    url = f"/widget/recommendations/?token={make_ws_token('u1', 60)}"

    allowed = client.get(url, HTTP_ORIGIN=ALLOWED_ORIGIN)
    other = client.get(url, HTTP_ORIGIN="https://elsewhere.example")
    preflight = client.options(
        "/widget/events/",
        HTTP_ORIGIN=ALLOWED_ORIGIN,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
    )

    assert allowed["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "Access-Control-Allow-Origin" not in other
    assert preflight.status_code == 204
    assert "POST" in preflight["Access-Control-Allow-Methods"]
    assert preflight["Access-Control-Allow-Headers"] == "Content-Type"
