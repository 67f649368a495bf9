"""REST endpoints: parse, call the domain or the model holder, render."""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import Http404, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
)
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from events.models import EndUser, Item
from events.tokens import make_ws_token
from events.validation import validate_recommend
from recommendations.api import serializers
from recommendations.api.errors import ApiError
from recommendations.api.ingestion import MAX_BATCH, InvalidBatch, store_rows
from recommendations.api.permissions import (
    IsOperator,
    ReadOrOperator,
    end_user_for,
    is_operator,
)
from recommendations.broadcast import announce_model, catalog_changed, user_group
from recommendations.consumers import recommendations_payload
from recommendations.impressions import recommend_and_record
from recommendations.metrics_counters import counters
from recommendations.models import ModelVersion
from recommendations.serving import holder

logger = logging.getLogger(__name__)

# Above this many end users in one request, it is a bulk load: nobody is
# watching each of those users' pages, and scoring each would be slow.
PUSH_USER_LIMIT = 10


def errors(*statuses):
    """Schema entries for the error answers an operation can give; any
    call with credentials may also be refused or throttled."""
    codes = sorted({*statuses, 401, 403, 429})
    return {code: serializers.ErrorSerializer for code in codes}


def parse_query(serializer_class, request):
    query = serializer_class(data=request.query_params)
    query.is_valid(raise_exception=True)
    return query


@extend_schema_view(
    list=extend_schema(
        parameters=[serializers.ItemFilterSerializer],
        responses={200: serializers.ItemSerializer(many=True), **errors(400, 404)},
    ),
    retrieve=extend_schema(responses={200: serializers.ItemSerializer, **errors(404)}),
    create=extend_schema(
        responses={201: serializers.ItemSerializer, **errors(400, 415)}
    ),
    update=extend_schema(
        responses={200: serializers.ItemSerializer, **errors(400, 404, 415)}
    ),
    partial_update=extend_schema(
        responses={200: serializers.ItemSerializer, **errors(400, 404, 415)}
    ),
    destroy=extend_schema(responses={204: None, **errors(404)}),
)
class ItemViewSet(viewsets.ModelViewSet):
    """The catalog. Anyone signed in reads it; operators change it."""

    queryset = Item.objects.all()
    serializer_class = serializers.ItemSerializer
    permission_classes = [ReadOrOperator]
    lookup_field = "external_id"
    lookup_url_kwarg = "item_id"
    lookup_value_regex = "[^/]+"

    def get_serializer_class(self):
        if self.action in ("update", "partial_update"):
            return serializers.ItemUpdateSerializer
        return serializers.ItemSerializer

    def get_queryset(self):
        items = super().get_queryset()
        if self.action != "list":
            return items

        filters = parse_query(serializers.ItemFilterSerializer, self.request)
        search, genre, active = (
            filters.validated_data.get(name) for name in ("search", "genre", "active")
        )
        if search:
            items = items.filter(title__icontains=search)
        if genre:
            items = items.in_genre(genre)
        if active is not None:
            items = items.filter(is_active=active)
        return items

    def get_object(self):
        try:
            return super().get_object()
        except Http404:
            message = f"no item has the id {self.kwargs['item_id']!r}"
            raise ApiError(404, "unknown_item", message) from None

    def perform_create(self, serializer):
        super().perform_create(serializer)
        catalog_changed()

    def perform_update(self, serializer):
        super().perform_update(serializer)
        catalog_changed()

    def perform_destroy(self, instance):
        super().perform_destroy(instance)
        catalog_changed()

    @extend_schema(
        parameters=[serializers.CountQuerySerializer],
        responses={200: serializers.SimilarSerializer, **errors(400, 404)},
    )
    @action(detail=True, methods=["get"], permission_classes=[IsAuthenticated])
    def similar(self, request, item_id):
        query = parse_query(serializers.CountQuerySerializer, request)
        similar = holder.similar(item_id, query.count)
        return Response(
            {
                "type": "similar",
                "item": item_id,
                "strategy": similar.strategy,
                "model": similar.model_version,
                "items": similar.as_items(),
            }
        )


ACK_OR_ACKS = PolymorphicProxySerializer(
    component_name="AckOrAcks",
    serializers=[serializers.AckSerializer, serializers.AckSerializer(many=True)],
    resource_type_field_name=None,
    many=False,
)


class EventsView(APIView):
    """Store one event or a batch, all or nothing; acknowledge each."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=PolymorphicProxySerializer(
            component_name="EventOrBatch",
            serializers=[
                serializers.EventSerializer,
                serializers.EventSerializer(
                    many=True, min_length=1, max_length=MAX_BATCH
                ),
            ],
            resource_type_field_name=None,
            many=False,
        ),
        responses={
            201: OpenApiResponse(
                ACK_OR_ACKS, description="an ack, or a list of acks in the order sent"
            ),
            200: OpenApiResponse(
                ACK_OR_ACKS, description="every event was a duplicate: nothing stored"
            ),
            **errors(400, 413, 415),
        },
    )
    def post(self, request):
        rows = _event_rows(request.data)
        own_user = None
        if not is_operator(request):
            own_user = EndUser.objects.for_account(request.user).external_id

        try:
            batch = store_rows(rows, own_user)
        except InvalidBatch as exc:
            raise _invalid_events(exc, len(rows)) from None

        _count_stored(batch.acks)
        _after_storing(batch.stored)
        body = batch.acks if isinstance(request.data, list) else batch.acks[0]
        stored_any = bool(batch.stored)
        return Response(body, status.HTTP_201_CREATED if stored_any else 200)


def _event_rows(data):
    if isinstance(data, dict):
        return [data]
    if not isinstance(data, list) or not data:
        raise ApiError(400, "invalid_input", "send an event object or a list of them")
    if len(data) > MAX_BATCH:
        raise ApiError(400, "too_large", f"send at most {MAX_BATCH} events at once")
    return data


def _invalid_events(exc, n_rows):
    rows = [error.as_dict() for error in exc.errors]
    message = f"{len(rows)} of {n_rows} events are not valid; none was stored"
    return ApiError(400, "invalid_events", message, rows=rows)


def _count_stored(acks):
    duplicates = sum(ack["duplicate"] for ack in acks)
    for duplicate, amount in (("false", len(acks) - duplicates), ("true", duplicates)):
        if amount:
            counters.increment(
                "events_stored_total", amount, via="rest", duplicate=duplicate
            )


def _after_storing(stored):
    holder.note_events([(e.event.item, e.event.kind, e.event.value) for e in stored])

    users = {e.user for e in stored}
    if len(users) <= PUSH_USER_LIMIT:
        for external_id in sorted(users):
            _push_recommendations(EndUser.objects.get(external_id=external_id))


def _push_recommendations(end_user):
    """Fresh picks to every open socket of the user, as a socket event does."""
    layer = get_channel_layer()
    if layer is None:
        return
    recommendation = recommend_and_record(end_user, n=settings.RTREC["DEFAULT_N"])
    message = {
        "type": "recommendations.push",
        "payload": recommendations_payload(recommendation),
        "origin": None,
        "request_id": None,
    }
    async_to_sync(layer.group_send)(user_group(end_user.external_id), message)


class RecommendationsView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        parameters=[serializers.RecommendationQuerySerializer],
        responses={200: serializers.RecommendationsSerializer, **errors(400)},
    )
    def get(self, request):
        query = parse_query(serializers.RecommendationQuerySerializer, request)
        data = query.validated_data
        # The socket's own rules, on the values the query string held.
        options = validate_recommend(
            {
                "n": query.count,
                "exclude": data.get("exclude", []),
                "genre": data.get("genre"),
            }
        )
        end_user = end_user_for(request, data.get("user"))

        recommendation = recommend_and_record(
            end_user, n=options.n, exclude=options.exclude, genre=options.genre
        )
        return Response(recommendations_payload(recommendation))


@extend_schema_view(
    list=extend_schema(
        responses={200: serializers.ModelVersionSerializer(many=True), **errors(404)}
    ),
    retrieve=extend_schema(
        responses={200: serializers.ModelVersionSerializer, **errors(404)}
    ),
)
class ModelVersionViewSet(viewsets.ReadOnlyModelViewSet):
    """Trained versions with their metrics; activate one, or roll back."""

    queryset = ModelVersion.objects.all()
    serializer_class = serializers.ModelVersionSerializer
    permission_classes = [IsOperator]
    lookup_field = "version"
    lookup_value_regex = "[^/]+"

    def get_object(self):
        try:
            return super().get_object()
        except Http404:
            message = f"no model version {self.kwargs['version']!r}"
            raise ApiError(404, "not_found", message) from None

    @extend_schema(
        request=None,
        responses={200: serializers.ModelVersionSerializer, **errors(404, 409)},
    )
    @action(detail=True, methods=["post"])
    def activate(self, request, version):
        model_version = self.get_object()
        if not model_version.artifact_path.is_file():
            raise ApiError(
                409,
                "artifact_missing",
                f"the artifact of {version!r} is not in the model folder",
            )

        model_version.activate()
        announce_model(model_version.version)
        holder.ensure_version(model_version.version)
        logger.info("model %s activated through the API", model_version.version)
        return Response(self.get_serializer(model_version).data)


class WsTokenView(APIView):
    """A signed, expiring token a WebSocket client uses to act as a user."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=serializers.WsTokenRequestSerializer,
        responses={201: serializers.WsTokenSerializer, **errors(400, 415)},
    )
    def post(self, request):
        body = serializers.WsTokenRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        end_user = end_user_for(request, body.validated_data.get("user"))

        token = make_ws_token(end_user.external_id, body.ttl_seconds)
        return Response(
            {
                "token": token,
                "user": end_user.external_id,
                "expires_in": body.ttl_seconds,
            },
            status=status.HTTP_201_CREATED,
        )


class HealthView(APIView):
    """Liveness, and what this process serves."""

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = []

    @extend_schema(
        responses={200: serializers.HealthSerializer, 503: serializers.HealthSerializer}
    )
    def get(self, request):
        report = {
            "ok": True,
            "model": None,
            "model_error": None,
            "channel_layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
            "database": connection.vendor,
        }
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            holder.refresh()
        except DatabaseError as exc:
            logger.warning("health check: the database did not answer: %s", exc)
            report.update(ok=False, model_error="the database did not answer")
            return Response(report, status=status.HTTP_503_SERVICE_UNAVAILABLE)

        model = holder.model
        report.update(model=model.version if model else None)
        report.update(model_error=holder.load_error)
        return Response(report)


class MetricsView(APIView):
    """This process's counters in the Prometheus text format.

    Each server process counts its own sockets and events; a scraper
    reads every process (each listens on its own port).
    """

    permission_classes = [IsOperator]

    @extend_schema(
        responses={(200, "text/plain"): OpenApiTypes.STR, **errors(401, 403)}
    )
    def get(self, request):
        body = counters.prometheus_text()
        return HttpResponse(body, content_type="text/plain; version=0.0.4")
