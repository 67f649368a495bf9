"""Shared fixtures: a small catalog with ratings, a trained model, sockets."""

import json

import numpy as np
import pytest
from channels.testing import WebsocketCommunicator
from django.core.cache import cache
from django.utils import timezone

from events.models import EndUser, Interaction, Item
from events.tokens import make_ws_token
from recommendations.impressions import impressions
from recommendations.serving import holder
from recommendations.training import TrainingSettings, train_model
from recommendations.trending_store import forget_trending
from rtrec_site.asgi import application

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance"]
ORIGIN = (b"origin", b"http://localhost:8000")


@pytest.fixture(autouse=True)
def fresh_throttles():
    """API throttles count in Django's cache: every test starts at zero."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def model_dir(settings, tmp_path):
    """Every test writes models to its own folder and starts unloaded."""
    settings.RTREC = {**settings.RTREC, "MODEL_DIR": tmp_path / "models"}
    holder.clear()
    forget_trending()
    impressions.discard()
    yield tmp_path / "models"
    holder.clear()
    impressions.discard()


def make_catalog(n_users=30, n_items=40, per_user=12, seed=1):
    """Items in genres and users who rate their favourite genre higher."""
    rng = np.random.default_rng(seed)
    items = Item.objects.bulk_create(
        Item(
            external_id=str(i),
            title=f"Item {i}",
            genres="|".join(sorted({GENRES[i % 5], GENRES[(i * 3) % 5]})),
            year=1990 + i % 10,
        )
        for i in range(1, n_items + 1)
    )
    users = EndUser.objects.bulk_create(
        EndUser(external_id=f"u{u}") for u in range(1, n_users + 1)
    )

    now = timezone.now()
    ratings = []
    for u, user in enumerate(users):
        for i in rng.choice(n_items, size=per_user, replace=False):
            liked = items[i].genres.startswith(GENRES[u % 5])
            value = float(np.clip(rng.normal(4.2 if liked else 2.5, 0.6), 1, 5))
            ratings.append(
                Interaction(
                    user=user, item=items[i], kind="rate", value=value, created_at=now
                )
            )
    Interaction.objects.bulk_create(ratings)
    return items, users


@pytest.fixture
def catalog(db):
    return make_catalog()


@pytest.fixture
def trained(catalog):
    options = TrainingSettings(feedback="explicit", factors=8, epochs=15)
    return train_model(options)


def token_for(external_id, ttl=600):
    return make_ws_token(external_id, ttl)


async def open_socket(path="/ws/recommendations/", headers=(ORIGIN,)):
    communicator = WebsocketCommunicator(application, path, headers=list(headers))
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return communicator


async def socket_as(external_id):
    return await open_socket(f"/ws/recommendations/?token={token_for(external_id)}")


async def request(communicator, payload, timeout=5):
    text = payload if isinstance(payload, str) else json.dumps(payload)
    await communicator.send_to(text_data=text)
    return await receive(communicator, timeout)


async def receive(communicator, timeout=5):
    return json.loads(await communicator.receive_from(timeout=timeout))
