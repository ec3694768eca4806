"""Records applied a batch at a time (orders, customers, checkouts, products) end exactly as one by one would."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import select

import app.shopify.sync as shopify_sync
from app.jobs.executors.local import LocalWorker
from app.jobs.queue import enqueue
from app.models import Cart, CartLine, Consent, Customer, Order, OrderLine, Product, Signal, SyncRun, utcnow
from app.models.product_alerts import ProductAlert
from app.store.apply import apply_cart, apply_customer, apply_order, apply_product
from app.tenancy import shop_context
from connectors.records import (
    MarketingConsent, Money, StoreCart, StoreCartLine, StoreCustomer, StoreOrder, StoreOrderLine, StoreProduct,
)
from tests.factories import make_shop
from tests.fake_shopify import FakeShopify

NOW = utcnow().replace(microsecond=0)
T0 = NOW - dt.timedelta(days=2)  # recent enough for signals to be recorded (SIGNAL_MAX_AGE)


def pln(amount: str) -> Money:
    return Money(Decimal(amount), "PLN")


def order(platform_id: str, minutes: int, *, total: str = "199.00", paid: bool = False, cancelled: bool = False,
          customer: str | None = None, checkout_token: str | None = None, lines: int = 1, placed_days_ago: int = 2,
          ) -> StoreOrder:
    updated_at = T0 + dt.timedelta(minutes=minutes)
    placed_at = NOW - dt.timedelta(days=placed_days_ago)
    return StoreOrder(
        platform_id=platform_id, number=f"#{platform_id}", status="cancelled" if cancelled else "processing",
        currency="PLN", total=pln(total), subtotal=pln(total), shipping_total=pln("0"), tax_total=pln("0"),
        discount_total=pln("0"), placed_at=placed_at, updated_at=updated_at, email=f"Klient{platform_id}@Example.pl",
        customer_platform_id=customer, financial_status="paid" if paid else "pending",
        paid_at=placed_at if paid else None, cancelled_at=updated_at if cancelled else None,
        checkout_token=checkout_token,
        lines=tuple(StoreOrderLine(f"{platform_id}-{minutes}-{i}", f"Kubek {minutes}", 1, pln(total), pln(total))
                    for i in range(lines)),
    )


ONE_BY_ONE = {StoreOrder: apply_order, StoreCustomer: apply_customer, StoreCart: apply_cart, StoreProduct: apply_product}


def one_by_one(runtime, shop_id: int, records: list) -> None:
    """The reference: each record through its one-record function, as the import did before it worked in batches."""
    with runtime.sessions.begin() as session, shop_context(shop_id):
        for record in records:
            ONE_BY_ONE[type(record)](session, shop_id, record)


def in_batches(runtime, shop_id: int, records: list, monkeypatch, size: int) -> None:
    monkeypatch.setattr(shopify_sync, "IMPORT_BATCH", size)
    assert shopify_sync.apply_records(runtime.sessions, shop_id, iter(records)) == len(records)


def _plain(value):
    """A time taken from the clock while applying (no platform time given) differs between two runs: `now`."""
    return "now" if isinstance(value, dt.datetime) and value >= NOW else value


def _columns(row, skip=("id", "shop_id", "customer_id", "order_id", "cart_id", "product_id", "recovered_order_id",
                        "created_at", "updated_at")) -> dict:
    return {k: _plain(v) for k, v in vars(row).items() if not k.startswith("_") and k not in skip}


def held(runtime, shop_id: int) -> dict:
    """Everything the import writes, with our ids replaced by the platform's so two shops can be compared."""
    with runtime.sessions() as session, shop_context(shop_id):
        orders = {o.id: o for o in session.scalars(select(Order).order_by(Order.platform_id))}
        customers = {c.id: c for c in session.scalars(select(Customer).order_by(Customer.platform_id))}
        carts = {c.id: c for c in session.scalars(select(Cart).order_by(Cart.platform_token))}
        products = {p.id: p for p in session.scalars(select(Product).order_by(Product.platform_id))}
        name = {"order": lambda i: orders[i].platform_id, "customer": lambda i: customers[i].platform_id,
                "cart": lambda i: carts[i].platform_token, "product": lambda i: products[i].platform_id}
        customer = {None: None, **{i: c.platform_id for i, c in customers.items()}}
        return {
            "orders": [{**_columns(o), "customer": customer[o.customer_id]} for o in orders.values()],
            "lines": sorted((orders[line.order_id].platform_id, line.platform_id, line.name, line.total)
                            for line in session.scalars(select(OrderLine))),
            "customers": [_columns(c) for c in customers.values()],
            "consents": [(customer[c.customer_id], c.channel, c.state, c.source, c.form_text_version, _plain(c.recorded_at))
                         for c in session.scalars(select(Consent).order_by(Consent.id))],
            "carts": [{**_columns(c), "customer": customer[c.customer_id],
                       "recovered_order": orders[c.recovered_order_id].platform_id if c.recovered_order_id else None}
                      for c in carts.values()],
            "cart_lines": sorted((carts[line.cart_id].platform_token, line.name, line.quantity, line.unit_price)
                                 for line in session.scalars(select(CartLine))),
            "products": [_columns(p) for p in products.values()],
            "alerts": sorted((products[a.product_id].platform_id, a.kind, a.status, a.reference_price)
                             for a in session.scalars(select(ProductAlert))),
            "signals": [(s.kind, name[s.subject_type](s.subject_id) if s.subject_type else None, customer[s.customer_id],
                         _plain(s.occurred_at), {k: v for k, v in s.payload.items() if not k.endswith("_id")})
                        for s in session.scalars(select(Signal).order_by(Signal.id))],
        }


def order_signals(outcome: dict) -> list:
    return [signal for signal in outcome["signals"] if signal[0].startswith("order_")]


@pytest.fixture
def two_shops(runtime):
    """Two shops with the same customer and abandoned cart: one applies one by one, the other in batches."""
    ids = []
    with runtime.sessions.begin() as session:
        for _ in range(2):
            shop = make_shop(session)
            ids.append(shop.id)
    for shop_id in ids:
        with runtime.sessions.begin() as session, shop_context(shop_id):
            session.add(Customer(shop_id=shop_id, platform_id="4001", email="zofia@example.pl",
                                 last_order_at=NOW - dt.timedelta(days=30)))
            apply_cart(session, shop_id, StoreCart(token="chk-1", currency="PLN", total=pln("199.00"), updated_at=T0))
            session.scalars(select(Cart)).one().abandoned_at = T0 + dt.timedelta(minutes=1)
    return ids


def assert_same_outcome(runtime, two_shops, records, monkeypatch, size: int, before: list | None = None) -> dict:
    reference, batched = two_shops
    if before:
        for shop_id in two_shops:
            one_by_one(runtime, shop_id, before)
    one_by_one(runtime, reference, records)
    in_batches(runtime, batched, records, monkeypatch, size)
    expected = held(runtime, reference)
    assert held(runtime, batched) == expected
    return expected


def test_an_order_twice_in_one_batch_ends_as_its_newer_copy_with_both_copies_signals(runtime, two_shops, monkeypatch):
    records = [order("5001", 1, customer="4001", lines=2), order("5002", 1),
               order("5001", 5, paid=True, total="249.00", customer="4001", lines=3)]
    outcome = assert_same_outcome(runtime, two_shops, records, monkeypatch, size=500)

    [first, _] = outcome["orders"]
    assert (first["total"], first["financial_status"]) == (Decimal("249.0000"), "paid")
    assert [line[1] for line in outcome["lines"] if line[0] == "5001"] == ["5001-5-0", "5001-5-1", "5001-5-2"]
    assert [(kind, subject) for kind, subject, *_ in order_signals(outcome)] == [
        ("order_placed", "5001"), ("order_placed", "5002"), ("order_paid", "5001")]
    assert order_signals(outcome)[0][4]["total"] == "199.00", "the placed signal carries the first copy's state"


def test_an_older_copy_after_a_newer_one_changes_nothing(runtime, two_shops, monkeypatch):
    records = [order("5001", 5, cancelled=True), order("5001", 1, total="1.00", lines=2), order("5001", 5, total="2.00")]
    outcome = assert_same_outcome(runtime, two_shops, records, monkeypatch, size=500)

    [held_order] = outcome["orders"]
    assert (held_order["status"], held_order["total"]) == ("cancelled", Decimal("199.0000"))
    assert [line[1] for line in outcome["lines"]] == ["5001-5-0"]


def test_an_import_older_than_what_a_webhook_already_delivered_keeps_the_webhooks_version(runtime, two_shops, monkeypatch):
    delivered = [order("5001", 10, paid=True, customer="4001", checkout_token="chk-1")]
    records = [order("5001", 3, total="5.00", lines=3), order("5002", 3, customer="4001", checkout_token="chk-1")]
    outcome = assert_same_outcome(runtime, two_shops, records, monkeypatch, size=500, before=delivered)

    assert [(o["platform_id"], o["total"]) for o in outcome["orders"]] == [("5001", Decimal("199.0000")),
                                                                         ("5002", Decimal("199.0000"))]
    assert [(c["status"], c["recovered_order"]) for c in outcome["carts"]] == [("recovered", "5001")], \
        "the cart stays with the order that bought it first"


def test_a_newer_copy_of_an_order_held_from_an_earlier_batch_replaces_its_lines(runtime, two_shops, monkeypatch):
    records = [order("5001", 1, lines=3), order("5002", 1), order("5003", 1),
               order("5001", 7, paid=True, cancelled=True, lines=1), order("5003", 0)]
    outcome = assert_same_outcome(runtime, two_shops, records, monkeypatch, size=3)

    assert [line[1] for line in outcome["lines"] if line[0] == "5001"] == ["5001-7-0"]
    assert [(kind, subject) for kind, subject, *_ in order_signals(outcome)] == [
        ("order_placed", "5001"), ("order_placed", "5002"), ("order_placed", "5003"),
        ("order_paid", "5001"), ("order_cancelled", "5001")]


def test_batches_straddling_the_transaction_size_give_the_same_rows_carts_and_signals(runtime, two_shops, monkeypatch):
    records = [order(str(5000 + n % 5), n, paid=n % 3 == 0, cancelled=n == 9, customer="4001" if n % 2 else None,
                     checkout_token="chk-1" if n == 4 else None, lines=1 + n % 3,
                     placed_days_ago=10 if n % 5 == 4 else 1 + n % 5)
               for n in range(11)]
    outcome = assert_same_outcome(runtime, two_shops, records, monkeypatch, size=4)

    assert len(outcome["orders"]) == 5
    assert [(c["status"], c["recovered_order"]) for c in outcome["carts"]] == [("recovered", "5004")]
    assert outcome["customers"][0]["last_order_at"] == NOW - dt.timedelta(days=2), "the customer's newest order counts"
    placed = [subject for kind, subject, *_ in order_signals(outcome) if kind == "order_placed"]
    assert placed == ["5000", "5001", "5002", "5003"], "5004 was placed 10 days ago: history, not news"


def test_a_batch_of_orders_never_touches_another_shops_order_with_the_same_platform_id(runtime, two_shops, monkeypatch):
    other, shop_id = two_shops
    one_by_one(runtime, other, [order("5001", 9, total="9.00")])
    in_batches(runtime, shop_id, [order("5001", 1), order("5001", 2, total="12.00")], monkeypatch, size=500)

    assert held(runtime, other)["orders"][0]["total"] == Decimal("9.0000")
    assert held(runtime, shop_id)["orders"][0]["total"] == Decimal("12.0000")


def customer(platform_id: str, minutes: int | None, *, email: str = "granted", sms: str | None = "revoked",
             consent_minutes: int | None = 0, locale: str | None = "pl-PL", spent: str | None = "10.00") -> StoreCustomer:
    updated_at = T0 + dt.timedelta(minutes=minutes) if minutes is not None else None
    consent_at = T0 + dt.timedelta(minutes=consent_minutes) if consent_minutes is not None else None
    consents = [MarketingConsent("email", email, email.upper(), "single_opt_in", consent_at, "checkout")]
    if sms is not None:
        consents.append(MarketingConsent("sms", sms, sms.upper(), None, None, "other"))  # Shopify gives no time here
    return StoreCustomer(platform_id, f"Ana{platform_id}@Example.ro", "+40721234567", first_name="Ana",
                         locale=locale, orders_count=minutes or 0, total_spent=pln(spent) if spent else None,
                         updated_at=updated_at, consents=tuple(consents))


def test_customers_in_batches_get_the_same_rows_consents_and_signals(runtime, two_shops, monkeypatch):
    held_before = [customer("4002", 0, email="granted", consent_minutes=0)]
    granted, revoked = customer("4007", 1, consent_minutes=1), customer("4007", 1, email="revoked", consent_minutes=0)
    twice_in_one_record = StoreCustomer(**{**vars(granted), "consents": granted.consents[:1] + revoked.consents[:1]})
    records = [customer("4002", 3, email="revoked", consent_minutes=-5),  # older than the consent we hold: kept
               customer("4003", 1), customer("4003", 2, email="revoked", consent_minutes=2, locale=None, spent=None),
               customer("4004", None, consent_minutes=None), customer("4003", 1, email="pending"),
               customer("4005", 4), customer("4002", 9, email="revoked", consent_minutes=9), customer("4006", 1),
               twice_in_one_record]
    outcome = assert_same_outcome(runtime, two_shops, records, monkeypatch, size=3, before=held_before)

    email = [(who, state) for who, channel, state, *_ in outcome["consents"] if channel == "email"]
    assert email == [("4002", "granted"), ("4003", "granted"), ("4003", "revoked"), ("4004", "granted"),
                     ("4005", "granted"), ("4002", "revoked"), ("4006", "granted"), ("4007", "granted")]
    assert {c["platform_id"]: (c["locale"], c["total_spent"]) for c in outcome["customers"]}["4003"] == (
        "pl", Decimal("10.0000")), "a version without a locale or a total keeps the held ones"
    assert sum(kind == "consent_changed" for kind, *_ in outcome["signals"]) == len(outcome["consents"])


def checkout(token: str, minutes: int | None, *, customer_id: str | None = None, completed: bool = False,
             lines: int = 1, email: str | None = None) -> StoreCart:
    updated_at = T0 + dt.timedelta(minutes=minutes) if minutes is not None else None
    return StoreCart(token=token, currency="PLN", total=pln("59.90"), updated_at=updated_at, email=email,
                     customer_platform_id=customer_id, recovery_url=f"https://shop.example/{token}/recover",
                     completed_at=updated_at if completed else None,
                     lines=tuple(StoreCartLine(f"Róża {token}-{minutes}-{i}", 1 + i, pln("59.90")) for i in range(lines)))


def test_checkouts_in_batches_get_the_same_carts_lines_and_signals(runtime, two_shops, monkeypatch):
    for shop_id in two_shops:  # a cart the abandonment scan set aside: new activity makes it active again
        with runtime.sessions.begin() as session, shop_context(shop_id):
            session.scalars(select(Cart)).one().status = "idle"
    records = [checkout("chk-1", 5, lines=2), checkout("chk-2", 1, customer_id="4001", email="Ana@Example.ro"),
               checkout("chk-3", 1, completed=True, customer_id="4001"), checkout("chk-4", 1, completed=True),
               checkout("chk-2", 3, lines=3), checkout("chk-2", 2), checkout("chk-1", 0), checkout("chk-5", None)]
    outcome = assert_same_outcome(runtime, two_shops, records, monkeypatch, size=3)

    carts = {c["platform_token"]: c for c in outcome["carts"]}
    assert (carts["chk-1"]["status"], carts["chk-2"]["customer"], carts["chk-2"]["email"]) == ("active", "4001", "ana@example.ro")
    assert [line[1] for line in outcome["cart_lines"] if line[0] == "chk-2"] == [
        "Róża chk-2-3-0", "Róża chk-2-3-1", "Róża chk-2-3-2"]
    assert (carts["chk-3"]["status"], carts["chk-4"]["status"]) == ("converted", "converted"), \
        "a checkout first seen completed is converted, whether or not it names a customer"


def product(platform_id: str, minutes: int, *, stock: str = "in_stock", price: str = "59.90") -> StoreProduct:
    return StoreProduct(platform_id, f"Bukiet {platform_id}", pln(price), stock, T0 + dt.timedelta(minutes=minutes),
                        sku=f"SKU-{platform_id}", stock_quantity=0 if stock == "out_of_stock" else 5)


def test_products_in_batches_get_the_same_rows_and_product_alerts(runtime, two_shops, monkeypatch):
    held_before = [product("7001", 0, stock="out_of_stock"), product("7002", 0, price="99.00")]
    for shop_id in two_shops:
        one_by_one(runtime, shop_id, held_before)
        with runtime.sessions.begin() as session, shop_context(shop_id):
            someone = session.scalars(select(Customer)).one()
            for platform_id, kind in (("7001", "back_in_stock"), ("7002", "price_drop")):
                held_product = session.scalars(select(Product).where(Product.platform_id == platform_id)).one()
                session.add(ProductAlert(shop_id=shop_id, product_id=held_product.id, customer_id=someone.id, kind=kind,
                                         reference_price=held_product.price if kind == "price_drop" else None))
    records = [product("7001", 2), product("7002", 1, price="89.00"), product("7003", 1, stock="out_of_stock"),
               product("7002", 3, price="79.00"), product("7001", 1, stock="out_of_stock"), product("7003", 2)]
    outcome = assert_same_outcome(runtime, two_shops, records, monkeypatch, size=4)

    assert [kind for kind, *_ in outcome["signals"] if kind.startswith("product_")] == [
        "product_back_in_stock", "product_price_dropped", "product_price_dropped"]
    assert outcome["alerts"] == [("7001", "back_in_stock", "notified", None),
                                 ("7002", "price_drop", "active", Decimal("79.0000"))]


def test_the_bulk_file_streams_each_orders_lines_onto_it_across_batch_boundaries(make_settings, monkeypatch):
    from app.runtime import build_runtime

    monkeypatch.setattr(shopify_sync, "IMPORT_BATCH", 2)
    with FakeShopify(client_id="id", client_secret="secret") as fake:
        for number in range(5):
            fake.add_order(5001 + number, lines=[{"title": f"Róża {number}-{i}", "price": "10.00"}
                                                 for i in range(1 + number)])
        runtime = build_runtime(make_settings(SHOPIFY_API_KEY="id", SHOPIFY_API_SECRET="secret",
                                              SHOPIFY_ADMIN_BASE_URL=fake.url))
        try:
            with runtime.sessions.begin() as session:
                shop_id = make_shop(session, "bulk-batches.myshopify.com",
                                    credentials={"access_token": "shpat_fake_token"}).id
                enqueue(session, "shopify.start_initial_sync", shop_id=shop_id)
            LocalWorker(runtime).run(exit_when_idle=True)
            with runtime.sessions() as session, shop_context(shop_id):
                run = session.scalars(select(SyncRun).where(SyncRun.resource == "orders")).one()
                names = sorted((o.platform_id, line.name) for o, line in session.execute(
                    select(Order, OrderLine).join(OrderLine, OrderLine.order_id == Order.id)))
        finally:
            runtime.close()
    assert (run.status, run.records_done) == ("done", 5)
    assert names == sorted((str(5001 + n), f"Róża {n}-{i}") for n in range(5) for i in range(1 + n))
