"""Storing events: the one path the WebSocket and the REST API share."""

import uuid
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from events.models import Interaction, Item
from events.validation import MessageError


@dataclass(frozen=True)
class StoredEvent:
    event_id: str
    duplicate: bool
    interaction: Interaction


def store_event(end_user, event):
    """Store one validated event for an end user, once per event_id.

    An event whose event_id is already stored is reported as a duplicate
    and changes nothing, so a client may retry until it sees the ack.
    """
    item_pk = (
        Item.objects.filter(external_id=event.item)
        .order_by()
        .values_list("pk", flat=True)
        .first()
    )
    if item_pk is None:
        raise MessageError("unknown_item", f"no item has the id {event.item!r}")

    # Insert first and look for the earlier copy only if the unique
    # event_id refuses it: retries are rare, and this saves a query on
    # every other event.
    event_id = event.event_id or f"srv-{uuid.uuid4()}"
    interaction = Interaction(
        user=end_user,
        item_id=item_pk,
        kind=event.kind,
        value=event.value,
        created_at=timezone.now(),
        event_id=event_id,
        recommendation_id=event.recommendation_id,
    )
    try:
        # A savepoint, so that losing a race to another process leaves
        # the caller's transaction usable.
        with transaction.atomic():
            interaction.save()
    except IntegrityError:
        previous = _stored_with_id(event_id)
        if previous is None:
            raise
        return _duplicate(end_user, previous, event_id)
    return StoredEvent(event_id=event_id, duplicate=False, interaction=interaction)


def _stored_with_id(event_id):
    return Interaction.objects.filter(event_id=event_id).order_by().first()


def _duplicate(end_user, previous, event_id):
    # event_ids are global; one user must not learn of, or be acked for,
    # another user's event by guessing its id.
    if previous.user_id != end_user.pk:
        raise MessageError(
            "forbidden", f"event_id {event_id!r} belongs to another user"
        )
    return StoredEvent(event_id=event_id, duplicate=True, interaction=previous)
