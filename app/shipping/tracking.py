"""The tracking poller: the clock picks shipments due a poll, a job per courier account asks the courier in bulk."""
from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict

from sqlalchemy import select, update

from app.automations.signals import emit_signal
from app.clock import clock_scan, period_key
from app.jobs.queue import enqueue
from app.jobs.registry import job_kind
from app.jobs.runner import RetryLater
from app.models import CourierAccount, Order, Shipment, Shop, ShopAlert, TrackingEvent, utcnow
from connectors.couriers import Capability, courier_class
from connectors.errors import AuthError, ConnectorError, RateLimited

log = logging.getLogger(__name__)

TERMINAL_STATUSES = ("delivered", "returned_to_sender", "cancelled")
RETURN_STATUSES = ("returning", "returned_to_sender")
SCAN_EVERY_SECONDS = 60
SHIPMENTS_PER_JOB = 100
CLAIM_SECONDS = 15 * 60  # a shipment handed to a job is not handed again for this long (the job sets the real time)
STUCK_AFTER_DAYS = 5  # shop setting `parcel_stuck_days` overrides
FEED_OVERLAP = dt.timedelta(minutes=10)  # change feeds are read a little back, events arrive late
FEED_SLACK = dt.timedelta(hours=1)
# (age of the shipment, wait between polls): young parcels move often, old ones rarely.
POLL_SCHEDULE = (
    (dt.timedelta(days=2), dt.timedelta(minutes=30)),
    (dt.timedelta(days=7), dt.timedelta(hours=2)),
    (dt.timedelta(days=21), dt.timedelta(hours=6)),
)
LAST_POLL_INTERVAL = dt.timedelta(hours=24)
GIVE_UP_AFTER = dt.timedelta(days=60)


def poll_interval(age: dt.timedelta) -> dt.timedelta:
    for younger_than, wait in POLL_SCHEDULE:
        if age < younger_than:
            return wait
    return LAST_POLL_INTERVAL


def next_poll_at(created_at: dt.datetime, status: str, now: dt.datetime) -> dt.datetime | None:
    """When to ask again: never at a terminal status or after GIVE_UP_AFTER, less often as the parcel ages."""
    age = now - created_at
    if status in TERMINAL_STATUSES or age > GIVE_UP_AFTER:
        return None
    return now + poll_interval(age)


def first_poll_at(courier: str, now: dt.datetime) -> dt.datetime | None:
    try:
        trackable = courier_class(courier).can(Capability.TRACKING)
    except KeyError:
        return None
    return now + POLL_SCHEDULE[0][1] if trackable else None


def is_stuck(last_move: dt.datetime, now: dt.datetime, days: int) -> bool:
    return now - last_move >= dt.timedelta(days=days)


# --- the clock scan ------------------------------------------------------------------------------------------

@clock_scan("shipping.tracking_poll", every_seconds=SCAN_EVERY_SECONDS)
def schedule_tracking_polls(runtime, now: dt.datetime) -> int:
    """Shipments due a poll, grouped per courier account, handed to `shipping.track` jobs of up to 100 each."""
    inserted = 0
    with runtime.sessions.begin() as session:
        due = session.execute(
            select(Shipment.id, Shipment.shop_id, Shipment.courier_account_id)
            .where(Shipment.next_poll_at <= now, Shipment.status.not_in(TERMINAL_STATUSES),
                   Shipment.courier_account_id.is_not(None))
            .order_by(Shipment.next_poll_at).limit(5000)
            .execution_options(all_shops=True)).all()
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for shipment_id, shop_id, account_id in due:
            groups[(shop_id, account_id)].append(shipment_id)
        for (shop_id, account_id), ids in groups.items():
            for start in range(0, len(ids), SHIPMENTS_PER_JOB):
                chunk = ids[start:start + SHIPMENTS_PER_JOB]
                key = f"{period_key('shipping.tracking_poll', SCAN_EVERY_SECONDS, now)}:{account_id}:{chunk[0]}"
                if enqueue(session, "shipping.track", shop_id=shop_id, dedupe_key=key, account_id=account_id,
                           shipment_ids=chunk):
                    inserted += 1
        if due:
            session.execute(update(Shipment).where(Shipment.id.in_([row[0] for row in due]))
                            .values(next_poll_at=now + dt.timedelta(seconds=CLAIM_SECONDS))
                            .execution_options(all_shops=True, synchronize_session=False))
    return inserted


# --- the job -----------------------------------------------------------------------------------------------

@job_kind("shipping.track", max_attempts=5, rate_per_second=5.0)
def track(ctx, account_id: int, shipment_ids: list[int]) -> None:
    """Ask the courier about these shipments (its change feed when it has one), then store what moved."""
    from app.shipping.accounts import courier_for

    now = utcnow()
    with ctx.sessions() as session:
        account = session.get(CourierAccount, account_id)
        shipments = session.scalars(select(Shipment).where(Shipment.id.in_(shipment_ids))).all()
    if account is None or not shipments:
        return
    courier = courier_for(account)
    by_number = {shipment.tracking_numbers[0]: shipment.id for shipment in shipments if shipment.tracking_numbers}
    try:
        if courier.can(Capability.CHANGE_FEED):
            results = courier.track_changes(_feed_since(shipments, now), now)
        elif courier.can(Capability.TRACKING):
            results = courier.track(list(by_number))
        else:
            results = []
    except RateLimited as exc:
        raise RetryLater(exc.retry_after or 60, str(exc)) from None
    except AuthError:
        raise  # the job's retries and dead letter show it; the label batch raises the owner's alert
    except ConnectorError as exc:
        raise RetryLater(120, str(exc)) from None
    # Only now, after the courier answered, the job's own transaction opens (one writer lock on SQLite).
    session = ctx.session
    shop = session.get(Shop, ctx.shop_id)
    stuck_days = int((shop.settings or {}).get("parcel_stuck_days", STUCK_AFTER_DAYS))
    seen = set()
    for result in results:
        shipment_id = by_number.get(result.tracking_number)
        if shipment_id is None:
            continue  # a feed answers for the whole account; parcels of other jobs are theirs
        seen.add(shipment_id)
        apply_tracking(session, session.get(Shipment, shipment_id), result, now)
    for shipment in shipments:
        held = session.get(Shipment, shipment.id)
        if held.id not in seen and held.status not in TERMINAL_STATUSES:
            held.next_poll_at = next_poll_at(held.created_at, held.status, now)
        if held.status not in TERMINAL_STATUSES:
            raise_stuck_alert(session, held, now, stuck_days)


def _feed_since(shipments, now: dt.datetime) -> dt.datetime:
    """How far back to read the account's feed: to each parcel's previous poll (its interval ago), or its last move.

    Polls run every interval, so anything older was read by an earlier poll; the slack covers scan and queue delay.
    """
    bounds = [max(_aware(shipment.last_event_at or shipment.created_at),
                  now - poll_interval(now - _aware(shipment.created_at)) - FEED_SLACK) for shipment in shipments]
    return min(bounds) - FEED_OVERLAP


def apply_tracking(session, shipment: Shipment, result, now: dt.datetime) -> bool:
    """Store new events (each once), move the status, raise the signals; True when the status changed."""
    for event in result.events:
        exists = session.scalar(select(TrackingEvent.id).where(
            TrackingEvent.shipment_id == shipment.id, TrackingEvent.occurred_at == event.occurred_at,
            TrackingEvent.raw_code == str(event.raw_code)[:64]))
        if exists is None:
            session.add(TrackingEvent(shop_id=shipment.shop_id, shipment_id=shipment.id, occurred_at=event.occurred_at,
                                      status=event.status.value, raw_code=str(event.raw_code)[:64],
                                      raw_text=event.raw_text or "", location=(event.location or None) and event.location[:255]))
        if shipment.last_event_at is None or _aware(event.occurred_at) > _aware(shipment.last_event_at):
            shipment.last_event_at = event.occurred_at
    status = result.status.value
    changed = status != shipment.status and not (status == "unknown" and not result.events)
    if changed:
        latest = result.events[-1] if result.events else None
        shipment.status = status
        shipment.status_raw = f"{latest.raw_code} {latest.raw_text}".strip()[:500] if latest else None
        if result.delivered_at is not None:
            shipment.delivered_at = result.delivered_at
        _signal_status(session, shipment, latest.occurred_at if latest else now)
    shipment.next_poll_at = next_poll_at(shipment.created_at, shipment.status, now)
    return changed


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)


def _signal_status(session, shipment: Shipment, occurred_at: dt.datetime) -> None:
    order = session.get(Order, shipment.order_id) if shipment.order_id else None
    customer_id = order.customer_id if order else None
    subject = ("order", order.id) if order else None
    payload = {"shipment_id": shipment.id, "order_id": shipment.order_id, "courier": shipment.courier,
               "status": shipment.status, "tracking_number": (shipment.tracking_numbers or [None])[0]}
    stamp = int(_aware(occurred_at).timestamp())
    emit_signal(session, shipment.shop_id, "shipment_status_changed",
                dedupe_key=f"shipment:{shipment.id}:{shipment.status}:{stamp}", customer_id=customer_id,
                subject=subject, payload=payload, occurred_at=_aware(occurred_at))
    if shipment.status in RETURN_STATUSES:
        emit_signal(session, shipment.shop_id, "return_requested",
                    dedupe_key=f"return_requested:shipment:{shipment.id}", customer_id=customer_id, subject=subject,
                    payload={**payload, "source": "courier"}, occurred_at=_aware(occurred_at))


def raise_stuck_alert(session, shipment: Shipment, now: dt.datetime, days: int) -> bool:
    """One open 'parcel_stuck' alert per shipment that has not moved for `days` days."""
    last_move = _aware(shipment.last_event_at or shipment.created_at)
    if not is_stuck(last_move, now, days):
        return False
    open_alerts = session.scalars(select(ShopAlert).where(ShopAlert.kind == "parcel_stuck",
                                                          ShopAlert.resolved_at.is_(None))).all()
    if any((alert.details or {}).get("shipment_id") == shipment.id for alert in open_alerts):
        return False
    number = (shipment.tracking_numbers or ["?"])[0]
    session.add(ShopAlert(shop_id=shipment.shop_id, kind="parcel_stuck",
                          message=f"Parcel {number} ({shipment.courier}) has not moved for {days} days",
                          details={"shipment_id": shipment.id, "order_id": shipment.order_id,
                                   "last_event_at": last_move.isoformat()}))
    return True
