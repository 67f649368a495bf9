"""The live socket: events in, fresh recommendations out."""

import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError

from events.ingestion import store_event
from events.validation import MessageError, validate_message, validate_request_id
from recommendations.broadcast import MODELS_GROUP, user_group
from recommendations.impressions import impressions, recommend_and_record
from recommendations.serving import holder
from recommendations.throttle import TokenBucket

logger = logging.getLogger(__name__)

UNAVAILABLE = MessageError(
    "unavailable", "the database is unavailable: nothing was stored, retry later"
)
SERVER_ERROR = MessageError(
    "server_error", "the server failed to answer this message; it was logged"
)


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


class RecommendationConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        refusal = self.scope.get("refusal")
        await self.accept()
        if refusal is not None:
            # Accept first so the client can read why before the close.
            await self._send_json(
                {"type": "error", "code": "forbidden", "message": refusal.message}
            )
            await self.close(code=refusal.close_code)
            return

        self.end_user = self.scope["end_user"]
        self.group = user_group(self.end_user.external_id)
        limits = settings.RTREC
        self.bucket = TokenBucket(limits["WS_RATE"], limits["WS_BURST"])
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.channel_layer.group_add(MODELS_GROUP, self.channel_name)

    async def disconnect(self, code):
        await database_sync_to_async(impressions.flush)()
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await self.channel_layer.group_discard(MODELS_GROUP, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        if getattr(self, "group", None) is None:
            return
        request_id = None
        try:
            message = self._decode(text_data, bytes_data)
            request_id = validate_request_id(message)
            kind, parsed = validate_message(message)
            await getattr(self, f"handle_{kind}")(parsed, request_id)
        except MessageError as exc:
            logger.debug("refused a message: %s", exc.message)
            await self._send_error(exc, request_id)
        except DatabaseError:
            # Nothing was acknowledged, so the client still holds the event
            # and may retry it with the same event_id.
            logger.warning("database unavailable (request %s)", request_id)
            await self._send_error(UNAVAILABLE, request_id)
        except Exception:
            logger.exception("failed to answer request %s", request_id)
            await self._send_error(SERVER_ERROR, request_id)

    def _decode(self, text_data, bytes_data):
        if not self.bucket.allow():
            raise MessageError("rate_limited", "too many messages: slow down")
        if text_data is None:
            raise MessageError(
                "invalid_message", "send JSON in text frames, not binary ones"
            )

        limit = settings.RTREC["MAX_FRAME_BYTES"]
        if len(text_data) > limit or len(text_data.encode()) > limit:
            raise MessageError("too_large", f"a message may be at most {limit} bytes")
        try:
            message = json.loads(text_data)
        except (ValueError, RecursionError):
            raise MessageError(
                "invalid_json", "the message is not valid JSON"
            ) from None
        if not isinstance(message, dict):
            raise MessageError("invalid_message", "a message must be a JSON object")
        return message

    async def handle_event(self, event, request_id):
        stored = await database_sync_to_async(self._store)(event)
        await self._send_json(
            {"type": "ack", "event_id": stored.event_id, "duplicate": stored.duplicate},
            request_id,
        )

        recommendation = await self._recommend(n=settings.RTREC["DEFAULT_N"])
        await self.channel_layer.group_send(
            self.group,
            {
                "type": "recommendations.push",
                "payload": recommendations_payload(recommendation),
                "origin": self.channel_name,
                "request_id": request_id,
            },
        )

    async def handle_recommend(self, request, request_id):
        recommendation = await self._recommend(
            n=request.n, exclude=request.exclude, genre=request.genre
        )
        await self._send_json(recommendations_payload(recommendation), request_id)

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
        request_id = None
        if message.get("origin") == self.channel_name:
            request_id = message.get("request_id")
        await self._send_json(message["payload"], request_id)

    async def model_activated(self, message):
        """A models-group message: a new version is active everywhere."""
        await database_sync_to_async(holder.ensure_version)(message["version"])
        await self._send_json({"type": "model_updated", "model": message["version"]})

    def _store(self, event):
        stored = store_event(self.end_user, event)
        if not stored.duplicate:
            holder.note_event(event.item, event.kind, event.value)
        return stored

    async def _recommend(self, **options):
        return await database_sync_to_async(recommend_and_record)(
            self.end_user, **options
        )

    async def _send_error(self, error, request_id):
        payload = {"type": "error", "code": error.code, "message": error.message}
        await self._send_json(payload, request_id)

    async def _send_json(self, payload, request_id=None):
        if request_id is not None:
            payload = dict(payload, request_id=request_id)
        await self.send(text_data=json.dumps(payload))
