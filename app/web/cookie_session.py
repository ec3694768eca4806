"""The signed-cookie session (the print station's CSRF token and shop list), its serializer built once."""
from __future__ import annotations

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer


class CookieSessions(SecureCookieSessionInterface):
    """Flask's own cookie session, except that the signing serializer is not rebuilt for every request.

    Flask builds it anew each time it opens or saves a session, which is most of what a webhook request
    pays for a session it never uses. The serializer holds only the keys and settings, so one per key set
    is safe to share between threads. A request without any cookie (every webhook, most storefront calls)
    gets an empty session without its headers being parsed for one.
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

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if "HTTP_COOKIE" not in request.environ and self.get_signing_serializer(app) is not None:
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SecureCookieSession, response) -> None:
        if not session and not session.modified and not session.accessed:
            return  # nothing was held, read or changed: no cookie to set, clear or vary on
        super().save_session(app, session, response)
