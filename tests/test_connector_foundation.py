"""What every connector stands on: plain records, safe outbound HTTP, and the boundary to the service."""
from __future__ import annotations

import ast
import datetime as dt
import http.server
import threading
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from app.config import PROJECT_ROOT
from connectors.errors import UnsafeURL
from connectors.http import SafeSession, UrlPolicy
from connectors.records import Money, e164, utc


def test_connectors_import_nothing_from_the_service_flask_or_sqlalchemy():
    forbidden = ("app", "flask", "sqlalchemy")
    offenders = []
    for path in (PROJECT_ROOT / "connectors").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(PROJECT_ROOT)}: {n}" for n in names if n.split(".")[0] in forbidden]
    assert offenders == []


def test_money_parses_platform_amounts_exactly_and_keeps_its_currency():
    assert Money.parse("129.99", "pln") == Money(Decimal("129.99"), "PLN")
    assert Money.parse(0.1, "RON").amount == Decimal("0.1")
    assert Money.parse("10.00", "EUR") + Money.parse("0.05", "EUR") == Money(Decimal("10.05"), "EUR")


@pytest.mark.parametrize("amount,currency,problem", [
    ("12,50", "PLN", "not a money amount"),
    ("NaN", "PLN", "finite"),
    ("1", "zł", "three-letter ISO code"),
])
def test_money_refuses_what_it_cannot_represent_exactly(amount, currency, problem):
    with pytest.raises(ValueError, match=problem):
        Money.parse(amount, currency)


def test_money_in_different_currencies_does_not_add_up():
    with pytest.raises(ValueError):
        Money.parse("1", "PLN") + Money.parse("1", "EUR")


def test_times_must_carry_their_zone_and_come_out_in_utc():
    warsaw = dt.timezone(dt.timedelta(hours=1))
    assert utc(dt.datetime(2026, 11, 22, 12, 0, tzinfo=warsaw)) == dt.datetime(2026, 11, 22, 11, 0, tzinfo=dt.timezone.utc)
    with pytest.raises(ValueError, match="naive"):
        utc(dt.datetime(2026, 11, 22, 12, 0))


def test_phone_numbers_are_e164_or_nothing():
    assert e164("+48 600 123 456") == "+48600123456"
    assert e164("+40 (721) 234-567") == "+40721234567"
    assert e164("600123456") is None


class _Redirecting(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/slow":
            threading.Event().wait(2)
        self.send_response(302)
        self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def loopback_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_a_redirect_is_returned_not_followed(loopback_server):
    response = SafeSession(UrlPolicy(allow_private=True)).get(loopback_server + "/wp-json/")
    assert response.status_code == 302
    assert response.url.startswith(loopback_server)


def test_every_call_times_out(loopback_server):
    with pytest.raises(requests.exceptions.ReadTimeout):
        SafeSession(UrlPolicy(allow_private=True), timeout=(1.0, 0.3)).get(loopback_server + "/slow")


@pytest.mark.parametrize("url,problem", [
    ("http://127.0.0.1:8080/wp-json/", "not a public address"),
    ("https://10.1.2.3/wp-json/", "not a public address"),
    ("http://[::1]/", "not a public address"),
    ("http://169.254.169.254/latest/meta-data/", "not a public address"),
    ("ftp://shop.example/", "only https"),
    ("https://user:pw@shop.example/", "credentials"),
])
def test_tenant_urls_to_private_places_are_refused_in_production(url, problem):
    with pytest.raises(UnsafeURL, match=problem):
        SafeSession(UrlPolicy()).get(url)


def test_tests_may_allow_loopback_by_configuration(loopback_server):
    assert SafeSession(UrlPolicy(allow_private=True)).get(loopback_server).status_code == 302
