"""Small answers leave in one TCP segment: the client socket is corked while the server writes headers and body."""
from __future__ import annotations

import io
import socket

import pytest

from app.web.corked_answers import CorkedAnswers

pytestmark = pytest.mark.skipif(not hasattr(socket, "TCP_CORK"), reason="TCP_CORK is Linux's")


@pytest.fixture
def client_socket():
    """The server's end of a real loopback TCP connection, as gunicorn hands it over in the environ."""
    listener = socket.create_server(("127.0.0.1", 0))
    caller = socket.create_connection(listener.getsockname())
    served, _ = listener.accept()
    yield served
    for sock in (served, caller, listener):
        sock.close()


def corked(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK))


class FileWrapper:
    def __init__(self, filelike, block_size=8192):
        self.filelike = filelike

    def __iter__(self):
        return iter([self.filelike.read()])


def test_the_socket_is_corked_while_the_answer_is_made_and_written_and_uncorked_once_it_is_closed(client_socket):
    seen = {}

    def app(environ, start_response):
        seen["while_answering"] = corked(client_socket)
        start_response("202 Accepted", [("Content-Type", "application/json")])
        return [b'{"status":"accepted"}']

    body = CorkedAnswers(app)({"gunicorn.socket": client_socket}, lambda *args: None)
    written = b"".join(body)
    still_corked_before_close = corked(client_socket)
    body.close()
    assert seen["while_answering"] and still_corked_before_close and not corked(client_socket)
    assert written == b'{"status":"accepted"}'


def test_a_file_the_server_can_sendfile_is_handed_over_untouched_with_the_socket_uncorked(client_socket):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/pdf")])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"%PDF-1.4"))

    body = CorkedAnswers(app)({"gunicorn.socket": client_socket, "wsgi.file_wrapper": FileWrapper}, lambda *a: None)
    assert isinstance(body, FileWrapper) and not corked(client_socket)


def test_an_app_that_fails_leaves_the_socket_uncorked(client_socket):
    def app(environ, start_response):
        raise RuntimeError("broken view")

    with pytest.raises(RuntimeError):
        CorkedAnswers(app)({"gunicorn.socket": client_socket}, lambda *args: None)
    assert not corked(client_socket)


def test_without_a_server_socket_the_answer_passes_through_as_it_is():
    answer = [b"ok"]
    assert CorkedAnswers(lambda environ, start_response: answer)({}, lambda *args: None) is answer
