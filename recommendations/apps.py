from django.apps import AppConfig


class RecommendationsConfig(AppConfig):
    name = "recommendations"
    verbose_name = "Recommendation models"

    def ready(self):
        # Registers the deployment checks with Django's check framework.
        from rtrec_site import checks  # noqa: F401
