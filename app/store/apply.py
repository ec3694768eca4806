"""Apply platform records to our copy of the shop; a record older than what we hold changes nothing."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from types import SimpleNamespace
from typing import Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from connectors.records import (
    Address,
    MarketingConsent,
    Money,
    StoreCart,
    StoreCustomer,
    StoreOrder,
    StoreProduct,
    StoreRefund,
)
from app.models import Cart, CartLine, Consent, Customer, Order, OrderLine, Product, ReturnRequest, utcnow
from app.automations import signals


def is_stale(held: dt.datetime | None, incoming: dt.datetime | None) -> bool:
    """True when the incoming version is not newer than the one we hold (late or duplicate delivery)."""
    return held is not None and incoming is not None and incoming <= held


def _amount(money: Money | None) -> Decimal:
    return money.amount if money is not None else Decimal("0")


def _address(address: Address | None) -> dict | None:
    return None if address is None else {k: v for k, v in vars(address).items() if v not in (None, "")}


def _row_to_update(session: Session, model, shop_id: int, key_column, key: str, incoming_updated_at: dt.datetime | None, **defaults):
    """The held row to overwrite (a new one if none), or None when the incoming version is stale."""
    row = session.scalars(select(model).where(model.shop_id == shop_id, key_column == key)).first()
    if row is not None and is_stale(row.platform_updated_at, incoming_updated_at):
        return None
    if row is None:
        row = model(shop_id=shop_id, **{key_column.key: key}, **defaults)
        session.add(row)
    return row


def customer_by_platform_id(session: Session, shop_id: int, platform_id: str | None) -> Customer | None:
    if not platform_id:
        return None
    return session.scalars(select(Customer).where(Customer.shop_id == shop_id, Customer.platform_id == platform_id)).first()


def apply_customer(session: Session, shop_id: int, record: StoreCustomer) -> Customer | None:
    """Upsert a customer and record any consent change; returns None when the record was stale."""
    customer = _row_to_update(session, Customer, shop_id, Customer.platform_id, record.platform_id, record.updated_at)
    if customer is None:
        return None
    existed = customer.id is not None
    _set_customer(customer, record)
    session.flush()
    signals.note_customer(session, shop_id, customer, existed)
    for consent in record.consents:
        record_platform_consent(session, shop_id, customer.id, consent)
    return customer


def _set_customer(customer: Customer, record: StoreCustomer) -> None:
    customer.email = record.email.lower() if record.email else None
    customer.phone = record.phone
    customer.first_name, customer.last_name = record.first_name, record.last_name
    customer.locale = (record.locale or "")[:2] or customer.locale
    customer.orders_count = record.orders_count
    if record.total_spent is not None:
        customer.total_spent, customer.currency = record.total_spent.amount, record.total_spent.currency
    customer.platform_updated_at = record.updated_at


def record_platform_consent(session: Session, shop_id: int, customer_id: int, consent: MarketingConsent) -> bool:
    """Add a consent row when the platform reports a state different from the newest one we hold."""
    newest = session.scalars(
        select(Consent).where(Consent.shop_id == shop_id, Consent.customer_id == customer_id, Consent.channel == consent.channel)
        .order_by(Consent.recorded_at.desc(), Consent.id.desc()).limit(1)
    ).first()
    if not is_consent_change(newest, consent):
        return False
    row = _platform_consent_row(shop_id, customer_id, consent)
    session.add(row)
    signals.note_consent(session, shop_id, row)
    return True


def is_consent_change(newest, consent: MarketingConsent) -> bool:
    """True when the platform's consent differs from the newest we hold (its state, recorded_at) and is not older."""
    if newest is not None and newest.state == consent.state:
        return False
    if newest is not None and consent.updated_at is not None and consent.updated_at < newest.recorded_at:
        return False
    return True


def _platform_consent_row(shop_id: int, customer_id: int, consent: MarketingConsent) -> Consent:
    return Consent(
        shop_id=shop_id, customer_id=customer_id, channel=consent.channel, state=consent.state,
        source=f"platform:{consent.source or 'unknown'}"[:32],
        form_text_version=consent.opt_in_level, recorded_at=consent.updated_at or utcnow(),
    )


def apply_order(session: Session, shop_id: int, record: StoreOrder) -> Order | None:
    """Upsert an order and its lines; returns None when the record was stale."""
    order = _row_to_update(session, Order, shop_id, Order.platform_id, record.platform_id, record.updated_at,
                           currency=record.currency)
    if order is None:
        return None
    before = signals.order_state(order)
    customer = customer_by_platform_id(session, shop_id, record.customer_platform_id)
    for column, value in _order_values(record, customer.id if customer else None).items():
        setattr(order, column, value)
    known = order.id is not None
    session.flush()
    if known:  # a new order has no lines to replace
        session.execute(delete(OrderLine).where(OrderLine.shop_id == shop_id, OrderLine.order_id == order.id))
    for line in record.lines:
        session.add(OrderLine(**_order_line_values(shop_id, order.id, line)))
    _mark_cart_converted(session, shop_id, order)
    signals.note_order(session, shop_id, order, before)
    return order


def _order_values(record: StoreOrder, customer_id: int | None) -> dict:
    """The columns of an order row as `record` sets them (all of them: a newer version overwrites every one)."""
    return dict(
        customer_id=customer_id, number=record.number, email=record.email.lower() if record.email else None,
        phone=record.phone, status=record.status, financial_status=record.financial_status,
        fulfillment_status=record.fulfillment_status, payment_method=record.payment_method,
        shipping_method=record.shipping_method, currency=record.currency, total=_amount(record.total),
        subtotal=_amount(record.subtotal), shipping_total=_amount(record.shipping_total),
        tax_total=_amount(record.tax_total), discount_total=_amount(record.discount_total),
        cart_token=record.cart_token, checkout_token=record.checkout_token,
        shipping_address=_address(record.shipping_address), billing_address=_address(record.billing_address),
        placed_at=record.placed_at, paid_at=record.paid_at, cancelled_at=record.cancelled_at,
        platform_updated_at=record.updated_at,
    )


def _order_line_values(shop_id: int, order_id: int, line) -> dict:
    return dict(shop_id=shop_id, order_id=order_id, platform_id=line.platform_id, product_platform_id=line.product_id,
                variant_platform_id=line.variant_id, sku=line.sku, name=line.name, quantity=line.quantity,
                unit_price=line.unit_price.amount, total=line.total.amount)


def _mark_cart_converted(session: Session, shop_id: int, order: Order) -> None:
    tokens = [t for t in (order.checkout_token, order.cart_token) if t]
    if not tokens:
        return
    for cart in session.scalars(select(Cart).where(Cart.shop_id == shop_id, Cart.platform_token.in_(tokens))):
        _bought(cart, order.id)


def _bought(cart: Cart, order_id: int) -> None:
    """The cart became this order, unless an earlier order already took it."""
    if cart.recovered_order_id is None:
        cart.status = cart_status_after_purchase(cart)
        cart.recovered_order_id = order_id


def cart_status_after_purchase(cart: Cart) -> str:
    """A cart bought after we saw it abandoned is recovered; one bought before that simply converted."""
    return "recovered" if cart.abandoned_at is not None else "converted"


def apply_cart(session: Session, shop_id: int, record: StoreCart) -> Cart | None:
    """Upsert a cart (a Shopify checkout, a WooCommerce draft, a snippet cart); None when stale."""
    cart = _row_to_update(session, Cart, shop_id, Cart.platform_token, record.token, record.updated_at, currency=record.currency)
    if cart is None:
        return None
    before = signals.cart_state(cart)
    customer = customer_by_platform_id(session, shop_id, record.customer_platform_id)
    _set_cart(cart, record, customer.id if customer else None)
    session.flush()
    session.execute(delete(CartLine).where(CartLine.shop_id == shop_id, CartLine.cart_id == cart.id))
    for line in record.lines:
        session.add(CartLine(**_cart_line_values(shop_id, cart.id, line)))
    signals.note_cart(session, shop_id, cart, before)
    return cart


def _set_cart(cart: Cart, record: StoreCart, customer_id: int | None) -> None:
    if cart.status is None:  # a new row: active until this record says otherwise (the column default comes at INSERT)
        cart.status = "active"
    cart.customer_id = customer_id if customer_id is not None else cart.customer_id
    cart.email = record.email.lower() if record.email else cart.email
    cart.phone = record.phone or cart.phone
    cart.currency, cart.total = record.currency, record.total.amount
    cart.recovery_url = record.recovery_url or cart.recovery_url
    cart.platform_updated_at = record.updated_at
    cart.last_activity_at = record.updated_at or utcnow()
    if record.completed_at is not None and cart.status in ("active", "abandoned"):
        cart.status = cart_status_after_purchase(cart)


def _cart_line_values(shop_id: int, cart_id: int, line) -> dict:
    return dict(shop_id=shop_id, cart_id=cart_id, product_platform_id=line.product_id, variant_platform_id=line.variant_id,
                sku=line.sku, name=line.name, quantity=line.quantity, unit_price=line.unit_price.amount,
                image_url=line.image_url, product_url=line.product_url)


def apply_product(session: Session, shop_id: int, record: StoreProduct) -> Product | None:
    product = _row_to_update(session, Product, shop_id, Product.platform_id, record.platform_id, record.updated_at,
                             currency=record.price.currency)
    if product is None:
        return None
    before = signals.product_state(product)
    _set_product(product, record)
    session.flush()
    signals.note_product(session, shop_id, product, before)
    return product


def _set_product(product: Product, record: StoreProduct) -> None:
    product.title, product.sku = record.title, record.sku
    product.price, product.currency = record.price.amount, record.price.currency
    product.stock_status, product.stock_quantity = record.stock_status, record.stock_quantity
    product.url, product.image_url = record.url, record.image_url
    product.platform_updated_at = record.updated_at


def apply_refund(session: Session, shop_id: int, record: StoreRefund) -> Order | None:
    """A refund marks its order refunded (fully or partly); the order row itself stays newer-wins."""
    order = session.scalars(select(Order).where(Order.shop_id == shop_id, Order.platform_id == record.order_platform_id)).first()
    if order is None:
        return None
    refunded_all = record.amount.amount >= order.total
    order.financial_status = "refunded" if refunded_all else "partially_refunded"
    session.flush()
    signals.note_refund(session, shop_id, order, record.platform_id, record.amount.amount, record.amount.currency,
                        record.created_at)
    return order


def apply_return(session: Session, shop_id: int, platform_id: str, order_platform_id: str | None, status: str,
                 updated_at: dt.datetime | None) -> ReturnRequest | None:
    order = None
    if order_platform_id:  # looked up first: a query after the new row is added would flush it without a status
        order = session.scalars(select(Order).where(Order.shop_id == shop_id, Order.platform_id == order_platform_id)).first()
    held = _row_to_update(session, ReturnRequest, shop_id, ReturnRequest.platform_id, platform_id, updated_at)
    if held is None:
        return None
    existed = held.id is not None
    status_before = held.status
    held.order_id = order.id if order else held.order_id
    held.order_platform_id = order_platform_id
    held.status = status
    held.platform_updated_at = updated_at
    session.flush()
    signals.note_return(session, shop_id, held, existed, status_before)
    return held


# --- many records at once (the initial import and reconciliation) -----------------------------------------
# Each does what its one-record function does for every record, in the records' order, with one SELECT of the
# held rows, one flush (or bulk statement) for the rows and one for their lines. Customers, carts and products go
# in runs that never hold the same record twice (a repeat starts the next run), so every row ends a run in its
# record's state and the signal hooks see each row as they would one record at a time; orders, the bulk of an
# import, keep each copy's state themselves.

def _distinct_runs(records: Sequence, key) -> list[list]:
    runs: list[list] = [[]]
    seen: set = set()
    for record in records:
        if key(record) in seen:
            runs.append([])
            seen = set()
        runs[-1].append(record)
        seen.add(key(record))
    return [run for run in runs if run]


def _held_by(session: Session, model, shop_id: int, key_column, keys: list) -> dict:
    if not keys:
        return {}
    rows = session.scalars(select(model).where(model.shop_id == shop_id, key_column.in_(keys)))
    return {getattr(row, key_column.key): row for row in rows}


def apply_orders(session: Session, shop_id: int, records: Sequence[StoreOrder]) -> int:
    """`apply_order` for a batch (the initial import): the same rows, lines, carts and signals, in a few statements.

    The held versions are read in one SELECT and compared in Python, in the records' order, so an order that comes
    twice (or an older copy after a newer one) ends exactly as it would one record at a time. Then one INSERT of the
    new orders, one UPDATE of the newer versions, one DELETE and one INSERT for their lines; carts and signals
    follow, record by record, with the ids the rows got. Returns how many records were applied (not stale).
    """
    if not records:
        return 0
    session.flush()  # rows the session still holds must be visible to the statements below
    held = {row.platform_id: SimpleNamespace(**row._asdict()) for row in session.execute(
        select(Order.id, Order.platform_id, Order.platform_updated_at, Order.paid_at, Order.financial_status,
               Order.cancelled_at).where(Order.shop_id == shop_id,
                                         Order.platform_id.in_(sorted({r.platform_id for r in records}))))}
    # Loaded as objects: note_order's session.get finds the customer without a query (to set last_order_at).
    customers = _held_by(session, Customer, shop_id, Customer.platform_id,
                         sorted({r.customer_platform_id for r in records if r.customer_platform_id}))
    carts = _held_by(session, Cart, shop_id, Cart.platform_token,
                     sorted({t for r in records for t in (r.checkout_token, r.cart_token) if t}))

    existing = set(held)
    written: dict[str, tuple[dict, tuple]] = {}  # platform id -> the last applied version's columns and lines
    applied: list[tuple[str, dict, tuple]] = []  # (platform id, columns, state before), in the records' order
    for record in records:
        row = held.get(record.platform_id)
        if row is not None and is_stale(row.platform_updated_at, record.updated_at):
            continue
        if row is None:  # as a fresh Order: no id, not paid, not cancelled
            row = held[record.platform_id] = SimpleNamespace(id=None, paid_at=None, financial_status=None,
                                                             cancelled_at=None, platform_updated_at=None)
        before = signals.order_state(row)
        customer = customers.get(record.customer_platform_id) if record.customer_platform_id else None
        values = _order_values(record, customer.id if customer else None)
        vars(row).update(values)
        row.id = row.id or -1  # decided: the next copy of this order in the batch finds it held
        written[record.platform_id] = (values, record.lines)
        applied.append((record.platform_id, values, before))
    if not applied:
        return 0

    ids = {platform_id: held[platform_id].id for platform_id in written if platform_id in existing}
    fresh = [{"shop_id": shop_id, "platform_id": platform_id, **values}
             for platform_id, (values, _) in written.items() if platform_id not in existing]
    if fresh:
        table = Order.__table__
        ids.update((platform_id, order_id) for order_id, platform_id in session.execute(
            table.insert().returning(table.c.id, table.c.platform_id), fresh))
    newer = [{"id": ids[platform_id], **values} for platform_id, (values, _) in written.items() if platform_id in existing]
    if newer:
        session.execute(update(Order), newer)
        session.execute(delete(OrderLine).where(OrderLine.shop_id == shop_id, OrderLine.order_id.in_(
            [row["id"] for row in newer])).execution_options(synchronize_session=False))
    lines = [_order_line_values(shop_id, ids[platform_id], line)
             for platform_id, (_, order_lines) in written.items() for line in order_lines]
    if lines:
        session.execute(OrderLine.__table__.insert(), lines)
    for platform_id, values, before in applied:
        order = SimpleNamespace(id=ids[platform_id], **values)
        for token in (order.checkout_token, order.cart_token):
            cart = carts.get(token) if token else None
            if cart is not None:
                _bought(cart, order.id)
        signals.note_order(session, shop_id, order, before)
    return len(applied)


def apply_customers(session: Session, shop_id: int, records: Sequence[StoreCustomer]) -> int:
    """`apply_customer` for a batch: the same rows, consents and signals. Returns how many were not stale."""
    return sum(_apply_customer_run(session, shop_id, run) for run in _distinct_runs(records, lambda r: r.platform_id))


def _apply_customer_run(session: Session, shop_id: int, records: list[StoreCustomer]) -> int:
    session.flush()
    held = _held_by(session, Customer, shop_id, Customer.platform_id, [r.platform_id for r in records])
    applied: list[tuple[StoreCustomer, Customer, bool]] = []
    for record in records:
        customer = held.get(record.platform_id)
        if customer is not None and is_stale(customer.platform_updated_at, record.updated_at):
            continue
        existed = customer is not None
        if customer is None:
            customer = Customer(shop_id=shop_id, platform_id=record.platform_id)
            session.add(customer)
        _set_customer(customer, record)
        applied.append((record, customer, existed))
    session.flush()
    newest = _newest_consents(session, shop_id, [customer.id for _, customer, existed in applied if existed])
    consents: list[list[Consent]] = []
    for record, customer, _ in applied:
        consents.append([])
        for consent in record.consents:
            key = (customer.id, consent.channel)
            if not is_consent_change(newest.get(key), consent):
                continue
            row = _platform_consent_row(shop_id, customer.id, consent)
            session.add(row)
            consents[-1].append(row)
            # the newest by (recorded_at, id), as record_platform_consent's query orders them: a row added now
            # has a higher id than any held one
            if key not in newest or (row.recorded_at, 1) >= (newest[key].recorded_at, newest[key].added):
                newest[key] = SimpleNamespace(state=row.state, recorded_at=row.recorded_at, added=1)
    session.flush()
    for (_, customer, existed), added in zip(applied, consents):
        signals.note_customer(session, shop_id, customer, existed)
        for row in added:
            signals.note_consent(session, shop_id, row)
    return len(applied)


def _newest_consents(session: Session, shop_id: int, customer_ids: list[int]) -> dict:
    """The newest consent held per (customer, channel), as record_platform_consent would find it."""
    newest: dict = {}
    if not customer_ids:
        return newest
    rows = session.execute(select(Consent.customer_id, Consent.channel, Consent.state, Consent.recorded_at)
                           .where(Consent.shop_id == shop_id, Consent.customer_id.in_(customer_ids))
                           .order_by(Consent.recorded_at, Consent.id))
    for customer_id, channel, state, recorded_at in rows:  # ascending: the last one seen is the newest
        newest[(customer_id, channel)] = SimpleNamespace(state=state, recorded_at=recorded_at, added=0)
    return newest


def apply_carts(session: Session, shop_id: int, records: Sequence[StoreCart]) -> int:
    """`apply_cart` for a batch: the same carts, lines and signals. Returns how many were not stale."""
    return sum(_apply_cart_run(session, shop_id, run) for run in _distinct_runs(records, lambda r: r.token))


def _apply_cart_run(session: Session, shop_id: int, records: list[StoreCart]) -> int:
    session.flush()
    held = _held_by(session, Cart, shop_id, Cart.platform_token, [r.token for r in records])
    customers = {platform_id: customer.id for platform_id, customer in _held_by(
        session, Customer, shop_id, Customer.platform_id,
        sorted({r.customer_platform_id for r in records if r.customer_platform_id})).items()}
    applied: list[tuple[StoreCart, Cart, tuple]] = []
    for record in records:
        cart = held.get(record.token)
        if cart is not None and is_stale(cart.platform_updated_at, record.updated_at):
            continue
        if cart is None:
            cart = Cart(shop_id=shop_id, platform_token=record.token, currency=record.currency)
            session.add(cart)
        before = signals.cart_state(cart)
        _set_cart(cart, record, customers.get(record.customer_platform_id) if record.customer_platform_id else None)
        applied.append((record, cart, before))
    if not applied:
        return 0
    session.flush()
    session.execute(delete(CartLine).where(CartLine.shop_id == shop_id, CartLine.cart_id.in_(
        [cart.id for _, cart, _ in applied])).execution_options(synchronize_session=False))
    lines = [_cart_line_values(shop_id, cart.id, line) for record, cart, _ in applied for line in record.lines]
    if lines:
        session.execute(CartLine.__table__.insert(), lines)
    for _, cart, before in applied:
        signals.note_cart(session, shop_id, cart, before)
    return len(applied)


def apply_products(session: Session, shop_id: int, records: Sequence[StoreProduct]) -> int:
    """`apply_product` for a batch: the same rows and product alerts. Returns how many were not stale."""
    return sum(_apply_product_run(session, shop_id, run) for run in _distinct_runs(records, lambda r: r.platform_id))


def _apply_product_run(session: Session, shop_id: int, records: list[StoreProduct]) -> int:
    session.flush()
    held = _held_by(session, Product, shop_id, Product.platform_id, [r.platform_id for r in records])
    applied: list[tuple[Product, tuple]] = []
    for record in records:
        product = held.get(record.platform_id)
        if product is not None and is_stale(product.platform_updated_at, record.updated_at):
            continue
        if product is None:
            product = Product(shop_id=shop_id, platform_id=record.platform_id, currency=record.price.currency)
            session.add(product)
        before = signals.product_state(product)
        _set_product(product, record)
        applied.append((product, before))
    session.flush()
    for product, before in applied:
        signals.note_product(session, shop_id, product, before)
    return len(applied)
