"""Who may do what: API keys and staff run the service, accounts read."""

from rest_framework import exceptions, permissions

from events.models import EndUser
from recommendations.api.authentication import uses_api_key


def is_operator(request):
    """An API key or a staff account: may change the catalog and models,
    and act for any end user."""
    return uses_api_key(request) or bool(request.user and request.user.is_staff)


class IsOperator(permissions.BasePermission):
    message = "this needs an API key or a staff account"

    def has_permission(self, request, view):
        return is_operator(request)


class ReadOrOperator(permissions.BasePermission):
    """Any signed-in caller reads; only operators write."""

    message = "changing the catalog needs an API key or a staff account"

    def has_permission(self, request, view):
        if not request.user or not request.user.is_authenticated:
            return False
        return request.method in permissions.SAFE_METHODS or is_operator(request)


def end_user_for(request, external_id):
    """The end user a request may act as, given the id it asked for.

    Operators act for anyone (a user the site has not told us about yet
    is created, as with a ws_token); a signed-in account acts only as
    its own end user, whose id it may leave out.
    """
    if is_operator(request):
        if external_id is None:
            raise exceptions.ValidationError({"user": ["This field is required."]})
        return EndUser.objects.for_external_id(external_id)

    own = EndUser.objects.for_account(request.user)
    if external_id is not None and external_id != own.external_id:
        raise exceptions.PermissionDenied("an account acts only as its own end user")
    return own
