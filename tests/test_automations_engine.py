"""Flow runs: versions, concurrent clocks, time-of-day waits across DST, coupons for serial abandoners, unpaid orders."""
from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

from sqlalchemy import select

from app.automations.engine import enqueue_due_steps, enqueue_signal_routing
from app.automations.flows import create_flow, update_flow
from app.models import Coupon, Customer, Flow, Job
from app.store.apply import apply_order
from app.tenancy import shop_context
from connectors.records import Money, StoreOrder
from tests.automations_kit import (EMAIL, T0, FlowRun, Message, Signal, clock_tick, decisions, fake,  # noqa: F401
                                   put_cart, rows, runtime, shop_id, shopify_app, templates_sent, travel, work)

MIN, HOUR = dt.timedelta(minutes=1), dt.timedelta(hours=1)


def add_flow(runtime, shop_id: int, steps: list[dict], *, trigger: str = "cart_abandoned", **extra) -> int:
    with runtime.sessions.begin() as session, shop_context(shop_id):
        return create_flow(session, shop_id, f"flow {trigger} {len(steps)}",
                           {"trigger": trigger, "exit": ["purchased"], "steps": steps, **extra}, enabled=True).id


def place_order(runtime, shop_id: int, platform_id: str, *, at: dt.datetime, paid: bool, payment: str = "przelewy24") -> None:
    money = Money(Decimal("249.90"), "PLN")
    record = StoreOrder(platform_id=platform_id, number=f"#{platform_id}", status="pending" if not paid else "processing",
                        currency="PLN", total=money, subtotal=money, shipping_total=Money(Decimal("0"), "PLN"),
                        tax_total=Money(Decimal("0"), "PLN"), discount_total=Money(Decimal("0"), "PLN"),
                        placed_at=at, updated_at=at, email=EMAIL, financial_status="paid" if paid else "pending",
                        payment_method=payment, paid_at=at if paid else None)
    with runtime.sessions.begin() as session, shop_context(shop_id):
        apply_order(session, shop_id, record)


def test_a_run_started_before_an_edit_finishes_on_the_version_it_started_with(runtime, shop_id, travel):
    flow_id = add_flow(runtime, shop_id, [{"id": "wait", "type": "wait", "hours": 2},
                                          {"id": "mail", "type": "send", "channel": "email", "kind": "promotional", "template": "old_text"}])
    travel(T0)
    put_cart(runtime, shop_id, at=T0)
    clock_tick(runtime, travel(T0 + 61 * MIN))
    with runtime.sessions.begin() as session, shop_context(shop_id):
        flow = session.get(Flow, flow_id)
        update_flow(session, flow, {**flow.definition, "steps": [
            {"id": "wait", "type": "wait", "hours": 2},
            {"id": "mail", "type": "send", "channel": "email", "kind": "promotional", "template": "new_text"}]})

    clock_tick(runtime, travel(T0 + 4 * HOUR))

    assert templates_sent(runtime, shop_id) == ["old_text"]
    [run] = rows(runtime, shop_id, FlowRun)
    assert (run.flow_version, run.state) == (1, "completed")


def test_two_clocks_scanning_at_once_start_one_run_and_queue_one_message(runtime, shop_id, travel):
    add_flow(runtime, shop_id, [{"id": "mail", "type": "send", "channel": "email", "kind": "promotional", "template": "hello"}])
    travel(T0)
    put_cart(runtime, shop_id, at=T0)
    clock_tick(runtime, travel(T0 + 61 * MIN))  # detection done; the routing happened too — undo it to race it
    with runtime.sessions.begin() as session:
        session.execute(Signal.__table__.update().values(routed_at=None))
        session.execute(Message.__table__.delete())
        session.execute(FlowRun.__table__.delete())
    now = travel(T0 + 62 * MIN)

    def one_clock():
        with runtime.sessions.begin() as session:
            enqueue_signal_routing(session, now)

    clocks = [threading.Thread(target=one_clock) for _ in range(2)]
    for clock in clocks:
        clock.start()
    for clock in clocks:
        clock.join()
    work(runtime)
    later = travel(T0 + 63 * MIN)
    with runtime.sessions.begin() as session:
        enqueue_due_steps(session, later)
    with runtime.sessions.begin() as session:
        enqueue_due_steps(session, later)
    work(runtime)

    assert len(rows(runtime, shop_id, FlowRun)) == 1
    assert templates_sent(runtime, shop_id) == ["hello"]


def test_a_time_of_day_wait_lands_on_the_shop_clock_across_the_autumn_dst_change(runtime, shop_id, travel):
    add_flow(runtime, shop_id, [{"id": "morning", "type": "wait", "minutes": 1, "until": "09:00"},
                                {"id": "mail", "type": "send", "channel": "email", "kind": "promotional", "template": "morning"}])
    evening = dt.datetime(2026, 10, 24, 19, 0, tzinfo=dt.timezone.utc)  # 21:00 in Warsaw, summer time
    travel(evening)
    put_cart(runtime, shop_id, at=evening)
    clock_tick(runtime, travel(evening + 61 * MIN))

    [run] = rows(runtime, shop_id, FlowRun)
    assert run.due_at == dt.datetime(2026, 10, 25, 8, 0, tzinfo=dt.timezone.utc), "09:00 winter time in Warsaw"
    clock_tick(runtime, travel(dt.datetime(2026, 10, 25, 7, 59, tzinfo=dt.timezone.utc)))
    assert templates_sent(runtime, shop_id) == []
    clock_tick(runtime, travel(dt.datetime(2026, 10, 25, 8, 0, 30, tzinfo=dt.timezone.utc)))
    assert templates_sent(runtime, shop_id) == ["morning"]


def test_a_serial_abandoner_gets_no_second_coupon_within_the_window(runtime, shop_id, travel):
    add_flow(runtime, shop_id, [{"id": "coupon", "type": "coupon", "percent_off": 10, "expires_hours": 48},
                                {"id": "mail", "type": "send", "channel": "email", "kind": "recovery", "template": "with_coupon"}])
    travel(T0)
    put_cart(runtime, shop_id, "first", at=T0)
    clock_tick(runtime, travel(T0 + 61 * MIN))
    assert len(rows(runtime, shop_id, Coupon)) == 1

    later = T0 + dt.timedelta(days=5)
    put_cart(runtime, shop_id, "second", at=later)
    clock_tick(runtime, travel(later + 61 * MIN))

    assert len(rows(runtime, shop_id, Coupon)) == 1, "no second coupon"
    second = rows(runtime, shop_id, Message)[-1]
    assert second.template == "with_coupon" and second.context["coupon_code"] is None
    assert "coupon_withheld_serial_abandoner" in decisions(runtime, shop_id)


def test_the_minted_coupon_is_bound_to_the_customer_and_cart_and_sent_to_shopify(runtime, shop_id, travel):
    add_flow(runtime, shop_id, [{"id": "coupon", "type": "coupon", "percent_off": 10, "expires_hours": 48}])
    travel(T0)
    cart_id = put_cart(runtime, shop_id, at=T0)
    clock_tick(runtime, travel(T0 + 61 * MIN))

    [coupon] = rows(runtime, shop_id, Coupon)
    [customer] = rows(runtime, shop_id, Customer)
    assert (coupon.cart_id, coupon.customer_id, coupon.percent_off) == (cart_id, customer.id, Decimal("10"))
    assert coupon.expires_at == coupon.created_at + dt.timedelta(hours=48)
    with runtime.sessions() as session:
        kinds = session.scalars(select(Job.kind).where(Job.shop_id == shop_id)).all()
    assert "shopify.create_discount" in kinds


def test_an_unpaid_order_gets_a_finish_your_payment_nudge_after_an_hour(runtime, shop_id, fake, travel):
    from tests.automations_kit import enable_library_flow

    enable_library_flow(runtime, shop_id, "unpaid_order")
    travel(T0)
    fake.add_order(7001, email=EMAIL, financial="PENDING", updated_at=T0.strftime("%Y-%m-%dT%H:%M:%SZ"),
                   payment_collection_url="https://kwiaciarnia-roza.pl/548380009/invoices/7001/pay")
    place_order(runtime, shop_id, "7001", at=T0, paid=False)
    clock_tick(runtime, travel(T0 + MIN))
    clock_tick(runtime, travel(T0 + 59 * MIN))
    assert templates_sent(runtime, shop_id) == []

    clock_tick(runtime, travel(T0 + 62 * MIN))

    assert templates_sent(runtime, shop_id) == ["unpaid_order_finish_payment"]


def test_an_order_paid_before_the_nudge_gets_none(runtime, shop_id, travel):
    from tests.automations_kit import enable_library_flow

    enable_library_flow(runtime, shop_id, "unpaid_order")
    travel(T0)
    place_order(runtime, shop_id, "7002", at=T0, paid=False)
    clock_tick(runtime, travel(T0 + MIN))
    place_order(runtime, shop_id, "7002", at=T0 + 20 * MIN, paid=True)

    clock_tick(runtime, travel(T0 + 62 * MIN))

    assert templates_sent(runtime, shop_id) == []
    assert [(r.state, r.exit_reason) for r in rows(runtime, shop_id, FlowRun)] == [("exited", "order_paid")]


def test_a_cash_on_delivery_order_is_not_an_unpaid_order(runtime, shop_id, travel):
    from tests.automations_kit import enable_library_flow

    enable_library_flow(runtime, shop_id, "unpaid_order")
    travel(T0)
    place_order(runtime, shop_id, "7003", at=T0, paid=False, payment="cod")

    clock_tick(runtime, travel(T0 + 2 * HOUR))

    assert rows(runtime, shop_id, FlowRun) == []
    assert "not_started_audience" in decisions(runtime, shop_id)


def test_a_new_order_restarts_the_win_back_clock(runtime, shop_id, travel):
    from tests.automations_kit import enable_library_flow

    enable_library_flow(runtime, shop_id, "winback")
    travel(T0)
    place_order(runtime, shop_id, "8001", at=T0, paid=True)
    clock_tick(runtime, travel(T0 + MIN))
    second = T0 + dt.timedelta(days=40)
    place_order(runtime, shop_id, "8002", at=second, paid=True)
    clock_tick(runtime, travel(second + MIN))

    clock_tick(runtime, travel(T0 + dt.timedelta(days=61)))
    assert templates_sent(runtime, shop_id) == [], "60 days after the first order, but only 21 after the last"
    clock_tick(runtime, travel(second + dt.timedelta(days=61)))
    assert templates_sent(runtime, shop_id) == ["winback_60"]


def test_a_branch_on_whether_the_last_email_was_opened(runtime, shop_id, travel):
    add_flow(runtime, shop_id, [
        {"id": "first", "type": "send", "channel": "email", "kind": "promotional", "template": "first"},
        {"id": "wait", "type": "wait", "hours": 2},
        {"id": "opened", "type": "condition", "if": {"field": "last_message.opened", "op": "eq", "value": True},
         "then": "follow_up", "else": "resend"},
        {"id": "follow_up", "type": "send", "channel": "email", "kind": "promotional", "template": "follow_up", "next": "exit"},
        {"id": "resend", "type": "send", "channel": "email", "kind": "promotional", "template": "resend"}])
    travel(T0)
    put_cart(runtime, shop_id, at=T0)
    clock_tick(runtime, travel(T0 + 61 * MIN))
    with runtime.sessions.begin() as session, shop_context(shop_id):
        session.scalars(select(Message)).one().opened_at = T0 + 70 * MIN

    clock_tick(runtime, travel(T0 + 4 * HOUR))

    assert templates_sent(runtime, shop_id) == ["first", "follow_up"]


def test_a_cart_emptied_meanwhile_ends_the_reminders(runtime, shop_id, travel):
    from tests.automations_kit import enable_library_flow

    enable_library_flow(runtime, shop_id, "abandoned_cart")
    travel(T0)
    put_cart(runtime, shop_id, at=T0)
    clock_tick(runtime, travel(T0 + 61 * MIN))
    put_cart(runtime, shop_id, at=T0 + 3 * HOUR, total="0", lines=0)

    clock_tick(runtime, travel(T0 + 25 * HOUR))

    assert templates_sent(runtime, shop_id) == ["abandoned_cart_1"]
    assert [(r.state, r.exit_reason) for r in rows(runtime, shop_id, FlowRun)] == [("exited", "cart_emptied")]


def test_an_unsubscribe_meanwhile_ends_the_reminders(runtime, shop_id, travel):
    from app.models import Consent
    from tests.automations_kit import enable_library_flow

    enable_library_flow(runtime, shop_id, "abandoned_cart")
    travel(T0)
    put_cart(runtime, shop_id, at=T0)
    clock_tick(runtime, travel(T0 + 61 * MIN))
    [customer] = rows(runtime, shop_id, Customer)
    with runtime.sessions.begin() as session, shop_context(shop_id):
        session.add(Consent(shop_id=shop_id, customer_id=customer.id, channel="email", state="revoked",
                            source="unsubscribe_link", recorded_at=T0 + 2 * HOUR))

    clock_tick(runtime, travel(T0 + 25 * HOUR))

    assert templates_sent(runtime, shop_id) == ["abandoned_cart_1"]
    assert [(r.state, r.exit_reason) for r in rows(runtime, shop_id, FlowRun)] == [("exited", "unsubscribed")]
