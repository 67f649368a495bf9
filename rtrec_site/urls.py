from django.contrib import admin
from django.urls import include, path

from recommendations import views
from recommendations.api.views import HealthView, MetricsView

urlpatterns = [
    path("", views.index, name="index"),
    path("", include("recommendations.pages_urls")),
    path("admin/", admin.site.urls),
    path("api/", include("recommendations.api.urls")),
    path("healthz", HealthView.as_view(), name="healthz"),
    path("metrics", MetricsView.as_view(), name="metrics"),
]

# API paths answer in JSON even when Django itself fails.
handler404 = "recommendations.api.errors.page_not_found"
handler500 = "recommendations.api.errors.server_error"
