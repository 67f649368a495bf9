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


class ExperimentQuerySet(models.QuerySet):
    def running(self):
        return self.filter(is_active=True).select_related("control", "treatment")


def _arm():
    # A version that an experiment serves cannot be deleted under it.
    return models.ForeignKey(
        ModelVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Empty: popularity",
    )


class Experiment(models.Model):
    """Two versions (or a version and popularity) served side by side.

    An empty arm serves popularity. Each user lands in one arm by a stable
    hash of the experiment's name and their id.
    """

    name = models.SlugField(max_length=64, unique=True)
    control = _arm()
    treatment = _arm()
    treatment_share = models.FloatField(
        default=0.5, help_text="Share of users in the treatment arm, 0 to 1"
    )
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ExperimentQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"],
                condition=models.Q(is_active=True),
                name="one_running_experiment",
            ),
            models.CheckConstraint(
                condition=models.Q(treatment_share__gte=0, treatment_share__lte=1),
                name="treatment_share_is_a_share",
            ),
        ]

    def __str__(self):
        return self.name

    def arm_for(self, user_id):
        from recommendations.engine.abtest import arm_share

        share = arm_share(self.name, user_id)
        return "treatment" if share < self.treatment_share else "control"

    def version_for(self, arm):
        version = self.treatment if arm == "treatment" else self.control
        return version.version if version else None


class ShownList(models.Model):
    """One list of recommendations as it was shown: the impressions."""

    id = models.UUIDField(primary_key=True)
    user = models.ForeignKey(
        "events.EndUser", on_delete=models.CASCADE, related_name="+"
    )
    model_version = models.CharField(max_length=64, blank=True, db_index=True)
    experiment = models.ForeignKey(
        Experiment, null=True, blank=True, on_delete=models.SET_NULL
    )
    arm = models.CharField(max_length=16, blank=True)
    strategy = models.CharField(max_length=16)
    items = models.JSONField(default=list)
    n_items = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["experiment", "arm"], name="shown_arm")]

    def __str__(self):
        return f"{self.id} ({self.n_items} items)"
