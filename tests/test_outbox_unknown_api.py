"""The owner's JSON API for sends with an unknown outcome: list them, settle each as sent or not sent."""
from __future__ import annotations

import pytest

from app.automations.api import issue_api_token
from app.tenancy import shop_context
from tests.outbox_helpers import sink, web, web_runtime as runtime  # noqa: F401 (fixtures)
from tests.outbox_helpers import CART_CONTEXT, make_marketing_customer, message_row, schedule, work


def _token(runtime, shop_id) -> dict:
    with runtime.sessions.begin() as session, shop_context(shop_id):
        return {"Authorization": f"Bearer {issue_api_token(session, shop_id)}"}


@pytest.fixture
def shop(runtime, sink):
    """A shop with one message whose SMTP reply was lost (unknown) and one that was sent."""
    sink.handler.drop_after_data.add("marta@example.pl")
    shop_id, customer_id = make_marketing_customer(runtime)
    lost = schedule(runtime, shop_id, channel="email", kind="recovery", template="cart_reminder",
                    customer_id=customer_id, context=CART_CONTEXT, dedupe_parts=("cart-9",)).message_id
    sent = schedule(runtime, shop_id, channel="email", kind="transactional", template="cart_reminder",
                    recipient="jan@example.pl", context=CART_CONTEXT, dedupe_parts=("cart-10",)).message_id
    work(runtime)
    assert message_row(runtime, shop_id, lost).status == "unknown"
    sink.handler.drop_after_data.clear()
    return {"id": shop_id, "lost": lost, "sent": sent, "auth": _token(runtime, shop_id)}


def test_the_owner_sees_the_unknown_send_with_its_attempt(web, shop):
    response = web.test_client().get("/api/v1/messages/unknown", headers=shop["auth"])
    assert response.status_code == 200
    (message,) = response.json["messages"]
    assert (message["id"], message["status"], message["recipient"]) == (shop["lost"], "unknown", "marta@example.pl")
    assert [(a["attempt"], a["outcome"]) for a in message["attempts"]] == [(1, "unknown")]
    assert "after the message body was sent" in message["error"]
    assert response.json["next_before_id"] is None


def test_the_list_needs_the_shops_api_token(web, shop):
    assert web.test_client().get("/api/v1/messages/unknown").status_code == 401
    assert web.test_client().get("/api/v1/messages/unknown", headers={"Authorization": "Bearer cmp_1_nope"}).status_code == 401


def test_another_shop_neither_sees_nor_settles_it(web, runtime, shop):
    other_shop, _ = make_marketing_customer(runtime, email="jan@example.pl")
    other = _token(runtime, other_shop)
    assert web.test_client().get("/api/v1/messages/unknown", headers=other).json["messages"] == []
    response = web.test_client().post(f"/api/v1/messages/{shop['lost']}/resolve", json={"outcome": "sent"}, headers=other)
    assert response.status_code == 404
    assert message_row(runtime, shop["id"], shop["lost"]).status == "unknown"


def test_settling_it_as_sent_records_the_owners_word(web, runtime, shop):
    response = web.test_client().post(f"/api/v1/messages/{shop['lost']}/resolve", headers=shop["auth"],
                                      json={"outcome": "sent", "note": "Marta confirmed by phone"})
    assert response.status_code == 200 and response.json["status"] == "sent"
    message = message_row(runtime, shop["id"], shop["lost"])
    assert message.status == "sent" and message.sent_at is not None and message.error is None
    assert message.gate_trace[-1]["gate"] == "owner_resolution"
    assert "Marta confirmed by phone" in message.gate_trace[-1]["detail"]
    assert web.test_client().get("/api/v1/messages/unknown", headers=shop["auth"]).json["messages"] == []


def test_settling_it_as_not_sent_fails_it_and_sends_nothing(web, runtime, sink, shop):
    received = len(sink.handler.received)
    response = web.test_client().post(f"/api/v1/messages/{shop['lost']}/resolve", headers=shop["auth"],
                                      json={"outcome": "not_sent"})
    assert response.status_code == 200 and response.json["status"] == "failed"
    work(runtime)
    assert len(sink.handler.received) == received


def test_not_sent_with_resend_sends_it_once_more_through_the_gates(web, runtime, sink, shop):
    received = len(sink.handler.received)
    response = web.test_client().post(f"/api/v1/messages/{shop['lost']}/resolve", headers=shop["auth"],
                                      json={"outcome": "not_sent", "resend": True})
    assert response.status_code == 200 and response.json["status"] == "scheduled"
    work(runtime)
    message = message_row(runtime, shop["id"], shop["lost"])
    assert message.status == "sent" and len(sink.handler.received) == received + 1
    assert [e["gate"] for e in message.gate_trace].count("consent") == 2  # the gates ran again before the resend


def test_only_an_unknown_message_can_be_settled(web, runtime, shop):
    response = web.test_client().post(f"/api/v1/messages/{shop['sent']}/resolve", headers=shop["auth"],
                                      json={"outcome": "not_sent"})
    assert response.status_code == 409 and response.json["status"] == "sent"
    assert message_row(runtime, shop["id"], shop["sent"]).status == "sent"


@pytest.mark.parametrize("body", [{"outcome": "maybe"}, {}, {"outcome": "sent", "resend": True},
                                  {"outcome": "not_sent", "resend": "yes"}])
def test_a_malformed_resolution_is_refused(web, runtime, shop, body):
    response = web.test_client().post(f"/api/v1/messages/{shop['lost']}/resolve", headers=shop["auth"], json=body)
    assert response.status_code == 400
    assert message_row(runtime, shop["id"], shop["lost"]).status == "unknown"


def test_the_openapi_document_describes_both_endpoints(web):
    document = web.test_client().get("/api/v1/openapi.json").json
    assert "get" in document["paths"]["/messages/unknown"]
    assert document["paths"]["/messages/{message_id}/resolve"]["post"]["requestBody"]
    assert document["components"]["schemas"]["Resolution"]["properties"]["outcome"]["enum"] == ["sent", "not_sent"]

