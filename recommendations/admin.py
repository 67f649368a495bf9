"""Model versions in the Django admin: metrics, parameters, and a button
that makes a version the served one in every server process."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.urls import path
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from recommendations.broadcast import announce_model
from recommendations.models import Experiment, ModelVersion
from recommendations.online import experiment_report, stats_by_version
from recommendations.serving import holder


def serve_version(version):
    """Activate a version and tell every process; False if its file is gone."""
    if not version.artifact_path.is_file():
        return False
    version.activate()
    announce_model(version.version)
    holder.ensure_version(version.version)
    return True


def _table(values):
    if not values:
        return "-"
    rows = format_html_join(
        "", "<tr><th>{}</th><td>{}</td></tr>", sorted(_flat(values))
    )
    return format_html("<table>{}</table>", rows)


def _flat(values, prefix=""):
    """(dotted name, shown value) pairs of a nested JSON object."""
    for name, value in values.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{name}.")
        elif isinstance(value, float):
            yield f"{prefix}{name}", f"{value:.4g}"
        else:
            yield f"{prefix}{name}", value


def _metric(version, name):
    value = version.metrics.get(name)
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = [
        "version",
        "feedback",
        "is_active",
        "rmse",
        "ndcg",
        "n_interactions",
        "created_at",
        "activated_at",
    ]
    list_filter = ["is_active", "feedback"]
    search_fields = ["=version"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "version",
                    "is_active",
                    "activated_at",
                    "created_at",
                    "algorithm",
                    "feedback",
                    "artifact",
                ]
            },
        ),
        (
            "Training data",
            {"fields": ["n_users", "n_items", "n_interactions", "training_seconds"]},
        ),
        ("Metrics", {"fields": ["metrics_table"]}),
        ("Online", {"fields": ["online_table"]}),
        ("Training parameters", {"fields": ["params_table"]}),
    ]
    readonly_fields = [
        *(f.name for f in ModelVersion._meta.fields),
        "metrics_table",
        "params_table",
        "online_table",
    ]
    actions = ["activate"]

    @admin.display(description="RMSE")
    def rmse(self, obj):
        return _metric(obj, "rmse")

    @admin.display(description="NDCG@10")
    def ndcg(self, obj):
        return _metric(obj, "ndcg@10")

    @admin.display(description="metrics")
    def metrics_table(self, obj):
        return _table(obj.metrics)

    @admin.display(description="parameters")
    def params_table(self, obj):
        return _table(obj.params)

    @admin.display(description="shown and clicked")
    def online_table(self, obj):
        figures = stats_by_version().get(obj.version)
        return _table(figures) if figures else "not shown yet"

    def has_add_permission(self, request):
        # Versions come from `manage.py train`, with an artifact on disk.
        return False

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_active:
            return False
        return super().has_delete_permission(request, obj)

    def get_urls(self):
        activate_view = self.admin_site.admin_view(require_POST(self.activate_view))
        return [
            path(
                "<path:object_id>/activate/",
                activate_view,
                name="recommendations_modelversion_activate",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        context = {
            # Every field is read-only: saving would change nothing.
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "may_activate": self.has_change_permission(request),
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, context)

    def activate_view(self, request, object_id):
        if not self.has_change_permission(request):
            raise PermissionDenied
        version = get_object_or_404(ModelVersion, pk=object_id)
        self._serve(request, version)
        return redirect("admin:recommendations_modelversion_change", version.pk)

    @admin.action(
        description="Activate (or roll back to) the selected version",
        permissions=["change"],
    )
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version.", messages.ERROR)
            return
        self._serve(request, queryset.get())

    def _serve(self, request, version):
        if not serve_version(version):
            message = f"The artifact of {version} is missing: nothing changed."
            self.message_user(request, message, messages.ERROR)
            return
        message = f"Version {version} is now served by every server process."
        self.message_user(request, message)


ARM_ROW = (
    "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
    "<td>{} to {}</td><td>{}</td></tr>"
)


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ["name", "control", "treatment", "treatment_share", "is_active"]
    list_filter = ["is_active"]
    list_select_related = ["control", "treatment"]
    raw_id_fields = ["control", "treatment"]
    readonly_fields = ["report"]

    @admin.display(description="click-through by arm")
    def report(self, obj):
        if obj.pk is None:
            return "-"
        report = experiment_report(obj)
        rows = format_html_join(
            "",
            ARM_ROW,
            (
                (
                    arm,
                    obj.version_for(arm) or "popularity",
                    f["impressions"],
                    f["clicks"],
                    f"{f['ctr']:.2%}",
                    f"{f['ctr_low']:.2%}",
                    f"{f['ctr_high']:.2%}",
                    f["conversions"],
                )
                for arm, f in report["arms"].items()
            ),
        )
        verdict = "significant" if report["significant"] else "not significant"
        return format_html(
            "<table><tr><th>arm</th><th>serves</th><th>impressions</th>"
            "<th>clicks</th><th>CTR</th><th>95% interval</th>"
            "<th>conversions</th></tr>{}</table>"
            "<p>Treatment minus control: {} (z = {}, p = {}): {} at the 5% level.</p>",
            rows,
            f"{report['difference']:+.2%}",
            f"{report['z']:.2f}",
            f"{report['p_value']:.3g}",
            verdict,
        )

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        # Every process checks for a running experiment each second; this
        # one starts serving it now.
        holder.refresh(force=True)
