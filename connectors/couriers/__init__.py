"""Courier client libraries behind one interface, registered by name; see issue #7.

    courier = make("fancourier", client_id=..., username=..., password=...)
    result = courier.create_shipment(request)            # request.reference is the idempotency key
    document = courier.label([result], "pdf", "a4_4up")  # or "a6", "100x150"; "zpl" where the courier prints it
    statuses = courier.track(["2332300120218"])           # or courier.track_changes(since) where it has a feed
"""
from __future__ import annotations

from connectors.couriers.base import (
    STAFF_WAITING_RETRY, STAFF_WAITING_TIMEOUT, TERMINAL, Capability, Courier, CourierRefused, HandoverDocument,
    LabelFormat, LabelSize, PickupCancelDenied, PickupPoint, PickupRequest, PickupResult, RetryPolicy, StatusMap,
    TokenCache, Unsupported, decode_pdf, load_status_map,
)
from connectors.couriers.cargus import Cargus
from connectors.couriers.dpd_polska import DpdPolska
from connectors.couriers.dpd_romania import DpdRomania
from connectors.couriers.fan_courier import FanCourier
from connectors.couriers.inpost import InPost
from connectors.couriers.manual import ManualCourier, render_label
from connectors.couriers.sameday import Sameday

REGISTRY: dict[str, type[Courier]] = {
    FanCourier.name: FanCourier,
    Cargus.name: Cargus,
    DpdRomania.name: DpdRomania,
    DpdPolska.name: DpdPolska,
    Sameday.name: Sameday,
    InPost.name: InPost,
    ManualCourier.name: ManualCourier,
}


def courier_class(name: str) -> type[Courier]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown courier {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def make(name: str, **settings) -> Courier:
    """A courier client for one account, from its registry name and that account's settings."""
    return courier_class(name)(**settings)


__all__ = [
    "Capability", "Cargus", "Courier", "CourierRefused", "DpdPolska", "DpdRomania", "FanCourier", "HandoverDocument", "InPost", "LabelFormat", "LabelSize",
    "ManualCourier", "PickupCancelDenied", "PickupPoint", "PickupRequest", "PickupResult", "REGISTRY", "RetryPolicy", "STAFF_WAITING_RETRY", "STAFF_WAITING_TIMEOUT", "Sameday", "StatusMap", "TERMINAL", "TokenCache",
    "Unsupported", "courier_class", "decode_pdf", "load_status_map", "make", "render_label",
]
