"""API keys, sessions, throttling and the error envelope of the REST API."""

import io

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from events.models import ApiKey
from recommendations.serving import holder
from tests.api_support import account_client, error_of, key_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def low_rates(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api_key": "3/minute", "address": "2/minute"},
    }


def test_create_api_key_prints_a_key_that_is_stored_only_hashed(catalog):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_key", "shop", stdout=out, stderr=err)
    raw_key = out.getvalue().strip()

    api_key = ApiKey.objects.get()
    assert api_key.name == "shop"
    assert raw_key.startswith(api_key.prefix + ".")
    assert raw_key not in api_key.hashed_key
    assert "not be shown again" in err.getvalue()

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    assert client.get("/api/items/").status_code == 200


def test_create_api_key_refuses_an_empty_name():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("create_api_key", "  ", stdout=io.StringIO())


def test_it_asks_for_credentials_with_a_401_and_a_challenge(catalog):
    response = APIClient().get("/api/items/")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Api-Key")
    assert error_of(response)["code"] == "not_authenticated"


@pytest.mark.parametrize(
    "header",
    ["Api-Key nope", "Api-Key nope.nope", "Api-Key", "api-key a b"],
)
def test_a_wrong_key_is_refused(catalog, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get("/api/items/")

    assert response.status_code == 401
    assert error_of(response)["code"] == "authentication_failed"


def test_a_key_with_a_right_prefix_and_a_wrong_secret_is_refused(catalog):
    client = key_client()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {client.api_key.prefix}.guess")

    assert client.get("/api/items/").status_code == 401


def test_a_revoked_key_stops_working(catalog):
    client = key_client()
    assert client.get("/api/items/").status_code == 200

    client.api_key.revoke()

    assert client.get("/api/items/").status_code == 401


def test_a_key_records_when_it_was_last_used(catalog):
    client = key_client()

    client.get("/api/items/")

    client.api_key.refresh_from_db()
    assert client.api_key.last_used_at is not None


def test_a_signed_in_account_reads_but_may_not_change_the_catalog(catalog):
    client = account_client()

    assert client.get("/api/items/").status_code == 200
    response = client.post("/api/items/", {"id": "n1", "title": "New"}, format="json")

    assert response.status_code == 403
    assert error_of(response)["code"] == "forbidden"


def test_a_staff_account_changes_the_catalog(catalog):
    client = account_client(staff=True)

    response = client.post("/api/items/", {"id": "n1", "title": "New"}, format="json")

    assert response.status_code == 201


def test_a_session_must_pass_the_csrf_check_to_write(catalog):
    client = account_client(staff=True, csrf_checks=True)

    response = client.post("/api/items/", {"id": "n1", "title": "New"}, format="json")

    assert response.status_code == 403
    assert "CSRF" in error_of(response)["message"]


def test_an_api_key_is_throttled_with_retry_after(catalog, low_rates):
    client = key_client()
    statuses = [client.get("/api/items/").status_code for _ in range(4)]

    response = client.get("/api/items/")

    assert statuses == [200, 200, 200, 429]
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert error_of(response)["code"] == "rate_limited"


def test_each_api_key_has_its_own_budget(catalog, low_rates):
    first, second = key_client("one"), key_client("two")
    for _ in range(3):
        first.get("/api/items/")

    assert first.get("/api/items/").status_code == 429
    assert second.get("/api/items/").status_code == 200


def test_sessions_are_throttled_per_address(catalog, low_rates):
    client = account_client()
    other = APIClient(REMOTE_ADDR="10.1.2.3")
    other.force_login(client.account)
    for _ in range(2):
        assert client.get("/api/items/").status_code == 200

    response = client.get("/api/items/")

    assert response.status_code == 429
    assert "Retry-After" in response
    assert other.get("/api/items/").status_code == 200


def test_health_is_never_throttled(catalog, low_rates):
    statuses = {APIClient().get("/healthz").status_code for _ in range(5)}

    assert statuses == {200}


def test_an_unknown_api_path_is_a_json_404(catalog):
    response = key_client().get("/api/nothing-here/")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_a_missing_trailing_slash_is_pointed_out(catalog):
    response = key_client().post("/api/events", {}, format="json")

    assert response.status_code == 404
    assert "/api/events/" in error_of(response)["message"]


def test_a_wrong_method_is_a_json_405(catalog):
    response = key_client().delete("/api/recommendations/")

    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


def test_malformed_json_is_a_400(catalog):
    response = key_client().post(
        "/api/events/", "{not json", content_type="application/json"
    )

    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"


def test_a_form_body_is_refused_as_unsupported(catalog):
    response = key_client().post("/api/events/", {"event": "click"})

    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


def test_a_body_over_the_upload_limit_is_a_413(catalog, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = "[" + ",".join(['{"user": "u1", "event": "click", "item": "1"}'] * 50) + "]"

    response = key_client().post("/api/events/", body, content_type="application/json")

    assert response.status_code == 413
    assert error_of(response)["code"] == "too_large"


def test_a_crash_is_a_json_500_and_is_logged(catalog, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("the holder broke")

    monkeypatch.setattr(holder, "similar", broken)

    response = key_client().get("/api/items/1/similar/")

    assert response.status_code == 500
    assert error_of(response)["code"] == "server_error"
    assert "the holder broke" not in response.content.decode()
    assert any(r.levelname == "ERROR" for r in caplog.records)


def test_a_crash_outside_drf_under_api_is_json_too(rf):
    from recommendations.api.errors import page_not_found, server_error

    assert server_error(rf.get("/api/items/"))["Content-Type"] == "application/json"
    assert page_not_found(rf.get("/healthz/x"))["Content-Type"] == "application/json"
    assert "html" in server_error(rf.get("/admin/"))["Content-Type"]
