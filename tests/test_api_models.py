"""Model versions over REST, and the health check."""

import pytest
from rest_framework.test import APIClient

from recommendations.models import ModelVersion
from recommendations.serving import holder
from recommendations.training import TrainingSettings, train_model
from tests.api_support import account_client, error_of, key_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_versions(trained):
    newer = train_model(TrainingSettings(factors=4, epochs=5, seed=2))
    return trained, newer


def test_models_are_listed_newest_first_with_metrics(two_versions):
    older, newer = two_versions

    response = key_client().get("/api/models/")

    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["version"] for r in results] == [newer.version, older.version]
    assert [r["active"] for r in results] == [True, False]
    assert results[0]["metrics"] == newer.metrics
    assert results[0]["params"] == newer.params


def test_one_model_by_version(trained):
    response = key_client().get(f"/api/models/{trained.version}/")

    assert response.status_code == 200
    assert response.json()["n_interactions"] == trained.n_interactions


def test_rolling_back_serves_the_older_version_and_announces_it(
    two_versions, monkeypatch
):
    older, newer = two_versions
    announced = []
    monkeypatch.setattr("recommendations.api.views.announce_model", announced.append)

    response = key_client().post(f"/api/models/{older.version}/activate/")

    assert response.status_code == 200
    assert response.json()["active"] is True
    assert ModelVersion.objects.active() == older
    assert announced == [older.version]
    assert holder.model.version == older.version


def test_activating_an_unknown_version_is_a_404(trained):
    response = key_client().post("/api/models/nope/activate/")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_a_version_whose_artifact_is_gone_is_not_activated(two_versions):
    older, newer = two_versions
    older.artifact_path.unlink()

    response = key_client().post(f"/api/models/{older.version}/activate/")

    assert response.status_code == 409
    assert error_of(response)["code"] == "artifact_missing"
    assert ModelVersion.objects.active() == newer


def test_models_need_a_key_or_staff(trained):
    reader = account_client()
    staff = account_client("boss", staff=True)

    assert APIClient().get("/api/models/").status_code == 401
    assert reader.get("/api/models/").status_code == 403
    activate = f"/api/models/{trained.version}/activate/"
    assert reader.post(activate).status_code == 403
    assert staff.get("/api/models/").status_code == 200
    assert staff.post(activate).status_code == 200


def test_health_reports_what_is_served(trained):
    response = APIClient().get("/healthz")

    assert response.status_code == 200
    assert response.json() == {
        "ok": True,
        "model": trained.version,
        "model_error": None,
        "channel_layer": "channels.layers.InMemoryChannelLayer",
        "database": "sqlite",
    }


def test_health_without_a_model_is_still_ok(db):
    body = APIClient().get("/healthz").json()

    assert body["ok"] is True
    assert body["model"] is None


def test_health_says_when_the_database_is_down(db, monkeypatch):
    from django.db import OperationalError

    def down(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(holder, "refresh", down)

    response = APIClient().get("/healthz")

    assert response.status_code == 503
    assert response.json()["ok"] is False


def test_models_carry_their_online_click_through(trained):
    from events.ingestion import store_event
    from events.models import EndUser
    from events.validation import EventMessage
    from recommendations.impressions import impressions

    user = EndUser.objects.get(external_id="u1")
    shown = holder.recommend(user, n=10)
    impressions.record(user, shown)
    impressions.flush()
    click = EventMessage(
        "click", shown.item_ids[0], None, None, shown.recommendation_id
    )
    store_event(user, click)

    online = key_client().get(f"/api/models/{trained.version}/").json()["online"]

    assert online["impressions"] == 10
    assert online["clicks"] == 1
    assert online["ctr"] == pytest.approx(0.1)


def test_metrics_are_prometheus_text_for_operators_only(trained):
    from recommendations.metrics_counters import counters

    counters.increment("events_stored")

    response = key_client().get("/metrics")
    anonymous = APIClient().get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert "events_stored" in response.content.decode()
    assert anonymous.status_code == 401
