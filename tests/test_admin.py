"""The admin site: every page renders for staff, lists stay a few queries
on MovieLens 100K, and the catalog and model actions take effect."""

import io

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from events.models import ApiKey, EndUser, Interaction, Item
from recommendations.models import ModelVersion
from recommendations.serving import holder
from recommendations.training import TrainingSettings, train_model

DATA = settings.RTREC["DATA_DIR"]

pytestmark = pytest.mark.django_db

# A list page of 100 rows with an N+1 would take 100 queries or more.
LIST_QUERY_LIMIT = 8
PAGE_QUERY_LIMIT = 15


def changelist(model, **query):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    if query:
        url += "?" + "&".join(f"{name}={value}" for name, value in query.items())
    return url


def change_page(obj):
    meta = obj._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])


def fake_versions(n=5):
    return [
        ModelVersion.objects.create(
            version=f"v{n}",
            artifact=f"v{n}.npz",
            params={"factors": 100, "epochs": 20},
            metrics={"rmse": 0.93, "ndcg@10": 0.12, "candidates": {"x": {"map": 0.1}}},
            n_interactions=100_000,
        )
        for n in range(n)
    ]


@pytest.mark.slow
@pytest.mark.skipif(not DATA.is_dir(), reason=f"MovieLens 100K not in {DATA}")
def test_every_page_renders_with_few_queries_on_movielens(
    admin_client, django_assert_max_num_queries
):
    call_command("import_movielens", str(DATA), stdout=io.StringIO())
    fake_versions()
    ApiKey.objects.issue("shop")
    user = EndUser.objects.get(external_id="196")
    assert Interaction.objects.count() == 100_000

    lists = [
        changelist(Item),
        changelist(Item, genre="Comedy", is_active__exact=1),
        changelist(Item, q="star"),
        changelist(EndUser),
        changelist(EndUser, q="196"),
        changelist(Interaction),
        changelist(Interaction, kind__exact="rate", created_at__year=1998),
        changelist(Interaction, q="196"),
        changelist(ModelVersion),
        changelist(ApiKey),
    ]
    for url in lists:
        with django_assert_max_num_queries(LIST_QUERY_LIMIT):
            response = admin_client.get(url)
        assert response.status_code == 200, url

    pages = [
        change_page(Item.objects.get(external_id="50")),
        change_page(user),
        change_page(user.interactions.first()),
        change_page(ModelVersion.objects.first()),
        change_page(ApiKey.objects.get()),
        reverse("admin:events_item_import_csv"),
        reverse("admin:events_apikey_add"),
    ]
    for url in pages:
        with django_assert_max_num_queries(PAGE_QUERY_LIMIT):
            response = admin_client.get(url)
        assert response.status_code == 200, url


def test_the_interaction_list_shows_users_and_items_in_one_query(
    catalog, admin_client, django_assert_max_num_queries
):
    with django_assert_max_num_queries(LIST_QUERY_LIMIT):
        response = admin_client.get(changelist(Interaction))

    assert response.status_code == 200
    assert b"Item 1 (1)" in response.content or b"Item 1" in response.content


def test_bulk_deactivation_takes_items_out_of_serving_at_once(catalog, admin_client):
    holder.refresh(force=True)
    chosen = list(
        Item.objects.filter(external_id__in=["1", "2"]).values_list("pk", flat=True)
    )

    response = admin_client.post(
        changelist(Item),
        {"action": "deactivate_items", "_selected_action": chosen},
    )

    assert response.status_code == 302
    assert not Item.objects.filter(pk__in=chosen, is_active=True).exists()
    for item_id in ("1", "2"):
        assert not holder.catalog.active[holder.catalog.id_index[item_id]]

    admin_client.post(
        changelist(Item), {"action": "activate_items", "_selected_action": chosen}
    )
    assert Item.objects.filter(pk__in=chosen, is_active=True).count() == 2


def test_the_genre_filter_lists_every_genre(catalog, admin_client):
    response = admin_client.get(changelist(Item, genre="Horror"))

    shown = response.context["cl"].queryset
    assert set(shown) == {i for i in Item.objects.all() if "Horror" in i.genre_list}
    assert b"?genre=Romance" in response.content


def csv_upload(text):
    return SimpleUploadedFile("items.csv", text.encode(), content_type="text/csv")


def test_a_csv_import_adds_and_updates_items(catalog, admin_client):
    text = (
        "id,title,genres,year,description,active\n"
        "1,Item One Renamed,Comedy,1991,,true\n"
        "new-1,Brand New,Drama|Romance,2020,A love story,true\n"
        "new-2,Hidden,,,,false\n"
    )

    response = admin_client.post(
        reverse("admin:events_item_import_csv"), {"file": csv_upload(text)}, follow=True
    )

    assert "2 new, 1 updated" in response.content.decode()
    assert Item.objects.get(external_id="1").title == "Item One Renamed"
    new = Item.objects.get(external_id="new-1")
    assert (new.genres, new.year, new.is_active) == ("Drama|Romance", 2020, True)
    assert not Item.objects.get(external_id="new-2").is_active
    assert "new-1" in holder.catalog.id_index


def test_a_csv_with_a_bad_line_imports_nothing_and_names_the_line(
    catalog, admin_client
):
    text = "id,title,year\nok-1,Fine,2001\nbad-1,,soon\n"

    response = admin_client.post(
        reverse("admin:events_item_import_csv"), {"file": csv_upload(text)}
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert "line 3: title" in page
    assert "line 3: year" in page
    assert not Item.objects.filter(external_id="ok-1").exists()


def test_a_csv_needs_the_id_and_title_columns(catalog, admin_client):
    response = admin_client.post(
        reverse("admin:events_item_import_csv"),
        {"file": csv_upload("name,colour\nx,red\n")},
    )

    assert "The header needs id and title" in response.content.decode()


def test_the_user_page_shows_recent_interactions_and_current_picks(
    trained, admin_client
):
    user = EndUser.objects.get(external_id="u1")

    response = admin_client.get(change_page(user))

    page = response.content.decode()
    assert "latest 20 interactions" in page.lower()
    picks = holder.recommend(user, n=10)
    assert picks.titles[0] in page
    assert f"strategy {picks.strategy}" in page


def test_interactions_are_read_only(catalog, admin_client):
    interaction = Interaction.objects.first()

    add = admin_client.get(reverse("admin:events_interaction_add"))
    view = admin_client.get(change_page(interaction))

    assert add.status_code == 403
    assert view.status_code == 200
    assert b'name="_save"' not in view.content


def test_a_new_api_key_is_shown_once_and_works(catalog, admin_client):
    response = admin_client.post(
        reverse("admin:events_apikey_add"), {"name": "warehouse"}
    )

    raw_key = response.context["raw_key"]
    api_key = ApiKey.objects.get(name="warehouse")
    assert raw_key in response.content.decode()
    assert raw_key.startswith(api_key.prefix)
    assert raw_key not in admin_client.get(change_page(api_key)).content.decode()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    assert client.get("/api/items/").status_code == 200


def test_revoking_keys_in_the_admin(catalog, admin_client):
    api_key, _ = ApiKey.objects.issue("old")

    admin_client.post(
        changelist(ApiKey), {"action": "revoke_keys", "_selected_action": [api_key.pk]}
    )

    api_key.refresh_from_db()
    assert api_key.is_revoked


@pytest.fixture
def two_versions(trained):
    newer = train_model(TrainingSettings(factors=4, epochs=5, seed=2))
    return trained, newer


@pytest.fixture
def announced(monkeypatch):
    versions = []
    monkeypatch.setattr("recommendations.admin.announce_model", versions.append)
    return versions


def test_the_activate_button_rolls_back_and_tells_every_process(
    two_versions, admin_client, announced
):
    older, newer = two_versions
    page = admin_client.get(change_page(older)).content.decode()
    activate_url = reverse(
        "admin:recommendations_modelversion_activate", args=[older.pk]
    )
    assert activate_url in page

    response = admin_client.post(activate_url)

    assert response.status_code == 302
    assert ModelVersion.objects.active() == older
    assert announced == [older.version]
    assert holder.model.version == older.version
    assert activate_url not in admin_client.get(change_page(older)).content.decode()


def test_activation_needs_a_post(two_versions, admin_client, announced):
    older, _ = two_versions
    url = reverse("admin:recommendations_modelversion_activate", args=[older.pk])

    assert admin_client.get(url).status_code == 405
    assert announced == []


def test_the_action_refuses_a_version_without_its_artifact(
    two_versions, admin_client, announced
):
    older, newer = two_versions
    older.artifact_path.unlink()

    admin_client.post(
        changelist(ModelVersion),
        {"action": "activate", "_selected_action": [older.pk]},
    )

    assert ModelVersion.objects.active() == newer
    assert announced == []


def test_the_version_page_shows_metrics_and_parameters(trained, admin_client):
    page = admin_client.get(change_page(trained)).content.decode()

    assert "Metrics" in page
    assert "Training parameters" in page
    for name in trained.params:
        assert f"<th>{name}</th>" in page
