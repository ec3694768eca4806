"""The unpaid-order nudge carries the payment link the store gives at send time (or the order's page), never a dead one."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from app.automations.definitions import validate_definition
from app.automations.flows import install_library_flow
from app.messaging.exits import check_exits
from app.models import AutomationDecision, FlowRun, Message, Order, Shop
from app.store.apply import apply_order
from app.tenancy import shop_context
from connectors.records import Money, StoreOrder
from connectors.shopify.mapping import order_from_node
from connectors.woocommerce.mapping import order_from_payload
from tests.automations_kit import (EMAIL, T0, clock_tick, decisions, enable_library_flow, fake, rows, runtime,  # noqa: F401
                                   shop_id, shopify_app, travel)
from tests.factories import make_customer, make_shop
from tests.fake_woocommerce import CONSUMER_KEY, CONSUMER_SECRET, FakeWooCommerce

MIN, HOUR = dt.timedelta(minutes=1), dt.timedelta(hours=1)
PAY_URL = "https://kwiaciarnia-roza.pl/548380009/invoices/7e1c0f3a/pay?key=a1b2"
FRESH_PAY_URL = "https://kwiaciarnia-roza.pl/548380009/invoices/99aa01bc/pay?key=c3d4"


def iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def place_unpaid_order(runtime, shop_id: int, platform_id: str, *, at: dt.datetime, payment: str = "przelewy24",
                       financial_status: str = "pending", email: str | None = EMAIL, phone: str | None = None) -> int:
    """The order as our ingest holds it: placed, not paid (the store's own copy is arranged separately)."""
    money, zero = Money(Decimal("249.90"), "PLN"), Money(Decimal("0"), "PLN")
    record = StoreOrder(platform_id=platform_id, number=f"#{platform_id}", status="pending", currency="PLN", total=money,
                        subtotal=money, shipping_total=zero, tax_total=zero, discount_total=zero, placed_at=at,
                        updated_at=at, email=email, phone=phone, financial_status=financial_status,
                        payment_method=payment)
    with runtime.sessions.begin() as session, shop_context(shop_id):
        return apply_order(session, shop_id, record).id


def nudges(runtime, shop_id: int) -> list[Message]:
    return [m for m in rows(runtime, shop_id, Message) if m.template == "unpaid_order_finish_payment"]


# --- Shopify, end to end through the send-time check ------------------------------------------------------------

def test_the_nudge_carries_the_payment_link_shopify_gives_at_send_time_not_an_older_one(runtime, shop_id, fake, travel):
    enable_library_flow(runtime, shop_id, "unpaid_order")
    travel(T0)
    gid = fake.add_order(7201, email=EMAIL, financial="PENDING", updated_at=iso(T0), payment_collection_url=PAY_URL)
    place_unpaid_order(runtime, shop_id, "7201", at=T0)
    clock_tick(runtime, travel(T0 + MIN))
    fake.touch_order(gid, iso(T0 + 30 * MIN), payment_collection_url=FRESH_PAY_URL)  # e.g. the order was edited

    clock_tick(runtime, travel(T0 + 62 * MIN))

    [nudge] = nudges(runtime, shop_id)
    assert nudge.context["payment_url"] == FRESH_PAY_URL
    assert {"gate": "payment_link", "source": "store_payment_page"} in nudge.gate_trace
    request = fake.requests_for("OrdersUpdatedSince")[-1]
    assert "additionalPaymentCollectionUrl" in request.body["query"]


def test_a_shopify_order_with_nothing_to_collect_gets_no_nudge_not_even_its_status_page(runtime, shop_id, fake, travel):
    enable_library_flow(runtime, shop_id, "unpaid_order")
    travel(T0)
    fake.add_order(7202, email=EMAIL, financial="PENDING", updated_at=iso(T0), payment_collection_url=None)
    place_unpaid_order(runtime, shop_id, "7202", at=T0)
    clock_tick(runtime, travel(T0 + MIN))

    clock_tick(runtime, travel(T0 + 62 * MIN))

    assert nudges(runtime, shop_id) == []
    [skipped] = [d for d in rows(runtime, shop_id, AutomationDecision)
                 if d.decision == "send_skipped_store_takes_no_payment"]
    assert skipped.step == "finish_payment"


def test_an_order_the_store_answered_about_without_a_link_is_not_asked_about_again(runtime, shop_id, fake, travel):
    enable_library_flow(runtime, shop_id, "unpaid_order")
    travel(T0)
    fake.add_order(7206, email=EMAIL, financial="PENDING", updated_at=iso(T0), payment_collection_url=None,
                   status_page_url=None)
    place_unpaid_order(runtime, shop_id, "7206", at=T0)
    clock_tick(runtime, travel(T0 + MIN))

    clock_tick(runtime, travel(T0 + 62 * MIN))

    [run] = rows(runtime, shop_id, FlowRun)
    assert run.state == "waiting" and run.due_at >= T0 + 24 * HOUR, "on to the next wait, no 15-minute polling"
    assert "postponed_no_payment_link" not in decisions(runtime, shop_id)


def test_an_authorized_card_order_is_not_nudged(runtime, shop_id, fake, travel):
    enable_library_flow(runtime, shop_id, "unpaid_order")
    travel(T0)
    fake.add_order(7501, email=EMAIL, financial="AUTHORIZED", updated_at=iso(T0), payment_collection_url=None)
    place_unpaid_order(runtime, shop_id, "7501", at=T0, financial_status="authorized", payment="shopify_payments")

    clock_tick(runtime, travel(T0 + MIN))
    clock_tick(runtime, travel(T0 + 62 * MIN))

    assert rows(runtime, shop_id, Message) == []
    assert "not_started_audience" in decisions(runtime, shop_id)


def test_an_order_the_store_now_reports_authorized_ends_the_nudge_run_as_paid(runtime, shop_id, fake, travel):
    enable_library_flow(runtime, shop_id, "unpaid_order")
    travel(T0)
    gid = fake.add_order(7502, email=EMAIL, financial="PENDING", updated_at=iso(T0), payment_collection_url=PAY_URL)
    place_unpaid_order(runtime, shop_id, "7502", at=T0)
    clock_tick(runtime, travel(T0 + MIN))
    fake.touch_order(gid, iso(T0 + 30 * MIN), financial="AUTHORIZED", payment_collection_url=None)  # webhook lost

    clock_tick(runtime, travel(T0 + 62 * MIN))

    assert nudges(runtime, shop_id) == []
    [run] = rows(runtime, shop_id, FlowRun)
    assert (run.state, run.exit_reason) == ("exited", "order_paid")


def test_an_order_the_store_does_not_return_yet_is_asked_about_again_in_15_minutes(runtime, shop_id, fake, travel):
    enable_library_flow(runtime, shop_id, "unpaid_order")
    travel(T0)
    place_unpaid_order(runtime, shop_id, "7203", at=T0)  # not in the store's answer (yet)
    clock_tick(runtime, travel(T0 + MIN))

    clock_tick(runtime, travel(T0 + 62 * MIN))

    assert nudges(runtime, shop_id) == []
    [run] = rows(runtime, shop_id, FlowRun)
    assert run.state == "waiting" and T0 + 77 * MIN <= run.due_at < T0 + 78 * MIN, "asked again in 15 minutes"
    [postponed] = [d for d in rows(runtime, shop_id, AutomationDecision) if d.decision == "postponed_no_payment_link"]
    assert postponed.step == "finish_payment"


def test_an_order_that_appears_in_the_store_later_is_nudged_with_its_link_when_it_does(runtime, shop_id, fake, travel):
    enable_library_flow(runtime, shop_id, "unpaid_order")
    travel(T0)
    place_unpaid_order(runtime, shop_id, "7204", at=T0)
    clock_tick(runtime, travel(T0 + MIN))
    clock_tick(runtime, travel(T0 + 62 * MIN))
    fake.add_order(7204, email=EMAIL, financial="PENDING", updated_at=iso(T0 + 70 * MIN),
                   payment_collection_url=PAY_URL)

    clock_tick(runtime, travel(T0 + 78 * MIN))

    [nudge] = nudges(runtime, shop_id)
    assert nudge.context["payment_url"] == PAY_URL


def test_a_nudge_still_without_a_link_after_two_days_is_skipped_never_sent_with_a_dead_link(runtime, shop_id, fake,
                                                                                            travel):
    enable_library_flow(runtime, shop_id, "unpaid_order")
    travel(T0)
    place_unpaid_order(runtime, shop_id, "7205", at=T0)  # never in the store's answer
    clock_tick(runtime, travel(T0 + MIN))
    clock_tick(runtime, travel(T0 + 62 * MIN))

    clock_tick(runtime, travel(T0 + 63 * MIN + 48 * HOUR))

    assert nudges(runtime, shop_id) == []
    assert "send_skipped_no_payment_link" in decisions(runtime, shop_id)
    [run] = rows(runtime, shop_id, FlowRun)
    assert run.state in ("waiting", "completed") and run.next_step > 1, "the run went on past the nudge"


# --- who gets the link ----------------------------------------------------------------------------------------------

GUEST, SHARED_PHONE = "guest.buyer@example.pl", "+48600999888"


def customer_sharing_the_phone(runtime, shop_id: int) -> None:
    with runtime.sessions.begin() as session, shop_context(shop_id):
        make_customer(session, session.get(Shop, shop_id), "someone.else@example.pl", phone=SHARED_PHONE,
                      first_name="Jan")


def test_a_guest_orders_payment_link_goes_to_the_order_email_not_to_a_customer_sharing_its_phone(runtime, shop_id, fake,
                                                                                                 travel):
    customer_sharing_the_phone(runtime, shop_id)
    enable_library_flow(runtime, shop_id, "unpaid_order")
    travel(T0)
    fake.add_order(7401, email=GUEST, phone=SHARED_PHONE, financial="PENDING", updated_at=iso(T0),
                   payment_collection_url=PAY_URL)
    place_unpaid_order(runtime, shop_id, "7401", at=T0, email=GUEST, phone=SHARED_PHONE)
    clock_tick(runtime, travel(T0 + MIN))

    clock_tick(runtime, travel(T0 + 62 * MIN))

    assert [(m.recipient, m.context["payment_url"]) for m in rows(runtime, shop_id, Message)] == [(GUEST, PAY_URL)]


def test_a_guest_orders_payment_link_does_not_greet_the_customer_found_by_its_phone(runtime, shop_id, fake, travel):
    customer_sharing_the_phone(runtime, shop_id)
    enable_library_flow(runtime, shop_id, "unpaid_order")
    travel(T0)
    fake.add_order(7402, email=GUEST, phone=SHARED_PHONE, financial="PENDING", updated_at=iso(T0),
                   payment_collection_url=PAY_URL)
    place_unpaid_order(runtime, shop_id, "7402", at=T0, email=GUEST, phone=SHARED_PHONE)
    clock_tick(runtime, travel(T0 + MIN))

    clock_tick(runtime, travel(T0 + 62 * MIN))

    [nudge] = nudges(runtime, shop_id)
    assert nudge.context["first_name"] == ""


def test_a_guest_order_without_an_email_gets_no_emailed_payment_link_and_the_trace_says_why(runtime, shop_id, fake,
                                                                                            travel):
    customer_sharing_the_phone(runtime, shop_id)
    enable_library_flow(runtime, shop_id, "unpaid_order")
    travel(T0)
    fake.add_order(7403, email=None, phone=SHARED_PHONE, financial="PENDING", updated_at=iso(T0),
                   payment_collection_url=PAY_URL)
    place_unpaid_order(runtime, shop_id, "7403", at=T0, email=None, phone=SHARED_PHONE)
    clock_tick(runtime, travel(T0 + MIN))

    clock_tick(runtime, travel(T0 + 62 * MIN))

    assert rows(runtime, shop_id, Message) == []
    [skipped] = [d for d in rows(runtime, shop_id, AutomationDecision) if d.decision == "send_skipped_no_order_contact"]
    assert skipped.step == "finish_payment"


def test_a_queued_nudge_is_stopped_when_the_order_is_cancelled_before_it_goes_out(runtime, shop_id, fake, travel):
    enable_library_flow(runtime, shop_id, "unpaid_order")
    travel(T0)
    fake.add_order(7404, email=EMAIL, financial="PENDING", updated_at=iso(T0), payment_collection_url=PAY_URL)
    order_id = place_unpaid_order(runtime, shop_id, "7404", at=T0)
    clock_tick(runtime, travel(T0 + MIN))
    clock_tick(runtime, travel(T0 + 62 * MIN))
    [nudge] = nudges(runtime, shop_id)

    with runtime.sessions.begin() as session, shop_context(shop_id):
        session.get(Order, order_id).cancelled_at = T0 + 63 * MIN
        reasons = check_exits(session, session.get(Message, nudge.id), nudge.context["_exit_conditions"])

    assert reasons == [f"order {order_id} was cancelled"]


# --- WooCommerce, end to end against the fake store ---------------------------------------------------------------

@pytest.fixture
def store():
    with FakeWooCommerce() as running:
        yield running


@pytest.fixture
def woo_runtime(make_settings):
    from app.runtime import build_runtime

    built = build_runtime(make_settings(ALLOW_PRIVATE_STORE_URLS="true", PUBLIC_URL="https://companion.example.com"))
    yield built
    built.close()


@pytest.fixture
def woo_shop_id(woo_runtime, store):
    with woo_runtime.sessions.begin() as session:
        shop = make_shop(session, store.url, platform="woocommerce", timezone="Europe/Warsaw", locale="pl",
                         currency="PLN", credentials={"consumer_key": CONSUMER_KEY, "consumer_secret": CONSUMER_SECRET})
        with shop_context(shop.id):
            install_library_flow(session, shop.id, "unpaid_order", enabled=True)
        return shop.id


def test_a_woocommerce_order_awaiting_payment_gets_its_order_pay_link(woo_runtime, woo_shop_id, store, travel):
    travel(T0)
    held = store.add_order(7301, status="pending", paid=False, modified=T0.replace(tzinfo=None))
    place_unpaid_order(woo_runtime, woo_shop_id, "7301", at=T0)
    clock_tick(woo_runtime, travel(T0 + MIN))

    clock_tick(woo_runtime, travel(T0 + 62 * MIN))

    [nudge] = nudges(woo_runtime, woo_shop_id)
    assert nudge.context["payment_url"] == held["payment_url"]
    assert "pay_for_order=true&key=wc_order_" in nudge.context["payment_url"]


def test_a_woocommerce_order_whose_pay_page_would_refuse_it_gets_no_nudge_with_that_link(woo_runtime, woo_shop_id, store,
                                                                                         travel):
    travel(T0)
    store.add_order(7302, status="on-hold", paid=False, modified=T0.replace(tzinfo=None))  # needs_payment: false
    place_unpaid_order(woo_runtime, woo_shop_id, "7302", at=T0)
    clock_tick(woo_runtime, travel(T0 + MIN))

    clock_tick(woo_runtime, travel(T0 + 62 * MIN))

    assert nudges(woo_runtime, woo_shop_id) == []
    assert "send_skipped_store_takes_no_payment" in decisions(woo_runtime, woo_shop_id)


def test_a_woocommerce_order_that_cannot_take_a_payment_ends_the_step_at_once_without_polling(
        woo_runtime, woo_shop_id, store, travel):
    travel(T0)
    store.add_order(7304, status="on-hold", paid=False, modified=T0.replace(tzinfo=None))  # needs_payment: false
    place_unpaid_order(woo_runtime, woo_shop_id, "7304", at=T0)
    clock_tick(woo_runtime, travel(T0 + MIN))

    clock_tick(woo_runtime, travel(T0 + 62 * MIN))

    [run] = rows(woo_runtime, woo_shop_id, FlowRun)
    assert run.state == "waiting" and run.due_at >= T0 + 24 * HOUR, "on to the next wait, no 15-minute polling"
    assert "postponed_no_payment_link" not in decisions(woo_runtime, woo_shop_id)


def test_a_woocommerce_payment_link_to_another_host_is_never_sent(woo_runtime, woo_shop_id, store, travel):
    travel(T0)
    store.add_order(7305, status="pending", paid=False, modified=T0.replace(tzinfo=None))
    store.touch_order(7305, T0.replace(tzinfo=None),  # a plugin filtering the link, a store moved to a new domain
                      payment_url="https://pay.elsewhere.example/checkout/order-pay/7305/?pay_for_order=true&key=k")
    place_unpaid_order(woo_runtime, woo_shop_id, "7305", at=T0)
    clock_tick(woo_runtime, travel(T0 + MIN))

    clock_tick(woo_runtime, travel(T0 + 62 * MIN))

    assert nudges(woo_runtime, woo_shop_id) == []
    assert "send_skipped_payment_link_off_store" in decisions(woo_runtime, woo_shop_id)


def test_bank_transfer_and_cheque_orders_are_not_nudged_there_is_no_page_to_pay_at(woo_runtime, woo_shop_id, travel):
    travel(T0)
    place_unpaid_order(woo_runtime, woo_shop_id, "7303", at=T0, payment="bacs")

    clock_tick(woo_runtime, travel(T0 + 2 * HOUR))

    assert rows(woo_runtime, woo_shop_id, FlowRun) == []
    assert "not_started_audience" in decisions(woo_runtime, woo_shop_id)


# --- what the connectors read --------------------------------------------------------------------------------------

def _woo_order(**fields) -> dict:
    return {"id": 727, "number": "727", "status": "pending", "currency": "PLN", "total": "249.90",
            "shipping_total": "0.00", "total_tax": "0.00", "discount_total": "0.00",
            "date_created_gmt": "2026-12-01T09:00:00", "date_modified_gmt": "2026-12-01T09:00:00",
            "billing": {"email": EMAIL}, "line_items": [], "date_paid_gmt": None,
            "payment_url": "https://kwiaciarnia.example/zamowienie/order-pay/727/?pay_for_order=true&key=wc_order_58d2d042d1d",
            **fields}


def test_woocommerce_payment_url_is_kept_when_the_store_says_the_order_needs_payment():
    assert order_from_payload(_woo_order(needs_payment=True)).payment_url.endswith("key=wc_order_58d2d042d1d")


def test_woocommerce_payment_url_is_dropped_when_the_store_says_its_page_would_refuse_payment():
    assert order_from_payload(_woo_order(status="on-hold", needs_payment=False)).payment_url is None


@pytest.mark.parametrize(("status", "kept"), [("pending", True), ("failed", True), ("on-hold", False),
                                              ("processing", False)])
def test_without_needs_payment_an_older_store_is_judged_by_woocommerces_own_payable_statuses(status, kept):
    payload = _woo_order(status=status)
    assert (order_from_payload(payload).payment_url is not None) is kept


def _shopify_node(**fields) -> dict:
    money = {"shopMoney": {"amount": "249.90", "currencyCode": "PLN"}}
    return {"id": "gid://shopify/Order/7201", "name": "#7201", "createdAt": "2026-12-01T09:00:00Z",
            "displayFinancialStatus": "PENDING", "totalPriceSet": money, **fields}


def test_shopify_payment_collection_url_and_status_page_are_read_from_the_order():
    order = order_from_node(_shopify_node(paymentCollectionDetails={"additionalPaymentCollectionUrl": PAY_URL},
                                          statusPageUrl="https://kwiaciarnia-roza.pl/548380009/orders/abc/authenticate?key=k"))
    assert (order.payment_url, order.status_url) == (PAY_URL, "https://kwiaciarnia-roza.pl/548380009/orders/abc/authenticate?key=k")


def test_a_link_that_is_not_a_web_address_is_never_taken():
    order = order_from_node(_shopify_node(paymentCollectionDetails={"additionalPaymentCollectionUrl": "javascript:alert(1)"},
                                          statusPageUrl="/orders/abc"))
    assert (order.payment_url, order.status_url) == (None, None)


# --- the texts and the definition --------------------------------------------------------------------------------

@pytest.mark.parametrize(("locale", "words"), [("pl", "Zapłać tutaj: "), ("ro", "Plătește aici: "), ("en", "Pay here: ")])
def test_the_nudge_text_shows_the_payment_link_in_each_language(locale, words):
    from app.messaging.render import Brand, render_message

    context = {"first_name": "", "order": {"number": "#7201", "total": "249.90", "currency": "PLN"}, "payment_url": PAY_URL}
    rendered = render_message("unpaid_order_finish_payment", locale, context, brand=Brand(name="Sklep"),
                              timezone="Europe/Warsaw", link=lambda url: f"https://companion.example.com/m/x?u={url}")

    assert f"{words}https://companion.example.com/m/x?u={PAY_URL}" in rendered.text
    assert PAY_URL in rendered.html and PAY_URL in rendered.sms


@pytest.mark.parametrize("template", ["unpaid_order_finish_payment", "unpaid_order_last_call"])
def test_a_payment_link_with_several_parameters_is_escaped_in_the_html_href(template):
    from app.messaging.render import Brand, render_message

    woo_link = "https://kwiaciarnia.example/zamowienie/order-pay/727/?pay_for_order=true&key=wc_order_58d2d042d1d"
    context = {"first_name": "", "order": {"number": "#727", "total": "249.90", "currency": "PLN"},
               "payment_url": woo_link}
    rendered = render_message(template, "pl", context, brand=Brand(name="Sklep"), timezone="Europe/Warsaw")

    escaped = "https://kwiaciarnia.example/zamowienie/order-pay/727/?pay_for_order=true&amp;key=wc_order_58d2d042d1d"
    assert f'href="{escaped}"' in rendered.html
    assert "true&key=" not in rendered.html


@pytest.mark.parametrize(("locale", "sentence"), [("pl", "Bez niej nie możemy go wysłać"),
                                                  ("ro", "Fără ea nu o putem expedia"),
                                                  ("en", "We cannot ship it without it")])
def test_the_last_call_sms_with_a_payment_link_leaves_out_the_cannot_ship_sentence(locale, sentence):
    from app.messaging.render import Brand, render_message

    context = {"first_name": "", "order": {"number": "#7201", "total": "249.90", "currency": "PLN"}}
    with_link = render_message("unpaid_order_last_call", locale, {**context, "payment_url": PAY_URL},
                               brand=Brand(name="Kwiaciarnia Róża"), timezone="Europe/Warsaw").sms
    without = render_message("unpaid_order_last_call", locale, context, brand=Brand(name="Kwiaciarnia Róża"),
                             timezone="Europe/Warsaw").sms

    assert sentence not in with_link and PAY_URL in with_link
    assert sentence in without


@pytest.mark.parametrize("locale", ["pl", "ro", "en"])
def test_the_last_call_sms_with_its_payment_link_and_stop_link_costs_at_most_four_parts(make_settings, locale):
    from app.messaging import links
    from app.messaging.render import Brand, render_message
    from app.notifiers.sms import count_segments

    settings = make_settings(PUBLIC_URL="https://companion.example.com")
    stop = links.unsubscribe_url(settings, links.UnsubscribeTarget(12, 3456, "sms", "+48600111222", 789012))
    context = {"first_name": "", "order": {"number": "#7201", "total": "249.90", "currency": "PLN"},
               "payment_url": PAY_URL}
    sms = render_message("unpaid_order_last_call", locale, context, brand=Brand(name="Kwiaciarnia Róża"),
                         timezone="Europe/Warsaw").sms

    assert count_segments(f"{sms} STOP: {stop}").segments <= 4  # as app.messaging.send adds the STOP link


def test_payment_link_on_a_send_step_must_be_true_or_false():
    problems = validate_definition({"trigger": "order_placed", "steps": [
        {"id": "a", "type": "send", "channel": "email", "kind": "recovery", "template": "t", "payment_link": "yes"}]})
    assert problems == ["step 1 (a): payment_link must be true or false (true: carry the order's fresh payment link)"]
