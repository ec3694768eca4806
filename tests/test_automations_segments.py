"""Segments: definitions as data compiled to one SQL query, stored membership, entry as a flow trigger, the API, tags."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import event, select

from app.automations.api import issue_api_token
from app.automations.definitions import validate_definition
from app.automations.flows import create_flow
from app.automations.signals import emit_signal
from app.automations.segments import (SegmentScope, compile_segment, count_matching, create_segment,
                                      enqueue_segment_refreshes, refresh_segment, set_segment_enabled,
                                      validate_segment)
from app.models import Customer, CustomerTag, FlowRun, Job, Message, Segment, SegmentMember, Shop, Signal, Tag, utcnow
from app.tenancy import shop_context
from tests.factories import make_customer, make_order, make_shop
from tests.segments_kit import expected_recent_big_spenders_or_vip, fill_shop
from tests.automations_kit import route, work

DAY = dt.timedelta(days=1)
RECENT_BUYERS = {"rule": "bought", "within_days": 30}
BIG_SPENDERS = {"rule": "lifetime_spend", "op": "gt", "amount": "2000", "currency": "PLN"}
VIP = {"rule": "has_tag", "tag": "VIP"}


@pytest.fixture
def runtime(app):
    return app.extensions["companion"]


@pytest.fixture
def shop(runtime):
    with runtime.sessions.begin() as session:
        shop = make_shop(session, timezone="Europe/Warsaw", locale="pl", currency="PLN")
        token = issue_api_token(session, shop.id, "tests")
        other = make_shop(session, currency="PLN")
        other_token = issue_api_token(session, other.id, "other")
        return {"id": shop.id, "other_id": other.id, "auth": {"Authorization": f"Bearer {token}"},
                "other_auth": {"Authorization": f"Bearer {other_token}"}}


def customer(runtime, shop_id: int, email: str, **fields) -> int:
    with runtime.sessions.begin() as session, shop_context(shop_id):
        return make_customer(session, session.get(Shop, shop_id), email, **fields).id


def order(runtime, shop_id: int, customer_id: int, *, days_ago: float, total: str = "100.00", currency: str = "PLN",
          paid: bool = True, cancelled: bool = False) -> int:
    at = utcnow() - dt.timedelta(days=days_ago)
    with runtime.sessions.begin() as session, shop_context(shop_id):
        row = make_order(session, session.get(Shop, shop_id), session.get(Customer, customer_id), total=total,
                         currency=currency, placed_at=at, paid_at=at if paid else None,
                         financial_status="paid" if paid else "pending", cancelled_at=at if cancelled else None)
        return row.id


def tag(runtime, shop_id: int, customer_id: int, name: str) -> None:
    with runtime.sessions.begin() as session, shop_context(shop_id):
        tag_id = session.scalars(select(Tag.id).where(Tag.shop_id == shop_id, Tag.name == name)).first()
        if tag_id is None:
            row = Tag(shop_id=shop_id, name=name)
            session.add(row)
            session.flush()
            tag_id = row.id
        session.add(CustomerTag(shop_id=shop_id, customer_id=customer_id, tag_id=tag_id))


def emails(runtime, shop_id: int, customer_id: int, opened: list[bool]) -> None:
    """Emails sent to the customer, oldest first; each opened or not."""
    start = utcnow() - dt.timedelta(days=len(opened) + 1)
    with runtime.sessions.begin() as session, shop_context(shop_id):
        for index, was_opened in enumerate(opened):
            sent = start + dt.timedelta(days=index)
            session.add(Message(shop_id=shop_id, channel="email", kind="promotional", recipient="x@example.pl",
                                customer_id=customer_id, template="newsletter", dedupe_key=f"m:{customer_id}:{index}",
                                status="sent", sent_at=sent, opened_at=sent + dt.timedelta(hours=2) if was_opened else None))


def matching(runtime, shop_id: int, definition: dict) -> set[int]:
    with runtime.sessions() as session, shop_context(shop_id):
        scope = SegmentScope(shop_id, utcnow(), "PLN")
        return set(session.scalars(compile_segment(definition, scope)))


# --- the definition language -------------------------------------------------------------------------------------

def test_a_definition_with_mistakes_is_answered_with_every_problem_and_where_it_is():
    problems = validate_segment({"all": [
        {"rule": "bought", "within_days": "thirty"},
        {"rule": "lifetime_spend", "op": "over", "amount": 2000.5, "currency": "zł"},
        {"any": []},
        {"rule": "opened_email"},
        {"rule": "has_tag", "tag": "VIP", "colour": "gold"},
        {"rule": "birthday_month"},
    ]})
    assert problems == [
        "definition.all[0] (bought): within_days must be a whole number of days from 1 to 3650",
        "definition.all[1] (lifetime_spend): op must be one of gt, gte, lt, lte",
        'definition.all[1] (lifetime_spend): amount must be a non-negative decimal written as a string, e.g. "2000.00"',
        'definition.all[1] (lifetime_spend): currency must be an ISO 4217 code such as "PLN" (amounts are never converted)',
        "definition.all[2].any: must be a non-empty list",
        "definition.all[3] (opened_email): needs exactly one of of_last (the last N emails sent) or within_days",
        "definition.all[4] (has_tag): unknown key 'colour'; expected tag",
        "definition.all[5]: unknown rule 'birthday_month'; rules are bought, lifetime_spend, orders_count, "
        "opened_email, clicked_email, has_tag, locale",
    ]
    assert validate_segment({"all": [RECENT_BUYERS, BIG_SPENDERS, {"not": VIP}]}) == []
    assert validate_segment([RECENT_BUYERS]) != []


def test_bought_in_the_last_30_days_counts_orders_placed_since_and_not_cancelled(runtime, shop):
    shop_id = shop["id"]
    recent, old, cancelled, never = (customer(runtime, shop_id, f"{n}@example.pl") for n in ("a", "b", "c", "d"))
    order(runtime, shop_id, recent, days_ago=3)
    order(runtime, shop_id, old, days_ago=45)
    order(runtime, shop_id, cancelled, days_ago=2, cancelled=True)
    assert matching(runtime, shop_id, RECENT_BUYERS) == {recent}
    assert matching(runtime, shop_id, {"not": RECENT_BUYERS}) == {old, cancelled, never}


def test_lifetime_spend_over_2000_PLN_takes_the_platform_figure_or_the_paid_orders_in_PLN_never_other_currencies(runtime, shop):
    shop_id = shop["id"]
    reported = customer(runtime, shop_id, "shopify@example.pl", total_spent=Decimal("2500.00"), currency="PLN")
    summed = customer(runtime, shop_id, "woo@example.pl")  # WooCommerce reports no lifetime spend: our orders tell
    order(runtime, shop_id, summed, days_ago=100, total="1500.00")
    order(runtime, shop_id, summed, days_ago=10, total="600.00")
    unpaid = customer(runtime, shop_id, "unpaid@example.pl")
    order(runtime, shop_id, unpaid, days_ago=1, total="5000.00", paid=False)
    euros = customer(runtime, shop_id, "euro@example.pl", total_spent=Decimal("9000"), currency="EUR")
    exactly = customer(runtime, shop_id, "exact@example.pl", total_spent=Decimal("2000.00"), currency="PLN")
    assert matching(runtime, shop_id, BIG_SPENDERS) == {reported, summed}
    assert matching(runtime, shop_id, {**BIG_SPENDERS, "op": "gte"}) == {reported, summed, exactly}
    assert matching(runtime, shop_id, {**BIG_SPENDERS, "op": "lte"}) == {unpaid, euros, exactly}


def test_opened_one_of_the_last_three_emails_looks_at_the_three_newest_only(runtime, shop):
    shop_id = shop["id"]
    reader, lapsed, fresh, silent = (customer(runtime, shop_id, f"{n}@example.pl") for n in ("r", "l", "f", "s"))
    emails(runtime, shop_id, reader, [False, False, True, False])
    emails(runtime, shop_id, lapsed, [True, False, False, False])  # opened once, but four emails ago
    emails(runtime, shop_id, fresh, [True])
    assert matching(runtime, shop_id, {"rule": "opened_email", "of_last": 3}) == {reader, fresh}
    assert matching(runtime, shop_id, {"rule": "clicked_email", "of_last": 3}) == set()


def test_has_tag_VIP_ignores_case_and_rules_combine_with_any_and_not(runtime, shop):
    shop_id = shop["id"]
    vip, buyer, both, neither = (customer(runtime, shop_id, f"{n}@example.pl") for n in ("v", "b", "vb", "n"))
    tag(runtime, shop_id, vip, "vip")
    tag(runtime, shop_id, both, "vip")
    order(runtime, shop_id, buyer, days_ago=1)
    order(runtime, shop_id, both, days_ago=1)
    assert matching(runtime, shop_id, VIP) == {vip, both}
    assert matching(runtime, shop_id, {"any": [VIP, RECENT_BUYERS]}) == {vip, buyer, both}
    assert matching(runtime, shop_id, {"all": [RECENT_BUYERS, {"not": VIP}]}) == {buyer}
    assert matching(runtime, shop_id, {"not": {"any": [VIP, RECENT_BUYERS]}}) == {neither}


def test_another_shops_customers_are_never_in_a_segment(runtime, shop):
    mine = customer(runtime, shop["id"], "mine@example.pl")
    theirs = customer(runtime, shop["other_id"], "theirs@example.pl")
    order(runtime, shop["id"], mine, days_ago=1)
    order(runtime, shop["other_id"], theirs, days_ago=1)
    tag(runtime, shop["other_id"], theirs, "VIP")
    assert matching(runtime, shop["id"], {"any": [RECENT_BUYERS, VIP]}) == {mine}


def test_100000_customers_are_counted_in_one_query(runtime, shop):
    """Recent buyers who spent over 2,000 PLN or are VIP, among 100,000 customers: the count the rows imply."""
    shop_id, now, total = shop["id"], utcnow(), 100_000
    expected = expected_recent_big_spenders_or_vip(total)
    with runtime.sessions.begin() as session, shop_context(shop_id):
        fill_shop(session, shop_id, total, now)
    definition = {"all": [RECENT_BUYERS, {"any": [BIG_SPENDERS, VIP]}]}
    statements = []

    def note(conn, cursor, statement, *args):
        statements.append(statement)

    with runtime.sessions() as session, shop_context(shop_id):
        session.connection()  # the transaction begins before we start listening
        event.listen(runtime.engine, "before_cursor_execute", note)
        try:
            count = count_matching(session, definition, SegmentScope(shop_id, now, "PLN"))
        finally:
            event.remove(runtime.engine, "before_cursor_execute", note)
    assert 3000 < expected < 5000
    assert count == expected
    assert len(statements) == 1

    with runtime.sessions.begin() as session, shop_context(shop_id):
        segment = create_segment(session, shop_id, "recent big spenders", definition)
        first = refresh_segment(session, segment, now)
        assert (len(first.entered), first.left, first.announced) == (expected, [], False)
        assert segment.member_count == expected


# --- stored membership and flows ---------------------------------------------------------------------------------

def test_the_first_refresh_records_members_quietly_and_later_ones_announce_who_entered_and_left(runtime, shop):
    shop_id, now = shop["id"], utcnow()
    early, later = customer(runtime, shop_id, "early@example.pl"), customer(runtime, shop_id, "later@example.pl")
    order(runtime, shop_id, early, days_ago=29.5)
    with runtime.sessions.begin() as session, shop_context(shop_id):
        segment = create_segment(session, shop_id, "recent buyers", RECENT_BUYERS)
        baseline = refresh_segment(session, segment, now)
        segment_id = segment.id
    assert (baseline.entered, baseline.announced) == ([early], False)
    order(runtime, shop_id, later, days_ago=0)
    with runtime.sessions.begin() as session, shop_context(shop_id):
        next_day = refresh_segment(session, session.get(Segment, segment_id), now + DAY)
    assert (next_day.entered, next_day.left) == ([later], [early])  # time alone moved `early` out
    with runtime.sessions() as session, shop_context(shop_id):
        signals = session.execute(select(Signal.kind, Signal.customer_id, Signal.payload).order_by(Signal.id)).all()
        members = session.scalars(select(SegmentMember.customer_id)).all()
    assert [(k, c) for k, c, _ in signals if k.startswith("segment_")] == [("segment_entered", later),
                                                                              ("segment_left", early)]
    assert [p for k, _, p in signals if k == "segment_entered"][0] == {"segment_id": segment_id,
                                                                          "segment": "recent buyers",
                                                                          "segment_version": 1}
    assert members == [later]


def test_the_clock_queues_one_refresh_per_shop_and_a_second_clock_adds_nothing(runtime, shop):
    with runtime.sessions.begin() as session, shop_context(shop["id"]):
        create_segment(session, shop["id"], "vip", VIP)
        create_segment(session, shop["id"], "buyers", RECENT_BUYERS)
    with runtime.sessions.begin() as session, shop_context(shop["other_id"]):
        create_segment(session, shop["other_id"], "vip", VIP)
        for segment in session.scalars(select(Segment)):
            set_segment_enabled(session, segment, True)
    with runtime.sessions.begin() as session, shop_context(shop["id"]):
        for segment in session.scalars(select(Segment)):
            set_segment_enabled(session, segment, True)
    work(runtime)
    now = utcnow()
    with runtime.sessions.begin() as session:
        assert enqueue_segment_refreshes(session, now) == 2
        assert enqueue_segment_refreshes(session, now) == 0
    work(runtime)
    with runtime.sessions() as session:
        refreshed = session.scalars(select(Segment.refreshed_at).execution_options(all_shops=True)).all()
        jobs = session.scalars(select(Job.status).where(Job.kind == "automations.refresh_segments")).all()
    assert all(refreshed) and set(jobs) == {"succeeded"}


def test_a_customer_tagged_VIP_by_hand_enters_the_segment_and_starts_its_segment_entered_flow(runtime, client, shop):
    shop_id = shop["id"]
    zofia = customer(runtime, shop_id, "zofia@example.pl")
    with runtime.sessions.begin() as session, shop_context(shop_id):
        create_segment(session, shop_id, "VIP", VIP, enabled=True)
        create_segment(session, shop_id, "recent buyers", RECENT_BUYERS)
        create_flow(session, shop_id, "VIP welcome", {
            "trigger": "segment_entered", "segment": "VIP", "audience": {"field": "customer.segments", "op": "eq", "value": "VIP"},
            "steps": [{"id": "hello", "type": "send", "channel": "email", "kind": "promotional", "template": "vip_welcome"}]},
            enabled=True)
        create_flow(session, shop_id, "Other segment", {
            "trigger": "segment_entered", "segment": "recent buyers",
            "steps": [{"id": "hello", "type": "send", "channel": "email", "kind": "promotional", "template": "wrong"}]},
            enabled=True)
    work(runtime)  # the first refresh: nobody is VIP yet

    answer = client.post(f"/api/v1/customers/{zofia}/tags", json={"tag": "vip"}, headers=shop["auth"])
    assert answer.status_code == 201 and answer.json["tags"] == ["vip"]
    route(runtime)  # tag_added: Zofia's memberships are refreshed at once -> segment_entered
    route(runtime)  # segment_entered starts the VIP flow only

    with runtime.sessions() as session, shop_context(shop_id):
        kinds = session.scalars(select(Signal.kind).order_by(Signal.id)).all()
        sent = session.scalars(select(Message.template)).all()
        runs = session.scalars(select(FlowRun.customer_id)).all()
    assert kinds == ["tag_added", "segment_entered"]
    assert runs == [zofia] and sent == ["vip_welcome"]
    assert client.get(f"/api/v1/segments", headers=shop["auth"]).json["segments"][0]["member_count"] == 1

    removed = client.delete(f"/api/v1/customers/{zofia}/tags?tag=VIP", headers=shop["auth"])
    assert removed.json == {"customer_id": zofia, "removed": True, "tags": []}
    route(runtime)
    with runtime.sessions() as session, shop_context(shop_id):
        assert session.scalars(select(Signal.kind).order_by(Signal.id.desc()).limit(1)).first() == "segment_left"


def test_a_flow_that_tags_a_customer_puts_them_in_a_has_tag_segment_at_once(runtime, shop):
    shop_id = shop["id"]
    ola = customer(runtime, shop_id, "ola@example.pl")
    with runtime.sessions.begin() as session, shop_context(shop_id):
        create_segment(session, shop_id, "VIP", VIP, enabled=True)
        create_flow(session, shop_id, "tag VIPs", {"trigger": "custom_event", "steps": [
            {"id": "tag", "type": "tag", "add": "VIP"}]}, enabled=True)
    work(runtime)
    with runtime.sessions.begin() as session, shop_context(shop_id):
        emit_signal(session, shop_id, "custom_event", dedupe_key="e1", customer_id=ola, payload={"event": "x"})
    route(runtime)
    with runtime.sessions() as session, shop_context(shop_id):
        assert session.scalars(select(SegmentMember.customer_id)).all() == [ola]
        assert session.scalars(select(Signal.kind).order_by(Signal.id)).all() == ["custom_event", "tag_added",
                                                                                  "segment_entered"]


def test_a_condition_branch_asks_whether_the_customer_is_in_a_segment(runtime, shop):
    shop_id = shop["id"]
    regular, big = customer(runtime, shop_id, "r@example.pl"), customer(runtime, shop_id, "b@example.pl", total_spent=Decimal("3000"))
    with runtime.sessions.begin() as session, shop_context(shop_id):
        segment = create_segment(session, shop_id, "big spenders", BIG_SPENDERS)
        set_segment_enabled(session, segment, True)
        create_flow(session, shop_id, "thanks", {"trigger": "custom_event", "steps": [
            {"id": "which", "type": "condition", "if": {"field": "customer.segments", "op": "eq", "value": "big spenders"},
             "then": "vip_mail", "else": "plain_mail"},
            {"id": "vip_mail", "type": "send", "channel": "email", "kind": "promotional", "template": "thanks_vip", "next": "exit"},
            {"id": "plain_mail", "type": "send", "channel": "email", "kind": "promotional", "template": "thanks"}]},
            enabled=True)
    work(runtime)
    with runtime.sessions.begin() as session, shop_context(shop_id):
        emit_signal(session, shop_id, "custom_event", dedupe_key="e1", customer_id=regular, payload={"event": "x"})
        emit_signal(session, shop_id, "custom_event", dedupe_key="e2", customer_id=big, payload={"event": "x"})
    route(runtime)
    with runtime.sessions() as session, shop_context(shop_id):
        sent = dict(session.execute(select(Message.customer_id, Message.template)).all())
    assert sent == {regular: "thanks", big: "thanks_vip"}


def test_a_segment_entered_flow_must_name_its_segment():
    problems = validate_definition({"trigger": "segment_entered", "steps": [
        {"id": "a", "type": "send", "channel": "email", "kind": "promotional", "template": "t"}]})
    assert problems == ["a segment_entered or segment_left trigger needs segment: the segment's name or id"]


# --- the API -------------------------------------------------------------------------------------------------

def test_segments_are_created_validated_enabled_counted_and_paged_through_the_api(runtime, client, shop):
    shop_id = shop["id"]
    buyers = sorted(customer(runtime, shop_id, f"b{i}@example.pl") for i in range(5))
    for customer_id in buyers:
        order(runtime, shop_id, customer_id, days_ago=2)
    customer(runtime, shop_id, "nobody@example.pl")

    checked = client.post("/api/v1/segments/validate", json={"definition": RECENT_BUYERS}, headers=shop["auth"])
    assert checked.json == {"valid": True, "problems": [], "count": 5}
    wrong = client.post("/api/v1/segments/validate", json={"definition": {"rule": "bought"}}, headers=shop["auth"])
    assert wrong.json["valid"] is False and wrong.json["problems"] == [
        "definition (bought): within_days is required (a whole number of days)"]
    refused = client.post("/api/v1/segments", json={"name": "x", "definition": {"all": []}}, headers=shop["auth"])
    assert refused.status_code == 422 and refused.json["error"] == "invalid_segment"

    created = client.post("/api/v1/segments", json={"name": "Recent buyers", "definition": RECENT_BUYERS},
                          headers=shop["auth"])
    assert created.status_code == 201 and created.json["enabled"] is False
    segment_id = created.json["id"]
    assert client.post("/api/v1/segments", json={"name": "Recent buyers", "definition": VIP},
                       headers=shop["auth"]).status_code == 409
    assert client.post(f"/api/v1/segments/{segment_id}/enable", headers=shop["auth"]).json["enabled"] is True
    work(runtime)

    assert client.get(f"/api/v1/segments/{segment_id}/count", headers=shop["auth"]).json["count"] == 5
    first = client.get(f"/api/v1/segments/{segment_id}/members?limit=3", headers=shop["auth"]).json
    second = client.get(f"/api/v1/segments/{segment_id}/members?limit=3&after={first['next_after']}",
                        headers=shop["auth"]).json
    assert [m["customer_id"] for m in first["members"] + second["members"]] == buyers
    assert first["count"] == 5 and second["next_after"] is None

    assert client.get(f"/api/v1/segments/{segment_id}", headers=shop["other_auth"]).status_code == 404
    assert client.get(f"/api/v1/segments/{segment_id}/members", headers=shop["other_auth"]).status_code == 404
    assert client.get("/api/v1/segments", headers={"Authorization": "Bearer cmp_1_nope"}).status_code == 401

    disabled = client.post(f"/api/v1/segments/{segment_id}/disable", headers=shop["auth"]).json
    assert (disabled["enabled"], disabled["member_count"]) == (False, 0)
    listed = client.get("/api/v1/segments", headers=shop["auth"]).json["segments"]
    assert [(s["name"], s["enabled"]) for s in listed] == [("Recent buyers", False)]


def test_tags_set_by_hand_are_listed_and_signal_once(runtime, client, shop):
    zofia = customer(runtime, shop["id"], "zofia@example.pl")
    assert client.post(f"/api/v1/customers/{zofia}/tags", json={"tag": "  Stała klientka "},
                       headers=shop["auth"]).status_code == 201
    again = client.post(f"/api/v1/customers/{zofia}/tags", json={"tag": "stała KLIENTKA"}, headers=shop["auth"])
    assert again.status_code == 200 and again.json["added"] is False
    assert client.get(f"/api/v1/customers/{zofia}/tags", headers=shop["auth"]).json["tags"] == ["Stała klientka"]
    assert client.post(f"/api/v1/customers/{zofia}/tags", json={"tag": ""}, headers=shop["auth"]).status_code == 400
    assert client.post(f"/api/v1/customers/{zofia}/tags", json={"tag": "x"}, headers=shop["other_auth"]).status_code == 404
    with runtime.sessions() as session, shop_context(shop["id"]):
        assert session.scalars(select(Signal.payload).where(Signal.kind == "tag_added")).all() == [
            {"tag": "Stała klientka", "source": "api"}]


def test_the_openapi_document_describes_the_segment_and_tag_endpoints(client):
    document = client.get("/api/v1/openapi.json").json
    for path in ("/segments", "/segments/validate", "/segments/{segment_id}/enable", "/segments/{segment_id}/disable",
                 "/segments/{segment_id}/count", "/segments/{segment_id}/members", "/customers/{customer_id}/tags"):
        assert path in document["paths"], path
    assert document["paths"]["/segments"]["post"]["security"] == [{"bearer": []}]
    assert "SegmentDefinition" in document["components"]["schemas"]
