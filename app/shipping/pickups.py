"""Courier pickups from the print station: one request per batch and day, recorded before the courier is called."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import CourierAccount, CourierPickup, LabelBatch
from app.shipping.accounts import DEFAULT_PARCEL, courier_for
from app.shipping.addresses import address_from
from app.shipping.batches import batch_shipments
from connectors.couriers import Capability, CourierRefused, PickupRequest, Unsupported, courier_class
from connectors.errors import AmbiguousOutcome, ConnectorError

# A request that is asked, or may have been: asking again would send a second van.
STANDING = ("requesting", "requested", "unknown")


class PickupNotPossible(Exception):
    """Nothing was asked: the courier takes no pickup requests, or the batch has nothing to collect."""


def can_request_pickup(account: CourierAccount | None) -> bool:
    return account is not None and courier_class(account.courier).can(Capability.PICKUP_REQUEST)


def pickups_of(session: Session, batch: LabelBatch) -> list[CourierPickup]:
    return list(session.scalars(select(CourierPickup).where(CourierPickup.label_batch_id == batch.id)
                                .order_by(CourierPickup.id)))


def request_pickup(session: Session, batch: LabelBatch, day: dt.date, ready_from: dt.time, ready_until: dt.time, *,
                   note: str = "", requested_by: str | None = None) -> CourierPickup:
    """Ask the batch's courier to collect its printed parcels on `day` between the two times (warehouse time).

    The row is committed before the call under the key batch+day: a second click, or a second member of staff,
    gets the same request back instead of a second van. Only a refused request can be asked again.
    Commits the session (twice: before and after the courier call).
    """
    account = session.get(CourierAccount, batch.courier_account_id)
    if not can_request_pickup(account):
        raise PickupNotPossible(f"{batch.courier}: pickups cannot be requested through this courier's API; "
                                f"book the collection by phone or in the courier's own panel")
    if ready_until <= ready_from:
        raise PickupNotPossible("the pickup window ends before it starts")
    shipments = batch_shipments(session, account.id, list(batch.order_ids))
    if not shipments:
        raise PickupNotPossible("this batch has no printed parcels to collect")
    key = f"batch:{batch.id}:{day.isoformat()}"
    pickup = session.scalars(select(CourierPickup).where(CourierPickup.dedupe_key == key)).first()
    if pickup is not None and pickup.status in STANDING:
        return pickup
    parcels = sum(max(1, len(shipment.tracking_numbers or ())) for shipment in shipments)
    if pickup is None:
        pickup = CourierPickup(shop_id=batch.shop_id, courier_account_id=account.id, label_batch_id=batch.id,
                               courier=account.courier, dedupe_key=key, day=day)
        session.add(pickup)
    pickup.ready_from, pickup.ready_until = ready_from.strftime("%H:%M"), ready_until.strftime("%H:%M")
    pickup.parcels, pickup.status, pickup.message, pickup.requested_by = parcels, "requesting", None, requested_by
    weight = Decimal(str({**DEFAULT_PARCEL, **(account.parcel or {})}["weight_kg"])) * parcels
    request = PickupRequest(address=address_from(account.sender), day=day, ready_from=ready_from,
                            ready_until=ready_until, parcels=parcels, weight_kg=weight,
                            shipments=tuple(s.shipment_ref or s.tracking_numbers[0] for s in shipments), note=note)
    courier = courier_for(account)
    session.commit()  # the request is on record before the courier hears of it
    pickup_id = pickup.id
    try:
        result = courier.request_pickup(request)
    except AmbiguousOutcome as exc:
        status, reference, message = "unknown", None, f"no clear answer; check the courier's panel before asking again: {exc}"
    except (CourierRefused, Unsupported, ValueError) as exc:
        status, reference, message = "refused", None, str(exc)
    except ConnectorError as exc:  # rate limit, outage, refused login: nothing was ordered
        status, reference, message = "refused", None, f"not sent: {exc}"
    else:
        status, reference, message = "requested", result.pickup_id, None
    pickup = session.get(CourierPickup, pickup_id)
    pickup.status, pickup.pickup_ref, pickup.message = status, reference, (message or "")[:1000] or None
    session.commit()
    return pickup
