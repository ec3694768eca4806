"""A fake remote service on a loopback port: real HTTP in a background thread, started and stopped by the test."""
from __future__ import annotations

import http.server
import threading
from typing import ClassVar


class LoopbackFake:
    """Base of the fake platforms and couriers. A subclass names its request handler class in `handler_class`;
    each started fake gets its own subclass of it whose `fake` attribute points back at the fake."""

    handler_class: ClassVar[type[http.server.BaseHTTPRequestHandler]]
    _server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self):
        handler = type("Handler", (self.handler_class,), {"fake": self})
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
