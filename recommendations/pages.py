"""The demo site: the catalog, item pages, the staff dashboard, and a page
that embeds the widget the way another site would.

Every page gives an anonymous browser its visitor id in the session, so
the page's WebSocket (which authenticates by that session) acts as the
same end user the page was rendered for.
"""

import functools
import secrets
import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.core.paginator import Paginator
from django.db.models import Avg, Count, Q
from django.db.models.functions import TruncSecond
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from events.models import EndUser, Interaction, Item
from events.tokens import make_ws_token
from events.validation import MessageError
from recommendations.models import Experiment, ModelVersion
from recommendations.online import experiment_report, stats_by_version
from recommendations.serving import holder
from recommendations.socket_auth import visitor_for_session

PAGE_SIZE = 24
SIMILAR_N = 8
FEED_SIZE = 20
TRENDING_N = 8
RATE_WINDOW_SECONDS = 60
RATE_AVERAGE_SECONDS = 10
CHART_VERSIONS = 8
DEMO_USER_SESSION_KEY = "rtrec_widget_demo_user"

SORTS = {
    "popular": "most interactions first",
    "title": "title, A to Z",
    "year": "newest first",
}


def end_user_for_page(request):
    """The end user this browser is: its account, else its visitor id."""
    if request.user.is_authenticated:
        return EndUser.objects.for_account(request.user)
    return visitor_for_session(request.session)


def catalog_genres():
    genres = set()
    for joined in Item.objects.active().order_by().values_list("genres", flat=True):
        genres.update(g for g in joined.split("|") if g)
    return sorted(genres)


def _catalog_items(search, genre, sort):
    items = Item.objects.active()
    if search:
        items = items.filter(title__icontains=search)
    if genre:
        items = items.in_genre(genre)

    if sort == "title":
        return items.order_by("title", "external_id")
    if sort == "year":
        return items.order_by("-year", "title", "external_id")
    # Popularity needs the count; the other orders do not pay for it.
    items = items.annotate(n_interactions=Count("interactions"))
    return items.order_by("-n_interactions", "external_id")


@require_GET
def catalog(request):
    """The browsable grid: search, a genre, an order, one page of items."""
    end_user = end_user_for_page(request)
    genres = catalog_genres()
    search = request.GET.get("q", "").strip()[:100]
    genre = request.GET.get("genre", "")
    genre = genre if genre in genres else ""
    sort = request.GET.get("sort", "")
    sort = sort if sort in SORTS else "popular"

    items = _catalog_items(search, genre, sort)
    page = Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))
    kept = request.GET.copy()
    kept.pop("page", None)

    context = {
        "end_user": end_user,
        "page": page,
        "search": search,
        "genre": genre,
        "genres": genres,
        "sort": sort,
        "sorts": SORTS,
        "kept_query": kept.urlencode(),
    }
    return render(request, "index.html", context)


def _recommendation_id(value):
    """The list a visitor came from, if the link carried a real one."""
    try:
        return str(uuid.UUID(value)) if value else None
    except ValueError:
        return None


def _similar(item):
    try:
        return holder.similar(item.external_id, SIMILAR_N).as_items()
    except MessageError:
        # Added a moment ago: this process's catalog snapshot catches up
        # within a second, and the page asks again over the socket.
        return []


@require_GET
def item_page(request, item_id):
    """One item: details, what to do with it, and items like it."""
    end_user = end_user_for_page(request)
    item = get_object_or_404(Item, external_id=item_id)
    stats = item.interactions.aggregate(
        n=Count("id"), rating=Avg("value", filter=Q(kind=Interaction.Kind.RATE))
    )

    context = {
        "end_user": end_user,
        "item": item,
        "stats": stats,
        "similar": _similar(item),
        "recommendation_id": _recommendation_id(request.GET.get("rec")),
        "rating_choices": range(1, 6),
    }
    return render(request, "item.html", context)


@require_GET
def widget_demo(request):
    """Another site's page, embedding the widget with its own token.

    A real site's back end asks for the token (POST /api/ws-tokens/ with
    its API key) for its own signed-in user; this page plays that back
    end for a demo user of its own per browser session.
    """
    user_id = request.session.get(DEMO_USER_SESSION_KEY)
    if not user_id:
        user_id = f"demo-{secrets.token_hex(6)}"
        request.session[DEMO_USER_SESSION_KEY] = user_id
    EndUser.objects.for_external_id(user_id)

    genres = catalog_genres()
    genre = request.GET.get("genre", "")
    context = {
        "server": request.build_absolute_uri("/").rstrip("/"),
        # ?transport=rest shows the widget as it works where a network
        # blocks WebSockets.
        "transport": "rest" if request.GET.get("transport") == "rest" else "",
        "token": make_ws_token(user_id, settings.RTREC["WS_TOKEN_TTL"]),
        "demo_user": user_id,
        "genre": genre if genre in genres else "",
        "genres": genres,
        "films": _catalog_items("", "", "popular")[:3],
    }
    return render(request, "widget_host.html", context)


@staff_member_required
@require_GET
def dashboard(request):
    """The live dashboard; its figures come from the two JSON views below."""
    return render(request, "dashboard.html", {"end_user": end_user_for_page(request)})


def staff_json(view):
    """A JSON view for staff only: anyone else gets a JSON 403, not the
    login page a script could not follow."""

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        if not (request.user.is_active and request.user.is_staff):
            body = {"error": {"code": "forbidden", "message": "staff only"}}
            return JsonResponse(body, status=403)
        return view(request, *args, **kwargs)

    return never_cache(require_GET(wrapped))


@staff_json
def dashboard_live(request):
    """What changes by the second: events since `after`, rate, trending."""
    try:
        after = max(int(request.GET.get("after", 0)), 0)
    except ValueError:
        after = 0
    now = timezone.now()
    events = latest_events(after)

    return JsonResponse(
        {
            "now": now.isoformat(),
            **event_rate(now),
            "events": events,
            "last_id": events[0]["id"] if events else after,
            "trending": holder.trending(TRENDING_N).as_items(),
        }
    )


def latest_events(after, limit=FEED_SIZE):
    """The newest interactions stored after pk `after`, newest first."""
    rows = (
        Interaction.objects.filter(pk__gt=after)
        .order_by("-pk")
        .values(
            "pk",
            "created_at",
            "kind",
            "value",
            "recommendation_id",
            "user__external_id",
            "item__external_id",
            "item__title",
        )[:limit]
    )
    return [
        {
            "id": row["pk"],
            "at": row["created_at"].isoformat(),
            "kind": row["kind"],
            "value": row["value"],
            "from_recommendations": row["recommendation_id"] is not None,
            "user": row["user__external_id"],
            "item": row["item__external_id"],
            "title": row["item__title"],
        }
        for row in rows
    ]


def event_rate(now):
    """Events in each of the last 60 seconds, and the recent average.

    Grouped by the database, so a burst of thousands costs one short
    query; the last bucket is the second still going on.
    """
    start = now.replace(microsecond=0) - timedelta(seconds=RATE_WINDOW_SECONDS - 1)
    rows = (
        Interaction.objects.filter(created_at__gte=start)
        .annotate(second=TruncSecond("created_at"))
        .order_by()
        .values("second")
        .annotate(n=Count("id"))
    )
    per_second = [0] * RATE_WINDOW_SECONDS
    for row in rows:
        index = int((row["second"] - start).total_seconds())
        if 0 <= index < RATE_WINDOW_SECONDS:
            per_second[index] += row["n"]

    recent = per_second[-RATE_AVERAGE_SECONDS:]
    return {
        "per_second": per_second,
        "events_per_second": sum(recent) / RATE_AVERAGE_SECONDS,
    }


@staff_json
def dashboard_summary(request):
    """What changes by the minute: the model, CTR per version, totals."""
    return JsonResponse(
        {
            "model": active_model_summary(),
            "versions": ctr_by_version(),
            "experiment": running_experiment_summary(),
            "totals": {
                "items": Item.objects.active().count(),
                "users": EndUser.objects.count(),
                "interactions": Interaction.objects.count(),
            },
        }
    )


def active_model_summary():
    model = ModelVersion.objects.active()
    if model is None:
        return None
    metrics = {
        name: value
        for name, value in model.metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    return {
        "version": model.version,
        "algorithm": model.algorithm,
        "feedback": model.feedback,
        "trained_at": model.created_at.isoformat(),
        "activated_at": model.activated_at and model.activated_at.isoformat(),
        "n_users": model.n_users,
        "n_items": model.n_items,
        "n_interactions": model.n_interactions,
        "training_seconds": model.training_seconds,
        "metrics": metrics,
    }


def ctr_by_version():
    """Online CTR of the most recent versions that were shown to anyone.

    Version names start with their training time, so sorting them puts
    the newest last; lists served with no model ("") come first.
    """
    active = set(
        ModelVersion.objects.filter(is_active=True).values_list("version", flat=True)
    )
    stats = stats_by_version()
    versions = sorted(stats)[-CHART_VERSIONS:]
    return [
        {"version": version, "is_active": version in active, **stats[version]}
        for version in versions
    ]


def running_experiment_summary():
    experiment = Experiment.objects.running().first()
    if experiment is None:
        return None
    report = experiment_report(experiment)
    for arm, figures in report["arms"].items():
        figures["version"] = experiment.version_for(arm)
    return {"name": experiment.name, **report}
