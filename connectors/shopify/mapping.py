"""Shopify's shapes to our records: REST-style webhook payloads and GraphQL nodes, giving the same ids."""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable

from connectors.errors import InvalidPayload
from connectors.records import (
    Address, MarketingConsent, Money, StoreCart, StoreCartLine, StoreCustomer, StoreOrder, StoreOrderLine,
    StoreProduct, StoreRefund, e164, web_url,
)


@dataclass(frozen=True)
class ReturnRequest:
    platform_id: str
    order_platform_id: str | None
    status: str
    updated_at: dt.datetime | None


@dataclass(frozen=True)
class FulfillmentUpdate:
    platform_id: str
    order_platform_id: str | None
    status: str | None
    shipment_status: str | None
    tracking_company: str | None
    tracking_numbers: tuple[str, ...]
    tracking_urls: tuple[str, ...]
    updated_at: dt.datetime | None


# --- values -----------------------------------------------------------------------------------------

def parse_time(value: Any) -> dt.datetime | None:
    """An ISO 8601 time with its offset, in UTC; None when absent. A time without a zone is refused."""
    if value in (None, ""):
        return None
    try:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidPayload(f"not an ISO 8601 time: {value!r}") from None
    if moment.tzinfo is None:
        raise InvalidPayload(f"time {value!r} has no offset")
    return moment.astimezone(dt.timezone.utc)


def gid_tail(value: Any) -> str | None:
    """`gid://shopify/Order/450789469` and `450789469` both → `"450789469"`, so webhook and GraphQL ids agree."""
    if value in (None, ""):
        return None
    text = str(value)
    if text.startswith("gid://"):
        text = text.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return text or None


def to_gid(kind: str, value: Any) -> str:
    """`("Order", "450789469")` → `gid://shopify/Order/450789469`; a GID is returned unchanged."""
    text = str(value)
    return text if text.startswith("gid://") else f"gid://shopify/{kind}/{text}"


def phone_e164(value: Any) -> str | None:
    """E.164 when the platform gave a parseable number (`0048…` counts), else None; never guessed from a country."""
    if not value:
        return None
    text = str(value).strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    return e164(text)


def _money(amount: Any, currency: Any, what: str) -> Money:
    try:
        return Money.parse(amount, str(currency or ""))
    except ValueError as exc:
        raise InvalidPayload(f"{what}: {exc}") from None


def _rest_set(value: Any, side: str = "shop_money") -> Money | None:
    # REST price sets: {"shop_money": {"amount": "1.00", "currency_code": "PLN"}, "presentment_money": {...}}
    money = (value or {}).get(side) if isinstance(value, dict) else None
    if not money or money.get("amount") is None:
        return None
    return _money(money["amount"], money.get("currency_code") or money.get("currency"), side)


def _bag(value: Any, side: str = "shopMoney") -> Money | None:
    # GraphQL MoneyBag: {"shopMoney": {"amount": "1.0", "currencyCode": "PLN"}, "presentmentMoney": {...}}
    money = (value or {}).get(side) if isinstance(value, dict) else None
    if not money or money.get("amount") is None:
        return None
    return _money(money["amount"], money.get("currencyCode"), side)


def _required(payload: dict, key: str, what: str) -> Any:
    if not isinstance(payload, dict):
        raise InvalidPayload(f"{what} payload is not an object")
    value = payload.get(key)
    if value in (None, ""):
        raise InvalidPayload(f"{what} has no {key}")
    return value


def _text(value: Any) -> str | None:
    return str(value).strip() or None if value not in (None, "") else None


def _id(value: Any) -> str | None:
    return gid_tail(value.get("id")) if isinstance(value, dict) else gid_tail(value)


def _zero(currency: str) -> Money:
    return Money(Decimal("0"), currency)


def _sum(amounts: Iterable[Money], currency: str) -> Money:
    total = _zero(currency)
    for amount in amounts:
        try:
            total = total + amount
        except ValueError:
            raise InvalidPayload(f"amounts in {amount.currency} and {total.currency} cannot be added") from None
    return total


# --- orders -----------------------------------------------------------------------------------------

def _fulfillment_status(value: Any) -> str:
    # REST says null / "partial" / "fulfilled"; GraphQL says UNFULFILLED / PARTIALLY_FULFILLED / FULFILLED.
    text = (str(value) if value else "unfulfilled").lower()
    return {"partial": "partially_fulfilled", "null": "unfulfilled"}.get(text, text)


def order_status(financial_status: str | None, fulfillment_status: str | None, cancelled: bool) -> str:
    """One word for where the order is: pending, processing, completed, cancelled or refunded."""
    if cancelled or financial_status == "voided":
        return "cancelled"
    if financial_status == "refunded":
        return "refunded"
    if fulfillment_status == "fulfilled":
        return "completed"
    if financial_status in ("paid", "partially_paid", "partially_refunded"):
        return "processing"
    return "pending"


def _paid_at(financial_status: str | None, processed_at: dt.datetime) -> dt.datetime | None:
    # Shopify has no paid_at; processed_at is when the payment part of the order completed.
    return processed_at if financial_status in ("paid", "partially_refunded", "refunded") else None


def _rest_address(value: Any) -> Address | None:
    if not isinstance(value, dict) or not value:
        return None
    name = value.get("name") or " ".join(filter(None, (value.get("first_name"), value.get("last_name"))))
    return Address(name=name or "", company=value.get("company") or "", street=value.get("address1") or "",
                   street2=value.get("address2") or "", city=value.get("city") or "", postcode=value.get("zip") or "",
                   region=value.get("province") or "", country=(value.get("country_code") or "").upper(),
                   phone=phone_e164(value.get("phone")))


def _node_address(value: Any) -> Address | None:
    if not isinstance(value, dict) or not value:
        return None
    name = value.get("name") or " ".join(filter(None, (value.get("firstName"), value.get("lastName"))))
    return Address(name=name or "", company=value.get("company") or "", street=value.get("address1") or "",
                   street2=value.get("address2") or "", city=value.get("city") or "", postcode=value.get("zip") or "",
                   region=value.get("province") or "", country=(value.get("countryCodeV2") or "").upper(),
                   phone=phone_e164(value.get("phone")))


def _rest_amount(payload: dict, plain_key: str, set_key: str, currency: str) -> Money:
    money = _rest_set(payload.get(set_key))
    if money is not None:
        return money
    value = payload.get(plain_key)
    return _money(value, currency, plain_key) if value not in (None, "") else _zero(currency)


def _rest_order_line(item: dict, currency: str) -> StoreOrderLine:
    unit = _rest_set(item.get("price_set")) or _money(_required(item, "price", "line item"), currency, "price")
    quantity = int(item.get("quantity") or 0)
    allocated = _sum((_rest_set(a.get("amount_set")) or _money(a.get("amount"), unit.currency, "discount")
                      for a in item.get("discount_allocations") or ()), unit.currency)
    return StoreOrderLine(
        platform_id=gid_tail(_required(item, "id", "line item")), name=item.get("name") or item.get("title") or "",
        quantity=quantity, unit_price=unit, total=Money(unit.amount * quantity - allocated.amount, unit.currency),
        sku=_text(item.get("sku")), product_id=gid_tail(item.get("product_id")), variant_id=gid_tail(item.get("variant_id")),
    )


def order_from_payload(payload: dict) -> StoreOrder:
    """An orders/* webhook payload (the REST order) as a StoreOrder, amounts in the shop's currency."""
    platform_id = gid_tail(_required(payload, "id", "order"))
    currency = (payload.get("currency") or ((payload.get("total_price_set") or {}).get("shop_money") or {})
                .get("currency_code") or "")
    if not currency:
        raise InvalidPayload(f"order {platform_id} has no currency")
    placed_at = parse_time(payload.get("processed_at")) or parse_time(_required(payload, "created_at", "order"))
    customer = payload.get("customer") or {}
    shipping_lines = payload.get("shipping_lines") or []
    shipping = _rest_set(payload.get("total_shipping_price_set")) or _sum(
        (_rest_set(line.get("price_set")) or _money(line.get("price") or 0, currency, "shipping line")
         for line in shipping_lines), currency)
    financial = _text(payload.get("financial_status"))
    fulfillment = _fulfillment_status(payload.get("fulfillment_status"))
    cancelled_at = parse_time(payload.get("cancelled_at"))
    gateways = payload.get("payment_gateway_names") or ([payload["gateway"]] if payload.get("gateway") else [])
    return StoreOrder(
        platform_id=platform_id,
        number=str(payload.get("name") or payload.get("order_number") or platform_id),
        status=order_status(financial, fulfillment, cancelled_at is not None),
        currency=currency.upper(),
        total=_rest_amount(payload, "total_price", "total_price_set", currency),
        subtotal=_rest_amount(payload, "subtotal_price", "subtotal_price_set", currency),
        shipping_total=shipping,
        tax_total=_rest_amount(payload, "total_tax", "total_tax_set", currency),
        discount_total=_rest_amount(payload, "total_discounts", "total_discounts_set", currency),
        placed_at=placed_at,
        updated_at=parse_time(payload.get("updated_at")) or placed_at,
        customer_platform_id=_id(customer) if customer else None,
        email=_text(payload.get("email") or payload.get("contact_email") or customer.get("email")),
        phone=phone_e164(payload.get("phone") or customer.get("phone")),
        financial_status=financial,
        fulfillment_status=fulfillment,
        payment_method=_text(gateways[0]) if gateways else None,
        shipping_method=_text(shipping_lines[0].get("title")) if shipping_lines else None,
        cart_token=_text(payload.get("cart_token")),
        checkout_token=_text(payload.get("checkout_token")),
        paid_at=_paid_at(financial, placed_at),
        cancelled_at=cancelled_at,
        shipping_address=_rest_address(payload.get("shipping_address")),
        billing_address=_rest_address(payload.get("billing_address")),
        lines=tuple(_rest_order_line(item, currency) for item in payload.get("line_items") or ()),
    )


def _node_order_line(node: dict) -> StoreOrderLine:
    unit = _bag(node.get("originalUnitPriceSet"))
    if unit is None:
        raise InvalidPayload(f"line item {node.get('id')} has no originalUnitPriceSet")
    quantity = int(node.get("quantity") or 0)
    allocated = _sum((_bag(a.get("allocatedAmountSet")) or _zero(unit.currency)
                      for a in node.get("discountAllocations") or ()), unit.currency)
    return StoreOrderLine(
        platform_id=gid_tail(_required(node, "id", "line item")), name=node.get("name") or node.get("title") or "",
        quantity=quantity, unit_price=unit, total=Money(unit.amount * quantity - allocated.amount, unit.currency),
        sku=_text(node.get("sku")), product_id=_id(node.get("product")), variant_id=_id(node.get("variant")),
    )


def _connection_nodes(value: Any) -> list[dict]:
    if not isinstance(value, dict):
        return []
    if "nodes" in value:
        return list(value["nodes"] or [])
    return [edge["node"] for edge in value.get("edges") or []]


def order_from_node(node: dict, lines: Iterable[dict] | None = None) -> StoreOrder:
    """A GraphQL Order (query page or bulk line) with its line items (bulk children or its lineItems)."""
    platform_id = gid_tail(_required(node, "id", "order"))
    total = _bag(node.get("totalPriceSet"))
    if total is None:
        raise InvalidPayload(f"order {platform_id} has no totalPriceSet")
    currency = total.currency
    placed_at = parse_time(node.get("processedAt")) or parse_time(_required(node, "createdAt", "order"))
    financial = (node.get("displayFinancialStatus") or "").lower() or None
    fulfillment = _fulfillment_status(node.get("displayFulfillmentStatus"))
    cancelled_at = parse_time(node.get("cancelledAt"))
    gateways = node.get("paymentGatewayNames") or []
    customer = node.get("customer") or {}
    if lines is None:
        lines = _connection_nodes(node.get("lineItems"))
    return StoreOrder(
        platform_id=platform_id,
        number=str(node.get("name") or platform_id),
        status=order_status(financial, fulfillment, cancelled_at is not None),
        currency=currency,
        total=total,
        subtotal=_bag(node.get("subtotalPriceSet")) or _zero(currency),
        shipping_total=_bag(node.get("totalShippingPriceSet")) or _zero(currency),
        tax_total=_bag(node.get("totalTaxSet")) or _zero(currency),
        discount_total=_bag(node.get("totalDiscountsSet")) or _zero(currency),
        placed_at=placed_at,
        updated_at=parse_time(node.get("updatedAt")) or placed_at,
        customer_platform_id=_id(customer) if customer else None,
        email=_text(node.get("email")),
        phone=phone_e164(node.get("phone")),
        financial_status=financial,
        fulfillment_status=fulfillment,
        payment_method=_text(gateways[0]) if gateways else None,
        shipping_method=_text((node.get("shippingLine") or {}).get("title")),
        cart_token=_text(node.get("cartToken")),  # only from API 2026-07 on
        checkout_token=_text(node.get("checkoutToken")),
        paid_at=_paid_at(financial, placed_at),
        cancelled_at=cancelled_at,
        shipping_address=_node_address(node.get("shippingAddress")),
        billing_address=_node_address(node.get("billingAddress")),
        lines=tuple(_node_order_line(line) for line in lines),
        # Both only when the query asked (queries.ORDER_PAYMENT_FIELDS): the link Shopify gives for paying what
        # is still owed, and the order status page.
        payment_url=web_url((node.get("paymentCollectionDetails") or {}).get("additionalPaymentCollectionUrl")),
        status_url=web_url(node.get("statusPageUrl")),
    )


# --- customers and consent --------------------------------------------------------------------------

_CONSENT_STATES = {"subscribed": "granted", "pending": "pending", "unsubscribed": "revoked",
                   "not_subscribed": "revoked", "redacted": "revoked", "invalid": "revoked"}


def _consent(channel: str, platform_state: Any, opt_in_level: Any, updated_at: Any, source: Any) -> MarketingConsent:
    raw = str(platform_state) if platform_state not in (None, "") else "unknown"
    return MarketingConsent(channel=channel, state=_CONSENT_STATES.get(raw.lower(), "unknown"), platform_state=raw,
                            opt_in_level=str(opt_in_level).lower() if opt_in_level else None,
                            updated_at=parse_time(updated_at), source=_text(source))


def _rest_consent(channel: str, value: Any) -> MarketingConsent | None:
    if not isinstance(value, dict) or not value:
        return None
    return _consent(channel, value.get("state"), value.get("opt_in_level"), value.get("consent_updated_at"),
                    value.get("consent_collected_from"))


def _accepts(consent: MarketingConsent | None) -> bool | None:
    return None if consent is None or consent.state == "unknown" else consent.state == "granted"


def customer_from_payload(payload: dict) -> StoreCustomer:
    """A customers/* webhook payload as a StoreCustomer, with the email and SMS consent Shopify holds."""
    platform_id = gid_tail(_required(payload, "id", "customer"))
    email = _rest_consent("email", payload.get("email_marketing_consent"))
    sms = _rest_consent("sms", payload.get("sms_marketing_consent"))
    spent = payload.get("total_spent")
    return StoreCustomer(
        platform_id=platform_id, email=_text(payload.get("email")), phone=phone_e164(payload.get("phone")),
        first_name=payload.get("first_name") or "", last_name=payload.get("last_name") or "",
        locale=_text(payload.get("locale")),
        accepts_email_marketing=_accepts(email), accepts_sms_marketing=_accepts(sms),
        orders_count=int(payload.get("orders_count") or 0),
        total_spent=_money(spent, payload.get("currency"), "total_spent")
        if spent not in (None, "") and payload.get("currency") else None,
        updated_at=parse_time(payload.get("updated_at")),
        consents=tuple(c for c in (email, sms) if c is not None),
    )


def consent_from_payload(topic: str, payload: dict) -> tuple[str, MarketingConsent]:
    """The customer id and the one consent a customers_*marketing_consent/update webhook reports."""
    customer_id = gid_tail(payload.get("customer_id") or payload.get("id")) if isinstance(payload, dict) else None
    if customer_id is None:
        raise InvalidPayload(f"{topic} payload names no customer")
    channel, key = ("email", "email_marketing_consent") if "email" in topic else ("sms", "sms_marketing_consent")
    consent = _rest_consent(channel, payload.get(key))
    if consent is None:
        raise InvalidPayload(f"{topic} payload has no {key}")
    return customer_id, consent


def customer_from_node(node: dict) -> StoreCustomer:
    """A GraphQL Customer, its contact points and their marketing states (API 2025-04 and later)."""
    platform_id = gid_tail(_required(node, "id", "customer"))
    email_point = node.get("defaultEmailAddress") or {}
    phone_point = node.get("defaultPhoneNumber") or {}
    email = _consent("email", email_point.get("marketingState"), email_point.get("marketingOptInLevel"),
                     email_point.get("marketingUpdatedAt"), None) if email_point else None
    sms = _consent("sms", phone_point.get("marketingState"), phone_point.get("marketingOptInLevel"),
                   phone_point.get("marketingUpdatedAt"), phone_point.get("marketingCollectedFrom")) if phone_point else None
    return StoreCustomer(
        platform_id=platform_id, email=_text(email_point.get("emailAddress")),
        phone=phone_e164(phone_point.get("phoneNumber")),
        first_name=node.get("firstName") or "", last_name=node.get("lastName") or "", locale=_text(node.get("locale")),
        accepts_email_marketing=_accepts(email), accepts_sms_marketing=_accepts(sms),
        orders_count=int(node.get("numberOfOrders") or 0),
        total_spent=_money(node["amountSpent"]["amount"], node["amountSpent"].get("currencyCode"), "amountSpent")
        if (node.get("amountSpent") or {}).get("amount") is not None else None,
        updated_at=parse_time(node.get("updatedAt")),
        consents=tuple(c for c in (email, sms) if c is not None),
    )


# --- carts (abandoned checkouts) --------------------------------------------------------------------

_RECOVER_TOKEN = re.compile(r"/checkouts/(?:[a-z]{1,3}/)?([A-Za-z0-9_-]+)/recover")


def checkout_token_from_url(url: str | None) -> str | None:
    """The checkout token inside an abandoned-checkout recovery URL (GraphQL has no token field)."""
    match = _RECOVER_TOKEN.search(url or "")
    return match.group(1) if match else None


def _line_name(title: Any, variant_title: Any) -> str:
    title, variant_title = title or "", variant_title or ""
    return f"{title} - {variant_title}" if variant_title and variant_title != "Default Title" else title


def cart_from_checkout_payload(payload: dict) -> StoreCart:
    """A checkouts/* webhook payload as a StoreCart keyed by the checkout token (orders carry it as checkout_token)."""
    token = str(_required(payload, "token", "checkout"))
    currency = str(payload.get("presentment_currency") or payload.get("currency") or "").upper()
    if not currency:
        raise InvalidPayload(f"checkout {token} has no currency")
    customer = payload.get("customer") or {}
    addresses = (payload.get("shipping_address") or {}, payload.get("billing_address") or {})
    phone = payload.get("phone") or payload.get("sms_marketing_phone") or customer.get("phone") \
        or next((a.get("phone") for a in addresses if a.get("phone")), None)
    lines = tuple(
        StoreCartLine(name=_line_name(item.get("title"), item.get("variant_title")), quantity=int(item.get("quantity") or 0),
                      unit_price=_money(item.get("price"), currency, "checkout line price"),
                      product_id=gid_tail(item.get("product_id")), variant_id=gid_tail(item.get("variant_id")),
                      sku=_text(item.get("sku")))
        for item in payload.get("line_items") or ())
    updated_at = parse_time(payload.get("updated_at")) or parse_time(_required(payload, "created_at", "checkout"))
    return StoreCart(
        token=token, currency=currency, total=_money(payload.get("total_price") or 0, currency, "total_price"),
        updated_at=updated_at, email=_text(payload.get("email") or customer.get("email")), phone=phone_e164(phone),
        customer_platform_id=_id(customer) if customer else None,
        recovery_url=_text(payload.get("abandoned_checkout_url")), completed_at=parse_time(payload.get("completed_at")),
        lines=lines,
    )


def cart_from_abandoned_checkout_node(node: dict, lines: Iterable[dict] | None = None) -> StoreCart:
    """A GraphQL AbandonedCheckout, amounts as the buyer saw them (presentment currency)."""
    url = _text(node.get("abandonedCheckoutUrl"))
    token = checkout_token_from_url(url) or gid_tail(_required(node, "id", "abandoned checkout"))
    total = _bag(node.get("totalPriceSet"), "presentmentMoney") or _bag(node.get("totalPriceSet"))
    if total is None:
        raise InvalidPayload(f"abandoned checkout {token} has no totalPriceSet")
    customer = node.get("customer") or {}
    if lines is None:
        lines = _connection_nodes(node.get("lineItems"))
    cart_lines = []
    for line in lines:
        unit = _bag(line.get("originalUnitPriceSet"), "presentmentMoney") or _bag(line.get("originalUnitPriceSet"))
        if unit is None:
            raise InvalidPayload(f"abandoned checkout line {line.get('id')} has no originalUnitPriceSet")
        cart_lines.append(StoreCartLine(
            name=_line_name(line.get("title"), line.get("variantTitle")), quantity=int(line.get("quantity") or 0),
            unit_price=unit, product_id=_id(line.get("product")), variant_id=_id(line.get("variant")),
            sku=_text(line.get("sku")), image_url=_text((line.get("image") or {}).get("url"))))
    phone = (customer.get("defaultPhoneNumber") or {}).get("phoneNumber") or (node.get("shippingAddress") or {}).get("phone")
    updated_at = parse_time(node.get("updatedAt")) or parse_time(_required(node, "createdAt", "abandoned checkout"))
    return StoreCart(
        token=token, currency=total.currency, total=total, updated_at=updated_at,
        email=_text((customer.get("defaultEmailAddress") or {}).get("emailAddress")), phone=phone_e164(phone),
        customer_platform_id=_id(customer) if customer else None, recovery_url=url,
        completed_at=parse_time(node.get("completedAt")), lines=tuple(cart_lines),
    )


# --- refunds, fulfillments, returns -----------------------------------------------------------------

def refund_from_payload(payload: dict) -> StoreRefund:
    """A refunds/create payload: the money that actually went back (successful refund transactions)."""
    platform_id = gid_tail(_required(payload, "id", "refund"))
    order_id = gid_tail(_required(payload, "order_id", "refund"))
    transactions = [t for t in payload.get("transactions") or ()
                    if t.get("kind") == "refund" and t.get("status", "success") == "success"]
    currency = next((t.get("currency") for t in transactions if t.get("currency")), None) or payload.get("currency")
    if not currency:
        # A refund without money (a restock) still needs a currency; every *_set carries the shop's.
        currency = next((money.currency for key, value in payload.items() if key.endswith("_set")
                         for money in [_rest_set(value)] if money is not None), None)
    if not currency:
        raise InvalidPayload(f"refund {platform_id} names no currency")
    amount = _sum((_money(t.get("amount"), t.get("currency") or currency, "refund transaction") for t in transactions),
                  str(currency).upper())
    created_at = parse_time(payload.get("created_at")) or parse_time(_required(payload, "processed_at", "refund"))
    return StoreRefund(platform_id=platform_id, order_platform_id=order_id, amount=amount, created_at=created_at,
                       reason=payload.get("note") or "")


def fulfillment_from_payload(payload: dict) -> FulfillmentUpdate:
    """A fulfillments/create|update payload: who carries the parcel and how to track it."""
    numbers = payload.get("tracking_numbers") or ([payload["tracking_number"]] if payload.get("tracking_number") else [])
    urls = payload.get("tracking_urls") or ([payload["tracking_url"]] if payload.get("tracking_url") else [])
    return FulfillmentUpdate(
        platform_id=gid_tail(_required(payload, "id", "fulfillment")), order_platform_id=gid_tail(payload.get("order_id")),
        status=_text(payload.get("status")), shipment_status=_text(payload.get("shipment_status")),
        tracking_company=_text(payload.get("tracking_company")),
        tracking_numbers=tuple(str(n) for n in numbers if n), tracking_urls=tuple(str(u) for u in urls if u),
        updated_at=parse_time(payload.get("updated_at")) or parse_time(payload.get("created_at")),
    )


# The status each lifecycle topic moves a return to; returns/update and returns/process keep the payload's.
_RETURN_STATUS_BY_TOPIC = {"returns/request": "requested", "returns/approve": "open", "returns/decline": "declined",
                           "returns/cancel": "canceled", "returns/close": "closed", "returns/reopen": "open"}


def return_from_payload(topic: str, payload: dict) -> ReturnRequest:
    platform_id = gid_tail(_required(payload, "id", "return"))
    order = payload.get("order") or {}
    status = _RETURN_STATUS_BY_TOPIC.get(topic) or _text(payload.get("status"))
    if status is None:
        raise InvalidPayload(f"{topic} payload for return {platform_id} has no status")
    return ReturnRequest(platform_id=platform_id, order_platform_id=_id(order) if order else gid_tail(payload.get("order_id")),
                         status=status.lower(), updated_at=parse_time(payload.get("updated_at")))


# --- products ---------------------------------------------------------------------------------------

def _stock_status(active: bool, tracked: bool, quantity: int | None) -> str:
    if not active:
        return "unavailable"
    if not tracked or quantity is None:
        return "in_stock"
    return "in_stock" if quantity > 0 else "out_of_stock"


def product_from_payload(payload: dict, *, currency: str | None = None, shop_url: str | None = None) -> StoreProduct:
    """A products/* payload. Prices carry no currency there: it comes from presentment prices or `currency`."""
    platform_id = gid_tail(_required(payload, "id", "product"))
    variants = payload.get("variants") or []
    if not variants:
        raise InvalidPayload(f"product {platform_id} has no variants")
    currency = currency or next((p["price"].get("currency_code") for v in variants
                                 for p in v.get("presentment_prices") or () if (p.get("price") or {}).get("currency_code")), None)
    if not currency:
        raise InvalidPayload(f"product {platform_id}: no currency in the payload and none given")
    price = min((_money(v.get("price"), currency, "variant price") for v in variants), key=lambda m: m.amount)
    tracked = [v for v in variants if v.get("inventory_management") == "shopify"]
    quantity = sum(int(v.get("inventory_quantity") or 0) for v in tracked) if tracked else None
    image = payload.get("image") or next(iter(payload.get("images") or ()), None) or {}
    handle = payload.get("handle")
    return StoreProduct(
        platform_id=platform_id, title=payload.get("title") or "", price=price,
        stock_status=_stock_status((payload.get("status") or "active") == "active", bool(tracked), quantity),
        updated_at=parse_time(payload.get("updated_at")) or parse_time(_required(payload, "created_at", "product")),
        sku=_text(variants[0].get("sku")), stock_quantity=quantity,
        url=f"{shop_url.rstrip('/')}/products/{handle}" if shop_url and handle else None,
        image_url=_text(image.get("src")),
    )


def product_from_node(node: dict) -> StoreProduct:
    platform_id = gid_tail(_required(node, "id", "product"))
    price = _bag(node.get("priceRangeV2"), "minVariantPrice")
    if price is None:
        raise InvalidPayload(f"product {platform_id} has no priceRangeV2")
    tracked = bool(node.get("tracksInventory"))
    quantity = int(node["totalInventory"]) if tracked and node.get("totalInventory") is not None else None
    variants = _connection_nodes(node.get("variants"))
    media = ((node.get("featuredMedia") or {}).get("preview") or {}).get("image") or {}
    return StoreProduct(
        platform_id=platform_id, title=node.get("title") or "", price=price,
        stock_status=_stock_status((node.get("status") or "ACTIVE").upper() == "ACTIVE", tracked, quantity),
        updated_at=parse_time(node.get("updatedAt")) or parse_time(_required(node, "createdAt", "product")),
        sku=_text(variants[0].get("sku")) if variants else None, stock_quantity=quantity,
        url=_text(node.get("onlineStoreUrl")), image_url=_text(media.get("url")),
    )
