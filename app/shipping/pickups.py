"""Courier pickups from the print station: one request per batch and day, recorded before the courier is called;
calling one off again; and the courier's own handover printout, fetched once and kept."""
from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.models import CourierAccount, CourierPickup, LabelBatch, utcnow
from app.models.shipping import CourierDocument
from app.shipping.accounts import DEFAULT_PARCEL, courier_for
from app.shipping.addresses import address_from
from app.shipping.batches import as_result, batch_shipments
from connectors.couriers import (
    Capability, CourierRefused, PickupCancelDenied, PickupRequest, PickupResult, Unsupported, courier_class,
)
from connectors.errors import AmbiguousOutcome, ConnectorError, InvalidPayload, NotFound

# A request that is asked, or may have been: asking again would send a second van. A cancel whose answer was lost
# may have left the van coming, so that request stands too.
STANDING = ("requesting", "requested", "unknown", "cancelling", "cancel_unknown")
# Where staff may call a pickup off: asked and numbered, or asked to be called off with no clear answer (asking
# again is safe: the courier answers "not found" once it is gone).
CANCELLABLE = ("requested", "cancel_unknown")
# A row left "cancelling" longer than any web request lives was left by a worker that died mid-call.
CANCEL_ABANDONED_AFTER = dt.timedelta(minutes=2)


class PickupNotPossible(Exception):
    """Nothing was asked: the courier takes no pickup requests, or the batch has nothing to collect."""


class PickupNotCancelled(Exception):
    """The courier did not (knowingly) call the pickup off; `pickup` is the row as it now stands, its `message`
    saying why."""

    def __init__(self, message: str, pickup: CourierPickup):
        super().__init__(message)
        self.pickup = pickup


class CancelRefused(PickupNotCancelled):
    """The courier read the cancel and refused it (too late: the driver is on the way); the pickup stands."""


class CancelUnconfirmed(PickupNotCancelled):
    """The courier answered, but not whether the pickup is called off: after an earlier attempt whose answer was
    lost it refuses to cancel, which may mean "too late" or "already cancelled". The row stays `cancel_unknown`
    until staff read the courier's panel (`settle_cancel`)."""


class CourierUnavailable(PickupNotCancelled):
    """The courier could not be asked (outage, rate limit, refused login), or its answer was lost. The row is back
    to `requested` when the courier cannot have acted on this or an earlier attempt, else `cancel_unknown`;
    `retry_after` (seconds) when the courier asked us to slow down."""

    def __init__(self, message: str, pickup: CourierPickup, retry_after: float | None = None):
        super().__init__(message, pickup)
        self.retry_after = retry_after


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
        raise PickupNotPossible(courier_class(account.courier if account else batch.courier).no_pickup_requests())
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
    courier = courier_for(account, staff_waiting=True)
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

def cancel_abandoned(pickup: CourierPickup, now: dt.datetime) -> bool:
    """A cancel left in flight by a worker that died: nobody is waiting for its answer any more."""
    return pickup.status == "cancelling" and pickup.updated_at is not None and \
        pickup.updated_at < now - CANCEL_ABANDONED_AFTER


def can_cancel_pickup(account: CourierAccount | None, pickup: CourierPickup, now: dt.datetime | None = None) -> bool:
    return (account is not None and bool(pickup.pickup_ref)
            and (pickup.status in CANCELLABLE or cancel_abandoned(pickup, now or utcnow()))
            and courier_class(account.courier).can(Capability.PICKUP_CANCEL))


def _fresh(session: Session, pickup_id: int) -> CourierPickup:
    """The row as committed now, not as this session last saw it (another request may have moved it on)."""
    return session.scalars(select(CourierPickup).where(CourierPickup.id == pickup_id)
                           .execution_options(populate_existing=True)).one()


def _moved_on(session: Session, pickup_id: int, from_status: str, **values) -> bool:
    """Compare-and-set: write `values` only while the row is still `from_status`; True when it was."""
    written = session.execute(update(CourierPickup)
                              .where(CourierPickup.id == pickup_id, CourierPickup.status == from_status)
                              .values(**values, updated_at=utcnow())
                              .execution_options(synchronize_session=False))
    return written.rowcount == 1


def cancel_pickup(session: Session, pickup: CourierPickup, *, cancelled_by: str | None = None) -> CourierPickup:
    """Call off a requested pickup at the courier and record it on the row (status, when, by whom).

    Only one request calls the courier: the row moves to "cancelling" by compare-and-set (committed before the
    call), and a second request meanwhile is told the pickup is being cancelled. A pickup already cancelled is
    returned as it is. The outcome is written only while the row is still "cancelling":

    - cancelled: the courier called it off, or no longer has it after an earlier attempt may have reached it;
    - requested, raising CancelRefused: the courier refused (too late), or did not know the order at all;
    - cancel_unknown, raising CourierUnavailable: no clear answer (the courier may have acted); staff ask again
      (safe: the courier says "not found" once it is gone) or check the courier's panel;
    - cancel_unknown, raising CancelUnconfirmed: after such an attempt the courier refuses in words that cannot
      tell "too late" from "already called off"; staff settle it from the courier's panel (`settle_cancel`);
    - requested (cancel_unknown after an earlier unclear attempt), raising CourierUnavailable: it could not be
      asked at all (outage before sending, rate limit, refused login).

    Raises PickupNotPossible when there is nothing the API can cancel. Commits the session.
    """
    pickup_id = pickup.id
    pickup = _fresh(session, pickup_id)
    if pickup.status == "cancelled":
        return pickup
    account = session.get(CourierAccount, pickup.courier_account_id)
    if account is None or not courier_class(account.courier).can(Capability.PICKUP_CANCEL):
        raise PickupNotPossible(courier_class(pickup.courier).no_pickup_cancel())
    now = utcnow()
    seen = pickup.status
    if seen == "cancelling" and not cancel_abandoned(pickup, now):
        raise PickupNotPossible("this pickup is being cancelled right now: reload the page in a moment")
    if seen not in CANCELLABLE + ("cancelling",) or not pickup.pickup_ref:
        raise PickupNotPossible(
            "the courier's outcome of this request is unknown: check its panel before cancelling there"
            if seen == "unknown" else f"this pickup is {seen}: there is nothing to cancel")
    # An earlier attempt may have reached the courier: its answer was lost, or its worker died waiting.
    earlier_attempt = seen != "requested"
    ordered = PickupResult(pickup.courier, pickup.pickup_ref, details=dict(pickup.courier_data or {}))
    courier = courier_for(account, staff_waiting=True)
    claim = update(CourierPickup).where(CourierPickup.id == pickup_id, CourierPickup.status == seen)
    if seen == "cancelling":  # of two takers of an abandoned cancel, the first one's fresh updated_at stops the other
        claim = claim.where(CourierPickup.updated_at < now - CANCEL_ABANDONED_AFTER)
    claimed = session.execute(claim.values(status="cancelling", cancelled_by=cancelled_by, cancelled_at=None,
                                           updated_at=now).execution_options(synchronize_session=False))
    if claimed.rowcount != 1:  # another request got there first
        session.rollback()
        pickup = _fresh(session, pickup_id)
        if pickup.status == "cancelled":
            return pickup
        raise PickupNotPossible("this pickup is being cancelled right now: reload the page in a moment"
                                if pickup.status == "cancelling" else
                                f"this pickup is {pickup.status} now: reload the page")
    session.commit()  # on record before the courier hears of it

    failure: type[PickupNotCancelled] | None = None
    retry_after = None
    try:
        courier.cancel_pickup(ordered)
    except NotFound as exc:
        if earlier_attempt:
            status, message = "cancelled", "the courier no longer has this order: an earlier attempt called it off"
        else:
            status, message, failure = "requested", f"the courier does not know this pickup order: {exc}", CancelRefused
    except PickupCancelDenied as exc:
        if earlier_attempt:
            status, message, failure = (
                "cancel_unknown", f"{exc}; an earlier attempt may already have called it off: check the courier's "
                                  f"panel", CancelUnconfirmed)
        else:
            status, message, failure = "requested", str(exc), CancelRefused
    except (CourierRefused, Unsupported, ValueError) as exc:
        status, message, failure = "requested", str(exc), CancelRefused
    except (AmbiguousOutcome, InvalidPayload) as exc:  # the courier may have acted on it
        status, message, failure = (
            "cancel_unknown", f"no clear answer from the courier, which may have called the pickup off: ask again, "
                              f"or check its panel ({exc})", CourierUnavailable)
    except ConnectorError as exc:  # rate limit, outage before sending, refused login: not asked this time
        status, failure, retry_after = "requested", CourierUnavailable, getattr(exc, "retry_after", None)
        message = f"not cancelled: {exc}"
        if earlier_attempt:
            status = "cancel_unknown"
            message += "; an earlier attempt may have called it off: ask again later, or check the courier's panel"
    else:
        status, message = "cancelled", None

    values: dict = {"status": status, "message": (message or "")[:1000] or None}
    if status == "cancelled":
        values["cancelled_at"] = utcnow()
    else:
        values["cancelled_at"] = None
        if status == "requested":
            values["cancelled_by"] = None
    if _moved_on(session, pickup_id, "cancelling", **values) and status == "cancelled":
        # The courier's printout of a cancelled order is void: it must not be handed to a driver.
        session.execute(delete(CourierDocument).where(CourierDocument.courier_pickup_id == pickup_id))
    session.commit()
    pickup = _fresh(session, pickup_id)
    if failure is CourierUnavailable:
        raise CourierUnavailable(message, pickup, retry_after)
    if failure is not None:
        raise failure(message, pickup)
    return pickup


def settle_cancel(session: Session, pickup: CourierPickup, *, cancelled: bool, settled_by: str | None = None
                  ) -> CourierPickup:
    """Record what staff read in the courier's panel about a cancel whose outcome is unknown: called off, or still
    standing (then it may be cancelled again, or a new pickup asked once this one is cancelled). Commits."""
    pickup_id = pickup.id
    if cancelled:
        values = {"status": "cancelled", "cancelled_at": utcnow(), "cancelled_by": settled_by,
                  "message": "cancelled, as the courier's panel showed"}
    else:
        values = {"status": "requested", "cancelled_at": None, "cancelled_by": None,
                  "message": "still standing, as the courier's panel showed"}
    if not _moved_on(session, pickup_id, "cancel_unknown", **values):
        session.rollback()
        raise PickupNotPossible(f"this pickup is {_fresh(session, pickup_id).status}: only a cancel whose outcome "
                                f"is unknown is settled by hand")
    if cancelled:
        session.execute(delete(CourierDocument).where(CourierDocument.courier_pickup_id == pickup_id))
    session.commit()
    return _fresh(session, pickup_id)


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
    results = [as_result(s) for s in shipments]
    ordered = None
    if pickup is not None:
        ordered = PickupResult(pickup.courier, pickup.pickup_ref, details=dict(pickup.courier_data or {}))
    courier = courier_for(account, staff_waiting=True)
    sender, pickup_id = address_from(account.sender), pickup.id if pickup else None
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
