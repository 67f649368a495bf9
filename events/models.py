"""The catalog, the end users and what they did."""

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


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

    # No single-column indexes on the keys: the (key, created_at) indexes
    # below serve the same lookups, and every index slows ingestion.
    user = models.ForeignKey(
        EndUser, on_delete=models.CASCADE, related_name="interactions", db_index=False
    )
    item = models.ForeignKey(
        Item, on_delete=models.CASCADE, related_name="interactions", db_index=False
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    value = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField()
    # Unique (see Meta) so that a retried event is stored once, even when
    # two server processes receive the retry at the same moment. NULL, not
    # "", for a row without one: NULLs never collide.
    event_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    # The shown list this event came from, for click-through rates.
    recommendation_id = models.UUIDField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "created_at"], name="interaction_user_time"),
            models.Index(fields=["item", "created_at"], name="interaction_item_time"),
            models.Index(fields=["created_at"], name="interaction_time"),
        ]
        constraints = [
            # A constraint rather than unique=True, which on PostgreSQL adds
            # a second, pattern-matching index nothing here uses.
            models.UniqueConstraint(fields=["event_id"], name="interaction_event_id"),
        ]

    def __str__(self):
        return f"{self.user_id} {self.kind} {self.item_id}"


class ApiKeyQuerySet(models.QuerySet):
    def usable(self):
        return self.filter(revoked_at__isnull=True)

    def issue(self, name):
        """Create a key; returns (ApiKey, the key in clear, never stored)."""
        api_key = self.model(name=name)
        raw_key = api_key.generate()
        api_key.save()
        return api_key, raw_key

    def for_key(self, raw_key):
        """The usable key matching `raw_key`, or None."""
        prefix, dot, _ = raw_key.partition(".")
        if not dot or not prefix:
            return None
        api_key = self.usable().filter(prefix=prefix).first()
        if api_key is None or not api_key.matches(raw_key):
            return None
        return api_key


def _digest(raw_key):
    return hashlib.sha256(raw_key.encode()).hexdigest()


class ApiKey(models.Model):
    """A secret that lets a site's back end call the REST API.

    Only a SHA-256 digest of the key is stored: the key is random and
    long, so a slow password hash would add nothing. The short prefix,
    stored in clear, finds the row without scanning every digest.
    """

    PREFIX_BYTES = 4
    SECRET_BYTES = 32
    # Writing last_used_at on every call would add a write to each request.
    USE_RECORDED_EVERY = timedelta(minutes=1)

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    hashed_key = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self):
        return f"{self.name} ({self.prefix})"

    @property
    def is_revoked(self):
        return self.revoked_at is not None

    def generate(self):
        """Give an unsaved key its secret; returns the key in clear."""
        self.prefix = secrets.token_hex(self.PREFIX_BYTES)
        raw_key = f"{self.prefix}.{secrets.token_urlsafe(self.SECRET_BYTES)}"
        self.hashed_key = _digest(raw_key)
        return raw_key

    def matches(self, raw_key):
        return hmac.compare_digest(self.hashed_key, _digest(raw_key))

    def revoke(self):
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])

    def record_use(self):
        now = timezone.now()
        last = self.last_used_at
        if last is None or now - last >= self.USE_RECORDED_EVERY:
            ApiKey.objects.filter(pk=self.pk).update(last_used_at=now)
            self.last_used_at = now
