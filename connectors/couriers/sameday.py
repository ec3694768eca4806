"""Sameday (Romania; easybox lockers): X-AUTH-TOKEN login, AWBs, A6 PDF labels, AWB status, status-sync feed."""
from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from typing import Any, ClassVar

import requests
from pypdf import PdfReader, PdfWriter

from connectors.couriers.base import (
    Capability, Courier, CourierRefused, LabelFormat, LabelSize, PickupPoint, error_text, load_status_map,
    local_time, number, tracking_result,
)
from connectors.errors import InvalidPayload
from connectors.records import (
    Address, LabelDocument, Money, ShipmentRequest, ShipmentResult, ShipmentStatus, TrackingEvent, TrackingResult,
)

ZONE = "Europe/Bucharest"
SYNC_WINDOW = dt.timedelta(hours=2)  # "the difference between starting and ending timestamps cannot be bigger than 7200"
_SYNC_PAGE = 500
HOSTS = {"ro": "https://api.sameday.ro", "hu": "https://api.sameday.hu", "bg": "https://api.sameday.bg",
         "ro-demo": "https://sameday-api.demo.zitec.com"}


class Sameday(Courier):
    """One Sameday account. Pickup point, contact person and service ids come from the account (and differ
    between demo and production), so they are configuration, not constants."""

    name: ClassVar[str] = "sameday"
    default_base_url: ClassVar[str] = HOSTS["ro"]
    capabilities = frozenset({
        Capability.LABEL_PDF, Capability.SIZE_A6, Capability.PICKUP_POINTS, Capability.TRACKING,
        Capability.CHANGE_FEED, Capability.COD, Capability.CANCEL,
    })  # no lookup by our reference: an ambiguous create stays AmbiguousOutcome for staff to check
    status_map = load_status_map("sameday")
    auth_failure_statuses: ClassVar[tuple[int, ...]] = (401, 403)  # the official SDK re-logs on either
    # The official SDK has no pickup, courier-order or manifest call: every AWB names the pickup point, and its
    # first status already reads "Comanda curier primita" (courier order received).
    pickup_note: ClassVar[str] = ("Sameday sends a courier to the pickup point for every AWB by itself: its "
                                  "first status is \"Comanda curier primita\"")

    def __init__(self, username: str, password: str, *, pickup_point_id: int, service_id: int,
                 locker_service_id: int | None = None, contact_person_id: int | None = None,
                 currency: str = "RON", platform: str = "store-companion/1", **options: Any):
        super().__init__(**options)
        self.username, self._password = username, password
        self.pickup_point_id, self.contact_person_id = pickup_point_id, contact_person_id
        self.service_id, self.locker_service_id = service_id, locker_service_id
        self.currency, self.platform = currency, platform

    @property
    def account(self) -> str:
        return self.username

    def _login(self) -> tuple[str, float | None]:
        response = self._call("POST", "/api/authenticate", what="authenticate", idempotent=True, authed=False,
                              data={"remember_me": "true"},
                              headers={"X-Auth-Username": self.username, "X-Auth-Password": self._password})
        body = self._json(response, "authenticate")
        if not body.get("token"):
            raise InvalidPayload(f"sameday authenticate: no token ({error_text(response)})")
        expires = local_time(body["expire_at"], ZONE).timestamp() if body.get("expire_at") else None
        return body["token"], expires

    def _auth_headers(self, token: str) -> dict[str, str]:
        return {"X-AUTH-TOKEN": token, "X-Platform": self.platform, "Accept": "application/json"}

    def _refused(self, response: requests.Response, what: str) -> CourierRefused:
        try:
            body = response.json()
        except ValueError:
            body = {}
        errors: dict[str, list[str]] = {}
        _walk_errors((body.get("errors") or {}) if isinstance(body, dict) else {}, [], errors)
        return CourierRefused(f"sameday {what}: HTTP {response.status_code} {error_text(response)}", errors,
                              response.status_code)

    # --- shipments -------------------------------------------------------------------------------------------

    def _form(self, request: ShipmentRequest) -> dict[str, Any]:
        recipient, options = request.recipient, request.options
        locker = request.pickup_point_id
        service = request.service or (self.locker_service_id if locker and self.locker_service_id else self.service_id)
        cod = request.cash_on_delivery
        form: dict[str, Any] = {
            "pickupPoint": self.pickup_point_id,
            "packageType": options.get("package_type", 0),  # 0 parcel, 1 envelope, 2 large
            "packageNumber": len(request.parcels),
            "packageWeight": number(sum((p.weight_kg for p in request.parcels), Decimal(0))),
            "service": service,
            "awbPayment": options.get("awb_payment", 1),  # 1: the client (the shop) pays
            "cashOnDelivery": number(cod.amount) if cod else 0,
            "cashOnDeliveryReturns": options.get("cod_returns", 1) if cod else "",
            "insuredValue": number(request.declared_value.amount) if request.declared_value else 0,
            "thirdPartyPickup": 0,
            "clientInternalReference": request.reference,
            "observation": options.get("observation", ""),
            "awbRecipient[name]": recipient.name,
            "awbRecipient[phoneNumber]": recipient.phone or "",
            "awbRecipient[email]": recipient.email or "",
            "awbRecipient[personType]": 1 if recipient.company else 0,
            "awbRecipient[address]": ", ".join(part for part in (recipient.street, recipient.street2) if part),
            "awbRecipient[cityString]": recipient.city,
            "awbRecipient[countyString]": recipient.region,
            "awbRecipient[postalCode]": recipient.postcode,
        }
        if recipient.company:
            form["awbRecipient[companyName]"] = recipient.company
        if self.contact_person_id is not None:
            form["contactPerson"] = self.contact_person_id
        if cod:
            form["currency"] = cod.currency
        if locker:
            form["lockerLastMile"] = locker
        for index, parcel in enumerate(request.parcels):
            form[f"parcels[{index}][weight]"] = number(parcel.weight_kg)
            for key, value in (("width", parcel.width_cm), ("length", parcel.length_cm), ("height", parcel.height_cm)):
                form[f"parcels[{index}][{key}]"] = number(value) if value is not None else ""
        for index, tax in enumerate(options.get("service_taxes", [])):
            form[f"serviceTaxes[{index}]"] = tax
        return form

    def _create(self, request: ShipmentRequest) -> ShipmentResult:
        response = self._call("POST", "/api/awb", what=f"AWB for {request.reference}", idempotent=False,
                              data=self._form(request))
        body = self._json(response, "AWB")
        awb = body.get("awbNumber")
        if not awb:
            raise InvalidPayload(f"sameday AWB for {request.reference}: no awbNumber ({error_text(response)})")
        cost = body.get("awbCost")
        return ShipmentResult(request.reference, (awb,), Money.parse(cost, self.currency) if cost is not None else None,
                              raw=body, courier=self.name, shipment_id=awb,
                              parcel_numbers=tuple(p["awbNumber"] for p in body.get("parcels") or []))

    def _cancel(self, key: str) -> bool:
        try:
            self._call("DELETE", f"/api/awb/{key}", what=f"cancel {key}", idempotent=True)
        except CourierRefused:
            return False
        return True

    # --- labels ----------------------------------------------------------------------------------------------

    def _labels(self, keys: list[str], label_format: LabelFormat, size: LabelSize) -> LabelDocument:
        # One AWB per call (that is Sameday's API); the PDFs are joined into one document here.
        writer = PdfWriter()
        for awb in keys:
            response = self._call("GET", f"/api/awb/download/{awb}/A6", what=f"label {awb}", idempotent=True)
            if not response.content.startswith(b"%PDF"):
                raise InvalidPayload(f"sameday label {awb}: expected a PDF")
            for page in PdfReader(io.BytesIO(response.content)).pages:
                writer.add_page(page)
        out = io.BytesIO()
        writer.write(out)
        return LabelDocument(out.getvalue(), "pdf", LabelSize.A6.value)

    # --- tracking --------------------------------------------------------------------------------------------

    def _event(self, row: dict) -> TrackingEvent:
        location = row.get("transitLocation") or row.get("county") or None
        text = row.get("status") or row.get("statusLabel") or ""
        if row.get("reason"):
            text = f"{text} ({row['reason']})"
        return TrackingEvent(_sameday_time(row["statusDate"]), self.status_map.status(row.get("statusId")),
                             str(row.get("statusId", "")), text, location)

    def _track(self, numbers: list[str]) -> list[TrackingResult]:
        results = []
        for awb in numbers:
            response = self._call("GET", f"/api/client/awb/{awb}/status", what=f"status {awb}", idempotent=True)
            body = self._json(response, "status")
            events = [self._event(row) for row in body.get("expeditionHistory") or []]
            summary = body.get("expeditionSummary") or {}
            status = None
            if summary.get("canceled"):
                status = ShipmentStatus.CANCELLED
            elif any(p.get("inReturn") for p in body.get("parcelsStatus") or []) and not summary.get("delivered"):
                status = ShipmentStatus.RETURNING
            results.append(tracking_result(awb, events, status=status))
        return results

    def _changes(self, since: dt.datetime, until: dt.datetime) -> list[TrackingResult]:
        """Walk status-sync in windows of two hours (its limit), page by page, and group rows by AWB."""
        by_awb: dict[str, list[TrackingEvent]] = {}
        start = since
        while start < until:
            end = min(start + SYNC_WINDOW, until)
            page = 1
            while True:
                response = self._call("GET", "/api/client/status-sync", what="status sync", idempotent=True,
                                      params={"startTimestamp": int(start.timestamp()),
                                              "endTimestamp": int(end.timestamp()),
                                              "page": page, "countPerPage": _SYNC_PAGE})
                body = self._json(response, "status sync")
                for row in body.get("data") or []:
                    # A parcel number is its AWB plus a three-digit position (1SDY…423 → 1SDY…423001).
                    parcel = str(row.get("parcelAwbNumber") or "")
                    awb = parcel[:-3] if len(parcel) > 3 and parcel[-3:].isdigit() else parcel
                    by_awb.setdefault(awb, []).append(self._event(row))
                pages = int(body.get("pages") or 0)
                if not body.get("data") or (pages and page >= pages) or (not pages and len(body["data"]) < _SYNC_PAGE):
                    break
                page += 1
            start = end
        return [tracking_result(awb, events) for awb, events in by_awb.items()]

    # --- lockers ---------------------------------------------------------------------------------------------

    def _pickup_points(self, **filters: Any) -> list[PickupPoint]:
        points, page = [], 1
        while True:
            response = self._call("GET", "/api/client/lockers", what="lockers", idempotent=True,
                                  params={"page": page, "countPerPage": 500, **filters})
            body = self._json(response, "lockers")
            for item in body.get("data") or []:
                points.append(PickupPoint(
                    str(item["lockerId"]), item.get("name") or "", "locker",
                    Address(name=item.get("name") or "", street=item.get("address") or "",
                            city=item.get("city") or "", postcode=item.get("postalCode") or "",
                            region=item.get("county") or "", country="RO"),
                    _decimal(item.get("lat")), _decimal(item.get("lng")),
                    cash_on_delivery=bool(item.get("supportedPayment")), raw=item))
            if page >= int(body.get("pages") or 1):
                return points
            page += 1


def _sameday_time(value: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return local_time(value, ZONE)
    if moment.tzinfo is None:
        return local_time(value.replace("T", " "), ZONE)
    return moment.astimezone(dt.timezone.utc)


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value not in (None, "") else None
    except ArithmeticError:
        return None


def _walk_errors(node: dict, path: list[str], out: dict[str, list[str]]) -> None:
    """Sameday's Symfony form errors: {"children": {"field": {"errors": [...], "children": {...}}}}."""
    if node.get("errors") and isinstance(node["errors"], list):
        out[".".join(path) or ""] = [str(e) for e in node["errors"]]
    for key, child in (node.get("children") or {}).items():
        if isinstance(child, dict):
            _walk_errors(child, path + [key], out)
