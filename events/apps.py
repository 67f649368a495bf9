from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "events"
    verbose_name = "Catalog, users and interactions"

    def ready(self):
        from django.contrib.auth.signals import user_logged_in

        from events.identity import on_login

        user_logged_in.connect(on_login, dispatch_uid="rtrec-adopt-visitor")
