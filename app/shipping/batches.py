"""The label batch: buy a label per order (never twice), then ONE print file and a handover list for the courier."""
from __future__ import annotations

import datetime as dt
import io
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.jobs.queue import enqueue, enqueue_many
from app.jobs.registry import job_kind
from app.jobs.runner import PermanentJobError, RetryLater
from app.automations.signals import SignalFact, emit_signals
from app.models import CourierAccount, LabelBatch, Order, Shipment, Shop, ShopAlert, utcnow
from app.shipping.accounts import courier_for, shipment_request, tracking_url
from app.shipping.tracking import first_poll_at
from connectors.couriers import Capability, print_sheet
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
# Orders whose answers are committed together: what the progress bar moves by, and what a crash can leave
# "creating" (to be looked up by reference on the retry, never bought blindly).
CREATE_ROUND = 100
# Shipments that are over: the order may be shipped again, under a fresh reference.
ENDED = ("cancelled", "returned_to_sender")
# Shipments without a label to print: being bought, outcome unknown, or waiting for the courier's number.
NOT_PRINTABLE = ("creating", "unknown", "confirming")
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
    if batch.status in ("queued", "running", "confirming"):
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
    order_id: int = 0
    new_index: int | None = None  # position among the rows this plan inserts, until they have ids


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
    plans = _plan_batch(ctx, account, batch_id, order_ids, service)
    pending = [plan for plan in plans if plan.request is not None]
    stop: AuthError | None = None
    for start in range(0, len(pending), CREATE_ROUND):
        round_ = pending[start:start + CREATE_ROUND]
        if stop is not None:
            _settle(ctx, account, batch_id, round_, {p.shipment_id: stop for p in round_}, platform, not_tried=True)
            continue
        outcomes = _buy(courier, round_)
        stop = _settle(ctx, account, batch_id, round_, outcomes, platform)
    if _awaiting_numbers(ctx, account.id, order_ids):
        _wait_for_numbers(ctx, batch_id)
        return
    _finish(ctx, courier, batch_id, account.id, order_ids, label_size, label_format)


def _finish(ctx, courier, batch_id: int, account_id: int, order_ids: list[int], label_size: str,
            label_format: str) -> None:
    """The print file of everything the batch bought or reused, and the batch's final status."""
    try:
        content = _print_file(ctx, courier, account_id, order_ids, label_size, label_format)
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


# --- tracking numbers that arrive after the create (InPost ShipX) ----------------------------------------------

CONFIRM_WAITS = (2, 5, 10, 20, 30, 60, 120, 300)  # seconds between reads; ShipX usually confirms within seconds


def _awaiting_numbers(ctx, account_id: int, order_ids: list[int]) -> list[int]:
    with ctx.sessions() as session:
        return list(session.scalars(select(Shipment.id).where(
            Shipment.order_id.in_(order_ids), Shipment.courier_account_id == account_id,
            Shipment.status == "confirming")))


def _wait_for_numbers(ctx, batch_id: int) -> None:
    with ctx.sessions.begin() as session:
        session.get(LabelBatch, batch_id).status = "confirming"
        enqueue(session, "shipping.confirm_shipments", shop_id=ctx.shop_id, batch_id=batch_id,
                due_at=utcnow() + dt.timedelta(seconds=CONFIRM_WAITS[0]))


@job_kind("shipping.confirm_shipments", max_attempts=len(CONFIRM_WAITS) + 1, lease_seconds=600)
def confirm_shipments(ctx, batch_id: int) -> None:
    """Read back the batch's shipments the courier has not numbered yet; once all have a number (or we stop
    waiting), print the batch. A newly numbered shipment is announced like any other."""
    with ctx.sessions() as session:
        batch = session.get(LabelBatch, batch_id)
        if batch is None or batch.status != "confirming":
            return
        account = session.get(CourierAccount, batch.courier_account_id)
        order_ids, label_size, label_format = list(batch.order_ids), batch.label_size, batch.label_format or "pdf"
        platform = session.get(Shop, ctx.shop_id).platform
        waiting = session.scalars(select(Shipment).where(
            Shipment.order_id.in_(order_ids), Shipment.courier_account_id == account.id,
            Shipment.status == "confirming")).all()
        asked = {row.id: as_result(row) for row in waiting}
    courier = courier_for(account)
    answers: dict[int, ShipmentResult] = {}
    for shipment_id, result in asked.items():
        try:
            answers[shipment_id] = courier.confirm(result)
        except (RateLimited, TemporaryError):
            continue  # asked again on the next attempt
    now = utcnow()
    with ctx.sessions.begin() as session:
        numbered = []
        for shipment_id, result in answers.items():
            shipment = session.get(Shipment, shipment_id)
            if shipment is not None and shipment.status == "confirming" and result.tracking_numbers:
                _apply_result(shipment, result, now)
                numbered.append(shipment)
        session.flush()
        announce_shipped(session, numbered, platform)
    still = len(asked) - len(numbered)
    if still and ctx.attempt < ctx.max_attempts:
        raise RetryLater(CONFIRM_WAITS[min(ctx.attempt, len(CONFIRM_WAITS) - 1)],
                         f"{still} shipment(s) not numbered by {account.courier} yet")
    if still:
        with ctx.sessions.begin() as session:
            batch = session.get(LabelBatch, batch_id)
            failures = dict(batch.failures or {})
            for shipment in session.scalars(select(Shipment).where(
                    Shipment.id.in_(list(asked)), Shipment.status == "confirming")):
                order = session.get(Order, shipment.order_id)
                failures[str(shipment.order_id)] = {
                    "order_number": order.number if order else str(shipment.order_id), "errors": {},
                    "ambiguous": False,
                    "message": f"{account.courier} has not given shipment {shipment.shipment_ref} a tracking number "
                               f"yet; its label is not printed. Retry the batch later (nothing is bought again)."}
            batch.failures = failures
            batch.failed_count = len([key for key in failures if not key.startswith("_")])
            batch.done_count = max(0, (batch.done_count or 0) - still)
    _finish(ctx, courier, batch_id, account.id, order_ids, label_size, label_format)


def _buy(courier, plans: list[_Plan]) -> dict[int, object]:
    """The courier's answer per planned shipment: new ones in bulk or side by side, looked-up ones one by one."""
    outcomes: dict[int, object] = {}
    fresh = [plan for plan in plans if not plan.after_ambiguous]
    for plan, outcome in zip(fresh, courier.create_shipments([plan.request for plan in fresh])):
        outcomes[plan.shipment_id] = outcome
    for plan in plans:
        if plan.after_ambiguous:
            try:
                outcomes[plan.shipment_id] = courier.create_shipment(
                    plan.request, after_ambiguous=True, first_attempt_at=plan.first_attempt_at)
            except (ConnectorError, ValueError) as exc:
                outcomes[plan.shipment_id] = exc
    return outcomes


def _settle(ctx, account: CourierAccount, batch_id: int, plans: list[_Plan], outcomes: dict[int, object],
            platform: str, *, not_tried: bool = False) -> AuthError | None:
    """One transaction for a round of answers: shipments, progress, failures, write-backs and signals together."""
    refused: AuthError | None = None
    now = utcnow()
    with ctx.sessions.begin() as session:
        shipments = {row.id: row for row in session.scalars(
            select(Shipment).where(Shipment.id.in_([plan.shipment_id for plan in plans])))}
        orders = {row.id: row for row in session.execute(  # the few columns needed, not whole orders
            select(Order.id, Order.number, Order.customer_id).where(Order.id.in_([plan.order_id for plan in plans])))}
        batch = session.get(LabelBatch, batch_id)
        failures = dict(batch.failures or {})
        done, bought = 0, []
        for plan in plans:
            shipment, outcome = shipments.get(plan.shipment_id), outcomes.get(plan.shipment_id)
            order = orders.get(plan.order_id)
            number = order.number if order is not None and order.number else str(plan.order_id)
            if isinstance(outcome, ShipmentResult) and shipment is not None:
                _apply_result(shipment, outcome, now)
                done += 1
                bought.append(shipment)
                continue
            ambiguous = isinstance(outcome, AmbiguousOutcome)
            if ambiguous or plan.after_ambiguous:
                if shipment is not None and shipment.status == "creating":
                    shipment.status = "unknown"  # the courier may hold one we have no number for: look before buying
            elif shipment is not None and shipment.status == "creating" and not shipment.tracking_numbers:
                session.delete(shipment)  # nothing was bought: the reference is free again
            if isinstance(outcome, AuthError) and refused is None:
                refused = outcome
            message = str(outcome)
            if not_tried:
                message = f"not tried: {message}"
            elif ambiguous:
                message = f"outcome unknown, checked again on retry: {message}"
            failures[str(plan.order_id)] = {"order_number": number, "message": message[:1000],
                                            "errors": getattr(outcome, "errors", {}) or {}, "ambiguous": ambiguous}
        batch.failures = failures
        batch.failed_count = len([key for key in failures if not key.startswith("_")])
        batch.done_count = (batch.done_count or 0) + done
        session.flush()  # the shipments' numbers first: the write-back jobs may run as soon as this commits
        announce_shipped(session, bought, platform, orders)
        if refused is not None and not not_tried:
            session.add(ShopAlert(shop_id=ctx.shop_id, kind="courier_auth",
                                  message=f"{account.name}: the courier refused our credentials; check the account",
                                  details={"courier_account_id": account.id, "error": str(refused)[:500]}))
    return refused


def _apply_result(shipment: Shipment, result: ShipmentResult, now: dt.datetime) -> None:
    shipment.tracking_numbers = list(result.tracking_numbers)
    shipment.shipment_ref = result.shipment_id
    shipment.tracking_url = tracking_url(shipment.courier, result.tracking_numbers[0] if result.tracking_numbers else None)
    # Couriers that number shipments later (InPost) answer with only their id: no label, nothing to track yet.
    shipment.status = "created" if result.tracking_numbers else "confirming"
    shipment.status_raw = None
    if result.cost is not None:
        shipment.cost, shipment.currency = result.cost.amount, result.cost.currency
    if result.label is not None:
        shipment.label, shipment.label_format = result.label.content, result.label.format
    shipment.next_poll_at = first_poll_at(shipment.courier, now) if result.tracking_numbers else None


class _Skip(Exception):
    pass




def _plan_batch(ctx, account: CourierAccount, batch_id: int, order_ids: list[int], service: str | None) -> list[_Plan]:
    """Every order's plan in one transaction: reuse its live shipment, or write the new one's idempotency key
    BEFORE buying. Orders that cannot be shipped are listed as failures here."""
    try:
        with ctx.sessions.begin() as session:
            orders = {row.id: row for row in session.scalars(select(Order).where(Order.id.in_(order_ids)))}
            by_order: dict[int, list[Shipment]] = {}
            for row in session.scalars(select(Shipment).where(
                    Shipment.order_id.in_(order_ids), Shipment.courier_account_id == account.id).order_by(Shipment.id)):
                by_order.setdefault(row.order_id, []).append(row)
            batch = session.get(LabelBatch, batch_id)
            failures = dict(batch.failures or {})
            plans, new, reused = [], [], 0
            for order_id in order_ids:
                try:
                    plan = _plan_order(ctx, session, account, batch_id, orders.get(order_id), order_id,
                                       by_order.get(order_id, []), service, new)
                except (_Skip, ValueError, ArithmeticError) as skip:  # ArithmeticError: a malformed parcel weight
                    order = orders.get(order_id)
                    failures[str(order_id)] = {"order_number": order.number if order and order.number else str(order_id),
                                               "message": str(skip)[:1000], "errors": {}, "ambiguous": False}
                    continue
                reused += plan.request is None
                plans.append(plan)
            session.add_all(new)
            session.flush()  # ids, and the unique idempotency keys, written before any courier call
            plans = [replace(plan, shipment_id=new[plan.new_index].id, first_attempt_at=new[plan.new_index].created_at)
                     if plan.new_index is not None else plan for plan in plans]
            batch.failures = failures
            batch.failed_count = len([key for key in failures if not key.startswith("_")])
            batch.done_count = reused
            return plans
    except IntegrityError:
        # Another print of one of these orders wrote its key first: plan order by order to find which.
        return _plan_one_by_one(ctx, account, batch_id, order_ids, service)


def _plan_order(ctx, session: Session, account: CourierAccount, batch_id: int, order: Order | None, order_id: int,
                rows: list[Shipment], service: str | None, new: list[Shipment]) -> _Plan:
    if order is None:
        raise _Skip(f"order {order_id} does not exist")
    live = next((row for row in reversed(rows) if row.status not in ENDED), None)
    if live is not None and live.status not in ("unknown", "creating"):
        live.label_batch_id = batch_id
        return _Plan(live.id, None, False, None, order_id)
    if live is not None and live.status == "creating" and utcnow() - _aware(live.updated_at) < IN_FLIGHT:
        raise _Skip("this order's label is being bought by another batch right now; retry in a minute")
    if live is not None:  # an earlier attempt may have bought it (ambiguous answer, or a crash): look first
        live.status, live.label_batch_id = "creating", batch_id
        request = shipment_request(order, account, live.idempotency_key, live.service or service)
        return _Plan(live.id, request, True, live.created_at, order_id)
    ended = sum(1 for row in rows if row.status in ENDED)
    # A re-ship after a cancel or a return needs a fresh reference: some couriers refuse a reused one even then.
    reference = f"S{ctx.shop_id}-O{order_id}-A{account.id}" + (f"-R{ended}" if ended else "")
    request = shipment_request(order, account, reference, service)
    new.append(Shipment(shop_id=ctx.shop_id, order_id=order_id, label_batch_id=batch_id,
                        courier_account_id=account.id, courier=account.courier, service=request.service,
                        idempotency_key=reference, status="creating", tracking_numbers=[]))
    return _Plan(0, request, False, None, order_id, len(new) - 1)


def _plan_one_by_one(ctx, account: CourierAccount, batch_id: int, order_ids: list[int], service: str | None) -> list[_Plan]:
    plans = []
    for order_id in order_ids:
        try:
            with ctx.sessions.begin() as session:
                rows = list(session.scalars(select(Shipment).where(
                    Shipment.order_id == order_id, Shipment.courier_account_id == account.id).order_by(Shipment.id)))
                new: list[Shipment] = []
                plan = _plan_order(ctx, session, account, batch_id, session.get(Order, order_id), order_id, rows,
                                   service, new)
                if new:
                    session.add(new[0])
                    try:
                        session.flush()
                    except IntegrityError:
                        raise _Skip("another print of this order is in progress; retry in a moment") from None
                    plan = _Plan(new[0].id, plan.request, False, new[0].created_at, order_id)
                elif plan.request is None:
                    session.execute(update(LabelBatch).where(LabelBatch.id == batch_id)
                                    .values(done_count=LabelBatch.done_count + 1))
            plans.append(plan)
        except (_Skip, ValueError, ArithmeticError) as skip:
            _record_failure(ctx, batch_id, order_id, str(skip), {})
    return plans


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


def announce_shipped(session: Session, shipments: list[Shipment], platform: str, orders: dict | None = None) -> None:
    """Tracking to the store (a job per shipment) and the "shipped" signal for the flows, once per shipment.

    Two INSERT ... ON CONFLICT DO NOTHING statements for the lot (`enqueue_many`, `emit_signals`), under the same
    dedupe keys as `enqueue` and `emit_signal` use: a 500-label batch would otherwise spend most of its database time on a thousand single-row statements.
    """
    shipments = [shipment for shipment in shipments if shipment.tracking_numbers]
    if not shipments:
        return
    orders = orders if orders is not None else {}
    for shipment in shipments:
        if shipment.order_id and shipment.order_id not in orders:
            orders[shipment.order_id] = session.get(Order, shipment.order_id)
    now = utcnow()
    kind = WRITE_BACK_JOBS.get(platform)
    if kind is not None:
        enqueue_many(session, kind, [(shipment.shop_id, f"store_tracking:shipment:{shipment.id}", {"shipment_id": shipment.id})
                                     for shipment in shipments if orders.get(shipment.order_id) is not None])
    emit_signals(session, [SignalFact(
        shipment.shop_id, "fulfillment_created", f"fulfillment_created:shipment:{shipment.id}",
        customer_id=order.customer_id if order else None, subject=("order", order.id) if order else None,
        payload={"shipment_id": shipment.id, "order_id": shipment.order_id, "courier": shipment.courier,
                 "tracking_number": shipment.tracking_numbers[0], "tracking_url": shipment.tracking_url,
                 "status": "created"}) for shipment in shipments for order in [orders.get(shipment.order_id)]], now)


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
        Shipment.status.not_in(ENDED + NOT_PRINTABLE))).all()
    by_order = {row.order_id: row for row in sorted(rows, key=lambda row: row.id)}
    return [by_order[order_id] for order_id in order_ids if order_id in by_order]


def as_result(shipment: Shipment) -> ShipmentResult:
    label = LabelDocument(shipment.label, shipment.label_format or "pdf", "a6") if shipment.label else None
    return ShipmentResult(shipment.idempotency_key, tuple(shipment.tracking_numbers or ()), courier=shipment.courier,
                          shipment_id=shipment.shipment_ref, label=label,
                          cost=Money(shipment.cost, shipment.currency) if shipment.cost is not None and shipment.currency else None)


def label_documents(courier, shipments: list[Shipment], label_format: str):
    """The labels of `shipments` in order, fetched in as few courier calls as it allows (kept labels are not
    fetched), those calls side by side up to the courier's concurrency."""
    segments: list[LabelDocument | list[ShipmentResult]] = []
    for shipment in shipments:
        if shipment.label and (shipment.label_format or "pdf") == label_format:
            segments.append(LabelDocument(shipment.label, label_format, "a6"))
        elif segments and isinstance(segments[-1], list) and len(segments[-1]) < LABELS_PER_CALL:
            segments[-1].append(as_result(shipment))
        else:
            segments.append([as_result(shipment)])
    calls = [segment for segment in segments if isinstance(segment, list)]
    if len(calls) <= 1:
        for segment in segments:
            yield segment if isinstance(segment, LabelDocument) else courier.label(segment, label_format, "a6")
        return
    with ThreadPoolExecutor(min(courier.max_concurrency, len(calls)), thread_name_prefix="labels") as pool:
        fetched = {id(call): pool.submit(courier.label, call, label_format, "a6") for call in calls}
        for segment in segments:
            yield segment if isinstance(segment, LabelDocument) else fetched[id(segment)].result()


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
