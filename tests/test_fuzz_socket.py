"""Generated garbage at the WebSocket consumer, through the real ASGI app.

Whatever arrives, the socket answers each frame without a server error,
stores a row only for what it acknowledged, and still answers a ping.
"""

import asyncio
import json
import logging

import pytest
from channels.db import database_sync_to_async
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.models import Interaction
from events.validation import EVENT_KINDS
from tests.conftest import socket_as

pytestmark = pytest.mark.django_db(transaction=True)

CLIENT_ERRORS = {
    "invalid_json",
    "invalid_message",
    "unknown_type",
    "unknown_item",
    "rate_limited",
    "too_large",
    "forbidden",
}
ANSWER_TYPES = {"ack", "recommendations", "similar", "pong", "error"}

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# Every code point, lone surrogates included, and the awkward ones often.
characters = st.characters(exclude_categories=()) | st.sampled_from(
    ["\x00", "\n", "\ud800", "\udfff", "\u202e", "\u200b", "\ufeff", '"', "\\"]
)
texts = st.text(characters, max_size=40)
numbers = (
    st.integers()
    | st.integers(min_value=10**18, max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
)
scalars = st.none() | st.booleans() | numbers | texts
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4)
    ),
    max_leaves=12,
)


# Strings that have broken a server before: storable only in some
# databases, or only after a normalisation, or not at all.
nasty_strings = st.sampled_from(["\ud800", "1\x00", "x" * 65, " "])


def field(*likely):
    return st.sampled_from(likely) | nasty_strings | texts | json_values


message_shaped = st.fixed_dictionaries(
    {"type": field("event", "recommend", "similar", "trending", "ping")},
    optional={
        "event": field(*sorted(EVENT_KINDS)),
        "item": field("1", "7", "40", "unknown"),
        "value": field(1, 3.5, 5),
        "n": field(1, 10, 100),
        "exclude": field(["1"], []),
        "genre": field("Comedy", "Drama"),
        "event_id": field("fz-1", "fz-2"),
        "recommendation_id": field("00000000-0000-4000-8000-000000000000"),
        "request_id": field("r-1", 7),
        "user": field("u2"),
    },
)


VALID = [
    {"type": "event", "event": "click", "item": "7", "event_id": "fz-1"},
    {"type": "event", "event": "rate", "item": "40", "value": 4.5},
    {"type": "recommend", "n": 5, "exclude": ["1"], "genre": "Comedy"},
    {"type": "similar", "item": "7", "n": 3},
    {"type": "trending", "n": 3},
    {"type": "ping", "request_id": "r-1"},
]
# Half of the wrong values are the known troublemakers.
hostile_values = st.one_of(
    nasty_strings, nasty_strings, nasty_strings, texts, numbers, json_values
)


@st.composite
def almost_valid(draw):
    """A valid message with one field dropped, replaced or added: each
    wrong value meets the validator with everything else right."""
    message = dict(draw(st.sampled_from(VALID)))
    # "type" last: generation leans towards the first choices.
    names = [n for n in message if n != "type"] + ["user", "extra", "type"]
    name = draw(st.sampled_from(names))
    if name in message and name != "type" and draw(st.booleans()):
        del message[name]
    else:
        message[name] = draw(hostile_values)
    return message


def as_frame(value):
    # allow_nan: NaN and Infinity go out as the bare literals JSON lacks.
    return json.dumps(value, allow_nan=True, ensure_ascii=False)


frames = st.one_of(
    almost_valid().map(as_frame),
    almost_valid().map(as_frame),
    message_shaped.map(as_frame),
    json_values.map(as_frame),
    texts,
    st.binary(max_size=40),
)


@database_sync_to_async
def stored_for(external_id):
    return Interaction.objects.filter(user__external_id=external_id).count()


async def send_frame(socket, frame):
    if isinstance(frame, bytes):
        await socket.send_input({"type": "websocket.receive", "bytes": frame})
    else:
        await socket.send_input({"type": "websocket.receive", "text": frame})


async def answers_until_pong(socket, probe):
    """Every message up to the pong that answers the probe ping."""
    await socket.send_to(text_data=json.dumps({"type": "ping", "request_id": probe}))
    answers = []
    while True:
        answer = json.loads(await socket.receive_from(timeout=5))
        if answer == {"type": "pong", "request_id": probe}:
            return answers
        answers.append(answer)


async def exchange(frames_to_send):
    before = await stored_for("u1")
    socket = await socket_as("u1")
    answers = []
    for n, frame in enumerate(frames_to_send):
        await send_frame(socket, frame)
        answers += await answers_until_pong(socket, f"probe-{n}")
    final = await answers_until_pong(socket, "last")
    await socket.disconnect()
    stored = await stored_for("u1") - before
    return answers + final, stored


@pytest.fixture
def roomy_limits(settings):
    # The bucket is tested on its own; here every frame must be read.
    settings.RTREC = {**settings.RTREC, "WS_RATE": 10_000, "WS_BURST": 10_000}


@FUZZ
@given(sent=st.lists(frames, min_size=1, max_size=6))
def test_garbage_never_breaks_the_socket(catalog, roomy_limits, caplog, sent):
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        answers, stored = asyncio.run(exchange(sent))

    assert {a.get("type") for a in answers} <= ANSWER_TYPES
    errors = [a for a in answers if a["type"] == "error"]
    assert {e["code"] for e in errors} <= CLIENT_ERRORS, errors
    acked = [a for a in answers if a["type"] == "ack" and not a["duplicate"]]
    assert stored == len(acked)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@FUZZ
@given(frame=almost_valid().map(as_frame))
def test_a_refused_message_stores_nothing(catalog, roomy_limits, frame):
    answers, stored = asyncio.run(exchange([frame]))

    if any(a["type"] == "error" for a in answers):
        assert stored == 0
        assert not any(a["type"] == "ack" for a in answers)
