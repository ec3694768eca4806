"""Plain records that cross from connectors into the service: the shop's data in our own shapes.

Money is always a Decimal with its ISO currency, times are timezone-aware UTC, phones are E.164.
"""
from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

_CURRENCY = re.compile(r"^[A-Z]{3}$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


@dataclass(frozen=True)
class Money:
    amount: Decimal
    currency: str

    def __post_init__(self):
        if not isinstance(self.amount, Decimal):
            raise TypeError(f"Money amount must be a Decimal, got {type(self.amount).__name__}")
        if not self.amount.is_finite():
            raise ValueError(f"Money amount must be finite, got {self.amount}")
        if not _CURRENCY.match(self.currency or ""):
            raise ValueError(f"currency must be a three-letter ISO code, got {self.currency!r}")

    @classmethod
    def parse(cls, amount: Any, currency: str) -> "Money":
        """From a platform's string or number ("129.99", 129.99, "129,99" is refused), never via float."""
        if isinstance(amount, float):
            amount = repr(amount)
        try:
            value = Decimal(str(amount).strip())
        except (InvalidOperation, ValueError):
            raise ValueError(f"not a money amount: {amount!r}") from None
        return cls(value, (currency or "").upper())

    def __add__(self, other: "Money") -> "Money":
        if not isinstance(other, Money) or other.currency != self.currency:
            raise ValueError(f"cannot add {other!r} to {self!r}")
        return Money(self.amount + other.amount, self.currency)


def utc(value: dt.datetime) -> dt.datetime:
    """A timezone-aware datetime in UTC; naive input is refused rather than guessed."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value.isoformat()}: the platform's time zone must be known")
    return value.astimezone(dt.timezone.utc)


def e164(phone: str | None) -> str | None:
    """The phone number if it already is E.164 (+48..., +40...), else None; connectors normalise first."""
    if phone is None:
        return None
    compact = re.sub(r"[\s\-().]", "", phone)
    return compact if _E164.match(compact) else None


def web_url(value: Any) -> str | None:
    """An absolute http(s) URL with a host, else None: a link we put in a message must lead somewhere."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    match = re.match(r"^https?://([^/?#\s]+)", text, re.IGNORECASE)
    return text if match and not re.search(r"\s", text) else None


@dataclass(frozen=True)
class Address:
    name: str = ""
    company: str = ""
    street: str = ""
    street2: str = ""
    city: str = ""
    postcode: str = ""
    region: str = ""
    country: str = ""  # ISO 3166-1 alpha-2
    phone: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class MarketingConsent:
    """A platform's record of what a customer agreed to on one channel, with where and when."""

    channel: str  # email | sms
    state: str  # granted | revoked | pending | unknown
    platform_state: str  # the platform's own word, kept as is (e.g. SUBSCRIBED, not_subscribed)
    opt_in_level: str | None = None  # single_opt_in | confirmed_opt_in | unknown
    updated_at: dt.datetime | None = None
    source: str | None = None  # e.g. Shopify consent_collected_from, "checkout"


@dataclass(frozen=True)
class StoreCustomer:
    platform_id: str
    email: str | None
    phone: str | None
    first_name: str = ""
    last_name: str = ""
    locale: str | None = None
    accepts_email_marketing: bool | None = None
    accepts_sms_marketing: bool | None = None
    orders_count: int = 0
    total_spent: Money | None = None
    updated_at: dt.datetime | None = None
    consents: tuple[MarketingConsent, ...] = ()


@dataclass(frozen=True)
class StoreOrderLine:
    platform_id: str
    name: str
    quantity: int
    unit_price: Money
    total: Money
    sku: str | None = None
    product_id: str | None = None
    variant_id: str | None = None


@dataclass(frozen=True)
class StoreOrder:
    platform_id: str
    number: str
    status: str
    currency: str
    total: Money
    subtotal: Money
    shipping_total: Money
    tax_total: Money
    discount_total: Money
    placed_at: dt.datetime
    updated_at: dt.datetime
    customer_platform_id: str | None = None
    email: str | None = None
    phone: str | None = None
    financial_status: str | None = None
    fulfillment_status: str | None = None
    payment_method: str | None = None
    shipping_method: str | None = None
    cart_token: str | None = None
    checkout_token: str | None = None
    paid_at: dt.datetime | None = None
    cancelled_at: dt.datetime | None = None
    shipping_address: Address | None = None
    billing_address: Address | None = None
    lines: tuple[StoreOrderLine, ...] = ()
    discount_codes: tuple[str, ...] = ()  # coupon codes applied, lowercase
    # Where the customer can pay this order now, when the store says it still needs paying (None: no such page).
    payment_url: str | None = None
    # The customer's page for this order (Shopify's order status page); None when the platform has none to give.
    status_url: str | None = None


@dataclass(frozen=True)
class StoreCartLine:
    name: str
    quantity: int
    unit_price: Money
    product_id: str | None = None
    variant_id: str | None = None
    sku: str | None = None
    image_url: str | None = None
    product_url: str | None = None


@dataclass(frozen=True)
class StoreCart:
    token: str
    currency: str
    total: Money
    updated_at: dt.datetime
    email: str | None = None
    phone: str | None = None
    customer_platform_id: str | None = None
    recovery_url: str | None = None
    completed_at: dt.datetime | None = None
    lines: tuple[StoreCartLine, ...] = ()


@dataclass(frozen=True)
class StoreProduct:
    platform_id: str
    title: str
    price: Money
    stock_status: str
    updated_at: dt.datetime
    sku: str | None = None
    stock_quantity: int | None = None
    url: str | None = None
    image_url: str | None = None
    purchasable: bool | None = None  # can be bought now (published, purchasable, not out of stock); None = unknown


@dataclass(frozen=True)
class StoreRefund:
    platform_id: str
    order_platform_id: str
    amount: Money
    created_at: dt.datetime
    reason: str = ""


class ShipmentStatus(str, enum.Enum):
    """The normalised parcel status; a courier code we cannot map is UNKNOWN, never IN_TRANSIT."""

    CREATED = "created"
    PICKED_UP = "picked_up"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    AVAILABLE_FOR_PICKUP = "available_for_pickup"
    FAILED_ATTEMPT = "failed_attempt"
    DELIVERED = "delivered"
    RETURNING = "returning"
    RETURNED_TO_SENDER = "returned_to_sender"
    CANCELLED = "cancelled"
    EXCEPTION = "exception"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Parcel:
    weight_kg: Decimal
    length_cm: Decimal | None = None
    width_cm: Decimal | None = None
    height_cm: Decimal | None = None
    template: str | None = None  # a courier's named size (InPost locker "small" | "medium" | "large")


@dataclass(frozen=True)
class ShipmentRequest:
    reference: str  # our idempotency reference: a retry with it never buys a second label
    sender: Address
    recipient: Address
    parcels: tuple[Parcel, ...]
    service: str | None = None
    cash_on_delivery: Money | None = None
    declared_value: Money | None = None
    pickup_point_id: str | None = None
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ShipmentResult:
    reference: str
    tracking_numbers: tuple[str, ...]
    cost: Money | None = None
    raw: dict = field(default_factory=dict)
    courier: str = ""  # registry name, e.g. "fancourier"
    shipment_id: str | None = None  # the courier's own id when it differs from the tracking number (InPost)
    parcel_numbers: tuple[str, ...] = ()  # per-parcel numbers when the courier gives them (Sameday <awb>001)
    label: LabelDocument | None = None  # when the label came with the shipment (manual courier)


@dataclass(frozen=True)
class LabelDocument:
    content: bytes
    format: str  # pdf | zpl
    size: str  # a4_4up | a6 | 100x150


@dataclass(frozen=True)
class TrackingEvent:
    occurred_at: dt.datetime
    status: ShipmentStatus
    raw_code: str
    raw_text: str = ""
    location: str | None = None


@dataclass(frozen=True)
class TrackingResult:
    tracking_number: str
    status: ShipmentStatus
    events: tuple[TrackingEvent, ...] = ()
    return_tracking_number: str | None = None  # the courier's return AWB once the parcel goes back
    delivered_at: dt.datetime | None = None
