"""Trained model versions: one row per artifact on disk."""

from pathlib import Path

from django.conf import settings
from django.db import models, transaction


class ModelVersionQuerySet(models.QuerySet):
    def active(self):
        return self.filter(is_active=True).first()


class ModelVersion(models.Model):
    version = models.CharField(max_length=64, unique=True)
    algorithm = models.CharField(max_length=32, default="svd")
    feedback = models.CharField(max_length=16, default="explicit")
    params = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict)
    n_users = models.PositiveIntegerField(default=0)
    n_items = models.PositiveIntegerField(default=0)
    n_interactions = models.PositiveIntegerField(default=0)
    training_seconds = models.FloatField(default=0.0)
    artifact = models.CharField(
        max_length=255, help_text="File name in RTREC_MODEL_DIR"
    )
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    objects = ModelVersionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # At most one version is served at a time.
            models.UniqueConstraint(
                fields=["is_active"],
                condition=models.Q(is_active=True),
                name="one_active_model_version",
            ),
        ]

    def __str__(self):
        return self.version

    @property
    def artifact_path(self):
        return Path(settings.RTREC["MODEL_DIR"]) / self.artifact

    def activate(self):
        """Make this the served version; the caller announces the change."""
        from django.utils import timezone

        with transaction.atomic():
            ModelVersion.objects.filter(is_active=True).exclude(pk=self.pk).update(
                is_active=False
            )
            self.is_active = True
            self.activated_at = timezone.now()
            self.save(update_fields=["is_active", "activated_at"])
