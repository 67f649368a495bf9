"""Who a WebSocket connection acts as, decided once when it opens.

The order is the contract's: a signed token in the query string, else the
Django session (a logged-in account, or the visitor id the pages keep in
the session). A browser's Origin must be one of ALLOWED_HOSTS; a client
without an Origin header is not a browser and must bring a token.
"""

import logging
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.conf import settings
from django.db import DatabaseError
from django.http.request import validate_host

from events.models import EndUser
from events.tokens import BadToken, read_ws_token

logger = logging.getLogger(__name__)

VISITOR_SESSION_KEY = "rtrec_visitor"

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
# The standard "try again later": the refusal says nothing about the client.
CLOSE_TRY_AGAIN_LATER = 1013


@dataclass(frozen=True)
class Refusal:
    close_code: int
    message: str
    code: str = "forbidden"


DATABASE_DOWN = Refusal(
    CLOSE_TRY_AGAIN_LATER,
    "the database is unavailable: connect again shortly",
    code="unavailable",
)


class EndUserMiddleware(BaseMiddleware):
    """Puts `end_user` (or a `refusal`) into the scope of every socket."""

    async def __call__(self, scope, receive, send):
        try:
            end_user, refusal = await resolve_end_user(scope)
        except DatabaseError as exc:
            logger.warning("cannot tell who a socket is: %s", exc)
            end_user, refusal = None, DATABASE_DOWN
        scope = dict(scope, end_user=end_user, refusal=refusal)
        return await super().__call__(scope, receive, send)


@database_sync_to_async
def resolve_end_user(scope):
    origin = _header(scope, b"origin")
    token = _query_value(scope, "token")

    if origin is not None and not _origin_allowed(origin):
        return None, Refusal(CLOSE_FORBIDDEN, f"origin {origin[:100]!r} is not allowed")
    if token is not None:
        return _from_token(token)
    if origin is None:
        return None, Refusal(
            CLOSE_FORBIDDEN, "a client without an Origin header must pass ?token="
        )
    return _from_session(scope)


def _from_token(token):
    try:
        external_id = read_ws_token(token)
    except BadToken as exc:
        return None, Refusal(CLOSE_UNAUTHENTICATED, str(exc))
    return EndUser.objects.for_external_id(external_id), None


def _from_session(scope):
    user = scope.get("user")
    if user is not None and user.is_authenticated:
        return EndUser.objects.for_account(user), None

    session = scope.get("session")
    visitor_id = session.get(VISITOR_SESSION_KEY) if session is not None else None
    if visitor_id:
        return EndUser.objects.for_external_id(visitor_id), None
    return None, Refusal(
        CLOSE_UNAUTHENTICATED,
        "no token and no session: open a page of the site first, or pass ?token=",
    )


def visitor_for_session(session):
    """The anonymous visitor a browser session acts as, made on first use."""
    visitor_id = session.get(VISITOR_SESSION_KEY)
    if visitor_id:
        return EndUser.objects.for_external_id(visitor_id)
    visitor = EndUser.objects.new_visitor()
    session[VISITOR_SESSION_KEY] = visitor.external_id
    return visitor


def _origin_allowed(origin):
    host = urlsplit(origin).netloc.rsplit("@", 1)[-1]
    if not host:
        return False
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return validate_host(hostname, settings.ALLOWED_HOSTS)


def client_address(scope):
    """The client's IP address as the server saw it, or None (a Unix
    socket, a test). Behind a proxy, Daphne's --proxy-headers puts the
    forwarded address here."""
    client = scope.get("client")
    return client[0] if client else None


def _header(scope, name):
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _query_value(scope, name):
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    values = query.get(name)
    return values[-1] if values else None
