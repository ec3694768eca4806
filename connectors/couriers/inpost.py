"""InPost ShipX (Poland): Paczkomat lockers and courier, organization shipments, labels, tracking, points."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, ClassVar

import requests

from connectors.couriers.base import (
    Capability, Courier, CourierRefused, HandoverDocument, LabelFormat, LabelSize, PickupPoint, PickupRequest,
    PickupResult, error_text, load_status_map, number, split_street, tracking_result,
)
from connectors.errors import InvalidPayload, NotFound
from connectors.records import (
    Address, LabelDocument, Money, ShipmentRequest, ShipmentResult, TrackingEvent, TrackingResult,
)

HOSTS = {"production": "https://api-shipx-pl.easypack24.net", "sandbox": "https://sandbox-api-shipx-pl.easypack24.net"}
_CANCELLABLE = ("created", "offers_prepared", "offer_selected")


class InPost(Courier):
    """One ShipX organization with its API token (long-lived, from Manager Paczek: nothing to log in or renew).

    ShipX creates asynchronously: a new shipment has no tracking number (and no label) until it is `confirmed`.
    create_shipment reads it back a few times (bounded) before returning; a result still without a number is
    finished later with `confirm`, which reads GET /v1/shipments/{id} once per call.
    """

    name: ClassVar[str] = "inpost"
    default_base_url: ClassVar[str] = HOSTS["production"]
    capabilities = frozenset({
        Capability.LABEL_PDF, Capability.LABEL_ZPL, Capability.SIZE_A6, Capability.PICKUP_POINTS,
        Capability.TRACKING, Capability.COD, Capability.CANCEL, Capability.LOOKUP_BY_REFERENCE,
        Capability.ASYNC_CREATE, Capability.PICKUP_REQUEST, Capability.PICKUP_CANCEL, Capability.HANDOVER_DOCUMENT,
    })
    status_map = load_status_map("inpost")
    renews_tokens: ClassVar[bool] = False
    handover_needs_pickup: ClassVar[bool] = True  # the printout is the dispatch order's

    def __init__(self, token: str, organization_id: int | str, *, confirm_reads: int = 3,
                 confirm_wait: float = 0.5, sending_method: str = "dispatch_order", **options: Any):
        super().__init__(**options)
        self._api_token, self.organization_id = token, str(organization_id)
        self.confirm_reads, self.confirm_wait, self.sending_method = confirm_reads, confirm_wait, sending_method

    @property
    def account(self) -> str:
        return self.organization_id

    def _login(self) -> tuple[str, float | None]:
        return self._api_token, None

    def _auth_headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def _refused(self, response: requests.Response, what: str) -> CourierRefused:
        try:
            body = response.json()
        except ValueError:
            body = {}
        errors: dict[str, list[str]] = {}
        _walk_details(body.get("details") if isinstance(body, dict) else None, [], errors)
        return CourierRefused(f"inpost {what}: HTTP {response.status_code} {error_text(response)}", errors,
                              response.status_code)

    # --- shipments -------------------------------------------------------------------------------------------

    def _payload(self, request: ShipmentRequest) -> dict:
        recipient, options = request.recipient, request.options
        first, _, last = (recipient.name or "").strip().partition(" ")
        phone = (recipient.phone or "").replace(" ", "")
        if phone.startswith("+48"):
            phone = phone[3:]  # ShipX wants the nine national digits
        receiver: dict[str, Any] = {"first_name": first, "last_name": last, "email": recipient.email or "",
                                    "phone": phone}
        if recipient.company:
            receiver["company_name"] = recipient.company
        locker = bool(request.pickup_point_id)
        service = request.service or ("inpost_locker_standard" if locker else "inpost_courier_standard")
        payload: dict[str, Any] = {"service": service, "reference": request.reference,
                                   "custom_attributes": {"sending_method": options.get("sending_method",
                                                                                       self.sending_method)}}
        if locker:
            payload["custom_attributes"]["target_point"] = request.pickup_point_id
            payload["parcels"] = [{"template": p.template or "small"} for p in request.parcels]
        else:
            street, building = split_street(recipient.street)
            receiver["address"] = {"street": street, "building_number": building or options.get("building_number", ""),
                                   "flat_number": recipient.street2 or None, "city": recipient.city,
                                   "post_code": recipient.postcode, "country_code": recipient.country or "PL"}
            payload["parcels"] = [{
                "dimensions": {"length": number((p.length_cm or Decimal(0)) * 10),
                               "width": number((p.width_cm or Decimal(0)) * 10),
                               "height": number((p.height_cm or Decimal(0)) * 10), "unit": "mm"},
                "weight": {"amount": number(p.weight_kg), "unit": "kg"}} for p in request.parcels]
        payload["receiver"] = receiver
        if options.get("dropoff_point"):
            payload["custom_attributes"]["dropoff_point"] = options["dropoff_point"]
        if request.cash_on_delivery:
            payload["cod"] = {"amount": number(request.cash_on_delivery.amount),
                              "currency": request.cash_on_delivery.currency}
        insured = request.declared_value or request.cash_on_delivery  # ShipX asks insurance of at least the COD
        if insured:
            payload["insurance"] = {"amount": number(insured.amount), "currency": insured.currency}
        if options.get("additional_services"):
            payload["additional_services"] = list(options["additional_services"])
        return payload

    def _result(self, request_reference: str, shipment: dict) -> ShipmentResult:
        offer = shipment.get("selected_offer") or {}
        cost = Money.parse(offer["rate"], offer.get("currency") or "PLN") if offer.get("rate") is not None else None
        number_ = shipment.get("tracking_number")
        return ShipmentResult(request_reference, (str(number_),) if number_ else (), cost, raw=shipment,
                              courier=self.name, shipment_id=str(shipment["id"]))

    def _create(self, request: ShipmentRequest) -> ShipmentResult:
        response = self._call("POST", f"/v1/organizations/{self.organization_id}/shipments",
                              what=f"shipment for {request.reference}", idempotent=False,
                              json_body=self._payload(request))
        shipment = self._json(response, "shipment")
        if "id" not in shipment:
            raise InvalidPayload(f"inpost shipment for {request.reference}: no id ({error_text(response)})")
        return self._result(request.reference, self._confirmed(shipment))

    def _confirmed(self, shipment: dict) -> dict:
        """Read the shipment back until ShipX gave it a tracking number (or we stop waiting; it stays readable)."""
        for attempt in range(self.confirm_reads):
            if shipment.get("tracking_number"):
                return shipment
            if attempt:
                self._sleep(self.confirm_wait)
            shipment = self.shipment(str(shipment["id"]))
        return shipment

    def _confirm(self, shipment: ShipmentResult) -> ShipmentResult:
        if not shipment.shipment_id:
            raise ValueError("inpost: confirming a shipment needs its ShipX id")
        return self._result(shipment.reference, self.shipment(shipment.shipment_id))

    def shipment(self, shipment_id: str) -> dict:
        """The ShipX shipment as it is now (status, tracking_number, selected_offer...)."""
        response = self._call("GET", f"/v1/shipments/{shipment_id}", what=f"shipment {shipment_id}", idempotent=True)
        return self._json(response, "shipment")

    def _list(self, params: dict) -> list[dict]:
        items, page = [], 1
        while True:
            response = self._call("GET", f"/v1/organizations/{self.organization_id}/shipments", what="shipments",
                                  idempotent=True, params={**params, "page": page, "per_page": 100})
            body = self._json(response, "shipments")
            items += body.get("items") or []
            if page * int(body.get("per_page") or 100) >= int(body.get("count") or 0):
                return items
            page += 1

    def _find(self, request: ShipmentRequest, since: dt.datetime) -> ShipmentResult | None:
        """ShipX lists an organization's shipments by creation time; ours is the one carrying our reference."""
        moment = since.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        for shipment in self._list({"created_at_gteq": moment, "sort_by": "created_at", "sort_order": "desc"}):
            if shipment.get("reference") == request.reference and shipment.get("status") != "canceled":
                return self._result(request.reference, self._confirmed(shipment))
        return None

    def _label_key(self, shipment: str | ShipmentResult) -> str:
        if isinstance(shipment, ShipmentResult):
            if shipment.shipment_id:
                return shipment.shipment_id
            shipment = shipment.tracking_numbers[0]
        if len(shipment) >= 20:  # a 24-digit tracking number, not a shipment id: ask ShipX which shipment it is
            found = self._list({"tracking_number": shipment})
            if not found:
                raise NotFound(f"inpost: no shipment with tracking number {shipment}")
            return str(found[0]["id"])
        return shipment

    def _cancel(self, key: str) -> bool:
        try:
            self._call("DELETE", f"/v1/shipments/{key}", what=f"cancel {key}", idempotent=True)
        except CourierRefused:
            return False  # only created / offers_prepared / offer_selected shipments can be cancelled
        return True

    # --- courier pickup (dispatch order) ----------------------------------------------------------------------

    def _pickup(self, pickup: PickupRequest) -> PickupResult:
        """POST /v1/organizations/{org}/dispatch_orders: a courier collects the named shipments (sent with
        sending_method `dispatch_order`) from this address. ShipX takes no date: the courier comes on the next
        collection round; the window goes into `office_hours`."""
        if not pickup.shipments:
            raise ValueError("an InPost dispatch order names the shipments to collect")
        street, building = split_street(pickup.address.street)
        phone = (pickup.address.phone or "").replace(" ", "")
        body = {
            "shipments": [int(key) if str(key).isdigit() else key for key in pickup.shipments],
            "comment": pickup.note or None,
            "name": pickup.address.company or pickup.address.name,
            "phone": phone[3:] if phone.startswith("+48") else phone,
            "email": pickup.address.email or None,
            "office_hours": f"{pickup.ready_from.strftime('%H:%M')}-{pickup.ready_until.strftime('%H:%M')}",
            "address": {"street": street, "building_number": building, "city": pickup.address.city,
                        "post_code": pickup.address.postcode, "country_code": pickup.address.country or "PL"},
        }
        response = self._call("POST", f"/v1/organizations/{self.organization_id}/dispatch_orders",
                              what="dispatch order", idempotent=False, json_body=body)
        order = self._json(response, "dispatch order")
        if not isinstance(order, dict) or order.get("id") in (None, ""):
            raise InvalidPayload(f"inpost dispatch order: no id ({error_text(response)})")
        return PickupResult(self.name, str(order["id"]), order)

    def _cancel_pickup(self, pickup: PickupResult) -> None:
        """DELETE /v1/dispatch_orders/{id} (michalbiarda/shipx-php-sdk Method/DispatchOrder/Delete), sent once: ShipX
        answers 404 for an order already deleted, so a replay after a lost answer would read as a refusal."""
        self._call("DELETE", f"/v1/dispatch_orders/{pickup.pickup_id}", idempotent=False,
                   what=f"cancel dispatch order {pickup.pickup_id}")

    def _handover(self, keys: list[str], pickup: PickupResult | None, sender: Address | None) -> HandoverDocument:
        """GET /v1/organizations/{org}/dispatch_orders/printouts?dispatch_order_id= (michalbiarda/shipx-php-sdk
        Method/DispatchOrder/GetPrintout; `format=Pdf` as other ShipX clients send it): the dispatch order
        printout the courier signs, as a PDF."""
        response = self._call("GET", f"/v1/organizations/{self.organization_id}/dispatch_orders/printouts",
                              what=f"dispatch order printout {pickup.pickup_id}", idempotent=True,
                              params={"dispatch_order_id": pickup.pickup_id, "format": "Pdf"})
        if not response.content.startswith(b"%PDF"):
            raise InvalidPayload(f"inpost dispatch order printout: expected a PDF, got "
                                 f"{response.headers.get('Content-Type')}")
        return HandoverDocument(response.content, "application/pdf", pickup.pickup_id)

    # --- labels ----------------------------------------------------------------------------------------------

    def _labels(self, keys: list[str], label_format: LabelFormat, size: LabelSize) -> LabelDocument:
        kind = "A6" if size is not LabelSize.A4_4UP else "normal"
        if label_format is LabelFormat.ZPL:
            # One call per shipment: the bulk endpoint's output for several ZPL labels is not documented.
            parts = [self._call("GET", f"/v1/shipments/{key}/label", what=f"label {key}", idempotent=True,
                                params={"format": "zpl", "type": kind}).content.strip() for key in keys]
            return LabelDocument(b"\n".join(parts) + b"\n", "zpl", size.value)
        response = self._call("GET", f"/v1/organizations/{self.organization_id}/shipments/labels",
                              what=f"labels for {len(keys)} shipments", idempotent=True,
                              params={"shipment_ids[]": keys, "format": "pdf", "type": "A6"})
        if not response.content.startswith(b"%PDF"):
            raise InvalidPayload(f"inpost labels: expected a PDF, got {response.headers.get('Content-Type')}")
        return LabelDocument(response.content, "pdf", LabelSize.A6.value)

    # --- tracking --------------------------------------------------------------------------------------------

    def _track(self, numbers: list[str]) -> list[TrackingResult]:
        results = []
        for tracking_number in numbers:
            try:
                response = self._call("GET", f"/v1/tracking/{tracking_number}", what=f"tracking {tracking_number}",
                                      idempotent=True, authed=False)
            except NotFound:
                results.append(tracking_result(tracking_number, []))
                continue
            body = self._json(response, "tracking")
            events = [TrackingEvent(_shipx_time(row["datetime"]), self.status_map.status(row.get("status")),
                                    str(row.get("status") or ""),
                                    self.status_map.texts.get(str(row.get("status")), "") or row.get("origin_status") or "",
                                    row.get("agency") or None)
                      for row in body.get("tracking_details") or []]
            results.append(tracking_result(tracking_number, events))
        return results

    # --- points ----------------------------------------------------------------------------------------------

    def _pickup_points(self, **filters: Any) -> list[PickupPoint]:
        params = {"per_page": 100, **filters}
        response = self._call("GET", "/v1/points", what="points", idempotent=True, authed=False, params=params)
        points = []
        for item in self._json(response, "points").get("items") or []:
            details = item.get("address_details") or {}
            street = " ".join(str(p) for p in (details.get("street"), details.get("building_number")) if p)
            location = item.get("location") or {}
            kinds = item.get("type") or []
            points.append(PickupPoint(
                item["name"], item["name"], "locker" if "parcel_locker" in kinds else "pudo",
                Address(name=item["name"], street=street, city=details.get("city") or "",
                        postcode=details.get("post_code") or "", region=details.get("province") or "", country="PL"),
                _decimal(location.get("latitude")), _decimal(location.get("longitude")),
                cash_on_delivery=item.get("payment_available"), raw=item))
        return points


def _shipx_time(value: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise InvalidPayload(f"inpost: time without offset {value!r}")
    return moment.astimezone(dt.timezone.utc)


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value not in (None, "") else None
    except ArithmeticError:
        return None


def _walk_details(node: Any, path: list[str], out: dict[str, list[str]]) -> None:
    """ShipX validation details nest dicts and one-element lists down to lists of error words."""
    if isinstance(node, dict):
        for key, child in node.items():
            _walk_details(child, path + [str(key)], out)
    elif isinstance(node, list):
        if node and all(isinstance(item, str) for item in node):
            out[".".join(path)] = list(node)
        else:
            for child in node:
                _walk_details(child, path, out)
    elif isinstance(node, str):
        out[".".join(path)] = [node]
