from django.contrib import admin

from events.models import EndUser, Interaction, Item


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["external_id", "title", "genres", "year", "is_active"]
    list_filter = ["is_active"]
    search_fields = ["external_id", "title"]


@admin.register(EndUser)
class EndUserAdmin(admin.ModelAdmin):
    list_display = ["external_id", "account", "created_at"]
    search_fields = ["external_id"]
    raw_id_fields = ["account"]


@admin.register(Interaction)
class InteractionAdmin(admin.ModelAdmin):
    list_display = ["created_at", "user", "kind", "item", "value"]
    list_filter = ["kind"]
    list_select_related = ["user", "item"]
    raw_id_fields = ["user", "item"]
    show_full_result_count = False
