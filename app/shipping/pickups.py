"""Courier pickups from the print station: one request per batch and day, recorded before the courier is called;
calling one off again; and the courier's own handover printout, fetched once and kept."""
from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.models import CourierAccount, CourierPickup, LabelBatch, utcnow
from app.models.shipping import CourierDocument
from app.shipping.accounts import DEFAULT_PARCEL, courier_for
from app.shipping.addresses import address_from
from app.shipping.batches import _as_result, batch_shipments
from connectors.couriers import Capability, CourierRefused, PickupRequest, PickupResult, Unsupported, courier_class
from connectors.errors import AmbiguousOutcome, ConnectorError, NotFound

# A request that is asked, or may have been: asking again would send a second van.
STANDING = ("requesting", "requested", "unknown", "cancelling")


class PickupNotPossible(Exception):
    """Nothing was asked: the courier takes no pickup requests, or the batch has nothing to collect."""


class PickupNotCancelled(Exception):
    """The courier was asked to call a pickup off and did not (too late, or it could not be reached); the pickup
    stands, and the reason is on the row's `message`."""


class NoCourierDocument(Exception):
    """The courier issues no handover printout for this batch (none in its API, or no pickup order yet)."""


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
        note = courier_class(account.courier).pickup_note if account is not None else ""
        raise PickupNotPossible(f"{batch.courier}: pickups cannot be requested through this courier's API; "
                                f"book the collection by phone or in the courier's own panel"
                                f"{' (' + note + ')' if note else ''}")
    if ready_until <= ready_from:
        raise PickupNotPossible("the pickup window ends before it starts")
    shipments = batch_shipments(session, account.id, list(batch.order_ids))
    if not shipments:
        raise PickupNotPossible("this batch has no printed parcels to collect")
    key = f"batch:{batch.id}:{day.isoformat()}"
    pickup = session.scalars(select(CourierPickup).where(CourierPickup.dedupe_key == key)).first()
    if pickup is not None and pickup.status in STANDING:
        return pickup
    if pickup is not None and pickup.status == "cancelled":
        # The cancelled request stays on record as it was; the new request is a row of its own.
        pickup.dedupe_key = f"{key}:cancelled:{pickup.id}"
        session.flush()
        pickup = None
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
    if status == "requested":
        pickup.courier_data = dict(result.details) or None
    session.commit()
    return pickup


# --- calling a pickup off ---------------------------------------------------------------------------------------

def can_cancel_pickup(account: CourierAccount | None, pickup: CourierPickup) -> bool:
    return (account is not None and pickup.status in ("requested", "cancelling") and bool(pickup.pickup_ref)
            and courier_class(account.courier).can(Capability.PICKUP_CANCEL))


def cancel_pickup(session: Session, pickup: CourierPickup, *, cancelled_by: str | None = None) -> CourierPickup:
    """Call off a requested pickup at the courier and record it on the row (status, when, by whom).

    Idempotent: a pickup already cancelled is returned as it is, without calling the courier. The row says
    "cancelling" (committed) while the courier is asked, so a crash leaves a trace and the next try asks again.
    Raises PickupNotPossible when there is nothing the API can cancel (nothing was asked, the outcome of the
    request is unknown, or the courier has no cancel call) and PickupNotCancelled when the courier refused.
    Commits the session.
    """
    if pickup.status == "cancelled":
        return pickup
    account = session.get(CourierAccount, pickup.courier_account_id)
    if account is None or not courier_class(account.courier).can(Capability.PICKUP_CANCEL):
        raise PickupNotPossible(f"{pickup.courier}: a pickup cannot be called off through this courier's API; "
                                f"call the courier or use its own panel")
    if pickup.status not in ("requested", "cancelling") or not pickup.pickup_ref:
        raise PickupNotPossible(
            "the courier's outcome of this request is unknown: check its panel before cancelling there"
            if pickup.status == "unknown" else f"this pickup is {pickup.status}: there is nothing to cancel")
    retrying = pickup.status == "cancelling"
    ordered = PickupResult(pickup.courier, pickup.pickup_ref, details=dict(pickup.courier_data or {}))
    pickup.status, pickup.cancelled_by = "cancelling", cancelled_by
    courier = courier_for(account)
    pickup_id = pickup.id
    session.commit()  # on record before the courier hears of it
    refusal = None
    try:
        courier.cancel_pickup(ordered)
    except NotFound as exc:
        if not retrying:  # an order the courier never knew: it stands as far as we can tell
            refusal = f"the courier does not know this pickup order: {exc}"
        # else: an earlier attempt cancelled it and its answer was lost
    except (CourierRefused, Unsupported, ValueError) as exc:
        refusal = str(exc)
    except ConnectorError as exc:  # rate limit, outage, refused login: nothing was cancelled
        refusal = f"not cancelled: {exc}"
    pickup = session.get(CourierPickup, pickup_id)
    if refusal is not None:
        pickup.status, pickup.message, pickup.cancelled_by = "requested", refusal[:1000], None
        session.commit()
        raise PickupNotCancelled(refusal)
    pickup.status, pickup.cancelled_at, pickup.message = "cancelled", utcnow(), None
    # The courier's printout of a cancelled order is void: it must not be handed to a driver.
    session.execute(delete(CourierDocument).where(CourierDocument.courier_pickup_id == pickup_id))
    session.commit()
    return pickup


# --- the courier's own handover printout ---------------------------------------------------------------------------

def courier_document_offered(account: CourierAccount | None) -> bool:
    return account is not None and courier_class(account.courier).can(Capability.HANDOVER_DOCUMENT)


def courier_handover(session: Session, batch: LabelBatch) -> CourierDocument:
    """The courier's handover printout for the batch: the one on record, else fetched from the courier and kept.

    Couriers whose printout belongs to a pickup order (InPost, Cargus) print the batch's latest requested pickup;
    the others (DPD Polska's protocol) print the batch's parcels, one document per set of parcels, so a retry that
    added parcels gets a new one. Raises NoCourierDocument when there is none to have, ConnectorError when the
    courier failed. Commits the session.
    """
    account = session.get(CourierAccount, batch.courier_account_id)
    if not courier_document_offered(account):
        raise NoCourierDocument(f"{batch.courier} issues no handover document through its API: hand the driver "
                                f"our handover list")
    shipments = batch_shipments(session, account.id, list(batch.order_ids))
    if not shipments:
        raise NoCourierDocument("this batch has no printed parcels to hand over")
    pickup = None
    if courier_class(account.courier).handover_needs_pickup:
        pickup = next((p for p in reversed(pickups_of(session, batch)) if p.status == "requested" and p.pickup_ref),
                      None)
        if pickup is None:
            raise NoCourierDocument(f"{batch.courier}'s handover document belongs to a pickup order: request the "
                                    f"pickup first")
        key = f"pickup:{pickup.id}:handover"
    else:
        parcels = ",".join(sorted(number for s in shipments for number in (s.tracking_numbers or [s.shipment_ref])))
        key = f"batch:{batch.id}:handover:{hashlib.sha256(parcels.encode()).hexdigest()[:16]}"
    found = session.scalars(select(CourierDocument).where(CourierDocument.dedupe_key == key)).first()
    if found is not None:
        return found
    results = [_as_result(s) for s in shipments]
    ordered = None
    if pickup is not None:
        ordered = PickupResult(pickup.courier, pickup.pickup_ref, details=dict(pickup.courier_data or {}))
    courier, sender, pickup_id = courier_for(account), address_from(account.sender), pickup.id if pickup else None
    courier_name = account.courier
    shop_id, batch_id = batch.shop_id, batch.id
    session.rollback()  # no transaction (a write lock on SQLite) held across the courier call
    document = courier.handover_document(results, ordered, sender=sender)
    row = CourierDocument(shop_id=shop_id, label_batch_id=batch_id, courier_pickup_id=pickup_id,
                          courier=courier_name, kind="handover", dedupe_key=key,
                          reference=(document.reference or None) and document.reference[:64],
                          media_type=document.media_type, content=document.content)
    session.add(row)
    try:
        session.commit()
    except IntegrityError:  # two members of staff asked at once: keep the first
        session.rollback()
        return session.scalars(select(CourierDocument).where(CourierDocument.dedupe_key == key)).one()
    return row
