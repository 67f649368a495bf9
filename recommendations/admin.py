from django.contrib import admin

from recommendations.broadcast import announce_model
from recommendations.models import ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["version", "feedback", "is_active", "n_interactions", "created_at"]
    readonly_fields = [f.name for f in ModelVersion._meta.fields]
    actions = ["activate"]

    @admin.action(description="Activate (or roll back to) the selected version")
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version.", level="error")
            return
        version = queryset.get()
        version.activate()
        announce_model(version.version)
        self.message_user(request, f"Version {version.version} is now served.")
