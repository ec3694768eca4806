"""Abandoned-cart recovery end to end: ingest -> detection -> flow -> outbox, with the live store checked before each reminder."""
from __future__ import annotations

import datetime as dt

from app.models import Order, OrderLine
from tests.automations_kit import (EMAIL, T0, Cart, FlowRun, Message, Signal, clock_tick, decisions, enable_library_flow,
                                   fake, put_cart, rows, runtime, shop_id, shopify_app, templates_sent, travel)  # noqa: F401

MIN = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)


def iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_an_idle_cart_is_marked_abandoned_and_gets_the_first_reminder(runtime, shop_id, travel):
    enable_library_flow(runtime, shop_id, "abandoned_cart")
    travel(T0)
    put_cart(runtime, shop_id, at=T0)

    clock_tick(runtime, travel(T0 + 61 * MIN))

    [cart] = rows(runtime, shop_id, Cart)
    assert cart.status == "abandoned"
    assert [s.kind for s in rows(runtime, shop_id, Signal) if s.kind == "cart_abandoned"] == ["cart_abandoned"]
    [message] = rows(runtime, shop_id, Message)
    assert (message.template, message.kind, message.recipient, message.locale) == ("abandoned_cart_1", "recovery", EMAIL, "pl")
    assert message.context["recovery_url"].endswith("/checkouts/tok-1/recover")


def test_when_the_customers_orders_run_past_the_pages_read_the_reminder_waits_rather_than_assume_not_bought(
        runtime, shop_id, fake, travel):
    enable_library_flow(runtime, shop_id, "abandoned_cart")
    travel(T0)
    put_cart(runtime, shop_id, at=T0)
    clock_tick(runtime, travel(T0 + 61 * MIN))
    assert templates_sent(runtime, shop_id) == ["abandoned_cart_1"]

    for n in range(130):  # the customer's older orders, all edited after the cart (a bulk tag, say): five pages
        node = fake.orders[fake.add_order(8000 + n, email=EMAIL, updated_at=iso(T0 + 2 * HOUR))]["node"]
        node["createdAt"] = node["processedAt"] = iso(T0 - 30 * 24 * HOUR)
    fake.add_order(9101, email=EMAIL, updated_at=iso(T0 + 3 * HOUR))  # the purchase, on the sixth page
    clock_tick(runtime, travel(T0 + 25 * HOUR))

    assert templates_sent(runtime, shop_id) == ["abandoned_cart_1"], "no second reminder"
    [run] = rows(runtime, shop_id, FlowRun)
    assert run.state == "waiting"
    assert "postponed_store_unreachable" in decisions(runtime, shop_id)


def test_a_cart_idle_for_less_than_the_threshold_is_left_alone(runtime, shop_id, travel):
    enable_library_flow(runtime, shop_id, "abandoned_cart")
    travel(T0)
    put_cart(runtime, shop_id, at=T0)

    clock_tick(runtime, travel(T0 + 59 * MIN))

    assert [c.status for c in rows(runtime, shop_id, Cart)] == ["active"]
    assert rows(runtime, shop_id, Message) == []


def test_reminder_is_not_sent_when_the_cart_was_bought_meanwhile_and_the_order_webhook_never_came(runtime, shop_id, fake, travel):
    enable_library_flow(runtime, shop_id, "abandoned_cart")
    travel(T0)
    put_cart(runtime, shop_id, at=T0)
    clock_tick(runtime, travel(T0 + 61 * MIN))
    assert templates_sent(runtime, shop_id) == ["abandoned_cart_1"]

    fake.add_order(9101, email=EMAIL, updated_at=iso(T0 + 3 * HOUR))  # bought; Shopify's webhook got lost
    clock_tick(runtime, travel(T0 + 25 * HOUR))

    assert templates_sent(runtime, shop_id) == ["abandoned_cart_1"], "no second reminder"
    [run] = rows(runtime, shop_id, FlowRun)
    assert (run.state, run.exit_reason) == ("exited", "purchased")
    assert [o.platform_id for o in rows(runtime, shop_id, Order)] == ["9101"], "the missed order is now held"
    assert [line.name for line in rows(runtime, shop_id, OrderLine)] == ["Bukiet róż"], "with its lines"
    assert "OrdersUpdatedSince" in fake.operations()


def test_a_purchase_right_after_abandonment_stops_even_the_first_reminder(runtime, shop_id, fake, travel):
    enable_library_flow(runtime, shop_id, "abandoned_cart")
    travel(T0)
    put_cart(runtime, shop_id, at=T0)
    fake.add_order(9102, email=EMAIL, updated_at=iso(T0 + 30 * MIN))

    clock_tick(runtime, travel(T0 + 61 * MIN))

    assert rows(runtime, shop_id, Message) == []
    assert [(r.state, r.exit_reason) for r in rows(runtime, shop_id, FlowRun)] == [("exited", "purchased")]


def test_when_the_store_cannot_be_reached_the_reminder_is_postponed_not_sent(runtime, shop_id, fake, travel):
    enable_library_flow(runtime, shop_id, "abandoned_cart")
    travel(T0)
    put_cart(runtime, shop_id, at=T0)
    fake.fail_next(503, times=200)

    clock_tick(runtime, travel(T0 + 61 * MIN))

    assert rows(runtime, shop_id, Message) == []
    [run] = rows(runtime, shop_id, FlowRun)
    assert run.state == "waiting" and run.due_at >= T0 + 61 * MIN + dt.timedelta(minutes=14)
    assert "postponed_store_unreachable" in decisions(runtime, shop_id)


def test_the_postponed_reminder_goes_out_once_the_store_answers_again(runtime, shop_id, fake, travel):
    enable_library_flow(runtime, shop_id, "abandoned_cart")
    travel(T0)
    put_cart(runtime, shop_id, at=T0)
    fake.fail_next(503, times=200)
    clock_tick(runtime, travel(T0 + 61 * MIN))
    fake._faults.clear()

    clock_tick(runtime, travel(T0 + 80 * MIN))

    assert templates_sent(runtime, shop_id) == ["abandoned_cart_1"]


def test_a_later_outage_gets_its_own_48_hours_once_the_store_has_answered_in_between(runtime, shop_id, fake, travel):
    enable_library_flow(runtime, shop_id, "abandoned_cart")
    travel(T0)
    put_cart(runtime, shop_id, at=T0)
    fake.fail_next(503, times=200)
    clock_tick(runtime, travel(T0 + 61 * MIN))  # the first reminder postponed
    fake._faults.clear()
    clock_tick(runtime, travel(T0 + 80 * MIN))
    clock_tick(runtime, travel(T0 + 25 * HOUR))
    fake.fail_next(503, times=200)

    clock_tick(runtime, travel(T0 + 74 * HOUR))  # more than 48 h after the first outage began

    [run] = rows(runtime, shop_id, FlowRun)
    assert (run.state, run.exit_reason) == ("waiting", None), "postponed again, not given up"


def test_the_series_runs_1h_24h_72h_with_a_coupon_only_in_the_last_reminder(runtime, shop_id, fake, travel):
    enable_library_flow(runtime, shop_id, "abandoned_cart")
    travel(T0)
    put_cart(runtime, shop_id, at=T0)
    for moment in (T0 + 61 * MIN, T0 + 25 * HOUR, T0 + 74 * HOUR):
        clock_tick(runtime, travel(moment))

    messages = rows(runtime, shop_id, Message)
    assert [m.template for m in messages] == ["abandoned_cart_1", "abandoned_cart_2", "abandoned_cart_3_coupon"]
    assert [m.context["coupon_code"] is not None for m in messages] == [False, False, True]
    assert [(r.state, r.exit_reason) for r in rows(runtime, shop_id, FlowRun)] == [("completed", None)]


def test_a_cart_without_email_or_phone_is_set_aside_without_a_signal(runtime, shop_id, travel):
    enable_library_flow(runtime, shop_id, "abandoned_cart")
    travel(T0)
    put_cart(runtime, shop_id, at=T0, email=None, phone=None)

    clock_tick(runtime, travel(T0 + 61 * MIN))

    assert [c.status for c in rows(runtime, shop_id, Cart)] == ["idle"]
    assert [s.kind for s in rows(runtime, shop_id, Signal) if s.kind == "cart_abandoned"] == []
    assert "cart_idle_no_contact" in decisions(runtime, shop_id)


def test_the_customer_timeline_explains_why_the_second_reminder_never_came(shopify_app, runtime, shop_id, fake, travel):
    from app.automations.api import issue_api_token
    from app.models import Customer

    enable_library_flow(runtime, shop_id, "abandoned_cart")
    with runtime.sessions.begin() as session:
        token = issue_api_token(session, shop_id)
    travel(T0)
    put_cart(runtime, shop_id, at=T0)
    clock_tick(runtime, travel(T0 + 61 * MIN))
    fake.add_order(9103, email=EMAIL, updated_at=iso(T0 + 2 * HOUR))
    clock_tick(runtime, travel(T0 + 25 * HOUR))
    [customer] = [c for c in rows(runtime, shop_id, Customer) if c.email == EMAIL]

    timeline = shopify_app.test_client().get(f"/api/v1/customers/{customer.id}/timeline",
                                             headers={"Authorization": f"Bearer {token}"}).json

    kinds = [(item["type"], item.get("template") or item.get("kind") or item.get("decision")) for item in timeline["items"]]
    assert ("signal", "cart_abandoned") in kinds and ("message", "abandoned_cart_1") in kinds
    [exit_decision] = [item for item in timeline["items"] if item.get("decision") == "run_exited"]
    assert exit_decision["detail"]["reason"] == "purchased"
    [message] = [item for item in timeline["items"] if item["type"] == "message"]
    gates = {gate["gate"]: gate for gate in message["gate_trace"] if "gate" in gate}
    assert gates["live_check"]["result"] == "not_bought"
    assert gates["flow_exits"] == {"gate": "flow_exits", "checked": ["cart_emptied", "purchased", "unsubscribed"], "met": None}


CARTS = 10_000


def test_ten_thousand_carts_abandoned_at_once_each_get_one_signal_one_run_and_none_for_carts_bought_meanwhile(
        runtime, shop_id, travel):
    from sqlalchemy import func, insert, select, text

    from app.automations.flows import create_flow
    from app.models import CartLine, Customer, CustomerTag, Flow, Tag
    from app.tenancy import shop_context

    bought = set(range(0, CARTS, 100))  # these customers ordered after leaving their cart; the webhook came
    guests = {i for i in range(CARTS) if i % 10 == 9}  # no customer record yet: detection makes one per address
    with runtime.sessions.begin() as session, shop_context(shop_id):
        flow_id = create_flow(session, shop_id, "tag only", {"trigger": "cart_abandoned", "steps": [
            {"id": "tag", "type": "tag", "add": "abandoner"}]}, enabled=True).id
        # A live shop has history: its customers, and runs of an older flow (finished long ago).
        old_flow_id = create_flow(session, shop_id, "last year's reminder", {"trigger": "cart_abandoned", "steps": [
            {"id": "wait", "type": "wait", "hours": 1}]}, enabled=False).id
        session.execute(insert(Customer.__table__), [
            dict(shop_id=shop_id, email=f"k{i}@example.pl", created_at=T0 - 400 * HOUR) for i in range(CARTS)
            if i not in guests])
        known = dict(session.execute(select(Customer.email, Customer.id)).all())
        session.execute(insert(FlowRun.__table__), [
            dict(shop_id=shop_id, flow_id=old_flow_id, flow_version=1, customer_id=customer_id, trigger_key="old",
                 state="completed", next_step=1, context={}, started_at=T0 - 300 * HOUR, finished_at=T0 - 299 * HOUR)
            for customer_id in known.values()])
        session.execute(insert(Cart.__table__), [
            dict(shop_id=shop_id, platform_token=f"bulk-{i}", email=f"k{i}@example.pl", currency="PLN", total=100,
                 status="active", last_activity_at=T0, created_at=T0) for i in range(CARTS)])
        cart_ids = dict(session.execute(select(Cart.platform_token, Cart.id)).all())
        session.execute(insert(CartLine.__table__), [
            dict(shop_id=shop_id, cart_id=cart_ids[f"bulk-{i}"], name="x", quantity=1, unit_price=100) for i in range(CARTS)])
        session.execute(insert(Order.__table__), [
            dict(shop_id=shop_id, platform_id=f"o-{i}", email=f"k{i}@example.pl", currency="PLN", total=100,
                 placed_at=T0 + 30 * MIN, created_at=T0 + 30 * MIN) for i in sorted(bought)])
    if runtime.engine.dialect.name == "postgresql":  # statistics autovacuum keeps for a live shop's tables
        with runtime.engine.begin() as conn:
            conn.execute(text("ANALYZE customers, flow_runs, carts, cart_lines, orders"))

    clock_tick(runtime, travel(T0 + 61 * MIN))

    with runtime.sessions() as session, shop_context(shop_id):
        statuses = dict(session.execute(select(Cart.platform_token, Cart.status)).all())
        abandoned_ids = {cart_ids[f"bulk-{i}"] for i in range(CARTS) if i not in bought}
        signalled = session.execute(select(Signal.subject_id).where(Signal.kind == "cart_abandoned")).scalars().all()
        runs = session.execute(select(FlowRun.customer_id, FlowRun.state, FlowRun.context)
                               .where(FlowRun.flow_id == flow_id)).all()
        tagged = session.execute(select(Customer.email).join(CustomerTag, CustomerTag.customer_id == Customer.id)
                                 .join(Tag, Tag.id == CustomerTag.tag_id).where(Tag.name == "abandoner")).scalars().all()
        customers = dict(session.execute(select(Customer.email, Customer.id)).all())
        assert session.get(Flow, old_flow_id) is not None
    assert {statuses[f"bulk-{i}"] for i in range(CARTS) if i not in bought} == {"abandoned"}
    assert {statuses[f"bulk-{i}"] for i in bought} == {"converted"}, "bought meanwhile: set aside, no signal"
    assert sorted(signalled) == sorted(abandoned_ids), "exactly one signal per abandoned cart"
    assert len(runs) == CARTS - len(bought) and {state for _, state, _ in runs} == {"completed"}
    assert len({customer for customer, _, _ in runs}) == len(runs), "one run per customer"
    assert {run_context["subject"]["id"] for _, _, run_context in runs} == abandoned_ids
    assert sorted(tagged) == sorted(f"k{i}@example.pl" for i in range(CARTS) if i not in bought), "each tagged once"
    assert len(customers) == CARTS, "a guest customer for each new address, the known ones found by email"
    assert all(customers[email] == customer_id for email, customer_id in known.items()), "known customers kept"
