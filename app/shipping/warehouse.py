"""The print station (/warehouse): staff pick ready orders, print one file of labels, hand parcels over, scan to pack."""
from __future__ import annotations

import datetime as dt
import functools
import hmac
import io
import math
import re
import secrets
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request, send_file, session, url_for
from sqlalchemy import or_, select
from werkzeug.security import check_password_hash, generate_password_hash

from app import db
from app.models import CourierAccount, CourierPickup, LabelBatch, Order, Shipment, Shop, utcnow
from app.shipping.accounts import account_for_method, active_accounts, courier_for, is_cod, is_ready_to_ship, recipient_of
from app.shipping.addresses import address_problems
from app.shipping.pickups import (
    CancelRefused, CancelUnconfirmed, CourierUnavailable, NoCourierDocument, PickupNotPossible, can_cancel_pickup,
    can_request_pickup, cancel_pickup, courier_document_offered, courier_handover, pickups_of, request_pickup,
    settle_cancel,
)
from app.shipping.batches import (
    ENDED, PRINT_MEDIA, as_result, batch_shipments, create_batch, handover_lines, print_filename, retry_batch,
)
from app.storefront.ratelimit import count_hits
from app.tenancy import shop_context
from connectors.couriers import Capability, courier_class
from connectors.errors import ConnectorError, RateLimited

warehouse = Blueprint("warehouse", __name__, url_prefix="/warehouse", template_folder="templates",
                      static_folder="static", static_url_path="/static")

CODE_SETTING = "warehouse_code_hash"
ORDERS_SHOWN = 500
FULFILLED = ("fulfilled", "shipped", "completed")
LOGIN_ATTEMPTS_PER_MINUTE = 10  # per shop: a code of 6+ characters then takes years to guess


def set_access_code(shop: Shop, code: str) -> None:
    """Store the shop's warehouse code hashed; staff type it once per browser session."""
    if len(code) < 6:
        raise ValueError("a warehouse code has at least 6 characters")
    shop.settings = {**(shop.settings or {}), CODE_SETTING: generate_password_hash(code)}


def _csrf_token() -> str:
    token = session.get("warehouse_csrf")
    if token is None:
        token = session["warehouse_csrf"] = secrets.token_urlsafe(24)
    return token


@warehouse.app_context_processor
def _template_helpers():
    return {"csrf_token": _csrf_token}


def staff_only(view):
    """The shop's code was entered in this browser session; POSTs carry the session's CSRF token."""
    @functools.wraps(view)
    def guarded(shop_id: int, **kwargs):
        if shop_id not in session.get("warehouse_shops", []):
            if request.method == "GET" and not request.path.endswith(".json"):
                return redirect(url_for("warehouse.login", shop_id=shop_id, next=request.full_path))
            abort(401)
        if request.method == "POST":
            sent = request.form.get("csrf") or request.headers.get("X-CSRF-Token") or ""
            if not hmac.compare_digest(sent, session.get("warehouse_csrf", "")):
                abort(400, "the form is stale; reload the page")
        with shop_context(shop_id):
            return view(shop_id, **kwargs)
    return guarded


@warehouse.route("/<int:shop_id>/login", methods=["GET", "POST"])
def login(shop_id: int):
    session_ = db()
    if request.method == "POST":
        key = f"warehouse-login:{shop_id}"
        tries = count_hits(session_.connection(), [key])[key]
        session_.commit()  # refused tries count too
        if tries > LOGIN_ATTEMPTS_PER_MINUTE:
            abort(429, "too many tries; wait a minute")
    shop = session_.get(Shop, shop_id)
    if shop is None:
        abort(404)
    error = None
    if request.method == "POST":
        stored = (shop.settings or {}).get(CODE_SETTING)
        if stored and check_password_hash(stored, request.form.get("code", "")):
            session["warehouse_shops"] = sorted(set(session.get("warehouse_shops", [])) | {shop_id})
            target = request.args.get("next") or ""
            return redirect(target if target.startswith(f"/warehouse/{shop_id}/") else url_for("warehouse.orders", shop_id=shop_id))
        error = "That code is not right." if stored else "No warehouse code is set for this shop yet."
    return render_template("warehouse/login.html", shop=shop, error=error), (401 if error else 200)


# --- orders ready to ship ------------------------------------------------------------------------------------

def _ready_orders(session, accounts, filters: dict, zone: ZoneInfo) -> list[dict]:
    """Orders not cancelled, without a live shipment, not fulfilled unless their parcel came back; paid or COD."""
    live = select(Shipment.id).where(Shipment.order_id == Order.id, Shipment.status.not_in(ENDED)).exists()
    # An order whose parcel came back (or was cancelled) is fulfilled at the store, yet ready to ship again.
    ended = select(Shipment.id).where(Shipment.order_id == Order.id, Shipment.status.in_(ENDED)).exists()
    query = (select(Order).where(Order.cancelled_at.is_(None), ~live,
                                 or_(Order.fulfillment_status.is_(None), Order.fulfillment_status.not_in(FULFILLED),
                                     ended))
             .order_by(Order.placed_at.desc(), Order.id.desc()))
    if filters.get("method"):
        query = query.where(Order.shipping_method == filters["method"])
    if filters.get("date_from"):  # the shop's calendar days
        query = query.where(Order.placed_at >= dt.datetime.combine(filters["date_from"], dt.time(), zone))
    if filters.get("date_to"):
        query = query.where(Order.placed_at < dt.datetime.combine(filters["date_to"] + dt.timedelta(days=1), dt.time(), zone))
    rows = []
    for order in session.scalars(query.limit(ORDERS_SHOWN * 4)):
        if not is_ready_to_ship(order):
            continue
        account = account_for_method(accounts, order.shipping_method)
        if filters.get("account") and (account is None or account.id != filters["account"]):
            continue
        recipient = recipient_of(order)
        placed = order.placed_at.replace(tzinfo=order.placed_at.tzinfo or dt.timezone.utc).astimezone(zone) \
            if order.placed_at else None
        rows.append({"order": order, "recipient": recipient, "account": account, "cod": is_cod(order),
                     "placed": placed, "problems": address_problems(recipient)})
    return rows[:ORDERS_SHOWN]


def _date(value: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None


@warehouse.route("/<int:shop_id>/")
@staff_only
def orders(shop_id: int):
    session_ = db()
    shop = session_.get(Shop, shop_id)
    accounts = active_accounts(session_)
    filters = {"account": request.args.get("account", type=int), "method": request.args.get("method") or None,
               "date_from": _date(request.args.get("from")), "date_to": _date(request.args.get("to"))}
    methods = sorted({m for m in session_.scalars(select(Order.shipping_method).distinct()) if m})
    batches = session_.scalars(select(LabelBatch).order_by(LabelBatch.id.desc()).limit(10)).all()
    rows = _ready_orders(session_, accounts, filters, _zone(shop))
    return render_template("warehouse/orders.html", shop=shop, rows=rows, accounts=accounts, methods=methods,
                           filters=filters, batches=batches,
                           zpl={a.id: courier_class(a.courier).can(Capability.LABEL_ZPL) for a in accounts})


def _zone(shop: Shop) -> ZoneInfo:
    try:
        return ZoneInfo(shop.timezone or "UTC")
    except (ValueError, KeyError):
        return ZoneInfo("UTC")


@warehouse.route("/<int:shop_id>/batches", methods=["POST"])
@staff_only
def new_batch(shop_id: int):
    session_ = db()
    order_ids = [int(value) for value in request.form.getlist("order_ids") if value.isdigit()]
    account = session_.get(CourierAccount, request.form.get("account_id", type=int) or 0)
    if not order_ids or account is None:
        abort(400, "choose at least one order and a courier account")
    size = request.form.get("size", "a4_4up")
    label_format, size = ("zpl", "100x150") if size == "zpl" else ("pdf", size)
    try:
        batch = create_batch(session_, shop_id, order_ids, account, service=request.form.get("service") or None,
                             label_size=size, label_format=label_format, requested_by="warehouse")
    except ValueError as exc:
        abort(400, str(exc))
    session_.commit()
    return redirect(url_for("warehouse.batch_page", shop_id=shop_id, batch_id=batch.id), 303)


@warehouse.route("/<int:shop_id>/scan", methods=["POST"])
@staff_only
def scan(shop_id: int):
    """A scanned order number: print its label (reusing its shipment if it has one) and open its batch."""
    session_ = db()
    number = (request.form.get("number") or "").strip().lstrip("#")
    order = session_.scalars(select(Order).where(Order.number.in_([number, f"#{number}"]))).first() if number else None
    if order is None:
        return render_template("warehouse/message.html", shop=session_.get(Shop, shop_id),
                               message=f"No order numbered {number!r}."), 404
    account = account_for_method(active_accounts(session_), order.shipping_method)
    if account is None:
        abort(400, "the shop has no courier account yet")
    batch = create_batch(session_, shop_id, [order.id], account, requested_by="scan")
    session_.commit()
    return redirect(url_for("warehouse.batch_page", shop_id=shop_id, batch_id=batch.id, autoprint=1), 303)


# --- one batch --------------------------------------------------------------------------------------------

def _batch_or_404(batch_id: int) -> LabelBatch:
    batch = db().get(LabelBatch, batch_id)
    if batch is None:
        abort(404)
    return batch


def batch_progress(batch: LabelBatch) -> dict:
    failures = [{"order_id": int(key), **value} for key, value in (batch.failures or {}).items() if not key.startswith("_")]
    return {"id": batch.id, "status": batch.status, "total": len(batch.order_ids or []), "done": batch.done_count,
            "failed": batch.failed_count, "failures": failures, "has_print_file": batch.print_file is not None,
            "print_error": ((batch.failures or {}).get("_print") or {}).get("message"),
            "finished": batch.status in ("done", "partial", "failed", "print_failed", "interrupted")}


@warehouse.route("/<int:shop_id>/batches/<int:batch_id>")
@staff_only
def batch_page(shop_id: int, batch_id: int):
    batch = _batch_or_404(batch_id)
    session_ = db()
    shipments = batch_shipments(session_, batch.courier_account_id, list(batch.order_ids))
    numbers = {o.id: o.number for o in session_.scalars(select(Order).where(Order.id.in_(batch.order_ids)))}
    unknown = session_.scalars(select(Shipment).where(Shipment.label_batch_id == batch.id,
                                                      Shipment.status == "unknown")).all()
    account = session_.get(CourierAccount, batch.courier_account_id)
    pickups = pickups_of(session_, batch)
    needs_pickup = account is not None and courier_class(account.courier).handover_needs_pickup
    return render_template("warehouse/batch.html", shop=session_.get(Shop, shop_id), batch=batch,
                           progress=batch_progress(batch), shipments=shipments, numbers=numbers, unknown=unknown,
                           account=account, autoprint=request.args.get("autoprint") == "1",
                           pickups=pickups, can_pickup=can_request_pickup(account),
                           pickup_note=courier_class(account.courier).pickup_note if account else "",
                           cancellable={p.id for p in pickups if can_cancel_pickup(account, p)},
                           settleable={p.id for p in pickups if p.status == "cancel_unknown"},
                           courier_document=courier_document_offered(account) and bool(shipments) and (
                               not needs_pickup or any(p.status == "requested" for p in pickups)),
                           tomorrow=(utcnow().astimezone(_zone(session_.get(Shop, shop_id))).date()
                                     + dt.timedelta(days=1)).isoformat())


@warehouse.route("/<int:shop_id>/batches/<int:batch_id>.json")
@staff_only
def batch_json(shop_id: int, batch_id: int):
    return jsonify(batch_progress(_batch_or_404(batch_id)))


@warehouse.route("/<int:shop_id>/batches/<int:batch_id>/labels")
@staff_only
def batch_labels(shop_id: int, batch_id: int):
    batch = _batch_or_404(batch_id)
    if batch.print_file is None:
        abort(404, "this batch has no print file (yet)")
    return Response(batch.print_file, mimetype=PRINT_MEDIA[batch.label_format or "pdf"],
                    headers={"Content-Disposition": f'attachment; filename="{print_filename(batch)}"'})


@warehouse.route("/<int:shop_id>/batches/<int:batch_id>/handover")
@staff_only
def handover(shop_id: int, batch_id: int):
    batch = _batch_or_404(batch_id)
    session_ = db()
    lines = handover_lines(session_, batch)
    return render_template("warehouse/handover.html", shop=session_.get(Shop, shop_id), batch=batch, lines=lines,
                           account=session_.get(CourierAccount, batch.courier_account_id),
                           parcels=sum(line.parcels for line in lines), printed_at=utcnow(),
                           pickups=[p for p in pickups_of(session_, batch) if p.status == "requested"])


@warehouse.route("/<int:shop_id>/batches/<int:batch_id>/handover/courier")
@staff_only
def courier_handover_document(shop_id: int, batch_id: int):
    """The courier's own handover printout (dispatch order printout, borderou, protocol), next to our list."""
    batch = _batch_or_404(batch_id)
    session_ = db()
    try:
        document = courier_handover(session_, batch)
    except NoCourierDocument as exc:
        return render_template("warehouse/message.html", shop=session_.get(Shop, shop_id), message=str(exc)), 409
    except ConnectorError as exc:
        page = render_template("warehouse/message.html", shop=session_.get(Shop, shop_id),
                               message=f"The courier did not give its handover document: {exc}")
        return _unavailable(page, exc)
    return send_file(io.BytesIO(document.content), mimetype=document.media_type, as_attachment=True,
                     download_name=courier_document_filename(document.courier, batch_id, document.reference))


def courier_document_filename(courier: str, batch_id: int, reference: str | None) -> str:
    """The download's file name; the courier's document number is its text, so only safe characters of it."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", reference or "").strip("._-")[:64]
    return f"{re.sub(r'[^a-z0-9_]+', '_', courier)}-handover-batch-{batch_id}{'-' + safe if safe else ''}.pdf"


def _unavailable(body, exc: ConnectorError, status: int = 502):
    """A courier that failed while staff waited: 503 with Retry-After when it asked us to slow down, else 502."""
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(exc, RateLimited) or retry_after is not None:
        return body, 503, {"Retry-After": str(max(1, math.ceil(retry_after or 1)))}
    return body, status


def pickup_json(pickup: CourierPickup) -> dict:
    return {"id": pickup.id, "batch_id": pickup.label_batch_id, "courier": pickup.courier,
            "day": pickup.day.isoformat(), "ready_from": pickup.ready_from, "ready_until": pickup.ready_until,
            "parcels": pickup.parcels, "status": pickup.status, "pickup_ref": pickup.pickup_ref,
            "message": pickup.message, "requested_by": pickup.requested_by,
            "cancelled_at": pickup.cancelled_at.isoformat() if pickup.cancelled_at else None,
            "cancelled_by": pickup.cancelled_by}


def _json_error(status: int, code: str, message: str, pickup: CourierPickup | None = None):
    body: dict = {"error": {"code": code, "message": message}}
    if pickup is not None:
        body["pickup"] = pickup_json(pickup)
    return jsonify(body), status


@warehouse.route("/<int:shop_id>/batches/<int:batch_id>/pickups.json")
@staff_only
def batch_pickups_json(shop_id: int, batch_id: int):
    return jsonify({"pickups": [pickup_json(p) for p in pickups_of(db(), _batch_or_404(batch_id))]})


@warehouse.route("/<int:shop_id>/pickups/<int:pickup_id>/cancel", methods=["POST"])
@warehouse.route("/<int:shop_id>/pickups/<int:pickup_id>/cancel.json", methods=["POST"], endpoint="cancel_pickup_json")
@staff_only
def cancel_pickup_view(shop_id: int, pickup_id: int):
    """Call a requested pickup off at the courier. The page form redirects back to the batch; the .json address
    (or a request that accepts only JSON) answers the pickup, or {"error": {"code", "message"}}."""
    session_ = db()
    wants_json = request.path.endswith(".json") or request.accept_mimetypes.best == "application/json"
    pickup = session_.get(CourierPickup, pickup_id)
    if pickup is None:
        if wants_json:
            return _json_error(404, "not_found", f"no pickup {pickup_id} in this shop")
        abort(404)
    batch_id = pickup.label_batch_id
    try:
        pickup = cancel_pickup(session_, pickup, cancelled_by="warehouse")
    except PickupNotPossible as exc:
        if wants_json:
            return _json_error(409, "not_cancellable", str(exc), session_.get(CourierPickup, pickup_id))
        return render_template("warehouse/message.html", shop=session_.get(Shop, shop_id), message=str(exc)), 409
    except CancelRefused as exc:  # the courier read it and said no: the pickup stands
        if wants_json:
            return _json_error(409, "courier_refused", str(exc), exc.pickup)
        return render_template("warehouse/message.html", shop=session_.get(Shop, shop_id),
                               message=f"The courier did not cancel the pickup: {exc}"), 409
    except CancelUnconfirmed as exc:  # the courier's words cannot tell "too late" from "already done"
        if wants_json:
            return _json_error(409, "cancel_unconfirmed", str(exc), exc.pickup)
        return render_template("warehouse/message.html", shop=session_.get(Shop, shop_id),
                               message=f"The courier's answer does not say whether the pickup is cancelled: {exc}"), 409
    except CourierUnavailable as exc:  # not asked, or no clear answer: the row says which
        if wants_json:
            body, _ = _json_error(502, "courier_unavailable", str(exc), exc.pickup)
            return _unavailable(body, exc)
        page = render_template("warehouse/message.html", shop=session_.get(Shop, shop_id),
                               message=f"The courier did not cancel the pickup: {exc}")
        return _unavailable(page, exc)
    if wants_json:
        return jsonify({"pickup": pickup_json(pickup)})
    return redirect(url_for("warehouse.batch_page", shop_id=shop_id, batch_id=batch_id) + "#pickup", 303)


@warehouse.route("/<int:shop_id>/pickups/<int:pickup_id>/settle", methods=["POST"])
@warehouse.route("/<int:shop_id>/pickups/<int:pickup_id>/settle.json", methods=["POST"], endpoint="settle_pickup_json")
@staff_only
def settle_pickup_view(shop_id: int, pickup_id: int):
    """Staff record what the courier's panel shows for a cancel whose outcome is unknown: `outcome` is
    "cancelled" or "standing"."""
    session_ = db()
    wants_json = request.path.endswith(".json") or request.accept_mimetypes.best == "application/json"
    pickup = session_.get(CourierPickup, pickup_id)
    outcome = request.form.get("outcome")
    if pickup is None:
        if wants_json:
            return _json_error(404, "not_found", f"no pickup {pickup_id} in this shop")
        abort(404)
    if outcome not in ("cancelled", "standing"):
        if wants_json:
            return _json_error(400, "bad_outcome", 'outcome is "cancelled" or "standing"', pickup)
        abort(400, 'outcome is "cancelled" or "standing"')
    batch_id = pickup.label_batch_id
    try:
        pickup = settle_cancel(session_, pickup, cancelled=outcome == "cancelled", settled_by="warehouse")
    except PickupNotPossible as exc:
        if wants_json:
            return _json_error(409, "not_settleable", str(exc), session_.get(CourierPickup, pickup_id))
        return render_template("warehouse/message.html", shop=session_.get(Shop, shop_id), message=str(exc)), 409
    if wants_json:
        return jsonify({"pickup": pickup_json(pickup)})
    return redirect(url_for("warehouse.batch_page", shop_id=shop_id, batch_id=batch_id) + "#pickup", 303)


@warehouse.route("/<int:shop_id>/batches/<int:batch_id>/retry", methods=["POST"])
@staff_only
def retry(shop_id: int, batch_id: int):
    batch = _batch_or_404(batch_id)
    retry_batch(db(), batch)
    db().commit()
    return redirect(url_for("warehouse.batch_page", shop_id=shop_id, batch_id=batch_id), 303)


@warehouse.route("/<int:shop_id>/shipments/<int:shipment_id>/reprint", methods=["POST"])
@staff_only
def reprint(shop_id: int, shipment_id: int):
    """A batch of one for this shipment's order: the live shipment is reused, its label fetched again."""
    session_ = db()
    shipment = session_.get(Shipment, shipment_id)
    account = session_.get(CourierAccount, shipment.courier_account_id) if shipment else None
    if shipment is None or account is None or shipment.order_id is None:
        abort(404)
    batch = create_batch(session_, shop_id, [shipment.order_id], account, requested_by="reprint")
    session_.commit()
    return redirect(url_for("warehouse.batch_page", shop_id=shop_id, batch_id=batch.id, autoprint=1), 303)


@warehouse.route("/<int:shop_id>/shipments/<int:shipment_id>/cancel", methods=["POST"])
@staff_only
def cancel(shop_id: int, shipment_id: int):
    """Cancel at the courier (an 'unknown' one only here: staff checked the courier's panel); the order is printable again."""
    session_ = db()
    shipment = session_.get(Shipment, shipment_id)
    if shipment is None:
        abort(404)
    account = session_.get(CourierAccount, shipment.courier_account_id) if shipment.courier_account_id else None
    back = request.form.get("back") or url_for("warehouse.orders", shop_id=shop_id)
    if shipment.status not in ("unknown", "creating") and account is not None:
        courier = courier_for(account, staff_waiting=True)
        result = as_result(shipment)
        session_.rollback()  # no transaction (a write lock on SQLite) held across the courier call
        try:
            cancelled = courier.cancel(result) if courier.can(Capability.CANCEL) else True
        except ConnectorError as exc:
            return render_template("warehouse/message.html", shop=session_.get(Shop, shop_id),
                                   message=f"The courier did not cancel it: {exc}"), 502
        if not cancelled:
            return render_template("warehouse/message.html", shop=session_.get(Shop, shop_id),
                                   message="Too late to cancel: the courier already has the parcel."), 409
        shipment = session_.get(Shipment, shipment_id)
    shipment.status, shipment.next_poll_at = "cancelled", None
    session_.commit()
    return redirect(back if back.startswith(f"/warehouse/{shop_id}/") else url_for("warehouse.orders", shop_id=shop_id), 303)


@warehouse.route("/<int:shop_id>/batches/<int:batch_id>/pickup", methods=["POST"])
@staff_only
def pickup(shop_id: int, batch_id: int):
    """Ask the batch's courier to collect its parcels on a day, between two times (the warehouse's clock)."""
    batch = _batch_or_404(batch_id)
    session_ = db()
    try:
        day = dt.date.fromisoformat(request.form.get("day") or "")
        ready_from = dt.time.fromisoformat(request.form.get("from") or "")
        ready_until = dt.time.fromisoformat(request.form.get("until") or "")
    except ValueError:
        abort(400, "choose a day and a time window")
    try:
        asked = request_pickup(session_, batch, day, ready_from, ready_until, note=request.form.get("note") or "",
                               requested_by="warehouse")
    except PickupNotPossible as exc:
        return render_template("warehouse/message.html", shop=session_.get(Shop, shop_id), message=str(exc)), 409
    if asked.status == "refused":
        return render_template("warehouse/message.html", shop=session_.get(Shop, shop_id),
                               message=f"The courier did not take the pickup: {asked.message}"), 502
    return redirect(url_for("warehouse.batch_page", shop_id=shop_id, batch_id=batch_id) + "#pickup", 303)
