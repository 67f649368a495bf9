"""The catalog, the end users and what they did."""

import secrets

from django.conf import settings
from django.db import models


class ItemQuerySet(models.QuerySet):
    def active(self):
        return self.filter(is_active=True)

    def in_genre(self, genre):
        # Genres are stored pipe-joined; anchoring on the separators keeps
        # "Drama" from matching "Dramedy".
        return self.filter(genres__regex=rf"(^|\|){_regex_escape(genre)}(\||$)")


def _regex_escape(text):
    return "".join(f"\\{c}" if not c.isalnum() and c != " " else c for c in text)


class Item(models.Model):
    external_id = models.CharField(max_length=64, unique=True)
    title = models.CharField(max_length=255)
    genres = models.CharField(max_length=255, blank=True, help_text="Pipe-separated")
    year = models.PositiveSmallIntegerField(null=True, blank=True)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ItemQuerySet.as_manager()

    class Meta:
        ordering = ["external_id"]

    def __str__(self):
        return f"{self.title} ({self.external_id})"

    @property
    def genre_list(self):
        return [g for g in self.genres.split("|") if g]


class EndUserManager(models.Manager):
    def for_external_id(self, external_id):
        user, _ = self.get_or_create(external_id=external_id)
        return user

    def for_account(self, account):
        user, _ = self.get_or_create(
            account=account, defaults={"external_id": f"account-{account.pk}"}
        )
        return user

    def new_visitor(self):
        # 128 random bits: a visitor id can be neither guessed nor chosen.
        return self.create(external_id=f"visitor-{secrets.token_urlsafe(16)}")


class EndUser(models.Model):
    """A person recommendations are made for: a site's user or a visitor."""

    external_id = models.CharField(max_length=64, unique=True)
    account = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="end_user",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = EndUserManager()

    class Meta:
        ordering = ["external_id"]

    def __str__(self):
        return self.external_id

    @property
    def is_visitor(self):
        return self.external_id.startswith("visitor-")


class Interaction(models.Model):
    class Kind(models.TextChoices):
        VIEW = "view"
        CLICK = "click"
        ADD_TO_CART = "add_to_cart"
        PURCHASE = "purchase"
        RATE = "rate"
        LIKE = "like"
        DISLIKE = "dislike"

    user = models.ForeignKey(
        EndUser, on_delete=models.CASCADE, related_name="interactions"
    )
    item = models.ForeignKey(
        Item, on_delete=models.CASCADE, related_name="interactions"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    value = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField()
    # Unique so that a retried event is stored once, even when two server
    # processes receive the retry at the same moment.
    event_id = models.CharField(max_length=64, unique=True, null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "created_at"], name="interaction_user_time"),
            models.Index(fields=["item", "created_at"], name="interaction_item_time"),
            models.Index(fields=["created_at"], name="interaction_time"),
        ]

    def __str__(self):
        return f"{self.user_id} {self.kind} {self.item_id}"
