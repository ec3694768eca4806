"""Flow preview: the audience and conditions read the same facts as the engine, segment membership and tags included."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import event

from app.automations.segments import create_segment
from app.automations.signals import emit_signal
from app.automations.tags import add_tag
from app.jobs.executors.local import LocalWorker
from app.models import Cart, Shop, utcnow
from app.tenancy import shop_context
from tests.factories import make_customer
from tests.segments_kit import polish_shop_with_api_token

DAY = dt.timedelta(days=1)
VIP = {"rule": "has_tag", "tag": "VIP"}
MAIL = {"id": "mail", "type": "send", "channel": "email", "kind": "recovery", "template": "abandoned_cart_1"}


@pytest.fixture
def runtime(app):
    return app.extensions["companion"]


@pytest.fixture
def shop(runtime):
    return polish_shop_with_api_token(runtime)


def customer(runtime, shop_id: int, email: str, *tags: str) -> int:
    with runtime.sessions.begin() as session, shop_context(shop_id):
        customer_id = make_customer(session, session.get(Shop, shop_id), email).id
        for name in tags:
            add_tag(session, shop_id, customer_id, name)
        return customer_id


def abandoned_cart(runtime, shop_id: int, email: str, *, customer_id: int | None = None, days_ago: int = 3) -> None:
    with runtime.sessions.begin() as session, shop_context(shop_id):
        session.add(Cart(shop_id=shop_id, platform_token=f"t-{email}", email=email, customer_id=customer_id,
                         currency="PLN", total=Decimal("100"), status="abandoned",
                         last_activity_at=utcnow() - days_ago * DAY))


def vip_segment(runtime, shop_id: int) -> int:
    """An enabled "VIP" segment with its first refresh done, so its members are stored as the engine reads them."""
    with runtime.sessions.begin() as session, shop_context(shop_id):
        segment_id = create_segment(session, shop_id, "VIP", VIP, enabled=True).id
    LocalWorker(runtime).run(exit_when_idle=True)
    return segment_id


def preview(client, shop: dict, definition: dict) -> dict:
    answer = client.post("/api/v1/flows/preview", json={"definition": definition}, headers=shop["auth"])
    assert answer.status_code == 200, answer.json
    return answer.json


def test_an_audience_of_one_segment_lets_in_only_its_members(runtime, client, shop):
    vip = customer(runtime, shop["id"], "vip@example.pl", "VIP")
    regular = customer(runtime, shop["id"], "regular@example.pl")
    abandoned_cart(runtime, shop["id"], "vip@example.pl", customer_id=vip)
    abandoned_cart(runtime, shop["id"], "regular@example.pl", customer_id=regular)
    vip_segment(runtime, shop["id"])

    answer = preview(client, shop, {"trigger": "cart_abandoned", "steps": [MAIL],
                                    "audience": {"field": "customer.segments", "op": "eq", "value": "VIP"}})

    assert (answer["entered"], answer["excluded_by_audience"], answer["messages"]) == (1, 1, {"mail": 1})


def test_a_guest_cart_counts_as_the_customer_with_its_email_and_their_segments(runtime, client, shop):
    customer(runtime, shop["id"], "vip@example.pl", "VIP")
    abandoned_cart(runtime, shop["id"], "vip@example.pl")  # the cart names no customer, only the address
    vip_segment(runtime, shop["id"])

    answer = preview(client, shop, {"trigger": "cart_abandoned", "steps": [MAIL],
                                    "audience": {"field": "customer.segments", "op": "eq", "value": "VIP"}})

    assert answer["entered"] == 1


def test_a_preview_writes_nothing_to_the_database(runtime, client, shop):
    customer(runtime, shop["id"], "vip@example.pl", "VIP")
    abandoned_cart(runtime, shop["id"], "vip@example.pl")  # a guest's cart: its customer is found, never created
    abandoned_cart(runtime, shop["id"], "new@example.pl")  # nobody has this address
    vip_segment(runtime, shop["id"])
    writes: list[str] = []

    def note_writes(conn, cursor, statement, parameters, context, executemany):
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb in ("INSERT", "UPDATE", "DELETE") and "api_tokens" not in statement:  # the token's last use is noted
            writes.append(statement)

    event.listen(runtime.engine, "before_cursor_execute", note_writes)
    try:
        preview(client, shop, {"trigger": "cart_abandoned",
                               "steps": [MAIL, {"id": "tag", "type": "tag", "add": "seen"}],
                               "audience": {"field": "customer.segments", "op": "eq", "value": "VIP"}})
    finally:
        event.remove(runtime.engine, "before_cursor_execute", note_writes)

    assert writes == []


def test_a_condition_on_segment_membership_takes_the_branch_the_engine_would(runtime, client, shop):
    for email, tags in (("vip@example.pl", ("VIP",)), ("a@example.pl", ()), ("b@example.pl", ())):
        abandoned_cart(runtime, shop["id"], email, customer_id=customer(runtime, shop["id"], email, *tags))
    vip_segment(runtime, shop["id"])

    answer = preview(client, shop, {"trigger": "cart_abandoned", "steps": [
        {"id": "which", "type": "condition", "if": {"field": "customer.segments", "op": "eq", "value": "VIP"},
         "then": "vip_mail", "else": "mail"},
        {"id": "vip_mail", "type": "send", "channel": "email", "kind": "recovery", "template": "abandoned_cart_2",
         "next": "exit"},
        MAIL]})

    assert answer["messages"] == {"vip_mail": 1, "mail": 2}


def test_a_condition_on_a_tag_is_read_from_the_customers_tags(runtime, client, shop):
    for email, tags in (("vip@example.pl", ("vip",)), ("a@example.pl", ())):
        abandoned_cart(runtime, shop["id"], email, customer_id=customer(runtime, shop["id"], email, *tags))

    answer = preview(client, shop, {"trigger": "cart_abandoned", "steps": [MAIL],
                                    "audience": {"field": "customer.tags", "op": "eq", "value": "vip"}})

    assert answer["entered"] == 1


def test_a_segment_entered_flow_is_previewed_from_the_entries_recorded_for_that_segment(runtime, client, shop):
    zofia = customer(runtime, shop["id"], "zofia@example.pl", "VIP")
    segment_id = vip_segment(runtime, shop["id"])
    with runtime.sessions.begin() as session, shop_context(shop["id"]):
        for key, segment in (("in-vip", {"segment_id": segment_id, "segment": "VIP"}),
                             ("in-other", {"segment_id": segment_id + 1000, "segment": "other"})):
            emit_signal(session, shop["id"], "segment_entered", dedupe_key=key, customer_id=zofia, payload=segment)

    answer = preview(client, shop, {"trigger": "segment_entered", "segment": "VIP", "steps": [
        {"id": "hello", "type": "send", "channel": "email", "kind": "promotional", "template": "vip_welcome_offer"}]})

    assert (answer["entered"], answer["messages"]) == (1, {"hello": 1})
