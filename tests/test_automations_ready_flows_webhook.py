"""A flow's "call a webhook out" step end to end, against a real HTTPS server on a loopback port."""
from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.automations.flows import create_flow
from app.models import AutomationDecision, Job
from app.tenancy import shop_context
from tests.automations_kit import (API_KEY, EMAIL, SECRET, T0, clock_tick, fake, put_cart, rows, runtime,  # noqa: F401
                                   shop_id, travel, work)

MIN = dt.timedelta(minutes=1)


class Receiver:
    """An HTTPS endpoint on 127.0.0.1 with a self-signed certificate; answers each POST with the next queued status."""

    def __init__(self, tmp_path):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
        now = dt.datetime.now(dt.timezone.utc)
        certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                       .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=400))
                       .not_valid_after(now + dt.timedelta(days=400))
                       .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                      critical=False)
                       .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                       .sign(key, hashes.SHA256()))
        self.cert_path, key_path = tmp_path / "receiver.pem", tmp_path / "receiver.key"
        self.cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        self.received: list[dict] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                return

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, key_path)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}/hooks/companion"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(tmp_path, monkeypatch):
    running = Receiver(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(running.cert_path))  # trust exactly this self-signed certificate
    yield running
    running.stop()


def _app(make_settings, fake, **env):
    from app import create_app

    return create_app(make_settings(SHOPIFY_API_KEY=API_KEY, SHOPIFY_API_SECRET=SECRET, SHOPIFY_ADMIN_BASE_URL=fake.url,
                                    PUBLIC_URL="https://companion.example.com", **env))


@pytest.fixture
def shopify_app(make_settings, fake):
    """Loopback addresses are allowed here, as a test or an on-premises install would configure."""
    app = _app(make_settings, fake, ALLOW_PRIVATE_STORE_URLS="true")
    yield app
    app.extensions["companion"].close()


def webhook_flow(runtime, shop_id: int, url: str) -> int:
    with runtime.sessions.begin() as session, shop_context(shop_id):
        return create_flow(session, shop_id, "tell the CRM", {"trigger": "cart_abandoned", "steps": [
            {"id": "notify_crm", "type": "webhook", "url": url}]}, enabled=True).id


def webhook_decisions(runtime, shop_id: int) -> list[AutomationDecision]:
    return [d for d in rows(runtime, shop_id, AutomationDecision) if d.decision == "webhook_called"]


def test_the_webhook_step_posts_the_runs_ids_once_with_an_idempotency_key(runtime, shop_id, receiver, travel):
    flow_id = webhook_flow(runtime, shop_id, receiver.url)
    travel(T0)
    cart_id = put_cart(runtime, shop_id, at=T0)

    clock_tick(runtime, travel(T0 + 61 * MIN))
    clock_tick(runtime, travel(T0 + 62 * MIN))

    [call] = receiver.received
    body = call["body"]
    assert call["path"] == "/hooks/companion"
    assert (body["event"], body["shop_id"], body["flow_id"], body["step"]) == ("flow_step", shop_id, flow_id, "notify_crm")
    assert body["subject"] == {"type": "cart", "id": cart_id}
    assert call["headers"]["Idempotency-Key"] == f"{shop_id}:{body['flow_run_id']}:notify_crm"
    assert EMAIL not in json.dumps(body), "ids only: no personal data leaves through a webhook"
    [decision] = webhook_decisions(runtime, shop_id)
    assert decision.detail["status"] == 200


def test_a_webhook_that_answers_503_is_called_again_until_it_accepts(runtime, shop_id, receiver, travel):
    webhook_flow(runtime, shop_id, receiver.url)
    receiver.statuses = [503]
    travel(T0)
    put_cart(runtime, shop_id, at=T0)

    clock_tick(runtime, travel(T0 + 61 * MIN))
    assert len(receiver.received) == 1 and webhook_decisions(runtime, shop_id) == []
    travel(T0 + 2 * 60 * MIN)  # past any retry delay
    work(runtime)

    assert len(receiver.received) == 2
    assert len({call["headers"]["Idempotency-Key"] for call in receiver.received}) == 1, "the same key on the retry"
    [decision] = webhook_decisions(runtime, shop_id)
    assert decision.detail["status"] == 200


def test_in_production_a_webhook_to_a_loopback_address_is_refused(make_settings, fake, receiver, travel):
    app = _app(make_settings, fake)  # ALLOW_PRIVATE_STORE_URLS defaults to false
    runtime = app.extensions["companion"]
    try:
        from tests.factories import make_shop

        with runtime.sessions.begin() as session:
            shop_id = make_shop(session, "inna-kwiaciarnia.myshopify.com", credentials={"access_token": "shpat_x"},
                                timezone="Europe/Warsaw", locale="pl", currency="PLN").id
        webhook_flow(runtime, shop_id, receiver.url)
        travel(T0)
        put_cart(runtime, shop_id, at=T0)

        clock_tick(runtime, travel(T0 + 61 * MIN))

        assert receiver.received == []
        [job] = [j for j in rows(runtime, shop_id, Job) if j.kind == "automations.call_webhook"]
        assert "not a public address" in (job.last_error or "")
    finally:
        runtime.close()
