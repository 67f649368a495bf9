"""What the per-process holder recommends, read from the real database."""

import numpy as np
import pytest
from django.utils import timezone

from events.models import EndUser, Interaction, Item
from events.validation import MessageError
from recommendations.serving import UserState, holder

pytestmark = pytest.mark.django_db


def seen_by(user):
    return set(user.interactions.values_list("item__external_id", flat=True))


def test_a_known_user_gets_personal_picks_without_seen_items(trained):
    user = EndUser.objects.get(external_id="u1")

    picks = holder.recommend(user, n=10)

    assert picks.strategy == "personal"
    assert picks.model_version == trained.version
    assert len(picks.item_ids) == 10
    assert not set(picks.item_ids) & seen_by(user)
    assert picks.scores == sorted(picks.scores, reverse=True)


def test_a_user_the_model_never_saw_gets_popular_items(trained):
    newcomer = EndUser.objects.for_external_id("newcomer")

    picks = holder.recommend(newcomer, n=5)

    assert picks.strategy == "popular"
    counts = {i.external_id: i.interactions.count() for i in Item.objects.all()}
    best = sorted(counts.values(), reverse=True)[:5]
    assert [counts[i] for i in picks.item_ids] == best


def test_without_a_model_a_newcomer_gets_popular_items(catalog):
    newcomer = EndUser.objects.for_external_id("newcomer")

    picks = holder.recommend(newcomer, n=5)

    assert picks.strategy == "popular"
    assert picks.model_version is None


def test_without_a_model_a_user_with_history_gets_content_picks(catalog):
    user = EndUser.objects.get(external_id="u1")

    picks = holder.recommend(user, n=5)

    assert picks.strategy == "content"
    assert picks.model_version is None
    assert not set(picks.item_ids) & seen_by(user)


def test_inactive_items_are_never_recommended(trained):
    user = EndUser.objects.get(external_id="u2")
    first = holder.recommend(user, n=3).item_ids
    Item.objects.filter(external_id__in=first).update(
        is_active=False, updated_at=timezone.now()
    )
    holder.refresh(force=True)

    picks = holder.recommend(user, n=10)

    assert not set(picks.item_ids) & set(first)


def test_exclude_and_genre_filter_the_list(trained):
    user = EndUser.objects.get(external_id="u3")
    first = holder.recommend(user, n=2).item_ids

    picks = holder.recommend(user, n=10, exclude=first, genre="comedy")

    assert not set(picks.item_ids) & set(first)
    genres = Item.objects.filter(external_id__in=picks.item_ids)
    assert picks.item_ids
    assert all("Comedy" in item.genre_list for item in genres)


def test_an_item_just_interacted_with_drops_out(trained):
    user = EndUser.objects.get(external_id="u4")
    top = holder.recommend(user, n=1).item_ids[0]
    Interaction.objects.create(
        user=user,
        item=Item.objects.get(external_id=top),
        kind="click",
        created_at=timezone.now(),
    )

    assert top not in holder.recommend(user, n=10).item_ids


def test_similar_items_come_from_the_factors(trained):
    similar = holder.similar("1", n=5)

    assert similar.strategy == "personal"
    assert len(similar.item_ids) == 5
    assert "1" not in similar.item_ids
    assert similar.scores == sorted(similar.scores, reverse=True)


def test_similar_for_an_unknown_item_is_an_error(trained):
    with pytest.raises(MessageError) as error:
        holder.similar("no-such-item", n=5)

    assert error.value.code == "unknown_item"


def test_a_user_state_sums_the_weights_of_each_item_it_saw():
    state = UserState(model_version=None, catalog_stamp=())

    state.add(np.array([7, 3]), np.array([1.0, 2.0]))
    state.add(np.array([3, 9, 3]), np.array([-0.5, 0.5, 1.0]))

    assert state.seen.tolist() == [3, 7, 9]
    assert state.liked.tolist() == [2.5, 1.0, 0.5]
    assert state.n_events == 3
