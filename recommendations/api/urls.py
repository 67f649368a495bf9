from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from recommendations.api import views
from recommendations.api.errors import NOT_FOUND_NAME, api_not_found

router = SimpleRouter()
router.register("items", views.ItemViewSet, basename="item")
router.register("models", views.ModelVersionViewSet, basename="model")

urlpatterns = [
    path("events/", views.EventsView.as_view(), name="events"),
    path(
        "recommendations/",
        views.RecommendationsView.as_view(),
        name="recommendations",
    ),
    path("ws-tokens/", views.WsTokenView.as_view(), name="ws-tokens"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    *router.urls,
    # Last: anything else under /api/ is a JSON 404, never an HTML page.
    re_path(r"^.*$", api_not_found, name=NOT_FOUND_NAME),
]
