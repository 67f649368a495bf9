"""Request budgets per API key, and per client address for everyone else.

The rates are read from the settings on every request, not once at
import as DRF's own throttles do, so a changed setting applies at once.
Counts live in Django's cache: per process unless a shared cache is set.
"""

from django.core.exceptions import ImproperlyConfigured
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from recommendations.api.authentication import uses_api_key


class SettingsRateThrottle(SimpleRateThrottle):
    def get_rate(self):
        rates = api_settings.DEFAULT_THROTTLE_RATES
        if self.scope not in rates:
            raise ImproperlyConfigured(f"no throttle rate is set for {self.scope!r}")
        return rates[self.scope]

    def parse_rate(self, rate):
        try:
            return super().parse_rate(rate)
        except (ValueError, KeyError, AttributeError):
            raise ImproperlyConfigured(
                f"throttle rate {rate!r} for {self.scope!r} is not like '100/minute'"
            ) from None

    def wait(self):
        # The exact moment the oldest counted request leaves the window.
        # DRF's own estimate is None once the history is over a lowered
        # limit, and then no Retry-After would be sent.
        if len(self.history) < self.num_requests:
            return 0
        expires = self.history[self.num_requests - 1] + self.duration
        return max(expires - self.now, 1)


class ApiKeyRateThrottle(SettingsRateThrottle):
    scope = "api_key"

    def get_cache_key(self, request, view):
        if not uses_api_key(request):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.prefix}


class AddressRateThrottle(SettingsRateThrottle):
    """Sessions and anonymous callers, counted by client address."""

    scope = "address"

    def get_cache_key(self, request, view):
        if uses_api_key(request):
            return None
        return self.cache_format % {
            "scope": self.scope,
            "ident": self.get_ident(request),
        }
