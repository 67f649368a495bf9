"""Signed, expiring tokens that let a WebSocket client act as an end user."""

import time

from django.core import signing

SALT = "rtrec.ws-token"


class BadToken(Exception):
    """The token is forged, malformed or expired."""


def make_ws_token(external_id, ttl):
    expires = int(time.time()) + int(ttl)
    return signing.dumps({"u": external_id, "exp": expires}, salt=SALT)


def read_ws_token(token):
    """The end user's external id the token was made for."""
    try:
        payload = signing.loads(token, salt=SALT)
    except signing.BadSignature:
        raise BadToken("the token is not valid") from None

    if not isinstance(payload, dict) or not isinstance(payload.get("u"), str):
        raise BadToken("the token is not valid")
    if not isinstance(payload.get("exp"), int) or payload["exp"] < time.time():
        raise BadToken("the token has expired")
    return payload["u"]
