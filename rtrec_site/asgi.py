"""The ASGI entry point: HTTP to Django, WebSockets to the consumers."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rtrec_site.settings")
# One BLAS thread per server process: scoring one user is a single
# matrix-vector product, and extra threads only fight the event loop and
# the other processes for the CPUs (it halved the server's CPU per
# message in bench/run.py). Set before anything imports numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# Django must be set up before anything imports a model.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from recommendations.routing import websocket_urlpatterns  # noqa: E402
from recommendations.socket_auth import EndUserMiddleware  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AuthMiddlewareStack(
            EndUserMiddleware(URLRouter(websocket_urlpatterns))
        ),
    }
)
