"""The catalog over REST: list, filter, change, and similar items."""

import pytest

from events.models import EndUser, Interaction, Item
from recommendations.serving import holder
from tests.api_support import account_client, error_of, key_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(catalog):
    return key_client()


def ids(response):
    return [item["id"] for item in response.json()["results"]]


def test_the_list_is_paginated(client):
    first = client.get("/api/items/?page_size=15")
    last = client.get("/api/items/?page_size=15&page=3")

    assert first.status_code == 200
    body = first.json()
    assert body["count"] == 40
    assert len(body["results"]) == 15
    assert body["next"].endswith("page=2&page_size=15")
    assert len(last.json()["results"]) == 10
    assert body["results"][0] == {
        "id": "1",
        "title": "Item 1",
        "genres": ["Comedy", "Horror"],
        "year": 1991,
        "description": "",
        "active": True,
        "created_at": body["results"][0]["created_at"],
        "updated_at": body["results"][0]["updated_at"],
    }


def test_a_page_past_the_end_is_a_404(client):
    response = client.get("/api/items/?page=99")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_search_matches_words_in_the_title(client):
    Item.objects.filter(external_id="7").update(title="The Matrix")

    response = client.get("/api/items/?search=matrix")

    assert ids(response) == ["7"]


def test_genre_filters_on_whole_genre_names(client):
    Item.objects.create(external_id="d2", title="Edge", genres="Dramedy")

    found = set(ids(client.get("/api/items/?genre=Drama&page_size=100")))

    expected = {i.external_id for i in Item.objects.all() if "Drama" in i.genre_list}
    assert found == expected
    assert "d2" not in found


def test_active_filters_both_ways(client):
    Item.objects.filter(external_id__in=["3", "4"]).update(is_active=False)

    inactive = ids(client.get("/api/items/?active=false"))
    active = client.get("/api/items/?active=true").json()["count"]

    assert inactive == ["3", "4"]
    assert active == 38


def test_a_bad_filter_is_a_400_naming_the_field(client):
    response = client.get("/api/items/?active=maybe&genre=" + "x" * 65)

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_input"
    assert set(error["fields"]) == {"active", "genre"}


def test_one_item_by_its_own_id(client):
    response = client.get("/api/items/12/")

    assert response.status_code == 200
    assert response.json()["title"] == "Item 12"


def test_an_unknown_item_is_a_404(client):
    for method in ("get", "put", "patch", "delete"):
        response = getattr(client, method)("/api/items/nope/", {}, format="json")

        assert response.status_code == 404, method
        assert error_of(response)["code"] == "unknown_item"


def test_creating_an_item_makes_it_servable_at_once(client):
    response = client.post(
        "/api/items/",
        {"id": "new-1", "title": "Brand new", "genres": ["Comedy", "Drama"]},
        format="json",
    )

    assert response.status_code == 201
    assert response.json()["genres"] == ["Comedy", "Drama"]
    item = Item.objects.get(external_id="new-1")
    assert item.genres == "Comedy|Drama"
    assert item.is_active
    assert "new-1" in holder.catalog.id_index
    assert holder.similar("new-1", n=3).strategy == "content"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"title": "No id"}, {"id"}),
        ({"id": "1", "title": "Taken"}, {"id"}),
        ({"id": "a/b", "title": "Slash"}, {"id"}),
        ({"id": "x", "title": ""}, {"title"}),
        ({"id": "x", "title": "T", "genres": "Comedy"}, {"genres"}),
        ({"id": "x", "title": "T", "genres": ["A|B"]}, {"genres"}),
        ({"id": "x", "title": "T", "year": -1, "active": "maybe"}, {"year", "active"}),
    ],
)
def test_a_bad_item_is_a_400_naming_each_field(client, body, fields):
    response = client.post("/api/items/", body, format="json")

    assert response.status_code == 400
    assert set(error_of(response)["fields"]) == fields


def test_put_replaces_and_patch_changes_some_fields(client):
    put = client.put(
        "/api/items/5/",
        {"title": "Renamed", "genres": ["Horror"], "year": 2001},
        format="json",
    )
    patch = client.patch("/api/items/5/", {"description": "Scary"}, format="json")

    assert put.status_code == 200
    assert patch.status_code == 200
    item = Item.objects.get(external_id="5")
    assert (item.title, item.genres, item.year) == ("Renamed", "Horror", 2001)
    assert item.description == "Scary"


def test_an_item_id_cannot_change(client):
    response = client.patch("/api/items/5/", {"id": "6"}, format="json")

    assert response.status_code == 400
    assert "id" in error_of(response)["fields"]


def test_deactivating_an_item_drops_it_from_recommendations_at_once(trained):
    client = key_client()
    user = EndUser.objects.get(external_id="u4")
    top = holder.recommend(user, n=1).item_ids[0]

    response = client.patch(f"/api/items/{top}/", {"active": False}, format="json")
    picks = client.get("/api/recommendations/?user=u4&n=20").json()

    assert response.status_code == 200
    assert response.json()["active"] is False
    assert top not in [item["id"] for item in picks["items"]]


def test_deleting_an_item_removes_it_and_its_interactions(client):
    assert Interaction.objects.filter(item__external_id="9").exists()

    response = client.delete("/api/items/9/")

    assert response.status_code == 204
    assert not Item.objects.filter(external_id="9").exists()
    assert not Interaction.objects.filter(item__external_id="9").exists()


def test_catalog_changes_need_a_key_or_staff(catalog):
    reader = account_client()

    assert (
        reader.patch("/api/items/5/", {"title": "X"}, format="json").status_code == 403
    )
    assert reader.delete("/api/items/5/").status_code == 403
    assert Item.objects.get(external_id="5").title == "Item 5"


def test_similar_items_come_with_the_socket_payload(trained):
    response = key_client().get("/api/items/3/similar/?n=4")

    assert response.status_code == 200
    body = response.json()
    assert body["type"] == "similar"
    assert body["item"] == "3"
    assert body["model"] == trained.version
    assert len(body["items"]) == 4
    assert "3" not in [item["id"] for item in body["items"]]
    assert set(body["items"][0]) == {"id", "title", "score"}


def test_similar_for_an_unknown_item_is_a_404(client):
    response = client.get("/api/items/nope/similar/")

    assert response.status_code == 404
    assert error_of(response)["code"] == "unknown_item"


@pytest.mark.parametrize("n", ["0", "101", "ten"])
def test_similar_refuses_a_bad_n(client, n):
    response = client.get(f"/api/items/3/similar/?n={n}")

    assert response.status_code == 400
    assert set(error_of(response)["fields"]) == {"n"}


def test_similar_needs_credentials(catalog):
    from rest_framework.test import APIClient

    assert APIClient().get("/api/items/3/similar/").status_code == 401
