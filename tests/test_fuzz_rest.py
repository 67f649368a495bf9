"""Generated garbage at the REST endpoints, sent with a valid API key.

Whatever the body or query, the answer is JSON with a status below 500,
an error stores nothing, and a success stores exactly what it acks.
"""

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.models import Interaction
from tests.api_support import error_of, key_client
from tests.test_fuzz_socket import hostile_values, json_values, nasty_strings

pytestmark = pytest.mark.django_db

FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

VALID_EVENTS = [
    {"user": "u1", "event": "click", "item": "7", "event_id": "rz-1"},
    {"user": "u2", "event": "rate", "item": "40", "value": 2},
    {"user": "new-user", "type": "event", "event": "like", "item": "3"},
]
# Query strings reach Django as UTF-8, so they cannot hold a surrogate.
query_texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
query_values = st.sampled_from(["", "1", "10", "-1", "0", "1e3", "u1"]) | query_texts


@st.composite
def almost_valid_events(draw):
    """A valid event with one field dropped, replaced or added."""
    event = dict(draw(st.sampled_from(VALID_EVENTS)))
    name = draw(st.sampled_from([*event, "extra"]))
    if name in event and draw(st.booleans()):
        del event[name]
    else:
        event[name] = draw(hostile_values)
    return event


bodies = st.one_of(
    almost_valid_events(),
    st.lists(almost_valid_events(), min_size=1, max_size=4),
    json_values,
)


@pytest.fixture
def api(catalog):
    return key_client()


def assert_json_answer(response):
    assert response.status_code < 500, response.content[:300]
    assert response["Content-Type"] == "application/json"
    if response.status_code >= 400:
        error = error_of(response)
        assert error["code"] and error["message"]


def new_acks(response):
    acks = response.json()
    acks = acks if isinstance(acks, list) else [acks]
    return sum(not ack["duplicate"] for ack in acks)


@FUZZ
@given(body=bodies)
def test_posted_events_are_refused_or_stored_exactly(api, body):
    before = Interaction.objects.count()

    response = api.post(
        "/api/events/",
        json.dumps(body, allow_nan=True),
        content_type="application/json",
    )

    assert_json_answer(response)
    stored = Interaction.objects.count() - before
    if response.status_code >= 400:
        assert stored == 0
    else:
        assert stored == new_acks(response)


@FUZZ
@given(raw=st.binary(max_size=200))
def test_raw_bytes_as_a_json_body_are_refused(api, raw):
    before = Interaction.objects.count()

    response = api.post("/api/events/", raw, content_type="application/json")

    assert_json_answer(response)
    if response.status_code >= 400:
        assert Interaction.objects.count() == before


@FUZZ
@given(
    query=st.dictionaries(
        st.sampled_from(["user", "n", "genre", "exclude", "other"]),
        query_values,
        max_size=5,
    )
)
def test_recommendation_queries_never_fail(api, query):
    response = api.get("/api/recommendations/", query)

    assert_json_answer(response)


@FUZZ
@given(item=query_texts | nasty_strings.filter(str.isprintable), n=query_values)
def test_similar_item_queries_never_fail(api, item, n):
    path = f"/api/items/{quote(item, safe='')}/similar/"

    response = api.get(path, {"n": n})

    assert_json_answer(response)


@FUZZ
@given(
    query=st.dictionaries(
        st.sampled_from(["search", "genre", "active", "page", "page_size"]),
        query_values,
        max_size=5,
    )
)
def test_catalog_queries_never_fail(api, query):
    response = api.get("/api/items/", query)

    assert_json_answer(response)


@FUZZ
@given(body=json_values | st.fixed_dictionaries({"user": hostile_values}))
def test_token_requests_never_fail(api, body):
    response = api.post(
        "/api/ws-tokens/",
        json.dumps(body, allow_nan=True),
        content_type="application/json",
    )

    assert_json_answer(response)


def test_a_lone_surrogate_as_the_user_is_refused(api):
    body = '{"user": "\\ud800", "event": "click", "item": "1"}'

    response = api.post("/api/events/", body, content_type="application/json")

    assert response.status_code == 400
