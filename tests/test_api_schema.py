"""The OpenAPI document validates, and the API keeps to it under
generated requests: no 500 on any endpoint."""

import io
import re

import pytest
import schemathesis
from django.contrib.staticfiles import finders
from django.core.cache import cache
from django.core.handlers.wsgi import WSGIHandler
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from rest_framework.test import APIClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from events.models import ApiKey

pytestmark = pytest.mark.django_db

EXAMPLES_PER_OPERATION = 25

# What the server answers must be what the schema says. Whether it takes
# a request is not checked: a valid-looking event for an item the
# catalog lacks is rightly refused, and DRF reads "true" as a boolean.
RESPONSE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def test_the_schema_validates_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"

    call_command(
        "spectacular",
        "--validate",
        "--fail-on-warn",
        "--file",
        str(out),
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )

    text = out.read_text()
    for path in ["/api/items/", "/api/events/", "/api/recommendations/", "/healthz"]:
        assert f"{path}:" in text


def test_the_schema_is_served_as_json():
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert schema["components"]["securitySchemes"]["apiKey"]["in"] == "header"


def test_the_docs_page_needs_nothing_from_the_internet():
    response = APIClient().get("/api/docs/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger-ui-bundle.js" in page
    assert not re.search(r"""(src|href)=["']https?://""", page)
    assets = re.findall(r"""(?:src|href)=["']/static/([^"']+)["']""", page)
    assert len(assets) >= 3
    for asset in assets:
        assert finders.find(asset), asset


@pytest.fixture
def wsgi_app():
    # As Django's test client does: a request must not close the test's
    # connection, or its transaction and the fixtures' rows go with it.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield WSGIHandler()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(wsgi_app, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api_key": None, "address": None},
    }
    cache.clear()
    return schemathesis.openapi.from_wsgi("/api/schema/?format=json", wsgi_app)


@pytest.fixture
def api_key_header(catalog):
    _, raw_key = ApiKey.objects.issue("schemathesis")
    return {"Authorization": f"Api-Key {raw_key}"}


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@hypothesis_settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_generated_requests_never_get_a_server_error(case, api_key_header):
    case.call_and_validate(headers=api_key_header, checks=RESPONSE_CHECKS)
