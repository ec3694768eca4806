"""The automations JSON API: bearer tokens per shop, flows (create, validate, enable, preview) and a customer's timeline."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from app.automations.api import issue_api_token
from app.models import ApiToken, Cart, utcnow
from app.tenancy import shop_context
from tests.factories import make_customer, make_shop


@pytest.fixture
def shop(app):
    runtime = app.extensions["companion"]
    with runtime.sessions.begin() as session:
        shop = make_shop(session, timezone="Europe/Warsaw", locale="pl", currency="PLN")
        token = issue_api_token(session, shop.id, "tests")
        other = make_shop(session)
        other_token = issue_api_token(session, other.id, "other")
        return {"id": shop.id, "auth": {"Authorization": f"Bearer {token}"},
                "other_auth": {"Authorization": f"Bearer {other_token}"}}


CART_FLOW = {"trigger": "cart_abandoned", "exit": ["purchased"], "steps": [
    {"id": "mail", "type": "send", "channel": "email", "kind": "recovery", "template": "abandoned_cart_1"},
    {"id": "wait", "type": "wait", "hours": 24},
    {"id": "coupon", "type": "coupon", "percent_off": 10},
    {"id": "mail2", "type": "send", "channel": "email", "kind": "recovery", "template": "abandoned_cart_2"}]}


def test_a_request_without_a_valid_token_is_refused(client, shop):
    assert client.get("/api/v1/flows").status_code == 401
    assert client.get("/api/v1/flows", headers={"Authorization": "Bearer cmp_1_not-a-token"}).status_code == 401


def test_only_the_hash_of_a_token_is_stored(app, shop):
    with app.extensions["companion"].sessions() as session, shop_context(shop["id"]):
        held = session.query(ApiToken).filter(ApiToken.shop_id == shop["id"]).one()
    assert held.token_hash not in shop["auth"]["Authorization"] and len(held.token_hash) == 64


def test_a_flow_is_created_from_the_library_enabled_and_listed(client, shop):
    created = client.post("/api/v1/flows", json={"library": "abandoned_cart"}, headers=shop["auth"])
    assert created.status_code == 201 and created.json["enabled"] is False
    enabled = client.post(f"/api/v1/flows/{created.json['id']}/enable", headers=shop["auth"])
    assert enabled.json["enabled"] is True
    listed = client.get("/api/v1/flows", headers=shop["auth"]).json["flows"]
    assert [(f["trigger"], f["enabled"]) for f in listed] == [("cart_abandoned", True)]


def test_another_shop_cannot_see_or_change_the_flow(client, shop):
    flow_id = client.post("/api/v1/flows", json={"library": "winback"}, headers=shop["auth"]).json["id"]
    assert client.get(f"/api/v1/flows/{flow_id}", headers=shop["other_auth"]).status_code == 404
    assert client.post(f"/api/v1/flows/{flow_id}/enable", headers=shop["other_auth"]).status_code == 404


def test_an_invalid_definition_is_answered_with_its_problems(client, shop):
    answer = client.post("/api/v1/flows", json={"name": "x", "definition": {"trigger": "nope", "steps": []}},
                         headers=shop["auth"])
    assert answer.status_code == 422 and answer.json["problems"]
    check = client.post("/api/v1/flows/validate", json={"definition": CART_FLOW}, headers=shop["auth"])
    assert check.json == {"valid": True, "problems": []}


def test_editing_a_flow_publishes_a_new_version(client, shop):
    flow_id = client.post("/api/v1/flows", json={"name": "mine", "definition": CART_FLOW}, headers=shop["auth"]).json["id"]
    edited = client.put(f"/api/v1/flows/{flow_id}", json={"definition": {**CART_FLOW, "exit": ["purchased", "unsubscribed"]}},
                        headers=shop["auth"])
    assert edited.json["version"] == 2


def test_preview_counts_what_the_last_30_days_would_have_produced_without_sending(app, client, shop):
    runtime = app.extensions["companion"]
    with runtime.sessions.begin() as session, shop_context(shop["id"]):
        for index, status in enumerate(["abandoned", "abandoned", "recovered"]):
            session.add(Cart(shop_id=shop["id"], platform_token=f"t{index}", email=f"k{index}@example.pl", currency="PLN",
                             total=Decimal("100"), status=status, last_activity_at=utcnow() - dt.timedelta(days=3)))
        session.add(Cart(shop_id=shop["id"], platform_token="old", email="old@example.pl", currency="PLN",
                         status="abandoned", last_activity_at=utcnow() - dt.timedelta(days=45)))

    preview = client.post("/api/v1/flows/preview", json={"definition": CART_FLOW}, headers=shop["auth"]).json

    assert preview["entered"] == 3
    assert preview["messages"] == {"mail": 2, "mail2": 2} and preview["coupons"] == 2
    with runtime.sessions() as session, shop_context(shop["id"]):
        from app.models import Message
        assert session.query(Message).count() == 0


def test_a_customer_timeline_shows_signals_and_decisions_in_the_shop_time_zone(app, client, shop):
    runtime = app.extensions["companion"]
    with runtime.sessions.begin() as session, shop_context(shop["id"]):
        customer = make_customer(session, type("S", (), {"id": shop["id"]})(), "marta@example.pl")
    event = client.post("/api/v1/events", json={"customer_id": customer.id, "name": "quiz_done", "id": "q-1",
                                                "properties": {"score": 7}}, headers=shop["auth"])
    assert event.status_code == 202

    timeline = client.get(f"/api/v1/customers/{customer.id}/timeline", headers=shop["auth"]).json

    [item] = timeline["items"]
    assert (item["type"], item["kind"], item["payload"]) == ("signal", "custom_event", {"score": 7, "event": "quiz_done"})
    assert item["at"]["local"].endswith(("+01:00", "+02:00")) and timeline["timezone"] == "Europe/Warsaw"


def test_a_custom_event_carrying_an_email_is_refused(client, shop):
    answer = client.post("/api/v1/events", json={"name": "x", "id": "e-1", "properties": {"email": "a@b.pl"}},
                         headers=shop["auth"])
    assert answer.status_code == 400


def test_the_openapi_document_lists_every_api_endpoint(client, app):
    document = client.get("/api/v1/openapi.json").json
    routes = {rule.rule.removeprefix("/api/v1").replace("<int:", "{").replace(">", "}")
              for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/v1/")}
    assert routes - {"/openapi.json"} == set(document["paths"])


def test_an_operator_issues_a_working_token_and_can_revoke_it(app, client, shop):
    runner = app.test_cli_runner()
    issued = runner.invoke(args=["api", "issue-token", str(shop["id"]), "--name", "zapier"])
    token = issued.output.strip()
    assert issued.exit_code == 0 and token.startswith(f"cmp_{shop['id']}_")
    assert client.get("/api/v1/flows", headers={"Authorization": f"Bearer {token}"}).status_code == 200

    assert runner.invoke(args=["api", "revoke-tokens", str(shop["id"])]).exit_code == 0
    assert client.get("/api/v1/flows", headers={"Authorization": f"Bearer {token}"}).status_code == 401
