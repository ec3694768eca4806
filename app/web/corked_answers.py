"""Small answers leave in one TCP segment: the socket is corked while gunicorn writes the headers and the body."""
from __future__ import annotations

import socket
from typing import Callable, Iterable, Iterator

_CORK = getattr(socket, "TCP_CORK", None)  # Linux; elsewhere nothing is done


class CorkedAnswers:
    """Gunicorn writes a response's headers and its body with two `sendall` calls, so a small JSON answer
    crossed the network as two segments, each with its own trip through the kernel on both ends: a fifth of a
    busy web worker's time went to that on loopback (py-spy, bench/storefront.py). With TCP_CORK set on the
    client socket (which gunicorn puts in the environ) the kernel holds the headers until the body joins them,
    and lifting it once the answer is written sends them together, as nginx's `tcp_nopush` does.

    Files gunicorn can `sendfile` (labels, the snippet) are handed over untouched and uncorked at once.
    Without gunicorn's socket (the test client, another server) it changes nothing.
    """

    def __init__(self, wsgi_app: Callable):
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        client = environ.get("gunicorn.socket")
        if _CORK is None or client is None or not _set_cork(client, 1):
            return self.wsgi_app(environ, start_response)
        try:
            body = self.wsgi_app(environ, start_response)
        except BaseException:
            _set_cork(client, 0)
            raise
        file_wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(body, file_wrapper):
            _set_cork(client, 0)
            return body
        return _UncorkedWhenWritten(body, client)


class _UncorkedWhenWritten:
    """The answer's body, lifting the cork when the server closes it (after writing all of it, or on error)."""

    def __init__(self, body: Iterable[bytes], client: socket.socket):
        self._body, self._client = body, client

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            _set_cork(self._client, 0)


def _set_cork(client: socket.socket, on: int) -> bool:
    try:
        client.setsockopt(socket.IPPROTO_TCP, _CORK, on)
    except OSError:  # not a TCP socket (a Unix socket behind a proxy), or already closed
        return False
    return True
