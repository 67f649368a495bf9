"""One validator per message type, shared by the WebSocket and the REST API.

A validator takes the decoded JSON value and returns a frozen dataclass,
or raises MessageError with a stable code and a sentence a client
developer can act on. Nothing is coerced: a wrong type is an error.
"""

import math
import unicodedata
import uuid
from dataclasses import dataclass

from django.conf import settings

from events.models import Interaction

MAX_ID_LENGTH = 64
MAX_EXCLUDE = 1000
EVENT_KINDS = frozenset(Interaction.Kind.values)


class MessageError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(message):
    return MessageError("invalid_message", message)


@dataclass(frozen=True)
class EventMessage:
    kind: str
    item: str
    value: float | None
    event_id: str | None
    recommendation_id: str | None = None


@dataclass(frozen=True)
class RecommendMessage:
    n: int
    exclude: tuple
    genre: str | None


@dataclass(frozen=True)
class SimilarMessage:
    item: str
    n: int


@dataclass(frozen=True)
class PingMessage:
    pass


def _check_fields(message, allowed, required=()):
    for name in message:
        if name == "user":
            raise MessageError(
                "forbidden", "a socket acts only as the user it authenticated as"
            )
        if name not in allowed:
            raise _invalid(f"unexpected field {name!r}")
    for name in required:
        if name not in message:
            raise _invalid(f"missing field {name!r}")


# Control characters and lone surrogates: PostgreSQL refuses a NUL in
# text and UTF-8 cannot encode a surrogate, so either would reach the
# database as an error of its own instead of a refusal here.
UNSTORABLE_CATEGORIES = frozenset({"Cc", "Cs"})


def is_storable_text(value):
    """True if `value` can be stored and echoed as it is."""
    return not any(unicodedata.category(c) in UNSTORABLE_CATEGORIES for c in value)


def _identifier(message, name, required=True):
    value = message.get(name)
    if value is None and not required:
        return None
    return check_identifier(name, value)


def check_identifier(name, value):
    """`value` if it is a usable id for the field `name`, else MessageError."""
    if not isinstance(value, str) or not value.strip():
        raise _invalid(f"{name!r} must be a non-empty string")
    if len(value) > MAX_ID_LENGTH:
        raise _invalid(f"{name!r} is longer than {MAX_ID_LENGTH} characters")
    if not is_storable_text(value):
        raise _invalid(f"{name!r} holds control characters or lone surrogates")
    return value


def _recommendation_id(message):
    value = message.get("recommendation_id")
    if value is None:
        return None
    try:
        return str(uuid.UUID(value)) if isinstance(value, str) else _not_uuid()
    except ValueError:
        return _not_uuid()


def _not_uuid():
    raise _invalid("'recommendation_id' must be the id of a list the server sent")


def _count(message, name="n"):
    value = message.get(name, settings.RTREC["DEFAULT_N"])
    limit = settings.RTREC["MAX_N"]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"{name!r} must be a whole number")
    if not 1 <= value <= limit:
        raise _invalid(f"{name!r} must be between 1 and {limit}")
    return value


def _rating(message):
    value = message.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid("'value' must be a number for a rate event")
    # Only a float can be infinite; math.isfinite() on an int of hundreds
    # of digits would overflow instead of answering.
    if isinstance(value, float) and not math.isfinite(value):
        raise _invalid("'value' must be a finite number")
    low, high = settings.RTREC["RATING_SCALE"]
    if not low <= value <= high:
        raise _invalid(f"'value' must be between {low:g} and {high:g}")
    return float(value)


EVENT_FIELDS = {"type", "event", "item", "value", "event_id", "recommendation_id"}


def validate_event(message, extra_fields=()):
    _check_fields(message, EVENT_FIELDS | set(extra_fields), required=("event", "item"))

    kind = message["event"]
    if not isinstance(kind, str) or kind not in EVENT_KINDS:
        choices = ", ".join(sorted(EVENT_KINDS))
        raise _invalid(f"'event' must be one of: {choices}")

    value = _rating(message) if kind == Interaction.Kind.RATE else None
    return EventMessage(
        kind=kind,
        item=_identifier(message, "item"),
        value=value,
        event_id=_identifier(message, "event_id", required=False),
        recommendation_id=_recommendation_id(message),
    )


def validate_recommend(message):
    _check_fields(message, {"type", "n", "exclude", "genre"})

    exclude = message.get("exclude", [])
    if not isinstance(exclude, list) or len(exclude) > MAX_EXCLUDE:
        raise _invalid(f"'exclude' must be a list of at most {MAX_EXCLUDE} item ids")
    if not all(isinstance(i, str) and len(i) <= MAX_ID_LENGTH for i in exclude):
        raise _invalid("'exclude' must hold item ids as strings")
    if not all(is_storable_text(i) for i in exclude):
        raise _invalid("'exclude' holds control characters or lone surrogates")

    return RecommendMessage(
        n=_count(message),
        exclude=tuple(exclude),
        genre=_identifier(message, "genre", required=False),
    )


def validate_similar(message):
    _check_fields(message, {"type", "item", "n"}, required=("item",))
    return SimilarMessage(item=_identifier(message, "item"), n=_count(message))


@dataclass(frozen=True)
class TrendingMessage:
    n: int


def validate_trending(message):
    _check_fields(message, {"type", "n"})
    return TrendingMessage(n=_count(message))


def validate_ping(message):
    _check_fields(message, {"type"})
    return PingMessage()


VALIDATORS = {
    "event": validate_event,
    "recommend": validate_recommend,
    "similar": validate_similar,
    "trending": validate_trending,
    "ping": validate_ping,
}


def validate_request_id(message):
    request_id = message.pop("request_id", None)
    if request_id is None:
        return None
    if isinstance(request_id, bool) or not isinstance(request_id, str | int):
        raise _invalid("'request_id' must be a string or a whole number")
    if len(str(request_id)) > MAX_ID_LENGTH:
        raise _invalid(f"'request_id' is longer than {MAX_ID_LENGTH} characters")
    if isinstance(request_id, str) and not is_storable_text(request_id):
        raise _invalid("'request_id' holds control characters or lone surrogates")
    return request_id


def validate_message(message):
    """Validate one WebSocket request: returns (type, parsed message)."""
    if not isinstance(message, dict):
        raise _invalid("a message must be a JSON object")

    kind = message.get("type")
    if not isinstance(kind, str):
        raise _invalid("a message needs a 'type' string")
    if kind not in VALIDATORS:
        choices = ", ".join(VALIDATORS)
        raise MessageError("unknown_type", f"unknown type {kind[:40]!r}; use {choices}")
    return kind, VALIDATORS[kind](message)
