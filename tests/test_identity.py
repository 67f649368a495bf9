"""A visitor who logs in keeps their history."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

from events.ingestion import store_event
from events.models import EndUser, Interaction
from events.validation import EventMessage
from recommendations.serving import holder

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-enough-password"


def visit_and_click(client, item):
    client.get("/")
    visitor_id = client.session["rtrec_visitor"]
    visitor = EndUser.objects.get(external_id=visitor_id)
    store_event(visitor, EventMessage("click", item, None, f"click-{item}"))
    return visitor


def log_in(client, user):
    response = client.post(
        "/admin/login/", {"username": user.username, "password": PASSWORD}
    )
    assert response.status_code == 302


def test_a_first_login_hands_the_visitor_to_the_account(catalog):
    client = Client()
    visitor = visit_and_click(client, "3")
    account = User.objects.create_user("ann", password=PASSWORD, is_staff=True)

    log_in(client, account)

    visitor.refresh_from_db()
    assert visitor.account == account
    assert EndUser.objects.for_account(account) == visitor
    assert "rtrec_visitor" not in client.session


def test_an_account_with_history_takes_the_visitors_events(catalog):
    account = User.objects.create_user("bob", password=PASSWORD, is_staff=True)
    known = EndUser.objects.for_account(account)
    store_event(known, EventMessage("like", "5", None, "like-5"))
    holder.recommend(known, n=5)  # cached before the visitor is joined
    client = Client()
    visitor = visit_and_click(client, "7")

    log_in(client, account)

    assert not EndUser.objects.filter(pk=visitor.pk).exists()
    events = Interaction.objects.filter(user=known)
    assert set(events.values_list("event_id", flat=True)) == {"like-5", "click-7"}
    picks = holder.recommend(known, n=40).item_ids
    assert "7" not in picks and "5" not in picks
