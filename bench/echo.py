"""The floor the consumer is measured against: a bare Channels echo.

An ASGI application for benchmark servers only. It serves the site as
`rtrec_site.asgi` does and, beside the real socket, `/ws/echo/`: a Channels
consumer that sends every text frame straight back, with no
authentication, no groups and no parsing. Both run in one process with one
set of settings, so their ratio is the cost of the recommender's own work.

    python -m uvicorn bench.echo:application
"""

import copy

from channels.auth import AuthMiddlewareStack
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path

from rtrec_site.asgi import django_asgi_app  # isort: skip (sets Django up)
from recommendations.routing import websocket_urlpatterns
from recommendations.socket_auth import EndUserMiddleware

ECHO_PATH = "ws/echo/"


class EchoConsumer(AsyncWebsocketConsumer):
    async def receive(self, text_data=None, bytes_data=None):
        await self.send(text_data=text_data, bytes_data=bytes_data)


def behind_site_middleware(route):
    """A copy of one of the site's socket routes, authenticated as the
    site does it."""
    wrapped = copy.copy(route)
    wrapped.callback = AuthMiddlewareStack(EndUserMiddleware(route.callback))
    return wrapped


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(
            [
                path(ECHO_PATH, EchoConsumer.as_asgi()),
                *(behind_site_middleware(r) for r in websocket_urlpatterns),
            ]
        ),
    }
)
