"""Cargus (Romania), UrgentOnlineAPI V3 on Azure API Management: subscription key + login token, AWBs, labels,
tracking, delta events, Ship & Go points."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import requests

from connectors.couriers.base import (
    Capability, Courier, CourierRefused, HandoverDocument, LabelFormat, LabelSize, PickupPoint, PickupRequest,
    PickupResult, decode_pdf, error_text, load_status_map, number, split_street, tracking_result,
)
from connectors.errors import InvalidPayload
from connectors.records import Address, LabelDocument, ShipmentRequest, ShipmentResult, TrackingEvent, TrackingResult

ZONE = "Europe/Bucharest"  # Cargus dates carry no offset
TOKEN_LIFETIME = dt.timedelta(hours=20)  # Cargus says 24 h; renewing early costs one login a day
_PAGE = 100
SERVICE_BY_WEIGHT = ((Decimal(31), 34), (Decimal(50), 35))  # ≤31 kg: 34, ≤50 kg: 35, heavier: 36
SERVICE_HEAVY, SERVICE_SHIP_AND_GO = 36, 38


class Cargus(Courier):
    """One Cargus WebExpress user behind one APIM subscription key, sending from one pickup location."""

    name: ClassVar[str] = "cargus"
    default_base_url: ClassVar[str] = "https://urgentcargus.azure-api.net/api"
    capabilities = frozenset({
        Capability.LABEL_PDF, Capability.PICKUP_POINTS, Capability.TRACKING,
        Capability.BULK_TRACKING, Capability.CHANGE_FEED, Capability.COD, Capability.CANCEL,
        Capability.LOOKUP_BY_REFERENCE, Capability.PICKUP_REQUEST, Capability.HANDOVER_DOCUMENT,
    })  # no PICKUP_CANCEL: no public source shows how an order is called off (PUT /Orders with another action?)
    status_map = load_status_map("cargus")
    handover_needs_pickup: ClassVar[bool] = True  # the borderou is the pickup order's
    tracking_batch = 50

    def __init__(self, subscription_key: str, username: str, password: str, *, pickup_location_id: int,
                 price_table_id: int = 0, **options: Any):
        super().__init__(**options)
        self._subscription_key, self.username, self._password = subscription_key, username, password
        self.pickup_location_id, self.price_table_id = pickup_location_id, price_table_id

    @property
    def account(self) -> str:
        return self.username

    def _account_headers(self) -> dict[str, str]:
        return {"Ocp-Apim-Subscription-Key": self._subscription_key}

    def _credentials_refused(self, response: requests.Response) -> bool:
        return "subscription key" in response.text.lower()  # APIM refused the key: a new token will not help

    def _login(self) -> tuple[str, float | None]:
        response = self._call("POST", "/LoginUser", what="login", idempotent=True, authed=False,
                              json_body={"UserName": self.username, "Password": self._password})
        token = self._json(response, "login")
        if not isinstance(token, str) or not token:
            raise InvalidPayload("cargus login: the answer is not a token")
        return token, self._clock() + TOKEN_LIFETIME.total_seconds()

    def _auth_headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def _refused(self, response: requests.Response, what: str) -> CourierRefused:
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if isinstance(body, list):
            errors = {"": [str(item) for item in body]}
        elif isinstance(body, dict) and body.get("Error"):
            errors = {"": [str(body["Error"])]}
        else:
            errors = {}
        return CourierRefused(f"cargus {what}: HTTP {response.status_code} {error_text(response)}", errors,
                              response.status_code)

    # --- shipments -------------------------------------------------------------------------------------------

    def _payload(self, request: ShipmentRequest) -> dict:
        recipient, options = request.recipient, request.options
        weight = sum((p.weight_kg for p in request.parcels), Decimal(0))
        if request.pickup_point_id:
            service = SERVICE_SHIP_AND_GO
        else:
            service = next((sid for limit, sid in SERVICE_BY_WEIGHT if weight <= limit), SERVICE_HEAVY)
        cod = request.cash_on_delivery
        if cod is not None and cod.currency != "RON":
            raise CourierRefused(f"cargus collects cash on delivery in RON only, not {cod.currency}")
        to_bank = bool(options.get("cod_to_bank", True))
        street, building = split_street(recipient.street)
        body: dict[str, Any] = {
            "Sender": {"LocationId": self.pickup_location_id},
            "Recipient": {
                "LocationId": 0, "Name": recipient.company or recipient.name, "CountyName": recipient.region,
                "LocalityName": recipient.city, "StreetName": street, "BuildingNumber": building,
                "AddressText": ", ".join(part for part in (recipient.street, recipient.street2) if part),
                "ContactPerson": recipient.name, "PhoneNumber": recipient.phone or "", "Email": recipient.email or "",
                "CodPostal": recipient.postcode,
            },
            "Parcels": len(request.parcels), "Envelopes": 0, "TotalWeight": number(weight), "ServiceId": service,
            "DeclaredValue": number(request.declared_value.amount) if request.declared_value else 0,
            "CashRepayment": number(cod.amount) if cod and not to_bank else 0,
            "BankRepayment": number(cod.amount) if cod and to_bank else 0,
            "OtherRepayment": "", "OpenPackage": bool(options.get("open_package", False)),
            "PriceTableId": self.price_table_id, "ShipmentPayer": int(options.get("payer", 1)),
            "SaturdayDelivery": False, "MorningDelivery": False,
            "Observations": options.get("observation", ""), "PackageContent": options.get("content", ""),
            "CustomString": request.reference,  # our reference; Awbs/GetByDate returns it, so a create can be found
            "ParcelCodes": [{"Code": str(index), "Type": 1, "Weight": number(p.weight_kg),
                             "Length": number(p.length_cm or 0), "Width": number(p.width_cm or 0),
                             "Height": number(p.height_cm or 0), "ParcelContent": options.get("content", "")}
                            for index, p in enumerate(request.parcels)],
        }
        if request.pickup_point_id:
            body["DeliveryPudoPoint"] = int(request.pickup_point_id)
        return body

    def _create(self, request: ShipmentRequest) -> ShipmentResult:
        response = self._call("POST", "/Awbs", what=f"AWB for {request.reference}", idempotent=False,
                              json_body=self._payload(request))
        barcode = self._json(response, "AWB")
        if isinstance(barcode, (list, dict)) or not str(barcode).strip().isdigit():
            raise InvalidPayload(f"cargus AWB for {request.reference}: expected a barcode, got {str(barcode)[:80]}")
        return ShipmentResult(request.reference, (str(barcode),), raw={"BarCode": barcode}, courier=self.name,
                              shipment_id=str(barcode))

    def _find(self, request: ShipmentRequest, since: dt.datetime) -> ShipmentResult | None:
        zone = ZoneInfo(ZONE)
        today = dt.datetime.now(zone).date()
        first = max(since.astimezone(zone).date(), today - dt.timedelta(days=7))
        page = 1
        while True:
            response = self._call("GET", "/Awbs/GetByDate", what="AWBs by date", idempotent=True,
                                  params={"FromDate": first.strftime("%m-%d-%Y"), "ToDate": today.strftime("%m-%d-%Y"),
                                          "pageNumber": page, "itemsPerPage": _PAGE})
            awbs = self._json(response, "AWBs by date") or []
            for awb in awbs:
                if str(awb.get("CustomString") or "") == request.reference and awb.get("BarCode"):
                    barcode = str(awb["BarCode"])
                    return ShipmentResult(request.reference, (barcode,), raw=awb, courier=self.name,
                                          shipment_id=barcode)
            if len(awbs) < _PAGE:
                return None
            page += 1

    def _cancel(self, key: str) -> bool:
        response = self._call("DELETE", "/Awbs", what=f"cancel {key}", idempotent=True, params={"barCode": key})
        return self._json(response, "cancel") is True  # false once the AWB has a checkpoint

    # --- labels ----------------------------------------------------------------------------------------------

    def _pickup(self, pickup: PickupRequest) -> PickupResult:
        """PUT /Orders?locationId=&action=1&PickupStartDate=&PickupEndDate= (doc §10.1): closes the pickup
        location's open order, i.e. every AWB issued from it since the last one, and sends a courier in that
        window. Cargus answers the order id. The AWBs are not named: Cargus collects by pickup location."""
        moment = "%Y-%m-%d %H:%M:%S"
        start = dt.datetime.combine(pickup.day, pickup.ready_from).strftime(moment)
        end = dt.datetime.combine(pickup.day, pickup.ready_until).strftime(moment)
        response = self._call("PUT", "/Orders", what=f"pickup order for {pickup.day}", idempotent=False,
                              params={"locationId": self.pickup_location_id, "action": 1,
                                      "PickupStartDate": start, "PickupEndDate": end})
        order_id = self._json(response, "pickup order")
        if isinstance(order_id, dict) or order_id in (None, "", 0):
            raise InvalidPayload(f"cargus pickup order: no order id ({error_text(response)})")
        return PickupResult(self.name, str(order_id), order_id)

    def _handover(self, keys: list[str], pickup: PickupResult | None, sender: Address | None) -> HandoverDocument:
        """GET /OrderDocuments?orderId=&docType=0: the pickup order's borderou, base64 PDF like the AWB documents
        (endpoint in mynameisbogdan/urgentcargus-php; parameters as Cargus's OpenCart module sends them)."""
        response = self._call("GET", "/OrderDocuments", what=f"borderou of order {pickup.pickup_id}", idempotent=True,
                              params={"orderId": pickup.pickup_id, "docType": 0})
        content = decode_pdf(self._json(response, "borderou"), "cargus borderou")
        return HandoverDocument(content, "application/pdf", pickup.pickup_id)

    def _labels(self, keys: list[str], label_format: LabelFormat, size: LabelSize) -> LabelDocument:
        # format=1 is Cargus's 10x14 cm label (print_sheet fits it to A6 or 100x150); printMainOnce=1: once each.
        response = self._call("GET", "/AwbDocuments", what=f"labels for {len(keys)} AWBs", idempotent=True,
                              params={"barCodes": json.dumps([int(k) if k.isdigit() else k for k in keys]),
                                      "type": "PDF", "format": 1, "printMainOnce": 1})
        content = decode_pdf(self._json(response, "labels"), "cargus labels")
        return LabelDocument(content, "pdf", LabelSize.A6.value)  # not quite A6: the base fits it before use

    # --- tracking --------------------------------------------------------------------------------------------

    def _event(self, row: dict) -> TrackingEvent:
        text = row.get("Description") or ""
        return TrackingEvent(_cargus_time(row["Date"]), self.status_map.status(row.get("EventId"), text),
                             str(row.get("EventId", "")), text, row.get("LocalityName") or None)

    def _track(self, numbers: list[str]) -> list[TrackingResult]:
        response = self._call("GET", "/AwbTrace", what=f"trace {len(numbers)} AWBs", idempotent=True,
                              params={"barCode": json.dumps(numbers)})
        found = {str(item.get("Code")): item for item in self._json(response, "trace") or []}
        return [tracking_result(n, [self._event(e) for e in (found.get(n) or {}).get("Event") or []])
                for n in numbers]

    def _changes(self, since: dt.datetime, until: dt.datetime) -> list[TrackingResult]:
        zone = ZoneInfo(ZONE)
        response = self._call("GET", "/AwbTrace/GetDeltaEvents", what="delta events", idempotent=True,
                              params={"FromDate": since.astimezone(zone).strftime("%m-%d-%Y"),
                                      "ToDate": until.astimezone(zone).strftime("%m-%d-%Y")})
        results = []
        for item in self._json(response, "delta events") or []:
            events = [e for e in (self._event(row) for row in item.get("Events") or []) if since <= e.occurred_at <= until]
            if events:  # the feed works in whole days; keep what moved inside the asked window
                results.append(tracking_result(str(item.get("Barcode") or item.get("Code")), events))
        return results

    # --- Ship & Go points ------------------------------------------------------------------------------------

    def _pickup_points(self, **filters: Any) -> list[PickupPoint]:
        response = self._call("GET", "/PudoPoints", what="Ship & Go points", idempotent=True, params=filters or None)
        points = []
        for item in self._json(response, "points") or []:
            street = " ".join(str(p) for p in (item.get("StreetName"), item.get("StreetNo")) if p)
            points.append(PickupPoint(
                str(item["Id"]), item.get("Name") or "", "pudo",
                Address(name=item.get("Name") or "", street=street, city=item.get("City") or "",
                        postcode=item.get("PostalCode") or "", region=item.get("County") or "", country="RO"),
                _decimal(item.get("Latitude")), _decimal(item.get("Longitude")),
                cash_on_delivery=item.get("ServiceCOD"), raw=item))
        return points


def _cargus_time(value: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(ZONE))
    return moment.astimezone(dt.timezone.utc)


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value not in (None, "") else None
    except ArithmeticError:
        return None
