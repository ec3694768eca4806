"""The web push notifier against a loopback push service that decrypts what it receives and checks the VAPID JWT."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from py_vapid import Vapid02

from app import crypto
from app.notifiers.base import ACCEPTED, FAILED_PERMANENTLY, RETRY_LATER, Envelope
from app.notifiers.push import PushNotifier, PushSettings, application_server_key, load_or_create_vapid_key
from tests.conftest import FERNET_KEY
from tests.messaging_fakes import BrowserSubscription, FakePushService, verify_vapid


@pytest.fixture
def push_service():
    fake = FakePushService().start()
    yield fake
    fake.stop()


@pytest.fixture
def vapid() -> Vapid02:
    key = Vapid02()
    key.generate_keys()
    return key


def _envelope(subscription: BrowserSubscription, **payload) -> Envelope:
    return Envelope(channel="push", recipient=subscription.endpoint, idempotency_key="k", subject="Koszyk",
                    text="Twój koszyk czeka", payload={"subscription": subscription.info(), **payload})


def test_the_push_service_can_decrypt_our_payload_with_the_subscriptions_key(push_service, vapid):
    browser = BrowserSubscription.create(f"{push_service.origin}/push/abc")
    outcome = PushNotifier(vapid, PushSettings(subject="mailto:ops@example.pl")).send(
        _envelope(browser, data={"title": "Koszyk", "url": "https://sklep.example.pl/cart"}))
    assert outcome.status == ACCEPTED and outcome.provider_message_id.endswith("/messages/1")
    (receipt,) = push_service.received
    assert json.loads(browser.decrypt(receipt.body)) == {"title": "Koszyk", "url": "https://sklep.example.pl/cart"}
    assert receipt.headers["Content-Encoding"] == "aes128gcm"


def test_the_vapid_jwt_is_signed_by_our_key_for_the_push_services_origin(push_service, vapid):
    browser = BrowserSubscription.create(f"{push_service.origin}/push/abc")
    PushNotifier(vapid, PushSettings(subject="mailto:ops@example.pl")).send(_envelope(browser))
    authorization = push_service.received[0].headers["Authorization"]
    claims = verify_vapid(authorization, expected_aud=push_service.origin)
    assert claims["sub"] == "mailto:ops@example.pl"
    assert authorization.split("k=")[1] == application_server_key(vapid)


def test_each_send_gets_fresh_claims_so_two_push_services_each_see_their_own_audience(vapid):
    first, second = FakePushService().start(), FakePushService().start()
    try:
        notifier = PushNotifier(vapid, PushSettings(subject="mailto:ops@example.pl"))
        for service in (first, second):
            notifier.send(_envelope(BrowserSubscription.create(f"{service.origin}/push/x")))
        for service in (first, second):
            verify_vapid(service.received[0].headers["Authorization"], expected_aud=service.origin)
    finally:
        first.stop()
        second.stop()


def test_ttl_urgency_and_topic_headers_are_sent(push_service, vapid):
    browser = BrowserSubscription.create(f"{push_service.origin}/push/abc")
    PushNotifier(vapid, PushSettings(subject="mailto:ops@example.pl")).send(
        _envelope(browser, ttl=3600, urgency="high", topic="cart-42"))
    headers = push_service.received[0].headers
    assert (headers["TTL"], headers["Urgency"], headers["Topic"]) == ("3600", "high", "cart-42")


@pytest.mark.parametrize("status", [404, 410])
def test_an_expired_subscription_fails_and_is_reported_gone(push_service, vapid, status):
    push_service.answers["/push/gone"] = (status, {})
    outcome = PushNotifier(vapid, PushSettings(subject="mailto:ops@example.pl")).send(
        _envelope(BrowserSubscription.create(f"{push_service.origin}/push/gone")))
    assert outcome.status == FAILED_PERMANENTLY and outcome.subscription_gone


def test_a_throttled_push_is_retried_after_the_services_retry_after(push_service, vapid):
    push_service.answers["/push/busy"] = (429, {"Retry-After": "42"})
    outcome = PushNotifier(vapid, PushSettings(subject="mailto:ops@example.pl")).send(
        _envelope(BrowserSubscription.create(f"{push_service.origin}/push/busy")))
    assert outcome.status == RETRY_LATER and outcome.retry_after == 42


def test_consecutive_pushes_reuse_one_connection(push_service, vapid):
    notifier = PushNotifier(vapid, PushSettings(subject="mailto:ops@example.pl"))
    for n in range(3):
        notifier.send(_envelope(BrowserSubscription.create(f"{push_service.origin}/push/{n}")))
    assert len({receipt.peer_port for receipt in push_service.received}) == 1


def test_the_vapid_key_is_generated_once_and_kept_encrypted(tmp_path):
    crypto.configure_keys([FERNET_KEY])
    first = load_or_create_vapid_key(tmp_path)
    second = load_or_create_vapid_key(tmp_path)
    assert application_server_key(first) == application_server_key(second)
    assert "PRIVATE KEY" not in (tmp_path / "vapid.json").read_text()


class _ForwardProxy:
    """A plain HTTP forward proxy on loopback that answers for the push service and records what it was asked."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                return

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(self.path)  # a proxied request names the whole URL
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    running = _ForwardProxy()
    monkeypatch.setenv("http_proxy", running.url)
    yield running
    running.stop()


def test_a_push_goes_through_the_proxy_the_environment_names(push_service, vapid, proxy):
    browser = BrowserSubscription.create(f"{push_service.origin}/push/abc")
    outcome = PushNotifier(vapid, PushSettings(subject="mailto:ops@example.pl")).send(_envelope(browser))
    assert outcome.status == ACCEPTED
    assert proxy.received == [f"{push_service.origin}/push/abc"] and push_service.received == []


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "localhost, 127.0.0.1", "127.0.0.0/8", "*"])
def test_a_push_service_on_the_no_proxy_list_is_reached_directly(push_service, vapid, proxy, monkeypatch, no_proxy):
    monkeypatch.setenv("no_proxy", no_proxy)
    browser = BrowserSubscription.create(f"{push_service.origin}/push/abc")
    outcome = PushNotifier(vapid, PushSettings(subject="mailto:ops@example.pl")).send(_envelope(browser))
    assert outcome.status == ACCEPTED
    assert len(push_service.received) == 1 and proxy.received == []


@pytest.mark.parametrize("no_proxy", ["10.0.0.0/8", "push.example.com", "127.0.0.2"])
def test_a_no_proxy_list_that_does_not_name_the_push_service_keeps_the_proxy(push_service, vapid, proxy, monkeypatch,
                                                                             no_proxy):
    monkeypatch.setenv("no_proxy", no_proxy)
    browser = BrowserSubscription.create(f"{push_service.origin}/push/abc")
    PushNotifier(vapid, PushSettings(subject="mailto:ops@example.pl")).send(_envelope(browser))
    assert len(proxy.received) == 1 and push_service.received == []
