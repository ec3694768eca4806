"""DPD Romania (api.dpd.ro, the Speedy platform): credentials in every JSON body, shipments, PDF/ZPL labels with a
native A4 4-up sheet, tracking by parcel or by our reference, offices."""
from __future__ import annotations

import base64
import binascii
import datetime as dt
from decimal import Decimal
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import requests

from connectors.couriers.base import (
    Capability, Courier, CourierRefused, LabelFormat, LabelSize, PickupPoint, PickupRequest, PickupResult, error_text,
    load_status_map, number, split_street, tracking_result,
)
from connectors.errors import AuthError, InvalidPayload
from connectors.records import Address, LabelDocument, Money, ShipmentRequest, ShipmentResult, TrackingEvent, TrackingResult

ROMANIA = 642  # countryId (ISO 3166 numeric)
ZONE = "Europe/Bucharest"
_PAPER = {LabelSize.A6: "A6", LabelSize.A4_4UP: "A4_4xA6"}


class DpdRomania(Courier):
    """One DPD Romania API user; serviceId values come from POST /v1/services for that contract."""

    name: ClassVar[str] = "dpd_ro"
    default_base_url: ClassVar[str] = "https://api.dpd.ro/v1"
    capabilities = frozenset({
        Capability.LABEL_PDF, Capability.LABEL_ZPL, Capability.SIZE_A6, Capability.SIZE_A4_4UP,
        Capability.PICKUP_POINTS, Capability.TRACKING, Capability.BULK_TRACKING, Capability.COD,
        Capability.CANCEL, Capability.LOOKUP_BY_REFERENCE, Capability.PICKUP_REQUEST,
    })  # no pickup cancel and no handover printout in the platform's API (POST /v1/pickup is all there is)
    status_map = load_status_map("dpd_romania")
    renews_tokens: ClassVar[bool] = False  # no token: the user name and password travel in every body
    tracking_batch = 10

    def __init__(self, username: str, password: str, *, service_id: int, sender_client_id: int | None = None,
                 language: str = "EN", **options: Any):
        super().__init__(**options)
        self.username, self._password = username, password
        self.service_id, self.sender_client_id, self.language = service_id, sender_client_id, language

    @property
    def account(self) -> str:
        return self.username

    def _login(self) -> tuple[str, float | None]:
        return "", None

    def _post(self, path: str, body: dict, *, what: str, idempotent: bool) -> requests.Response:
        return self._call("POST", path, what=what, idempotent=idempotent, authed=False,
                          json_body={"userName": self.username, "password": self._password,
                                     "language": self.language, **body})

    def _body(self, response: requests.Response, what: str) -> dict:
        """The JSON answer; the platform reports refusals as HTTP 200 with an `error` object."""
        body = self._json(response, what)
        error = body.get("error") if isinstance(body, dict) else None
        if error:
            message = str(error.get("message") or error)
            if any(word in message.lower() for word in ("password", "username", "user name")):
                raise AuthError(f"dpd_ro {what}: {message}")  # assumption: the platform has no 401 of its own
            context = error.get("context")
            raise CourierRefused(f"dpd_ro {what}: {message}", {str(context or ""): [message]})
        return body

    # --- shipments -------------------------------------------------------------------------------------------

    def _payload(self, request: ShipmentRequest) -> dict:
        recipient, options = request.recipient, request.options
        street, street_no = split_street(recipient.street)
        weight = sum((p.weight_kg for p in request.parcels), Decimal(0))
        party: dict[str, Any] = {"phone1": {"number": recipient.phone or ""}, "clientName": recipient.company or
                                 recipient.name, "contactName": recipient.name, "email": recipient.email or "",
                                 "privatePerson": not recipient.company}
        if request.pickup_point_id:
            party["pickupOfficeId"] = int(request.pickup_point_id)
        else:
            party["address"] = {"countryId": int(options.get("country_id", ROMANIA)), "siteName": recipient.city,
                                "postCode": recipient.postcode, "streetName": street, "streetNo": street_no,
                                "addressNote": recipient.street2}
        additional: dict[str, Any] = {}
        if request.cash_on_delivery:
            additional["cod"] = {"amount": number(request.cash_on_delivery.amount),
                                 "currencyCode": request.cash_on_delivery.currency,
                                 "processingType": options.get("cod_processing", "CASH")}
        if request.declared_value:
            additional["declaredValue"] = {"amount": number(request.declared_value.amount)}
        sender = {"clientId": self.sender_client_id} if self.sender_client_id else {}
        return {
            "sender": sender, "recipient": party,
            "service": {"serviceId": int(request.service or self.service_id), "autoAdjustPickupDate": True,
                        **({"additionalServices": additional} if additional else {})},
            "content": {"parcelsCount": len(request.parcels), "totalWeight": number(weight),
                        "contents": options.get("content", request.reference), "package": options.get("package", "BOX"),
                        "parcels": [{"seqNo": n + 1, "weight": number(p.weight_kg)} for n, p in enumerate(request.parcels)]},
            "payment": {"courierServicePayer": options.get("payer", "SENDER")},
            "ref1": request.reference,  # our reference: tracking accepts it, so an ambiguous create can be found
        }

    def _create(self, request: ShipmentRequest) -> ShipmentResult:
        response = self._post("/shipment", self._payload(request), what=f"shipment for {request.reference}",
                              idempotent=False)
        body = self._body(response, "shipment")
        if not body.get("id"):
            raise InvalidPayload(f"dpd_ro shipment for {request.reference}: no id ({error_text(response)})")
        price = body.get("price") or {}
        cost = Money.parse(price["total"], price.get("currency") or "RON") if price.get("total") is not None else None
        parcels = tuple(str(p["id"]) for p in body.get("parcels") or [])
        return ShipmentResult(request.reference, (str(body["id"]),), cost, raw=body, courier=self.name,
                              shipment_id=str(body["id"]), parcel_numbers=parcels)

    def _find(self, request: ShipmentRequest, since: dt.datetime) -> ShipmentResult | None:
        response = self._post("/track", {"parcels": [{"ref": request.reference}], "lastOperationOnly": True},
                              what=f"track by reference {request.reference}", idempotent=True)
        for parcel in self._body(response, "track").get("parcels") or []:
            if parcel.get("parcelId") and not parcel.get("error"):
                return ShipmentResult(request.reference, (str(parcel["parcelId"]),), raw=parcel, courier=self.name,
                                      shipment_id=str(parcel["parcelId"]))
        return None

    def _cancel(self, key: str) -> bool:
        try:
            self._body(self._post("/shipment/cancel", {"shipmentId": key, "comment": "cancelled by the shop"},
                                  what=f"cancel {key}", idempotent=True), "cancel")
        except CourierRefused:
            return False
        return True

    # --- courier pickup --------------------------------------------------------------------------------------

    def _pickup(self, pickup: PickupRequest) -> PickupResult:
        """POST /v1/pickup for the named shipments (scope EXPLICIT_SHIPMENT_ID_LIST, as DPD Romania's own
        Magento module asks): the courier comes from `pickupDateTime` until `visitEndTime` on that day. The
        platform answers a pickup order per sender (`orders[]`, one here: every shipment is the account's); the
        first order's id is the number staff quote, the whole answer stays in `raw`."""
        if not pickup.shipments:
            raise ValueError("a DPD Romania pickup names the shipments to collect")
        ready = dt.datetime.combine(pickup.day, pickup.ready_from, ZoneInfo(ZONE))
        body: dict[str, Any] = {
            "pickupDateTime": ready.isoformat(timespec="seconds"),
            "autoAdjustPickupDate": False,  # the day staff chose, or a refusal they can read; never a silent move
            "pickupScope": "EXPLICIT_SHIPMENT_ID_LIST",
            "explicitShipmentIdList": [str(key) for key in pickup.shipments],
            "visitEndTime": pickup.ready_until.strftime("%H:%M"),
            "contactName": pickup.address.name,
        }
        if pickup.address.phone:
            body["phoneNumber"] = {"number": pickup.address.phone}
        response = self._post("/pickup", body, what=f"pickup for {pickup.day}", idempotent=False)
        orders = self._body(response, "pickup").get("orders") or []
        if not orders or orders[0].get("id") in (None, ""):
            raise InvalidPayload(f"dpd_ro pickup: no pickup order in the answer ({error_text(response)})")
        return PickupResult(self.name, str(orders[0]["id"]), orders)

    # --- labels ----------------------------------------------------------------------------------------------

    def _label_keys(self, shipment: str | ShipmentResult) -> list[str]:
        if isinstance(shipment, ShipmentResult) and shipment.parcel_numbers:
            return list(shipment.parcel_numbers)  # the platform prints per parcel
        return [self._label_key(shipment)]

    def _labels(self, keys: list[str], label_format: LabelFormat, size: LabelSize) -> LabelDocument:
        paper = _PAPER.get(size, "A6")
        response = self._post("/print", {"format": label_format.value, "paperSize": paper,
                                         "parcels": [{"parcel": {"id": key}} for key in keys]},
                              what=f"labels for {len(keys)} parcels", idempotent=True)
        content = response.content
        if content.lstrip().startswith(b"{"):
            body = self._body(response, "labels")  # raises on {"error": ...}
            try:
                content = base64.b64decode(body.get("data") or "", validate=True)
            except (binascii.Error, ValueError):
                raise InvalidPayload("dpd_ro labels: unreadable answer") from None
        if label_format is LabelFormat.PDF and not content.startswith(b"%PDF"):
            raise InvalidPayload("dpd_ro labels: expected a PDF")
        return LabelDocument(content, label_format.value,
                             (size if size in _PAPER else LabelSize.A6).value if label_format is LabelFormat.PDF
                             else size.value)

    # --- tracking --------------------------------------------------------------------------------------------

    def _track(self, numbers: list[str]) -> list[TrackingResult]:
        response = self._post("/track", {"parcels": [{"id": n} for n in numbers], "lastOperationOnly": False},
                              what=f"track {len(numbers)} parcels", idempotent=True)
        found = {str(p.get("parcelId")): p for p in self._body(response, "track").get("parcels") or []}
        results = []
        for parcel_id in numbers:
            operations = (found.get(parcel_id) or {}).get("operations") or []
            events = [TrackingEvent(_speedy_time(op["dateTime"]),
                                    self.status_map.status(op.get("operationCode"), op.get("description") or ""),
                                    str(op.get("operationCode", "")), op.get("description") or "",
                                    ((op.get("place") or {}).get("name")) or None) for op in operations]
            results.append(tracking_result(parcel_id, events))
        return results

    # --- offices ---------------------------------------------------------------------------------------------

    def _pickup_points(self, **filters: Any) -> list[PickupPoint]:
        body = {"countryId": ROMANIA, **filters}
        response = self._post("/location/office", body, what="offices", idempotent=True)
        points = []
        for office in self._body(response, "offices").get("offices") or []:
            address = office.get("address") or {}
            points.append(PickupPoint(
                str(office["id"]), office.get("name") or "",
                "locker" if str(office.get("type", "")).upper() == "APT" else "office",
                Address(name=office.get("name") or "", street=address.get("fullAddressString") or "",
                        city=address.get("siteName") or "", postcode=address.get("postCode") or "", country="RO"),
                _decimal(address.get("y")), _decimal(address.get("x")),
                cash_on_delivery=office.get("cardPaymentAllowed") or office.get("cashPaymentAllowed"), raw=office))
        return points


def _speedy_time(value: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise InvalidPayload(f"dpd_ro: time without offset {value!r}")
    return moment.astimezone(dt.timezone.utc)


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value not in (None, "") else None
    except ArithmeticError:
        return None
