"""The live socket: events in, fresh recommendations out."""

import asyncio
import json
import logging
import time
import uuid

import redis
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError

from events.ingestion import store_event
from events.validation import MessageError, validate_message, validate_request_id
from recommendations.answers import AnswerCache, same_source
from recommendations.broadcast import MODELS_GROUP, user_group
from recommendations.impressions import impressions, recommend_and_record, shown_in
from recommendations.metrics_counters import counters
from recommendations.serving import holder
from recommendations.socket_auth import client_address
from recommendations.throttle import TokenBucket, socket_slots

logger = logging.getLogger(__name__)

UNAVAILABLE = MessageError(
    "unavailable", "the database is unavailable: nothing was stored, retry later"
)
SERVER_ERROR = MessageError(
    "server_error", "the server failed to answer this message; it was logged"
)

CLOSE_TOO_MANY = 4429
CLOSE_IDLE = 4408

# A channel layer that stops answering (Redis down) must not hold up a
# reply for longer than this, nor be tried again sooner than the retry.
LAYER_TIMEOUT_SECONDS = 2.0
LAYER_RETRY_SECONDS = 1.0
# asyncio's TimeoutError is an OSError, so a timed-out call is one too.
LAYER_ERRORS = (redis.RedisError, OSError)

# Refused messages are forgiven over this many seconds: a socket that
# keeps being refused for longer than that is closed.
STRIKE_WINDOW_SECONDS = 10.0


def recommendations_payload(recommendation):
    payload = {
        "type": "recommendations",
        "recommendation_id": recommendation.recommendation_id,
        "model": recommendation.model_version,
        "strategy": recommendation.strategy,
        "items": recommendation.as_items(),
    }
    if recommendation.experiment:
        payload["experiment"] = {
            "name": recommendation.experiment,
            "arm": recommendation.arm,
        }
    return payload


class LayerHealth:
    """Whether this process's channel layer answered last time, so an
    outage is logged once, not once per socket and message."""

    def __init__(self):
        self.down = False

    def failed(self, exc):
        if self.down:
            logger.debug("the channel layer is still unreachable: %s", exc)
            return
        self.down = True
        logger.warning(
            "the channel layer is unreachable (%s): each socket is served "
            "by this process alone until it is back",
            exc,
        )

    def answered(self):
        if self.down:
            self.down = False
            logger.info("the channel layer is reachable again")


layer_health = LayerHealth()


class RecommendationConsumer(AsyncWebsocketConsumer):
    connection_id = "-"
    end_user = None
    address = None
    group = None
    slot = None
    closing = False
    housekeeper = None
    joined = False

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Also when the server cancels the consumer without a disconnect.
            self._release()

    # channels' AsyncConsumer ends the consumer, and with it the socket, on
    # the first error from the layer's receive(). A Redis restart must not
    # drop every socket, so the layer is waited for here instead.
    @property
    def channel_receive(self):
        return self._receive_from_layer

    @channel_receive.setter
    def channel_receive(self, receive):
        self._layer_receive = receive

    async def _receive_from_layer(self):
        while True:
            try:
                message = await self._layer_receive()
            except LAYER_ERRORS as exc:
                self._layer_failed(exc)
                await asyncio.sleep(LAYER_RETRY_SECONDS)
                continue
            layer_health.answered()
            return message

    async def connect(self):
        self.connection_id = uuid.uuid4().hex[:12]
        self.answers = AnswerCache(settings.RTREC["ANSWER_REUSE_SECONDS"])
        self.address = client_address(self.scope)
        # Accept first, even to refuse, so the client can read why.
        await self.accept()

        refusal = self.scope.get("refusal")
        if refusal is not None:
            error = MessageError(refusal.code, refusal.message)
            await self._refuse(error, refusal.close_code)
            return

        self.end_user = self.scope["end_user"]
        if not await self._take_slot():
            return

        limits = settings.RTREC
        self.group = user_group(self.end_user.external_id)
        self.bucket = TokenBucket(limits["WS_RATE"], limits["WS_BURST"])
        self.strikes = _strike_bucket(limits["WS_RATE_STRIKES"])
        self.last_heard = time.monotonic()
        self.joined = await self._join_groups()
        self.housekeeper = asyncio.create_task(self._keep_house())

    async def disconnect(self, code):
        self._stop_housekeeping()
        await self._flush_impressions()
        if self.group is not None:
            await self._leave_groups()
        self._release()

    async def receive(self, text_data=None, bytes_data=None):
        if self.group is None or self.closing:
            return
        self.last_heard = time.monotonic()
        request_id = None
        try:
            message = self._decode(text_data, bytes_data)
            request_id = validate_request_id(message)
            kind, parsed = validate_message(message)
            await getattr(self, f"handle_{kind}")(parsed, request_id)
        except MessageError as exc:
            logger.debug(
                "socket %s refused request %s: %s",
                self.connection_id,
                request_id,
                exc.message,
            )
            await self._send_error(exc, request_id)
            if exc.code == "rate_limited":
                await self._strike()
        except DatabaseError:
            # Nothing was acknowledged, so the client still holds the event
            # and may retry it with the same event_id.
            logger.warning(
                "socket %s: database unavailable (request %s)",
                self.connection_id,
                request_id,
            )
            await self._send_error(UNAVAILABLE, request_id)
        except Exception:
            logger.exception(
                "socket %s failed to answer request %s", self.connection_id, request_id
            )
            await self._send_error(SERVER_ERROR, request_id)

    def _decode(self, text_data, bytes_data):
        if not self.bucket.allow():
            raise MessageError("rate_limited", "too many messages: slow down")
        if text_data is None:
            raise MessageError(
                "invalid_message", "send JSON in text frames, not binary ones"
            )

        limit = settings.RTREC["MAX_FRAME_BYTES"]
        # Counting characters first spares encoding a huge frame.
        if len(text_data) > limit or _utf8_length(text_data) > limit:
            raise MessageError("too_large", f"a message may be at most {limit} bytes")
        message = parse_json(text_data)
        if not isinstance(message, dict):
            raise MessageError("invalid_message", "a message must be a JSON object")
        return message

    async def handle_event(self, event, request_id):
        arrived = time.time()
        # Also if the push below fails: no list made before this event
        # may be shown again.
        self.answers.clear()
        stored = await database_sync_to_async(self._store)(event)
        duplicate = "true" if stored.duplicate else "false"
        counters.increment("events_stored_total", via="socket", duplicate=duplicate)
        await self._send_json(
            {"type": "ack", "event_id": stored.event_id, "duplicate": stored.duplicate},
            request_id,
        )
        await self._push_after(arrived, request_id)

    async def _push_after(self, arrived, request_id):
        try:
            recommendation = await self._recommend(n=settings.RTREC["DEFAULT_N"])
        except DatabaseError:
            # The event is stored and acknowledged; only its push is lost,
            # and the next request answers from the database again.
            logger.warning(
                "socket %s: no push, database unavailable", self.connection_id
            )
            return

        push = {
            "type": "recommendations.push",
            "payload": recommendations_payload(recommendation),
            "origin": self.channel_name,
            "request_id": request_id,
            "event_at": arrived,
        }
        if not await self._through_layer(
            self.channel_layer.group_send(self.group, push)
        ):
            # Without the layer, this socket at least sees its own push.
            await self.recommendations_push(push)

    async def handle_recommend(self, request, request_id):
        key = (request.n, request.exclude, request.genre)
        kept = self.answers.get(key, holder.served_by)
        if kept is not None:
            payload, experiment_pk = kept
            await self._send_json(payload, request_id)
            await self._note_shown(payload, experiment_pk)
            return

        served_by = holder.served_by
        recommendation = await self._recommend(
            n=request.n, exclude=request.exclude, genre=request.genre
        )
        payload = recommendations_payload(recommendation)
        if same_source(served_by, holder.served_by):
            self.answers.keep(key, payload, _experiment_pk(payload), served_by)
        await self._send_json(payload, request_id)

    async def handle_similar(self, request, request_id):
        similar = await database_sync_to_async(holder.similar)(request.item, request.n)
        await self._send_json(
            {
                "type": "similar",
                "item": request.item,
                "strategy": similar.strategy,
                "model": similar.model_version,
                "items": similar.as_items(),
            },
            request_id,
        )

    async def handle_trending(self, request, request_id):
        trending = await database_sync_to_async(holder.trending)(request.n)
        await self._send_json(recommendations_payload(trending), request_id)

    async def handle_ping(self, request, request_id):
        await self._send_json({"type": "pong"}, request_id)

    async def recommendations_push(self, message):
        """A user-group message: fresh recommendations after an event."""
        self.answers.clear()
        request_id = None
        if message.get("origin") == self.channel_name:
            request_id = message.get("request_id")
        await self._send_json(message["payload"], request_id)

        arrived = message.get("event_at")
        if isinstance(arrived, float):
            counters.observe("push_latency_seconds", max(0.0, time.time() - arrived))

    async def model_activated(self, message):
        """A models-group message: a new version is active everywhere."""
        version = message["version"]
        self.answers.clear()
        try:
            await database_sync_to_async(holder.ensure_version)(version)
        except DatabaseError as exc:
            # The holder looks again at its next request, within a second.
            logger.warning(
                "socket %s: cannot load %s: %s", self.connection_id, version, exc
            )
            return
        await self._send_json({"type": "model_updated", "model": version})

    async def catalog_changed(self, message):
        """A models-group message: items changed in some process."""
        self.answers.clear()
        changed_at = message.get("at")
        if not isinstance(changed_at, float) or holder.checked_since >= changed_at:
            return
        try:
            await database_sync_to_async(holder.refresh_since)(changed_at)
        except DatabaseError as exc:
            # The holder looks again at its next request, within a second.
            logger.warning(
                "socket %s: cannot reload the catalog: %s", self.connection_id, exc
            )

    def _store(self, event):
        stored = store_event(self.end_user, event)
        if not stored.duplicate:
            holder.note_event(event.item, event.kind, event.value)
        return stored

    async def _recommend(self, **options):
        return await database_sync_to_async(recommend_and_record)(
            self.end_user, **options
        )

    async def _note_shown(self, payload, experiment_pk):
        if impressions.add(self.end_user.pk, shown_in(payload), experiment_pk):
            await self._flush_impressions()

    async def _take_slot(self):
        limits = settings.RTREC
        slot = socket_slots.slot(self.end_user.pk, self.address, self.connection_id)
        why = await socket_slots.take(
            slot,
            limits["WS_MAX_SOCKETS_PER_USER"],
            limits["WS_MAX_SOCKETS_PER_ADDRESS"],
        )
        if why is not None:
            error = MessageError("rate_limited", f"{why}: close one first")
            await self._refuse(error, CLOSE_TOO_MANY)
            return False

        self.slot = slot
        counters.adjust("sockets_open", 1)
        return True

    def _release(self):
        self._stop_housekeeping()
        if self.slot is not None:
            socket_slots.give_back(self.slot)
            counters.adjust("sockets_open", -1)
            self.slot = None

    async def _strike(self):
        if self.strikes is None or self.strikes.allow():
            return
        error = MessageError(
            "rate_limited", "too many messages for too long: the socket is closed"
        )
        await self._refuse(error, CLOSE_TOO_MANY)

    async def _refuse(self, error, close_code):
        """Tell the client why, then close: each refusal is logged once."""
        logger.info(
            "socket %s (user %s, address %s) closed with %s: %s",
            self.connection_id,
            self.end_user.external_id if self.end_user else "-",
            self.address or "-",
            close_code,
            error.message,
        )
        counters.increment("sockets_refused_total", close_code=str(close_code))
        self.closing = True
        await self._send_error(error, None)
        await self.close(code=close_code)

    async def _keep_house(self):
        """Close the socket once idle; keep its groups joined, because a
        restarted Redis forgets them and channels_redis lets an entry
        expire after a day."""
        limits = settings.RTREC
        idle, refresh = limits["WS_IDLE_SECONDS"], limits["WS_GROUP_REFRESH_SECONDS"]
        next_join = time.monotonic() + refresh
        try:
            while not self.closing:
                await asyncio.sleep(self._seconds_to_wake(idle, next_join))
                now = time.monotonic()
                if idle and now - self.last_heard >= idle:
                    await self._close_idle(idle)
                    return
                if not self.joined or now >= next_join:
                    self.joined = await self._join_groups()
                    next_join = time.monotonic() + refresh
                    await socket_slots.refresh(self.slot)
        except Exception:
            logger.exception("socket %s: housekeeping failed", self.connection_id)

    def _seconds_to_wake(self, idle, next_join):
        now = time.monotonic()
        wake = next_join if self.joined else now + LAYER_RETRY_SECONDS
        if idle:
            wake = min(wake, self.last_heard + idle)
        return max(0.0, wake - now)

    async def _close_idle(self, idle):
        logger.info(
            "socket %s (user %s) closed after %gs without a message",
            self.connection_id,
            self.end_user.external_id,
            idle,
        )
        counters.increment("sockets_refused_total", close_code=str(CLOSE_IDLE))
        self.closing = True
        await self.close(code=CLOSE_IDLE)

    def _stop_housekeeping(self):
        task, self.housekeeper = self.housekeeper, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _join_groups(self):
        for group in (self.group, MODELS_GROUP):
            joining = self.channel_layer.group_add(group, self.channel_name)
            if not await self._through_layer(joining):
                return False
        return True

    async def _leave_groups(self):
        for group in (self.group, MODELS_GROUP):
            leaving = self.channel_layer.group_discard(group, self.channel_name)
            await self._through_layer(leaving)

    async def _through_layer(self, call):
        """Await a channel layer call; False if the layer did not answer."""
        try:
            await asyncio.wait_for(call, LAYER_TIMEOUT_SECONDS)
        except LAYER_ERRORS as exc:
            self._layer_failed(exc)
            return False
        layer_health.answered()
        return True

    def _layer_failed(self, exc):
        self.joined = False
        layer_health.failed(exc)

    async def _flush_impressions(self):
        try:
            await database_sync_to_async(impressions.flush)()
        except DatabaseError as exc:
            logger.warning(
                "socket %s: shown lists not written: %s", self.connection_id, exc
            )

    async def _send_error(self, error, request_id):
        counters.increment("errors_total", code=error.code, via="socket")
        payload = {"type": "error", "code": error.code, "message": error.message}
        await self._send_json(payload, request_id)

    async def _send_json(self, payload, request_id=None):
        if request_id is not None:
            payload = dict(payload, request_id=request_id)
        await self.send(text_data=json.dumps(payload))


def _experiment_pk(payload):
    experiment = holder.experiment
    if experiment is None or "experiment" not in payload:
        return None
    return experiment.pk


def _strike_bucket(strikes):
    if not strikes:
        return None
    return TokenBucket(strikes / STRIKE_WINDOW_SECONDS, strikes)


def _utf8_length(text):
    # surrogatepass: a lone surrogate is measured here and refused later.
    return len(text.encode("utf-8", "surrogatepass"))


def parse_json(text):
    """One decoded JSON value, strictly: no NaN or Infinity, no repeated
    keys (which two parsers could read differently)."""
    try:
        return json.loads(
            text, parse_constant=_not_json, object_pairs_hook=_without_repeats
        )
    except (ValueError, RecursionError):
        raise MessageError("invalid_json", "the message is not valid JSON") from None


def _not_json(constant):
    raise ValueError(f"{constant} is not a JSON number")


def _without_repeats(pairs):
    message = dict(pairs)
    if len(message) != len(pairs):
        seen = set()
        repeated = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise MessageError(
            "invalid_message", f"the field {repeated[:40]!r} appears twice"
        )
    return message
