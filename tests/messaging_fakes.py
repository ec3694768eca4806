"""Loopback stand-ins for the providers the notifiers talk to: an SMTP sink, Twilio's REST API, a push service."""
from __future__ import annotations

import base64
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import http_ece
import jwt
from requests.structures import CaseInsensitiveDict
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- SMTP ---------------------------------------------------------------------------------------

class SinkHandler:
    """Accepts mail; RCPT answers and DATA behaviour can be set per recipient address."""

    def __init__(self):
        self.received: list = []
        self.rcpt_replies: dict[str, str] = {}
        self.drop_after_data: set[str] = set()
        self.data_delay: float = 0.0
        self.peers: list = []
        self.data_started = threading.Event()
        self.bodies = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.bodies += 1  # the whole message reached us, whatever happens to the reply
        self.data_started.set()
        if self.data_delay:
            import asyncio

            await asyncio.sleep(self.data_delay)
        self.received.append(envelope)
        self.peers.append(session.peer)
        if set(envelope.rcpt_tos) & self.drop_after_data:
            server.transport.close()  # the message arrived, but the client never hears so
            return "250 OK"
        return "250 Message accepted for delivery"

    def messages(self):
        return [message_from_bytes(env.original_content, policy=policy.default) for env in self.received]


class SmtpSink:
    def __init__(self):
        self.handler = SinkHandler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()


# --- Twilio ---------------------------------------------------------------------------------------

@dataclass
class FakeTwilio:
    """Twilio's Messages resource on loopback: 201 with a SID, or the error a number is set up to cause."""

    errors: dict[str, tuple[int, dict, dict]] = field(default_factory=dict)  # to -> (status, body, headers)
    requests: list[dict] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    hang_up_on: set[str] = field(default_factory=set)  # numbers whose message is created, but no reply is sent
    created: dict[str, str] = field(default_factory=dict)  # to -> SID of the message Twilio holds

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "FakeTwilio":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                return

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                fake.requests.append({"path": self.path, "form": form, "auth": self.headers.get("Authorization")})
                status, body, headers = fake.errors.get(form.get("To"), (201, None, {}))
                if body is None:
                    body = {"sid": f"SM{len(fake.requests):032x}", "status": "queued", "to": form.get("To"),
                            "body": form.get("Body"), "num_segments": "1"}
                    fake.created[form.get("To")] = body["sid"]
                if form.get("To") in fake.hang_up_on:
                    self.close_connection = True  # the message exists at Twilio; the caller never hears so
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- Web push --------------------------------------------------------------------------------------

@dataclass
class BrowserSubscription:
    """What a browser holds for one push subscription: its ECDH key pair and auth secret."""

    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    @classmethod
    def create(cls, endpoint: str) -> "BrowserSubscription":
        import os

        return cls(endpoint, ec.generate_private_key(ec.SECP256R1()), os.urandom(16))

    @property
    def p256dh(self) -> str:
        raw = self.private_key.public_key().public_bytes(serialization.Encoding.X962,
                                                         serialization.PublicFormat.UncompressedPoint)
        return _b64url(raw)

    @property
    def auth_b64(self) -> str:
        return _b64url(self.auth)

    def info(self) -> dict:
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth_b64}}

    def decrypt(self, body: bytes) -> bytes:
        return http_ece.decrypt(body, private_key=self.private_key, auth_secret=self.auth, version="aes128gcm")


@dataclass
class PushReceipt:
    path: str
    headers: dict
    body: bytes
    peer_port: int


@dataclass
class FakePushService:
    """A push service on loopback: records each POST; a path can be set up to answer 404/410/429."""

    answers: dict[str, tuple[int, dict]] = field(default_factory=dict)
    received: list[PushReceipt] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "FakePushService":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                return

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                fake.received.append(PushReceipt(self.path, CaseInsensitiveDict(self.headers.items()), body, self.client_address[1]))
                status, headers = fake.answers.get(self.path, (201, {}))
                self.send_response(status)
                if status == 201:
                    self.send_header("Location", f"{fake.origin}/messages/{len(fake.received)}")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def verify_vapid(authorization: str, expected_aud: str) -> dict:
    """Check a `vapid t=..., k=...` header as a push service would (RFC 8292); returns the claims."""
    scheme, _, params = authorization.partition(" ")
    assert scheme == "vapid", authorization
    parts = dict(part.strip().split("=", 1) for part in params.split(","))
    raw_key = base64.urlsafe_b64decode(parts["k"] + "=" * (-len(parts["k"]) % 4))
    public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw_key)
    claims = jwt.decode(parts["t"], public_key, algorithms=["ES256"], audience=expected_aud)
    assert claims["exp"] <= time.time() + 24 * 3600
    return claims
