"""Clients for the REST API tests: by API key, by staff or plain account."""

from django.contrib.auth.models import User
from rest_framework.test import APIClient

from events.models import ApiKey


def key_client(name="shop back end"):
    """A client sending a fresh API key; the key is on `client.api_key`."""
    api_key, raw_key = ApiKey.objects.issue(name)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    client.api_key, client.raw_key = api_key, raw_key
    return client


def account_client(username="reader", staff=False, csrf_checks=False):
    """A client signed in with a Django session."""
    account = User.objects.create_user(username, password="pw-12345", is_staff=staff)
    client = APIClient(enforce_csrf_checks=csrf_checks)
    client.force_login(account)
    client.account = account
    return client


def error_of(response):
    """The error envelope's inner object, after checking it is JSON."""
    assert response["Content-Type"] == "application/json"
    return response.json()["error"]
