"""Messages that every server process hears through the channel layer."""

import hashlib

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

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
