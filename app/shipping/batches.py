"""The label batch: buy a label per order (never twice), then ONE print file and a handover list for the courier."""
from __future__ import annotations

import datetime as dt
import io
import logging
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.automations.signals import emit_signal
from app.jobs.queue import enqueue
from app.jobs.registry import job_kind
from app.jobs.runner import PermanentJobError, RetryLater
from app.models import CourierAccount, LabelBatch, Order, Shipment, Shop, ShopAlert, utcnow
from app.shipping.accounts import courier_for, shipment_request, tracking_url
from app.shipping.tracking import first_poll_at
from connectors.couriers import Capability, CourierRefused, print_sheet
from connectors.errors import AmbiguousOutcome, AuthError, ConnectorError, RateLimited, TemporaryError
from connectors.records import LabelDocument, Money, ShipmentResult

log = logging.getLogger(__name__)

LABEL_SIZES = ("a4_4up", "100x150", "a6")
LABEL_FORMATS = ("pdf", "zpl")
LABELS_PER_CALL = 50  # one label request per this many shipments: couriers cap how many they print at once
PRINT_MEDIA = {"pdf": "application/pdf", "zpl": "application/octet-stream"}
# A "creating" shipment younger than this may have its create call in flight (connect 5 s + read 30 s, retried):
# another batch must not look it up and buy it again meanwhile. Older, it was a crash: treated as ambiguous.
IN_FLIGHT = dt.timedelta(minutes=3)
WRITE_BACK_JOBS = {"shopify": "shopify.fulfill_shipment", "woocommerce": "woocommerce.write_tracking"}


def create_batch(session: Session, shop_id: int, order_ids: list[int], account: CourierAccount, *,
                 service: str | None = None, label_size: str = "a4_4up", label_format: str = "pdf",
                 requested_by: str | None = None) -> LabelBatch:
    """A batch row and its job, in the caller's transaction."""
    if label_size not in LABEL_SIZES or label_format not in LABEL_FORMATS:
        raise ValueError(f"unknown label size or format {label_size!r}/{label_format!r}")
    if label_format == "zpl" and not courier_for(account).can(Capability.LABEL_ZPL):
        raise ValueError(f"{account.courier} prints no ZPL labels")
    batch = LabelBatch(shop_id=shop_id, courier=account.courier, courier_account_id=account.id,
                       service=service or account.default_service, label_size=label_size, label_format=label_format,
                       status="queued", order_ids=[int(i) for i in dict.fromkeys(order_ids)], failures={},
                       requested_by=requested_by)
    session.add(batch)
    session.flush()
    enqueue(session, "shipping.label_batch", shop_id=shop_id, dedupe_key=f"label_batch:{batch.id}:0", batch_id=batch.id)
    return batch


def retry_batch(session: Session, batch: LabelBatch) -> None:
    """Run the batch again: orders that got a label keep it (reused, reprinted), the failed ones are tried anew."""
    if batch.status in ("queued", "running"):
        return
    batch.status = "queued"
    enqueue(session, "shipping.label_batch", shop_id=batch.shop_id, batch_id=batch.id)


# --- the job -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Plan:
    shipment_id: int
    request: object | None  # ShipmentRequest to send, or None when a live shipment is reused
    after_ambiguous: bool
    first_attempt_at: dt.datetime | None


@job_kind("shipping.label_batch", max_attempts=4, lease_seconds=1800)
def label_batch(ctx, batch_id: int) -> None:
    """Per order: reuse its live shipment or buy one (progress committed per order); then one print file."""
    try:
        _label_batch(ctx, batch_id)
    except (PermanentJobError, RetryLater):
        raise
    except Exception as exc:
        if ctx.attempt >= ctx.max_attempts:  # no retry follows: let staff retry it from the page
            with ctx.sessions.begin() as session:
                batch = session.get(LabelBatch, batch_id)
                if batch is not None:
                    batch.status = "interrupted"
                    batch.failures = {**(batch.failures or {}), "_print": {"message": f"stopped: {exc}"[:1000]}}
        raise


def _label_batch(ctx, batch_id: int) -> None:
    with ctx.sessions.begin() as session:
        batch = session.get(LabelBatch, batch_id)
        if batch is None:
            raise PermanentJobError(f"label batch {batch_id} does not exist")
        account = session.get(CourierAccount, batch.courier_account_id)
        if account is None:
            raise PermanentJobError(f"label batch {batch_id} has no courier account")
        batch.status, batch.done_count, batch.failed_count, batch.failures = "running", 0, 0, {}
        order_ids, service = list(batch.order_ids), batch.service
        label_size, label_format = batch.label_size, batch.label_format or "pdf"
        platform = session.get(Shop, ctx.shop_id).platform
    courier = courier_for(account)
    for order_id in order_ids:
        stop = _ship_order(ctx, courier, account, batch_id, order_id, service, platform)
        if stop:
            _fail_rest(ctx, batch_id, order_ids[order_ids.index(order_id) + 1:], stop)
            break
    try:
        content = _print_file(ctx, courier, account.id, order_ids, label_size, label_format)
    except (RateLimited, TemporaryError) as exc:
        _note_print_failure(ctx, batch_id, str(exc))
        raise RetryLater(getattr(exc, "retry_after", None) or 60, f"labels not printed yet: {exc}") from None
    except ConnectorError as exc:
        _note_print_failure(ctx, batch_id, str(exc))
        return
    batch = ctx.session.get(LabelBatch, batch_id)
    batch.print_file = content
    batch.status = "done" if batch.failed_count == 0 else ("failed" if batch.done_count == 0 else "partial")
    batch.finished_at = utcnow()
    log.info("label batch printed", extra={"batch_id": batch_id, "done": batch.done_count, "failed": batch.failed_count})


def _ship_order(ctx, courier, account: CourierAccount, batch_id: int, order_id: int, service: str | None,
                platform: str) -> str | None:
    """One order of the batch; returns a reason to stop the whole batch (credentials refused), else None."""
    try:
        plan = _plan(ctx, account, batch_id, order_id, service)
    except (_Skip, ValueError, ArithmeticError) as skip:  # ArithmeticError: a malformed parcel weight in the account
        _record_failure(ctx, batch_id, order_id, str(skip), {})
        return None
    if plan.request is None:
        _record_done(ctx, batch_id, plan.shipment_id, None, platform, new=False)
        return None
    try:
        result = courier.create_shipment(plan.request, after_ambiguous=plan.after_ambiguous,
                                         first_attempt_at=plan.first_attempt_at)
    except CourierRefused as refused:
        _forget_attempt(ctx, plan.shipment_id)  # the courier said no: nothing was bought, the reference is free
        _record_failure(ctx, batch_id, order_id, str(refused), refused.errors)
        return None
    except AmbiguousOutcome as unknown:
        _mark_unknown(ctx, plan.shipment_id)
        _record_failure(ctx, batch_id, order_id, f"outcome unknown, checked again on retry: {unknown}", {},
                        ambiguous=True)
        return None
    except AuthError as refused:
        _forget_attempt(ctx, plan.shipment_id) if not plan.after_ambiguous else _mark_unknown(ctx, plan.shipment_id)
        _record_failure(ctx, batch_id, order_id, str(refused), {})
        _alert_credentials(ctx, account, str(refused))
        return str(refused)
    except (ConnectorError, ValueError) as exc:  # rate limit, outage, unsupported option: nothing was bought
        _forget_attempt(ctx, plan.shipment_id) if not plan.after_ambiguous else _mark_unknown(ctx, plan.shipment_id)
        _record_failure(ctx, batch_id, order_id, str(exc), {})
        return None
    _record_done(ctx, batch_id, plan.shipment_id, result, platform, new=True)
    return None


class _Skip(Exception):
    pass


def _plan(ctx, account: CourierAccount, batch_id: int, order_id: int, service: str | None) -> _Plan:
    """Find the order's live shipment with this account, or write a new one's idempotency key BEFORE buying."""
    with ctx.sessions.begin() as session:
        order = session.get(Order, order_id)
        if order is None:
            raise _Skip(f"order {order_id} does not exist")
        live = session.scalars(select(Shipment).where(
            Shipment.order_id == order_id, Shipment.courier_account_id == account.id,
            Shipment.status != "cancelled").order_by(Shipment.id.desc())).first()
        if live is not None and live.status not in ("unknown", "creating"):
            live.label_batch_id = batch_id
            return _Plan(live.id, None, False, None)
        if live is not None and live.status == "creating" and utcnow() - _aware(live.updated_at) < IN_FLIGHT:
            raise _Skip("this order's label is being bought by another batch right now; retry in a minute")
        if live is not None:  # an earlier attempt may have bought it (ambiguous answer, or a crash): look first
            live.status, live.label_batch_id = "creating", batch_id
            request = shipment_request(order, account, live.idempotency_key, live.service or service)
            return _Plan(live.id, request, True, live.created_at)
        cancelled = session.scalar(select(func.count()).select_from(Shipment).where(
            Shipment.order_id == order_id, Shipment.courier_account_id == account.id, Shipment.status == "cancelled"))
        # A re-buy after a cancel needs a fresh reference: some couriers refuse a reused one even then.
        reference = f"S{ctx.shop_id}-O{order_id}-A{account.id}" + (f"-R{cancelled}" if cancelled else "")
        request = shipment_request(order, account, reference, service)
        shipment = Shipment(shop_id=ctx.shop_id, order_id=order_id, label_batch_id=batch_id,
                            courier_account_id=account.id, courier=account.courier, service=request.service,
                            idempotency_key=reference, status="creating", tracking_numbers=[])
        session.add(shipment)
        try:
            session.flush()
        except IntegrityError:
            raise _Skip("another print of this order is in progress; retry in a moment") from None
        return _Plan(shipment.id, request, False, shipment.created_at)


def _forget_attempt(ctx, shipment_id: int) -> None:
    with ctx.sessions.begin() as session:
        shipment = session.get(Shipment, shipment_id)
        if shipment is not None and shipment.status == "creating" and not shipment.tracking_numbers:
            session.delete(shipment)


def _mark_unknown(ctx, shipment_id: int) -> None:
    """The courier may hold a shipment we have no number for: staff see it, a retry looks before buying."""
    with ctx.sessions.begin() as session:
        shipment = session.get(Shipment, shipment_id)
        if shipment is not None and shipment.status == "creating":
            shipment.status = "unknown"


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)


def _record_failure(ctx, batch_id: int, order_id: int, message: str, errors: dict, *, ambiguous: bool = False) -> None:
    with ctx.sessions.begin() as session:
        batch = session.get(LabelBatch, batch_id)
        order = session.get(Order, order_id)
        failures = dict(batch.failures or {})
        failures[str(order_id)] = {"order_number": order.number if order else str(order_id), "message": message[:1000],
                                   "errors": errors, "ambiguous": ambiguous}
        batch.failures = failures
        batch.failed_count = len([key for key in failures if not key.startswith("_")])


def _fail_rest(ctx, batch_id: int, order_ids: list[int], reason: str) -> None:
    for order_id in order_ids:
        _record_failure(ctx, batch_id, order_id, f"not tried: {reason}", {})


def _record_done(ctx, batch_id: int, shipment_id: int, result: ShipmentResult | None, platform: str, *, new: bool) -> None:
    """Progress for one order; for a new label also the store write-back job and the "shipped" signal, atomically."""
    now = utcnow()
    with ctx.sessions.begin() as session:
        shipment = session.get(Shipment, shipment_id)
        if result is not None:
            shipment.tracking_numbers = list(result.tracking_numbers)
            shipment.shipment_ref = result.shipment_id
            shipment.tracking_url = tracking_url(shipment.courier, result.tracking_numbers[0] if result.tracking_numbers else None)
            shipment.status = "created"
            shipment.status_raw = None
            if result.cost is not None:
                shipment.cost, shipment.currency = result.cost.amount, result.cost.currency
            if result.label is not None:
                shipment.label, shipment.label_format = result.label.content, result.label.format
            shipment.next_poll_at = first_poll_at(shipment.courier, now)
        session.execute(update(LabelBatch).where(LabelBatch.id == batch_id)
                        .values(done_count=LabelBatch.done_count + 1))
        if new and shipment.tracking_numbers:
            announce_shipped(session, shipment, platform)


def announce_shipped(session: Session, shipment: Shipment, platform: str) -> None:
    """Tracking to the store (its own job) and the "shipped" signal for the flows, once per shipment."""
    order = session.get(Order, shipment.order_id) if shipment.order_id else None
    kind = WRITE_BACK_JOBS.get(platform)
    if kind is not None and order is not None:
        enqueue(session, kind, shop_id=shipment.shop_id, dedupe_key=f"store_tracking:shipment:{shipment.id}",
                shipment_id=shipment.id)
    emit_signal(session, shipment.shop_id, "fulfillment_created", dedupe_key=f"fulfillment_created:shipment:{shipment.id}",
                customer_id=order.customer_id if order else None,
                subject=("order", order.id) if order else None,
                payload={"shipment_id": shipment.id, "order_id": shipment.order_id, "courier": shipment.courier,
                         "tracking_number": shipment.tracking_numbers[0], "tracking_url": shipment.tracking_url,
                         "status": "created"})


def _alert_credentials(ctx, account: CourierAccount, message: str) -> None:
    with ctx.sessions.begin() as session:
        session.add(ShopAlert(shop_id=ctx.shop_id, kind="courier_auth",
                              message=f"{account.name}: the courier refused our credentials; check the account",
                              details={"courier_account_id": account.id, "error": message[:500]}))


def _note_print_failure(ctx, batch_id: int, message: str) -> None:
    with ctx.sessions.begin() as session:
        batch = session.get(LabelBatch, batch_id)
        batch.failures = {**(batch.failures or {}), "_print": {"message": message[:1000]}}
        batch.status = "print_failed"


# --- the print file ------------------------------------------------------------------------------------------

def batch_shipments(session: Session, account_id: int, order_ids: list[int]) -> list[Shipment]:
    """The live, labelled shipments of these orders with this account, in the batch's order."""
    rows = session.scalars(select(Shipment).where(
        Shipment.order_id.in_(order_ids), Shipment.courier_account_id == account_id,
        Shipment.status.not_in(("cancelled", "unknown", "creating")))).all()
    by_order = {row.order_id: row for row in sorted(rows, key=lambda row: row.id)}
    return [by_order[order_id] for order_id in order_ids if order_id in by_order]


def _as_result(shipment: Shipment) -> ShipmentResult:
    label = LabelDocument(shipment.label, shipment.label_format or "pdf", "a6") if shipment.label else None
    return ShipmentResult(shipment.idempotency_key, tuple(shipment.tracking_numbers or ()), courier=shipment.courier,
                          shipment_id=shipment.shipment_ref, label=label,
                          cost=Money(shipment.cost, shipment.currency) if shipment.cost is not None and shipment.currency else None)


def label_documents(courier, shipments: list[Shipment], label_format: str):
    """The labels of `shipments`, fetched in as few courier calls as it allows (kept labels are not fetched)."""
    pending: list[ShipmentResult] = []
    for shipment in shipments:
        if shipment.label and (shipment.label_format or "pdf") == label_format:
            if pending:
                yield from _fetch(courier, pending, label_format)
                pending = []
            yield LabelDocument(shipment.label, label_format, "a6")
            continue
        pending.append(_as_result(shipment))
        if len(pending) >= LABELS_PER_CALL:
            yield from _fetch(courier, pending, label_format)
            pending = []
    if pending:
        yield from _fetch(courier, pending, label_format)


def _fetch(courier, results: list[ShipmentResult], label_format: str):
    yield courier.label(results, label_format, "a6")


def write_print_file(documents, out, label_size: str, label_format: str) -> int:
    if label_format == "zpl":
        return print_sheet.write_zpl(documents, out)
    writer = {"a4_4up": print_sheet.write_a4_4up, "100x150": print_sheet.write_100x150, "a6": print_sheet.write_a6}
    return writer[label_size](documents, out)


def _print_file(ctx, courier, account_id: int, order_ids: list[int], label_size: str, label_format: str) -> bytes | None:
    with ctx.sessions() as session:
        shipments = batch_shipments(session, account_id, order_ids)
    if not shipments:
        return None
    out = io.BytesIO()
    write_print_file(label_documents(courier, shipments, label_format), out, label_size, label_format)
    return out.getvalue()


def print_filename(batch: LabelBatch) -> str:
    suffix = "zpl" if batch.label_format == "zpl" else "pdf"
    return f"labels-{batch.courier}-{batch.id}-{batch.label_size}.{suffix}"


# --- the handover list ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HandoverLine:
    order_number: str
    recipient: str
    city: str
    tracking_numbers: tuple[str, ...]
    parcels: int
    cash_on_delivery: str


def handover_lines(session: Session, batch: LabelBatch) -> list[HandoverLine]:
    """What the driver signs for: one line per shipment of the batch."""
    from app.shipping.accounts import is_cod, recipient_of

    lines = []
    for shipment in batch_shipments(session, batch.courier_account_id, list(batch.order_ids)):
        order = session.get(Order, shipment.order_id)
        recipient = recipient_of(order)
        lines.append(HandoverLine(order.number or str(order.id), recipient.name, recipient.city,
                                  tuple(shipment.tracking_numbers or ()), max(1, len(shipment.tracking_numbers or ())),
                                  f"{order.total} {order.currency}" if is_cod(order) else ""))
    return lines
