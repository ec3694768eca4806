"""The unpaid-order nudge carries the payment link the store gives at send time (or the order's page), never a dead one."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from app.automations.definitions import validate_definition
from app.automations.flows import install_library_flow
from app.models import AutomationDecision, FlowRun, Message
from app.store.apply import apply_order
from app.tenancy import shop_context
from connectors.records import Money, StoreOrder
from connectors.shopify.mapping import order_from_node
from connectors.woocommerce.mapping import order_from_payload
from tests.automations_kit import (EMAIL, T0, clock_tick, decisions, enable_library_flow, fake, rows, runtime,  # noqa: F401
                                   shop_id, shopify_app, travel)
from tests.factories import make_shop
from tests.fake_woocommerce import CONSUMER_KEY, CONSUMER_SECRET, FakeWooCommerce

MIN, HOUR = dt.timedelta(minutes=1), dt.timedelta(hours=1)
PAY_URL = "https://kwiaciarnia-roza.pl/548380009/invoices/7e1c0f3a/pay?key=a1b2"
FRESH_PAY_URL = "https://kwiaciarnia-roza.pl/548380009/invoices/99aa01bc/pay?key=c3d4"


def iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def place_unpaid_order(runtime, shop_id: int, platform_id: str, *, at: dt.datetime, payment: str = "przelewy24") -> int:
    """The order as our ingest holds it: placed, not paid (the store's own copy is arranged separately)."""
    money, zero = Money(Decimal("249.90"), "PLN"), Money(Decimal("0"), "PLN")
    record = StoreOrder(platform_id=platform_id, number=f"#{platform_id}", status="pending", currency="PLN", total=money,
                        subtotal=money, shipping_total=zero, tax_total=zero, discount_total=zero, placed_at=at,
                        updated_at=at, email=EMAIL, financial_status="pending", payment_method=payment)
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


def test_without_a_payment_link_the_nudge_points_to_the_order_status_page(runtime, shop_id, fake, travel):
    enable_library_flow(runtime, shop_id, "unpaid_order")
    travel(T0)
    gid = fake.add_order(7202, email=EMAIL, financial="PENDING", updated_at=iso(T0), payment_collection_url=None)
    place_unpaid_order(runtime, shop_id, "7202", at=T0)
    clock_tick(runtime, travel(T0 + MIN))

    clock_tick(runtime, travel(T0 + 62 * MIN))

    [nudge] = nudges(runtime, shop_id)
    assert nudge.context["order_status_url"] == fake.orders[gid]["node"]["statusPageUrl"]
    assert "payment_url" not in nudge.context
    assert {"gate": "payment_link", "source": "order_status_page"} in nudge.gate_trace


def test_when_the_store_gives_no_link_at_all_the_nudge_waits_and_the_trace_says_why(runtime, shop_id, fake, travel):
    enable_library_flow(runtime, shop_id, "unpaid_order")
    travel(T0)
    fake.add_order(7203, email=EMAIL, financial="PENDING", updated_at=iso(T0), payment_collection_url=None,
                   status_page_url=None)
    place_unpaid_order(runtime, shop_id, "7203", at=T0)
    clock_tick(runtime, travel(T0 + MIN))

    clock_tick(runtime, travel(T0 + 62 * MIN))

    assert nudges(runtime, shop_id) == []
    [run] = rows(runtime, shop_id, FlowRun)
    assert run.state == "waiting" and T0 + 77 * MIN <= run.due_at < T0 + 78 * MIN, "asked again in 15 minutes"
    [postponed] = [d for d in rows(runtime, shop_id, AutomationDecision) if d.decision == "postponed_no_payment_link"]
    assert postponed.step == "finish_payment"


def test_a_link_that_appears_later_is_sent_when_it_does(runtime, shop_id, fake, travel):
    enable_library_flow(runtime, shop_id, "unpaid_order")
    travel(T0)
    gid = fake.add_order(7204, email=EMAIL, financial="PENDING", updated_at=iso(T0), payment_collection_url=None,
                         status_page_url=None)
    place_unpaid_order(runtime, shop_id, "7204", at=T0)
    clock_tick(runtime, travel(T0 + MIN))
    clock_tick(runtime, travel(T0 + 62 * MIN))
    fake.touch_order(gid, iso(T0 + 70 * MIN), payment_collection_url=PAY_URL)

    clock_tick(runtime, travel(T0 + 78 * MIN))

    [nudge] = nudges(runtime, shop_id)
    assert nudge.context["payment_url"] == PAY_URL


def test_a_nudge_still_without_a_link_after_two_days_is_skipped_never_sent_with_a_dead_link(runtime, shop_id, fake,
                                                                                            travel):
    enable_library_flow(runtime, shop_id, "unpaid_order")
    travel(T0)
    fake.add_order(7205, email=EMAIL, financial="PENDING", updated_at=iso(T0), payment_collection_url=None,
                   status_page_url=None)
    place_unpaid_order(runtime, shop_id, "7205", at=T0)
    clock_tick(runtime, travel(T0 + MIN))
    clock_tick(runtime, travel(T0 + 62 * MIN))

    clock_tick(runtime, travel(T0 + 63 * MIN + 48 * HOUR))

    assert nudges(runtime, shop_id) == []
    assert "send_skipped_no_payment_link" in decisions(runtime, shop_id)
    [run] = rows(runtime, shop_id, FlowRun)
    assert run.state in ("waiting", "completed") and run.next_step > 1, "the run went on past the nudge"


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
    assert "postponed_no_payment_link" in decisions(woo_runtime, woo_shop_id)


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
def test_the_order_status_page_stands_in_when_there_is_no_payment_link(template):
    from app.messaging.render import Brand, render_message

    page = "https://kwiaciarnia-roza.pl/548380009/orders/abc/authenticate?key=k"
    context = {"first_name": "", "order": {"number": "#7201", "total": "249.90", "currency": "PLN"},
               "order_status_url": page}
    rendered = render_message(template, "pl", context, brand=Brand(name="Sklep"), timezone="Europe/Warsaw")

    assert f"Strona zamówienia: {page}" in rendered.text and page in rendered.sms


def test_payment_link_on_a_send_step_must_be_true_or_false():
    problems = validate_definition({"trigger": "order_placed", "steps": [
        {"id": "a", "type": "send", "channel": "email", "kind": "recovery", "template": "t", "payment_link": "yes"}]})
    assert problems == ["step 1 (a): payment_link must be true or false (true: carry the order's fresh payment link)"]
