"""FAN Courier (Romania), API v2 at api.fancourier.ro: login token, AWBs, PDF/ZPL labels, bulk tracking, FANbox."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import requests

from connectors.couriers.base import (
    Capability, Courier, CourierRefused, LabelFormat, LabelSize, PickupPoint, PickupRequest, PickupResult, error_text,
    load_status_map, local_time, number, split_street, tracking_result,
)
from connectors.errors import InvalidPayload
from connectors.records import (
    Address, LabelDocument, Money, ShipmentRequest, ShipmentResult, ShipmentStatus, TrackingEvent, TrackingResult,
)

ZONE = "Europe/Bucharest"  # FAN's times carry no offset
_PAGE = 100  # FAN's page-size ceiling on reports


class FanCourier(Courier):
    """One FAN Courier client account (clientId + user). Service names come from GET /reports/services."""

    name: ClassVar[str] = "fancourier"
    default_base_url: ClassVar[str] = "https://api.fancourier.ro"
    capabilities = frozenset({
        Capability.LABEL_PDF, Capability.LABEL_ZPL, Capability.SIZE_A6, Capability.PICKUP_POINTS,
        Capability.TRACKING, Capability.BULK_TRACKING, Capability.COD, Capability.CANCEL,
        Capability.LOOKUP_BY_REFERENCE, Capability.BULK_CREATE, Capability.PICKUP_REQUEST, Capability.PICKUP_CANCEL,
    })  # no handover printout: FAN's AWB report ("borderou", GET /reports/awb) is data, not a document
    status_map = load_status_map("fan_courier")
    tracking_batch = 50
    create_batch = 50  # /intern-awb takes a list of shipments; FAN documents no ceiling, so stay modest

    def __init__(self, client_id: str, username: str, password: str, *, language: str = "ro", zpl_dpi: int = 203,
                 **options: Any):
        super().__init__(**options)
        self.client_id, self.username, self._password = str(client_id), username, password
        self.language, self.zpl_dpi = language, zpl_dpi

    @property
    def account(self) -> str:
        return f"{self.client_id}/{self.username}"

    # --- auth ------------------------------------------------------------------------------------------------

    def _login(self) -> tuple[str, float | None]:
        response = self._call("POST", "/login", what="login", idempotent=True, authed=False,
                              data={"username": self.username, "password": self._password})
        body = self._json(response, "login")
        data = body.get("data") or {}
        if body.get("status") != "success" or not data.get("token"):
            raise InvalidPayload(f"fancourier login: no token in the answer ({error_text(response)})")
        expires = local_time(data["expiresAt"], ZONE).timestamp() if data.get("expiresAt") else None
        return data["token"], expires

    def _auth_headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def _refused(self, response: requests.Response, what: str) -> CourierRefused:
        try:
            body = response.json()
        except ValueError:
            body = {}
        errors = body.get("errors") if isinstance(body, dict) else None
        return CourierRefused(f"fancourier {what}: HTTP {response.status_code} {error_text(response)}",
                              _field_errors(errors), response.status_code)

    # --- shipments -------------------------------------------------------------------------------------------

    def _payload(self, request: ShipmentRequest) -> dict:
        recipient, options = request.recipient, request.options
        street, street_no = split_street(recipient.street)
        first = request.parcels[0] if request.parcels else None
        fan_options = list(options.get("fan_options", []))
        if request.pickup_point_id:
            fan_options += [letter for letter in ("X", "W") if letter not in fan_options]  # ePOD + drop in FANbox
        service = request.service or ("FANbox" if request.pickup_point_id else "Standard")
        cod = request.cash_on_delivery
        return {
            "info": {
                "service": service,
                "bank": options.get("bank", ""), "bankAccount": options.get("bank_account", ""),
                "packages": {"parcel": len(request.parcels), "envelope": int(options.get("envelopes", 0))},
                "weight": number(sum((p.weight_kg for p in request.parcels), Decimal(0))),
                "cod": number(cod.amount) if cod else "",
                "currency": cod.currency if cod else "RON",
                "declaredValue": number(request.declared_value.amount) if request.declared_value else 0,
                "payment": options.get("payment", "recipient"),
                "returnPayment": options.get("return_payment", "sender"),
                "observation": options.get("observation", ""),
                # Our reference goes into `content`: FAN prints it and its AWB report returns it, which is how
                # an ambiguous create is found again.
                "content": request.reference,
                "dimensions": {"length": number(first.length_cm) if first and first.length_cm else 0,
                               "height": number(first.height_cm) if first and first.height_cm else 0,
                               "width": number(first.width_cm) if first and first.width_cm else 0},
                "costCenter": options.get("cost_center", ""),
                "options": fan_options,
            },
            "recipient": {
                "name": recipient.company or recipient.name, "contactPerson": recipient.name,
                "phone": recipient.phone or "", "email": recipient.email or "",
                "address": {"county": recipient.region, "locality": recipient.city, "street": street,
                            "streetNo": street_no or options.get("street_no", ""), "zipCode": recipient.postcode,
                            "building": "", "entrance": "", "floor": "", "apartment": recipient.street2,
                            "pickupLocationId": request.pickup_point_id or ""},
            },
            "sender": {"address": {"dropOffLocationId": options.get("drop_off_point_id", "")}},
        }

    def _create(self, request: ShipmentRequest) -> ShipmentResult:
        outcome = self._create_many([request])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _create_many(self, chunk: list[ShipmentRequest]) -> list[ShipmentResult | CourierRefused]:
        """POST /intern-awb with several shipments; FAN answers one entry per shipment, in order."""
        what = f"AWB for {chunk[0].reference}" if len(chunk) == 1 else f"{len(chunk)} AWBs"
        response = self._call("POST", "/intern-awb", what=what, idempotent=False,
                              json_body={"clientId": self.client_id, "shipments": [self._payload(r) for r in chunk]})
        body = self._json(response, "AWB")
        results = body.get("response") if isinstance(body, dict) else None
        if not results or len(results) != len(chunk):
            raise InvalidPayload(f"fancourier {what}: expected {len(chunk)} answers ({error_text(response)})")
        outcomes: list[ShipmentResult | CourierRefused] = []
        for request, result in zip(chunk, results):
            if result.get("errors") or not result.get("awbNumber"):
                outcomes.append(CourierRefused(f"fancourier refused the AWB for {request.reference}",
                                               _field_errors(result.get("errors")), response.status_code))
                continue
            awb = str(result["awbNumber"])
            tariff = result.get("tariff")
            outcomes.append(ShipmentResult(request.reference, (awb,),
                                           Money.parse(tariff, "RON") if tariff is not None else None,
                                           raw=result, courier=self.name, shipment_id=awb))
        return outcomes

    def _find(self, request: ShipmentRequest, since: dt.datetime) -> ShipmentResult | None:
        return self._find_many([request], since).get(request.reference)

    def _find_many(self, requests_: list[ShipmentRequest], since: dt.datetime) -> dict[str, ShipmentResult]:
        """Read FAN's AWB report ("borderou") day by day from `since`, newest first, for our references."""
        wanted = {request.reference for request in requests_}
        found: dict[str, ShipmentResult] = {}
        today = dt.datetime.now(ZoneInfo(ZONE)).date()
        day = max(since.astimezone(ZoneInfo(ZONE)).date(), today - dt.timedelta(days=7))
        days = [day + dt.timedelta(days=n) for n in range((today - day).days + 1)]
        for date in reversed(days):
            page = 1
            while True:
                response = self._call("GET", "/reports/awb", what=f"AWB report {date}", idempotent=True,
                                      params={"clientId": self.client_id, "date": date.isoformat(),
                                              "page": page, "perPage": _PAGE})
                body = self._json(response, "AWB report")
                for row in body.get("data") or []:
                    info = row.get("info") or {}
                    reference = str(info.get("content", "")).strip()
                    if reference in wanted and reference not in found and info.get("awbNumber"):
                        awb = str(info["awbNumber"])
                        cost = info.get("cost")
                        found[reference] = ShipmentResult(reference, (awb,),
                                                          Money.parse(cost, "RON") if cost is not None else None,
                                                          raw=row, courier=self.name, shipment_id=awb)
                if len(found) == len(wanted):
                    return found
                total = int(body.get("total") or 0)
                if page * _PAGE >= total:
                    break
                page += 1
        return found

    def _cancel(self, key: str) -> bool:
        try:
            response = self._call("DELETE", "/awb", what=f"cancel {key}", idempotent=True,
                                  params={"clientId": self.client_id, "awb": key})
        except CourierRefused:
            return False  # FAN refuses once the AWB has been scanned
        return self._json(response, "cancel").get("status") == "success"

    # --- courier pickup ("comanda curier") ---------------------------------------------------------------------

    def _pickup(self, pickup: PickupRequest) -> PickupResult:
        """POST /order, type Standard: FAN collects from the account's own address (FAN wants a window of at
        least two hours). One order covers the day's parcels, so no AWB is named on it."""
        body = {"clientId": self.client_id, "info": {
            "awbNumber": "",
            "packages": {"parcel": pickup.parcels, "envelope": pickup.envelopes},
            "weight": number(pickup.weight_kg),
            "dimensions": {"width": 0, "length": 0, "height": 0},
            "orderType": "Standard",
            "pickupDate": pickup.day.isoformat(),
            "pickupHours": {"first": pickup.ready_from.strftime("%H:%M"), "second": pickup.ready_until.strftime("%H:%M")},
            "observations": pickup.note,
        }}
        response = self._call("POST", "/order", what=f"courier order for {pickup.day}", idempotent=False,
                              json_body=body)
        answer = self._json(response, "courier order")
        order_id = (answer.get("data") or {}).get("id") if isinstance(answer, dict) else None
        if answer.get("status") != "success" or order_id in (None, ""):
            raise CourierRefused(f"fancourier refused the courier order: {error_text(response)}",
                                 _field_errors(answer.get("errors")), response.status_code)
        return PickupResult(self.name, str(order_id), answer)

    def _cancel_pickup(self, pickup: PickupResult) -> None:
        """DELETE /order?clientId=&id= (daika7ana/fancourier-api-v2 DeleteCourierOrder), sent once: FAN answers 404
        for an order already deleted, so a replay after a lost answer would read as a refusal."""
        response = self._call("DELETE", "/order", what=f"cancel courier order {pickup.pickup_id}", idempotent=False,
                              params={"clientId": self.client_id, "id": pickup.pickup_id})
        answer = self._json(response, "cancel courier order")
        if not isinstance(answer, dict) or answer.get("status") != "success":
            raise CourierRefused(f"fancourier did not cancel courier order {pickup.pickup_id}: {error_text(response)}",
                                 _field_errors(answer.get("errors") if isinstance(answer, dict) else None),
                                 response.status_code)

    # --- labels ----------------------------------------------------------------------------------------------

    def _labels(self, keys: list[str], label_format: LabelFormat, size: LabelSize) -> LabelDocument:
        params: dict[str, Any] = {"clientId": self.client_id, "awbs[]": keys, "language": self.language}
        if label_format is LabelFormat.ZPL:
            params.update(zpl=1, dpi=self.zpl_dpi)
        else:
            params.update(pdf=1, format="A6")
        response = self._call("GET", "/awb/label", what=f"labels for {len(keys)} AWBs", idempotent=True,
                              params=params)
        if label_format is LabelFormat.PDF and not response.content.startswith(b"%PDF"):
            raise InvalidPayload(f"fancourier labels: expected a PDF, got {response.headers.get('Content-Type')}")
        return LabelDocument(response.content, label_format.value,
                             LabelSize.A6.value if label_format is LabelFormat.PDF else size.value)

    # --- tracking --------------------------------------------------------------------------------------------

    def _track(self, numbers: list[str]) -> list[TrackingResult]:
        response = self._call("GET", "/reports/awb/tracking", what=f"tracking {len(numbers)} AWBs",
                              idempotent=True,
                              params={"clientId": self.client_id, "awb[]": numbers, "language": self.language})
        body = self._json(response, "tracking")
        found = {str(item.get("awbNumber")): item for item in body.get("data") or []}
        return [self._tracking(number_, found.get(number_)) for number_ in numbers]

    def _tracking(self, awb: str, item: dict | None) -> TrackingResult:
        if item is None:
            return TrackingResult(awb, ShipmentStatus.UNKNOWN)
        events = [TrackingEvent(local_time(event["date"], ZONE), self.status_map.status(event.get("id")),
                                str(event.get("id", "")), event.get("name") or "", event.get("location") or None)
                  for event in item.get("events") or []]
        if not events:
            # Registered but never scanned: FAN says so in a message rather than with an event.
            return TrackingResult(awb, self.status_map.status("registered"))
        return_awb = item.get("returnAwbNumber")
        result = tracking_result(awb, events, return_tracking_number=str(return_awb) if return_awb else None)
        if return_awb and result.status not in (ShipmentStatus.RETURNED_TO_SENDER, ShipmentStatus.CANCELLED):
            # A return AWB exists: the parcel is on its way back, whatever the outbound AWB's last scan says.
            return TrackingResult(awb, ShipmentStatus.RETURNING, result.events, str(return_awb))
        return result

    # --- pickup points ---------------------------------------------------------------------------------------

    def _pickup_points(self, kind: str = "fanbox", **filters: Any) -> list[PickupPoint]:
        response = self._call("GET", "/reports/pickup-points", what=f"{kind} points", idempotent=True,
                              params={"clientId": self.client_id, "type": kind, **filters})
        points = []
        for item in self._json(response, "pickup points").get("data") or []:
            address = item.get("address") or {}
            street = " ".join(part for part in (address.get("street"), address.get("streetNo")) if part)
            points.append(PickupPoint(
                str(item.get("id")), item.get("name") or "", {"fanbox": "locker", "office": "office"}.get(kind, "pudo"),
                Address(name=item.get("name") or "", street=street, city=address.get("locality") or "",
                        postcode=address.get("zipCode") or "", region=address.get("county") or "", country="RO"),
                _decimal(item.get("latitude")), _decimal(item.get("longitude")), raw=item))
        return points


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value not in (None, "") else None
    except ArithmeticError:
        return None


def _field_errors(errors: Any) -> dict[str, list[str]]:
    if isinstance(errors, dict):
        return {str(k): [str(m) for m in (v if isinstance(v, list) else [v])] for k, v in errors.items()}
    if isinstance(errors, list):
        return {"": [str(e) for e in errors]}
    return {}
