from django.db.models import Count
from django.shortcuts import render

from events.models import Item
from recommendations.socket_auth import visitor_for_session

PAGE_ITEMS = 24


def index(request):
    """A plain page that proves the loop: click an item, see new picks."""
    if request.user.is_authenticated:
        end_user_id = None
    else:
        end_user_id = visitor_for_session(request.session).external_id

    items = (
        Item.objects.active()
        .annotate(n_interactions=Count("interactions"))
        .order_by("-n_interactions", "external_id")[:PAGE_ITEMS]
    )
    context = {"items": items, "visitor_id": end_user_id}
    return render(request, "index.html", context)
