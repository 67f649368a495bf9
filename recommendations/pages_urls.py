"""The demo site's pages and the JSON they poll; "/" is the catalog."""

from django.urls import path

from recommendations import pages, views

urlpatterns = [
    path("items/<str:item_id>/", pages.item_page, name="item"),
    path("dashboard/", pages.dashboard, name="dashboard"),
    path("dashboard/live/", pages.dashboard_live, name="dashboard-live"),
    path("dashboard/summary/", pages.dashboard_summary, name="dashboard-summary"),
    path("widget/demo/", pages.widget_demo, name="widget-demo"),
    path(
        "widget/recommendations/",
        views.WidgetRecommendationsView.as_view(),
        name="widget-recommendations",
    ),
    path("widget/events/", views.WidgetEventsView.as_view(), name="widget-events"),
]
