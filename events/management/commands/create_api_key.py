from django.core.management.base import BaseCommand, CommandError

from events.models import ApiKey


class Command(BaseCommand):
    help = (
        "Create an API key for server-to-server REST calls and print it. "
        "It is stored hashed: this is the only time it is shown."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="who the key is for, e.g. 'shop back end'")

    def handle(self, *args, name, **options):
        name = name.strip()
        limit = ApiKey._meta.get_field("name").max_length
        if not name or len(name) > limit:
            raise CommandError(f"NAME must be 1 to {limit} characters")

        api_key, raw_key = ApiKey.objects.issue(name)
        self.stderr.write(
            f"API key {api_key.prefix} for {name!r}; it will not be shown again. "
            "Send it as 'Authorization: Api-Key <key>'."
        )
        self.stdout.write(raw_key)
