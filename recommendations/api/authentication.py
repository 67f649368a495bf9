"""`Authorization: Api-Key <key>` for a site's back end."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from events.models import ApiKey

KEYWORD = "Api-Key"


class NoAccount:
    """A caller DRF treats as authenticated who has no Django account."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None


class KeyHolder(NoAccount):
    """Who a request authenticated by API key acts as."""

    def __init__(self, api_key):
        self.api_key = api_key
        self.username = f"api-key:{api_key.prefix}"

    def __str__(self):
        return self.username


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        keyword, _, raw_key = header.strip().partition(" ")
        if keyword.lower() != KEYWORD.lower():
            return None

        raw_key = raw_key.strip()
        if not raw_key or " " in raw_key:
            raise exceptions.AuthenticationFailed(
                f"send the header as '{KEYWORD} <key>'"
            )
        api_key = ApiKey.objects.for_key(raw_key)
        if api_key is None:
            raise exceptions.AuthenticationFailed("the API key is not valid or revoked")

        api_key.record_use()
        return KeyHolder(api_key), api_key

    def authenticate_header(self, request):
        return f'{KEYWORD} realm="api"'


def uses_api_key(request):
    return isinstance(request.auth, ApiKey)


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": f"'{KEYWORD} <key>', from `manage.py create_api_key NAME`",
        }
