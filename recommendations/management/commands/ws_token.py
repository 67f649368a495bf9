from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from events.models import EndUser
from events.tokens import make_ws_token
from events.validation import MAX_ID_LENGTH


class Command(BaseCommand):
    help = "Print a signed, expiring token for a WebSocket client acting as USER_ID."

    def add_arguments(self, parser):
        parser.add_argument("user_id", help="the end user's own id, e.g. 196")
        parser.add_argument(
            "--ttl",
            type=int,
            default=settings.RTREC["WS_TOKEN_TTL"],
            help="seconds the token stays valid",
        )

    def handle(self, *args, user_id, ttl, **options):
        if not user_id.strip() or len(user_id) > MAX_ID_LENGTH:
            raise CommandError(f"USER_ID must be 1 to {MAX_ID_LENGTH} characters")
        if ttl < 1:
            raise CommandError("--ttl must be at least 1 second")

        # A token for a user the site has not told us about yet is fine:
        # their first event creates their profile.
        EndUser.objects.for_external_id(user_id)
        self.stdout.write(make_ws_token(user_id, ttl))
