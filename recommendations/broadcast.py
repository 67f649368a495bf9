"""Messages that every server process hears through the channel layer."""

import hashlib
import logging
import time

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from recommendations.serving import holder

logger = logging.getLogger(__name__)

MODELS_GROUP = "rtrec.models"


def user_group(external_id):
    """The group holding every socket of one end user, in any process."""
    digest = hashlib.sha256(external_id.encode()).hexdigest()[:40]
    return f"rtrec.user.{digest}"


def announce_model(version):
    """Tell every process (and so every socket) that a version is active."""
    layer = get_channel_layer()
    if layer is None:
        return
    async_to_sync(layer.group_send)(
        MODELS_GROUP, {"type": "model.activated", "version": version}
    )


def announce_catalog():
    """Tell every process that items changed: each checks its catalog
    now, and every socket drops the lists it kept.

    Without this, another process notices on its next check, within a
    second, and a socket's kept list lives up to a second more.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "catalog.changed", "at": time.time()}
    try:
        async_to_sync(layer.group_send)(MODELS_GROUP, message)
    except (redis.RedisError, OSError) as exc:
        logger.warning("catalog change not announced to other processes: %s", exc)


def catalog_changed():
    """Items were added, changed or removed here: this process serves the
    change from its next request, the others once they hear of it."""
    holder.refresh(force=True)
    announce_catalog()
