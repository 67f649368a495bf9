"""Storing a batch of events from a site's back end, all or nothing.

The socket's path, events.ingestion.store_event, spends a few queries on
each event. A batch of a thousand would spend thousands, so here each
lookup is one query for the whole batch and the new rows go in with one
bulk insert. The rules are the socket's: the same validator, event_id
stored once, an event_id of another user refused.
"""

import re
import uuid
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from events.models import EndUser, Interaction, Item
from events.validation import MessageError, check_identifier, validate_event

MAX_BATCH = 1000
FIELD_NAMED = re.compile(r"^(?:missing field |unexpected field )?'(\w+)'")


@dataclass(frozen=True)
class RowError:
    index: int
    code: str
    message: str
    field: str | None = None

    @classmethod
    def of(cls, index, error):
        # The shared validator names the field it refuses in quotes, first
        # thing in its message; that name is what a client fixes.
        named = FIELD_NAMED.search(error.message)
        return cls(index, error.code, error.message, named and named.group(1))

    def as_dict(self):
        fields = {"index": self.index, "code": self.code, "message": self.message}
        if self.field:
            fields["field"] = self.field
        return fields


class InvalidBatch(Exception):
    def __init__(self, errors):
        super().__init__(f"{len(errors)} events are not valid")
        self.errors = sorted(errors, key=lambda error: error.index)


@dataclass(frozen=True)
class UserEvent:
    index: int
    user: str
    event: object


@dataclass(frozen=True)
class StoredBatch:
    acks: list
    stored: list


def store_rows(rows, own_user=None):
    """Validate and store decoded JSON rows, or raise InvalidBatch naming
    every bad row; nothing is stored unless every row is good.

    `own_user` is the only user the caller may send events for, or None
    when it may send them for anyone (and must then name the user).
    """
    events, errors = [], []
    for index, row in enumerate(rows):
        try:
            events.append(_parse_row(index, row, own_user))
        except MessageError as exc:
            errors.append(RowError.of(index, exc))

    try:
        with transaction.atomic():
            return _store(events, errors)
    except IntegrityError:
        # Another request stored one of these event_ids after we looked.
        # Nothing of ours was kept; a second pass sees it as a duplicate.
        with transaction.atomic():
            return _store(events, errors)


def _parse_row(index, row, own_user):
    if not isinstance(row, dict):
        raise MessageError("invalid_message", "an event must be a JSON object")

    fields = dict(row)
    user = _user_of(fields.pop("user", None), own_user)
    if fields.get("type", "event") != "event":
        raise MessageError("invalid_message", "'type' must be 'event' if given")
    # validate_event looks 'event' up in a set before checking its type,
    # so a list or an object there raises TypeError instead of refusing.
    if not isinstance(fields.get("event", ""), str):
        raise MessageError("invalid_message", "'event' must be a string")
    return UserEvent(index, user, validate_event(fields))


def _user_of(value, own_user):
    if value is None:
        if own_user is None:
            raise MessageError("invalid_message", "missing field 'user'")
        return own_user

    check_identifier("user", value)
    if own_user is not None and value != own_user:
        raise MessageError(
            "forbidden", "'user' must be your own id: an account acts only as itself"
        )
    return value


def _store(events, errors):
    item_pks = _pks(Item, {e.event.item for e in events})
    user_pks = _pks(EndUser, {e.user for e in events})
    errors = errors + _unknown_items(events, item_pks)
    if errors:
        # Nothing will be stored, but name every bad row, those whose
        # event_id is another user's too.
        _, _, refused = _sort_out(events, user_pks, _owners(events))
        raise InvalidBatch(errors + refused)

    # Insert first, and look for earlier copies of the event_ids only if
    # the unique index refuses one: most batches are not retries.
    try:
        with transaction.atomic():
            return _insert_new(events, item_pks, user_pks, owners={})
    except IntegrityError:
        return _insert_new(events, item_pks, user_pks, _owners(events))


def _unknown_items(events, item_pks):
    return [
        RowError(
            e.index, "unknown_item", f"no item has the id {e.event.item!r}", "item"
        )
        for e in events
        if e.event.item not in item_pks
    ]


def _insert_new(events, item_pks, user_pks, owners):
    acks, pending, refused = _sort_out(events, user_pks, owners)
    if refused:
        raise InvalidBatch(refused)

    _insert(pending, item_pks, _with_new_users(pending, user_pks))
    return StoredBatch(acks=acks, stored=[e for _, e in pending])


def _sort_out(events, user_pks, owners):
    """Each event is new, a duplicate, or another user's; nothing is
    written. `owners` maps the stored event_ids to their users' pks."""
    acks, pending, refused, claimed = [], [], [], {}
    for e in events:
        event_id = e.event.event_id or f"srv-{uuid.uuid4()}"
        if event_id in claimed:
            same_user = claimed[event_id] == e.user
        elif event_id in owners:
            same_user = owners[event_id] == user_pks.get(e.user)
        else:
            claimed[event_id] = e.user
            pending.append((event_id, e))
            acks.append(_ack(event_id, duplicate=False))
            continue

        if not same_user:
            message = f"event_id {event_id!r} belongs to another user"
            refused.append(RowError(e.index, "forbidden", message, "event_id"))
            continue
        acks.append(_ack(event_id, duplicate=True))
    return acks, pending, refused


def _ack(event_id, duplicate):
    return {"type": "ack", "event_id": event_id, "duplicate": duplicate}


def _insert(pending, item_pks, user_pks):
    if connection.vendor == "postgresql":
        return _insert_arrays(pending, item_pks, user_pks)
    now = timezone.now()
    Interaction.objects.bulk_create(
        Interaction(
            user_id=user_pks[e.user],
            item_id=item_pks[e.event.item],
            kind=e.event.kind,
            value=e.event.value,
            created_at=now,
            event_id=event_id,
            recommendation_id=e.event.recommendation_id,
        )
        for event_id, e in pending
    )


INSERT_ARRAYS = """
    INSERT INTO {table} (user_id, item_id, kind, value, created_at, event_id,
                         recommendation_id)
    SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::varchar[],
                         %s::float8[], %s::timestamptz[], %s::varchar[],
                         %s::uuid[])
"""


def _insert_arrays(pending, item_pks, user_pks):
    """One INSERT of seven arrays: PostgreSQL unpacks them itself, so a
    batch costs one statement and no model instances."""
    now = timezone.now()
    columns = (
        [user_pks[e.user] for _, e in pending],
        [item_pks[e.event.item] for _, e in pending],
        [e.event.kind for _, e in pending],
        [e.event.value for _, e in pending],
        [now] * len(pending),
        [event_id for event_id, _ in pending],
        [e.event.recommendation_id for _, e in pending],
    )
    sql = INSERT_ARRAYS.format(
        table=connection.ops.quote_name(Interaction._meta.db_table)
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, columns)


def _with_new_users(pending, user_pks):
    missing = {e.user for _, e in pending} - user_pks.keys()
    if not missing:
        return user_pks

    # ignore_conflicts: another request may create the same user now.
    EndUser.objects.bulk_create(
        (EndUser(external_id=external_id) for external_id in missing),
        ignore_conflicts=True,
    )
    return {**user_pks, **_pks(EndUser, missing)}


def _pks(model, external_ids):
    pairs = {}
    for chunk in _chunks(external_ids):
        found = model.objects.filter(external_id__in=chunk).order_by()
        pairs.update(found.values_list("external_id", "pk"))
    return pairs


def _owners(events):
    event_ids = {e.event.event_id for e in events if e.event.event_id}
    owners = {}
    for chunk in _chunks(event_ids):
        found = Interaction.objects.filter(event_id__in=chunk).order_by()
        owners.update(found.values_list("event_id", "user_id"))
    return owners


def _chunks(values):
    # SQLite caps the parameters of one query; PostgreSQL takes them all.
    values = list(values)
    size = connection.features.max_query_params or max(len(values), 1)
    for start in range(0, len(values), size):
        yield values[start : start + size]
