"""The front page, and the JSON the embeddable widget falls back to.

The widget talks over the WebSocket. Where a network blocks WebSockets it
asks these endpoints instead, with the socket's own credentials: a
ws_token in the query string, or the page's session. (The REST API's
endpoints take API keys and signed-in accounts, not tokens, so a widget
on another site could not call them.) Another site's page may call them
from a browser when its origin is in ALLOWED_HOSTS, as for the socket.
"""

from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpResponse
from django.http.request import validate_host
from drf_spectacular.utils import extend_schema
from rest_framework import authentication, exceptions, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from events.ingestion import store_event
from events.models import EndUser
from events.tokens import BadToken, read_ws_token
from events.validation import (
    MessageError,
    validate_event,
    validate_recommend,
    validate_request_id,
)
from recommendations.api.authentication import NoAccount
from recommendations.api.throttling import AddressRateThrottle
from recommendations.consumers import recommendations_payload
from recommendations.impressions import impressions
from recommendations.metrics_counters import counters
from recommendations.pages import catalog as index
from recommendations.serving import holder
from recommendations.socket_auth import VISITOR_SESSION_KEY

__all__ = ["index", "WidgetEventsView", "WidgetRecommendationsView"]


class TokenHolder(NoAccount):
    """Who a request carrying a ws_token acts as: an end user."""

    def __init__(self, external_id):
        self.external_id = external_id

    def __str__(self):
        return f"token:{self.external_id}"


class WsTokenAuthentication(authentication.BaseAuthentication):
    """`?token=`, exactly as the socket takes it."""

    def authenticate(self, request):
        token = request.query_params.get("token")
        if token is None:
            return None
        try:
            return TokenHolder(read_ws_token(token)), token
        except BadToken as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None

    def authenticate_header(self, request):
        return 'Token realm="widget"'


def allowed_origin(request):
    """The request's Origin if the widget may be used from it, else None."""
    origin = request.headers.get("Origin")
    if not origin:
        return None
    host = urlsplit(origin).hostname
    if host and validate_host(host, settings.ALLOWED_HOSTS):
        return origin
    return None


class WidgetView(APIView):
    permission_classes = [AllowAny]
    throttle_classes = [AddressRateThrottle]

    def options(self, request, *args, **kwargs):
        # A CORS preflight: the answer is in the headers added below.
        return HttpResponse(status=status.HTTP_204_NO_CONTENT)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        origin = allowed_origin(request)
        response["Vary"] = "Origin"
        if origin:
            # No credentials: a third-party page sends its token, not
            # cookies. A same-origin page sends its cookies anyway.
            response["Access-Control-Allow-Origin"] = origin
            response["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response["Access-Control-Allow-Headers"] = "Content-Type"
            response["Access-Control-Max-Age"] = "600"
        return response

    def end_user(self, request):
        user = request.user
        if isinstance(user, TokenHolder):
            return EndUser.objects.for_external_id(user.external_id)
        if user.is_authenticated:
            return EndUser.objects.for_account(user)
        visitor_id = request.session.get(VISITOR_SESSION_KEY)
        if visitor_id:
            return EndUser.objects.for_external_id(visitor_id)
        raise exceptions.NotAuthenticated(
            "no token and no session: open a page of the site first, or pass ?token="
        )


# Not in the API's schema: these speak the socket's protocol, for the
# widget, and README documents them beside it.
@extend_schema(exclude=True)
class WidgetRecommendationsView(WidgetView):
    """GET: the socket's `recommendations` message, over plain HTTP."""

    authentication_classes = [
        WsTokenAuthentication,
        authentication.SessionAuthentication,
    ]

    def get(self, request):
        options = validate_recommend(_recommend_query(request.query_params))
        end_user = self.end_user(request)

        recommendation = holder.recommend(
            end_user, n=options.n, exclude=options.exclude, genre=options.genre
        )
        # Recorded like the socket's lists, so clicks on them count.
        experiment = holder.experiment
        impressions.record(
            end_user,
            recommendation,
            experiment.pk if experiment and recommendation.experiment else None,
        )
        return Response(recommendations_payload(recommendation))


def _recommend_query(params):
    query = {}
    if "n" in params:
        try:
            query["n"] = int(params["n"])
        except ValueError:
            raise MessageError(
                "invalid_message", "'n' must be a whole number"
            ) from None
    if params.get("genre"):
        query["genre"] = params["genre"]
    exclude = [i for value in params.getlist("exclude") for i in value.split(",")]
    if exclude:
        query["exclude"] = [i for i in exclude if i]
    return query


@extend_schema(exclude=True)
class WidgetEventsView(WidgetView):
    """POST: one socket `event` message; answers the socket's `ack`.

    Token only: a session would need a CSRF token that a widget on
    another site cannot have.
    """

    authentication_classes = [WsTokenAuthentication]

    def post(self, request):
        if not isinstance(request.user, TokenHolder):
            raise exceptions.NotAuthenticated("pass ?token= to send events here")
        message = request.data
        if not isinstance(message, dict):
            raise MessageError("invalid_message", "send one event as a JSON object")
        request_id = validate_request_id(message)
        event = validate_event(message)

        stored = store_event(self.end_user(request), event)
        duplicate = "true" if stored.duplicate else "false"
        counters.increment("events_stored_total", via="widget", duplicate=duplicate)
        if not stored.duplicate:
            holder.note_event(event.item, event.kind, event.value)
        ack = {
            "type": "ack",
            "event_id": stored.event_id,
            "duplicate": stored.duplicate,
        }
        if request_id is not None:
            ack["request_id"] = request_id
        return Response(ack, status=200 if stored.duplicate else 201)
