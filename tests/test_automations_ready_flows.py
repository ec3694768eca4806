"""The ready flows added last, end to end with time travel: ingest (or the storefront) -> detection -> flow -> outbox."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from sqlalchemy import select

from app.automations.api import issue_api_token
from app.automations.browse import enqueue_browse_checks
from app.automations.engagement import signal_inactive_subscribers
from app.automations.signals import emit_signal
from app.models import Consent, Customer, CustomerTag, PushSubscription, StorefrontEvent, StorefrontVisitor, Tag
from app.models.product_alerts import ProductAlert
from app.store.apply import apply_order, apply_product, apply_refund, apply_return
from app.tenancy import shop_context
from connectors.records import Money, StoreOrder, StoreProduct, StoreRefund
from tests.messaging_fakes import FakeTwilio, SmtpSink
from tests.outbox_helpers import provider_env
from tests.automations_kit import (API_KEY, SECRET, EMAIL, SHOP, T0, Coupon, FlowRun, Message, Signal, clock_tick, decisions,  # noqa: F401
                                   enable_library_flow, fake, rows, runtime, shop_id, templates_sent,
                                   travel, work)
from tests.factories import make_customer

MIN, HOUR, DAY = dt.timedelta(minutes=1), dt.timedelta(hours=1), dt.timedelta(days=1)
VISITOR = "visitor-0123456789abcdef"


@pytest.fixture
def sink():
    with SmtpSink() as running:
        yield running


@pytest.fixture
def twilio():
    fake_twilio = FakeTwilio().start()
    yield fake_twilio
    fake_twilio.stop()


@pytest.fixture
def shopify_app(make_settings, fake, sink, twilio):
    """The kit's app, with mail going to a real SMTP sink and SMS to a fake Twilio: messages really leave."""
    from app import create_app

    app = create_app(make_settings(SHOPIFY_API_KEY=API_KEY, SHOPIFY_API_SECRET=SECRET, SHOPIFY_ADMIN_BASE_URL=fake.url,
                                   **{**provider_env(sink, twilio), "PUBLIC_URL": "https://companion.example.com"}))
    yield app
    app.extensions["companion"].close()


# --- arrangements ---------------------------------------------------------------------------------------------

def tick(runtime, now: dt.datetime) -> None:
    """The clock's automation scans at `now` (abandoned carts, browse, routing, due steps), each followed by the workers."""
    with runtime.sessions.begin() as session:
        enqueue_browse_checks(session, now)
    work(runtime)
    clock_tick(runtime, now)


def put_product(runtime, shop_id: int, *, at: dt.datetime, stock: str = "in_stock", price: str = "149.00",
                platform_id: str = "501") -> int:
    record = StoreProduct(platform_id=platform_id, title="Bukiet róż", price=Money(Decimal(price), "PLN"), stock_status=stock,
                          updated_at=at, url=f"https://kwiaciarnia-roza.pl/products/{platform_id}")
    with runtime.sessions.begin() as session, shop_context(shop_id):
        return apply_product(session, shop_id, record).id


def add_customer(runtime, shop_id: int, email: str = EMAIL, **fields) -> int:
    with runtime.sessions.begin() as session, shop_context(shop_id):
        shop = type("S", (), {"id": shop_id})()
        return make_customer(session, shop, email, **fields).id


def grant_email_consent(runtime, shop_id: int, customer_id: int, at: dt.datetime, source: str = "checkout") -> None:
    with runtime.sessions.begin() as session, shop_context(shop_id):
        session.add(Consent(shop_id=shop_id, customer_id=customer_id, channel="email", state="granted", source=source,
                            recorded_at=at))


def place_order(runtime, shop_id: int, platform_id: str, *, at: dt.datetime, paid: bool = True, total: str = "249.90") -> int:
    money = Money(Decimal(total), "PLN")
    zero = Money(Decimal("0"), "PLN")
    record = StoreOrder(platform_id=platform_id, number=f"#{platform_id}", status="processing" if paid else "pending",
                        currency="PLN", total=money, subtotal=money, shipping_total=zero, tax_total=zero, discount_total=zero,
                        placed_at=at, updated_at=at, email=EMAIL, financial_status="paid" if paid else "pending",
                        payment_method="przelewy24", paid_at=at if paid else None)
    with runtime.sessions.begin() as session, shop_context(shop_id):
        return apply_order(session, shop_id, record).id


def api(shopify_app, runtime, shop_id: int):
    with runtime.sessions.begin() as session, shop_context(shop_id):
        token = issue_api_token(session, shop_id, "tests")
    client = shopify_app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    return client, headers


def messages(runtime, shop_id: int) -> list[Message]:
    return rows(runtime, shop_id, Message)


# --- back in stock and price drop -----------------------------------------------------------------------------

def test_a_customer_who_asked_hears_once_when_the_product_is_back_in_stock(shopify_app, runtime, shop_id, sink, travel):
    enable_library_flow(runtime, shop_id, "back_in_stock")
    travel(T0)
    put_product(runtime, shop_id, at=T0, stock="out_of_stock")
    client, headers = api(shopify_app, runtime, shop_id)
    answer = client.post("/api/v1/products/501/alerts", json={"kind": "back_in_stock", "email": EMAIL}, headers=headers)
    assert answer.status_code == 201, answer.json

    put_product(runtime, shop_id, at=T0 + 2 * HOUR, stock="in_stock")
    tick(runtime, travel(T0 + 2 * HOUR + MIN))
    put_product(runtime, shop_id, at=T0 + 3 * HOUR, stock="out_of_stock")
    put_product(runtime, shop_id, at=T0 + 4 * HOUR, stock="in_stock")
    tick(runtime, travel(T0 + 4 * HOUR + MIN))

    [message] = messages(runtime, shop_id)
    assert (message.template, message.recipient, message.locale) == ("back_in_stock", EMAIL, "pl")
    assert message.context["product"]["title"] == "Bukiet róż"
    assert message.context["product"]["url"] == "https://kwiaciarnia-roza.pl/products/501"
    assert message.status == "sent", message.error
    [mail] = sink.handler.messages()
    assert mail["Subject"] == "Bukiet róż – znów w sprzedaży"
    [alert] = rows(runtime, shop_id, ProductAlert)
    assert alert.status == "notified"


def test_an_update_that_leaves_the_product_out_of_stock_tells_nobody(shopify_app, runtime, shop_id, travel):
    enable_library_flow(runtime, shop_id, "back_in_stock")
    travel(T0)
    put_product(runtime, shop_id, at=T0, stock="out_of_stock")
    client, headers = api(shopify_app, runtime, shop_id)
    client.post("/api/v1/products/501/alerts", json={"kind": "back_in_stock", "email": EMAIL}, headers=headers)

    put_product(runtime, shop_id, at=T0 + HOUR, stock="out_of_stock", price="139.00")
    tick(runtime, travel(T0 + HOUR + MIN))

    assert messages(runtime, shop_id) == []


def test_a_price_drop_is_announced_with_the_old_price_and_only_below_the_last_announced_price(shopify_app, runtime,
                                                                                               shop_id, travel):
    enable_library_flow(runtime, shop_id, "price_drop")
    travel(T0)
    put_product(runtime, shop_id, at=T0, price="149.00")
    client, headers = api(shopify_app, runtime, shop_id)
    assert client.post("/api/v1/products/501/alerts", json={"kind": "price_drop", "email": EMAIL},
                       headers=headers).status_code == 201

    put_product(runtime, shop_id, at=T0 + HOUR, price="119.00")
    tick(runtime, travel(T0 + HOUR + MIN))
    put_product(runtime, shop_id, at=T0 + 2 * HOUR, price="149.00")
    put_product(runtime, shop_id, at=T0 + 3 * HOUR, price="129.00")  # lower than a moment ago, not than 119
    tick(runtime, travel(T0 + 3 * HOUR + MIN))
    put_product(runtime, shop_id, at=T0 + 4 * HOUR, price="99.00")
    tick(runtime, travel(T0 + 4 * HOUR + MIN))

    sent = messages(runtime, shop_id)
    assert [m.template for m in sent] == ["price_drop", "price_drop"]
    assert [(m.context["signal"]["previous_price"], m.context["product"]["price"]) for m in sent] == \
        [("149.0000", "119.0000"), ("119.0000", "99.0000")]


def test_a_product_alert_for_an_unknown_product_is_refused(shopify_app, runtime, shop_id):
    client, headers = api(shopify_app, runtime, shop_id)

    answer = client.post("/api/v1/products/404/alerts", json={"kind": "back_in_stock", "email": EMAIL}, headers=headers)

    assert answer.status_code == 422
    assert rows(runtime, shop_id, ProductAlert) == []


def test_a_visitor_asks_on_the_storefront_and_the_alert_is_recorded_for_their_email(shopify_app, runtime, shop_id, travel):
    from app.models import Shop

    travel(T0)
    put_product(runtime, shop_id, at=T0, stock="out_of_stock")
    with runtime.sessions.begin() as session:
        shop = session.get(Shop, shop_id)
        public_key, domain = shop.public_key, shop.domain
    origin = f"https://{domain}"

    answer = shopify_app.test_client().post(
        f"/s/product-alert?k={public_key}", headers={"Origin": origin},
        json={"product_id": "501", "kind": "back_in_stock", "email": "Ala@Example.pl", "consent": True,
              "visitor_id": VISITOR})

    assert answer.status_code == 202, answer.get_data(as_text=True)
    [alert] = rows(runtime, shop_id, ProductAlert)
    [customer] = rows(runtime, shop_id, Customer)
    assert (alert.kind, alert.status, alert.source, alert.customer_id) == ("back_in_stock", "active", "storefront", customer.id)
    assert customer.email == "ala@example.pl"
    [visitor] = rows(runtime, shop_id, StorefrontVisitor)
    assert visitor.customer_id == customer.id, "the visitor is known from now on (abandoned browse can reach them)"


# --- abandoned browse -----------------------------------------------------------------------------------------

def browsing_customer(runtime, shop_id: int, *, consent: bool = True) -> int:
    customer_id = add_customer(runtime, shop_id)
    if consent:
        grant_email_consent(runtime, shop_id, customer_id, T0 - 30 * DAY)
    with runtime.sessions.begin() as session, shop_context(shop_id):
        session.add(StorefrontVisitor(shop_id=shop_id, visitor_id=VISITOR, customer_id=customer_id, contact_at=T0 - DAY))
    return customer_id


def storefront_event(runtime, shop_id: int, kind: str, at: dt.datetime, product: str = "501") -> None:
    with runtime.sessions.begin() as session, shop_context(shop_id):
        session.add(StorefrontEvent(shop_id=shop_id, visitor_id=VISITOR, kind=kind, url=f"https://kwiaciarnia-roza.pl/p/{product}",
                                    product_platform_id=product, data={}, occurred_at=at, received_at=at))


def test_a_known_visitor_who_viewed_a_product_and_left_gets_one_email_about_it_an_hour_later(runtime, shop_id, sink,
                                                                                              travel):
    enable_library_flow(runtime, shop_id, "abandoned_browse")
    travel(T0)
    put_product(runtime, shop_id, at=T0 - DAY)
    browsing_customer(runtime, shop_id)
    storefront_event(runtime, shop_id, "product_view", T0)

    tick(runtime, travel(T0 + 30 * MIN))
    assert messages(runtime, shop_id) == []
    tick(runtime, travel(T0 + 61 * MIN))
    tick(runtime, travel(T0 + 66 * MIN))  # the next scans see the same view again: nothing new

    [message] = messages(runtime, shop_id)
    assert (message.template, message.kind, message.status) == ("abandoned_browse", "promotional", "sent")
    [mail] = sink.handler.messages()
    assert mail["Subject"] == "Bukiet róż – wciąż się zastanawiasz?"
    assert "149,00\xa0zł" in mail.get_body(("plain",)).get_content()


def test_a_view_followed_by_add_to_cart_or_a_purchase_is_not_abandoned_browse(runtime, shop_id, travel):
    enable_library_flow(runtime, shop_id, "abandoned_browse")
    travel(T0)
    put_product(runtime, shop_id, at=T0 - DAY)
    browsing_customer(runtime, shop_id)
    storefront_event(runtime, shop_id, "product_view", T0)
    storefront_event(runtime, shop_id, "add_to_cart", T0 + 5 * MIN)

    tick(runtime, travel(T0 + 61 * MIN))

    assert messages(runtime, shop_id) == []
    assert [s for s in rows(runtime, shop_id, Signal) if s.kind == "browse_abandoned"] == []


def test_the_same_product_is_not_mentioned_again_within_the_window(runtime, shop_id, travel):
    enable_library_flow(runtime, shop_id, "abandoned_browse")
    travel(T0)
    put_product(runtime, shop_id, at=T0 - DAY)
    browsing_customer(runtime, shop_id)
    storefront_event(runtime, shop_id, "product_view", T0)
    tick(runtime, travel(T0 + 61 * MIN))
    storefront_event(runtime, shop_id, "product_view", T0 + 3 * DAY)
    tick(runtime, travel(T0 + 3 * DAY + 61 * MIN))
    assert templates_sent(runtime, shop_id) == ["abandoned_browse"]

    storefront_event(runtime, shop_id, "product_view", T0 + 20 * DAY)
    tick(runtime, travel(T0 + 20 * DAY + 61 * MIN))

    assert templates_sent(runtime, shop_id) == ["abandoned_browse", "abandoned_browse"], "a new window, a new reminder"


# --- welcome series after double opt-in ---------------------------------------------------------------------

def test_a_confirmed_sign_up_gets_the_welcome_series_with_a_sign_up_coupon(runtime, shop_id, sink, travel):
    from app.storefront.optin import Proof, confirm_sign_up, request_sign_up

    enable_library_flow(runtime, shop_id, "welcome_series")
    travel(T0)
    proof = Proof(ip_address="203.0.113.7", user_agent="Firefox")
    with runtime.sessions.begin() as session, shop_context(shop_id):
        row = request_sign_up(session, shop_id, email=EMAIL, form_id="footer", form_text_version="v1", locale="pl",
                              visitor_id=None, proof=proof)
        row_id, nonce = row.id, row.nonce
    tick(runtime, travel(T0 + MIN))
    assert templates_sent(runtime, shop_id) == ["double_opt_in"], "a pending consent starts no welcome"

    with runtime.sessions.begin() as session, shop_context(shop_id):
        confirm_sign_up(session, row_id, nonce, proof)
    tick(runtime, travel(T0 + 5 * MIN))
    tick(runtime, travel(T0 + 2 * DAY + HOUR))
    tick(runtime, travel(T0 + 12 * DAY + HOUR))

    assert templates_sent(runtime, shop_id) == ["double_opt_in", "welcome_coupon", "welcome_story", "welcome_coupon_reminder"]
    [coupon] = rows(runtime, shop_id, Coupon)
    assert coupon.code.startswith("WITAJ-") and coupon.percent_off == Decimal("10") and coupon.cart_id is None
    assert coupon.expires_at == coupon.created_at + 14 * DAY
    welcome = sink.handler.messages()[1]
    assert welcome["Subject"] == f"Witamy w sklepie {SHOP} – oto Twój kod rabatowy"
    text = welcome.get_body(("plain",)).get_content()
    assert coupon.code in text and "ważny przez 14 dni" in text


def test_a_purchase_ends_the_welcome_series(runtime, shop_id, travel):
    from app.storefront.optin import Proof, confirm_sign_up, request_sign_up

    enable_library_flow(runtime, shop_id, "welcome_series")
    travel(T0)
    proof = Proof(ip_address=None, user_agent=None)
    with runtime.sessions.begin() as session, shop_context(shop_id):
        row = request_sign_up(session, shop_id, email=EMAIL, form_id="footer", form_text_version="v1", locale="pl",
                              visitor_id=None, proof=proof)
        confirm_sign_up(session, row.id, row.nonce, proof)
    tick(runtime, travel(T0 + MIN))
    place_order(runtime, shop_id, "9001", at=T0 + DAY)

    tick(runtime, travel(T0 + 2 * DAY + HOUR))

    assert templates_sent(runtime, shop_id)[-1] == "welcome_coupon"
    [run] = [r for r in rows(runtime, shop_id, FlowRun)]
    assert (run.state, run.exit_reason) == ("exited", "purchased")


# --- re-engagement, then sunset -----------------------------------------------------------------------------

def sleeping_subscriber(runtime, shop_id: int) -> int:
    """Subscribed four months ago; three newsletters since, none opened or clicked; no order."""
    customer_id = add_customer(runtime, shop_id)
    grant_email_consent(runtime, shop_id, customer_id, T0 - 120 * DAY)
    with runtime.sessions.begin() as session, shop_context(shop_id):
        for days in (80, 60, 40):
            sent = T0 - days * DAY
            session.add(Message(shop_id=shop_id, channel="email", kind="promotional", recipient=EMAIL, customer_id=customer_id,
                                template="newsletter", locale="pl", context={}, dedupe_key=f"newsletter:{days}",
                                status="sent", due_at=sent, sent_at=sent, gate_trace=[], created_at=sent))
    return customer_id


def inactive_scan(runtime, now: dt.datetime) -> None:
    from app.automations.engagement import scan_inactive_subscribers

    scan_inactive_subscribers(runtime, now)
    work(runtime)


def test_an_inactive_subscriber_is_asked_twice_then_sunset_and_no_longer_mailed(runtime, shop_id, travel):
    enable_library_flow(runtime, shop_id, "reengagement_sunset")
    travel(T0)
    customer_id = sleeping_subscriber(runtime, shop_id)

    inactive_scan(runtime, T0)
    inactive_scan(runtime, T0 + HOUR)  # the same day: no second signal
    tick(runtime, travel(T0 + MIN))
    tick(runtime, travel(T0 + 7 * DAY + HOUR))
    tick(runtime, travel(T0 + 14 * DAY + HOUR))

    new = [m.template for m in messages(runtime, shop_id) if m.template != "newsletter"]
    assert new == ["reengagement_miss_you", "reengagement_last_chance"]
    assert len([s for s in rows(runtime, shop_id, Signal) if s.kind == "subscriber_inactive"]) == 1
    with runtime.sessions() as session, shop_context(shop_id):
        newest = session.scalars(select(Consent).where(Consent.customer_id == customer_id, Consent.channel == "email")
                                 .order_by(Consent.recorded_at.desc(), Consent.id.desc())).first()
        tags = session.scalars(select(Tag.name).join(CustomerTag, CustomerTag.tag_id == Tag.id)
                               .where(CustomerTag.customer_id == customer_id)).all()
    assert (newest.state, newest.source) == ("revoked", "sunset")
    assert tags == ["sunset"]
    assert "sunset" in decisions(runtime, shop_id)
    inactive_scan(runtime, T0 + 200 * DAY)
    assert len([s for s in rows(runtime, shop_id, Signal) if s.kind == "subscriber_inactive"]) == 1, "sunset is final"


def test_a_subscriber_who_opens_the_re_engagement_email_stays_subscribed(runtime, shop_id, travel):
    enable_library_flow(runtime, shop_id, "reengagement_sunset")
    travel(T0)
    customer_id = sleeping_subscriber(runtime, shop_id)
    inactive_scan(runtime, T0)
    tick(runtime, travel(T0 + MIN))
    with runtime.sessions.begin() as session, shop_context(shop_id):
        session.scalars(select(Message).where(Message.template == "reengagement_miss_you")).one().opened_at = T0 + DAY

    tick(runtime, travel(T0 + 7 * DAY + HOUR))
    tick(runtime, travel(T0 + 14 * DAY + HOUR))

    assert [m.template for m in messages(runtime, shop_id) if m.template != "newsletter"] == ["reengagement_miss_you"]
    [run] = rows(runtime, shop_id, FlowRun)
    assert run.state == "completed"
    with runtime.sessions() as session, shop_context(shop_id):
        states = session.scalars(select(Consent.state).where(Consent.customer_id == customer_id)).all()
    assert states == ["granted"]


def test_a_subscriber_who_reads_or_buys_is_not_inactive(runtime, shop_id, travel):
    travel(T0)
    reader = sleeping_subscriber(runtime, shop_id)
    with runtime.sessions.begin() as session, shop_context(shop_id):
        session.scalars(select(Message).where(Message.dedupe_key == "newsletter:40")).one().clicked_at = T0 - 39 * DAY
    with runtime.sessions.begin() as session, shop_context(shop_id):
        assert signal_inactive_subscribers(session, shop_id, T0) == 0
        session.get(Customer, reader).last_order_at = None
        session.execute(Message.__table__.update().values(clicked_at=None))
        session.get(Customer, reader).last_order_at = T0 - 10 * DAY
    with runtime.sessions.begin() as session, shop_context(shop_id):
        assert signal_inactive_subscribers(session, shop_id, T0) == 0


# --- service reminder with a branch ----------------------------------------------------------------------------

def test_a_customer_who_books_the_service_gets_a_15_percent_coupon(shopify_app, runtime, shop_id, travel):
    enable_library_flow(runtime, shop_id, "service_reminder")
    travel(T0)
    customer_id = add_customer(runtime, shop_id)
    grant_email_consent(runtime, shop_id, customer_id, T0 - DAY)
    place_order(runtime, shop_id, "4001", at=T0)
    tick(runtime, travel(T0 + MIN))
    tick(runtime, travel(T0 + 181 * DAY))
    assert templates_sent(runtime, shop_id) == []

    tick(runtime, travel(T0 + 182 * DAY + HOUR))
    assert templates_sent(runtime, shop_id) == ["service_reminder_book"]
    client, headers = api(shopify_app, runtime, shop_id)
    assert client.post("/api/v1/events", json={"name": "service_booked", "id": "booking-77", "customer_id": customer_id},
                       headers=headers).status_code == 202
    tick(runtime, travel(T0 + 196 * DAY + HOUR))

    assert templates_sent(runtime, shop_id) == ["service_reminder_book", "service_booked_coupon"]
    [coupon] = rows(runtime, shop_id, Coupon)
    assert (coupon.percent_off, coupon.code[:7]) == (Decimal("15"), "SERWIS-")
    assert messages(runtime, shop_id)[-1].context["coupon"]["percent_off"] == "15"


def test_a_customer_who_did_not_book_gets_a_reminder_and_no_coupon(runtime, shop_id, travel):
    enable_library_flow(runtime, shop_id, "service_reminder")
    travel(T0)
    customer_id = add_customer(runtime, shop_id)
    grant_email_consent(runtime, shop_id, customer_id, T0 - DAY)
    place_order(runtime, shop_id, "4002", at=T0)
    tick(runtime, travel(T0 + MIN))
    tick(runtime, travel(T0 + 182 * DAY + HOUR))

    tick(runtime, travel(T0 + 196 * DAY + HOUR))

    assert templates_sent(runtime, shop_id) == ["service_reminder_book", "service_reminder_again"]
    assert rows(runtime, shop_id, Coupon) == []


def test_a_service_booked_tag_set_by_hand_counts_as_booked(runtime, shop_id, travel):
    enable_library_flow(runtime, shop_id, "service_reminder")
    travel(T0)
    customer_id = add_customer(runtime, shop_id)
    grant_email_consent(runtime, shop_id, customer_id, T0 - DAY)
    place_order(runtime, shop_id, "4003", at=T0)
    tick(runtime, travel(T0 + MIN))
    tick(runtime, travel(T0 + 182 * DAY + HOUR))
    with runtime.sessions.begin() as session, shop_context(shop_id):
        tag = Tag(shop_id=shop_id, name="service_booked")
        session.add(tag)
        session.flush()
        session.add(CustomerTag(shop_id=shop_id, customer_id=customer_id, tag_id=tag.id))

    tick(runtime, travel(T0 + 196 * DAY + HOUR))

    assert templates_sent(runtime, shop_id)[-1] == "service_booked_coupon"


# --- returns and refunds --------------------------------------------------------------------------------------

def test_a_return_received_and_each_refund_are_told_to_the_customer(runtime, shop_id, sink, travel):
    enable_library_flow(runtime, shop_id, "return_received")
    enable_library_flow(runtime, shop_id, "refund_issued")
    travel(T0)
    add_customer(runtime, shop_id)
    place_order(runtime, shop_id, "5001", at=T0, total="249.90")
    with runtime.sessions.begin() as session, shop_context(shop_id):
        apply_return(session, shop_id, "ret-1", "5001", "requested", T0 + DAY)
    tick(runtime, travel(T0 + DAY + MIN))
    assert templates_sent(runtime, shop_id) == [], "a requested return is not a received one"

    with runtime.sessions.begin() as session, shop_context(shop_id):
        apply_return(session, shop_id, "ret-1", "5001", "closed", T0 + 4 * DAY)
        apply_refund(session, shop_id, StoreRefund(platform_id="rf-1", order_platform_id="5001",
                                                   amount=Money(Decimal("49.90"), "PLN"), created_at=T0 + 4 * DAY))
    tick(runtime, travel(T0 + 4 * DAY + MIN))
    with runtime.sessions.begin() as session, shop_context(shop_id):
        apply_refund(session, shop_id, StoreRefund(platform_id="rf-2", order_platform_id="5001",
                                                   amount=Money(Decimal("20.00"), "PLN"), created_at=T0 + 5 * DAY))
    tick(runtime, travel(T0 + 5 * DAY + MIN))

    assert templates_sent(runtime, shop_id) == ["return_received", "refund_issued", "refund_issued"]
    assert {m.status for m in messages(runtime, shop_id)} == {"sent"}
    subjects = [mail["Subject"] for mail in sink.handler.messages()]
    assert "Zwrot pieniędzy: 49,90 zł" in subjects and "Zwrot pieniędzy: 20,00 zł" in subjects
    assert "Otrzymaliśmy Twój zwrot" in subjects


# --- a thank-you ten minutes after a review -----------------------------------------------------------------

def test_a_review_reported_through_the_api_is_thanked_ten_minutes_later(shopify_app, runtime, shop_id, travel):
    enable_library_flow(runtime, shop_id, "review_thank_you")
    travel(T0)
    customer_id = add_customer(runtime, shop_id)
    client, headers = api(shopify_app, runtime, shop_id)
    client.post("/api/v1/events", json={"name": "review_posted", "id": "review-1", "customer_id": customer_id,
                                        "properties": {"rating": 5}}, headers=headers)
    client.post("/api/v1/events", json={"name": "wishlist_added", "id": "wish-1", "customer_id": customer_id},
                headers=headers)

    tick(runtime, travel(T0 + MIN))
    tick(runtime, travel(T0 + 6 * MIN))
    assert templates_sent(runtime, shop_id) == []
    tick(runtime, travel(T0 + 12 * MIN))

    assert templates_sent(runtime, shop_id) == ["review_thank_you"]


# --- shipping: shipped, locker pickup escalation -------------------------------------------------------------

def shipment_signal(runtime, shop_id: int, order_id: int, customer_id: int, status: str, at: dt.datetime,
                    kind: str = "shipment_status_changed", **extra) -> None:
    """What app.shipping emits (tracking polls, label batches)."""
    with runtime.sessions.begin() as session, shop_context(shop_id):
        emit_signal(session, shop_id, kind, dedupe_key=f"shipment:1:{status}:{int(at.timestamp())}",
                    customer_id=customer_id, subject=("order", order_id), occurred_at=at,
                    payload={"shipment_id": 1, "order_id": order_id, "courier": "inpost", "status": status,
                             "tracking_number": "620000000000000000000001", **extra})


def shipping_customer(runtime, shop_id: int) -> tuple[int, int]:
    customer_id = add_customer(runtime, shop_id, phone="+48600111222")
    with runtime.sessions.begin() as session, shop_context(shop_id):
        session.add(PushSubscription(shop_id=shop_id, customer_id=customer_id, endpoint="https://push.example/sub/1",
                                     p256dh="p256dh-key", auth="auth-secret", status="active"))
    order_id = place_order(runtime, shop_id, "6001", at=T0 - DAY)
    return customer_id, order_id


def test_a_parcel_waiting_in_a_locker_escalates_from_email_to_sms_to_push(runtime, shop_id, twilio, travel):
    enable_library_flow(runtime, shop_id, "shipping_updates")
    travel(T0)
    customer_id, order_id = shipping_customer(runtime, shop_id)
    shipment_signal(runtime, shop_id, order_id, customer_id, "available_for_pickup", T0)

    tick(runtime, travel(T0 + MIN))
    tick(runtime, travel(T0 + 23 * HOUR))
    assert [(m.template, m.channel) for m in messages(runtime, shop_id)] == [("shipping_locker_waiting", "email")]
    tick(runtime, travel(T0 + 24 * HOUR + 2 * MIN))
    tick(runtime, travel(T0 + 40 * HOUR + 3 * MIN))

    assert [(m.template, m.channel) for m in messages(runtime, shop_id)] == [
        ("shipping_locker_waiting", "email"), ("shipping_locker_reminder", "sms"), ("shipping_locker_last_call", "push")]
    sms = next(m for m in messages(runtime, shop_id) if m.channel == "sms")
    assert sms.status == "sent", sms.error
    assert "wciąż czeka w automacie" in twilio.requests[0]["form"]["Body"]


def test_a_parcel_picked_up_from_the_locker_stops_the_escalation(runtime, shop_id, travel):
    enable_library_flow(runtime, shop_id, "shipping_updates")
    travel(T0)
    customer_id, order_id = shipping_customer(runtime, shop_id)
    shipment_signal(runtime, shop_id, order_id, customer_id, "available_for_pickup", T0)
    tick(runtime, travel(T0 + MIN))
    shipment_signal(runtime, shop_id, order_id, customer_id, "delivered", T0 + 5 * HOUR)

    tick(runtime, travel(T0 + 5 * HOUR + MIN))
    tick(runtime, travel(T0 + 41 * HOUR))

    assert templates_sent(runtime, shop_id) == ["shipping_locker_waiting", "shipping_status_update"]
    assert messages(runtime, shop_id)[-1].context["signal"]["status"] == "delivered"


def test_a_shipped_order_gets_its_tracking_link(runtime, shop_id, sink, travel):
    enable_library_flow(runtime, shop_id, "order_shipped")
    travel(T0)
    customer_id, order_id = shipping_customer(runtime, shop_id)
    shipment_signal(runtime, shop_id, order_id, customer_id, "created", T0, kind="fulfillment_created",
                    tracking_url="https://inpost.pl/sledzenie-przesylek?number=620000000000000000000001")

    tick(runtime, travel(T0 + MIN))

    [message] = messages(runtime, shop_id)
    assert (message.template, message.kind, message.status) == ("shipping_shipped", "shipping", "sent")
    [mail] = sink.handler.messages()
    assert mail["Subject"] == "Zamówienie #6001 jest w drodze"
    assert "620000000000000000000001" in mail.get_body(("plain",)).get_content()


# --- every ready flow the issue names is in the library -------------------------------------------------------

def test_the_library_holds_every_ready_flow_the_shop_owner_can_switch_on():
    from app.automations.flows import library

    assert {"abandoned_cart", "abandoned_browse", "unpaid_order", "welcome_series", "post_purchase", "review_thank_you",
            "winback", "birthday", "vip_tag", "reengagement_sunset", "shipping_updates", "order_shipped",
            "return_received", "refund_issued", "service_reminder", "back_in_stock", "price_drop"} <= set(library())


@pytest.mark.parametrize("locale", ["pl", "ro", "en"])
def test_every_template_a_ready_flow_sends_exists_in_each_locale(locale):
    from app.automations.flows import library
    from app.messaging.render import TEMPLATES_DIR

    templates = {step["template"] for flow in library().values() for step in flow["steps"] if step["type"] == "send"}
    missing = [t for t in sorted(templates) for ext in ("txt", "html") if not (TEMPLATES_DIR / locale / f"{t}.{ext}").exists()]
    assert missing == []


@pytest.mark.parametrize(("locale", "days", "words"), [
    ("pl", 1, "ważny przez 1 dzień"), ("pl", 3, "ważny przez 3 dni"), ("pl", 14, "ważny przez 14 dni"),
    ("ro", 1, "valabil 1 zi"), ("ro", 7, "valabil 7 zile"), ("ro", 30, "valabil 30 de zile"),
    ("en", 1, "valid for 1 day"), ("en", 7, "valid for 7 days")])
def test_coupon_texts_use_the_plural_form_of_each_language(locale, days, words):
    from app.messaging.render import Brand, render_message

    coupon = {"code": "WITAJ-1A2B", "percent_off": "10", "amount_off": None, "currency": "PLN",
              "expires_at": "2026-12-15T09:00:00+00:00", "valid_days": days}
    rendered = render_message("welcome_coupon", locale, {"first_name": "", "coupon": coupon, "signal": {}},
                              brand=Brand(name="Sklep"), timezone="Europe/Warsaw")

    assert words in rendered.text and "WITAJ-1A2B (-10%)" in rendered.text


@pytest.mark.parametrize(("locale", "days", "words"), [
    ("pl", 90, "Od 90 dni"), ("pl", 1, "Od 1 dnia"), ("ro", 90, "De 90 de zile"), ("ro", 2, "De 2 zile"),
    ("en", 90, "For 90 days")])
def test_the_re_engagement_text_counts_days_in_each_language(locale, days, words):
    from app.messaging.render import Brand, render_message

    rendered = render_message("reengagement_miss_you", locale, {"first_name": "", "signal": {"inactive_days": days}},
                              brand=Brand(name="Sklep"), timezone="Europe/Warsaw")

    assert rendered.text.splitlines()[2].startswith(words)


# --- the older ready flows, now with their texts: the messages really leave ----------------------------------

def test_the_abandoned_cart_series_delivers_three_emails_with_the_coupon_only_in_the_last(runtime, shop_id, fake, sink,
                                                                                         travel):
    from tests.automations_kit import put_cart

    enable_library_flow(runtime, shop_id, "abandoned_cart")
    travel(T0)
    customer_id = add_customer(runtime, shop_id)
    grant_email_consent(runtime, shop_id, customer_id, T0 - DAY)
    put_cart(runtime, shop_id, at=T0, lines=2, total="229.90")

    tick(runtime, travel(T0 + 61 * MIN))
    tick(runtime, travel(T0 + 24 * HOUR + 2 * MIN))
    tick(runtime, travel(T0 + 72 * HOUR + 3 * MIN))

    assert [(m.template, m.status) for m in messages(runtime, shop_id)] == [
        ("abandoned_cart_1", "sent"), ("abandoned_cart_2", "sent"), ("abandoned_cart_3_coupon", "sent")]
    mails = sink.handler.messages()
    [coupon] = rows(runtime, shop_id, Coupon)
    bodies = [mail.get_body(("plain",)).get_content() for mail in mails]
    assert [coupon.code in body for body in bodies] == [False, False, True]
    assert "W Twoim koszyku zostały 2 produkty" in bodies[0]
    assert "Wróć do koszyka: https://companion.example.com/m/" in bodies[0], "the way back, through the click tracker"


def test_a_customer_passing_the_vip_threshold_is_tagged_and_gets_an_exclusive_coupon(runtime, shop_id, fake, sink, travel):
    enable_library_flow(runtime, shop_id, "vip_tag")
    travel(T0)
    customer_id = add_customer(runtime, shop_id)
    grant_email_consent(runtime, shop_id, customer_id, T0 - DAY)
    with runtime.sessions.begin() as session, shop_context(shop_id):
        session.get(Customer, customer_id).total_spent = Decimal("2150.00")
    place_order(runtime, shop_id, "7701", at=T0, total="350.00")

    tick(runtime, travel(T0 + MIN))

    [message] = messages(runtime, shop_id)
    assert (message.template, message.status) == ("vip_welcome_offer", "sent")
    [coupon] = rows(runtime, shop_id, Coupon)
    assert coupon.code.startswith("VIP-") and coupon.percent_off == Decimal("10")
    assert coupon.code in sink.handler.messages()[0].get_body(("plain",)).get_content()
    with runtime.sessions() as session, shop_context(shop_id):
        tags = session.scalars(select(Tag.name).join(CustomerTag, CustomerTag.tag_id == Tag.id)).all()
    assert tags == ["vip"]


def test_an_unpaid_then_paid_order_gets_the_nudge_then_the_thank_you_in_its_language(runtime, shop_id, fake, sink,
                                                                                        travel):
    enable_library_flow(runtime, shop_id, "unpaid_order")
    enable_library_flow(runtime, shop_id, "post_purchase")
    travel(T0)
    customer_id = add_customer(runtime, shop_id, locale="ro")
    grant_email_consent(runtime, shop_id, customer_id, T0 - DAY)
    fake.add_order(7801, email=EMAIL, financial="PENDING", updated_at=T0.strftime("%Y-%m-%dT%H:%M:%SZ"),
                   payment_collection_url="https://kwiaciarnia-roza.pl/548380009/invoices/7801/pay")
    place_order(runtime, shop_id, "7801", at=T0, paid=False)
    tick(runtime, travel(T0 + MIN))
    tick(runtime, travel(T0 + 62 * MIN))
    place_order(runtime, shop_id, "7801", at=T0 + 3 * HOUR, paid=True)
    tick(runtime, travel(T0 + 3 * HOUR + MIN))

    assert [(m.template, m.locale, m.status) for m in messages(runtime, shop_id)] == [
        ("unpaid_order_finish_payment", "ro", "sent"), ("post_purchase_thank_you", "ro", "sent")]
    assert [mail["Subject"] for mail in sink.handler.messages()] == [
        "Finalizează plata pentru comanda #7801", "Îți mulțumim pentru comanda #7801!"]
    nudge = sink.handler.messages()[0].get_body(("plain",)).get_content()
    assert "Plătește aici: https://companion.example.com/m/" in nudge, "the payment link, as a tracked click"


def test_an_order_fulfilled_in_shopify_itself_gets_the_shipped_email_once(runtime, shop_id, sink, travel):
    from types import SimpleNamespace

    from app.models import InboundEvent
    from app.shopify.ingest import TOPICS

    enable_library_flow(runtime, shop_id, "order_shipped")
    travel(T0)
    add_customer(runtime, shop_id)
    place_order(runtime, shop_id, "6101", at=T0 - DAY)
    payload = {"id": 880011, "order_id": 6101, "status": "success", "tracking_company": "InPost",
               "tracking_numbers": ["620000000000000000000777"],
               "tracking_urls": ["https://inpost.pl/sledzenie-przesylek?number=620000000000000000000777"],
               "created_at": "2026-12-01T09:00:00Z", "updated_at": "2026-12-01T09:00:00Z"}
    for topic in ("fulfillments/create", "fulfillments/update"):  # the update must not announce it again
        with runtime.sessions.begin() as session, shop_context(shop_id):
            event = InboundEvent(shop_id=shop_id, platform="shopify", topic=topic, dedupe_key=f"{topic}:880011",
                                 headers={}, body=json.dumps(payload).encode())
            session.add(event)
            session.flush()
            TOPICS.ingest(SimpleNamespace(session=session), event.id)

    tick(runtime, travel(T0 + MIN))

    assert [(m.template, m.status) for m in messages(runtime, shop_id)] == [("shipping_shipped", "sent")]
    body = sink.handler.messages()[0].get_body(("plain",)).get_content()
    assert "620000000000000000000777" in body and "Śledź przesyłkę: https://companion.example.com/m/" in body
