"""The catalog, end users, interactions and API keys in the Django admin.

Every list stays a few queries on MovieLens 100K's 100,000 interactions:
related rows are joined, not fetched one by one, and the interaction
list skips the full count.
"""

import csv
import io

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from events.models import ApiKey, EndUser, Interaction, Item
from recommendations.broadcast import catalog_changed
from recommendations.serving import holder

RECENT_INTERACTIONS = 20
CSV_COLUMNS = ("id", "title", "genres", "year", "description", "active")
CSV_NAMES = {"external_id": "id", "is_active": "active"}
CSV_TRUE = {"1", "true", "yes", "y"}
CSV_FALSE = {"0", "false", "no", "n"}
MAX_CSV_ERRORS = 20


class GenreFilter(admin.SimpleListFilter):
    title = "genre"
    parameter_name = "genre"

    def lookups(self, request, model_admin):
        stored = Item.objects.order_by().values_list("genres", flat=True).distinct()
        genres = {genre for joined in stored for genre in joined.split("|") if genre}
        return [(genre, genre) for genre in sorted(genres)]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.in_genre(self.value())
        return queryset


class ItemRowForm(forms.ModelForm):
    """One CSV row, checked by the same rules as the admin's own form."""

    class Meta:
        model = Item
        fields = ["external_id", "title", "genres", "year", "description", "is_active"]

    def validate_unique(self):
        # An id already in the catalog is an update, not a clash.
        pass


class ItemCsvForm(forms.Form):
    file = forms.FileField(
        help_text=(
            "UTF-8 CSV with a header row. Columns: id and title, and optionally "
            "genres (separated by |), year, description, active (true/false). "
            "Rows whose id exists update that item; the others are added."
        )
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        try:
            text = upload.read().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValidationError("The file is not UTF-8 text.") from None

        reader = csv.DictReader(io.StringIO(text))
        _check_header(reader.fieldnames or [])
        # line_num counts physical lines: a quoted description may span some.
        rows = [(reader.line_num, row) for row in reader]
        if not rows:
            raise ValidationError("The file has no rows under its header.")
        return _items_from_rows(rows)


def _check_header(columns):
    missing = [name for name in ("id", "title") if name not in columns]
    unknown = [name for name in columns if name not in CSV_COLUMNS]
    if missing or unknown:
        raise ValidationError(
            f"The header needs id and title and may only name {', '.join(CSV_COLUMNS)}"
            f" (missing: {', '.join(missing) or 'none'};"
            f" unknown: {', '.join(unknown) or 'none'})."
        )


def _items_from_rows(rows):
    """Unsaved items for (line, row) pairs, or every problem found."""
    items, problems, seen = [], [], set()
    for line, row in rows:
        try:
            item = _item_from_row(row)
        except ValidationError as exc:
            problems.extend(f"line {line}: {message}" for message in exc.messages)
            continue
        if item.external_id in seen:
            problems.append(f"line {line}: id {item.external_id!r} repeats")
        seen.add(item.external_id)
        items.append(item)

    if problems:
        shown = problems[:MAX_CSV_ERRORS]
        if len(problems) > MAX_CSV_ERRORS:
            shown.append(f"and {len(problems) - MAX_CSV_ERRORS} more problems")
        raise ValidationError(shown)
    return items


def _item_from_row(row):
    if None in row:
        raise ValidationError("the row has more fields than the header")
    active = (row.get("active") or "true").strip().lower()
    if active not in CSV_TRUE | CSV_FALSE:
        raise ValidationError(f"active must be true or false, not {active!r}")

    data = {
        "external_id": (row.get("id") or "").strip(),
        "title": (row.get("title") or "").strip(),
        "genres": (row.get("genres") or "").strip(),
        "year": (row.get("year") or "").strip(),
        "description": row.get("description") or "",
        "is_active": active in CSV_TRUE,
    }
    form = ItemRowForm(data)
    if not form.is_valid():
        raise ValidationError(
            [
                f"{CSV_NAMES.get(name, name)}: {message}"
                for name, field_messages in form.errors.items()
                for message in field_messages
            ]
        )
    return Item(**form.cleaned_data)


def import_items(items):
    """Add new items and update existing ones, all in one transaction;
    returns how many were added and how many updated."""
    with transaction.atomic():
        before = Item.objects.count()
        Item.objects.bulk_create(
            items,
            batch_size=500,
            update_conflicts=True,
            unique_fields=["external_id"],
            update_fields=[
                "title",
                "genres",
                "year",
                "description",
                "is_active",
                "updated_at",
            ],
        )
        added = Item.objects.count() - before
    return added, len(items) - added


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["external_id", "title", "genres", "year", "is_active"]
    list_filter = ["is_active", GenreFilter]
    search_fields = ["=external_id", "title"]
    actions = ["activate_items", "deactivate_items"]

    def get_urls(self):
        import_view = self.admin_site.admin_view(self.import_csv_view)
        return [
            path("import-csv/", import_view, name="events_item_import_csv"),
            *super().get_urls(),
        ]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        catalog_changed()

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        catalog_changed()

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset)
        catalog_changed()

    @admin.action(description="Activate the selected items", permissions=["change"])
    def activate_items(self, request, queryset):
        self._set_active(request, queryset, True)

    @admin.action(description="Deactivate the selected items", permissions=["change"])
    def deactivate_items(self, request, queryset):
        self._set_active(request, queryset, False)

    def _set_active(self, request, queryset, active):
        changed = queryset.exclude(is_active=active).update(
            is_active=active, updated_at=timezone.now()
        )
        catalog_changed()
        state = "active" if active else "inactive"
        self.message_user(request, f"{changed} items made {state}.")

    def import_csv_view(self, request):
        # An import both adds items and changes existing ones.
        if not self.has_add_permission(request):
            raise PermissionDenied
        if not self.has_change_permission(request):
            raise PermissionDenied

        form = ItemCsvForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            added, updated = import_items(form.cleaned_data["file"])
            catalog_changed()
            self.message_user(
                request, f"Imported items: {added} new, {updated} updated."
            )
            return redirect("admin:events_item_changelist")

        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Import items from CSV",
            "form": form,
        }
        return TemplateResponse(request, "admin/events/item/import_csv.html", context)


class RecentInteractions(forms.BaseInlineFormSet):
    """Only the latest interactions: a user may have thousands."""

    def get_queryset(self):
        if not hasattr(self, "_recent"):
            self._recent = super().get_queryset()[:RECENT_INTERACTIONS]
        return self._recent


class RecentInteractionInline(admin.TabularInline):
    model = Interaction
    formset = RecentInteractions
    verbose_name_plural = f"latest {RECENT_INTERACTIONS} interactions"
    fields = ["created_at", "kind", "item", "value", "event_id"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("item")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(EndUser)
class EndUserAdmin(admin.ModelAdmin):
    list_display = ["external_id", "account", "created_at"]
    list_select_related = ["account"]
    search_fields = ["=external_id"]
    raw_id_fields = ["account"]
    readonly_fields = ["created_at", "current_recommendations"]
    inlines = [RecentInteractionInline]

    @admin.display(description="recommendations now")
    def current_recommendations(self, obj):
        if obj is None or obj.pk is None:
            return "-"
        picks = holder.recommend(obj, n=10)
        rows = format_html_join(
            "",
            "<li>{} <small>({}, score {})</small></li>",
            ((item["title"], item["id"], item["score"]) for item in picks.as_items()),
        )
        return format_html(
            "<ol>{}</ol><p>strategy {}, model {}</p>",
            rows,
            picks.strategy,
            picks.model_version or "none",
        )


@admin.register(Interaction)
class InteractionAdmin(admin.ModelAdmin):
    """Read-only: interactions are the record of what users did."""

    list_display = ["created_at", "user", "kind", "item", "value", "event_id"]
    list_filter = ["kind"]
    list_select_related = ["user", "item"]
    date_hierarchy = "created_at"
    search_fields = ["=event_id", "=user__external_id", "=item__external_id"]
    raw_id_fields = ["user", "item"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "created_at", "last_used_at", "active"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "=prefix"]
    fields = ["name", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke_keys"]

    @admin.display(boolean=True, description="active")
    def active(self, obj):
        return not obj.is_revoked

    def save_model(self, request, obj, form, change):
        if not change:
            # Kept on the instance only until the next page shows it.
            obj.raw_key = obj.generate()
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "API key created",
            "api_key": obj,
            "raw_key": obj.raw_key,
            "changelist_url": reverse("admin:events_apikey_changelist"),
        }
        return TemplateResponse(request, "admin/events/apikey/created.html", context)

    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke_keys(self, request, queryset):
        revoked = queryset.filter(revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        self.message_user(request, f"{revoked} keys revoked.", messages.SUCCESS)
