"""Every request's id, log context, count and duration, kept by a thin WSGI wrapper around the Flask app."""
from __future__ import annotations

import os
import time
from typing import Callable, Iterable

from flask import Request
from werkzeug.routing import Rule

from app.logs import request_log_context
from app.metrics import HTTP_DURATION, HTTP_REQUESTS

REQUEST_ID_KEY = "companion.request_id"  # where the request's id waits in the WSGI environ
ROUTE_KEY = "companion.route"  # the route the request matched, for the metrics (Flask unlinks its request object)
_REQUEST_ID_LIMIT = 64


class RequestTracking:
    """X-Request-Id (the caller's, else a new one) on every answer and in every log line of the request, and each
    request counted and timed per method, route and status.

    As Flask before/after/teardown hooks this cost a webhook about a tenth of its time: every `request` and `g`
    read goes through a context-local proxy. Here it is a few dictionary reads on the WSGI environ.
    """

    def __init__(self, wsgi_app: Callable):
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        request_id = environ.get("HTTP_X_REQUEST_ID", "")[:_REQUEST_ID_LIMIT] or os.urandom(16).hex()
        environ[REQUEST_ID_KEY] = request_id
        answered: list[str] = []

        def start_tracked_response(status: str, headers: list, exc_info=None):
            answered.append(status)
            headers.append(("X-Request-Id", request_id))
            return start_response(status, headers, exc_info)

        with request_log_context(request_id):
            body = self.wsgi_app(environ, start_tracked_response)
        _record(environ, answered[-1][:3] if answered else "500", time.perf_counter() - started)
        return body


class TrackedRequest(Request):
    """Flask's request, leaving the route it matched in the WSGI environ for `RequestTracking`."""

    @property
    def url_rule(self) -> Rule | None:
        return self.__dict__.get("_url_rule")

    @url_rule.setter
    def url_rule(self, rule: Rule | None) -> None:
        self.__dict__["_url_rule"] = rule
        self.environ[ROUTE_KEY] = rule.rule if rule is not None else None


def _record(environ: dict, status: str, elapsed: float) -> None:
    endpoint = environ.get(ROUTE_KEY) or "unmatched"
    method = environ.get("REQUEST_METHOD", "GET")
    HTTP_REQUESTS.inc(method=method, endpoint=endpoint, status=status)
    HTTP_DURATION.observe(elapsed, method=method, endpoint=endpoint)
