"""Recommendations and WebSocket tokens over REST."""

import pytest
from rest_framework.test import APIClient

from events.models import EndUser, Item
from events.tokens import read_ws_token
from tests.api_support import account_client, error_of, key_client

pytestmark = pytest.mark.django_db


def item_ids(body):
    return [item["id"] for item in body["items"]]


def test_recommendations_have_the_socket_payload(trained):
    response = key_client().get("/api/recommendations/?user=u1&n=5")

    assert response.status_code == 200
    body = response.json()
    assert body["type"] == "recommendations"
    assert body["model"] == trained.version
    assert body["strategy"] == "personal"
    assert len(body["items"]) == 5
    assert set(body["items"][0]) == {"id", "title", "score"}
    assert body["recommendation_id"]
    seen = EndUser.objects.get(external_id="u1").interactions.values_list(
        "item__external_id", flat=True
    )
    assert not set(item_ids(body)) & set(seen)


def test_exclude_and_genre_narrow_the_list(trained):
    client = key_client()
    first = item_ids(client.get("/api/recommendations/?user=u2&n=3").json())

    query = (
        f"user=u2&n=10&genre=Comedy&exclude={first[0]},{first[1]}&exclude={first[2]}"
    )
    body = client.get(f"/api/recommendations/?{query}").json()

    assert body["items"]
    assert not set(item_ids(body)) & set(first)
    genres = Item.objects.filter(external_id__in=item_ids(body))
    assert all("Comedy" in item.genre_list for item in genres)


def test_a_user_nobody_has_seen_gets_popular_items(trained):
    body = key_client().get("/api/recommendations/?user=stranger").json()

    assert body["strategy"] in {"popular", "trending"}
    assert len(body["items"]) == 10


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        ("user=u1&n=0", {"n"}),
        ("user=u1&n=101", {"n"}),
        ("user=u1&n=many", {"n"}),
        ("user=" + "u" * 65, {"user"}),
        ("n=5", {"user"}),
        ("user=u1&genre=" + "g" * 65, {"genre"}),
        ("user=u1&exclude=" + ",".join(["1"] * 1001), {"exclude"}),
    ],
)
def test_bad_parameters_are_a_400_naming_each_field(catalog, query, fields):
    response = key_client().get(f"/api/recommendations/?{query}")

    assert response.status_code == 400
    assert set(error_of(response)["fields"]) == fields


def test_recommendations_need_credentials(catalog):
    assert APIClient().get("/api/recommendations/?user=u1").status_code == 401


def test_an_account_gets_its_own_recommendations_only(catalog):
    client = account_client()

    own = client.get("/api/recommendations/")
    other = client.get("/api/recommendations/?user=u1")

    assert own.status_code == 200
    assert other.status_code == 403
    assert error_of(other)["code"] == "forbidden"


def test_a_ws_token_acts_as_the_user(catalog):
    response = key_client().post(
        "/api/ws-tokens/", {"user": "u3", "ttl": 60}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert body["user"] == "u3"
    assert body["expires_in"] == 60
    assert read_ws_token(body["token"]) == "u3"


def test_a_ws_token_for_a_new_user_creates_the_user(catalog):
    response = key_client().post("/api/ws-tokens/", {"user": "later"}, format="json")

    assert response.status_code == 201
    assert response.json()["expires_in"] == 3600
    assert EndUser.objects.filter(external_id="later").exists()


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"user"}),
        ({"user": ""}, {"user"}),
        ({"user": "u1", "ttl": 0}, {"ttl"}),
        ({"user": "u1", "ttl": 3601}, {"ttl"}),
        ({"user": ["u1"], "ttl": "soon"}, {"user", "ttl"}),
    ],
)
def test_a_bad_ws_token_request_is_a_400(catalog, body, fields):
    response = key_client().post("/api/ws-tokens/", body, format="json")

    assert response.status_code == 400
    assert set(error_of(response)["fields"]) == fields


def test_a_ws_token_needs_credentials(catalog):
    response = APIClient().post("/api/ws-tokens/", {"user": "u1"}, format="json")

    assert response.status_code == 401


def test_an_account_gets_a_ws_token_only_for_itself(catalog):
    client = account_client()

    own = client.post("/api/ws-tokens/", {}, format="json")
    other = client.post("/api/ws-tokens/", {"user": "u1"}, format="json")

    assert read_ws_token(own.json()["token"]) == f"account-{client.account.pk}"
    assert other.status_code == 403
