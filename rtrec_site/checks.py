"""Deployment hazards as Django system checks, each with a stable id.

`manage.py check` (and every command that runs checks, migrate included)
refuses to go on with an error; `manage.py check --deploy` adds the
warnings meant for a production settings file.
"""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

IN_MEMORY_LAYER = "channels.layers.InMemoryChannelLayer"


@register(Tags.security)
def check_secret_key(app_configs, **kwargs):
    """rtrec.E001: the development SECRET_KEY with DEBUG off."""
    development_key = getattr(settings, "DEVELOPMENT_SECRET_KEY", None)
    if settings.DEBUG or settings.SECRET_KEY != development_key:
        return []
    return [
        Error(
            "SECRET_KEY is the development key, and DEBUG is off.",
            hint=(
                "Set the SECRET_KEY environment variable to a long random "
                "value kept secret; anyone can sign sessions and ws_tokens "
                "with the development key."
            ),
            id="rtrec.E001",
        )
    ]


@register(Tags.security, deploy=True)
def check_any_host(app_configs, **kwargs):
    """rtrec.W001: ALLOWED_HOSTS lets any site's pages use the socket."""
    if "*" not in settings.ALLOWED_HOSTS:
        return []
    return [
        Warning(
            "ALLOWED_HOSTS contains '*': the WebSocket accepts a browser's "
            "session from a page on any site.",
            hint="List the host names that serve the site and the widget.",
            id="rtrec.W001",
        )
    ]


@register(deploy=True)
def check_channel_layer(app_configs, **kwargs):
    """rtrec.W002: an in-process channel layer in production."""
    backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND")
    if backend != IN_MEMORY_LAYER:
        return []
    return [
        Warning(
            "The channel layer lives in the process: an event pushes only "
            "to sockets held by the server process that stored it.",
            hint="Set REDIS_URL when more than one server process runs.",
            id="rtrec.W002",
        )
    ]


@register(deploy=True)
def check_socket_caps(app_configs, **kwargs):
    """rtrec.W003: no cap on the sockets one address may open."""
    limits = settings.RTREC
    uncapped = [
        name
        for name in ("WS_MAX_SOCKETS_PER_USER", "WS_MAX_SOCKETS_PER_ADDRESS")
        if not limits.get(name)
    ]
    if not uncapped:
        return []
    return [
        Warning(
            f"No cap on open sockets: {', '.join(uncapped)} is 0.",
            hint="One client can then hold every connection the server has.",
            id="rtrec.W003",
        )
    ]
