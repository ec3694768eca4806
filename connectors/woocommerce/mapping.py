"""WooCommerce REST/webhook JSON (wc/v3 shapes) → our plain records; the decisions about statuses live here too.

Every `*_gmt` value is UTC written without an offset ("2017-03-22T19:28:02"); the plain `date_*` twins are shop-local
and never used. Money comes as strings with the order's currency; phones are free text typed by shoppers.
"""
from __future__ import annotations

import datetime as dt
import functools
from decimal import Decimal
from typing import Any, Iterable, Mapping
from urllib.parse import urlencode

import phonenumbers

from connectors.errors import InvalidPayload
from connectors.records import (
    Address, Money, StoreCart, StoreCartLine, StoreCustomer, StoreOrder, StoreOrderLine, StoreProduct, StoreRefund,
    e164, web_url,
)

# Statuses no customer message may ever be based on: unfinished block checkouts, admin drafts, the bin.
SILENT_STATUSES = frozenset({"checkout-draft", "auto-draft", "trash"})
UNPAID_STATUSES = frozenset({"pending", "on-hold"})

# Payment methods whose money arrives after the order is placed (or never): gateway ids as the plugins register them.
PENDING_PAYMENT_METHODS = frozenset({
    "bacs", "cheque", "cod",  # WooCommerce core: bank transfer, cheque, cash on delivery
    # Przelewy24 official plugin (WC_P24\Core: MAIN_METHOD, BLIK_IN_SHOP_METHOD, CARD_IN_SHOP_METHOD, …)
    "p24-online-payments", "p24-blik", "p24-card", "p24-google-pay", "p24-apple-pay",
    "przelewy24",  # the older Przelewy24 plugin and several resellers' payment_method value
    # PayU EU plugin (PayU-EMEA/woo-payu-payment-gateway: one gateway class per pay type, ids from their constructors)
    "payustandard", "payulistbanks", "payublik", "payucreditcard", "payusecureform", "payuinstallments",
    "payuklarna", "payupaypo", "payutwistopl", "payutwistoslice",
    "payu",  # WP Desk's PayU plugin
    "pay_by_paynow_pl_blik", "pay_by_paynow_pl_pbl",  # paynow.pl (mBank): BLIK, pay-by-link
    "netopiapayments",  # NETOPIA Payments (Romania)
})
# Families whose gateway ids vary with the plugin version; matched by prefix.
PENDING_PAYMENT_PREFIXES = ("p24-", "przelewy24", "payu", "netopia", "tpay", "blik")

def parse_gmt(value: Any) -> dt.datetime | None:
    """A `*_gmt` value ("2017-03-22T19:28:02", no offset, UTC by WooCommerce's contract) as aware UTC."""
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidPayload(f"not a WooCommerce GMT time: {value!r}") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc)


def format_gmt(moment: dt.datetime) -> str:
    """The form WooCommerce takes for `modified_after` (with dates_are_gmt=true) and `date_expires_gmt`."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: give an aware UTC time")
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def phone_e164(value: Any, country: str | None = None) -> str | None:
    """E.164 from what a shopper typed: international forms always; national forms when `country` says whose.

    "600 111 222" with PL → +48600111222; "0722 123 456" with RO → +40722123456; anything unsure → None.
    The billing country is only a default: a number typed with +NN or 00NN keeps its own country.
    """
    if not value:
        return None
    return _phone(str(value).strip(), (country or "").upper() or None)


@functools.lru_cache(maxsize=8192)
def _phone(text: str, region: str | None) -> str | None:
    # Cached: a sync sees the same customers' numbers again and again, and parsing is the costliest mapping step.
    if text.startswith("00"):
        text = "+" + text[2:]
    if not text.startswith("+") and region is None:
        return None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    # Possible, not strictly valid: numbering plans move faster than the library's metadata; senders re-check.
    if not phonenumbers.is_possible_number(number):
        return None
    return e164(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def _money(value: Any, currency: str, what: str) -> Money:
    try:
        return Money.parse(value if value not in (None, "") else "0", currency)
    except ValueError as exc:
        raise InvalidPayload(f"{what}: {exc}") from None


def _text(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def _id(value: Any) -> str | None:
    return str(value) if value not in (None, "", 0, "0") else None


def _required(payload: Mapping[str, Any], key: str, what: str) -> Any:
    value = payload.get(key)
    if value in (None, ""):
        raise InvalidPayload(f"{what} has no {key}")
    return value


def _address(value: Any, *, email: Any = None) -> Address | None:
    if not isinstance(value, Mapping) or not any(value.get(k) for k in ("first_name", "last_name", "address_1", "city")):
        return None
    country = (value.get("country") or "").upper()
    name = " ".join(part for part in (value.get("first_name") or "", value.get("last_name") or "") if part)
    return Address(name=name, company=value.get("company") or "", street=value.get("address_1") or "",
                   street2=value.get("address_2") or "", city=value.get("city") or "",
                   postcode=value.get("postcode") or "", region=value.get("state") or "", country=country,
                   phone=phone_e164(value.get("phone"), country), email=_text(email))


def _order_line(item: Mapping[str, Any], currency: str) -> StoreOrderLine:
    quantity = int(item.get("quantity") or 0)
    subtotal = _money(item.get("subtotal"), currency, "line subtotal")
    unit = Money(subtotal.amount / quantity, currency) if quantity else subtotal
    return StoreOrderLine(
        platform_id=str(_required(item, "id", "line item")), name=str(item.get("name") or ""), quantity=quantity,
        unit_price=unit, total=_money(item.get("total"), currency, "line total"), sku=_text(item.get("sku")),
        product_id=_id(item.get("product_id")), variant_id=_id(item.get("variation_id")))


def _financial_status(payload: Mapping[str, Any], currency: str) -> str:
    status = payload.get("status")
    if status == "refunded":
        return "refunded"
    refunded = sum((-_money(r.get("total"), currency, "refund total").amount for r in payload.get("refunds") or []),
                   Decimal(0))
    if refunded > 0:
        return "partially_refunded"
    return "paid" if payload.get("date_paid_gmt") else "pending"


def draft_cart_token(order_id: Any) -> str:
    """The cart token we give a block-checkout draft; the order that later carries the same id completes it."""
    return f"checkout-draft:{order_id}"


def order_from_payload(payload: Mapping[str, Any]) -> StoreOrder:
    """A wc/v3 order (REST or webhook body) as a StoreOrder; the status stays WooCommerce's own word."""
    order_id = _required(payload, "id", "order")
    currency = str(_required(payload, "currency", f"order {order_id}")).upper()
    billing = payload.get("billing") or {}
    shipping = payload.get("shipping") or {}
    country = (billing.get("country") or shipping.get("country") or "").upper()
    lines = tuple(_order_line(item, currency) for item in payload.get("line_items") or [])
    subtotal = sum((_money(item.get("subtotal"), currency, "line subtotal").amount
                    for item in payload.get("line_items") or []), Decimal(0))
    created = parse_gmt(_required(payload, "date_created_gmt", f"order {order_id}"))
    modified = parse_gmt(payload.get("date_modified_gmt")) or created
    status = str(payload.get("status") or "")
    shipping_lines = payload.get("shipping_lines") or []
    return StoreOrder(
        platform_id=str(order_id), number=str(payload.get("number") or order_id), status=status, currency=currency,
        total=_money(payload.get("total"), currency, "order total"), subtotal=Money(subtotal, currency),
        shipping_total=_money(payload.get("shipping_total"), currency, "shipping total"),
        tax_total=_money(payload.get("total_tax"), currency, "tax total"),
        discount_total=_money(payload.get("discount_total"), currency, "discount total"),
        placed_at=created, updated_at=modified, customer_platform_id=_id(payload.get("customer_id")),
        email=_text(billing.get("email")), phone=phone_e164(billing.get("phone") or shipping.get("phone"), country),
        financial_status=_financial_status(payload, currency),
        fulfillment_status="fulfilled" if status == "completed" else None,
        payment_method=_text(payload.get("payment_method")),
        shipping_method=_text(shipping_lines[0].get("method_title")) if shipping_lines else None,
        # Block checkout turns its draft into this very order, so the draft's cart is completed by it.
        cart_token=draft_cart_token(order_id) if payload.get("created_via") == "store-api" else None,
        paid_at=parse_gmt(payload.get("date_paid_gmt")),
        cancelled_at=modified if status == "cancelled" else None,
        shipping_address=_address(shipping), billing_address=_address(billing, email=billing.get("email")),
        lines=lines,
        discount_codes=tuple(str(c.get("code")).lower() for c in payload.get("coupon_lines") or [] if c.get("code")),
        payment_url=web_url(payload.get("payment_url")) if _needs_payment(payload, status) else None,
    )


# WooCommerce's own default for which statuses its "order-pay" page accepts (WC_Order::needs_payment, filter
# woocommerce_valid_order_statuses_for_payment); used only when a store does not send `needs_payment`.
PAYABLE_STATUSES = frozenset({"pending", "failed"})


def _needs_payment(payload: Mapping[str, Any], status: str) -> bool:
    """Will the order's `payment_url` take a payment? The store's own answer (`needs_payment`) when it gives one:
    `payment_url` is sent for every order, but its page refuses an on-hold or paid order."""
    needs = payload.get("needs_payment")
    if isinstance(needs, bool):
        return needs
    return status in PAYABLE_STATUSES and not payload.get("date_paid_gmt")


def is_unpaid(order: StoreOrder) -> bool:
    """True for an order waiting for money that arrives later: pending/on-hold with a delayed payment method.

    Such an order is neither "paid" nor abandoned: it gets payment reminders, not thank-you or cart messages.
    """
    if order.status not in UNPAID_STATUSES or order.paid_at is not None:
        return False
    method = (order.payment_method or "").lower()
    return method in PENDING_PAYMENT_METHODS or method.startswith(PENDING_PAYMENT_PREFIXES)


def is_silent(status: str) -> bool:
    """True for statuses that must never trigger a customer message (checkout-draft, auto-draft, trash)."""
    return status in SILENT_STATUSES


def customer_from_payload(payload: Mapping[str, Any]) -> StoreCustomer:
    """A wc/v3 customer. WooCommerce core keeps no marketing consent, so the accepts_* fields stay unknown."""
    customer_id = _required(payload, "id", "customer")
    billing = payload.get("billing") or {}
    country = (billing.get("country") or (payload.get("shipping") or {}).get("country") or "").upper()
    return StoreCustomer(
        platform_id=str(customer_id), email=_text(payload.get("email") or billing.get("email")),
        phone=phone_e164(billing.get("phone"), country), first_name=payload.get("first_name") or "",
        last_name=payload.get("last_name") or "",
        updated_at=parse_gmt(payload.get("date_modified_gmt") or payload.get("date_created_gmt")))


def product_from_payload(payload: Mapping[str, Any], currency: str) -> StoreProduct:
    """A wc/v3 product; products carry no currency, so the shop's is given."""
    product_id = _required(payload, "id", "product")
    images = payload.get("images") or []
    quantity = payload.get("stock_quantity")
    return StoreProduct(
        platform_id=str(product_id), title=str(payload.get("name") or ""),
        price=_money(payload.get("price"), currency, f"product {product_id} price"),
        stock_status=str(payload.get("stock_status") or "instock"),
        updated_at=parse_gmt(payload.get("date_modified_gmt") or payload.get("date_created_gmt")),
        sku=_text(payload.get("sku")), stock_quantity=int(quantity) if quantity is not None else None,
        url=_text(payload.get("permalink")), image_url=_text(images[0].get("src")) if images else None,
        purchasable=_purchasable(payload))


def _purchasable(payload: Mapping[str, Any]) -> bool | None:
    if "purchasable" not in payload and "status" not in payload:
        return None
    return bool(payload.get("purchasable", True)) and payload.get("status", "publish") == "publish" \
        and payload.get("stock_status") != "outofstock"


def refund_from_payload(payload: Mapping[str, Any], currency: str, order_id: Any = None) -> StoreRefund:
    """A refund from `/orders/{id}/refunds` (give `order_id`) or `/refunds` (carries `parent_id`)."""
    refund_id = _required(payload, "id", "refund")
    parent = order_id if order_id is not None else payload.get("parent_id")
    if parent in (None, "", 0):
        raise InvalidPayload(f"refund {refund_id} names no order")
    amount = _money(payload.get("amount"), currency, f"refund {refund_id} amount")
    return StoreRefund(platform_id=str(refund_id), order_platform_id=str(parent),
                       amount=Money(abs(amount.amount), currency),
                       created_at=parse_gmt(_required(payload, "date_created_gmt", f"refund {refund_id}")),
                       reason=payload.get("reason") or "")


def refund_ids(payload: Mapping[str, Any]) -> tuple[str, ...]:
    """Ids of the refunds an order payload lists, to notice new ones in an `order.updated` delivery."""
    return tuple(str(r["id"]) for r in payload.get("refunds") or [] if r.get("id") is not None)


def recovery_url(store_url: str, lines: Iterable[StoreCartLine]) -> str:
    """A link that puts the cart back: one product → add-to-cart on the checkout page, else the cart page.

    WooCommerce core's `?add-to-cart=` takes one product per request, so a multi-product cart can only be
    restored by the storefront snippet (Store API) or a cart plugin; the cart page is the honest fallback.
    """
    base = store_url.rstrip("/")
    lines = list(lines)
    if len(lines) == 1 and (lines[0].variant_id or lines[0].product_id):
        query = urlencode({"add-to-cart": lines[0].variant_id or lines[0].product_id, "quantity": lines[0].quantity})
        return f"{base}/checkout/?{query}"
    return f"{base}/cart/"


def cart_from_draft_order(payload: Mapping[str, Any], store_url: str) -> StoreCart:
    """A block-checkout `checkout-draft` order as a cart, with its recovery link and the shopper it has so far."""
    order_id = _required(payload, "id", "draft order")
    currency = str(_required(payload, "currency", f"draft order {order_id}")).upper()
    billing = payload.get("billing") or {}
    country = (billing.get("country") or (payload.get("shipping") or {}).get("country") or "").upper()
    lines = tuple(
        StoreCartLine(name=str(item.get("name") or ""), quantity=int(item.get("quantity") or 0),
                      unit_price=_order_line(item, currency).unit_price, product_id=_id(item.get("product_id")),
                      variant_id=_id(item.get("variation_id")), sku=_text(item.get("sku")),
                      image_url=_text((item.get("image") or {}).get("src")))
        for item in payload.get("line_items") or [])
    status = payload.get("status")
    modified = parse_gmt(payload.get("date_modified_gmt") or payload.get("date_created_gmt"))
    return StoreCart(
        token=draft_cart_token(order_id), currency=currency, total=_money(payload.get("total"), currency, "cart total"),
        updated_at=modified, email=_text(billing.get("email")), phone=phone_e164(billing.get("phone"), country),
        customer_platform_id=_id(payload.get("customer_id")), recovery_url=recovery_url(store_url, lines),
        completed_at=modified if status not in (None, "checkout-draft") else None, lines=lines)


def cart_from_abandoned_cart_lite(payload: Mapping[str, Any], currency: str, *,
                                  recovered_at: dt.datetime | None = None) -> StoreCart:
    """A `wcap_cart.cutoff` / `wcap_cart.recovered` body from Abandoned Cart Lite (Tyche) as a cart.

    The plugin sends no currency and a Unix `timestamp` of the abandonment; `checkout_link` restores the cart.
    A `recovered` body carries no time of its own, so the caller gives when it arrived as `recovered_at`.
    """
    cart_id = _required(payload, "id", "abandoned cart")
    country = (payload.get("billing_country") or "").upper()
    lines = []
    for item in payload.get("product_details") or []:
        if not isinstance(item, Mapping):
            continue
        quantity = int(item.get("quantity") or item.get("qty") or 1)
        line_total = item.get("line_subtotal") or item.get("line_total") or item.get("price") or 0
        total = _money(line_total, currency, "abandoned cart line")
        lines.append(StoreCartLine(name=str(item.get("product_name") or item.get("name") or ""), quantity=quantity,
                                   unit_price=Money(total.amount / quantity, currency),
                                   product_id=_id(item.get("product_id")), variant_id=_id(item.get("variation_id"))))
    try:
        updated = dt.datetime.fromtimestamp(int(payload.get("timestamp")), dt.timezone.utc)
    except (TypeError, ValueError):
        raise InvalidPayload(f"abandoned cart {cart_id} has no timestamp") from None
    user_id = payload.get("user_id")
    registered = payload.get("user_type") == "REGISTERED" and user_id not in (None, 0, "0")
    return StoreCart(
        token=f"wcal:{cart_id}", currency=currency.upper(),
        total=_money(payload.get("total"), currency, "abandoned cart total"), updated_at=updated,
        email=_text(payload.get("email_id")), phone=phone_e164(payload.get("phone"), country),
        customer_platform_id=str(user_id) if registered else None, recovery_url=_text(payload.get("checkout_link")),
        completed_at=recovered_at, lines=tuple(lines))


def _minor(value: Any, minor_unit: Any, currency: str, what: str) -> Money:
    """Store API prices are integer strings in the currency's minor unit ("22990" with minor unit 2 = 229.90)."""
    try:
        amount = Decimal(str(value if value not in (None, "") else "0")).scaleb(-int(minor_unit or 0))
    except (ArithmeticError, ValueError):
        raise InvalidPayload(f"{what}: not a Store API price {value!r}") from None
    return Money(amount, currency)


def cart_from_store_api(payload: Mapping[str, Any], *, token: str, store_url: str,
                        updated_at: dt.datetime) -> StoreCart:
    """A shopper's cart as the Store API (`GET /wc/store/v1/cart`) shows it, posted to us by the storefront snippet.

    The Store API has no cart id or time of its own: the snippet's cart token and the time we received it are given.
    """
    totals = payload.get("totals") or {}
    currency = str(totals.get("currency_code") or "").upper()
    if not currency:
        raise InvalidPayload("Store API cart has no totals.currency_code")
    billing = payload.get("billing_address") or {}
    shipping = payload.get("shipping_address") or {}
    country = (billing.get("country") or shipping.get("country") or "").upper()
    lines = []
    for item in payload.get("items") or []:
        prices = item.get("prices") or {}
        images = item.get("images") or []
        lines.append(StoreCartLine(
            name=str(item.get("name") or ""), quantity=int(item.get("quantity") or 0),
            unit_price=_minor(prices.get("price"), prices.get("currency_minor_unit", totals.get("currency_minor_unit")),
                              currency, "cart item price"),
            product_id=_id(item.get("id")), sku=_text(item.get("sku")),
            image_url=_text(images[0].get("thumbnail") or images[0].get("src")) if images else None,
            product_url=_text(item.get("permalink"))))
    return StoreCart(
        token=token, currency=currency,
        total=_minor(totals.get("total_price"), totals.get("currency_minor_unit"), currency, "cart total"),
        updated_at=updated_at, email=_text(billing.get("email")),
        phone=phone_e164(billing.get("phone") or shipping.get("phone"), country),
        recovery_url=recovery_url(store_url, lines), lines=tuple(lines))


TRACKING_META_KEY = "_wc_shipment_tracking_items"


def tracking_numbers_in_order(payload: Mapping[str, Any]) -> frozenset[str]:
    """Tracking numbers an order carries in its meta (Shipment Tracking / AST), to recognise our own write's echo.

    Needs `meta_data` in the order payload (webhook bodies have it; add it to `fields` when listing).
    """
    numbers: set[str] = set()
    for meta in payload.get("meta_data") or []:
        if meta.get("key") == TRACKING_META_KEY and isinstance(meta.get("value"), list):
            numbers |= {str(item.get("tracking_number")) for item in meta["value"]
                        if isinstance(item, Mapping) and item.get("tracking_number")}
    return frozenset(numbers)
