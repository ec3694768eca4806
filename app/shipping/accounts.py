"""Courier accounts: a courier client from a stored account, the shipment request for an order, tracking links."""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.crypto import Secret
from app.models import CourierAccount, Order
from app.shipping.addresses import address_from, e164_phone
from connectors.couriers import REGISTRY, STAFF_WAITING_RETRY, STAFF_WAITING_TIMEOUT, Courier, make
from connectors.records import Address, Money, Parcel, ShipmentRequest

# Where a customer follows a parcel; the store shows this link next to the number.
TRACKING_URLS = {
    "fancourier": "https://www.fancourier.ro/awb-tracking/?tracking={number}",
    "sameday": "https://www.sameday.ro/#awb={number}",
    "cargus": "https://www.cargus.ro/personal/urmareste-coletul/?tracking_number={number}",
    "dpd_ro": "https://tracking.dpd.ro/?shipmentNumber={number}&language=ro",
    "dpd_pl": "https://tracktrace.dpd.com.pl/parcelDetails?typ=1&p1={number}",
    "inpost": "https://inpost.pl/sledzenie-przesylek?number={number}",
}
# Payment methods that mean the courier collects the money (WooCommerce ids, Shopify gateway names, local words).
COD_WORDS = ("cod", "cash on delivery", "cash_on_delivery", "ramburs", "pobranie", "za pobraniem")
PAID_STATUSES = {"paid", "partially_refunded"}
DEFAULT_PARCEL = {"weight_kg": "1"}


def courier_for(account: CourierAccount, *, staff_waiting: bool = False) -> Courier:
    """A client for this account; its settings (secret or not) are the account's encrypted credentials.

    `staff_waiting` for calls made inside a web request (pickups, handover printouts, cancels at the print
    station): one retry at most and short timeouts, so the answer comes before gunicorn ends the worker (30 s).
    """
    settings = account.credentials.reveal() if account.credentials is not None else {}
    if staff_waiting:
        settings = {**settings, "retry": STAFF_WAITING_RETRY, "timeout": STAFF_WAITING_TIMEOUT}
    return make(account.courier, **settings)


def add_account(session: Session, shop_id: int, *, courier: str, name: str, credentials: dict, sender: dict,
                default_service: str | None = None, shipping_methods: list[str] | None = None,
                parcel: dict | None = None) -> CourierAccount:
    """Store a shop's courier contract; refuses couriers we have no client for and settings the client rejects."""
    if courier not in REGISTRY:
        raise ValueError(f"unknown courier {courier!r}; known: {', '.join(sorted(REGISTRY))}")
    make(courier, **credentials)  # fails now, not at the first label, when a setting is missing or misspelt
    account = CourierAccount(shop_id=shop_id, courier=courier, name=name, credentials=Secret(credentials),
                             sender=sender, default_service=default_service, shipping_methods=shipping_methods or [],
                             parcel=parcel or dict(DEFAULT_PARCEL))
    session.add(account)
    session.flush()
    return account


def account_for_method(accounts: list[CourierAccount], shipping_method: str | None) -> CourierAccount | None:
    """The account serving an order's shipping method (its title, case-insensitive); else the shop's first one."""
    wanted = (shipping_method or "").strip().lower()
    for account in accounts:
        if wanted and wanted in {method.strip().lower() for method in account.shipping_methods or []}:
            return account
    return accounts[0] if accounts else None


def active_accounts(session: Session) -> list[CourierAccount]:
    return list(session.scalars(select(CourierAccount).where(CourierAccount.active.is_(True)).order_by(CourierAccount.id)))


def is_cod(order: Order) -> bool:
    method = (order.payment_method or "").strip().lower()
    return method in COD_WORDS or any(word in method for word in COD_WORDS[1:])


def is_ready_to_ship(order: Order) -> bool:
    """Paid, or paid on delivery; not cancelled."""
    if order.cancelled_at is not None or (order.status or "").lower() in ("cancelled", "refunded", "failed"):
        return False
    return order.paid_at is not None or (order.financial_status or "").lower() in PAID_STATUSES or is_cod(order)


def recipient_of(order: Order) -> Address:
    address = address_from(order.shipping_address or order.billing_address)
    country = (address.country or "").upper()
    phone = address.phone or order.phone
    return Address(**{**vars(address), "country": country, "phone": e164_phone(phone, country) or phone,
                      "email": address.email or order.email})


def shipment_request(order: Order, account: CourierAccount, reference: str, service: str | None = None,
                     options: dict | None = None) -> ShipmentRequest:
    """What we ask the courier to carry for this order: account sender and parcel defaults, COD when unpaid."""
    parcel = {**DEFAULT_PARCEL, **(account.parcel or {})}
    dims = {key: Decimal(str(parcel[key])) for key in ("length_cm", "width_cm", "height_cm") if parcel.get(key)}
    return ShipmentRequest(
        reference=reference,
        sender=address_from(account.sender),
        recipient=recipient_of(order),
        parcels=(Parcel(Decimal(str(parcel["weight_kg"])), template=parcel.get("template"), **dims),),
        service=service or account.default_service,
        cash_on_delivery=Money(order.total, order.currency) if is_cod(order) and not _is_paid(order) else None,
        options=dict(options or {}),
    )


def _is_paid(order: Order) -> bool:
    return order.paid_at is not None or (order.financial_status or "").lower() in PAID_STATUSES


def tracking_url(courier: str, number: str | None) -> str | None:
    template = TRACKING_URLS.get(courier)
    return template.format(number=number) if template and number else None
