"""The busiest endpoints answered straight from the WSGI environ, in front of Flask.

A Shopify webhook's own work (check the signature, store two rows, commit) took about half of its time in the
web worker; Flask's request context, URL routing, context-local proxies and response object took a quarter
(cProfile of `bench/webhooks.py`'s requests in process). An endpoint registered here is a plain function of
a `LeanRequest` (bound to what it needs when registered), returning a `LeanAnswer`; every other request goes
to Flask unchanged.
What Flask gave such an endpoint is kept: JSON errors in the same shape (405, 413, 500 with the request id),
the route in the environ for the metrics, and the request id and log context of `RequestTracking` around it.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Callable, Iterable
from urllib.parse import parse_qsl

from werkzeug.exceptions import MethodNotAllowed, RequestEntityTooLarge

from app.web.request_tracking import REQUEST_ID_KEY, ROUTE_KEY

log = logging.getLogger("app")  # Flask's app.logger for this app: unhandled errors are logged in one place


@dataclass(frozen=True)
class LeanAnswer:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def json_answer(http_status: int, **fields) -> LeanAnswer:
    return LeanAnswer(http_status, json.dumps(fields, separators=(",", ":")).encode() + b"\n")


_STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


class BodyTooLarge(Exception):
    """The request body is over the size cap: answered 413 as Flask would."""


class LeanRequest:
    """What a lean endpoint may read of its request: the environ, headers by WSGI name, and the body within a cap."""

    __slots__ = ("environ", "max_body_bytes")

    def __init__(self, environ: dict, max_body_bytes: int):
        self.environ = environ
        self.max_body_bytes = max_body_bytes

    def header(self, name: str) -> str | None:
        """A header by its HTTP name (`X-Shopify-Topic`), or None."""
        key = name.upper().replace("-", "_")
        return self.environ.get(key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key)

    @property
    def method(self) -> str:
        return self.environ.get("REQUEST_METHOD", "GET")

    @property
    def remote_addr(self) -> str | None:
        return self.environ.get("REMOTE_ADDR")

    def query(self, name: str) -> str | None:
        """The first value of a query parameter, or None."""
        for key, value in parse_qsl(self.environ.get("QUERY_STRING", ""), keep_blank_values=True):
            if key == name:
                return value
        return None

    def declared_length(self) -> int | None:
        declared = self.environ.get("CONTENT_LENGTH", "")
        return int(declared) if declared.isdigit() else None

    def body(self, limit: int | None = None) -> bytes:
        """The exact bytes sent: read by the declared length, or to the end of a chunked stream; BodyTooLarge over
        `limit` (else the app's cap)."""
        limit = self.max_body_bytes if limit is None else limit
        length = self.declared_length()
        stream = self.environ["wsgi.input"]
        if length is not None:
            if length > limit:
                raise BodyTooLarge()
            return stream.read(length) if length else b""
        if not self.environ.get("wsgi.input_terminated"):
            return b""  # no length and a stream the server does not end: as werkzeug, nothing is read
        chunks, size = [], 0
        while True:
            chunk = stream.read(min(65536, limit + 1 - size))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge()


Handler = Callable[[LeanRequest], LeanAnswer]


@dataclass
class _Route:
    pattern: str  # as the metrics name it
    methods: frozenset[str]
    handler: Handler


@dataclass
class LeanRoutes:
    """WSGI: a request for a registered path is answered by its handler; any other goes to `fallback` (Flask)."""

    fallback: Callable
    max_body_bytes: int
    _exact: dict[str, _Route] = field(default_factory=dict)
    _prefixes: list[tuple[str, _Route]] = field(default_factory=list)

    def add(self, path: str, handler: Handler, *, methods: Iterable[str] = ("POST",), subpaths: bool = False) -> None:
        """Answer `path` (and, with `subpaths`, any `path/...`) with `handler` for `methods`; other methods get 405."""
        self._exact[path] = _Route(path, frozenset(methods), handler)
        if subpaths:
            self._prefixes.append((path + "/", _Route(path + "/<path:_subpath>", frozenset(methods), handler)))

    def _route_for(self, path: str) -> _Route | None:
        route = self._exact.get(path)
        if route is None:
            for prefix, candidate in self._prefixes:
                if path.startswith(prefix) and len(path) > len(prefix):
                    return candidate
        return route

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        route = self._route_for(environ.get("PATH_INFO", ""))
        if route is None:
            return self.fallback(environ, start_response)
        environ[ROUTE_KEY] = route.pattern
        answer = self._answer(route, environ)
        if answer.status in (204, 304):  # no body, so no body headers (RFC 9110)
            headers = list(answer.headers)
        else:
            headers = [("Content-Type", answer.content_type), ("Content-Length", str(len(answer.body))), *answer.headers]
        start_response(_STATUS_LINES.get(answer.status, str(answer.status)), headers)
        return [answer.body] if environ.get("REQUEST_METHOD") != "HEAD" and answer.status not in (204, 304) else []

    def _answer(self, route: _Route, environ: dict) -> LeanAnswer:
        if environ.get("REQUEST_METHOD") not in route.methods:
            answer = json_answer(405, error="method_not_allowed", message=MethodNotAllowed.description)
            return LeanAnswer(405, answer.body, headers=(("Allow", ", ".join(sorted(route.methods))),))
        try:
            return route.handler(LeanRequest(environ, self.max_body_bytes))
        except BodyTooLarge:
            return json_answer(413, error="request_entity_too_large", message=RequestEntityTooLarge.description)
        except Exception:  # noqa: BLE001 - as Flask's handler for Exception in app/__init__.py
            log.exception("unhandled error")
            return json_answer(500, error="internal_error", message="the server failed; the request id is in X-Request-Id",
                               request_id=environ.get(REQUEST_ID_KEY))
