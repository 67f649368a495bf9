"""/metrics counts what the REST API stores and refuses, as it does for
sockets: each test reads the counters through GET /metrics before and
after, so only what the test itself did is compared."""

import pytest
from rest_framework.test import APIClient

from tests.api_support import key_client

pytestmark = pytest.mark.django_db


def scraped(client, name, **labels):
    """One series' value in the text GET /metrics answers, 0 if absent."""
    response = client.get("/metrics")
    assert response.status_code == 200

    pairs = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    series = f"rtrec_{name}{{{pairs}}}" if pairs else f"rtrec_{name}"
    for line in response.content.decode().splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def stored(client, duplicate):
    return scraped(client, "events_stored_total", via="rest", duplicate=duplicate)


def errors(client, code):
    return scraped(client, "errors_total", code=code, via="rest")


def click(event_id, user="u1", item="1"):
    return {"user": user, "event": "click", "item": item, "event_id": event_id}


@pytest.fixture
def operator(catalog):
    return key_client()


def test_a_batch_counts_its_new_events_and_its_duplicates(operator):
    operator.post("/api/events/", click("seen-before"), format="json")
    new_before, duplicate_before = stored(operator, "false"), stored(operator, "true")
    batch = [
        click("fresh-1"),
        click("fresh-2", user="u2", item="2"),
        click("seen-before"),
        click("fresh-1"),
    ]

    response = operator.post("/api/events/", batch, format="json")

    assert response.status_code == 201
    assert [ack["duplicate"] for ack in response.json()] == [False, False, True, True]
    assert stored(operator, "false") == new_before + 2
    assert stored(operator, "true") == duplicate_before + 2


def test_a_batch_of_duplicates_only_counts_duplicates(operator):
    operator.post("/api/events/", [click("a"), click("b")], format="json")
    new_before, duplicate_before = stored(operator, "false"), stored(operator, "true")

    response = operator.post("/api/events/", [click("a"), click("b")], format="json")

    assert response.status_code == 200
    assert stored(operator, "false") == new_before
    assert stored(operator, "true") == duplicate_before + 2


def test_refused_requests_are_counted_by_their_error_code(operator):
    invalid_before = errors(operator, "invalid_events")
    anonymous_before = errors(operator, "not_authenticated")
    stored_before = stored(operator, "false")

    bad_batch = [click("ok-1"), click("bad-1", item="no-such-item")]
    refused = operator.post("/api/events/", bad_batch, format="json")
    anonymous = APIClient().post("/api/events/", click("anon-1"), format="json")

    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "invalid_events"
    assert anonymous.status_code == 401
    assert errors(operator, "invalid_events") == invalid_before + 1
    assert errors(operator, "not_authenticated") == anonymous_before + 1
    assert stored(operator, "false") == stored_before


def test_an_unknown_api_path_is_counted_as_not_found(operator):
    before = errors(operator, "not_found")

    response = operator.get("/api/no-such-endpoint/")

    assert response.status_code == 404
    assert errors(operator, "not_found") == before + 1
