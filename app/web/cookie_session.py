"""The signed-cookie session (the print station's CSRF token and shop list), its serializer built once."""
from __future__ import annotations

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer


class CookieSessions(SecureCookieSessionInterface):
    """Flask's own cookie session, except that the signing serializer is not rebuilt for every request.

    Flask builds it anew each time it opens or saves a session, which is most of what a webhook request
    pays for a session it never uses. The serializer holds only the keys and settings, so one per key set
    is safe to share between threads.
    """

    def __init__(self) -> None:
        self._serializers: dict[tuple, URLSafeTimedSerializer | None] = {}

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        try:
            return self._serializers[keys]
        except KeyError:
            serializer = self._serializers[keys] = super().get_signing_serializer(app)
            return serializer
