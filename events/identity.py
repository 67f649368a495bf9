"""An anonymous visitor who logs in keeps what they did.

The visitor's end user is handed to the account when the account has
none yet; otherwise the visitor's interactions move to the account's end
user and the visitor is removed. Either way the next recommendation
reflects everything the person did, before and after logging in.
"""

import logging

from django.db import transaction

from events.models import EndUser, Interaction

logger = logging.getLogger(__name__)

VISITOR_SESSION_KEY = "rtrec_visitor"


def adopt_visitor(account, session):
    """Join the session's visitor, if any, to the account's end user."""
    visitor_id = session.pop(VISITOR_SESSION_KEY, None)
    if not visitor_id:
        return None
    visitor = EndUser.objects.filter(external_id=visitor_id, account=None).first()
    if visitor is None:
        return None

    with transaction.atomic():
        existing = EndUser.objects.filter(account=account).first()
        if existing is None:
            visitor.account = account
            visitor.save(update_fields=["account"])
            return visitor
        moved = _move_interactions(visitor, existing)
        visitor.delete()
    logger.info("joined visitor %s (%d events) to %s", visitor_id, moved, existing)
    return existing


def _move_interactions(source, target):
    """Re-insert source's interactions as target's.

    New rows rather than an UPDATE: every server process brings a cached
    user up to date by reading the interactions newer than the last one it
    saw, and only new primary keys are newer.
    """
    rows = list(Interaction.objects.filter(user=source).order_by("pk"))
    Interaction.objects.filter(user=source).delete()
    for row in rows:
        row.pk, row.user = None, target
    Interaction.objects.bulk_create(rows)
    return len(rows)


def on_login(sender, request, user, **kwargs):
    if request is not None and hasattr(request, "session"):
        adopt_visitor(user, request.session)
